import Foundation
import Testing

@testable import AWSClient

/// EC2 request encoding and response decoding, against a recording fake transport (no server).
@Suite("EC2 encoding")
struct EC2EncodingTests {
    func client(_ transport: RecordingTransport, region: String = "us-east-1") -> EC2Client {
        EC2Client(
            AWSClient(
                region: region, credentials: StaticCredentialProvider(testCredentials), http: transport,
                environment: ["AWS_ENDPOINT_URL": "http://fake.local"], dependencies: SleepRecorder().dependencies))
    }

    static let instanceXML = """
        <item><instanceId>i-1</instanceId><imageId>ami-1</imageId><instanceState><code>16</code><name>running</name></instanceState>
        <instanceType>t3.micro</instanceType><placement><availabilityZone>us-east-1a</availabilityZone></placement>
        <ipAddress>1.2.3.4</ipAddress><privateIpAddress>10.0.0.1</privateIpAddress><launchTime>2026-01-02T03:04:05.000Z</launchTime>
        <groupSet><item><groupId>sg-1</groupId></item></groupSet><iamInstanceProfile><arn>arn:aws:iam::1:instance-profile/p</arn></iamInstanceProfile>
        <blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><volumeId>vol-1</volumeId><status>attached</status><deleteOnTermination>true</deleteOnTermination></ebs></item></blockDeviceMapping>
        <tagSet><item><key>Name</key><value>web &amp; api</value></item></tagSet><clientToken>tok</clientToken></item>
        """

    @Test("RunInstances sends every input, base64 user data, tags for instance and volumes, IMDSv2")
    func runInstances() async throws {
        let transport = RecordingTransport { form, _ in
            if form["Action"] == "DescribeInstances" {
                return (200, "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>")
            }
            return (
                200, "<RunInstancesResponse><instancesSet>\(Self.instanceXML)</instancesSet></RunInstancesResponse>"
            )
        }
        let instance = try await client(transport).runInstance(
            RunInstancesInput(
                imageId: "ami-1", instanceType: "t3.micro", subnetId: "subnet-1", securityGroupIds: ["sg-1", "sg-2"],
                keyName: "ops", iamInstanceProfile: .name("web-role"), tags: ["Name": "web", "env": "prod"],
                userData: "#!/bin/sh\necho hi\n", clientToken: "incident-42",
                blockDeviceMappings: [
                    BlockDeviceMapping(deviceName: "/dev/xvda", ebs: EBSBlockDevice(volumeSize: 20, volumeType: "gp3"))
                ]))
        #expect(instance.instanceId == "i-1")
        #expect(instance.state == .running)
        #expect(instance.tags["Name"] == "web & api")
        #expect(instance.publicIpAddress == "1.2.3.4")
        #expect(instance.blockDevices.first?.volumeId == "vol-1")
        #expect(instance.launchTime == UTCTime.parseISO8601("2026-01-02T03:04:05Z"))

        let forms = transport.forms
        #expect(forms.count == 2)
        // First the lookup by the client-token tag, then the launch.
        #expect(forms[0]["Action"] == "DescribeInstances")
        #expect(forms[0]["Filter.1.Name"] == "tag:fleet:client-token")
        #expect(forms[0]["Filter.1.Value.1"] == "incident-42")
        let run = forms[1]
        let expected: [String: String] = [
            "Action": "RunInstances", "Version": "2016-11-15", "ImageId": "ami-1", "InstanceType": "t3.micro",
            "MinCount": "1", "MaxCount": "1", "ClientToken": "incident-42", "SubnetId": "subnet-1",
            "SecurityGroupId.1": "sg-1", "SecurityGroupId.2": "sg-2", "KeyName": "ops",
            "IamInstanceProfile.Name": "web-role", "UserData": "IyEvYmluL3NoCmVjaG8gaGkK",
            "BlockDeviceMapping.1.DeviceName": "/dev/xvda", "BlockDeviceMapping.1.Ebs.VolumeSize": "20",
            "BlockDeviceMapping.1.Ebs.VolumeType": "gp3", "MetadataOptions.HttpTokens": "required",
            "MetadataOptions.HttpEndpoint": "enabled",
            "TagSpecification.1.ResourceType": "instance", "TagSpecification.2.ResourceType": "volume",
            "TagSpecification.1.Tag.1.Key": "Name", "TagSpecification.1.Tag.1.Value": "web",
            "TagSpecification.1.Tag.2.Key": "env", "TagSpecification.1.Tag.2.Value": "prod",
            "TagSpecification.1.Tag.3.Key": "fleet:client-token", "TagSpecification.1.Tag.3.Value": "incident-42",
            "TagSpecification.2.Tag.3.Key": "fleet:client-token",
        ]
        for (key, value) in expected { #expect(run[key] == value, "\(key)") }
    }

    @Test("RunInstances without a token generates one per call and skips the lookup")
    func generatedToken() async throws {
        let transport = RecordingTransport { _, _ in
            (200, "<RunInstancesResponse><instancesSet>\(Self.instanceXML)</instancesSet></RunInstancesResponse>")
        }
        let ec2 = client(transport)
        _ = try await ec2.runInstance(
            RunInstancesInput(imageId: "ami-1", instanceType: "t3.micro", requireIMDSv2: false))
        _ = try await ec2.runInstance(RunInstancesInput(imageId: "ami-1", instanceType: "t3.micro"))
        let forms = transport.forms
        #expect(forms.map { $0["Action"] } == ["RunInstances", "RunInstances"])
        #expect(forms[0]["ClientToken"]?.count == 36)
        #expect(forms[0]["ClientToken"] != forms[1]["ClientToken"])
        #expect(forms[0]["MetadataOptions.HttpTokens"] == nil)
    }

    @Test("DescribeInstanceStatus goes in batches of 100 ids with IncludeAllInstances")
    func statusBatches() async throws {
        let transport = RecordingTransport { form, _ in
            let ids = form.filter { $0.key.hasPrefix("InstanceId.") }.values.sorted()
            let items = ids.map {
                "<item><instanceId>\($0)</instanceId><instanceState><code>16</code><name>running</name></instanceState><systemStatus><status>impaired</status><details><item><name>reachability</name><status>failed</status><impairedSince>2026-01-01T00:00:00Z</impairedSince></item></details></systemStatus><instanceStatus><status>ok</status></instanceStatus><eventsSet><item><code>system-reboot</code><description>scheduled</description><notBefore>2026-02-01T00:00:00Z</notBefore></item></eventsSet></item>"
            }
            return (
                200,
                "<DescribeInstanceStatusResponse><instanceStatusSet>\(items.joined())</instanceStatusSet></DescribeInstanceStatusResponse>"
            )
        }
        let ids = (0..<250).map { String(format: "i-%05d", $0) }
        let statuses = try await client(transport).describeInstanceStatus(instanceIds: ids)
        #expect(statuses.count == 250)
        #expect(Set(statuses.map(\.instanceId)) == Set(ids))
        let forms = transport.forms
        #expect(forms.count == 3)
        #expect(forms.map { $0.keys.filter { $0.hasPrefix("InstanceId.") }.count } == [100, 100, 50])
        #expect(forms.allSatisfy { $0["IncludeAllInstances"] == "true" && $0["MaxResults"] == nil })
        let first = try #require(statuses.first)
        #expect(first.systemStatus.isImpaired)
        #expect(first.systemStatus.details.first?.name == "reachability")
        #expect(first.instanceStatus.isOK)
        #expect(first.events.first?.code == "system-reboot")
    }

    @Test("DescribeInstances follows nextToken to the last page and refuses a token loop")
    func pagination() async throws {
        let transport = RecordingTransport { form, _ in
            let page = form["NextToken"].flatMap { Int($0.dropFirst(5)) } ?? 0
            let next = page < 2 ? "<nextToken>page-\(page + 1)</nextToken>" : ""
            let item = Self.instanceXML.replacingOccurrences(of: "i-1", with: "i-p\(page)")
            return (
                200,
                "<DescribeInstancesResponse><reservationSet><item><instancesSet>\(item)</instancesSet></item></reservationSet>\(next)</DescribeInstancesResponse>"
            )
        }
        let instances = try await client(transport).describeInstances(filters: [.tag("env", "prod")])
        #expect(instances.map(\.instanceId) == ["i-p0", "i-p1", "i-p2"])
        #expect(transport.forms.map { $0["NextToken"] } == [nil, "page-1", "page-2"])
        #expect(transport.forms.allSatisfy { $0["MaxResults"] == "1000" && $0["Filter.1.Name"] == "tag:env" })

        let looping = RecordingTransport { _, _ in
            (200, "<DescribeInstancesResponse><reservationSet/><nextToken>same</nextToken></DescribeInstancesResponse>")
        }
        await #expect(throws: AWSError.self) { _ = try await client(looping).describeInstances() }
        #expect(looping.requests.count == 2)
    }

    @Test("a cross-region CopySnapshot carries a presigned URL for the source region")
    func copySnapshotPresigned() async throws {
        let transport = RecordingTransport { _, _ in
            (200, "<CopySnapshotResponse><snapshotId>snap-copy</snapshotId></CopySnapshotResponse>")
        }
        let dr = client(transport, region: "us-west-2")
        #expect(
            try await dr.copySnapshot(sourceSnapshotId: "snap-1", sourceRegion: "us-east-1", encrypted: true)
                == "snap-copy")
        #expect(try await dr.copySnapshot(sourceSnapshotId: "snap-1", sourceRegion: "us-west-2") == "snap-copy")
        let forms = transport.forms
        let cross = forms[0]
        #expect(cross["DestinationRegion"] == "us-west-2")
        let url = try #require(cross["PresignedUrl"])
        #expect(
            url.hasPrefix(
                "http://fake.local/?Action=CopySnapshot&Version=2016-11-15&SourceRegion=us-east-1&SourceSnapshotId=snap-1"
            ))
        #expect(url.contains("X-Amz-Credential=AKIDTESTCLIENT%2F"))
        #expect(url.contains("%2Fus-east-1%2Fec2%2Faws4_request"))
        #expect(url.contains("X-Amz-Signature="))
        #expect(forms[1]["PresignedUrl"] == nil)
        #expect(forms[1]["DestinationRegion"] == nil)
        // The request itself is signed for the destination region.
        let auth = transport.requests[0].headers.first { $0.name == "Authorization" }?.value ?? ""
        #expect(auth.contains("/us-west-2/ec2/aws4_request"))
    }

    @Test("RegisterImage from a snapshot sends the root device and its block device mapping")
    func registerImage() async throws {
        let transport = RecordingTransport { _, _ in
            (200, "<RegisterImageResponse><imageId>ami-new</imageId></RegisterImageResponse>")
        }
        let id = try await client(transport).registerImage(
            .fromSnapshot(
                name: "dr-web", snapshotId: "snap-9", rootDeviceName: "/dev/xvda", volumeSize: 30, tags: ["a": "b"]))
        #expect(id == "ami-new")
        let form = try #require(transport.forms.first)
        let expected: [String: String] = [
            "Action": "RegisterImage", "Name": "dr-web", "Architecture": "x86_64", "RootDeviceName": "/dev/xvda",
            "VirtualizationType": "hvm", "EnaSupport": "true", "BlockDeviceMapping.1.DeviceName": "/dev/xvda",
            "BlockDeviceMapping.1.Ebs.SnapshotId": "snap-9", "BlockDeviceMapping.1.Ebs.VolumeSize": "30",
            "BlockDeviceMapping.1.Ebs.VolumeType": "gp3", "BlockDeviceMapping.1.Ebs.DeleteOnTermination": "true",
            "TagSpecification.1.ResourceType": "image", "TagSpecification.1.Tag.1.Key": "a",
        ]
        for (key, value) in expected { #expect(form[key] == value, "\(key)") }
    }

    @Test("a malformed success answer is an invalidResponse error, not a crash")
    func malformedAnswer() async throws {
        let transport = RecordingTransport { _, _ in
            (200, "<RunInstancesResponse><instancesSet/></RunInstancesResponse>")
        }
        do {
            _ = try await client(transport).runInstance(RunInstancesInput(imageId: "ami-1", instanceType: "t3.micro"))
            Issue.record("expected an error")
        } catch let error as AWSError {
            #expect(error.kind == .invalidResponse)
            #expect(error.operation == "RunInstances")
        }
        let notXML = RecordingTransport { _, _ in (200, "not xml") }
        await #expect(throws: AWSError.self) { try await client(notXML).rebootInstances(["i-1"]) }
    }
}
