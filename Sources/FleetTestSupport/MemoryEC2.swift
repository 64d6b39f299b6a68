import AWSClient
import Foundation

/// A resource and the region it lives in.
struct Regional<Value: Sendable>: Sendable {
    var region: String
    var value: Value
}

/// What the memory EC2 holds, for every region of one `MemoryAWS` account.
struct EC2World: Sendable {
    struct Instance: Sendable {
        var region: String
        var value: EC2Instance
        /// The status checks while running ("ok" or "impaired").
        var systemStatus = "ok"
        var instanceStatus = "ok"
    }

    var instances: [String: Instance] = [:]
    var snapshots: [String: Regional<EC2Snapshot>] = [:]
    var images: [String: Regional<EC2Image>] = [:]
    var volumes: [String: Regional<EC2Volume>] = [:]
    /// By allocation id.
    var addresses: [String: Regional<EC2Address>] = [:]
    var nextAddress = 1
}

/// The in-memory `EC2Operations`: one region's view of a `MemoryAWS` account (`withRegion` gives another
/// region of the same account). It keeps what the actuator's ladder needs: instances with states, tags,
/// root volumes and status checks; snapshots and images with tags; volumes and their attachments; Elastic
/// IPs and their associations. Changes take effect at once (a stopped instance is `stopped` on the next
/// describe); a resource of another region is not found, as in EC2. Refusals use AWS's error codes
/// (`InvalidInstanceID.NotFound`, `IncorrectInstanceState`, `Resource.AlreadyAssociated`, …). Every call
/// is logged in `aws.calls` and can be failed with `aws.fail`/`throttle`/`outage`.
public struct MemoryEC2: EC2Operations, MemoryRegionalDriver {
    public let aws: MemoryAWS
    public let region: String

    public init(region: String = "us-east-1", aws: MemoryAWS = MemoryAWS()) { (self.region, self.aws) = (region, aws) }

    /// Runs one EC2 call on the shared state: logged, failable, refusals as `AWSError`s.
    func call<T>(_ operation: String, _ detail: String, _ body: (inout EC2World, Refuse) throws -> T) throws -> T {
        try aws.call("EC2", operation, region: region, detail) {
            try aws.ec2State.withLock { try body(&$0, Refuse(operation: operation, region: region)) }
        }
    }

    /// Builds the refusal of one call.
    struct Refuse {
        var operation: String
        var region: String
        func callAsFunction(_ code: String, _ message: String) -> AWSError {
            MemoryAWS.refusal("EC2", operation, region, code, message)
        }
    }

    // MARK: Instances

    public func describeInstances(instanceIds: [String], filters: [EC2Filter]) async throws -> [EC2Instance] {
        try call("DescribeInstances", instanceIds.joined(separator: " ")) { world, refuse in
            try world.findInstances(instanceIds, in: region, refuse)
                .filter { try Self.matches($0.value, filters, refuse) }.map(\.value)
        }
    }

    public func describeInstanceStatus(instanceIds: [String], filters: [EC2Filter]) async throws -> [InstanceStatus] {
        try call("DescribeInstanceStatus", instanceIds.joined(separator: " ")) { world, refuse in
            try world.findInstances(instanceIds, in: region, refuse).filter {
                try Self.matches($0.value, filters, refuse)
            }.map { i in
                let running = i.value.state == .running
                return InstanceStatus(
                    instanceId: i.value.instanceId, availabilityZone: i.value.availabilityZone, state: i.value.state,
                    systemStatus: StatusCheck(status: running ? i.systemStatus : "not-applicable"),
                    instanceStatus: StatusCheck(status: running ? i.instanceStatus : "not-applicable"))
            }
        }
    }

    public func rebootInstances(_ instanceIds: [String]) async throws {
        try call("RebootInstances", instanceIds.joined(separator: " ")) { world, refuse in
            for instance in try world.findInstances(instanceIds, in: region, refuse)
            where ![.running, .pending].contains(instance.value.state) {
                throw refuse(
                    "IncorrectInstanceState",
                    "The instance '\(instance.value.instanceId)' is not in a state from which it can be rebooted.")
            }
        }
    }

    public func stopInstances(_ instanceIds: [String], force: Bool, hibernate: Bool?) async throws
        -> [InstanceStateChange]
    {
        try transition(
            "StopInstances", instanceIds, force ? " force" : "", to: .stopped, reported: .stopping, verb: "stopped"
        ) { world, id in
            world.elasticIP(on: id)
        }
    }

    public func startInstances(_ instanceIds: [String]) async throws -> [InstanceStateChange] {
        try transition("StartInstances", instanceIds, "", to: .running, reported: .pending, verb: "started") {
            world, id in
            world.elasticIP(on: id) ?? world.newPublicIp(region)
        }
    }

    /// Stop or start: every instance must exist and not be gone; each moves to `state` at once (AWS reports
    /// `reported` on the way there) and gets the public address `address` gives.
    private func transition(
        _ operation: String, _ ids: [String], _ detail: String, to state: InstanceStateName,
        reported: InstanceStateName, verb: String,
        address: (inout EC2World, String) -> String?
    ) throws -> [InstanceStateChange] {
        try call(operation, ids.joined(separator: " ") + detail) { world, refuse in
            let found = try world.findInstances(ids, in: region, refuse)
            // As EC2 does: nothing gone, and no start while stopping, no stop while pending.
            let halfway: InstanceStateName = state == .running ? .stopping : .pending
            if let gone = found.first(where: { [.terminated, .shuttingDown, halfway].contains($0.value.state) }) {
                throw refuse(
                    "IncorrectInstanceState",
                    "The instance '\(gone.value.instanceId)' is not in a state from which it can be \(verb).")
            }
            return found.map { instance in
                let id = instance.value.instanceId
                let before = instance.value.state
                let publicIp = address(&world, id)
                world.instances[id]?.value.state = state
                world.instances[id]?.value.publicIpAddress = publicIp
                return InstanceStateChange(
                    instanceId: id, previousState: before, currentState: before == state ? state : reported)
            }
        }
    }

    public func runInstance(_ input: RunInstancesInput) async throws -> EC2Instance {
        let id = aws.newId("i")
        let volumeId = aws.newId("vol")
        return try call("RunInstances", "\(input.imageId) \(input.instanceType)") { world, refuse in
            if let token = input.clientToken,
                let existing = world.instances.values.first(where: {
                    $0.region == region && $0.value.tags[EC2Client.clientTokenTagKey] == token
                })
            {
                return existing.value
            }
            guard let image = world.images[input.imageId], image.region == region else {
                throw refuse("InvalidAMIID.NotFound", "The image id '[\(input.imageId)]' does not exist")
            }
            guard image.value.state == "available" else {
                throw refuse("InvalidAMIID.Unavailable", "The image '\(input.imageId)' is \(image.value.state)")
            }
            var tags = input.tags
            if let token = input.clientToken { tags[EC2Client.clientTokenTagKey] = token }
            let zone = input.availabilityZone ?? "\(region)a"
            let root = image.value.rootDeviceName ?? "/dev/xvda"
            let mapping = image.value.blockDeviceMappings.first { $0.deviceName == root }?.ebs
            let size = mapping?.volumeSize ?? mapping?.snapshotId.flatMap { world.snapshots[$0]?.value.volumeSize } ?? 8
            world.volumes[volumeId] = Regional(
                region: region,
                value: EC2Volume(
                    volumeId: volumeId, size: size, snapshotId: mapping?.snapshotId, availabilityZone: zone,
                    state: "in-use",
                    volumeType: mapping?.volumeType ?? "gp3", createTime: aws.now(),
                    attachments: [
                        VolumeAttachment(
                            volumeId: volumeId, instanceId: id, device: root, state: "attached", attachTime: aws.now(),
                            deleteOnTermination: true)
                    ],
                    tags: input.tags))
            let profile: String? =
                switch input.iamInstanceProfile {
                case .arn(let arn): arn
                case .name(let name): "arn:aws:iam::\(MemoryAWS.accountId):instance-profile/\(name)"
                case nil: nil
                }
            let instance = EC2Instance(
                instanceId: id, imageId: input.imageId, instanceType: input.instanceType, state: .running,
                availabilityZone: zone,
                subnetId: input.subnetId ?? "subnet-default-\(region)", vpcId: "vpc-default-\(region)",
                privateIpAddress: "10.0.0.\(world.nextAddress % 250 + 4)",
                publicIpAddress: world.newPublicIp(region), keyName: input.keyName, launchTime: aws.now(),
                securityGroupIds: input.securityGroupIds.isEmpty ? ["sg-default-\(region)"] : input.securityGroupIds,
                iamInstanceProfileArn: profile, rootDeviceName: root,
                blockDevices: [
                    EC2InstanceBlockDevice(
                        deviceName: root, volumeId: volumeId, status: "attached", deleteOnTermination: true)
                ],
                clientToken: input.clientToken, tags: tags)
            world.instances[id] = EC2World.Instance(region: region, value: instance)
            var launched = instance
            launched.state = .pending
            return launched
        }
    }

    public func createTags(resourceIds: [String], tags: [String: String]) async throws {
        try call("CreateTags", resourceIds.joined(separator: " ") + " " + tags.keys.sorted().joined(separator: ",")) {
            world, refuse in
            try world.retag(resourceIds, in: region, refuse) { $0.merge(tags) { $1 } }
        }
    }

    public func deleteTags(resourceIds: [String], keys: [String]) async throws {
        try call("DeleteTags", resourceIds.joined(separator: " ") + " " + keys.sorted().joined(separator: ",")) {
            world, refuse in
            try world.retag(resourceIds, in: region, refuse) { tags in for key in keys { tags[key] = nil } }
        }
    }

    // MARK: Filters

    /// Whether `instance` passes every filter (EC2 semantics: all filters, any of a filter's values).
    static func matches(_ instance: EC2Instance, _ filters: [EC2Filter], _ refuse: Refuse) throws -> Bool {
        try matches(filters, tags: instance.tags, refuse) { name in
            switch name {
            case "instance-id": [instance.instanceId]
            case "instance-state-name": [instance.state.rawValue]
            case "instance-type": instance.instanceType.map { [$0] }
            case "subnet-id": instance.subnetId.map { [$0] }
            default: nil
            }
        }
    }

    /// The common part of the filters: `tag:<key>`, `tag-key`, and the resource's own fields (`field` gives
    /// a field's values, nil for a filter the resource does not have: refused as EC2 refuses it).
    static func matches(
        _ filters: [EC2Filter], tags: [String: String], _ refuse: Refuse,
        field: (String) -> [String]?
    ) throws -> Bool {
        for filter in filters {
            let values: [String]
            if filter.name.hasPrefix("tag:") {
                values = tags[String(filter.name.dropFirst(4))].map { [$0] } ?? []
            } else if filter.name == "tag-key" {
                values = Array(tags.keys)
            } else if let own = field(filter.name) {
                values = own
            } else if [
                "instance-id", "instance-state-name", "instance-type", "subnet-id", "status", "name", "architecture",
                "state", "volume-id", "allocation-id", "association-id", "public-ip", "domain", "availability-zone",
                "attachment.instance-id",
            ].contains(filter.name) {
                values = []
            } else {
                throw refuse("InvalidParameterValue", "The filter '\(filter.name)' is invalid")
            }
            guard values.contains(where: { value in filter.values.contains { glob($0, value) } }) else { return false }
        }
        return true
    }

    /// EC2's filter wildcards: `*` any run of characters, `?` one character.
    static func glob(_ pattern: String, _ text: String) -> Bool {
        func match(_ p: Substring, _ t: Substring) -> Bool {
            guard let head = p.first else { return t.isEmpty }
            if head == "*" { return match(p.dropFirst(), t) || (!t.isEmpty && match(p, t.dropFirst())) }
            guard let c = t.first else { return false }
            return (head == "?" || head == c) && match(p.dropFirst(), t.dropFirst())
        }
        return match(Substring(pattern), Substring(text))
    }
}

extension EC2World {
    /// The instances with these ids in `region` (all of the region's when none are given); one unknown id
    /// fails the call, as in EC2.
    func findInstances(_ ids: [String], in region: String, _ refuse: MemoryEC2.Refuse) throws -> [Instance] {
        if ids.isEmpty {
            return instances.values.filter { $0.region == region }.sorted { $0.value.instanceId < $1.value.instanceId }
        }
        return try ids.map { id in
            guard let found = instances[id], found.region == region else {
                throw refuse("InvalidInstanceID.NotFound", "The instance ID '\(id)' does not exist")
            }
            return found
        }
    }

    /// The public address of the Elastic IP associated with the instance, if any.
    func elasticIP(on instanceId: String) -> String? {
        addresses.values.first { $0.value.instanceId == instanceId }?.value.publicIp
    }

    /// A fresh public address: 198.51.100.0/24 and beyond (documentation ranges), one per call.
    mutating func newPublicIp(_ region: String) -> String {
        defer { nextAddress += 1 }
        return "198.51.\(100 + nextAddress / 250).\(nextAddress % 250 + 1)"
    }

    /// Changes the tags of instances, volumes, snapshots, images or Elastic IPs (by id prefix).
    mutating func retag(
        _ ids: [String], in region: String, _ refuse: MemoryEC2.Refuse,
        _ change: (inout [String: String]) -> Void
    ) throws {
        for id in ids {
            let known: Bool =
                switch id.split(separator: "-").first {
                case "i": instances[id]?.region == region
                case "vol": volumes[id]?.region == region
                case "snap": snapshots[id]?.region == region
                case "ami": images[id]?.region == region
                case "eipalloc": addresses[id]?.region == region
                default: false
                }
            guard known else { throw refuse(Self.notFoundCode(id), "The ID '\(id)' does not exist") }
        }
        for id in ids {
            switch id.split(separator: "-").first {
            case "i": change(&instances[id]!.value.tags)
            case "vol": change(&volumes[id]!.value.tags)
            case "snap": change(&snapshots[id]!.value.tags)
            case "ami": change(&images[id]!.value.tags)
            default: change(&addresses[id]!.value.tags)
            }
        }
    }

    static func notFoundCode(_ id: String) -> String {
        switch id.split(separator: "-").first {
        case "i": "InvalidInstanceID.NotFound"
        case "vol": "InvalidVolume.NotFound"
        case "snap": "InvalidSnapshot.NotFound"
        case "ami": "InvalidAMIID.NotFound"
        case "eipalloc": "InvalidAllocationID.NotFound"
        default: "InvalidID"
        }
    }
}
