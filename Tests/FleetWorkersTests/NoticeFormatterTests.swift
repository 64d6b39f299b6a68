import AWSClient
import FleetWorkers
import HTTPTransport
import Foundation
import RecoveryCore
import Testing

/// The pure formatting of notices: every channel says what happened, where, what comes next and when,
/// how to respond, and links the instance in the console.
@Suite("Notice formatting")
struct NoticeFormatterTests {
    static let at = Date(timeIntervalSince1970: 1_795_316_400)  // 2026-11-22T03:00:00Z
    static let outage = Notice(
        id: "inc-shop-web-20261122T030000Z:outage_declared", kind: .outageDeclared, at: at, target: "shop-web",
        instanceId: "i-0abc1234def567890", region: "eu-west-1", incidentId: "inc-shop-web-20261122T030000Z", outageCount: 1,
        nextStep: .restart, nextStepAt: at.addingTimeInterval(300),
        detail: "3 failed checks: HTTP 503",
        commands: ["recoveryctl ack shop-web", "recoveryctl hold shop-web --until 2026-11-22T04:00:00Z", "recoveryctl restart shop-web"])
    static let console = "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0abc1234def567890"
    let formatter = NoticeFormatter(defaultRegion: "us-east-1")

    @Test("the e-mail text says what, where, next step and when, how to respond, and links the console")
    func emailText() {
        let text = formatter.emailText(Self.outage)
        #expect(formatter.emailSubject(Self.outage) == "[recovery] shop-web is down: outage declared (restart next)")
        #expect(text.hasPrefix("shop-web is down: outage declared (restart next)\n\n3 failed checks: HTTP 503\n"))
        #expect(text.contains("Target             shop-web\n"))
        #expect(text.contains("Instance           i-0abc1234def567890\n"))
        #expect(text.contains("Region             eu-west-1\n"))
        #expect(text.contains("Incident           inc-shop-web-20261122T030000Z\n"))
        #expect(text.contains("Next: restart (reboot in place) at 2026-11-22T03:05:00Z (in 5m), unless the site comes back first.\n"))
        #expect(text.contains("To respond, run one of:\n  recoveryctl ack shop-web\n  recoveryctl hold shop-web --until 2026-11-22T04:00:00Z\n  recoveryctl restart shop-web\n"))
        #expect(text.hasSuffix("Instance in the AWS console: \(Self.console)\n"))
    }

    @Test("the HTML body escapes what it quotes")
    func emailHTML() {
        var notice = Self.outage
        notice.target = "shop<web>&'x'"
        notice.commands = ["recoveryctl ack 'shop<web>&'\\''x'\\'''"]
        let html = formatter.emailHTML(notice)
        #expect(html.contains("<td>shop&lt;web&gt;&amp;&#39;x&#39;</td>"))
        #expect(html.contains("<pre>recoveryctl ack &#39;shop&lt;web&gt;&amp;&#39;\\&#39;&#39;x&#39;\\&#39;&#39;&#39;</pre>"))
        #expect(html.contains("<a href=\"\(Self.console)\">"))
        #expect(!html.contains("<web>"))
    }

    @Test("next-step wording for every blocker")
    func blockers() {
        var n = Self.outage
        n.blockedBy = .approval
        n.nextStepAt = nil
        n.respondBy = Self.at.addingTimeInterval(1800)
        #expect(formatter.summary(n).next == "restart (reboot in place) waits for approval until 2026-11-22T03:30:00Z (in 30m); without approval nothing is done.")
        n.blockedBy = .brake
        #expect(formatter.summary(n).next == "restart (reboot in place) is blocked by the fleet brake until `recoveryctl brake release`.")
        n.blockedBy = .acknowledged
        #expect(formatter.summary(n).next?.contains("recoveryctl resume") == true)
        n.blockedBy = .held
        n.nextStepAt = Self.at.addingTimeInterval(3600)
        #expect(formatter.summary(n).next == "restart (reboot in place) is held until 2026-11-22T04:00:00Z (in 1h).")
        n.blockedBy = .quarantine
        #expect(formatter.summary(n).next == "No automatic step follows (the target is quarantined); a person must act.")
        n.blockedBy = nil
        n.nextStep = .notifyOnly
        #expect(formatter.summary(n).next == "No automatic step follows (the ladder is used up); a person must act.")
        n.nextStep = nil
        #expect(formatter.summary(n).next == nil)
    }

    @Test("a title for every kind, and the console link falls back to the fleet's region")
    func titles() {
        for kind in NotificationKind.allCases {
            var n = Self.outage
            n.kind = kind
            let title = formatter.summary(n).title
            #expect(!title.isEmpty)
            if ![.brakeEngaged, .brakeReleased, .unauthorizedSender].contains(kind) { #expect(title.contains("shop-web"), "\(kind)") }
        }
        var n = Self.outage
        n.region = nil
        #expect(formatter.summary(n).consoleURL == "https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1#InstanceDetails:instanceId=i-0abc1234def567890")
        n.instanceId = nil
        #expect(formatter.summary(n).consoleURL == nil)
        #expect(NoticeFormatter.consoleURL(instanceId: "i-1#x", region: "us-east-1") == nil, "nothing odd is put into a link")
    }

    @Test("Slack: fallback text, Block Kit header, fields, next, commands, console button; mrkdwn escaped")
    func slack() throws {
        var notice = Self.outage
        notice.detail = "body <b> & more"
        let payload = formatter.slackPayload(notice, channel: "#ops", username: "recovery")
        #expect(payload["text"] as? String == "shop-web is down: outage declared (restart next)")
        #expect(payload["channel"] as? String == "#ops")
        #expect(payload["username"] as? String == "recovery")
        let blocks = try #require(payload["blocks"] as? [[String: Any]])
        #expect(blocks.map { $0["type"] as? String } == ["header", "section", "section", "section", "section", "actions"])
        let header = try #require(blocks[0]["text"] as? [String: Any])
        #expect(header["type"] as? String == "plain_text")
        #expect((blocks[1]["text"] as? [String: Any])?["text"] as? String == "body &lt;b&gt; &amp; more")
        let fields = try #require(blocks[2]["fields"] as? [[String: String]])
        #expect(fields.count <= 10)
        #expect(fields.contains(["type": "mrkdwn", "text": "*Target*\nshop-web"]))
        #expect(fields.contains(["type": "mrkdwn", "text": "*Instance*\ni-0abc1234def567890"]))
        #expect((blocks[3]["text"] as? [String: Any])?["text"] as? String
                == "*Next:* restart (reboot in place) at 2026-11-22T03:05:00Z (in 5m), unless the site comes back first.")
        #expect((blocks[4]["text"] as? [String: Any])?["text"] as? String
                == "*To respond, run one of:*\n```recoveryctl ack shop-web\nrecoveryctl hold shop-web --until 2026-11-22T04:00:00Z\nrecoveryctl restart shop-web```")
        let button = try #require((blocks[5]["elements"] as? [[String: Any]])?.first)
        #expect(button["type"] as? String == "button")
        #expect(button["url"] as? String == Self.console)
        let plain = formatter.slackPayload(notice)
        #expect(plain["channel"] == nil && plain["username"] == nil)
        _ = try NoticeFormatter.json(payload)
    }

    @Test("Teams: one Adaptive Card 1.4 attachment with the schema's required fields")
    func teams() throws {
        let payload = formatter.teamsPayload(Self.outage)
        #expect(payload["type"] as? String == "message")
        let attachments = try #require(payload["attachments"] as? [[String: Any]])
        #expect(attachments.count == 1)
        #expect(attachments[0]["contentType"] as? String == "application/vnd.microsoft.card.adaptive")
        let card = try #require(attachments[0]["content"] as? [String: Any])
        #expect(card["type"] as? String == "AdaptiveCard")
        #expect(card["version"] as? String == "1.4")
        #expect(card["$schema"] as? String == "http://adaptivecards.io/schemas/adaptive-card.json")
        let body = try #require(card["body"] as? [[String: Any]])
        #expect(!body.isEmpty)
        for element in body { #expect(["TextBlock", "FactSet"].contains(element["type"] as? String)) }
        let facts = try #require(body.first { $0["type"] as? String == "FactSet" }?["facts"] as? [[String: String]])
        #expect(facts.contains(["title": "Region", "value": "eu-west-1"]))
        let texts = body.compactMap { $0["text"] as? String }
        #expect(texts.contains("recoveryctl restart shop-web"))
        #expect(texts.contains { $0.hasPrefix("**Next:** restart") })
        let actions = try #require(card["actions"] as? [[String: String]])
        #expect(actions == [["type": "Action.OpenUrl", "title": "Open in the AWS console", "url": Self.console]])
    }

    @Test("SNS: a one-line subject of at most 100 characters and the notice as JSON")
    func sns() throws {
        var notice = Self.outage
        #expect(formatter.snsSubject(notice) == "[recovery] shop-web is down: outage declared (restart next)")
        notice.target = String(repeating: "long-name\n", count: 20)
        let subject = formatter.snsSubject(notice)
        #expect(subject.count == 100 && !subject.contains(where: \.isNewline))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(formatter.snsMessage(Self.outage).utf8)) as? [String: Any])
        #expect(json["kind"] as? String == "outage_declared")
        #expect(json["console_url"] as? String == Self.console)
        let body = try #require(json["notice"] as? [String: Any])
        #expect(body["id"] as? String == Self.outage.id)
        #expect(body["instance_id"] as? String == "i-0abc1234def567890")
        #expect(body["next_step"] as? String == "restart")
        #expect(body["next_step_at"] as? String == "2026-11-22T03:05:00.000Z")
        #expect(body["commands"] as? [String] == Self.outage.commands)
    }
}

/// The notifier's settings from the environment.
@Suite("Notifier configuration")
struct NotifierConfigurationTests {
    let http = HTTPClient()

    func aws() -> AWSClient {
        AWSClient(region: "eu-west-1", credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKID", secretAccessKey: "s")),
                  http: http, environment: [:])
    }

    @Test("every channel from its variables; SNS in the topic's region; none without variables")
    func channels() throws {
        defer { http.shutdown() }
        let env = WorkerEnvironment(kind: "notifier", values: [
            "NOTIFY_EMAIL_FROM": "fleet@example.com", "NOTIFY_EMAIL_TO": "a@example.com, b@example.com",
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/secret", "SLACK_CHANNEL": "#ops",
            "TEAMS_WEBHOOK_URL": "https://prod.westeurope.logic.azure.com/workflows/x?sig=secret",
            "SNS_TOPIC_ARN": "arn:aws:sns:us-west-2:123456789012:fleet-alerts",
        ])
        let channels = try env.notificationChannels(http: http, aws: aws(), formatter: NoticeFormatter())
        #expect(channels.map(\.name) == ["email", "slack", "teams", "sns"])
        #expect((channels[0] as? EmailChannel)?.to == ["a@example.com", "b@example.com"])
        #expect(((channels[3] as? SNSChannel)?.sns as? SNSClient)?.region == "us-west-2")
        #expect(try WorkerEnvironment(kind: "notifier", values: [:]).notificationChannels(http: http, aws: aws(), formatter: NoticeFormatter()).isEmpty)
        #expect(try WorkerEnvironment(kind: "notifier", values: [:]).notificationEnabled())
        #expect(try !WorkerEnvironment(kind: "notifier", values: ["NOTIFICATION_ENABLED": "false"]).notificationEnabled())
    }

    @Test("mistakes stop the worker with the variable's name, never a webhook URL")
    func mistakes() {
        defer { http.shutdown() }
        let cases: [([String: String], String)] = [
            (["NOTIFY_EMAIL_FROM": "f@example.com"], "NOTIFY_EMAIL_TO"),
            (["NOTIFY_EMAIL_TO": "a@example.com"], "NOTIFY_EMAIL_FROM"),
            (["SLACK_WEBHOOK_URL": "hooks.slack.com/services/T/B/topsecret"], "SLACK_WEBHOOK_URL"),
            (["TEAMS_WEBHOOK_URL": "ftp://x/topsecret"], "TEAMS_WEBHOOK_URL"),
            (["SNS_TOPIC_ARN": "fleet-alerts"], "SNS_TOPIC_ARN"),
            (["NOTIFICATION_ENABLED": "maybe"], "NOTIFICATION_ENABLED"),
        ]
        for (values, variable) in cases {
            let env = WorkerEnvironment(kind: "notifier", values: values)
            do {
                _ = try env.notificationChannels(http: http, aws: aws(), formatter: NoticeFormatter())
                _ = try env.notificationEnabled()
                Issue.record("expected a refusal for \(variable)")
            } catch {
                #expect("\(error)".contains(variable))
                #expect(!"\(error)".contains("topsecret"))
            }
        }
    }
}
