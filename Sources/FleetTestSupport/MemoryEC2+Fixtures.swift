import AWSClient
import Foundation

/// What a test puts into the memory EC2 and reads back, outside the API (not logged, never failed).
extension MemoryEC2 {
    /// A public image (owner `amazon` unless given) to launch from, with a root snapshot of its own.
    @discardableResult
    public func addImage(name: String = "al2023-base", architecture: String = "x86_64", owner: String = "amazon")
        -> EC2Image
    {
        let imageId = aws.newId("ami")
        let snapshotId = aws.newId("snap")
        return aws.ec2State.withLock { world in
            world.snapshots[snapshotId] = Regional(
                region: region,
                value: EC2Snapshot(
                    snapshotId: snapshotId, state: "completed", startTime: aws.now(), volumeSize: 8, ownerId: owner))
            let image = EC2Image(
                imageId: imageId, name: name, state: "available", ownerId: owner, architecture: architecture,
                rootDeviceName: "/dev/xvda", rootDeviceType: "ebs", virtualizationType: "hvm", creationDate: aws.now(),
                blockDeviceMappings: [
                    BlockDeviceMapping(
                        deviceName: "/dev/xvda",
                        ebs: EBSBlockDevice(
                            snapshotId: snapshotId, volumeSize: 8, volumeType: "gp3", deleteOnTermination: true))
                ])
            world.images[imageId] = Regional(region: region, value: image)
            return image
        }
    }

    /// An instance in this region (running unless `state` says otherwise), from a base image, with a root
    /// volume of its own at `/dev/xvda`.
    @discardableResult
    public func addInstance(
        tags: [String: String] = [:], state: InstanceStateName = .running, instanceType: String = "t3.micro",
        subnetId: String? = nil, securityGroupIds: [String] = []
    ) -> EC2Instance {
        let image = addImage()
        let id = aws.newId("i")
        let volumeId = aws.newId("vol")
        return aws.ec2State.withLock { world in
            let zone = "\(region)a"
            world.volumes[volumeId] = Regional(
                region: region,
                value: EC2Volume(
                    volumeId: volumeId, size: 8, snapshotId: image.blockDeviceMappings.first?.ebs?.snapshotId,
                    availabilityZone: zone,
                    state: "in-use", volumeType: "gp3", createTime: aws.now(),
                    attachments: [
                        VolumeAttachment(volumeId: volumeId, instanceId: id, device: "/dev/xvda", state: "attached")
                    ]))
            let instance = EC2Instance(
                instanceId: id, imageId: image.imageId, instanceType: instanceType, state: state,
                availabilityZone: zone,
                subnetId: subnetId ?? "subnet-default-\(region)", vpcId: "vpc-default-\(region)",
                privateIpAddress: "10.0.1.\(world.nextAddress % 250 + 4)",
                publicIpAddress: state == .running ? world.newPublicIp(region) : nil, launchTime: aws.now(),
                securityGroupIds: securityGroupIds.isEmpty ? ["sg-default-\(region)"] : securityGroupIds,
                rootDeviceName: "/dev/xvda",
                blockDevices: [EC2InstanceBlockDevice(deviceName: "/dev/xvda", volumeId: volumeId, status: "attached")],
                tags: tags)
            world.instances[id] = EC2World.Instance(region: region, value: instance)
            return instance
        }
    }

    /// A snapshot the account owns in this region (completed unless `state` says otherwise), taken at
    /// `startTime` (the account's clock when nil).
    @discardableResult
    public func addSnapshot(
        tags: [String: String], startTime: Date? = nil, volumeSize: Int = 8, state: String = "completed"
    )
        -> EC2Snapshot
    {
        let snapshot = EC2Snapshot(
            snapshotId: aws.newId("snap"), state: state, progress: state == "completed" ? "100%" : "0%",
            startTime: startTime ?? aws.now(), volumeSize: volumeSize, ownerId: MemoryAWS.accountId, encrypted: false,
            tags: tags)
        aws.ec2State.withLock { $0.snapshots[snapshot.snapshotId] = Regional(region: region, value: snapshot) }
        return snapshot
    }

    /// Moves an instance to `state` (as a person, or AWS itself, would).
    public func setState(_ instanceId: String, _ state: InstanceStateName) {
        aws.ec2State.withLock { $0.instances[instanceId]?.value.state = state }
    }

    /// The status checks a running instance reports ("ok", "impaired", …).
    public func setStatusChecks(_ instanceId: String, system: String, instance: String) {
        aws.ec2State.withLock {
            $0.instances[instanceId]?.systemStatus = system
            $0.instances[instanceId]?.instanceStatus = instance
        }
    }

    // MARK: Reading back (any region)

    public func instance(_ id: String) -> EC2Instance? { aws.ec2State.withLock { $0.instances[id]?.value } }
    public func address(_ allocationId: String) -> EC2Address? {
        aws.ec2State.withLock { $0.addresses[allocationId]?.value }
    }
    public func volume(_ id: String) -> EC2Volume? { aws.ec2State.withLock { $0.volumes[id]?.value } }
    public func image(_ id: String) -> EC2Image? { aws.ec2State.withLock { $0.images[id]?.value } }

    /// The instances of this region, by id.
    public var instances: [EC2Instance] {
        aws.ec2State.withLock { world in
            world.instances.values.filter { $0.region == region }.map(\.value).sorted { $0.instanceId < $1.instanceId }
        }
    }

    /// The Elastic IPs of this region, by allocation id.
    public var addresses: [EC2Address] {
        aws.ec2State.withLock { world in
            world.addresses.values.filter { $0.region == region }.map(\.value).sorted {
                ($0.allocationId ?? "") < ($1.allocationId ?? "")
            }
        }
    }

    /// The images the account registered in this region.
    public var ownImages: [EC2Image] {
        aws.ec2State.withLock { world in
            world.images.values.filter { $0.region == region && $0.value.ownerId == MemoryAWS.accountId }.map(\.value)
                .sorted { $0.imageId < $1.imageId }
        }
    }
}

extension MemoryEC2 {
    /// An Elastic IP of this region, on `instanceId` when given (set-up: not logged).
    @discardableResult
    public func addAddress(on instanceId: String? = nil, tags: [String: String] = [:]) -> EC2Address {
        let allocationId = aws.newId("eipalloc")
        let address = aws.ec2State.withLock { world in
            let address = EC2Address(
                publicIp: world.newPublicIp(region), allocationId: allocationId, domain: "vpc", tags: tags)
            world.addresses[allocationId] = Regional(region: region, value: address)
            return address
        }
        moveAddress(allocationId, to: instanceId)
        return self.address(allocationId) ?? address
    }

    /// Puts the Elastic IP on `instanceId`, or takes it off (nil), outside the API (as a person's hand would).
    public func moveAddress(_ allocationId: String, to instanceId: String?) {
        let association = instanceId.map { _ in aws.newId("eipassoc") }
        aws.ec2State.withLock { world in
            guard let address = world.addresses[allocationId]?.value else { return }
            if let previous = address.instanceId { world.instances[previous]?.value.publicIpAddress = nil }
            world.addresses[allocationId]?.value.instanceId = instanceId
            world.addresses[allocationId]?.value.associationId = association
            if let instanceId { world.instances[instanceId]?.value.publicIpAddress = address.publicIp }
        }
    }
}
