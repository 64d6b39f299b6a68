import Foundation

/// A `Filter.N` of the EC2 Describe calls.
public struct EC2Filter: Sendable, Hashable {
    public var name: String
    public var values: [String]

    public init(_ name: String, _ values: [String]) {
        self.name = name
        self.values = values
    }

    /// Resources whose tag `key` has one of `values` (wildcards `*` and `?` allowed).
    public static func tag(_ key: String, _ values: String...) -> EC2Filter { EC2Filter("tag:\(key)", values) }
    /// Resources that carry tag `key`, whatever its value.
    public static func tagKey(_ keys: String...) -> EC2Filter { EC2Filter("tag-key", keys) }
    public static func instanceState(_ states: InstanceStateName...) -> EC2Filter {
        EC2Filter("instance-state-name", states.map(\.rawValue))
    }
}

/// An EC2 instance state name. A struct rather than an enum so a state AWS adds later still parses.
public struct InstanceStateName: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let pending = InstanceStateName(rawValue: "pending")
    public static let running = InstanceStateName(rawValue: "running")
    public static let shuttingDown = InstanceStateName(rawValue: "shutting-down")
    public static let terminated = InstanceStateName(rawValue: "terminated")
    public static let stopping = InstanceStateName(rawValue: "stopping")
    public static let stopped = InstanceStateName(rawValue: "stopped")
}

public struct EC2InstanceBlockDevice: Sendable, Hashable {
    public var deviceName: String
    public var volumeId: String?
    public var status: String?
    public var deleteOnTermination: Bool?

    public init(deviceName: String, volumeId: String? = nil, status: String? = nil, deleteOnTermination: Bool? = nil) {
        self.deviceName = deviceName
        self.volumeId = volumeId
        self.status = status
        self.deleteOnTermination = deleteOnTermination
    }
}

public struct EC2Instance: Sendable, Equatable {
    public var instanceId: String
    public var imageId: String?
    public var instanceType: String?
    public var state: InstanceStateName
    public var stateCode: Int?
    /// Why the instance is in its state (e.g. "Client.UserInitiatedShutdown"), when AWS says.
    public var stateReason: String?
    public var availabilityZone: String?
    public var subnetId: String?
    public var vpcId: String?
    public var privateIpAddress: String?
    public var publicIpAddress: String?
    public var keyName: String?
    public var launchTime: Date?
    public var securityGroupIds: [String]
    public var iamInstanceProfileArn: String?
    public var rootDeviceName: String?
    public var blockDevices: [EC2InstanceBlockDevice]
    public var clientToken: String?
    public var tags: [String: String]

    public init(
        instanceId: String, imageId: String? = nil, instanceType: String? = nil, state: InstanceStateName,
        stateCode: Int? = nil,
        stateReason: String? = nil, availabilityZone: String? = nil, subnetId: String? = nil, vpcId: String? = nil,
        privateIpAddress: String? = nil, publicIpAddress: String? = nil, keyName: String? = nil,
        launchTime: Date? = nil,
        securityGroupIds: [String] = [], iamInstanceProfileArn: String? = nil, rootDeviceName: String? = nil,
        blockDevices: [EC2InstanceBlockDevice] = [], clientToken: String? = nil, tags: [String: String] = [:]
    ) {
        (self.instanceId, self.imageId, self.instanceType, self.state, self.stateCode) = (
            instanceId, imageId, instanceType, state, stateCode
        )
        (self.stateReason, self.availabilityZone, self.subnetId, self.vpcId) = (
            stateReason, availabilityZone, subnetId, vpcId
        )
        (self.privateIpAddress, self.publicIpAddress, self.keyName, self.launchTime) = (
            privateIpAddress, publicIpAddress, keyName, launchTime
        )
        (self.securityGroupIds, self.iamInstanceProfileArn, self.rootDeviceName) = (
            securityGroupIds, iamInstanceProfileArn, rootDeviceName
        )
        (self.blockDevices, self.clientToken, self.tags) = (blockDevices, clientToken, tags)
    }
}

/// One of the two status checks.
public struct StatusCheck: Sendable, Equatable {
    /// "ok", "impaired", "insufficient-data", "not-applicable" or "initializing".
    public var status: String
    /// e.g. `("reachability", "failed", impairedSince)`.
    public var details: [Detail]

    public init(status: String, details: [Detail] = []) {
        self.status = status
        self.details = details
    }

    public struct Detail: Sendable, Equatable {
        public var name: String
        public var status: String
        public var impairedSince: Date?

        public init(name: String, status: String, impairedSince: Date? = nil) {
            (self.name, self.status, self.impairedSince) = (name, status, impairedSince)
        }
    }

    public var isOK: Bool { status == "ok" }
    public var isImpaired: Bool { status == "impaired" }
}

/// A scheduled event (system reboot, retirement, maintenance).
public struct InstanceStatusEvent: Sendable, Equatable {
    public var code: String
    public var description: String?
    public var notBefore: Date?
    public var notAfter: Date?

    public init(code: String, description: String? = nil, notBefore: Date? = nil, notAfter: Date? = nil) {
        (self.code, self.description, self.notBefore, self.notAfter) = (code, description, notBefore, notAfter)
    }
}

public struct InstanceStatus: Sendable, Equatable {
    public var instanceId: String
    public var availabilityZone: String?
    public var state: InstanceStateName
    public var systemStatus: StatusCheck
    public var instanceStatus: StatusCheck
    public var events: [InstanceStatusEvent]

    public init(
        instanceId: String, availabilityZone: String? = nil, state: InstanceStateName, systemStatus: StatusCheck,
        instanceStatus: StatusCheck, events: [InstanceStatusEvent] = []
    ) {
        (self.instanceId, self.availabilityZone, self.state) = (instanceId, availabilityZone, state)
        (self.systemStatus, self.instanceStatus, self.events) = (systemStatus, instanceStatus, events)
    }
}

public struct InstanceStateChange: Sendable, Equatable {
    public var instanceId: String
    public var previousState: InstanceStateName
    public var currentState: InstanceStateName

    public init(instanceId: String, previousState: InstanceStateName, currentState: InstanceStateName) {
        (self.instanceId, self.previousState, self.currentState) = (instanceId, previousState, currentState)
    }
}

public struct EC2Snapshot: Sendable, Equatable {
    public var snapshotId: String
    public var volumeId: String?
    /// "pending", "completed", "error" (or others AWS adds).
    public var state: String
    public var progress: String?
    public var startTime: Date?
    public var volumeSize: Int?
    public var description: String?
    public var ownerId: String?
    public var encrypted: Bool?
    public var tags: [String: String]

    public init(
        snapshotId: String, volumeId: String? = nil, state: String, progress: String? = nil, startTime: Date? = nil,
        volumeSize: Int? = nil, description: String? = nil, ownerId: String? = nil, encrypted: Bool? = nil,
        tags: [String: String] = [:]
    ) {
        (self.snapshotId, self.volumeId, self.state, self.progress, self.startTime) = (
            snapshotId, volumeId, state, progress, startTime
        )
        (self.volumeSize, self.description, self.ownerId, self.encrypted, self.tags) = (
            volumeSize, description, ownerId, encrypted, tags
        )
    }
}

/// An EBS volume in a block device mapping.
public struct EBSBlockDevice: Sendable, Hashable {
    public var snapshotId: String?
    public var volumeSize: Int?
    public var volumeType: String?
    public var deleteOnTermination: Bool?
    public var encrypted: Bool?
    public var iops: Int?

    public init(
        snapshotId: String? = nil, volumeSize: Int? = nil, volumeType: String? = nil, deleteOnTermination: Bool? = nil,
        encrypted: Bool? = nil, iops: Int? = nil
    ) {
        self.snapshotId = snapshotId
        self.volumeSize = volumeSize
        self.volumeType = volumeType
        self.deleteOnTermination = deleteOnTermination
        self.encrypted = encrypted
        self.iops = iops
    }
}

public struct BlockDeviceMapping: Sendable, Hashable {
    public var deviceName: String
    public var ebs: EBSBlockDevice?
    /// Instance store name, e.g. "ephemeral0".
    public var virtualName: String?

    public init(deviceName: String, ebs: EBSBlockDevice? = nil, virtualName: String? = nil) {
        self.deviceName = deviceName
        self.ebs = ebs
        self.virtualName = virtualName
    }
}

public struct EC2Image: Sendable, Equatable {
    public var imageId: String
    public var name: String?
    /// "available", "pending", "failed", "deregistered", …
    public var state: String
    public var ownerId: String?
    public var architecture: String?
    public var rootDeviceName: String?
    public var rootDeviceType: String?
    public var virtualizationType: String?
    public var creationDate: Date?
    public var description: String?
    public var blockDeviceMappings: [BlockDeviceMapping]
    public var tags: [String: String]

    public init(
        imageId: String, name: String? = nil, state: String, ownerId: String? = nil, architecture: String? = nil,
        rootDeviceName: String? = nil, rootDeviceType: String? = nil, virtualizationType: String? = nil,
        creationDate: Date? = nil, description: String? = nil, blockDeviceMappings: [BlockDeviceMapping] = [],
        tags: [String: String] = [:]
    ) {
        (self.imageId, self.name, self.state, self.ownerId, self.architecture) = (
            imageId, name, state, ownerId, architecture
        )
        (self.rootDeviceName, self.rootDeviceType, self.virtualizationType) = (
            rootDeviceName, rootDeviceType, virtualizationType
        )
        (self.creationDate, self.description, self.blockDeviceMappings, self.tags) = (
            creationDate, description, blockDeviceMappings, tags
        )
    }
}

/// Inputs of RegisterImage for an image made from EBS snapshots.
public struct RegisterImageInput: Sendable, Equatable {
    public var name: String
    public var description: String?
    public var architecture: String
    /// e.g. "/dev/xvda"; must match one of `blockDeviceMappings`.
    public var rootDeviceName: String
    public var blockDeviceMappings: [BlockDeviceMapping]
    public var virtualizationType: String
    public var enaSupport: Bool?
    /// "uefi", "legacy-bios", "uefi-preferred".
    public var bootMode: String?
    public var tags: [String: String]

    public init(
        name: String, description: String? = nil, architecture: String = "x86_64", rootDeviceName: String,
        blockDeviceMappings: [BlockDeviceMapping], virtualizationType: String = "hvm", enaSupport: Bool? = true,
        bootMode: String? = nil, tags: [String: String] = [:]
    ) {
        self.name = name
        self.description = description
        self.architecture = architecture
        self.rootDeviceName = rootDeviceName
        self.blockDeviceMappings = blockDeviceMappings
        self.virtualizationType = virtualizationType
        self.enaSupport = enaSupport
        self.bootMode = bootMode
        self.tags = tags
    }

    /// An image whose root volume is made from `snapshotId`.
    public static func fromSnapshot(
        name: String, snapshotId: String, rootDeviceName: String = "/dev/xvda", volumeType: String = "gp3",
        volumeSize: Int? = nil, architecture: String = "x86_64", description: String? = nil,
        tags: [String: String] = [:]
    ) -> RegisterImageInput {
        RegisterImageInput(
            name: name, description: description, architecture: architecture, rootDeviceName: rootDeviceName,
            blockDeviceMappings: [
                BlockDeviceMapping(
                    deviceName: rootDeviceName,
                    ebs: EBSBlockDevice(
                        snapshotId: snapshotId, volumeSize: volumeSize, volumeType: volumeType,
                        deleteOnTermination: true))
            ], tags: tags)
    }
}

/// The IAM instance profile of RunInstances, by ARN or by name.
public enum IAMInstanceProfile: Sendable, Equatable {
    case arn(String)
    case name(String)
}

public struct RunInstancesInput: Sendable, Equatable {
    public var imageId: String
    public var instanceType: String
    public var subnetId: String?
    public var securityGroupIds: [String]
    public var keyName: String?
    public var iamInstanceProfile: IAMInstanceProfile?
    /// Applied to the instance and its volumes at launch (TagSpecification).
    public var tags: [String: String]
    /// Plain text; base64-encoded by the client.
    public var userData: String?
    /// Idempotency token (up to 64 ASCII characters). Generated when nil. Reuse the same token when
    /// retrying a launch that may have happened (e.g. after a crash), so it is not launched twice.
    public var clientToken: String?
    public var privateIpAddress: String?
    public var availabilityZone: String?
    public var blockDeviceMappings: [BlockDeviceMapping]
    public var ebsOptimized: Bool?
    /// Require IMDSv2 on the new instance (`MetadataOptions.HttpTokens=required`).
    public var requireIMDSv2: Bool

    public init(
        imageId: String, instanceType: String, subnetId: String? = nil, securityGroupIds: [String] = [],
        keyName: String? = nil, iamInstanceProfile: IAMInstanceProfile? = nil, tags: [String: String] = [:],
        userData: String? = nil, clientToken: String? = nil, privateIpAddress: String? = nil,
        availabilityZone: String? = nil, blockDeviceMappings: [BlockDeviceMapping] = [], ebsOptimized: Bool? = nil,
        requireIMDSv2: Bool = true
    ) {
        self.imageId = imageId
        self.instanceType = instanceType
        self.subnetId = subnetId
        self.securityGroupIds = securityGroupIds
        self.keyName = keyName
        self.iamInstanceProfile = iamInstanceProfile
        self.tags = tags
        self.userData = userData
        self.clientToken = clientToken
        self.privateIpAddress = privateIpAddress
        self.availabilityZone = availabilityZone
        self.blockDeviceMappings = blockDeviceMappings
        self.ebsOptimized = ebsOptimized
        self.requireIMDSv2 = requireIMDSv2
    }
}

public struct EC2Address: Sendable, Equatable {
    public var publicIp: String
    public var allocationId: String?
    public var associationId: String?
    public var domain: String?
    public var instanceId: String?
    public var networkInterfaceId: String?
    public var privateIpAddress: String?
    public var tags: [String: String]

    public init(
        publicIp: String, allocationId: String? = nil, associationId: String? = nil, domain: String? = nil,
        instanceId: String? = nil, networkInterfaceId: String? = nil, privateIpAddress: String? = nil,
        tags: [String: String] = [:]
    ) {
        (self.publicIp, self.allocationId, self.associationId, self.domain) = (
            publicIp, allocationId, associationId, domain
        )
        (self.instanceId, self.networkInterfaceId, self.privateIpAddress, self.tags) = (
            instanceId, networkInterfaceId, privateIpAddress, tags
        )
    }
}

public struct VolumeAttachment: Sendable, Equatable {
    public var volumeId: String
    public var instanceId: String?
    public var device: String?
    /// "attaching", "attached", "detaching", "detached", "busy".
    public var state: String?
    public var attachTime: Date?
    public var deleteOnTermination: Bool?

    public init(
        volumeId: String, instanceId: String? = nil, device: String? = nil, state: String? = nil,
        attachTime: Date? = nil,
        deleteOnTermination: Bool? = nil
    ) {
        (self.volumeId, self.instanceId, self.device, self.state) = (volumeId, instanceId, device, state)
        (self.attachTime, self.deleteOnTermination) = (attachTime, deleteOnTermination)
    }
}

public struct EC2Volume: Sendable, Equatable {
    public var volumeId: String
    public var size: Int?
    public var snapshotId: String?
    public var availabilityZone: String?
    /// "creating", "available", "in-use", "deleting", "deleted", "error".
    public var state: String
    public var volumeType: String?
    public var iops: Int?
    public var encrypted: Bool?
    public var createTime: Date?
    public var attachments: [VolumeAttachment]
    public var tags: [String: String]

    public init(
        volumeId: String, size: Int? = nil, snapshotId: String? = nil, availabilityZone: String? = nil, state: String,
        volumeType: String? = nil, iops: Int? = nil, encrypted: Bool? = nil, createTime: Date? = nil,
        attachments: [VolumeAttachment] = [], tags: [String: String] = [:]
    ) {
        (self.volumeId, self.size, self.snapshotId, self.availabilityZone, self.state) = (
            volumeId, size, snapshotId, availabilityZone, state
        )
        (self.volumeType, self.iops, self.encrypted, self.createTime) = (volumeType, iops, encrypted, createTime)
        (self.attachments, self.tags) = (attachments, tags)
    }
}

public struct CreateVolumeInput: Sendable, Equatable {
    public var availabilityZone: String
    /// GiB; may be nil when `snapshotId` is given (the snapshot's size is used).
    public var size: Int?
    public var snapshotId: String?
    public var volumeType: String
    public var iops: Int?
    public var throughput: Int?
    public var encrypted: Bool?
    public var kmsKeyId: String?
    public var tags: [String: String]

    public init(
        availabilityZone: String, size: Int? = nil, snapshotId: String? = nil, volumeType: String = "gp3",
        iops: Int? = nil, throughput: Int? = nil, encrypted: Bool? = nil, kmsKeyId: String? = nil,
        tags: [String: String] = [:]
    ) {
        self.availabilityZone = availabilityZone
        self.size = size
        self.snapshotId = snapshotId
        self.volumeType = volumeType
        self.iops = iops
        self.throughput = throughput
        self.encrypted = encrypted
        self.kmsKeyId = kmsKeyId
        self.tags = tags
    }
}
