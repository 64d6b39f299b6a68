import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import Testing

/// The notifier on the memory drivers, with no service variables set: routing per target, sent-markers,
/// retries and dead letters, and secrets kept out of errors and logs. The same worker against RabbitMQ,
/// Redis, a webhook receiver and moto: NotifierTests.
@Suite("Notifier on memory drivers")
struct NotifierMemoryTests {
    static let fleetSlack = "https://hooks.slack.com/services/T0/B0/FLEETSLACKSECRET"
    static let shopSlack = "https://hooks.slack.com/services/T1/B1/SHOPSLACKSECRET"
    static let teams =
        "https://prod.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=TEAMSSECRET"
    static let topicArn = "arn:aws:sns:us-west-2:123456789012:fleet-alerts"
    static let secrets = ["FLEETSLACKSECRET", "SHOPSLACKSECRET", "TEAMSSECRET"]

    /// The fleet has e-mail, Slack, Teams and SNS; `shop` has its own recipients and Slack webhook and
    /// only those two channels; `muted` has none.
    static let config = #"""
        {"targets": {
          "shop": {"notify": {"channels": ["email", "slack"], "email_to": ["shop-team@example.com"],
                              "slack_webhook_url": "\#(shopSlack)", "slack_channel": "#shop"}},
          "muted": {"notify": {"channels": []}}
        }}
        """#

    /// The notifier's consumer loop (sender gate included) over a memory queue, its dead letters in a
    /// memory queue, the channels on memory HTTP and memory SES/SNS.
    final class Rig: Sendable {
        let topology = FleetTopology(prefix: "mem")
        let http = MemoryHTTP()
        let senders = MemoryNoticeSenders()
        let markers = MemoryKeyValueStore()
        let sleeps = SleepLog()
        let logs = CapturedLogs(label: "notifier-test")
        let formatter = NoticeFormatter(defaultRegion: "us-east-1")
        let defaults: NotificationDefaults
        let notifications: MemoryDeliverySource
        let deadLetters: MemoryDeliverySource
        let worker: NotifierWorker
        let loop: Task<Void, Never>

        /// `webhooksUp`: every webhook answers 200.
        init(enabled: Bool = true, webhooksUp: Bool = false) throws {
            var defaults = NotificationDefaults()
            defaults.emailFrom = "fleet@example.com"
            defaults.emailTo = ["ops@example.com"]
            defaults.slackWebhookURL = NotifierMemoryTests.fleetSlack
            defaults.slackChannel = "#ops"
            defaults.slackUsername = "recovery"
            defaults.teamsWebhookURL = NotifierMemoryTests.teams
            defaults.snsTopicArn = NotifierMemoryTests.topicArn
            self.defaults = defaults
            let broker = MemoryBroker()
            let publisher = MemoryPublisher(broker: broker, user: "fleet-notifier")
            notifications = MemoryDeliverySource(queue: topology.notificationsQueue)
            deadLetters = broker.queue(
                "\(topology.notificationsQueue).dead", boundTo: topology.deadLetterExchange,
                patterns: [topology.notificationsQueue])
            let router = TargetChannelRouter(
                defaults: defaults, source: .fixed(try TargetConfigFile(data: Data(NotifierMemoryTests.config.utf8))),
                http: http,
                aws: senders, formatter: formatter, logger: logs.logger)
            var options = NotifierWorker.Options(workerId: "notifier-test")
            options.enabled = enabled
            let sink = DeadLetterSink(publisher: publisher, topology: topology, workerName: "notifier-test")
            let sleeps = sleeps
            let worker = NotifierWorker(
                options: options, router: router, markers: markers, deadLetters: sink,
                queue: topology.notificationsQueue, logger: logs.logger, sleep: { sleeps.record($0) })
            self.worker = worker
            let gate = SenderGate(
                identities: .deploymentDefaults, ownUser: "fleet-notifier", logger: logs.logger,
                announce: worker.announcingRefusals())
            let messages = MessageWorker(
                consumer: notifications, deadLetters: sink, expecting: .notification, logger: logs.logger,
                senders: gate, handler: worker.handle)
            loop = Task { await messages.run() }
            if webhooksUp {
                for url in [NotifierMemoryTests.fleetSlack, NotifierMemoryTests.shopSlack, NotifierMemoryTests.teams] {
                    http.script(url, .status(200, "ok"))
                }
            }
        }

        func notice(_ id: String, target: String?, detail: String = "3 failed checks") -> Notice {
            Notice(
                id: id, kind: .outageDeclared, at: Date(timeIntervalSince1970: 1_800_000_000), target: target,
                instanceId: "i-0abc", region: "us-east-1", detail: detail,
                commands: ["recoveryctl ack \(target ?? "fleet")"])
        }

        /// Puts the notice on the queue as `user` published it; returns the message's bytes.
        @discardableResult
        func deliver(_ notice: Notice, from user: String = "fleet-decision") throws -> [UInt8] {
            let body = try EnvelopeCodec.encode(
                Envelope(
                    type: .notification, id: notice.id, target: notice.target,
                    occurredAt: notice.at, body: notice))
            notifications.deliver(
                body, properties: AMQPProperties(messageId: notice.id, userId: user, type: "notification"),
                routingKey: "notification.\(notice.target ?? "fleet")")
            return body
        }

        /// Waits until `count` deliveries have been settled (acked, after sending or dead-lettering).
        func settled(_ count: Int) async throws {
            let source = notifications
            try #require(await eventually { source.acked.count >= count }, "\(source.acked.count) of \(count) settled")
            #expect(source.unacked.isEmpty)
        }

        func webhookBodies(_ url: String) -> [String] {
            http.requests(to: url).map { String(decoding: $0.body, as: UTF8.self) }
        }

        func stop() {
            notifications.shutdown()
            loop.cancel()
        }
    }

    @Test(
        "a notice goes to each of its target's channels once, in its shape; a target without an entry gets the fleet's channels"
    )
    func routedOnce() async throws {
        let rig = try Rig(webhooksUp: true)
        let shop = rig.notice("n-shop", target: "shop")
        let plain = rig.notice("n-plain", target: "plain")
        try rig.deliver(shop)
        try rig.deliver(plain)
        try await rig.settled(2)

        // shop: its own Slack webhook and channel, its own recipients; no Teams, no SNS for it.
        let shopPosts = rig.http.requests(to: Self.shopSlack)
        try #require(shopPosts.count == 1)
        #expect(shopPosts[0].method == "POST")
        #expect(
            shopPosts[0].headers.contains { $0.name == "Content-Type" && $0.value == "application/json; charset=utf-8" }
        )
        #expect(
            shopPosts[0].body
                == Array(
                    try NoticeFormatter.json(rig.formatter.slackPayload(shop, channel: "#shop", username: "recovery"))))
        let emails = rig.senders.emails
        try #require(emails.count == 2)
        let shopMail = try #require(emails.first { $0.email.to == ["shop-team@example.com"] })
        #expect(shopMail.email.from == "fleet@example.com")
        #expect(shopMail.email.subject == rig.formatter.emailSubject(shop))
        #expect(shopMail.email.htmlBody == rig.formatter.emailHTML(shop))
        // plain: the fleet's four channels; SNS in the topic's region.
        #expect(
            rig.webhookBodies(Self.fleetSlack) == [
                String(
                    decoding: try NoticeFormatter.json(
                        rig.formatter.slackPayload(plain, channel: "#ops", username: "recovery")), as: UTF8.self)
            ])
        #expect(
            rig.webhookBodies(Self.teams) == [
                String(decoding: try NoticeFormatter.json(rig.formatter.teamsPayload(plain)), as: UTF8.self)
            ])
        #expect(
            emails.contains {
                $0.email.to == ["ops@example.com"] && $0.email.subject == rig.formatter.emailSubject(plain)
            })
        let sns = rig.senders.messages
        try #require(sns.count == 1)
        #expect(sns[0].region == "us-west-2")
        #expect(sns[0].message.topicArn == Self.topicArn)
        #expect(sns[0].message.message == (try rig.formatter.snsMessage(plain)))
        #expect(sns[0].message.attributes["target"] == .string("plain"))

        for channel in ["email", "slack"] {
            #expect(
                try await rig.markers.get(NotifierWorker.markerKey(noticeId: "n-shop", channel: channel))
                    == "notifier-test")
        }
        #expect(try await rig.markers.get(NotifierWorker.markerKey(noticeId: "n-shop", channel: "teams")) == nil)
        #expect(rig.deadLetters.unacked.isEmpty)
        rig.stop()
    }

    @Test("a redelivered notice is not sent again; another notice is")
    func redeliveryIsNotSentTwice() async throws {
        let rig = try Rig(webhooksUp: true)
        let notice = rig.notice("n-1", target: "shop")
        try rig.deliver(notice)
        try await rig.settled(1)
        try rig.deliver(notice)
        try await rig.settled(2)
        #expect(rig.http.requests(to: Self.shopSlack).count == 1)
        #expect(rig.senders.emails.count == 1)
        let outcome = try await rig.worker.deliver(notice, delivery: nil)
        #expect(outcome.results == ["email": .duplicate, "slack": .duplicate])

        try rig.deliver(rig.notice("n-2", target: "shop"))
        try await rig.settled(3)
        #expect(rig.http.requests(to: Self.shopSlack).count == 2)
        #expect(rig.senders.emails.count == 2)
        rig.stop()
    }

    /// A rig whose `shop` Slack webhook answers `slackAnswers` and whose e-mail fails `emailFailures`
    /// times, after one notice for `shop` was delivered and settled; the notice and its message's bytes.
    static func shopNotice(_ id: String, slackAnswers: MemoryHTTP.Reply, emailFailures: Int = 0) async throws
        -> (rig: Rig, notice: Notice, body: [UInt8])
    {
        let rig = try Rig()
        rig.http.script(Self.shopSlack, slackAnswers)
        rig.senders.failNext(emailFailures)
        let notice = rig.notice(id, target: "shop")
        let body = try rig.deliver(notice)
        try await rig.settled(1)
        return (rig, notice, body)
    }

    @Test(
        "a channel that keeps failing is retried with backoff, then dead-lettered with its channel and reason; the others are sent, and a redelivery retries only it"
    )
    func failingChannelIsDeadLettered() async throws {
        let (rig, notice, body) = try await Self.shopNotice("n-down", slackAnswers: .status(500, "service unavailable"))

        #expect(rig.http.requests(to: Self.shopSlack).count == 3, "three attempts")
        #expect(rig.sleeps.values == [.seconds(1), .seconds(2)])
        #expect(rig.senders.emails.count == 1, "e-mail went out regardless")
        let dead = rig.deadLetters.unacked
        try #require(dead.count == 1)
        #expect(dead[0].body == body, "the dead letter is the message itself")
        #expect(dead[0].properties.messageId == "n-down")
        #expect(dead[0].properties.headers[NotifierWorker.channelHeader] == .string("slack"))
        #expect(
            dead[0].properties.headers["x-reject-reason"]?.stringValue
                == "notifier channel slack failed after 3 attempts: slack webhook answered HTTP 500: service unavailable (the service failed; it will be retried)"
        )
        #expect(try await rig.markers.get(NotifierWorker.markerKey(noticeId: "n-down", channel: "slack")) == nil)

        // Slack is back and the notice comes again: only Slack is tried.
        rig.http.script(Self.shopSlack, .status(200, "ok"))
        try rig.deliver(notice)
        try await rig.settled(2)
        #expect(rig.http.requests(to: Self.shopSlack).count == 4)
        #expect(rig.senders.emails.count == 1)
        #expect(rig.deadLetters.unacked.count == 1)
        rig.stop()
    }

    @Test(
        "a webhook's 400 is not retried; a channel that fails twice and then takes the notice is sent, not dead-lettered"
    )
    func permanentAndTransientFailures() async throws {
        let (rig, _, _) = try await Self.shopNotice(
            "n-400", slackAnswers: .status(400, "invalid_payload"), emailFailures: 2)
        #expect(rig.http.requests(to: Self.shopSlack).count == 1)
        #expect(rig.senders.emails.count == 1, "e-mail failed twice, then went out")
        #expect(rig.sleeps.values == [.seconds(1), .seconds(2)], "only e-mail waited")
        let dead = rig.deadLetters.unacked
        try #require(dead.count == 1)
        #expect(dead[0].properties.headers[NotifierWorker.channelHeader] == .string("slack"))
        #expect(
            dead[0].properties.headers["x-reject-reason"]?.stringValue?.contains("HTTP 400: invalid_payload") == true)
        #expect(try await rig.markers.get(NotifierWorker.markerKey(noticeId: "n-400", channel: "email")) != nil)
        rig.stop()
    }

    @Test("webhook URLs are secrets: a refused and a failing webhook show in dead letters and logs without them")
    func secretsStayOut() async throws {
        let rig = try Rig()
        rig.http.script(Self.teams, .status(503, "down"))  // the fleet's Slack is not scripted: refused
        try rig.deliver(rig.notice("n-secret", target: "plain"))
        try await rig.settled(1)

        let reasons = rig.deadLetters.unacked.compactMap { $0.properties.headers["x-reject-reason"]?.stringValue }
        #expect(reasons.count == 2)
        #expect(
            reasons.contains {
                $0.contains(
                    "slack failed after 3 attempts: HTTP request to https://hooks.slack.com:443 failed: could not connect"
                )
            })
        #expect(
            reasons.contains { $0.contains("teams failed after 3 attempts: teams webhook answered HTTP 503: down") })
        let logged = rig.logs.lines
        #expect(
            logged.contains { $0.contains("delivery to slack failed") && $0.contains("could not connect") },
            "the failure is logged")
        for secret in Self.secrets {
            #expect(!reasons.contains { $0.contains(secret) }, "\(secret) in a dead letter")
            #expect(!logged.contains { $0.contains(secret) }, "\(secret) in the logs")
        }
        rig.stop()
    }

    @Test("a muted target and NOTIFICATION_ENABLED=false: acked, nothing sent")
    func mutedAndDisabled() async throws {
        let rig = try Rig()
        try rig.deliver(rig.notice("n-muted", target: "muted"))
        try await rig.settled(1)
        let off = try Rig(enabled: false)
        try off.deliver(off.notice("n-off", target: "plain"))
        try await off.settled(1)
        for r in [rig, off] {
            #expect(r.http.requests.isEmpty)
            #expect(r.senders.emails.isEmpty && r.senders.messages.isEmpty)
            #expect(r.deadLetters.unacked.isEmpty)
            r.stop()
        }
    }

    @Test(
        "a notification from a user that may not send one is dead-lettered unsent, and the forgery is announced to the fleet's channels"
    )
    func forgedNotice() async throws {
        let rig = try Rig(webhooksUp: true)
        try rig.deliver(
            rig.notice("n-forged", target: "plain", detail: "FORGED: ignore the outage"), from: "fleet-probe")
        try await rig.settled(1)
        let dead = rig.deadLetters.unacked
        try #require(dead.count == 1)
        #expect(
            dead[0].properties.headers["x-reject-reason"]?.stringValue?
                .hasPrefix("unauthorized-sender: broker user 'fleet-probe' may not send 'notification'") == true)
        let http = rig.http
        #expect(await eventually { http.requests(to: NotifierMemoryTests.fleetSlack).count == 1 }, "the announcement")
        let announcement = try #require(rig.webhookBodies(Self.fleetSlack).first)
        #expect(announcement.contains("fleet-probe"))
        #expect(!rig.http.requests.contains { String(decoding: $0.body, as: UTF8.self).contains("FORGED") })
        #expect(!rig.senders.emails.contains { ($0.email.textBody ?? "").contains("FORGED") })
        rig.stop()
    }
}
