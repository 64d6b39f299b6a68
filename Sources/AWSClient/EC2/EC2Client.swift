import Foundation

/// Typed EC2 calls on the core ``AWSClient`` (Query protocol, API 2016-11-15).
///
/// One instance per region, like the core client: `ec2.withRegion("us-west-2")` for the DR region.
/// Describe calls return every page. All calls throw ``AWSError`` (or `CancellationError`).
public struct EC2Client: Sendable {
    public let aws: AWSClient

    /// Tag put on instances launched with a caller-chosen client token, so that a relaunch with the same
    /// token finds the first instance even where the server ignores `ClientToken` (moto does; AWS
    /// honours it on its side too).
    public static let clientTokenTagKey = "fleet:client-token"
    /// At most this many instance ids per DescribeInstanceStatus request (an AWS limit).
    public static let statusBatchSize = 100

    /// `MaxResults` of paginated Describe calls without ids (AWS allows 5–1000).
    public var pageSize: Int = 1000

    public init(_ aws: AWSClient) { self.aws = aws }

    public var region: String { aws.region }

    public func withRegion(_ region: String) -> EC2Client {
        var copy = EC2Client(aws.withRegion(region))
        copy.pageSize = pageSize
        return copy
    }

    // MARK: Instances

    /// DescribeInstances: every instance matching the ids and filters, across all pages.
    public func describeInstances(instanceIds: [String] = [], filters: [EC2Filter] = []) async throws -> [EC2Instance] {
        var params = QueryParameters()
        params.setList("InstanceId", instanceIds)
        params.setFilters(filters)
        // MaxResults cannot be combined with instance ids.
        return try await paginate("DescribeInstances", params, pageSize: instanceIds.isEmpty ? pageSize : nil) { root in
            try root.list("reservationSet").flatMap { reservation in
                try reservation.list("instancesSet").map(Self.instance)
            }
        }
    }

    /// DescribeInstanceStatus with IncludeAllInstances (so stopped instances are reported too), in
    /// batches of 100 ids. With no ids, every instance of the region.
    public func describeInstanceStatus(instanceIds: [String] = [], filters: [EC2Filter] = []) async throws
        -> [InstanceStatus]
    {
        var base = QueryParameters()
        base.set("IncludeAllInstances", true)
        base.setFilters(filters)
        let parse: @Sendable (XML.Element) throws -> [InstanceStatus] = { root in
            try root.list("instanceStatusSet").map(Self.instanceStatus)
        }
        if instanceIds.isEmpty {
            return try await paginate("DescribeInstanceStatus", base, pageSize: pageSize, parse: parse)
        }
        var statuses: [InstanceStatus] = []
        for start in stride(from: 0, to: instanceIds.count, by: Self.statusBatchSize) {
            var params = base
            params.setList(
                "InstanceId", Array(instanceIds[start..<min(start + Self.statusBatchSize, instanceIds.count)]))
            statuses += try await paginate("DescribeInstanceStatus", params, pageSize: nil, parse: parse)
        }
        return statuses
    }

    public func rebootInstances(_ instanceIds: [String]) async throws {
        var params = QueryParameters()
        params.setList("InstanceId", instanceIds)
        _ = try await aws.query(.ec2, action: "RebootInstances", parameters: params)
    }

    /// StopInstances. `force` skips the OS shutdown (for an instance stuck in stopping).
    public func stopInstances(_ instanceIds: [String], force: Bool = false, hibernate: Bool? = nil) async throws
        -> [InstanceStateChange]
    {
        var params = QueryParameters()
        params.setList("InstanceId", instanceIds)
        if force { params.set("Force", true) }
        params.set("Hibernate", hibernate)
        return try await stateChanges("StopInstances", params)
    }

    public func startInstances(_ instanceIds: [String]) async throws -> [InstanceStateChange] {
        var params = QueryParameters()
        params.setList("InstanceId", instanceIds)
        return try await stateChanges("StartInstances", params)
    }

    public func terminateInstances(_ instanceIds: [String]) async throws -> [InstanceStateChange] {
        var params = QueryParameters()
        params.setList("InstanceId", instanceIds)
        return try await stateChanges("TerminateInstances", params)
    }

    /// RunInstances for exactly one instance (MinCount = MaxCount = 1).
    ///
    /// With a caller-chosen `clientToken`, an instance already launched with that token is returned
    /// instead of launching another (AWS's own idempotency, plus a lookup by the
    /// ``clientTokenTagKey`` tag for servers that ignore the token). Without one, a fresh token is
    /// generated so the client's own retries cannot launch twice.
    public func runInstance(_ input: RunInstancesInput) async throws -> EC2Instance {
        var tags = input.tags
        let token: String
        if let given = input.clientToken {
            token = given
            tags[Self.clientTokenTagKey] = given
            if let existing = try await describeInstances(filters: [.tag(Self.clientTokenTagKey, given)]).first {
                aws.logger.info(
                    "RunInstances skipped in \(region): instance \(existing.instanceId) already launched with this client token"
                )
                return existing
            }
        } else {
            token = UUID().uuidString
        }
        var params = QueryParameters()
        params.set("ImageId", input.imageId)
        params.set("InstanceType", input.instanceType)
        params.set("MinCount", 1)
        params.set("MaxCount", 1)
        params.set("ClientToken", token)
        params.set("SubnetId", input.subnetId)
        params.setList("SecurityGroupId", input.securityGroupIds)
        params.set("KeyName", input.keyName)
        switch input.iamInstanceProfile {
        case .arn(let arn): params.set("IamInstanceProfile.Arn", arn)
        case .name(let name): params.set("IamInstanceProfile.Name", name)
        case nil: break
        }
        params.set("UserData", input.userData.map { Data($0.utf8).base64EncodedString() })
        params.set("PrivateIpAddress", input.privateIpAddress)
        params.set("Placement.AvailabilityZone", input.availabilityZone)
        params.setBlockDeviceMappings(input.blockDeviceMappings)
        params.set("EbsOptimized", input.ebsOptimized)
        if input.requireIMDSv2 {
            params.set("MetadataOptions.HttpTokens", "required")
            params.set("MetadataOptions.HttpEndpoint", "enabled")
        }
        params.setTagSpecifications(["instance", "volume"], tags)
        return try await call("RunInstances", params) { root in
            guard let item = root.list("instancesSet").first else { throw MissingField("instancesSet/item") }
            return try Self.instance(item)
        }
    }

    /// CreateTags on any EC2 resources (instances, volumes, snapshots, images, addresses).
    public func createTags(resourceIds: [String], tags: [String: String]) async throws {
        var params = QueryParameters()
        params.setList("ResourceId", resourceIds)
        params.setList("Tag", tags.sorted { $0.key < $1.key }) { prefix, tag, p in
            p.set("\(prefix).Key", tag.key)
            p.set("\(prefix).Value", tag.value)
        }
        _ = try await aws.query(.ec2, action: "CreateTags", parameters: params)
    }

    /// DeleteTags: removes the tags with these keys (whatever their values) from the resources.
    public func deleteTags(resourceIds: [String], keys: [String]) async throws {
        var params = QueryParameters()
        params.setList("ResourceId", resourceIds)
        params.setList("Tag", keys.sorted()) { prefix, key, p in p.set("\(prefix).Key", key) }
        _ = try await aws.query(.ec2, action: "DeleteTags", parameters: params)
    }

    // MARK: Snapshots and images

    /// DescribeSnapshots, by default of snapshots this account owns (`Owner=self`).
    public func describeSnapshots(
        snapshotIds: [String] = [], ownerIds: [String] = ["self"], filters: [EC2Filter] = []
    ) async throws -> [EC2Snapshot] {
        var params = QueryParameters()
        params.setList("SnapshotId", snapshotIds)
        params.setList("Owner", ownerIds)
        params.setFilters(filters)
        return try await paginate("DescribeSnapshots", params, pageSize: snapshotIds.isEmpty ? pageSize : nil) { root in
            try root.list("snapshotSet").map(Self.snapshot)
        }
    }

    public func createSnapshot(volumeId: String, description: String? = nil, tags: [String: String] = [:]) async throws
        -> EC2Snapshot
    {
        var params = QueryParameters()
        params.set("VolumeId", volumeId)
        params.set("Description", description)
        params.setTagSpecifications(["snapshot"], tags)
        return try await call("CreateSnapshot", params, Self.snapshot)
    }

    /// CopySnapshot into this client's region from `sourceRegion`. Returns the new snapshot's id.
    ///
    /// For a cross-region copy the client adds the `PresignedUrl` (signed for the source region) and
    /// `DestinationRegion` that the Query API requires for encrypted sources, as the AWS SDKs do.
    public func copySnapshot(
        sourceSnapshotId: String, sourceRegion: String, description: String? = nil, encrypted: Bool? = nil,
        kmsKeyId: String? = nil, tags: [String: String] = [:]
    ) async throws -> String {
        var params = QueryParameters()
        params.set("SourceRegion", sourceRegion)
        params.set("SourceSnapshotId", sourceSnapshotId)
        params.set("Description", description)
        params.set("Encrypted", encrypted)
        params.set("KmsKeyId", kmsKeyId)
        if sourceRegion != region {
            params.set("DestinationRegion", region)
            params.set("PresignedUrl", try await presignedCopySnapshotURL(params))
        }
        params.setTagSpecifications(["snapshot"], tags)
        return try await call("CopySnapshot", params) { root in try root.required("snapshotId") }
    }

    private func presignedCopySnapshotURL(_ params: QueryParameters) async throws -> String {
        let source = aws.withRegion(params.value("SourceRegion") ?? region)
        let endpoint = source.endpoint(for: .ec2)
        var form = QueryParameters()
        form.set("Action", "CopySnapshot")
        form.set("Version", AWSService.ec2.apiVersion)
        form.append(params)
        let credentials: AWSCredentials
        do {
            credentials = try await aws.credentialProvider.credentials()
        } catch {
            throw AWSError(
                kind: .credentials, service: "EC2", operation: "CopySnapshot", region: region, message: "\(error)",
                attempts: 0)
        }
        do {
            return try SigV4Signer(service: AWSService.ec2.signingName, region: endpoint.signingRegion).presignURL(
                url: endpoint.url + "/?" + form.formEncoded, credentials: credentials, date: aws.signingNow)
        } catch {
            throw AWSError(
                kind: .invalidRequest, service: "EC2", operation: "CopySnapshot", region: region, message: "\(error)",
                attempts: 0)
        }
    }

    public func deleteSnapshot(_ snapshotId: String) async throws {
        _ = try await aws.query(.ec2, action: "DeleteSnapshot", parameters: QueryParameters(["SnapshotId": snapshotId]))
    }

    /// RegisterImage from EBS snapshots (see ``RegisterImageInput/fromSnapshot(name:snapshotId:rootDeviceName:volumeType:volumeSize:architecture:description:tags:)``).
    /// Returns the new image id.
    public func registerImage(_ input: RegisterImageInput) async throws -> String {
        var params = QueryParameters()
        params.set("Name", input.name)
        params.set("Description", input.description)
        params.set("Architecture", input.architecture)
        params.set("RootDeviceName", input.rootDeviceName)
        params.set("VirtualizationType", input.virtualizationType)
        params.set("EnaSupport", input.enaSupport)
        params.set("BootMode", input.bootMode)
        params.setBlockDeviceMappings(input.blockDeviceMappings)
        params.setTagSpecifications(["image"], input.tags)
        return try await call("RegisterImage", params) { root in try root.required("imageId") }
    }

    /// DescribeImages by ids, owners (`self`, `amazon`, account ids) and filters, across all pages.
    public func describeImages(imageIds: [String] = [], owners: [String] = [], filters: [EC2Filter] = []) async throws
        -> [EC2Image]
    {
        var params = QueryParameters()
        params.setList("ImageId", imageIds)
        params.setList("Owner", owners)
        params.setFilters(filters)
        return try await paginate("DescribeImages", params, pageSize: nil) { root in
            try root.list("imagesSet").map(Self.image)
        }
    }

    public func deregisterImage(_ imageId: String) async throws {
        _ = try await aws.query(.ec2, action: "DeregisterImage", parameters: QueryParameters(["ImageId": imageId]))
    }

    // MARK: Elastic IPs

    public func describeAddresses(
        publicIps: [String] = [], allocationIds: [String] = [], filters: [EC2Filter] = []
    ) async throws -> [EC2Address] {
        var params = QueryParameters()
        params.setList("PublicIp", publicIps)
        params.setList("AllocationId", allocationIds)
        params.setFilters(filters)
        return try await call("DescribeAddresses", params) { root in try root.list("addressesSet").map(Self.address) }
    }

    /// AllocateAddress in the VPC domain.
    public func allocateAddress(tags: [String: String] = [:]) async throws -> EC2Address {
        var params = QueryParameters()
        params.set("Domain", "vpc")
        params.setTagSpecifications(["elastic-ip"], tags)
        return try await call("AllocateAddress", params) { root in
            EC2Address(
                publicIp: try root.required("publicIp"), allocationId: root.string("allocationId"), associationId: nil,
                domain: root.string("domain"), instanceId: nil, networkInterfaceId: nil, privateIpAddress: nil,
                tags: tags)
        }
    }

    /// AssociateAddress; `allowReassociation` moves the address from another instance (the failover case).
    /// Returns the association id.
    public func associateAddress(allocationId: String, instanceId: String, allowReassociation: Bool = true) async throws
        -> String
    {
        var params = QueryParameters()
        params.set("AllocationId", allocationId)
        params.set("InstanceId", instanceId)
        params.set("AllowReassociation", allowReassociation)
        return try await call("AssociateAddress", params) { root in try root.required("associationId") }
    }

    public func disassociateAddress(associationId: String) async throws {
        _ = try await aws.query(
            .ec2, action: "DisassociateAddress", parameters: QueryParameters(["AssociationId": associationId]))
    }

    public func releaseAddress(allocationId: String) async throws {
        _ = try await aws.query(
            .ec2, action: "ReleaseAddress", parameters: QueryParameters(["AllocationId": allocationId]))
    }

    // MARK: Volumes

    public func describeVolumes(volumeIds: [String] = [], filters: [EC2Filter] = []) async throws -> [EC2Volume] {
        var params = QueryParameters()
        params.setList("VolumeId", volumeIds)
        params.setFilters(filters)
        return try await paginate("DescribeVolumes", params, pageSize: volumeIds.isEmpty ? min(pageSize, 500) : nil) {
            root in
            try root.list("volumeSet").map(Self.volume)
        }
    }

    public func createVolume(_ input: CreateVolumeInput) async throws -> EC2Volume {
        var params = QueryParameters()
        params.set("AvailabilityZone", input.availabilityZone)
        params.set("Size", input.size)
        params.set("SnapshotId", input.snapshotId)
        params.set("VolumeType", input.volumeType)
        params.set("Iops", input.iops)
        params.set("Throughput", input.throughput)
        params.set("Encrypted", input.encrypted)
        params.set("KmsKeyId", input.kmsKeyId)
        params.set("ClientToken", UUID().uuidString)
        params.setTagSpecifications(["volume"], input.tags)
        return try await call("CreateVolume", params, Self.volume)
    }

    public func attachVolume(volumeId: String, instanceId: String, device: String) async throws -> VolumeAttachment {
        var params = QueryParameters()
        params.set("VolumeId", volumeId)
        params.set("InstanceId", instanceId)
        params.set("Device", device)
        return try await call("AttachVolume", params, Self.attachment)
    }

    /// DetachVolume; `force` is a last resort for a volume stuck detaching (data may be lost).
    public func detachVolume(volumeId: String, instanceId: String? = nil, device: String? = nil, force: Bool = false)
        async throws -> VolumeAttachment
    {
        var params = QueryParameters()
        params.set("VolumeId", volumeId)
        params.set("InstanceId", instanceId)
        params.set("Device", device)
        if force { params.set("Force", true) }
        return try await call("DetachVolume", params, Self.attachment)
    }

    public func deleteVolume(_ volumeId: String) async throws {
        _ = try await aws.query(.ec2, action: "DeleteVolume", parameters: QueryParameters(["VolumeId": volumeId]))
    }

    // MARK: Plumbing

    /// One call, its answer decoded by `parse`; a decoding failure becomes an `.invalidResponse` AWSError.
    func call<T>(_ action: String, _ params: QueryParameters, _ parse: (XML.Element) throws -> T) async throws -> T {
        let root = try await aws.query(.ec2, action: action, parameters: params)
        do {
            return try parse(root)
        } catch {
            throw AWSError(
                kind: .invalidResponse, service: "EC2", operation: action, region: region, message: "\(error)",
                requestId: root.string("requestId"))
        }
    }

    /// Follows `nextToken` until the last page.
    func paginate<T>(
        _ action: String, _ params: QueryParameters, pageSize: Int?, parse: (XML.Element) throws -> [T]
    ) async throws -> [T] {
        var results: [T] = []
        var token: String?
        var seen: Set<String> = []
        repeat {
            var page = params
            page.set("MaxResults", pageSize)
            page.set("NextToken", token)
            let root = try await aws.query(.ec2, action: action, parameters: page)
            do {
                results += try parse(root)
            } catch {
                throw AWSError(
                    kind: .invalidResponse, service: "EC2", operation: action, region: region, message: "\(error)",
                    requestId: root.string("requestId"))
            }
            token = root.string("nextToken").flatMap { $0.isEmpty ? nil : $0 }
            if let token, !seen.insert(token).inserted {
                throw AWSError(
                    kind: .invalidResponse, service: "EC2", operation: action, region: region,
                    message: "the same NextToken came back twice; stopping to avoid a loop")
            }
        } while token != nil
        return results
    }

    private func stateChanges(_ action: String, _ params: QueryParameters) async throws -> [InstanceStateChange] {
        try await call(action, params) { root in
            try root.list("instancesSet").map { item in
                InstanceStateChange(
                    instanceId: try item.required("instanceId"),
                    previousState: InstanceStateName(rawValue: try item.required("previousState", "name")),
                    currentState: InstanceStateName(rawValue: try item.required("currentState", "name")))
            }
        }
    }
}
