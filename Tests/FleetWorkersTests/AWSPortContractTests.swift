import AWSClient
import FleetTestSupport
import Foundation
import HTTPTransport
import Testing

/// The actuator's AWS ports: `MemoryEC2`, `MemoryRoute53` and `MemorySSM` must answer as `EC2Client`,
/// `Route53Client` and `SSMClient` do (against moto) wherever the actuator relies on it, so an actuator test
/// on the memory drivers says something about AWS. The real drivers run when AWS_ENDPOINT_URL is set.
/// Serialized, as the other moto suites: one test at a time keeps the shared moto server's queue short.
@Suite("Port contracts: memory and real AWS drivers", .serialized)
struct AWSPortContractTests {
    static var drivers: [String] { environment["AWS_ENDPOINT_URL"] == nil ? ["memory"] : ["memory", "moto"] }

    /// One driver's world: its EC2 in the home and DR regions, Route 53, SSM, an image to launch from, and
    /// how to remove what the test created (everything carries the tag `contract=<prefix>`).
    struct Rig {
        var ec2: any EC2Operations
        var dr: any EC2Operations
        var route53: any Route53Operations
        var ssm: any SSMOperations
        /// An image to launch from (moto: a public one, listed once per process: a slow call, so only the
        /// tests that launch ask for it).
        var image: @Sendable () async throws -> String
        var prefix = "contract-\(UUID().uuidString.prefix(8).lowercased())"
        /// A hosted zone to change (moto: created here, deleted at clean-up).
        var zone: @Sendable (String) async throws -> String
        var cleanUp: @Sendable (String) async -> Void

        var tags: [String: String] { ["contract": prefix] }
    }

    static func rig(_ driver: String) async throws -> Rig {
        if driver == "memory" {
            let aws = MemoryAWS()
            let ec2 = MemoryEC2(aws: aws)
            let route53 = MemoryRoute53(aws: aws)
            return Rig(
                ec2: ec2, dr: ec2.withRegion("us-west-2"), route53: route53, ssm: MemorySSM(aws: aws),
                image: { [image = ec2.addImage().imageId] in image }, zone: { route53.createHostedZone(name: $0) },
                cleanUp: { _ in })
        }
        let http = HTTPClient()
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: http, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
        let ec2 = EC2Client(aws)
        let route53 = Route53Client(aws)
        let zones = ZoneList()
        return Rig(
            ec2: ec2, dr: ec2.withRegion("us-west-2"), route53: route53, ssm: SSMClient(aws),
            image: { try await TestImage.shared.id(ec2) },
            zone: { name in
                let zone = try await route53.createHostedZone(name: name)
                await zones.add(zone.id)
                return zone.id
            },
            cleanUp: { prefix in
                await Self.removeTagged(prefix, ec2)
                await Self.removeTagged(prefix, ec2.withRegion("us-west-2"))
                for zone in await zones.ids {
                    for set in (try? await route53.listResourceRecordSets(hostedZoneId: zone)) ?? []
                    where set.type == .a {
                        _ = try? await route53.changeResourceRecordSets(
                            hostedZoneId: zone, changes: [.init(.delete, set)])
                    }
                    _ = try? await route53.deleteHostedZone(zone)
                }
                http.shutdown()
            })
    }

    /// Runs `body` on the driver's rig and always cleans up, also after a failed `#require`.
    static func with(_ driver: String, _ body: (Rig) async throws -> Void) async throws {
        let rig = try await rig(driver)
        do { try await body(rig) } catch { Issue.record(error) }
        await rig.cleanUp(rig.prefix)
    }

    actor ZoneList {
        private(set) var ids: [String] = []
        func add(_ id: String) { ids.append(id) }
    }

    /// moto clean-up: what carries `contract=<prefix>` in the region.
    static func removeTagged(_ prefix: String, _ ec2: EC2Client) async {
        let tag = EC2Filter.tag("contract", prefix)
        for address in (try? await ec2.describeAddresses(filters: [tag])) ?? [] {
            if let association = address.associationId {
                try? await ec2.disassociateAddress(associationId: association)
            }
            if let allocation = address.allocationId { try? await ec2.releaseAddress(allocationId: allocation) }
        }
        let instances = ((try? await ec2.describeInstances(filters: [tag])) ?? []).map(\.instanceId)
        if !instances.isEmpty { _ = try? await ec2.terminateInstances(instances) }
        for image in (try? await ec2.describeImages(owners: ["self"], filters: [tag])) ?? [] {
            try? await ec2.deregisterImage(image.imageId)
        }
        for snapshot in (try? await ec2.describeSnapshots(filters: [tag])) ?? [] {
            try? await ec2.deleteSnapshot(snapshot.snapshotId)
        }
        for volume in (try? await ec2.describeVolumes(filters: [tag])) ?? [] {
            if !volume.attachments.isEmpty { _ = try? await ec2.detachVolume(volumeId: volume.volumeId, force: true) }
            try? await ec2.deleteVolume(volume.volumeId)
        }
    }

    /// The AWS error code `body` fails with (nil when it does not fail with an `AWSError`).
    static func code(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let error as AWSError {
            return error.code
        } catch {
            return "not an AWSError: \(error)"
        }
    }

    static let wait = (timeout: Duration.seconds(30), interval: Duration.milliseconds(100))

    func launch(_ rig: Rig, _ ec2: any EC2Operations, image: String? = nil, token: String? = nil) async throws
        -> EC2Instance
    {
        let imageId: String
        if let image { imageId = image } else { imageId = try await rig.image() }
        let instance = try await ec2.runInstance(
            RunInstancesInput(
                imageId: imageId, instanceType: "t3.micro", tags: rig.tags.merging(["Name": "contract"]) { $1 },
                clientToken: token))
        return try #require(
            try await ec2.waitUntilRunning(
                [instance.instanceId], timeout: Self.wait.timeout, interval: Self.wait.interval
            ).first)
    }

    // MARK: EC2

    @Test(
        "instances: one launch per client token; stopped is reported stopped; started runs with ok checks; tags; regions apart",
        .timeLimit(.minutes(2)), arguments: drivers)
    func instances(_ driver: String) async throws {
        try await Self.with(driver) { rig in
            let token = "ar-\(rig.prefix)"
            let a = try await launch(rig, rig.ec2, token: token)
            #expect(
                try await launch(rig, rig.ec2, token: token).instanceId == a.instanceId,
                "the same client token launches once")
            #expect(a.state == .running && a.instanceType == "t3.micro" && a.tags["contract"] == rig.prefix)
            #expect(
                try await rig.ec2.describeInstances(instanceIds: [], filters: [.tag("contract", rig.prefix)]).map(
                    \.instanceId) == [a.instanceId])

            try await rig.ec2.rebootInstances([a.instanceId])
            _ = try await rig.ec2.stopInstances([a.instanceId], force: false, hibernate: nil)
            let stopped = try await rig.ec2.waitUntilStopped(
                [a.instanceId], timeout: Self.wait.timeout, interval: Self.wait.interval)
            #expect(stopped.map(\.state) == [.stopped])
            #expect(
                try await rig.ec2.describeInstances(instanceIds: [a.instanceId], filters: []).first?.state == .stopped)
            #expect(
                try await rig.ec2.describeInstanceStatus(instanceIds: [a.instanceId], filters: []).first?.state
                    == .stopped,
                "a stopped instance has a status too (IncludeAllInstances)")
            _ = try await rig.ec2.startInstances([a.instanceId])
            try await rig.ec2.waitUntilRunning([a.instanceId], timeout: Self.wait.timeout, interval: Self.wait.interval)
            let status = try #require(
                try await rig.ec2.describeInstanceStatus(instanceIds: [a.instanceId], filters: []).first)
            #expect(status.state == .running && status.systemStatus.isOK && status.instanceStatus.isOK)

            try await rig.ec2.createTags(resourceIds: [a.instanceId], tags: ["AutoRecovery:ReplacedBy": "i-0new"])
            #expect(
                try await rig.ec2.describeInstances(instanceIds: [a.instanceId], filters: []).first?.tags[
                    "AutoRecovery:ReplacedBy"] == "i-0new")
            try await rig.ec2.deleteTags(resourceIds: [a.instanceId], keys: ["AutoRecovery:ReplacedBy"])
            #expect(
                try await rig.ec2.describeInstances(instanceIds: [a.instanceId], filters: []).first?.tags[
                    "AutoRecovery:ReplacedBy"] == nil)

            #expect(
                await Self.code {
                    _ = try await rig.ec2.describeInstances(instanceIds: ["i-0123456789abcdef0"], filters: [])
                }
                    == "InvalidInstanceID.NotFound")
            #expect(
                await Self.code { _ = try await rig.dr.describeInstances(instanceIds: [a.instanceId], filters: []) }
                    == "InvalidInstanceID.NotFound", "an instance of us-east-1 is not in us-west-2")
        }
    }

    @Test(
        "Elastic IPs: an address moved is associated with the new instance, only with reassociation allowed",
        .timeLimit(.minutes(2)), arguments: drivers)
    func elasticIPs(_ driver: String) async throws {
        try await Self.with(driver) { rig in
            let old = try await launch(rig, rig.ec2)
            let new = try await launch(rig, rig.ec2)
            let address = try await rig.ec2.allocateAddress(tags: rig.tags)
            let allocation = try #require(address.allocationId)
            func current() async throws -> EC2Address? {
                try await rig.ec2.describeAddresses(publicIps: [], allocationIds: [allocation], filters: []).first
            }
            _ = try await rig.ec2.associateAddress(
                allocationId: allocation, instanceId: old.instanceId, allowReassociation: true)
            #expect(try await current()?.instanceId == old.instanceId)

            #expect(
                await Self.code {
                    _ = try await rig.ec2.associateAddress(
                        allocationId: allocation, instanceId: new.instanceId, allowReassociation: false)
                } == "Resource.AlreadyAssociated")
            #expect(try await current()?.instanceId == old.instanceId, "a refused move leaves the address where it was")
            let association = try await rig.ec2.associateAddress(
                allocationId: allocation, instanceId: new.instanceId, allowReassociation: true)
            let moved = try #require(try await current())
            #expect(moved.instanceId == new.instanceId && moved.associationId == association)
            #expect(
                try await rig.ec2.describeInstances(instanceIds: [new.instanceId], filters: []).first?.publicIpAddress
                    == address.publicIp)
            #expect(
                try await rig.ec2.describeAddresses(
                    publicIps: [], allocationIds: [], filters: [EC2Filter("instance-id", [old.instanceId])]
                ).isEmpty)
            #expect(
                try await rig.ec2.describeAddresses(
                    publicIps: [], allocationIds: [], filters: [EC2Filter("instance-id", [new.instanceId])]
                )
                .map(\.allocationId) == [allocation])
            #expect(
                try await rig.ec2.describeAddresses(
                    publicIps: [], allocationIds: [], filters: [.tag("contract", rig.prefix)]
                )
                .map(\.allocationId) == [allocation])

            try await rig.ec2.disassociateAddress(associationId: association)
            #expect(try await current()?.instanceId == nil)
            #expect(
                await Self.code {
                    _ = try await rig.ec2.describeAddresses(
                        publicIps: [], allocationIds: ["eipalloc-0000000000000dead"], filters: [])
                } == "InvalidAllocationID.NotFound")
        }
    }

    @Test(
        "snapshots and images: a tagged completed snapshot is found, an image of it launches; another region sees neither",
        .timeLimit(.minutes(2)), arguments: drivers)
    func snapshotsAndImages(_ driver: String) async throws {
        try await Self.with(driver) { rig in
            let target = "\(rig.prefix)-site"
            let volume = try await rig.ec2.createVolume(
                CreateVolumeInput(availabilityZone: "us-east-1a", size: 8, tags: rig.tags))
            try await rig.ec2.waitUntilVolumeAvailable(
                volume.volumeId, timeout: Self.wait.timeout, interval: Self.wait.interval)
            let created = try await rig.ec2.createSnapshot(
                volumeId: volume.volumeId, description: "contract",
                tags: rig.tags.merging(["AutoRecovery:Name": target]) { $1 })
            try await rig.ec2.waitUntilSnapshotCompleted(
                created.snapshotId, timeout: Self.wait.timeout, interval: Self.wait.interval)
            let tagged = [EC2Filter.tag("AutoRecovery:Name", target), EC2Filter("status", ["completed"])]
            let found = try await rig.ec2.describeSnapshots(snapshotIds: [], ownerIds: ["self"], filters: tagged)
            #expect(found.map(\.snapshotId) == [created.snapshotId])
            #expect(found.first?.state == "completed" && found.first?.tags["AutoRecovery:Name"] == target)
            #expect(try await rig.dr.describeSnapshots(snapshotIds: [], ownerIds: ["self"], filters: tagged).isEmpty)

            let name = "autorecovery-\(rig.prefix)"
            let imageId = try await rig.ec2.registerImage(
                .fromSnapshot(name: name, snapshotId: created.snapshotId, tags: rig.tags))
            try await rig.ec2.waitUntilImageAvailable(imageId, timeout: Self.wait.timeout, interval: Self.wait.interval)
            #expect(
                try await rig.ec2.describeImages(imageIds: [], owners: ["self"], filters: [EC2Filter("name", [name])])
                    .map(\.imageId) == [imageId])
            #expect(
                try await rig.dr.describeImages(imageIds: [], owners: ["self"], filters: [EC2Filter("name", [name])])
                    .isEmpty)
            let launched = try await launch(rig, rig.ec2, image: imageId)
            #expect(launched.imageId == imageId)

            #expect(
                await Self.code {
                    _ = try await rig.ec2.describeSnapshots(
                        snapshotIds: ["snap-0123456789abcdef0"], ownerIds: ["self"], filters: [])
                } == "InvalidSnapshot.NotFound")
            #expect(
                await Self.code {
                    _ = try await rig.ec2.describeImages(imageIds: ["ami-0123456789abcdef0"], owners: [], filters: [])
                }
                    == "InvalidAMIID.NotFound")
        }
    }

    @Test("volumes: attached to a stopped instance and detached again", .timeLimit(.minutes(2)), arguments: drivers)
    func volumes(_ driver: String) async throws {
        try await Self.with(driver) { rig in
            let instance = try await launch(rig, rig.ec2)
            _ = try await rig.ec2.stopInstances([instance.instanceId], force: false, hibernate: nil)
            try await rig.ec2.waitUntilStopped(
                [instance.instanceId], timeout: Self.wait.timeout, interval: Self.wait.interval)
            let zone = try #require(instance.availabilityZone)
            let data = rig.tags.merging(["Purpose": "data"]) { $1 }
            let volume = try await rig.ec2.createVolume(CreateVolumeInput(availabilityZone: zone, size: 8, tags: data))
            try await rig.ec2.waitUntilVolumeAvailable(
                volume.volumeId, timeout: Self.wait.timeout, interval: Self.wait.interval)

            _ = try await rig.ec2.attachVolume(
                volumeId: volume.volumeId, instanceId: instance.instanceId, device: "/dev/sdf")
            let attached = try await rig.ec2.waitUntilVolumeAttached(
                volume.volumeId, to: instance.instanceId, timeout: Self.wait.timeout,
                interval: Self.wait.interval)
            #expect(attached.attachments.map(\.instanceId) == [instance.instanceId])
            #expect(
                try await rig.ec2.describeVolumes(
                    volumeIds: [], filters: [.tag("contract", rig.prefix), .tag("Purpose", "data")]
                )
                .map(\.volumeId) == [volume.volumeId])
            let root = try #require(instance.blockDevices.first?.volumeId)
            #expect(
                try await rig.ec2.describeVolumes(volumeIds: [root], filters: []).first?.tags["contract"] == rig.prefix,
                "the launch tags the root volume too")

            _ = try await rig.ec2.detachVolume(
                volumeId: volume.volumeId, instanceId: instance.instanceId, device: "/dev/sdf", force: false)
            let free = try await rig.ec2.waitUntilVolumeAvailable(
                volume.volumeId, timeout: Self.wait.timeout, interval: Self.wait.interval)
            #expect(free.state == "available")
            #expect(!free.attachments.contains { $0.instanceId == instance.instanceId && $0.state == "attached" })
        }
    }

    // MARK: Route 53

    @Test(
        "Route 53: an UPSERT replaces the A record, its change gets INSYNC, the listing from the name shows it",
        .timeLimit(.minutes(2)), arguments: drivers)
    func route53(_ driver: String) async throws {
        try await Self.with(driver) { rig in
            let zoneName = "\(rig.prefix).example.com"
            let zone = try await rig.zone(zoneName)
            let name = "www.\(zoneName)"
            let first = try await rig.route53.upsertARecord(
                hostedZoneId: zone, name: name, addresses: ["192.0.2.10"], ttl: 60, comment: "contract")
            #expect(
                try await rig.route53.waitUntilChangeInsync(
                    first.id, timeout: Self.wait.timeout, interval: Self.wait.interval
                ).status == .insync)
            func record() async throws -> ResourceRecordSet? {
                try await rig.route53.listResourceRecordSets(hostedZoneId: zone, startName: name, startType: .a)
                    .first { DRPreflightNames.same($0.name, name) && $0.type == .a }
            }
            #expect(try await record()?.values == ["192.0.2.10"])
            #expect(try await record()?.ttl == 60)
            #expect(try await record()?.name.hasSuffix(".") == true, "names come back absolute")

            let second = try await rig.route53.upsertARecord(
                hostedZoneId: zone, name: name, addresses: ["192.0.2.20"], ttl: 60, comment: nil)
            try await rig.route53.waitUntilChangeInsync(
                second.id, timeout: Self.wait.timeout, interval: Self.wait.interval)
            #expect(try await record()?.values == ["192.0.2.20"], "UPSERT replaces, it does not add")
            let all = try await rig.route53.listResourceRecordSets(hostedZoneId: zone, startName: nil, startType: nil)
            #expect(all.filter { $0.type == .a }.count == 1)
            #expect(Set(all.map(\.type)).isSuperset(of: [.ns, .soa]), "a zone keeps its NS and SOA records")

            #expect(
                await Self.code {
                    _ = try await rig.route53.listResourceRecordSets(
                        hostedZoneId: "Z0000000DEAD", startName: nil, startType: nil)
                }
                    == "NoSuchHostedZone")
            #expect(
                await Self.code {
                    _ = try await rig.route53.upsertARecord(
                        hostedZoneId: "Z0000000DEAD", name: name, addresses: ["192.0.2.1"], ttl: 60, comment: nil)
                } == "NoSuchHostedZone")
        }
    }

    // MARK: SSM

    @Test(
        "SSM: a command sent finishes on its instance; another instance or an unknown command is its own error",
        .timeLimit(.minutes(2)), arguments: drivers)
    func ssm(_ driver: String) async throws {
        try await Self.with(driver) { rig in
            let instance = "i-0c0de\(rig.prefix.suffix(8))"
            let command = try await rig.ssm.sendCommand(
                SendCommandInput(
                    documentName: "AWS-RunShellScript", instanceIds: [instance], parameters: ["commands": ["true"]],
                    timeoutSeconds: 60,
                    comment: rig.prefix))
            // (moto answers every instance it knows in `instanceIds`: not part of the contract.)
            #expect(!command.commandId.isEmpty)
            let done = try await rig.ssm.waitUntilCommandFinished(
                commandId: command.commandId, instanceId: instance,
                timeout: Self.wait.timeout, interval: Self.wait.interval)
            #expect(done.status == .success && done.responseCode == 0)
            await #expect(
                throws: SSMError.invocationDoesNotExist(commandId: command.commandId, instanceId: "i-0000000000000beef")
            ) {
                _ = try await rig.ssm.getCommandInvocation(
                    commandId: command.commandId, instanceId: "i-0000000000000beef", pluginName: nil)
            }
            let unknown = UUID().uuidString.lowercased()
            await #expect(throws: SSMError.invalidCommandId(unknown)) {
                _ = try await rig.ssm.getCommandInvocation(commandId: unknown, instanceId: instance, pluginName: nil)
            }
        }
    }
}
