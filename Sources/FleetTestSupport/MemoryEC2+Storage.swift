import AWSClient
import Foundation

/// Snapshots, images, Elastic IPs and volumes of the memory EC2.
extension MemoryEC2 {
    // MARK: Snapshots and images

    public func describeSnapshots(snapshotIds: [String], ownerIds: [String], filters: [EC2Filter]) async throws
        -> [EC2Snapshot]
    {
        try describe(
            "DescribeSnapshots", \.snapshots, snapshotIds, notFound: "InvalidSnapshot.NotFound", filters,
            keep: Self.owned(by: ownerIds, \.ownerId), tags: \.tags, id: \.snapshotId
        ) { snapshot, name in
            switch name {
            case "status": [snapshot.state]
            case "volume-id": snapshot.volumeId.map { [$0] }
            default: nil
            }
        }
    }

    public func createSnapshot(volumeId: String, description: String?, tags: [String: String]) async throws
        -> EC2Snapshot
    {
        let id = aws.newId("snap")
        return try call("CreateSnapshot", volumeId) { world, refuse in
            guard let volume = world.volumes[volumeId], volume.region == region else {
                throw refuse("InvalidVolume.NotFound", "The volume '\(volumeId)' does not exist.")
            }
            let snapshot = EC2Snapshot(
                snapshotId: id, volumeId: volumeId, state: "completed", progress: "100%", startTime: aws.now(),
                volumeSize: volume.value.size, description: description, ownerId: MemoryAWS.accountId, encrypted: false,
                tags: tags)
            world.snapshots[id] = Regional(region: region, value: snapshot)
            return snapshot
        }
    }

    public func registerImage(_ input: RegisterImageInput) async throws -> String {
        let id = aws.newId("ami")
        return try call("RegisterImage", input.name) { world, refuse in
            for snapshot in input.blockDeviceMappings.compactMap(\.ebs?.snapshotId)
            where world.snapshots[snapshot]?.region != region {
                throw refuse("InvalidSnapshot.NotFound", "The snapshot '\(snapshot)' does not exist.")
            }
            if world.images.values.contains(where: {
                $0.region == region && $0.value.ownerId == MemoryAWS.accountId && $0.value.name == input.name
            }) {
                throw refuse("InvalidAMIName.Duplicate", "AMI name \(input.name) is already in use by another AMI")
            }
            world.images[id] = Regional(
                region: region,
                value: EC2Image(
                    imageId: id, name: input.name, state: "available", ownerId: MemoryAWS.accountId,
                    architecture: input.architecture,
                    rootDeviceName: input.rootDeviceName, rootDeviceType: "ebs",
                    virtualizationType: input.virtualizationType,
                    creationDate: aws.now(), description: input.description,
                    blockDeviceMappings: input.blockDeviceMappings,
                    tags: input.tags))
            return id
        }
    }

    public func describeImages(imageIds: [String], owners: [String], filters: [EC2Filter]) async throws -> [EC2Image] {
        try describe(
            "DescribeImages", \.images, imageIds, notFound: "InvalidAMIID.NotFound", filters,
            keep: Self.owned(by: owners, \.ownerId), tags: \.tags, id: \.imageId
        ) { image, name in
            switch name {
            case "name": image.name.map { [$0] }
            case "architecture": image.architecture.map { [$0] }
            case "state": [image.state]
            default: nil
            }
        }
    }

    // MARK: Elastic IPs

    public func describeAddresses(publicIps: [String], allocationIds: [String], filters: [EC2Filter]) async throws
        -> [EC2Address]
    {
        try call("DescribeAddresses", (publicIps + allocationIds).joined(separator: " ")) { world, refuse in
            var found = try Self.pick(
                world.addresses, allocationIds, region, refuse, notFound: "InvalidAllocationID.NotFound")
            if !publicIps.isEmpty {
                for ip in publicIps where !found.contains(where: { $0.publicIp == ip }) {
                    throw refuse("InvalidAddress.NotFound", "Address '\(ip)' not found.")
                }
                found = found.filter { publicIps.contains($0.publicIp) }
            }
            return try found.filter { address in
                try Self.matches(filters, tags: address.tags, refuse) { name in
                    switch name {
                    case "instance-id": address.instanceId.map { [$0] }
                    case "allocation-id": address.allocationId.map { [$0] }
                    case "association-id": address.associationId.map { [$0] }
                    case "public-ip": [address.publicIp]
                    case "domain": address.domain.map { [$0] }
                    default: nil
                    }
                }
            }.sorted { ($0.allocationId ?? "") < ($1.allocationId ?? "") }
        }
    }

    public func allocateAddress(tags: [String: String]) async throws -> EC2Address {
        let id = aws.newId("eipalloc")
        return try call("AllocateAddress", tags.keys.sorted().joined(separator: ",")) { world, _ in
            let address = EC2Address(publicIp: world.newPublicIp(region), allocationId: id, domain: "vpc", tags: tags)
            world.addresses[id] = Regional(region: region, value: address)
            return address
        }
    }

    public func associateAddress(allocationId: String, instanceId: String, allowReassociation: Bool) async throws
        -> String
    {
        let association = aws.newId("eipassoc")
        return try call("AssociateAddress", "\(allocationId) \(instanceId)") { world, refuse in
            guard let address = world.addresses[allocationId], address.region == region else {
                throw refuse("InvalidAllocationID.NotFound", "Allocation ID '[\(allocationId)]' not found.")
            }
            let instance = try world.findInstances([instanceId], in: region, refuse)[0]
            guard ![.terminated, .shuttingDown].contains(instance.value.state) else {
                throw refuse(
                    "IncorrectInstanceState", "The instance '\(instanceId)' is not in a valid state for this operation."
                )
            }
            if let current = address.value.instanceId, current != instanceId, !allowReassociation {
                throw refuse("Resource.AlreadyAssociated", "Resource \(address.value.publicIp) is already associated.")
            }
            // The instance's primary address takes one Elastic IP: another one on it comes off.
            for (id, other) in world.addresses where other.value.instanceId == instanceId && id != allocationId {
                world.addresses[id]?.value.instanceId = nil
                world.addresses[id]?.value.associationId = nil
            }
            if let previous = address.value.instanceId, previous != instanceId {
                world.instances[previous]?.value.publicIpAddress = nil
            }
            world.addresses[allocationId]?.value.instanceId = instanceId
            world.addresses[allocationId]?.value.associationId = association
            world.addresses[allocationId]?.value.privateIpAddress = instance.value.privateIpAddress
            world.instances[instanceId]?.value.publicIpAddress = address.value.publicIp
            return association
        }
    }

    public func disassociateAddress(associationId: String) async throws {
        try call("DisassociateAddress", associationId) { world, refuse in
            guard
                let (id, address) = world.addresses.first(where: {
                    $0.value.region == region && $0.value.value.associationId == associationId
                })
            else { throw refuse("InvalidAssociationID.NotFound", "Association ID '[\(associationId)]' not found.") }
            if let instance = address.value.instanceId { world.instances[instance]?.value.publicIpAddress = nil }
            world.addresses[id]?.value.instanceId = nil
            world.addresses[id]?.value.associationId = nil
            world.addresses[id]?.value.privateIpAddress = nil
        }
    }

    // MARK: Volumes

    public func describeVolumes(volumeIds: [String], filters: [EC2Filter]) async throws -> [EC2Volume] {
        try describe(
            "DescribeVolumes", \.volumes, volumeIds, notFound: "InvalidVolume.NotFound", filters, tags: \.tags,
            id: \.volumeId
        ) { volume, name in
            switch name {
            case "status": [volume.state]
            case "volume-id": [volume.volumeId]
            case "availability-zone": volume.availabilityZone.map { [$0] }
            case "attachment.instance-id": volume.attachments.compactMap(\.instanceId)
            default: nil
            }
        }
    }

    public func createVolume(_ input: CreateVolumeInput) async throws -> EC2Volume {
        let id = aws.newId("vol")
        return try call("CreateVolume", "\(input.availabilityZone) \(input.snapshotId ?? "")") { world, refuse in
            guard input.availabilityZone.hasPrefix(region), input.availabilityZone.count == region.count + 1 else {
                throw refuse("InvalidZone.NotFound", "Zone \(input.availabilityZone) does not exist in \(region).")
            }
            var size = input.size
            if let snapshotId = input.snapshotId {
                guard let snapshot = world.snapshots[snapshotId], snapshot.region == region else {
                    throw refuse("InvalidSnapshot.NotFound", "The snapshot '\(snapshotId)' does not exist.")
                }
                size = size ?? snapshot.value.volumeSize
            }
            guard let size else {
                throw refuse("MissingParameter", "The request must contain the parameter size or snapshotId")
            }
            let volume = EC2Volume(
                volumeId: id, size: size, snapshotId: input.snapshotId, availabilityZone: input.availabilityZone,
                state: "available",
                volumeType: input.volumeType, iops: input.iops, encrypted: input.encrypted ?? false,
                createTime: aws.now(), tags: input.tags)
            world.volumes[id] = Regional(region: region, value: volume)
            return volume
        }
    }

    public func attachVolume(volumeId: String, instanceId: String, device: String) async throws -> VolumeAttachment {
        try call("AttachVolume", "\(volumeId) \(instanceId) \(device)") { world, refuse in
            guard let volume = world.volumes[volumeId], volume.region == region else {
                throw refuse("InvalidVolume.NotFound", "The volume '\(volumeId)' does not exist.")
            }
            let instance = try world.findInstances([instanceId], in: region, refuse)[0]
            guard volume.value.state == "available" else {
                throw refuse("VolumeInUse", "\(volumeId) is already attached to an instance")
            }
            guard volume.value.availabilityZone == instance.value.availabilityZone else {
                throw refuse(
                    "InvalidVolume.ZoneMismatch",
                    "The volume '\(volumeId)' is not in the same availability zone as instance '\(instanceId)'")
            }
            if instance.value.blockDevices.contains(where: { $0.deviceName == device }) {
                throw refuse("InvalidParameterValue", "Attachment point \(device) is already in use")
            }
            let attachment = VolumeAttachment(
                volumeId: volumeId, instanceId: instanceId, device: device, state: "attached",
                attachTime: aws.now(), deleteOnTermination: false)
            world.volumes[volumeId]?.value.state = "in-use"
            world.volumes[volumeId]?.value.attachments = [attachment]
            world.instances[instanceId]?.value.blockDevices.append(
                EC2InstanceBlockDevice(
                    deviceName: device, volumeId: volumeId, status: "attached", deleteOnTermination: false))
            var answer = attachment
            answer.state = "attaching"
            return answer
        }
    }

    public func detachVolume(volumeId: String, instanceId: String?, device: String?, force: Bool) async throws
        -> VolumeAttachment
    {
        try call("DetachVolume", "\(volumeId) \(instanceId ?? "")" + (force ? " force" : "")) { world, refuse in
            guard let volume = world.volumes[volumeId], volume.region == region else {
                throw refuse("InvalidVolume.NotFound", "The volume '\(volumeId)' does not exist.")
            }
            guard var attachment = volume.value.attachments.first else {
                throw refuse("IncorrectState", "Volume '\(volumeId)' is in the '\(volume.value.state)' state.")
            }
            if let instanceId, attachment.instanceId != instanceId {
                throw refuse("InvalidAttachment.NotFound", "Volume \(volumeId) is not attached to \(instanceId)")
            }
            world.volumes[volumeId]?.value.state = "available"
            world.volumes[volumeId]?.value.attachments = []
            if let owner = attachment.instanceId {
                world.instances[owner]?.value.blockDevices.removeAll { $0.volumeId == volumeId }
            }
            attachment.state = "detaching"
            return attachment
        }
    }

    /// One Describe call: the values of `table` with these ids (one unknown id fails the call with
    /// `notFound`), those `keep` keeps and the filters pass (`field` gives a filter's values), by id.
    func describe<Value>(
        _ operation: String, _ table: KeyPath<EC2World, [String: Regional<Value>]>, _ ids: [String], notFound: String,
        _ filters: [EC2Filter], keep: (Value) -> Bool = { _ in true }, tags: KeyPath<Value, [String: String]>,
        id: KeyPath<Value, String>, field: (Value, String) -> [String]?
    ) throws -> [Value] {
        try call(operation, ids.joined(separator: " ")) { world, refuse in
            try Self.pick(world[keyPath: table], ids, region, refuse, notFound: notFound).filter(keep).filter { value in
                try Self.matches(filters, tags: value[keyPath: tags], refuse) { field(value, $0) }
            }.sorted { $0[keyPath: id] < $1[keyPath: id] }
        }
    }

    /// Keeps what one of `owners` owns (`self` is the account); everything when none are named.
    static func owned<Value>(by owners: [String], _ owner: KeyPath<Value, String?>) -> (Value) -> Bool {
        let owners = Set(owners.map { $0 == "self" ? MemoryAWS.accountId : $0 })
        return { owners.isEmpty || owners.contains($0[keyPath: owner] ?? "") }
    }

    /// The values with these ids in `region` (all of the region's when none are given); one unknown id
    /// fails the call with `notFound`, as in EC2.
    static func pick<Value>(
        _ all: [String: Regional<Value>], _ ids: [String], _ region: String, _ refuse: Refuse,
        notFound: String
    ) throws -> [Value] {
        if ids.isEmpty { return all.values.filter { $0.region == region }.map(\.value) }
        return try ids.map { id in
            guard let found = all[id], found.region == region else {
                throw refuse(notFound, "The ID '\(id)' does not exist")
            }
            return found.value
        }
    }
}
