import AWSClient
import Foundation
import RecoveryCore

/// Steps 2 and 3, re-provision (same region) and fail-over (DR region):
///
///     inspect → snapshot → image → image_available → launch → running → [dr_address] → eip
///             → [dns → dns_insync] → tag_old → stop_old
///
/// The replacement is launched from the newest completed snapshot tagged `AutoRecovery:Name=<target>` in
/// the destination region, with the original's launch settings (re-provision) or the DR settings
/// (fail-over), and a client token derived from the idempotency key. The old instance is stopped and
/// tagged, never terminated: it is evidence.
extension StepContext {
    func runReplacement(failover: Bool) async throws -> StepResult {
        let oldId = request.instanceId
        let homeRegion = request.region
        let destRegion = failover ? request.destinationRegion : request.region
        if failover && destRegion == homeRegion {
            return .humanNeeded(
                "the fail-over destination \(destRegion) is the region \(oldId) runs in; configure a DR region for \(target)"
            )
        }
        if failover, let drRegion = config.drRegion, destRegion != drRegion {
            // The DR launch settings (subnet, groups, address) belong to the DR region; going back home
            // with them would launch into the wrong network.
            return .humanNeeded(
                "fail-back from \(homeRegion) to \(destRegion) is not automated (the DR launch settings are for \(drRegion)). Nothing was launched; move \(target) home by hand, e.g. start its stopped original instance there and move the Elastic IP and DNS back"
            )
        }
        if let end = try await walk(replacementPlan(failover: failover)) { return end }

        let newId = record.resources.newInstanceId ?? "i-?"
        let where_ = failover ? "in the DR region \(destRegion)" : "in \(destRegion)"
        let ip = failover ? record.resources.drPublicIp : record.resources.publicIp
        var summary =
            "new instance \(newId) \(where_) launched from \(record.resources.snapshotId ?? "snap-?") (image \(record.resources.imageId ?? "ami-?"))"
        summary += ip.map { ", serving on \($0)" } ?? ""
        if failover, let name = config.dr.recordName { summary += ", \(name) points at it" }
        summary +=
            "; the old instance \(oldId) in \(homeRegion) is \(isStoppedOld ? "stopped" : "NOT stopped (see notes)") and tagged \(RecoveryTags.replacedBy), kept as evidence"
        return .succeeded(summary: summary, newInstance: dryRun ? nil : InstanceRef(id: newId, region: destRegion))
    }

    func replacementPlan(failover: Bool) -> [PlannedSubStep] {
        let oldId = request.instanceId
        let homeRegion = request.region
        let destRegion = failover ? request.destinationRegion : request.region
        let dest = failover ? destination : home
        // What earlier sub-steps found, as the record has it.
        let snapshotId = { [self] in record.resources.snapshotId ?? "snap-?" }
        let imageId = { [self] in record.resources.imageId ?? "ami-?" }
        let newId = { [self] in record.resources.newInstanceId ?? "i-?" }
        let dnsConfigured = { [self] in failover && config.dr.hostedZoneId != nil && config.dr.recordName != nil }
        return [
            // 1. What the original looks like.
            PlannedSubStep(.inspect) { [self] in try await inspectOriginal(failover: failover) },
            // 2. The newest completed snapshot in the destination region.
            PlannedSubStep(.snapshot) { [self] in
                guard let snapshot = try await Self.latestSnapshot(dest, target: target) else {
                    return .humanNeeded(
                        "no completed snapshot tagged \(RecoveryTags.name)=\(target) in \(destRegion): there is nothing to launch a replacement from, and nothing was launched. "
                            + (failover
                                ? "Copy a snapshot to \(destRegion) (and tag it) or recover by hand."
                                : "Create a snapshot of the data volume (and tag it) or recover by hand."))
                }
                let age = snapshot.startTime.map { " from \(Timestamp.format($0))" } ?? ""
                try await finish(.snapshot, "newest completed snapshot \(snapshot.snapshotId)\(age) in \(destRegion)") {
                    $0.snapshotId = snapshot.snapshotId
                }
                return nil
            },
            // 3. An image of it. The name is derived from the key, so a retry finds the image it registered.
            PlannedSubStep(.image) { [self] in
                let imageId = try await registerImage(dest, from: snapshotId())
                try await finish(.image, "image \(imageId) from \(snapshotId())") { $0.imageId = imageId }
                return nil
            },
            PlannedSubStep(.imageAvailable) { [self] in
                if !dryRun {
                    try await dest.waitUntilImageAvailable(
                        imageId(), timeout: options.imageWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.imageAvailable, "image \(imageId()) is available")
                return nil
            },
            // 4. Launch (once: the client token is derived from the key).
            PlannedSubStep(.launch, compensation: .init(until: .eip) { [self] in try await abandonReplacement() }) {
                [self] in
                if pastDeadline && !dryRun {
                    return .failed(
                        "the deadline \(Timestamp.format(request.deadline)) passed before the launch; nothing was launched (image \(imageId()) is left registered)"
                    )
                }
                let input: RunInstancesInput
                switch launchInput(failover: failover, imageId: imageId()) {
                case .success(let i): input = i
                case .failure(let problem): return .humanNeeded(problem.description)
                }
                var parameters: [(String, String)] = [("ImageId", input.imageId), ("InstanceType", input.instanceType)]
                if let subnet = input.subnetId { parameters.append(("SubnetId", subnet)) }
                if !input.securityGroupIds.isEmpty {
                    parameters.append(("SecurityGroupId", input.securityGroupIds.joined(separator: " ")))
                }
                if let keyName = input.keyName { parameters.append(("KeyName", keyName)) }
                parameters.append(("ClientToken", input.clientToken ?? ""))
                let launched = try await mutate(
                    PlannedCall("ec2", "RunInstances", region: destRegion, parameters), dryRunValue: nil as EC2Instance?
                ) {
                    try await dest.runInstance(input)
                }
                let newId = launched?.instanceId ?? "i-dry-run"
                try await finish(.launch, "launched \(newId) in \(destRegion) from \(imageId())") {
                    $0.newInstanceId = newId
                    $0.newRegion = destRegion
                }
                return nil
            },
            PlannedSubStep(.running) { [self] in
                var publicIp: String?
                if !dryRun {
                    let running = try await dest.waitUntilRunning(
                        [newId()], timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                    publicIp = running.first?.publicIpAddress
                }
                try await finish(.running, "\(newId()) is running") { $0.publicIp = publicIp }
                return nil
            },
            // 5. Traffic: the Elastic IP (the target's, or the DR one), and for fail-over the DNS record.
            PlannedSubStep(.drAddress, when: { failover }) { [self] in
                let (allocation, ip) = try await drAddress()
                try await finish(.drAddress, "DR Elastic IP \(ip ?? allocation) (\(allocation))") {
                    $0.drAllocationId = allocation
                    $0.drPublicIp = ip
                }
                return nil
            },
            PlannedSubStep(.eip) { [self] in
                try await moveAddress(dest, to: newId(), failover: failover)
                return nil
            },
            PlannedSubStep(.dns, when: dnsConfigured) { [self] in try await pointRecord(dest, at: newId()) },
            PlannedSubStep(.dnsInsync, when: dnsConfigured) { [self] in
                if !dryRun, let change = record.resources.changeId {
                    try await route53.waitUntilChangeInsync(
                        change, timeout: options.dnsWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.dnsInsync, "the record change is INSYNC")
                return nil
            },
            // A fail-over without a record to move: said on every walk, nothing recorded.
            PlannedSubStep(.dns, when: { failover && !dnsConfigured() }) { [self] in
                note(
                    "no Route 53 record configured for \(target) (dr.hosted_zone_id, dr.record_name): DNS was not changed"
                )
                return nil
            },
            // 6. The old instance: tagged and stopped, never terminated.
            PlannedSubStep(.tagOld) { [self] in
                do {
                    try await mutate(
                        PlannedCall(
                            "ec2", "CreateTags", region: homeRegion,
                            [("ResourceId", oldId), ("Tag", "\(RecoveryTags.replacedBy)=\(newId())")])
                    ) {
                        try await home.createTags(resourceIds: [oldId], tags: [RecoveryTags.replacedBy: newId()])
                    }
                    try await finish(.tagOld, "\(oldId) tagged \(RecoveryTags.replacedBy)=\(newId())")
                } catch let error as AWSError where Self.skippable(error, failover: failover) {
                    note(
                        "could not tag the old instance \(oldId) in \(homeRegion): \(error). Tag it \(RecoveryTags.replacedBy)=\(newId()) by hand"
                    )
                    try await finish(.tagOld, "skipped: \(error.code ?? error.kind.description)")
                }
                return nil
            },
            PlannedSubStep(.stopOld) { [self] in
                do {
                    let state = dryRun ? nil : try await describe(home, oldId)?.state
                    if state == .stopped || state == .stopping || state == .terminated || state == .shuttingDown {
                        try await finish(.stopOld, "\(oldId) is already \(state!)")
                    } else {
                        try await mutate(
                            PlannedCall("ec2", "StopInstances", region: homeRegion, [("InstanceId", oldId)])
                        ) {
                            _ = try await home.stopInstances([oldId], force: false, hibernate: nil)
                        }
                        try await finish(.stopOld, "StopInstances sent for \(oldId) (kept, not terminated)")
                    }
                } catch let error as AWSError where Self.skippable(error, failover: failover) {
                    note(
                        "could not stop the old instance \(oldId) in \(homeRegion): \(error). It may still be running; stop it (do not terminate it) when the region answers"
                    )
                    try await finish(.stopOld, "skipped: \(error.code ?? error.kind.description)")
                }
                return nil
            },
        ]
    }

    private var isStoppedOld: Bool {
        isDone(.stopOld) && !record.notes.contains { $0.contains("could not stop the old instance") }
    }

    /// Errors about the old instance that do not stop the step: it is gone, or (fail-over) its region
    /// does not answer.
    static func skippable(_ error: AWSError, failover: Bool) -> Bool {
        if error.code?.hasPrefix("InvalidInstanceID") == true || error.code == "IncorrectInstanceState" { return true }
        return failover && error.isTransient
    }

    /// The original's launch settings.
    func launchSpec(of old: EC2Instance) async throws -> LaunchSpec {
        let root = old.rootDeviceName ?? "/dev/xvda"
        var volumeType: String?
        var volumeSize: Int?
        if let volumeId = old.blockDevices.first(where: { $0.deviceName == root })?.volumeId,
            let volume = try await home.describeVolumes(volumeIds: [volumeId], filters: []).first
        {
            volumeType = volume.volumeType
            volumeSize = volume.size
        }
        var architecture = "x86_64"
        if let imageId = old.imageId {
            do {
                if let image = try await home.describeImages(imageIds: [imageId], owners: [], filters: []).first,
                    let arch = image.architecture
                {
                    architecture = arch
                }
            } catch let error as AWSError where error.kind == .clientError {
                // The original image may be deregistered; x86_64 is the default.
            }
        }
        let dropped: Set<String> = [
            EC2Client.clientTokenTagKey, RecoveryTags.replacedBy, RecoveryTags.replacementOf, RecoveryTags.abandonedBy,
        ]
        let tags = old.tags.filter { !$0.key.hasPrefix("aws:") && !dropped.contains($0.key) }
        return LaunchSpec(
            instanceType: old.instanceType, subnetId: old.subnetId, securityGroupIds: old.securityGroupIds,
            keyName: old.keyName,
            iamInstanceProfileArn: old.iamInstanceProfileArn, tags: tags, rootDeviceName: root,
            rootVolumeType: volumeType,
            rootVolumeSize: volumeSize, architecture: architecture)
    }

    struct LaunchProblem: Error, CustomStringConvertible { var description: String }

    func launchInput(failover: Bool, imageId: String) -> Result<RunInstancesInput, LaunchProblem> {
        let spec = record.resources.launch
        var tags = spec?.tags ?? [:]
        tags[RecoveryTags.optIn] = "enabled"
        tags[RecoveryTags.name] = target
        tags[RecoveryTags.replacementOf] = request.instanceId
        if let url = record.resources.healthURL { tags[RecoveryTags.healthURL] = url }
        if let fleet = config.fleetTag { tags[TargetCatalog.fleetTag] = fleet }
        let token: String
        do { token = try ClientToken.forKey(key) } catch {
            return .failure(LaunchProblem(description: "cannot derive the client token: \(error)"))
        }
        if failover {
            let dr = config.dr
            guard let type = dr.instanceType ?? spec?.instanceType else {
                return .failure(
                    LaunchProblem(
                        description:
                            "no instance type for the DR launch of \(target): the original instance could not be read and dr.instance_type is not set. Nothing was launched"
                    ))
            }
            return .success(
                RunInstancesInput(
                    imageId: imageId, instanceType: type, subnetId: dr.subnetId,
                    securityGroupIds: dr.securityGroupIds ?? [],
                    keyName: dr.keyName ?? spec?.keyName, iamInstanceProfile: dr.instanceProfile, tags: tags,
                    clientToken: token))
        }
        guard let spec, let type = spec.instanceType else {
            return .failure(LaunchProblem(description: "the original instance's type is unknown; nothing was launched"))
        }
        return .success(
            RunInstancesInput(
                imageId: imageId, instanceType: type, subnetId: spec.subnetId, securityGroupIds: spec.securityGroupIds,
                keyName: spec.keyName, iamInstanceProfile: spec.iamInstanceProfileArn.map { .arn($0) }, tags: tags,
                clientToken: token))
    }

    /// The DR Elastic IP: configured, else the one this step recorded, else the one tagged
    /// `AutoRecovery:DrFor=<target>` in the DR region (allocated by an earlier fail-over), else a new one
    /// with that tag. The tag makes an allocation whose record was lost findable.
    func drAddress() async throws -> (allocation: String, publicIp: String?) {
        let dest = destination
        let region = request.destinationRegion
        if let configured = config.dr.elasticIpAllocationId {
            let ip = try await dest.describeAddresses(publicIps: [], allocationIds: [configured], filters: []).first?
                .publicIp
            return (configured, ip)
        }
        if let recorded = record.resources.drAllocationId { return (recorded, record.resources.drPublicIp) }
        let tagged = { [target] in
            try await dest.describeAddresses(
                publicIps: [], allocationIds: [], filters: [.tag(RecoveryTags.drFor, target)]
            )
            .first(where: { $0.tags[RecoveryTags.drFor] == target && $0.allocationId != nil })
        }
        if let found = try await tagged(), let allocation = found.allocationId {
            return (allocation, found.publicIp)
        }
        let allocated = try await mutate(
            PlannedCall(
                "ec2", "AllocateAddress", region: region,
                [("Domain", "vpc"), ("Tag", "\(RecoveryTags.drFor)=\(target)")]),
            dryRunValue: nil as EC2Address?, look: tagged
        ) {
            try await dest.allocateAddress(tags: [RecoveryTags.drFor: target, RecoveryTags.name: target])
        }
        guard let allocated else { return ("eipalloc-dry-run", nil) }
        guard let allocation = allocated.allocationId else {
            throw AWSError(
                kind: .invalidResponse, service: "EC2", operation: "AllocateAddress", region: region,
                message: "no allocationId in the answer")
        }
        note(
            "allocated the DR Elastic IP \(allocated.publicIp) (\(allocation)) in \(region), tagged \(RecoveryTags.drFor)=\(target); later fail-overs reuse it"
        )
        return (allocation, allocated.publicIp)
    }

    /// A target name as it may appear in an AMI name (letters, digits, `()[] ./-'@_`, ≤ 128 characters).
    static func nameSafe(_ target: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        return String(String(target.map { allowed.contains($0) ? $0 : "-" }).prefix(80))
    }

    /// The `inspect` sub-step: the original's launch settings, Elastic IP and health URL. A fail-over goes on
    /// without them when the original is gone or its region does not answer.
    private func inspectOriginal(failover: Bool) async throws -> StepResult? {
        let oldId = request.instanceId
        let homeRegion = request.region
        var spec: LaunchSpec?
        var allocation = request.elasticIpAllocationId
        var healthURL = config.healthURL
        do {
            if let old = try await describe(home, oldId) {
                spec = try await launchSpec(of: old)
                if allocation == nil { allocation = try await self.allocation(on: oldId, ec2: home) }
                healthURL = old.tags[RecoveryTags.healthURL] ?? healthURL
            } else if failover {
                note("the original instance \(oldId) was not found in \(homeRegion); launching from the DR settings")
            } else {
                return .humanNeeded(
                    "the original instance \(oldId) was not found in \(homeRegion), so its launch settings (type, subnet, security groups, key, profile) are unknown. Nothing was launched; launch a replacement by hand from the latest snapshot tagged AutoRecovery:Name=\(target)"
                )
            }
        } catch let error as AWSError where failover && error.isTransient {
            note("the primary region \(homeRegion) did not answer (\(error)); launching from the DR settings")
        }
        try await finish(
            .inspect,
            "original \(oldId): \(spec.map { "\($0.instanceType ?? "?") in \($0.subnetId ?? "default subnet")" } ?? "not readable"); Elastic IP \(allocation ?? "none")"
        ) {
            recordOriginal(&$0, allocation: allocation, healthURL: healthURL)
            $0.launch = spec
        }
        return nil
    }

    /// The `image` sub-step's image: the one this step registered (found by its name), else a new one of
    /// `snapshotId`.
    private func registerImage(_ dest: any EC2Operations, from snapshotId: String) async throws -> String {
        let name = "autorecovery-\(Self.nameSafe(target))-\(try ClientToken.short(key))"
        if let found = try await dest.describeImages(
            imageIds: [], owners: ["self"], filters: [EC2Filter("name", [name])]
        ).first?.imageId {
            return found
        }
        let spec = record.resources.launch
        let root = spec?.rootDeviceName ?? "/dev/xvda"
        let input = RegisterImageInput(
            name: name,
            description:
                "AutoRecovery \(request.step.rawValue) of \(target), \(request.incidentId), from \(snapshotId)",
            architecture: spec?.architecture ?? "x86_64", rootDeviceName: root,
            blockDeviceMappings: [
                BlockDeviceMapping(
                    deviceName: root,
                    ebs: EBSBlockDevice(
                        snapshotId: snapshotId, volumeSize: spec?.rootVolumeSize,
                        volumeType: spec?.rootVolumeType ?? "gp3",
                        deleteOnTermination: true))
            ],
            tags: [RecoveryTags.name: target, RecoveryTags.step: key])
        let call = PlannedCall(
            "ec2", "RegisterImage", region: dest.region,
            [
                ("Name", name), ("RootDeviceName", root), ("BlockDeviceMapping.1.Ebs.SnapshotId", snapshotId),
            ])
        do {
            return try await mutate(call, dryRunValue: "ami-dry-run") { try await dest.registerImage(input) }
        } catch let error as AWSError where error.code == "InvalidAMIName.Duplicate" {
            // Registered by an actor that died before recording it.
            guard
                let found = try await dest.describeImages(
                    imageIds: [], owners: ["self"], filters: [EC2Filter("name", [name])]
                ).first?.imageId
            else { throw error }
            return found
        }
    }

    /// The `eip` sub-step: the target's Elastic IP (fail-over: the DR one) moves to the replacement.
    private func moveAddress(_ dest: any EC2Operations, to newId: String, failover: Bool) async throws {
        guard let allocation = failover ? record.resources.drAllocationId : record.resources.allocationId else {
            note("the target has no Elastic IP: traffic reaches \(newId) only if its DNS points at it")
            return try await finish(.eip, "no Elastic IP to move")
        }
        let association = try await mutate(
            PlannedCall(
                "ec2", "AssociateAddress", region: dest.region,
                [("AllocationId", allocation), ("InstanceId", newId), ("AllowReassociation", "true")]),
            dryRunValue: "eipassoc-dry-run"
        ) {
            try await dest.associateAddress(allocationId: allocation, instanceId: newId, allowReassociation: true)
        }
        let ip =
            dryRun
            ? nil
            : try await dest.describeAddresses(publicIps: [], allocationIds: [allocation], filters: []).first?.publicIp
        try await finish(.eip, "Elastic IP \(ip ?? allocation) now on \(newId)") {
            $0.associationId = association
            if let ip { $0.publicIp = ip }
            if failover, let ip { $0.drPublicIp = ip }
        }
    }

    /// The `dns` sub-step of a fail-over: the configured A record points at the DR address.
    private func pointRecord(_ dest: any EC2Operations, at newId: String) async throws -> StepResult? {
        guard let zone = config.dr.hostedZoneId, let name = config.dr.recordName else { return nil }
        let ttl = config.dr.recordTTL ?? 60
        var address = record.resources.drPublicIp ?? record.resources.publicIp
        if address == nil && !dryRun { address = try await describe(dest, newId)?.publicIpAddress }
        guard let address = address ?? (dryRun ? "<DR address>" : nil) else {
            return .humanNeeded(
                "the DR instance \(newId) in \(dest.region) has no public address to point \(name) at; point the record by hand"
            )
        }
        let change = try await mutate(
            PlannedCall(
                "route53", "ChangeResourceRecordSets", region: "global",
                [
                    ("HostedZoneId", zone), ("Action", "UPSERT"), ("Name", name), ("Type", "A"), ("TTL", "\(ttl)"),
                    ("Value", address),
                ]), dryRunValue: nil as Route53ChangeInfo?
        ) {
            try await route53.upsertARecord(
                hostedZoneId: zone, name: name, addresses: [address], ttl: ttl,
                comment: "AutoRecovery fail-over of \(target) (\(request.incidentId))")
        }
        try await finish(.dns, "\(name) A \(address) (TTL \(ttl)) submitted") { $0.changeId = change?.id }
        return nil
    }

    /// The re-provision's and fail-over's compensation: an instance the step launched but did not put in
    /// service is stopped and tagged `AutoRecovery=abandoned` (so discovery ignores it), not terminated.
    private func abandonReplacement() async throws {
        guard let newId = record.resources.newInstanceId else { return }
        let region = record.resources.newRegion ?? request.destinationRegion
        let ec2 = region == request.region ? home : destination
        do {
            try await mutate(
                PlannedCall(
                    "ec2", "CreateTags", region: region,
                    [("ResourceId", newId), ("Tag", "\(RecoveryTags.optIn)=abandoned")])
            ) {
                try await ec2.createTags(
                    resourceIds: [newId], tags: [RecoveryTags.optIn: "abandoned", RecoveryTags.abandonedBy: key])
            }
            try await mutate(PlannedCall("ec2", "StopInstances", region: region, [("InstanceId", newId)])) {
                _ = try await ec2.stopInstances([newId], force: false, hibernate: nil)
            }
            note(
                "the step ended early after launching \(newId) in \(region): it was stopped and tagged \(RecoveryTags.optIn)=abandoned (not terminated)"
            )
            try await finish(.compensated, "\(newId) stopped and tagged abandoned")
        } catch let lost as LeaseLost {
            throw lost
        } catch {
            note(
                "the step ended early after launching \(newId) in \(region), and stopping it failed too (\(error)); stop or terminate it by hand"
            )
        }
    }
}
