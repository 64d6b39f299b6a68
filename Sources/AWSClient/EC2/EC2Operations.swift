import Foundation

/// The EC2 calls the fleet's recovery makes (the actuator's steps and the DR pre-flight), as a port:
/// ``EC2Client`` is the driver that talks to AWS, `MemoryEC2` (FleetTestSupport) the in-memory one. Both
/// pass one contract test (`Tests/FleetWorkersTests/AWSPortContractTests.swift`).
///
/// One value per region; ``withRegion(_:)`` gives the same account in another region. Errors are
/// ``AWSError``s with AWS's codes (`InvalidInstanceID.NotFound`, `Resource.AlreadyAssociated`, …), after
/// the driver's own retries. The waiters (``waitUntilRunning(_:timeout:interval:)`` and the others in
/// EC2Waiters.swift) are written once over these calls, on the clock of ``dependencies``.
public protocol EC2Operations: Sendable {
    var region: String { get }
    /// The clock and sleep of the waiters.
    var dependencies: AWSClientDependencies { get }
    func withRegion(_ region: String) -> Self

    // Instances
    func describeInstances(instanceIds: [String], filters: [EC2Filter]) async throws -> [EC2Instance]
    /// Stopped instances are reported too (IncludeAllInstances).
    func describeInstanceStatus(instanceIds: [String], filters: [EC2Filter]) async throws -> [InstanceStatus]
    func rebootInstances(_ instanceIds: [String]) async throws
    func stopInstances(_ instanceIds: [String], force: Bool, hibernate: Bool?) async throws -> [InstanceStateChange]
    func startInstances(_ instanceIds: [String]) async throws -> [InstanceStateChange]
    /// One instance; with a `clientToken`, the instance already launched with it is returned instead.
    func runInstance(_ input: RunInstancesInput) async throws -> EC2Instance
    func createTags(resourceIds: [String], tags: [String: String]) async throws
    func deleteTags(resourceIds: [String], keys: [String]) async throws

    // Snapshots and images
    func describeSnapshots(snapshotIds: [String], ownerIds: [String], filters: [EC2Filter]) async throws
        -> [EC2Snapshot]
    func createSnapshot(volumeId: String, description: String?, tags: [String: String]) async throws -> EC2Snapshot
    func registerImage(_ input: RegisterImageInput) async throws -> String
    func describeImages(imageIds: [String], owners: [String], filters: [EC2Filter]) async throws -> [EC2Image]

    // Elastic IPs
    func describeAddresses(publicIps: [String], allocationIds: [String], filters: [EC2Filter]) async throws
        -> [EC2Address]
    func allocateAddress(tags: [String: String]) async throws -> EC2Address
    /// Returns the association id.
    func associateAddress(allocationId: String, instanceId: String, allowReassociation: Bool) async throws -> String
    func disassociateAddress(associationId: String) async throws

    // Volumes
    func describeVolumes(volumeIds: [String], filters: [EC2Filter]) async throws -> [EC2Volume]
    func createVolume(_ input: CreateVolumeInput) async throws -> EC2Volume
    func attachVolume(volumeId: String, instanceId: String, device: String) async throws -> VolumeAttachment
    func detachVolume(volumeId: String, instanceId: String?, device: String?, force: Bool) async throws
        -> VolumeAttachment
}

extension EC2Client: EC2Operations {
    public var dependencies: AWSClientDependencies { aws.dependencies }
}
