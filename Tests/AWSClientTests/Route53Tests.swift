import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

/// Route 53 requests, answers, errors and the INSYNC waiter, against a scripted fake transport.
@Suite("Route 53 encoding")
struct Route53EncodingTests {
    static let changeAnswer = #"""
        <?xml version="1.0" encoding="UTF-8"?>
        <ChangeResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeInfo><Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status><SubmittedAt>2026-01-02T03:04:05.678Z</SubmittedAt><Comment>failover</Comment></ChangeInfo></ChangeResourceRecordSetsResponse>
        """#

    static func getChange(_ status: String) -> ScriptedTransport.Answer {
        .init(
            200,
            "<GetChangeResponse><ChangeInfo><Id>/change/C1</Id><Status>\(status)</Status><SubmittedAt>2026-01-02T03:04:05Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
        )
    }

    @Test("UPSERT of an A record: path, XML body, global signing region; the answer's ids lose their prefixes")
    func upsert() async throws {
        let transport = ScriptedTransport { _, _ in .init(200, Self.changeAnswer) }
        let route53 = Route53Client(fakeAWS(transport, region: "us-west-2"))
        let change = try await route53.upsertARecord(
            hostedZoneId: "/hostedzone/Z123", name: "www.example.com.", addresses: ["203.0.113.10", "203.0.113.11"],
            ttl: 60,
            comment: "failover <to DR>")
        #expect(change.id == "C2682N5HXP0BZ4")
        #expect(change.status == .pending)
        #expect(change.comment == "failover")
        #expect(change.submittedAt == UTCTime.parseISO8601("2026-01-02T03:04:05.678Z"))
        let request = try #require(transport.requests.first)
        #expect(request.method == "POST")
        #expect(request.url == "http://fake.local/2013-04-01/hostedzone/Z123/rrset")
        #expect(
            request.headers.first { $0.name == "Authorization" }?.value.contains("/us-east-1/route53/aws4_request")
                == true)
        let body = try XML.parse(request.body)
        #expect(body.name == "ChangeResourceRecordSetsRequest")
        #expect(body[path: "ChangeBatch", "Comment"]?.text == "failover <to DR>")
        let changeElement = try #require(body[path: "ChangeBatch", "Changes", "Change"])
        #expect(changeElement.string("Action") == "UPSERT")
        let set = try #require(changeElement["ResourceRecordSet"])
        #expect(set.string("Name") == "www.example.com.")
        #expect(set.string("Type") == "A")
        #expect(set.string("TTL") == "60")
        #expect(
            set.list("ResourceRecords", item: "ResourceRecord").compactMap { $0.string("Value") } == [
                "203.0.113.10", "203.0.113.11",
            ])
        #expect(
            String(decoding: request.body, as: UTF8.self).contains(
                #"xmlns="https://route53.amazonaws.com/doc/2013-04-01/""#))
    }

    @Test(
        "an A record needs IPv4 addresses; bad ones are refused before sending",
        arguments: [
            [], ["1.2.3"], ["256.1.1.1"], ["01.2.3.4"], ["::1"], [""], ["1.2.3.4", "1.2.3.x"], ["１.2.3.4"],
        ])
    func badAddresses(_ addresses: [String]) async {
        let transport = ScriptedTransport { _, _ in .init(200, Self.changeAnswer) }
        await #expect(throws: AWSError.self) {
            _ = try await Route53Client(fakeAWS(transport)).upsertARecord(
                hostedZoneId: "Z1", name: "a.example.com", addresses: addresses)
        }
        #expect(transport.requests.isEmpty)
    }

    @Test("alias records and deletes are written as Route 53 expects")
    func aliasAndDelete() throws {
        let xml = Route53Client.changeBatchXML(
            [
                ResourceRecordSetChange(
                    .delete,
                    ResourceRecordSet(name: "old.example.com", type: .cname, ttl: 300, values: ["x.example.com"])),
                ResourceRecordSetChange(
                    .create,
                    ResourceRecordSet(
                        name: "app.example.com", type: .a, setIdentifier: "primary",
                        aliasTarget: AliasTarget(
                            hostedZoneId: "Z2FDTNDATAQYW2", dnsName: "d1.cloudfront.net", evaluateTargetHealth: true))),
            ], comment: nil)
        let root = try XML.parse(xml)
        let changes = root[path: "ChangeBatch", "Changes"]?.all("Change") ?? []
        #expect(changes.map { $0.string("Action") } == ["DELETE", "CREATE"])
        #expect(root[path: "ChangeBatch", "Comment"] == nil)
        let alias = try #require(changes[1][path: "ResourceRecordSet", "AliasTarget"])
        #expect(alias.string("DNSName") == "d1.cloudfront.net")
        #expect(alias.string("EvaluateTargetHealth") == "true")
        #expect(changes[1][path: "ResourceRecordSet", "TTL"] == nil)
        #expect(changes[1][path: "ResourceRecordSet", "SetIdentifier"]?.text == "primary")
    }

    @Test("InvalidChangeBatch and NoSuchHostedZone answers become AWSErrors with code and reasons")
    func errors() async throws {
        let transport = ScriptedTransport { request, _ in
            request.method == "POST"
                ? .init(
                    400,
                    #"<?xml version="1.0"?><InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Messages><Message>Tried to create resource record set [name='a.example.com.', type='A'] but it already exists</Message><Message>second reason</Message></Messages><RequestId>r-53</RequestId></InvalidChangeBatch>"#
                )
                : .init(
                    404,
                    #"<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>NoSuchHostedZone</Code><Message>No hosted zone found with ID: Z404</Message></Error><RequestId>r-404</RequestId></ErrorResponse>"#
                )
        }
        let route53 = Route53Client(fakeAWS(transport))
        do {
            _ = try await route53.upsertARecord(hostedZoneId: "Z1", name: "a.example.com", addresses: ["192.0.2.1"])
            Issue.record("expected InvalidChangeBatch")
        } catch let error as AWSError {
            #expect(error.code == "InvalidChangeBatch")
            #expect(error.kind == .clientError)
            #expect(error.message.contains("already exists") && error.message.contains("; second reason"))
            #expect(error.requestId == "r-53")
            #expect(error.attempts == 1)
        }
        do {
            _ = try await route53.listResourceRecordSets(hostedZoneId: "Z404")
            Issue.record("expected NoSuchHostedZone")
        } catch let error as AWSError {
            #expect(error.code == "NoSuchHostedZone")
            #expect(error.httpStatus == 404)
            #expect(error.requestId == "r-404")
        }
    }

    @Test("ListResourceRecordSets follows NextRecordName/NextRecordType to the last page")
    func listPages() async throws {
        let transport = ScriptedTransport { request, _ in
            if request.url.contains("name=") {
                return .init(
                    200,
                    """
                    <ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>www.example.com.</Name><Type>A</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>192.0.2.1</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>
                    """)
            }
            return .init(
                200,
                """
                <ListResourceRecordSetsResponse><ResourceRecordSets><ResourceRecordSet><Name>example.com.</Name><Type>NS</Type><TTL>172800</TTL><ResourceRecords><ResourceRecord><Value>ns-1.example.net.</Value></ResourceRecord><ResourceRecord><Value>ns-2.example.net.</Value></ResourceRecord></ResourceRecords></ResourceRecordSet><ResourceRecordSet><Name>app.example.com.</Name><Type>A</Type><AliasTarget><HostedZoneId>Z2</HostedZoneId><DNSName>lb.example.net.</DNSName><EvaluateTargetHealth>false</EvaluateTargetHealth></AliasTarget></ResourceRecordSet></ResourceRecordSets><IsTruncated>true</IsTruncated><NextRecordName>www.example.com.</NextRecordName><NextRecordType>A</NextRecordType><MaxItems>2</MaxItems></ListResourceRecordSetsResponse>
                """)
        }
        let records = try await Route53Client(fakeAWS(transport)).listResourceRecordSets(hostedZoneId: "/hostedzone/Z1")
        #expect(records.map(\.name) == ["example.com.", "app.example.com.", "www.example.com."])
        #expect(records[0].values == ["ns-1.example.net.", "ns-2.example.net."])
        #expect(records[0].ttl == 172_800)
        #expect(records[1].aliasTarget == AliasTarget(hostedZoneId: "Z2", dnsName: "lb.example.net."))
        #expect(records[1].ttl == nil)
        #expect(records[2].type == .a)
        let urls = transport.requests.map(\.url)
        #expect(
            urls == [
                "http://fake.local/2013-04-01/hostedzone/Z1/rrset",
                "http://fake.local/2013-04-01/hostedzone/Z1/rrset?name=www.example.com.&type=A",
            ])
    }

    @Test("the INSYNC waiter polls on the injected clock, times out when bounded, stops when cancelled")
    func waiter() async throws {
        let answers = [Self.getChange("PENDING"), Self.getChange("PENDING"), Self.getChange("INSYNC")]
        let transport = ScriptedTransport { _, index in answers[min(index, 2)] }
        let recorder = SleepRecorder()
        let aws = AWSClient(
            region: "eu-west-1", credentials: StaticCredentialProvider(testCredentials), http: transport,
            environment: ["AWS_ENDPOINT_URL": "http://fake.local"], dependencies: recorder.dependencies)
        let done = try await Route53Client(aws).waitUntilChangeInsync("/change/C1", interval: .seconds(5))
        #expect(done.status == .insync)
        #expect(recorder.delays == [.seconds(5), .seconds(5)])
        #expect(
            transport.requests.allSatisfy { $0.method == "GET" && $0.url == "http://fake.local/2013-04-01/change/C1" })

        let pending = ScriptedTransport { _, _ in Self.getChange("PENDING") }
        do {
            _ = try await Route53Client(fakeAWS(pending)).waitUntilChangeInsync(
                "C1", timeout: .seconds(60), interval: .seconds(20))
            Issue.record("expected a timeout")
        } catch let error as WaiterError {
            #expect(error.reason == .timedOut)
            #expect(error.lastState == "PENDING")
            #expect(pending.requests.count == 4)
        }

        // Real sleeps of an hour: only cancellation can end this wait.
        let polled = AsyncStream<Void>.makeStream()
        let hanging = ScriptedTransport { _, _ in
            polled.continuation.yield()
            return Self.getChange("PENDING")
        }
        let live = AWSClient(
            region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: hanging,
            environment: ["AWS_ENDPOINT_URL": "http://fake.local"])
        let task = Task {
            try await Route53Client(live).waitUntilChangeInsync(
                "C1", timeout: .seconds(86_400), interval: .seconds(3600))
        }
        var iterator = polled.stream.makeAsyncIterator()
        await iterator.next()
        let cancelled = ContinuousClock.now
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        // The next poll is an hour away: ending within a minute, even on a loaded machine, means the
        // cancellation ended the wait.
        #expect(ContinuousClock.now - cancelled < .seconds(60))
        #expect(hanging.requests.count == 1)
    }

    @Test("ids are accepted with or without their prefix")
    func ids() {
        #expect(Route53Client.bareId("/hostedzone/Z1") == "Z1")
        #expect(Route53Client.bareId("/change/C1") == "C1")
        #expect(Route53Client.bareId("Z1") == "Z1")
    }
}

/// Route 53 against moto: a hosted zone, an UPSERT, the change, the record. The client's region is
/// us-west-2; Route 53 signs for us-east-1 anyway.
@Suite("Route 53 against moto", .enabled(if: TestEnvironment.motoEndpoint != nil))
struct Route53IntegrationTests {
    @Test("create a zone, UPSERT an A record twice, GetChange and wait INSYNC, see it listed, delete")
    func upsertLifecycle() async throws {
        let route53 = Route53Client(motoAWS(region: "us-west-2"))
        let zoneName = "\(uniqueName("fleet")).example.com"
        let zone = try await route53.createHostedZone(name: zoneName, comment: "fleet test")
        #expect(zone.name == zoneName + ".")
        #expect(!zone.id.contains("/"))
        try await withCleanup { cleanup in
            await cleanup.add("zone \(zone.id)") { try await route53.deleteHostedZone(zone.id) }
            let record = "www.\(zoneName)."
            let change = try await route53.upsertARecord(
                hostedZoneId: zone.id, name: record, addresses: ["198.51.100.7", "198.51.100.8"], ttl: 60,
                comment: "primary")
            #expect(!change.id.isEmpty && !change.id.contains("/"))
            #expect([Route53ChangeStatus.pending, .insync].contains(change.status))
            let fetched = try await route53.getChange(change.id)
            #expect(fetched.id == change.id)
            #expect(fetched.status == .insync)  // moto reports every change INSYNC at once
            #expect(try await route53.waitUntilChangeInsync(change.id).status == .insync)

            let listed = try await route53.listResourceRecordSets(hostedZoneId: zone.id)
            let a = try #require(listed.first { $0.name == record && $0.type == .a })
            #expect(a.ttl == 60)
            #expect(a.values == ["198.51.100.7", "198.51.100.8"])
            #expect(listed.contains { $0.type == .soa } && listed.contains { $0.type == .ns })

            // Failover: the same name now points at the DR address; UPSERT replaces, it does not add.
            let moved = try await route53.upsertARecord(
                hostedZoneId: "/hostedzone/\(zone.id)", name: record, addresses: ["203.0.113.9"], ttl: 30)
            try await route53.waitUntilChangeInsync(moved.id, interval: .seconds(1))
            let after = try await route53.listResourceRecordSets(hostedZoneId: zone.id).filter {
                $0.name == record && $0.type == .a
            }
            #expect(after.map(\.values) == [["203.0.113.9"]])
            #expect(after.first?.ttl == 30)

            // Remove the record so the zone can be deleted.
            _ = try await route53.changeResourceRecordSets(
                hostedZoneId: zone.id, changes: [ResourceRecordSetChange(.delete, try #require(after.first))])
            #expect(
                try await route53.listResourceRecordSets(hostedZoneId: zone.id).contains { $0.name == record } == false)
        }
        await #expect(throws: AWSError.self) { _ = try await route53.listResourceRecordSets(hostedZoneId: zone.id) }
    }
}
