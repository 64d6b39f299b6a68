import Foundation
import Testing

@testable import AWSClient

/// Every EC2 call against moto (AWS_ENDPOINT_URL), in two regions on one server. Waiters run on an
/// injected clock and sleep, so nothing waits in real time. Resources carry a per-run tag and are
/// removed at the end.
@Suite("EC2 against moto", .enabled(if: TestEnvironment.motoEndpoint != nil), .serialized)
struct EC2IntegrationTests {
    let runId = uniqueName("ec2it")
    let primary: EC2Client
    let dr: EC2Client

    init() {
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDMOTO", secretAccessKey: "moto-secret")),
            http: testHTTP, environment: ["AWS_ENDPOINT_URL": TestEnvironment.motoEndpoint ?? ""],
            dependencies: SleepRecorder().dependencies)
        primary = EC2Client(aws)
        dr = primary.withRegion("us-west-2")
    }

    func amazonImage(_ ec2: EC2Client) async throws -> EC2Image {
        let images = try await ec2.describeImages(owners: ["amazon"], filters: [EC2Filter("architecture", ["x86_64"])])
        return try #require(images.first { $0.state == "available" })
    }

    @Test("instances: run (idempotent token), tags, status, reboot, stop, start, terminate, waiters, pages")
    func instanceLifecycle() async throws {
        try await withCleanup { cleanup in
            let image = try await amazonImage(primary)
            let token = "\(runId)-launch"
            let input = RunInstancesInput(
                imageId: image.imageId, instanceType: "t3.micro", tags: ["Name": runId, "run": runId],
                userData: "#!/bin/sh\necho recovered\n", clientToken: token)
            let first = try await primary.runInstance(input)
            await cleanup.add("instance \(first.instanceId)") { [primary] in
                _ = try await primary.terminateInstances([first.instanceId])
            }
            let again = try await primary.runInstance(input)
            #expect(again.instanceId == first.instanceId)
            #expect(first.tags["Name"] == runId)
            #expect(first.imageId == image.imageId)

            let running = try await primary.waitUntilRunning([first.instanceId], interval: .seconds(5))
            #expect(running.first?.state == .running)
            #expect(
                try await primary.describeInstances(filters: [.tag("run", runId)]).map(\.instanceId) == [
                    first.instanceId
                ])

            try await primary.createTags(resourceIds: [first.instanceId], tags: ["role": "web", "owner": "fleet"])
            let tagged = try #require(try await primary.describeInstances(instanceIds: [first.instanceId]).first)
            #expect(tagged.tags["role"] == "web" && tagged.tags["owner"] == "fleet" && tagged.tags["Name"] == runId)
            #expect(try await primary.describeInstances(filters: [.tag("role", "web"), .tag("run", runId)]).count == 1)
            #expect(try await primary.describeInstances(filters: [.tag("role", "db"), .tag("run", runId)]).isEmpty)

            let status = try #require(try await primary.describeInstanceStatus(instanceIds: [first.instanceId]).first)
            #expect(status.state == .running)
            #expect(status.systemStatus.isOK && status.instanceStatus.isOK)

            try await primary.rebootInstances([first.instanceId])
            let stopping = try await primary.stopInstances([first.instanceId])
            #expect(stopping.first?.previousState == .running)
            try await primary.waitUntilStopped([first.instanceId])
            let stoppedStatus = try #require(
                try await primary.describeInstanceStatus(instanceIds: [first.instanceId]).first)
            #expect(stoppedStatus.state == .stopped)  // reported thanks to IncludeAllInstances

            let starting = try await primary.startInstances([first.instanceId])
            #expect(starting.first?.previousState == .stopped)
            try await primary.waitUntilRunning([first.instanceId])

            // Six more instances, then a tag-filtered describe in pages of 5 (seven results: two pages).
            let counting = CountingTransport(testHTTP)
            var paged = EC2Client(
                AWSClient(
                    region: "us-east-1", credentials: primary.aws.credentialProvider, http: counting,
                    environment: primary.aws.environment))
            paged.pageSize = 5
            var ids = [first.instanceId]
            for n in 0..<6 {
                let extra = try await primary.runInstance(
                    RunInstancesInput(
                        imageId: image.imageId, instanceType: "t3.nano", tags: ["run": runId, "n": "\(n)"]))
                ids.append(extra.instanceId)
                await cleanup.add("instance \(extra.instanceId)") { [primary] in
                    _ = try await primary.terminateInstances([extra.instanceId])
                }
            }
            let all = try await paged.describeInstances(filters: [.tag("run", runId)])
            #expect(Set(all.map(\.instanceId)) == Set(ids))
            #expect(all.count == 7)
            #expect(counting.actions.filter { $0 == "DescribeInstances" }.count >= 2)

            let terminated = try await primary.terminateInstances(ids)
            #expect(Set(terminated.map(\.instanceId)) == Set(ids))
            try await primary.waitUntilTerminated(ids)
            // A running waiter on a terminated instance fails at once instead of timing out.
            do {
                try await primary.waitUntilRunning([first.instanceId])
                Issue.record("expected a failure state")
            } catch let error as WaiterError {
                #expect(error.reason == .failureState)
            }
        }
    }

    @Test("volumes, snapshots, cross-region copy, image from snapshot, DR launch; regions are isolated")
    func disasterRecoveryPath() async throws {
        try await withCleanup { cleanup in
            let image = try await amazonImage(primary)
            let source = try await primary.runInstance(
                RunInstancesInput(imageId: image.imageId, instanceType: "t3.micro", tags: ["run": runId]))
            await cleanup.add("instance") { [primary] in _ = try await primary.terminateInstances([source.instanceId]) }
            try await primary.waitUntilRunning([source.instanceId])
            let zone = try #require(source.availabilityZone)

            // Volume: create, attach, detach.
            let volume = try await primary.createVolume(
                CreateVolumeInput(availabilityZone: zone, size: 8, volumeType: "gp3", tags: ["run": runId]))
            await cleanup.add("volume") { [primary] in try await primary.deleteVolume(volume.volumeId) }
            #expect(volume.size == 8)
            try await primary.waitUntilVolumeAvailable(volume.volumeId)
            let attachment = try await primary.attachVolume(
                volumeId: volume.volumeId, instanceId: source.instanceId, device: "/dev/sdf")
            #expect(attachment.instanceId == source.instanceId)
            let attached = try #require(try await primary.describeVolumes(volumeIds: [volume.volumeId]).first)
            #expect(attached.attachments.first?.instanceId == source.instanceId)
            #expect(attached.attachments.first?.device == "/dev/sdf")
            #expect(
                try await primary.describeVolumes(filters: [.tag("run", runId)]).map(\.volumeId).contains(
                    volume.volumeId))
            _ = try await primary.detachVolume(volumeId: volume.volumeId, instanceId: source.instanceId)
            let detached = try await primary.waitUntilVolumeAvailable(volume.volumeId)
            #expect(detached.attachments.isEmpty)

            // Snapshot in the primary region, copied to DR.
            let snapshot = try await primary.createSnapshot(
                volumeId: volume.volumeId, description: "recovery \(runId)", tags: ["run": runId])
            await cleanup.add("snapshot") { [primary] in try await primary.deleteSnapshot(snapshot.snapshotId) }
            #expect(snapshot.volumeId == volume.volumeId)
            try await primary.waitUntilSnapshotCompleted(snapshot.snapshotId)
            let owned = try await primary.describeSnapshots(filters: [.tag("run", runId)])
            #expect(owned.map(\.snapshotId) == [snapshot.snapshotId])
            #expect(owned.first?.tags["run"] == runId)

            let copyId = try await dr.copySnapshot(
                sourceSnapshotId: snapshot.snapshotId, sourceRegion: "us-east-1", description: "dr copy \(runId)",
                tags: ["run": runId])
            await cleanup.add("snapshot copy") { [dr] in try await dr.deleteSnapshot(copyId) }
            let copy = try await dr.waitUntilSnapshotCompleted(copyId)
            #expect(copy.snapshotId == copyId)
            // Region isolation: the copy exists only in DR, the original only in the primary.
            await expectNotFound { _ = try await primary.describeSnapshots(snapshotIds: [copyId]) }
            await expectNotFound { _ = try await dr.describeSnapshots(snapshotIds: [snapshot.snapshotId]) }

            // Image in DR from the copied snapshot, and an instance from it (idempotent by token).
            let imageId = try await dr.registerImage(
                .fromSnapshot(name: "recovery-\(runId)", snapshotId: copyId, rootDeviceName: "/dev/xvda", volumeSize: 8)
            )
            await cleanup.add("image") { [dr] in try await dr.deregisterImage(imageId) }
            let registered = try await dr.waitUntilImageAvailable(imageId)
            #expect(registered.name == "recovery-\(runId)")
            // moto ignores RootDeviceName and BlockDeviceMappings of RegisterImage (their encoding is
            // checked in EC2EncodingTests).
            #expect(
                try await dr.describeImages(owners: ["self"], filters: [EC2Filter("name", ["recovery-\(runId)"])]).map(
                    \.imageId) == [imageId])
            await expectNotFound { _ = try await primary.describeImages(imageIds: [imageId]) }

            let launch = RunInstancesInput(
                imageId: imageId, instanceType: "t3.micro", tags: ["run": runId, "Name": "dr-\(runId)"],
                clientToken: "\(runId)-dr")
            let drInstance = try await dr.runInstance(launch)
            await cleanup.add("dr instance") { [dr] in _ = try await dr.terminateInstances([drInstance.instanceId]) }
            #expect(try await dr.runInstance(launch).instanceId == drInstance.instanceId)
            try await dr.waitUntilRunning([drInstance.instanceId])
            #expect(drInstance.availabilityZone?.hasPrefix("us-west-2") == true)
            await expectNotFound { _ = try await primary.describeInstances(instanceIds: [drInstance.instanceId]) }
            #expect(
                try await primary.describeInstances(filters: [.tag("run", runId)]).map(\.instanceId) == [
                    source.instanceId
                ])
            #expect(
                try await dr.describeInstances(filters: [.tag("run", runId)]).map(\.instanceId) == [
                    drInstance.instanceId
                ])
        }
    }

    @Test("Elastic IPs: allocate, associate, move to another instance, disassociate, release")
    func addresses() async throws {
        try await withCleanup { cleanup in
            let image = try await amazonImage(dr)
            var instances: [EC2Instance] = []
            for n in 0..<2 {
                let instance = try await dr.runInstance(
                    RunInstancesInput(
                        imageId: image.imageId, instanceType: "t3.micro", tags: ["run": runId, "n": "\(n)"]))
                instances.append(instance)
                await cleanup.add("instance") { [dr] in _ = try await dr.terminateInstances([instance.instanceId]) }
            }
            try await dr.waitUntilRunning(instances.map(\.instanceId))
            let address = try await dr.allocateAddress(tags: ["run": runId])
            let allocationId = try #require(address.allocationId)
            await cleanup.add("address") { [dr] in try await dr.releaseAddress(allocationId: allocationId) }
            #expect(address.domain == "vpc")

            _ = try await dr.associateAddress(allocationId: allocationId, instanceId: instances[0].instanceId)
            var described = try #require(try await dr.describeAddresses(allocationIds: [allocationId]).first)
            #expect(described.instanceId == instances[0].instanceId)
            #expect(described.publicIp == address.publicIp)

            let moved = try await dr.associateAddress(
                allocationId: allocationId, instanceId: instances[1].instanceId, allowReassociation: true)
            described = try #require(try await dr.describeAddresses(publicIps: [address.publicIp]).first)
            #expect(described.instanceId == instances[1].instanceId)
            #expect(described.associationId == moved)
            // The address lives in DR only.
            #expect(try await primary.describeAddresses(filters: [EC2Filter("allocation-id", [allocationId])]).isEmpty)

            try await dr.disassociateAddress(associationId: moved)
            #expect(try await dr.describeAddresses(allocationIds: [allocationId]).first?.instanceId == nil)
        }
    }

    @Test("a missing resource is a typed client error, not retried")
    func notFound() async throws {
        do {
            _ = try await primary.describeInstances(instanceIds: ["i-0123456789abcdef0"])
            Issue.record("expected InvalidInstanceID.NotFound")
        } catch let error as AWSError {
            #expect(error.kind == .clientError)
            #expect(error.code == "InvalidInstanceID.NotFound")
            #expect(error.attempts == 1)
            #expect(error.region == "us-east-1")
        }
    }

    func expectNotFound(_ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected a NotFound error")
        } catch let error as AWSError {
            #expect(error.code?.hasSuffix(".NotFound") == true, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
