import Foundation

// MARK: - Decoding

struct MissingField: Error, CustomStringConvertible {
    var path: String
    init(_ path: String) { self.path = path }
    var description: String { "the answer lacks \(path)" }
}

extension XML.Element {
    func required(_ names: String...) throws -> String {
        var current: XML.Element? = self
        for name in names { current = current?[name] }
        guard let value = current?.text, !value.isEmpty else {
            throw MissingField("\(self.name)/" + names.joined(separator: "/"))
        }
        return value
    }

    func nonEmpty(_ name: String) -> String? { string(name).flatMap { $0.isEmpty ? nil : $0 } }
    func int(_ name: String) -> Int? { string(name).flatMap { Int($0) } }
    func bool(_ name: String) -> Bool? { string(name).flatMap { $0 == "true" ? true : $0 == "false" ? false : nil } }
    func date(_ name: String) -> Date? { string(name).flatMap(UTCTime.parseISO8601) }

    /// `tagSet/item/{key,value}` as a dictionary.
    var tags: [String: String] {
        var tags: [String: String] = [:]
        for item in list("tagSet") {
            if let key = item.string("key") { tags[key] = item.string("value") ?? "" }
        }
        return tags
    }
}

extension EC2Client {
    static func instance(_ item: XML.Element) throws -> EC2Instance {
        EC2Instance(
            instanceId: try item.required("instanceId"), imageId: item.nonEmpty("imageId"),
            instanceType: item.nonEmpty("instanceType"),
            state: InstanceStateName(rawValue: try item.required("instanceState", "name")),
            stateCode: item["instanceState"]?.int("code"),
            stateReason: item["stateReason"]?.nonEmpty("code") ?? item.nonEmpty("reason"),
            availabilityZone: item["placement"]?.nonEmpty("availabilityZone"), subnetId: item.nonEmpty("subnetId"),
            vpcId: item.nonEmpty("vpcId"), privateIpAddress: item.nonEmpty("privateIpAddress"),
            publicIpAddress: item.nonEmpty("ipAddress"), keyName: item.nonEmpty("keyName"),
            launchTime: item.date("launchTime"),
            securityGroupIds: item.list("groupSet").compactMap { $0.nonEmpty("groupId") },
            iamInstanceProfileArn: item["iamInstanceProfile"]?.nonEmpty("arn"),
            rootDeviceName: item.nonEmpty("rootDeviceName"),
            blockDevices: item.list("blockDeviceMapping").compactMap { mapping in
                guard let device = mapping.nonEmpty("deviceName") else { return nil }
                return EC2InstanceBlockDevice(
                    deviceName: device, volumeId: mapping["ebs"]?.nonEmpty("volumeId"),
                    status: mapping["ebs"]?.nonEmpty("status"),
                    deleteOnTermination: mapping["ebs"]?.bool("deleteOnTermination"))
            }, clientToken: item.nonEmpty("clientToken"), tags: item.tags)
    }

    static func statusCheck(_ element: XML.Element?) -> StatusCheck {
        guard let element else { return StatusCheck(status: "not-applicable", details: []) }
        return StatusCheck(
            status: element.string("status") ?? "not-applicable",
            details: element.list("details").map { detail in
                StatusCheck.Detail(
                    name: detail.string("name") ?? "", status: detail.string("status") ?? "",
                    impairedSince: detail.date("impairedSince"))
            })
    }

    static func instanceStatus(_ item: XML.Element) throws -> InstanceStatus {
        InstanceStatus(
            instanceId: try item.required("instanceId"), availabilityZone: item.nonEmpty("availabilityZone"),
            state: InstanceStateName(rawValue: try item.required("instanceState", "name")),
            systemStatus: statusCheck(item["systemStatus"]), instanceStatus: statusCheck(item["instanceStatus"]),
            events: item.list("eventsSet").map { event in
                InstanceStatusEvent(
                    code: event.string("code") ?? "", description: event.nonEmpty("description"),
                    notBefore: event.date("notBefore"), notAfter: event.date("notAfter"))
            })
    }

    static func snapshot(_ item: XML.Element) throws -> EC2Snapshot {
        EC2Snapshot(
            snapshotId: try item.required("snapshotId"), volumeId: item.nonEmpty("volumeId"),
            state: item.string("status") ?? "", progress: item.nonEmpty("progress"), startTime: item.date("startTime"),
            volumeSize: item.int("volumeSize"), description: item.nonEmpty("description"),
            ownerId: item.nonEmpty("ownerId"), encrypted: item.bool("encrypted"), tags: item.tags)
    }

    static func blockDeviceMapping(_ item: XML.Element) -> BlockDeviceMapping? {
        guard let device = item.nonEmpty("deviceName") else { return nil }
        let ebs = item["ebs"].map { ebs in
            EBSBlockDevice(
                snapshotId: ebs.nonEmpty("snapshotId"), volumeSize: ebs.int("volumeSize"),
                volumeType: ebs.nonEmpty("volumeType"), deleteOnTermination: ebs.bool("deleteOnTermination"),
                encrypted: ebs.bool("encrypted"), iops: ebs.int("iops"))
        }
        return BlockDeviceMapping(deviceName: device, ebs: ebs, virtualName: item.nonEmpty("virtualName"))
    }

    static func image(_ item: XML.Element) throws -> EC2Image {
        EC2Image(
            imageId: try item.required("imageId"), name: item.nonEmpty("name"), state: item.string("imageState") ?? "",
            ownerId: item.nonEmpty("imageOwnerId"), architecture: item.nonEmpty("architecture"),
            rootDeviceName: item.nonEmpty("rootDeviceName"), rootDeviceType: item.nonEmpty("rootDeviceType"),
            virtualizationType: item.nonEmpty("virtualizationType"), creationDate: item.date("creationDate"),
            description: item.nonEmpty("description"),
            blockDeviceMappings: item.list("blockDeviceMapping").compactMap(blockDeviceMapping), tags: item.tags)
    }

    static func address(_ item: XML.Element) throws -> EC2Address {
        EC2Address(
            publicIp: try item.required("publicIp"), allocationId: item.nonEmpty("allocationId"),
            associationId: item.nonEmpty("associationId"), domain: item.nonEmpty("domain"),
            instanceId: item.nonEmpty("instanceId"), networkInterfaceId: item.nonEmpty("networkInterfaceId"),
            privateIpAddress: item.nonEmpty("privateIpAddress"), tags: item.tags)
    }

    static func attachment(_ item: XML.Element) throws -> VolumeAttachment {
        VolumeAttachment(
            volumeId: try item.required("volumeId"), instanceId: item.nonEmpty("instanceId"),
            device: item.nonEmpty("device"), state: item.nonEmpty("status"), attachTime: item.date("attachTime"),
            deleteOnTermination: item.bool("deleteOnTermination"))
    }

    static func volume(_ item: XML.Element) throws -> EC2Volume {
        EC2Volume(
            volumeId: try item.required("volumeId"), size: item.int("size"), snapshotId: item.nonEmpty("snapshotId"),
            availabilityZone: item.nonEmpty("availabilityZone"), state: item.string("status") ?? "",
            volumeType: item.nonEmpty("volumeType"), iops: item.int("iops"), encrypted: item.bool("encrypted"),
            createTime: item.date("createTime"), attachments: try item.list("attachmentSet").map(attachment),
            tags: item.tags)
    }
}

// MARK: - Encoding

extension QueryParameters {
    /// `Filter.N.Name` and `Filter.N.Value.M`.
    mutating func setFilters(_ filters: [EC2Filter]) {
        setList("Filter", filters) { prefix, filter, params in
            params.set("\(prefix).Name", filter.name)
            params.setList("\(prefix).Value", filter.values)
        }
    }

    /// One `TagSpecification` per resource type, each with all the tags (sorted by key).
    mutating func setTagSpecifications(_ resourceTypes: [String], _ tags: [String: String]) {
        guard !tags.isEmpty else { return }
        let sorted = tags.sorted { $0.key < $1.key }
        setList("TagSpecification", resourceTypes) { prefix, type, params in
            params.set("\(prefix).ResourceType", type)
            params.setList("\(prefix).Tag", sorted) { tagPrefix, tag, p in
                p.set("\(tagPrefix).Key", tag.key)
                p.set("\(tagPrefix).Value", tag.value)
            }
        }
    }

    mutating func setBlockDeviceMappings(_ mappings: [BlockDeviceMapping]) {
        setList("BlockDeviceMapping", mappings) { prefix, mapping, params in
            params.set("\(prefix).DeviceName", mapping.deviceName)
            params.set("\(prefix).VirtualName", mapping.virtualName)
            if let ebs = mapping.ebs {
                params.set("\(prefix).Ebs.SnapshotId", ebs.snapshotId)
                params.set("\(prefix).Ebs.VolumeSize", ebs.volumeSize)
                params.set("\(prefix).Ebs.VolumeType", ebs.volumeType)
                params.set("\(prefix).Ebs.DeleteOnTermination", ebs.deleteOnTermination)
                params.set("\(prefix).Ebs.Encrypted", ebs.encrypted)
                params.set("\(prefix).Ebs.Iops", ebs.iops)
            }
        }
    }
}
