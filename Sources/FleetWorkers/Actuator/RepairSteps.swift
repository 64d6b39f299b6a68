import AWSClient
import Foundation
import RecoveryCore

/// The repairs that are not SSM documents (docs/actuator.md, "Repairs"):
///
///     ebs_repair:   inspect → snapshot → evidence_snapshot → volume → volume_available → stop → stopped
///                   → tag_old_volume → detach_old → old_detached → attach_new → new_attached → start
///                   → running → eip → final_check
///     quarantine:   quarantine_tag → quarantine_table → [eip_detached]
///     unquarantine: quarantine_tag → quarantine_table
///
/// Every mutation goes through `mutate` (lease check) and every sub-step is recorded, as for the ladder
/// steps. Resources a step creates carry `AutoRecovery:Step=<key>`, so an actor that died between a call
/// and its record finds them instead of creating them again. The old root volume is never deleted.
extension StepContext {
    func runEBSRepair() async throws -> StepResult {
        // The plan ends with the final check, which always ends the step.
        try await walk(ebsRepairPlan()) ?? .failed("the EBS repair plan ended without a result")
    }

    func ebsRepairPlan() -> [PlannedSubStep] {
        let id = request.instanceId
        let region = request.region
        let ec2 = home
        // What earlier sub-steps found, as the record has it.
        var oldVolume: String { record.resources.oldVolumeId ?? "vol-?" }
        var root: String { record.resources.rootDeviceName ?? "/dev/xvda" }
        var zone: String { record.resources.availabilityZone ?? "\(region)a" }
        var snapshotId: String { record.resources.snapshotId ?? "snap-?" }
        var newVolume: String { record.resources.newVolumeId ?? "vol-?" }
        return [
            PlannedSubStep(.inspect) { [self] in
                guard let instance = try await describe(ec2, id) else {
                    return .humanNeeded("instance \(id) was not found in \(region); nothing was changed")
                }
                if instance.state == .terminated || instance.state == .shuttingDown {
                    return .humanNeeded("instance \(id) is \(instance.state); nothing was changed")
                }
                let root = instance.rootDeviceName ?? "/dev/xvda"
                guard let volume = instance.blockDevices.first(where: { $0.deviceName == root })?.volumeId else {
                    return .humanNeeded(
                        "instance \(id) has no EBS volume at its root device \(root); nothing was changed")
                }
                guard let zone = instance.availabilityZone else {
                    return .humanNeeded("the availability zone of \(id) is unknown; nothing was changed")
                }
                let allocation = try await allocation(on: id, ec2: ec2)
                let healthURL = instance.tags[RecoveryTags.healthURL] ?? config.healthURL
                try await finish(
                    .inspect,
                    "\(id) is \(instance.state); root \(root) is \(volume) in \(zone); Elastic IP \(allocation ?? "none")"
                ) {
                    recordOriginal(&$0, allocation: allocation, healthURL: healthURL)
                    $0.rootDeviceName = root
                    $0.oldVolumeId = volume
                    $0.availabilityZone = zone
                }
                return nil
            },
            // The volume to restore: the same "newest completed snapshot tagged AutoRecovery:Name" a
            // re-provision uses. Looked up before anything changes, so "none" changes nothing.
            PlannedSubStep(.snapshot) { [self] in
                guard let snapshot = try await Self.latestSnapshot(ec2, target: target) else {
                    return .humanNeeded(
                        "no completed snapshot tagged \(RecoveryTags.name)=\(target) in \(region): there is nothing to restore the root volume from, and nothing was changed"
                    )
                }
                try await finish(.snapshot, "newest completed snapshot \(snapshot.snapshotId)") {
                    $0.snapshotId = snapshot.snapshotId
                }
                return nil
            },
            // Evidence: a snapshot of the impaired volume as it is now. Not tagged AutoRecovery:Name, so it is
            // never taken for a "good" snapshot. Not awaited: a snapshot is point-in-time when it is created.
            PlannedSubStep(.evidenceSnapshot) { [self] in
                let made = { [key, target] in
                    try await ec2.describeSnapshots(
                        snapshotIds: [], ownerIds: ["self"],
                        filters: [.tag(RecoveryTags.step, key), .tag(RecoveryTags.evidenceFor, target)]
                    )
                    .first { $0.tags[RecoveryTags.step] == key }?.snapshotId
                }
                var evidence = try await made()
                if evidence == nil {
                    evidence = try await mutate(
                        PlannedCall(
                            "ec2", "CreateSnapshot", region: region,
                            [("VolumeId", oldVolume), ("Tag", "\(RecoveryTags.evidenceFor)=\(target)")]),
                        dryRunValue: "snap-dry-run", look: made
                    ) {
                        try await ec2.createSnapshot(
                            volumeId: oldVolume,
                            description: "AutoRecovery evidence: root of \(id) before EBS repair \(key)",
                            tags: [RecoveryTags.evidenceFor: target, RecoveryTags.step: key]
                        ).snapshotId
                    }
                }
                try await finish(.evidenceSnapshot, "evidence snapshot \(evidence!) of \(oldVolume)") {
                    $0.evidenceSnapshotId = evidence
                }
                return nil
            },
            PlannedSubStep(.volume) { [self] in
                let made = { [key, target] in
                    try await ec2.describeVolumes(
                        volumeIds: [], filters: [.tag(RecoveryTags.step, key), .tag(RecoveryTags.rootFor, target)]
                    )
                    .first { $0.tags[RecoveryTags.step] == key && $0.state != "deleting" && $0.state != "deleted" }?
                    .volumeId
                }
                var newVolume = try await made()
                if newVolume == nil {
                    let old = dryRun ? nil : try await ec2.describeVolumes(volumeIds: [oldVolume], filters: []).first
                    let input = CreateVolumeInput(
                        availabilityZone: zone, size: old?.size, snapshotId: snapshotId,
                        volumeType: old?.volumeType ?? "gp3",
                        tags: [
                            RecoveryTags.rootFor: target, RecoveryTags.step: key,
                            "AutoRecovery:FromSnapshot": snapshotId,
                        ])
                    newVolume = try await mutate(
                        PlannedCall(
                            "ec2", "CreateVolume", region: region,
                            [("AvailabilityZone", zone), ("SnapshotId", snapshotId), ("VolumeType", input.volumeType)]),
                        dryRunValue: "vol-dry-run", look: made
                    ) { try await ec2.createVolume(input).volumeId }
                }
                try await finish(.volume, "new root volume \(newVolume!) from \(snapshotId) in \(zone)") {
                    $0.newVolumeId = newVolume
                }
                return nil
            },
            PlannedSubStep(.volumeAvailable) { [self] in
                if !dryRun {
                    try await ec2.waitUntilVolumeAvailable(
                        newVolume, timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.volumeAvailable, "\(newVolume) is available")
                return nil
            },
            // The swap: stop, detach the old root, attach the new one at the same device, start.
            PlannedSubStep(.stop, compensation: .init(until: .running) { [self] in try await compensateEBSRepair() }) {
                [self] in
                // Look before refusing: an actor may have sent StopInstances and died before recording it. A
                // stopped instance goes on with the swap (it is down already, and must not be left so).
                let state = dryRun ? nil : try await describe(ec2, id)?.state
                if state == .stopped || state == .stopping {
                    if pastDeadline {
                        note(
                            "\(id) was found \(state!) after the deadline (an earlier actor stopped it): the swap goes on so it is not left stopped"
                        )
                    }
                    try await finish(.stop, "\(id) was already \(state!)")
                } else {
                    if pastDeadline && !dryRun {
                        return .failed(
                            "the deadline \(Timestamp.format(request.deadline)) passed before \(id) was stopped; nothing on the instance was changed (it is \(state.map { "\($0)" } ?? "not found"); the new volume \(newVolume) is left available)"
                        )
                    }
                    if !dryRun {
                        await notify(
                            Notice(
                                id: "\(key):actuator:stop_start", kind: .actionStarted, at: clock(), target: target,
                                instanceId: id,
                                region: region, incidentId: request.incidentId, step: request.step, nextStep: nil,
                                commands: [RecoveryCtl.ack(target)],
                                reason: .actuator(
                                    .rootSwap(
                                        instance: InstanceRef(id: id, region: region), oldVolume: oldVolume,
                                        newVolume: newVolume, snapshot: snapshotId, recordKey: key))))
                    }
                    try await mutate(PlannedCall("ec2", "StopInstances", region: region, [("InstanceId", id)])) {
                        _ = try await ec2.stopInstances([id], force: false, hibernate: nil)
                    }
                    try await finish(.stop, "StopInstances sent for \(id)")
                }
                return nil
            },
            PlannedSubStep(.stopped) { [self] in
                if !dryRun {
                    try await ec2.waitUntilStopped(
                        [id], timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.stopped, "\(id) is stopped")
                return nil
            },
            PlannedSubStep(.tagOldVolume) { [self] in
                try await mutate(
                    PlannedCall(
                        "ec2", "CreateTags", region: region,
                        [("ResourceId", oldVolume), ("Tag", "\(RecoveryTags.replacedBy)=\(newVolume)")])
                ) {
                    try await ec2.createTags(
                        resourceIds: [oldVolume],
                        tags: [
                            RecoveryTags.replacedBy: newVolume, RecoveryTags.evidenceFor: target,
                            RecoveryTags.step: key,
                        ])
                }
                try await finish(
                    .tagOldVolume, "\(oldVolume) tagged \(RecoveryTags.replacedBy)=\(newVolume) (kept, never deleted)")
                return nil
            },
            PlannedSubStep(.detachOld) { [self] in
                let attached =
                    dryRun
                    ? true
                    : try await ec2.describeVolumes(volumeIds: [oldVolume], filters: []).first?.attachments
                        .contains { $0.instanceId == id && $0.state != "detached" } ?? false
                if attached {
                    try await mutate(
                        PlannedCall(
                            "ec2", "DetachVolume", region: region, [("VolumeId", oldVolume), ("InstanceId", id)])
                    ) {
                        _ = try await ec2.detachVolume(volumeId: oldVolume, instanceId: id, device: root, force: false)
                    }
                }
                try await finish(
                    .detachOld, attached ? "DetachVolume sent for \(oldVolume)" : "\(oldVolume) was no longer attached")
                return nil
            },
            PlannedSubStep(.oldDetached) { [self] in
                if !dryRun {
                    try await ec2.waitUntilVolumeAvailable(
                        oldVolume, timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.oldDetached, "\(oldVolume) is detached")
                return nil
            },
            PlannedSubStep(.attachNew) { [self] in
                let attached =
                    dryRun
                    ? false
                    : try await ec2.describeVolumes(volumeIds: [newVolume], filters: []).first?.attachments
                        .contains { $0.instanceId == id } ?? false
                if !attached {
                    try await mutate(
                        PlannedCall(
                            "ec2", "AttachVolume", region: region,
                            [("VolumeId", newVolume), ("InstanceId", id), ("Device", root)])
                    ) {
                        _ = try await ec2.attachVolume(volumeId: newVolume, instanceId: id, device: root)
                    }
                }
                try await finish(.attachNew, "\(newVolume) attached to \(id) at \(root)")
                return nil
            },
            PlannedSubStep(.newAttached) { [self] in
                if !dryRun {
                    try await ec2.waitUntilVolumeAttached(
                        newVolume, to: id, timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.newAttached, "\(newVolume) is attached at \(root)")
                return nil
            },
        ] + startAndWait(ec2, id, region: region, running: "\(id) is running with root \(newVolume)") + [
            PlannedSubStep(.eip) { [self] in
                if let allocation = record.resources.allocationId, !dryRun,
                    try await ec2.describeAddresses(publicIps: [], allocationIds: [allocation], filters: []).first?
                        .instanceId != id
                {
                    let association = try await mutate(
                        PlannedCall(
                            "ec2", "AssociateAddress", region: region,
                            [("AllocationId", allocation), ("InstanceId", id), ("AllowReassociation", "true")]),
                        dryRunValue: ""
                    ) {
                        try await ec2.associateAddress(
                            allocationId: allocation, instanceId: id, allowReassociation: true)
                    }
                    try await finish(.eip, "Elastic IP \(allocation) associated with \(id) again") {
                        $0.associationId = association
                    }
                } else {
                    try await finish(
                        .eip, record.resources.allocationId == nil ? "no Elastic IP" : "the Elastic IP is on \(id)")
                }
                return nil
            },
            // Runs on every walk that gets here: the checks decide the outcome.
            PlannedSubStep(.finalCheck, skipWhenDone: []) { [self] in
                let summary =
                    "the root volume of \(id) in \(region) was replaced: \(oldVolume) (kept, tagged, evidence snapshot \(record.resources.evidenceSnapshotId ?? "?")) → \(newVolume) from \(snapshotId)"
                if dryRun { return .succeeded(summary: "dry run", newInstance: nil) }
                let (ok, detail) = try await waitHealthy(
                    ec2, id, timeout: max(min(options.restartHealthTimeout, remaining), options.healthPollInterval))
                try await finish(.finalCheck, detail)
                return ok
                    ? .succeeded(summary: "\(summary); \(detail)", newInstance: nil)
                    : .failed("\(summary), but \(id) is not healthy: \(detail)")
            },
        ]
    }

    /// After a failed EBS repair that stopped the instance: the old root goes back if the new one is not
    /// confirmed attached (a new one sent to attach but not confirmed — `attach_new` without
    /// `new_attached` — is detached first, forced, since it may be stuck attaching), and the instance is
    /// started, so it is not left stopped without its disk. Errors are noted.
    func compensateEBSRepair() async throws {
        guard isDone(.stop), !isDone(.running) else { return }
        let id = request.instanceId
        let region = request.region
        let ec2 = home
        do {
            if isDone(.detachOld) && !isDone(.newAttached), let old = record.resources.oldVolumeId,
                let root = record.resources.rootDeviceName
            {
                var done: [String] = []
                if isDone(.attachNew), let new = record.resources.newVolumeId {
                    let on =
                        try await ec2.describeVolumes(volumeIds: [new], filters: []).first?.attachments
                        .contains { $0.instanceId == id && $0.state != "detached" } ?? false
                    if on {
                        try await mutate(
                            PlannedCall(
                                "ec2", "DetachVolume", region: region,
                                [("VolumeId", new), ("InstanceId", id), ("Force", "true")])
                        ) {
                            _ = try await ec2.detachVolume(volumeId: new, instanceId: id, device: root, force: true)
                        }
                        done.append("the new root \(new) was detached (forced)")
                    }
                    try await ec2.waitUntilVolumeAvailable(
                        new, timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                }
                let oldOn =
                    try await ec2.describeVolumes(volumeIds: [old], filters: []).first?.attachments
                    .contains { $0.instanceId == id && $0.state != "detached" } ?? false
                if !oldOn {
                    try await ec2.waitUntilVolumeAvailable(
                        old, timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                    try await mutate(
                        PlannedCall(
                            "ec2", "AttachVolume", region: region,
                            [("VolumeId", old), ("InstanceId", id), ("Device", root)])
                    ) {
                        _ = try await ec2.attachVolume(volumeId: old, instanceId: id, device: root)
                    }
                }
                try await ec2.waitUntilVolumeAttached(
                    old, to: id, timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                done.append(
                    oldOn
                        ? "the old root \(old) was still attached at \(root)"
                        : "the old root \(old) was attached again at \(root)")
                note("the EBS repair ended early after detaching \(old): " + done.joined(separator: "; "))
            }
            try await mutate(PlannedCall("ec2", "StartInstances", region: request.region, [("InstanceId", id)])) {
                _ = try await ec2.startInstances([id])
            }
            note("the EBS repair ended early after stopping \(id); StartInstances was sent so it is not left stopped")
            try await finish(.compensated, "StartInstances sent for \(id)")
        } catch let lost as LeaseLost {
            throw lost
        } catch {
            note(
                "the EBS repair ended early after stopping \(id), and restoring it failed too (\(error)): \(id) may be STOPPED; root volumes: old \(record.resources.oldVolumeId ?? "?"), new \(record.resources.newVolumeId ?? "?")"
            )
        }
    }

    // MARK: Quarantine

    func runQuarantine(detachElasticIP: Bool, reason: String?) async throws -> StepResult {
        if let end = try await walk(quarantinePlan(detachElasticIP: detachElasticIP, reason: reason)) { return end }
        return .succeeded(
            summary:
                "\(target) (\(request.instanceId) in \(request.region)) is quarantined: \(quarantineValue(reason)). The decision worker takes no step on it until `recoveryctl unquarantine \(target)`"
                + (detachElasticIP ? "; its Elastic IP was taken off" : ""), newInstance: nil)
    }

    /// The `AutoRecovery:Quarantined` tag's value: when and why (tag values hold up to 256 characters).
    private func quarantineValue(_ reason: String?) -> String {
        String(
            "\(Timestamp.format(record.startedAt)) \(reason ?? "quarantined by \(request.requestedBy ?? "automation")")"
                .prefix(256))
    }

    func quarantinePlan(detachElasticIP: Bool, reason: String?) -> [PlannedSubStep] {
        let id = request.instanceId
        let region = request.region
        let value = quarantineValue(reason)
        return [
            PlannedSubStep(.quarantineTag) { [self] in
                try await mutate(
                    PlannedCall(
                        "ec2", "CreateTags", region: region,
                        [("ResourceId", id), ("Tag", "\(RecoveryTags.quarantined)=\(value)")])
                ) {
                    try await home.createTags(resourceIds: [id], tags: [RecoveryTags.quarantined: value])
                }
                try await finish(.quarantineTag, "\(id) tagged \(RecoveryTags.quarantined)=\(value)")
                return nil
            },
            PlannedSubStep(.quarantineTable) { [self] in
                try await setTableFlag(true)
                return nil
            },
            PlannedSubStep(.eipDetached, when: { detachElasticIP }) { [self] in
                let address = try await home.describeAddresses(
                    publicIps: [], allocationIds: [], filters: [EC2Filter("instance-id", [id])]
                ).first
                guard let address, let association = address.associationId else {
                    try await finish(.eipDetached, "no Elastic IP on \(id)")
                    return nil
                }
                try await mutate(
                    PlannedCall("ec2", "DisassociateAddress", region: region, [("AssociationId", association)])
                ) {
                    try await home.disassociateAddress(associationId: association)
                }
                note(
                    "Elastic IP \(address.publicIp) (\(address.allocationId ?? "?")) taken off \(id); associate it again by hand after the quarantine"
                )
                try await finish(.eipDetached, "Elastic IP \(address.publicIp) disassociated from \(id)") {
                    $0.allocationId = address.allocationId
                    $0.publicIp = address.publicIp
                }
                return nil
            },
        ]
    }

    func runUnquarantine() async throws -> StepResult {
        if let end = try await walk(unquarantinePlan()) { return end }
        return .succeeded(
            summary:
                "the quarantine of \(target) (\(request.instanceId)) is lifted; automation applies again from the next discovery (an Elastic IP taken off is not put back)",
            newInstance: nil)
    }

    func unquarantinePlan() -> [PlannedSubStep] {
        let id = request.instanceId
        return [
            PlannedSubStep(.quarantineTag) { [self] in
                try await mutate(
                    PlannedCall(
                        "ec2", "DeleteTags", region: request.region,
                        [("ResourceId", id), ("Tag.Key", RecoveryTags.quarantined)])
                ) {
                    try await home.deleteTags(resourceIds: [id], keys: [RecoveryTags.quarantined])
                }
                try await finish(.quarantineTag, "\(RecoveryTags.quarantined) removed from \(id)")
                return nil
            },
            PlannedSubStep(.quarantineTable) { [self] in
                try await setTableFlag(false)
                return nil
            },
        ]
    }

    /// Merges `quarantined` into the target's instance-config item (other settings are kept).
    private func setTableFlag(_ on: Bool) async throws {
        guard let table else {
            note(
                "no instance-config table (INSTANCE_CONFIG_TABLE): the tag alone \(on ? "quarantines" : "no longer quarantines") \(target)"
            )
            try await finish(.quarantineTable, "no table")
            return
        }
        try await mutate(
            PlannedCall(
                "dynamodb", "UpdateItem", region: table.dynamo.aws.region,
                [("TableName", table.tableName), ("Key", target), ("quarantined", "\(on)")])
        ) {
            try await table.merge(
                target: target, settings: Data(#"{"quarantined": \#(on)}"#.utf8), updatedBy: options.workerId,
                now: clock())
        }
        try await finish(.quarantineTable, "quarantined=\(on) merged into the \(table.tableName) item of \(target)")
    }

    /// The ids an outcome of a repair reports.
    static func repairResources(_ r: StepResources) -> [String: String]? {
        var out: [String: String] = [:]
        out["old_volume_id"] = r.oldVolumeId
        out["new_volume_id"] = r.newVolumeId
        out["evidence_snapshot_id"] = r.evidenceSnapshotId
        out["source_snapshot_id"] = r.snapshotId
        out["allocation_id"] = r.allocationId
        for (document, id) in r.commandIds ?? [:] where document != "diagnostics" { out["command_id.\(document)"] = id }
        return out.isEmpty ? nil : out
    }
}
