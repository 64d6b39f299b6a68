import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// The notifier over the real broker and Redis, with SES and SNS on a private moto (read back from
/// `/moto-api/data.json`) and a local webhook receiver standing in for Slack and Teams.
@Suite("Notifier delivers notices", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct NotifierTests {
    @Test("one notice reaches e-mail, Slack, Teams and SNS, each in its exact shape", .timeLimit(.minutes(2)))
    func everyChannel() async throws {
        let h = try await NotifierHarness()
        do {
            let notice = h.notice("outage")
            try await h.publish(notice)
            try await h.waitProcessed(1)

            let hooks = try await h.receiver.requests(http: h.world.http)
            let slack = try #require(hooks.first { $0.path == NotifierHarness.slackPath })
            let teams = try #require(hooks.first { $0.path == NotifierHarness.teamsPath })
            #expect(hooks.count == 2)
            #expect(slack.contentType == "application/json; charset=utf-8")
            #expect(
                slack.body
                    == (try NoticeFormatter.json(
                        h.formatter.slackPayload(notice, channel: "#ops", username: "recovery"))))
            let slackJSON = try #require(slack.json)
            #expect(slackJSON["channel"] as? String == "#ops")
            #expect((slackJSON["blocks"] as? [[String: Any]])?.first?["type"] as? String == "header")
            #expect(teams.body == (try NoticeFormatter.json(h.formatter.teamsPayload(notice))))
            // The Adaptive Card schema's required fields, as Teams Workflows checks them.
            let attachment = try #require((teams.json?["attachments"] as? [[String: Any]])?.first)
            #expect(attachment["contentType"] as? String == "application/vnd.microsoft.card.adaptive")
            let card = try #require(attachment["content"] as? [String: Any])
            #expect(card["type"] as? String == "AdaptiveCard")
            #expect(card["version"] as? String == "1.4")
            #expect(card["$schema"] as? String == "http://adaptivecards.io/schemas/adaptive-card.json")
            let body = try #require(card["body"] as? [[String: Any]])
            #expect(!body.isEmpty && body.allSatisfy { ($0["type"] as? String)?.isEmpty == false })

            let sent = try await h.sentByAWS()
            #expect(sent.emails.count == 1)
            let email = try #require(sent.emails.first)
            #expect(email["subject"] as? String == h.formatter.emailSubject(notice))
            #expect((email["destinations"] as? [String: [String]])?["ToAddresses"] == h.recipients)
            #expect(email["body"] as? String == h.formatter.emailHTML(notice))  // moto keeps the HTML part
            #expect(sent.sns.count == 1)
            let published = try #require(sent.sns.first)
            #expect(published[1] as? String == (try h.formatter.snsMessage(notice)))
            #expect(published[2] as? String == h.formatter.snsSubject(notice))
            #expect(try await h.deadLetters.items.isEmpty)
        } catch {
            await h.tearDown()
            throw error
        }
        await h.tearDown()
    }

    @Test(
        "Slack answering 500 and Teams on a closed port: e-mail and SNS still go out, each failure is dead-lettered with its channel and reason, and a redelivery retries only what failed",
        .timeLimit(.minutes(2)))
    func channelDown() async throws {
        let closed = try await WebhookReceiver()
        let closedPort = closed.port
        closed.stop()
        let h = try await NotifierHarness(teamsURL: "http://127.0.0.1:\(closedPort)\(NotifierHarness.teamsPath)")
        do {
            try await h.receiver.setStatus(500, forPathsStartingWith: "/slack", http: h.world.http)
            let notice = h.notice("down")
            try await h.publish(notice)
            try await h.waitProcessed(1)

            var sent = try await h.sentByAWS()
            #expect(sent.emails.count == 1)
            #expect(sent.sns.count == 1)
            #expect(
                try await h.receiver.requests(http: h.world.http).filter { $0.path == NotifierHarness.slackPath }.count
                    == 3,
                "three attempts")
            #expect(
                h.sleeps.values.sorted() == [.seconds(1), .seconds(1), .seconds(2), .seconds(2)],
                "backoff 1 s then 2 s per channel")
            let dead = await h.deadLetters.wait(for: 2)
            try #require(dead.count == 2)
            let byChannel: [String: AMQPDelivery] = Dictionary(
                uniqueKeysWithValues: dead.map {
                    ($0.properties.headers[NotifierWorker.channelHeader]?.stringValue ?? "?", $0)
                })
            #expect(Set(byChannel.keys) == ["slack", "teams"])
            let slackReason = try #require(byChannel["slack"]?.properties.headers["x-reject-reason"]?.stringValue)
            let teamsReason = try #require(byChannel["teams"]?.properties.headers["x-reject-reason"]?.stringValue)
            #expect(
                slackReason.hasPrefix("notifier channel slack failed after 3 attempts: slack webhook answered HTTP 500")
            )
            #expect(
                teamsReason.hasPrefix(
                    "notifier channel teams failed after 3 attempts: HTTP request to http://127.0.0.1:\(closedPort) failed: could not connect"
                ))
            for reason in [slackReason, teamsReason] {
                #expect(!reason.contains(NotifierHarness.secret), "webhook URLs are secrets")
            }
            #expect(
                byChannel["slack"]?.body == h.lastPublished.withLock { $0 },
                "the dead-letter copy is the message itself")
            #expect(byChannel["slack"]?.properties.messageId == notice.id)

            // Slack is back; the notice comes again (shovelled back from the dead-letter queue, or
            // redelivered): only the channels that have not taken it are tried.
            try await h.receiver.setStatus(200, forPathsStartingWith: "/slack", http: h.world.http)
            try await h.publish(notice)
            try await h.waitProcessed(2)
            let slackRequests = try await h.receiver.requests(http: h.world.http).filter {
                $0.path == NotifierHarness.slackPath
            }
            #expect(slackRequests.count == 4)
            sent = try await h.sentByAWS()
            #expect(sent.emails.count == 1, "e-mail is not sent twice")
            #expect(sent.sns.count == 1, "SNS is not sent twice")
            #expect(await h.deadLetters.wait(for: 3).count == 3, "Teams is still down: dead-lettered again")
            #expect(try await h.markers.get(NotifierWorker.markerKey(noticeId: notice.id, channel: "slack")) != nil)
            #expect(try await h.markers.get(NotifierWorker.markerKey(noticeId: notice.id, channel: "teams")) == nil)
        } catch {
            await h.tearDown()
            throw error
        }
        await h.tearDown()
    }

    @Test("the same notice published twice is sent once per channel", .timeLimit(.minutes(2)))
    func duplicate() async throws {
        let h = try await NotifierHarness()
        do {
            let notice = h.notice("dup")
            try await h.publish(notice)
            try await h.publish(notice)
            try await h.waitProcessed(2)
            let hooks = try await h.receiver.requests(http: h.world.http)
            #expect(hooks.filter { $0.path == NotifierHarness.slackPath }.count == 1)
            #expect(hooks.filter { $0.path == NotifierHarness.teamsPath }.count == 1)
            let sent = try await h.sentByAWS()
            #expect(sent.emails.count == 1)
            #expect(sent.sns.count == 1)
            // A different notice of the same incident is a new message.
            try await h.publish(h.notice("dup-next"))
            try await h.waitProcessed(3)
            #expect(
                try await h.receiver.requests(http: h.world.http).filter { $0.path == NotifierHarness.slackPath }.count
                    == 2)
        } catch {
            await h.tearDown()
            throw error
        }
        await h.tearDown()
    }

    @Test(
        "each target's channels come from the instance-config table, over the fleet defaults", .timeLimit(.minutes(2)))
    func perTargetChannels() async throws {
        let teamPath = "/slack/services/T0002/B0002/SHOPTEAMSECRET"
        let h = try await NotifierHarness(perTarget: [:])
        do {
            // Three targets: one with its own Slack webhook and channel and its own recipients, limited to
            // e-mail and Slack; one muted; one without an item (fleet defaults).
            let table = TargetConfigTable(dynamo: DynamoDBClient(h.aws), tableName: "\(h.world.prefix)-instance-config")
            let own = "\(h.world.prefix)-own"
            let muted = "\(h.world.prefix)-muted"
            let plain = "\(h.world.prefix)-plain"
            try await table.put(
                target: own,
                settings: Data(
                    """
                    {"notify": {"channels": ["email", "slack"], "email_to": ["shop-team@example.com"],
                                "slack_webhook_url": "\(h.receiver.baseURL + teamPath)", "slack_channel": "#shop"}}
                    """.utf8))
            try await table.put(target: muted, settings: Data(#"{"notify": {"channels": []}}"#.utf8))

            let ownNotice = h.notice("own", target: own)
            try await h.publish(ownNotice)
            try await h.publish(h.notice("muted", target: muted))
            try await h.publish(h.notice("plain", target: plain))
            try await h.waitProcessed(3)

            let hooks = try await h.receiver.requests(http: h.world.http)
            // The target's own webhook got its notice, with its channel; the fleet's Slack only the plain one.
            let team = hooks.filter { $0.path == teamPath }
            #expect(team.count == 1)
            #expect(
                team.first?.body
                    == (try NoticeFormatter.json(
                        h.formatter.slackPayload(ownNotice, channel: "#shop", username: "recovery"))))
            let fleetSlack = hooks.filter { $0.path == NotifierHarness.slackPath }
            #expect(fleetSlack.count == 1)
            #expect((fleetSlack.first?.json?["text"] as? String)?.contains(plain) == true)
            // Teams and SNS: only the plain target (the own one limited itself to e-mail and Slack).
            #expect(hooks.filter { $0.path == NotifierHarness.teamsPath }.count == 1)
            let sent = try await h.sentByAWS()
            #expect(sent.sns.count == 1)
            // E-mail: the own target's to its recipients, the plain one's to the fleet's; none for the muted one.
            #expect(sent.emails.count == 2)
            let destinations = sent.emails.compactMap { ($0["destinations"] as? [String: [String]])?["ToAddresses"] }
            #expect(destinations.contains(["shop-team@example.com"]))
            #expect(destinations.contains(h.recipients))
            #expect(!sent.emails.contains { ($0["subject"] as? String)?.contains(muted) == true })
            #expect(try await h.deadLetters.items.isEmpty)
        } catch {
            await h.tearDown()
            throw error
        }
        await h.tearDown()
    }

    @Test("NOTIFICATION_ENABLED=false: notices are acked, nothing is sent", .timeLimit(.minutes(2)))
    func disabled() async throws {
        let h = try await NotifierHarness(enabled: false)
        do {
            try await h.publish(h.notice("off"))
            try await h.waitProcessed(1)
            #expect(try await h.receiver.requests(http: h.world.http).isEmpty)
            let sent = try await h.sentByAWS()
            #expect(sent.emails.isEmpty && sent.sns.isEmpty)
            #expect(await h.deadLetters.items.isEmpty)
        } catch {
            await h.tearDown()
            throw error
        }
        await h.tearDown()
    }

    @Test(
        "a channel that fails twice succeeds on the third attempt; a webhook's 400 is not retried",
        .timeLimit(.minutes(2)))
    func retries() async throws {
        let flaky = FlakyChannel(failures: 2)
        let h = try await NotifierHarness(extraChannels: [flaky], only: ["slack"])
        do {
            try await h.receiver.setStatus(400, forPathsStartingWith: "/slack", http: h.world.http)
            try await h.publish(h.notice("flaky"))
            try await h.waitProcessed(1)
            #expect(flaky.calls.load(ordering: .relaxed) == 3)
            #expect(h.sleeps.values == [.seconds(1), .seconds(2)], "only the flaky channel waited")
            #expect(try await h.receiver.requests(http: h.world.http).count == 1, "400 is permanent: one attempt")
            let dead = await h.deadLetters.wait(for: 1)
            try #require(dead.count == 1)
            #expect(dead.first?.properties.headers[NotifierWorker.channelHeader]?.stringValue == "slack")
            #expect(
                dead.first?.properties.headers["x-reject-reason"]?.stringValue?.contains("HTTP 400: invalid_payload")
                    == true)
        } catch {
            await h.tearDown()
            throw error
        }
        await h.tearDown()
    }
}

// MARK: Support

final class FlakyChannel: NotificationChannel {
    let failures: Int
    let calls = Atomic<Int>(0)
    init(failures: Int) { self.failures = failures }
    var name: String { "flaky" }
    struct Failure: Error {}
    func deliver(_ notice: Notice) async throws {
        let n = calls.add(1, ordering: .relaxed).newValue
        if n <= failures { throw Failure() }
    }
}

final class SleepLog: Sendable {
    private let log = Mutex<[Duration]>([])
    var values: [Duration] { log.withLock { $0 } }
    func record(_ d: Duration) { log.withLock { $0.append(d) } }
}

actor Processed {
    private(set) var ids: [String] = []
    func add(_ id: String) { ids.append(id) }
}

final class NotifierHarness: Sendable {
    static let secret = "XXSECRETTOKENXX"
    static let slackPath = "/slack/services/T0001/B0001/\(secret)"
    static let teamsPath = "/teams/workflows/abc/triggers/manual/paths/invoke?sig=\(secret)"

    let world: World
    let redis: RedisClient
    let publisher: AMQPPublisher
    let consumer: AMQPConsumer
    let deadConsumer: AMQPConsumer
    let deadLetters: DeadLog
    let receiver: WebhookReceiver
    /// A private moto: reading back what SES and SNS sent from the shared one takes minutes.
    let moto: WebhookReceiver
    let aws: AWSClient
    let sender: String
    let topicArn: String
    let recipients = ["ops@example.com", "oncall@example.com"]
    let formatter = NoticeFormatter(defaultRegion: "us-east-1")
    let sleeps = SleepLog()
    let processed = Processed()
    let lastPublished = Mutex<[UInt8]>([])
    let loop: Task<Void, Never>
    var markers: RedisKeyValueStore { RedisKeyValueStore(client: redis, keyspace: world.keyspace) }
    typealias DeadLog = DeliveryLog

    /// `perTarget`: target name -> its instance-config item (JSON settings), written to an instance-config
    /// table in the private moto; the notifier then routes with `TargetChannelRouter` over fleet defaults
    /// equal to the harness's four channels.
    init(
        teamsURL: String? = nil, enabled: Bool = true, extraChannels: [any NotificationChannel] = [],
        only: Set<String>? = nil,
        perTarget: [String: String]? = nil
    ) async throws {
        let world = try World()
        self.world = world
        redis = try await RedisClient.connect(url: world.redisURL)
        publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        consumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.notificationsQueue)
        deadConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp,
            queue: FleetTopology.deadLetterQueue(for: world.topology.notificationsQueue))
        deadLetters = DeliveryLog(deadConsumer)
        receiver = try await WebhookReceiver()
        moto = try await WebhookReceiver(script: WebhookReceiver.motoScript)
        aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: world.http, environment: ["AWS_ENDPOINT_URL": moto.baseURL])
        sender = "fleet-\(world.prefix)@example.com"
        let ses = SESClient(aws)
        try await ses.verifyEmailIdentity(sender)
        let sns = SNSClient(aws)
        topicArn = try await sns.createTopic(name: "\(world.prefix)-alerts")

        var channels: [any NotificationChannel] = [
            EmailChannel(ses: ses, from: sender, to: recipients, formatter: formatter),
            WebhookChannel.slack(
                http: world.http, url: receiver.baseURL + Self.slackPath, channel: "#ops", username: "recovery",
                formatter: formatter),
            WebhookChannel.teams(
                http: world.http, url: teamsURL ?? receiver.baseURL + Self.teamsPath, formatter: formatter),
            SNSChannel(sns: sns, topicArn: topicArn, formatter: formatter),
        ]
        if let only { channels = channels.filter { only.contains($0.name) } }
        channels += extraChannels
        var options = NotifierWorker.Options(workerId: "notifier-test")
        options.enabled = enabled
        let logger = Logger(label: "notifier-test")
        let sink = DeadLetterSink(publisher: publisher, topology: world.topology, workerName: "notifier-test")
        let sleeps = sleeps
        var router: any NotificationRouting = FleetChannels(channels)
        if let perTarget {
            let table = TargetConfigTable(dynamo: DynamoDBClient(aws), tableName: "\(world.prefix)-instance-config")
            try await table.create()
            for (target, settings) in perTarget { try await table.put(target: target, settings: Data(settings.utf8)) }
            var defaults = NotificationDefaults()
            defaults.emailFrom = sender
            defaults.emailTo = recipients
            defaults.slackWebhookURL = receiver.baseURL + Self.slackPath
            defaults.slackChannel = "#ops"
            defaults.slackUsername = "recovery"
            defaults.teamsWebhookURL = teamsURL ?? receiver.baseURL + Self.teamsPath
            defaults.snsTopicArn = topicArn
            router = TargetChannelRouter(
                defaults: defaults, source: TargetConfigSource(file: .empty, table: table),
                http: world.http, aws: aws, formatter: formatter, logger: logger)
        }
        let worker = NotifierWorker(
            options: options, router: router, markers: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
            deadLetters: sink, queue: world.topology.notificationsQueue, logger: logger, sleep: { sleeps.record($0) })
        let processed = processed
        let messages = MessageWorker(
            consumer: consumer, deadLetters: sink, expecting: .notification, logger: logger, senders: nil
        ) {
            (envelope: Envelope<Notice>, delivery) in
            try await worker.handle(envelope, delivery: delivery)
            await processed.add(envelope.id)
        }
        loop = Task { await messages.run() }
    }

    func notice(_ name: String, target: String? = nil) -> Notice {
        let at = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))  // survives the wire exactly
        let target = target ?? "\(world.prefix)-shop"
        return Notice(
            id: "inc-\(world.prefix):\(name)", kind: .outageDeclared, at: at, target: target,
            instanceId: "i-0abc1234def567890",
            region: "us-east-1", incidentId: "inc-\(world.prefix)", outageCount: 1, nextStep: .restart,
            nextStepAt: at.addingTimeInterval(300), detail: "3 failed checks",
            commands: [RecoveryCtl.ack(target), RecoveryCtl.run(.restart, target) ?? ""])
    }

    func publish(_ notice: Notice) async throws {
        let envelope = Envelope(
            type: .notification, id: notice.id, correlationId: notice.incidentId, target: notice.target,
            instanceId: notice.instanceId, occurredAt: notice.at, body: notice)
        let body = try EnvelopeCodec.encode(envelope)
        lastPublished.withLock { $0 = body }
        try await publisher.publish(
            OutgoingMessage(
                exchange: world.topology.exchange,
                routingKey: FleetTopology.routingKey(.notification, target: notice.target),
                body: body, properties: AMQPProperties(messageId: envelope.id)))
    }

    func waitProcessed(_ count: Int, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while await processed.ids.count < count {
            guard ContinuousClock.now < deadline else {
                Issue.record("only \(await processed.ids.count) of \(count) notices processed")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// What moto says was sent from this harness's sender and to its topic.
    func sentByAWS() async throws -> (emails: [[String: Any]], sns: [[Any]]) {
        let data = try await motoState()
        let emails = ((data["ses"] as? [String: Any])?["Message"] as? [[String: Any]] ?? []).filter {
            $0["source"] as? String == sender
        }
        let topics = (data["sns"] as? [String: Any])?["Topic"] as? [[String: Any]] ?? []
        let topic = topics.first { $0["arn"] as? String == topicArn }
        return (emails, topic?["sent_notifications"] as? [[Any]] ?? [])
    }

    /// `GET /moto-api/data.json`; moto sometimes answers 500 while other suites change its state.
    func motoState() async throws -> [String: Any] {
        let endpoint = moto.baseURL
        var response: HTTPResponse
        var attempt = 0
        repeat {
            attempt += 1
            response = try await world.http.execute(
                HTTPRequest(url: endpoint + "/moto-api/data.json", timeout: .seconds(60), maxBodyBytes: 256 << 20))
        } while response.status == 500 && attempt < 5
        try #require(response.status == 200)
        return try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
    }

    func tearDown() async {
        await consumer.shutdown()
        loop.cancel()
        await deadConsumer.shutdown()
        await publisher.shutdown()
        receiver.stop()
        moto.stop()
        await redis.close()
        await world.tearDown(instances: [])
    }
}
