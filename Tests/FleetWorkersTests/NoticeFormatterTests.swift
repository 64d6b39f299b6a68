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
        instanceId: "i-0abc1234def567890", region: "eu-west-1", incidentId: "inc-shop-web-20261122T030000Z",
        outageCount: 1,
        nextStep: .restart, nextStepAt: at.addingTimeInterval(300),
        detail: "3 failed checks: HTTP 503",
        commands: [
            "recoveryctl ack shop-web", "recoveryctl hold shop-web --until 2026-11-22T04:00:00Z",
            "recoveryctl restart shop-web",
        ])
    static let console =
        "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1#InstanceDetails:instanceId=i-0abc1234def567890"
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
        #expect(
            text.contains(
                "Next: restart (reboot in place) at 2026-11-22T03:05:00Z (in 5m), unless the site comes back first.\n"))
        #expect(
            text.contains(
                "To respond, run one of:\n  recoveryctl ack shop-web\n  recoveryctl hold shop-web --until 2026-11-22T04:00:00Z\n  recoveryctl restart shop-web\n"
            ))
        #expect(text.hasSuffix("Instance in the AWS console: \(Self.console)\n"))
    }

    @Test("the HTML body escapes what it quotes")
    func emailHTML() {
        var notice = Self.outage
        notice.target = "shop<web>&'x'"
        notice.commands = ["recoveryctl ack 'shop<web>&'\\''x'\\'''"]
        let html = formatter.emailHTML(notice)
        #expect(html.contains("<td>shop&lt;web&gt;&amp;&#39;x&#39;</td>"))
        #expect(
            html.contains(
                "<pre>recoveryctl ack &#39;shop&lt;web&gt;&amp;&#39;\\&#39;&#39;x&#39;\\&#39;&#39;&#39;</pre>"))
        #expect(html.contains("<a href=\"\(Self.console)\">"))
        #expect(!html.contains("<web>"))
    }

    @Test("next-step wording for every blocker")
    func blockers() {
        var n = Self.outage
        n.blockedBy = .approval
        n.nextStepAt = nil
        n.respondBy = Self.at.addingTimeInterval(1800)
        #expect(
            formatter.summary(n).next
                == "restart (reboot in place) waits for approval until 2026-11-22T03:30:00Z (in 30m); without approval nothing is done."
        )
        n.blockedBy = .brake
        #expect(
            formatter.summary(n).next
                == "restart (reboot in place) is blocked by the fleet brake until `recoveryctl brake release`.")
        n.blockedBy = .acknowledged
        #expect(formatter.summary(n).next?.contains("recoveryctl resume") == true)
        n.blockedBy = .held
        n.nextStepAt = Self.at.addingTimeInterval(3600)
        #expect(formatter.summary(n).next == "restart (reboot in place) is held until 2026-11-22T04:00:00Z (in 1h).")
        n.blockedBy = .quarantine
        #expect(
            formatter.summary(n).next == "No automatic step follows (the target is quarantined); a person must act.")
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
            if ![.brakeEngaged, .brakeReleased, .unauthorizedSender].contains(kind) {
                #expect(title.contains("shop-web"), "\(kind)")
            }
        }
        var n = Self.outage
        n.region = nil
        #expect(
            formatter.summary(n).consoleURL
                == "https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1#InstanceDetails:instanceId=i-0abc1234def567890"
        )
        n.instanceId = nil
        #expect(formatter.summary(n).consoleURL == nil)
        #expect(
            NoticeFormatter.consoleURL(instanceId: "i-1#x", region: "us-east-1") == nil,
            "nothing odd is put into a link")
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
        #expect(
            blocks.map { $0["type"] as? String } == ["header", "section", "section", "section", "section", "actions"])
        let header = try #require(blocks[0]["text"] as? [String: Any])
        #expect(header["type"] as? String == "plain_text")
        #expect((blocks[1]["text"] as? [String: Any])?["text"] as? String == "body &lt;b&gt; &amp; more")
        let fields = try #require(blocks[2]["fields"] as? [[String: String]])
        #expect(fields.count <= 10)
        #expect(fields.contains(["type": "mrkdwn", "text": "*Target*\nshop-web"]))
        #expect(fields.contains(["type": "mrkdwn", "text": "*Instance*\ni-0abc1234def567890"]))
        #expect(
            (blocks[3]["text"] as? [String: Any])?["text"] as? String
                == "*Next:* restart (reboot in place) at 2026-11-22T03:05:00Z (in 5m), unless the site comes back first."
        )
        #expect(
            (blocks[4]["text"] as? [String: Any])?["text"] as? String
                == "*To respond, run one of:*\n```recoveryctl ack shop-web\nrecoveryctl hold shop-web --until 2026-11-22T04:00:00Z\nrecoveryctl restart shop-web```"
        )
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

    @Test("with SLACK_BUTTONS, outage and approval notices carry approve / ack / hold 1 h; others none")
    func slackButtons() throws {
        let interactive = NoticeFormatter(
            defaultRegion: "us-east-1", fleetConsoleURL: "https://fleet.example/", slackButtons: true)
        func actionBlocks(_ f: NoticeFormatter, _ n: Notice) -> [[String: Any]] {
            ((f.slackPayload(n)["blocks"] as? [[String: Any]]) ?? []).filter { $0["type"] as? String == "actions" }
        }
        let blocks = actionBlocks(interactive, Self.outage)
        let buttons = try #require(
            blocks.first { $0["block_id"] as? String == "fleet_actions" }?["elements"] as? [[String: Any]])
        #expect(buttons.map { $0["action_id"] as? String } == ["approve", "ack", "hold_1h"])
        #expect(buttons.allSatisfy { $0["value"] as? String == "shop-web|inc-shop-web-20261122T030000Z" })
        let links = try #require(blocks.last?["elements"] as? [[String: Any]])
        #expect(links.map { $0["url"] as? String } == ["https://fleet.example/targets/shop-web", Self.console])
        var recovered = Self.outage
        recovered.kind = .recovered
        #expect(!actionBlocks(interactive, recovered).contains { $0["block_id"] != nil })
        #expect(!actionBlocks(formatter, Self.outage).contains { $0["block_id"] != nil }, "off by default")
        // Teams: links only (a Workflows card cannot call back); the console's page first.
        let card = try #require(
            ((interactive.teamsPayload(Self.outage)["attachments"] as? [[String: Any]])?.first?["content"])
                as? [String: Any])
        let actions = try #require(card["actions"] as? [[String: String]])
        #expect(actions.map { $0["type"] } == ["Action.OpenUrl", "Action.OpenUrl"])
        #expect(actions.first?["url"] == "https://fleet.example/targets/shop-web")
    }

    @Test("SNS: a one-line subject of at most 100 characters and the notice as JSON")
    func sns() throws {
        var notice = Self.outage
        #expect(formatter.snsSubject(notice) == "[recovery] shop-web is down: outage declared (restart next)")
        notice.target = String(repeating: "long-name\n", count: 20)
        let subject = formatter.snsSubject(notice)
        #expect(subject.count == 100 && !subject.contains(where: \.isNewline))
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(formatter.snsMessage(Self.outage).utf8)) as? [String: Any])
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
        AWSClient(
            region: "eu-west-1",
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKID", secretAccessKey: "s")),
            http: http, environment: [:])
    }

    @Test("every channel from its variables; SNS in the topic's region; none without variables")
    func channels() throws {
        defer { http.shutdown() }
        let env = WorkerEnvironment(
            kind: "notifier",
            values: [
                "NOTIFY_EMAIL_FROM": "fleet@example.com", "NOTIFY_EMAIL_TO": "a@example.com, b@example.com",
                "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/secret", "SLACK_CHANNEL": "#ops",
                "TEAMS_WEBHOOK_URL": "https://prod.westeurope.logic.azure.com/workflows/x?sig=secret",
                "SNS_TOPIC_ARN": "arn:aws:sns:us-west-2:123456789012:fleet-alerts",
            ])
        let channels = try env.notificationChannels(http: http, aws: aws(), formatter: NoticeFormatter())
        #expect(channels.map(\.name) == ["email", "slack", "teams", "sns"])
        #expect((channels[0] as? EmailChannel)?.to == ["a@example.com", "b@example.com"])
        #expect(((channels[3] as? SNSChannel)?.sns as? SNSClient)?.region == "us-west-2")
        #expect(
            try WorkerEnvironment(kind: "notifier", values: [:]).notificationChannels(
                http: http, aws: aws(), formatter: NoticeFormatter()
            ).isEmpty)
        #expect(try WorkerEnvironment(kind: "notifier", values: [:]).notificationEnabled())
        #expect(
            try !WorkerEnvironment(kind: "notifier", values: ["NOTIFICATION_ENABLED": "false"]).notificationEnabled())
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

/// The one rendering of `NoticeReason`: every reason, as a machine sets it, becomes the sentence the
/// notice's `detail` carried before reasons existed, reads back from the wire unchanged, and is what every
/// channel shows.
@Suite("Notice reasons in words")
struct NoticeReasonTextTests {
    static let at = NoticeFormatterTests.at  // 2026-11-22T03:00:00Z
    static let home = InstanceRef(id: "i-0abc", region: "eu-west-1")
    static let moved = InstanceRef(id: "i-0new", region: "eu-central-1")
    static let prediction = "disk_used_percent reaches 100% in about 14h"

    struct Sample: Sendable, CustomTestStringConvertible {
        var reason: NoticeReason
        var text: String
        var testDescription: String { text }
    }

    static func sample(_ reason: NoticeReason, _ text: String) -> Sample { Sample(reason: reason, text: text) }

    static let ladder: [Sample] = [
        sample(
            .outageDeclared(
                target: "shop-web", failures: 3, probers: ["probe@a", "probe@b"], lastCheck: "HTTP 503",
                outageCount: 1, window: 86_400),
            "3 consecutive failed checks (from probe@a, probe@b), last: HTTP 503; outage 1 within 1d"),
        sample(
            .outageDeclared(
                target: "shop-web", failures: 3, probers: ["probe@a"], lastCheck: nil, outageCount: 2,
                window: 86_400, noStep: .quarantined),
            "3 consecutive failed checks (from probe@a); outage 2 within 1d. shop-web is quarantined: no automatic step."
        ),
        sample(
            .outageDeclared(
                target: "shop-web", failures: 4, probers: ["probe@a"], lastCheck: "timeout", outageCount: 4,
                window: 7200, noStep: .ladderExhausted),
            "4 consecutive failed checks (from probe@a), last: timeout; outage 4 within 2h. Restart, re-provision and fail-over were all used within the window: no automatic step. Act by hand."
        ),
        sample(
            .approvalRequested(target: "shop-web", step: .restart, deadline: at + 1800),
            "shop-web requires approval for restart; without approval by 2026-11-22T03:30:00Z nothing is done"),
        sample(
            .stepStarted(
                target: "shop-web", step: .restart, instance: home, destination: "eu-west-1", trigger: .automatic,
                deadline: at + 600, next: .reprovision),
            "restart of i-0abc (eu-west-1) (automatic); if shop-web is not back by 2026-11-22T03:10:00Z: reprovision"),
        sample(
            .stepStarted(
                target: "shop-web", step: .failover, instance: home, destination: "eu-central-1",
                trigger: .approved(by: "carol"), deadline: at + 1800, next: .notifyOnly),
            "failover of i-0abc (eu-west-1) into eu-central-1 (approved by carol); if shop-web is not back by 2026-11-22T03:30:00Z: no further automatic step"
        ),
        sample(
            .stepStarted(
                target: "shop-web", step: .reprovision, instance: home, destination: "eu-west-1",
                trigger: .manual(by: "bob"), deadline: at + 1200, next: .failover),
            "reprovision of i-0abc (eu-west-1) (run by bob); if shop-web is not back by 2026-11-22T03:20:00Z: failover"),
        sample(
            .stepFinished(
                target: "shop-web", step: .reprovision, movedTo: moved, checks: 2, deadline: at + 1200, next: .failover),
            "reprovision finished; shop-web now runs on i-0new (eu-central-1); verifying: 2 healthy checks needed by 2026-11-22T03:20:00Z, else failover"
        ),
        sample(
            .stepFinished(target: "shop-web", step: .failover, checks: 3, deadline: at + 90, next: .notifyOnly),
            "failover finished; verifying: 3 healthy checks needed by 2026-11-22T03:01:30Z, else notify_only"),
        sample(.stepFailed(step: .restart, reason: "boom"), "restart failed: boom"),
        sample(
            .stepFailed(step: .restart, reason: nil, stillStopped: .approvalTimedOut),
            "restart failed: no reason given; automation stays stopped for this incident (the approval request timed out)"
        ),
        sample(
            .noOutcome(target: "shop-web", step: .restart, window: 600),
            "the actuator did not report on restart within 10m and shop-web is still down"),
        sample(
            .stillDown(target: "shop-web", step: .reprovision, window: 1290, stillStopped: .ladderExhausted),
            "reprovision ran but shop-web is still down 21m30s after the request; automation stays stopped for this incident (no automatic step left)"
        ),
        sample(
            .automationStopped(
                target: "shop-web", incident: "inc-1", tried: [.restart, .reprovision],
                why: .humanNeeded("failover cannot run: no DR snapshot")),
            "automation stopped for incident inc-1 (tried: restart, reprovision): a person is needed: failover cannot run: no DR snapshot. shop-web is still down; a person must act."
        ),
        sample(
            .automationStopped(target: "shop-web", incident: "inc-1", tried: [], why: .quarantined),
            "automation stopped for incident inc-1: the target is quarantined (notify only). shop-web is still down; a person must act."
        ),
        sample(
            .approvalTimedOut(target: "shop-web", step: .restart),
            "shop-web requires approval and none came in time: restart was not run, and no automatic step will run for this incident. Act by hand if needed."
        ),
        sample(
            .recoveredAfterStep(target: "shop-web", step: .restart, after: 430),
            "shop-web is back after restart, 7m10s after the outage was declared"),
        sample(
            .recoveredAfterSteps(target: "shop-web", steps: [.restart, .reprovision], after: 3600),
            "shop-web is back, 1h after the outage was declared (steps: restart, reprovision)"),
        sample(
            .recoveredByItself(target: "shop-web", inGrace: true, after: 60),
            "shop-web came back by itself during the grace period, 1m after the outage was declared; nothing was done"),
        sample(
            .recoveredByItself(target: "shop-web", inGrace: false, after: 45),
            "shop-web came back by itself without any step, 45s after the outage was declared; nothing was done"),
        sample(
            .originalInstanceBack(target: "shop-web", original: home, current: moved),
            "the original instance i-0abc (eu-west-1) answers health checks again; shop-web now runs on i-0new (eu-central-1). Nothing was changed: fail back by hand if you want it back."
        ),
        sample(
            .instanceFollowed(target: "shop-web", from: home, to: moved),
            "shop-web is now followed on i-0new (eu-central-1): discovery finds it there, not on i-0abc (eu-west-1) as recorded (moved outside the fleet's steps, or a record that was out of date). Nothing was changed in AWS."
        ),
        sample(
            .lateResult(target: "shop-web", step: .reprovision, incident: "inc-1", current: moved),
            "late result: reprovision for incident inc-1 finished after the machine stopped waiting for it; shop-web now runs on i-0new (eu-central-1)"
        ),
        sample(
            .stepAborted(
                target: "shop-web", step: .reprovision, incident: "inc-1", by: "alice", reason: "wrong AMI",
                result: "i-0new stopped and tagged abandoned"),
            "reprovision for incident inc-1 was aborted by alice (wrong AMI): the actuator stopped at a sub-step boundary and put back what it could (i-0new stopped and tagged abandoned). No automatic step follows: shop-web is in a person's hands; run a step by hand if it stays down."
        ),
    ]

    static let ladderCommands: [Sample] = [
        sample(
            .outageCountReset(target: "shop-web", by: "bob", was: 2, window: 86_400, incident: nil),
            "outage count of shop-web reset by bob (it was 2 within 1d); the next outage starts at restart"),
        sample(
            .outageCountReset(target: "shop-web", by: "bob", was: 0, window: 86_400, incident: "inc-1"),
            "outage count of shop-web reset by bob (it was 0 within 1d); the next outage starts at restart. Incident inc-1 continues where it is."
        ),
        sample(
            .acknowledged(by: "alice", incident: "inc-1"),
            "alice acknowledged incident inc-1: no automatic step until resumed; recovery will still be reported"),
        sample(
            .acknowledged(by: "carol", incident: "inc-1", replaces: .until(at + 600, by: "bob")),
            "carol acknowledged incident inc-1 (replaces: incident inc-1 is held by bob until 2026-11-22T03:10:00Z): no automatic step until resumed; recovery will still be reported"
        ),
        sample(
            .held(by: "bob", incident: "inc-1", until: at + 600, replaces: .acknowledged(by: "alice", at: at)),
            "bob held incident inc-1 until 2026-11-22T03:10:00Z (replaces: incident inc-1 is acknowledged by alice (since 2026-11-22T03:00:00Z)): no step before then, then the normal flow continues"
        ),
        sample(.resumed(by: "bob", incident: "inc-1"), "bob resumed automation for incident inc-1"),
        sample(
            .resumed(by: "bob", incident: "inc-1", stillStopped: .ladderExhausted),
            "bob resumed automation for incident inc-1 (automation stays stopped: no automatic step left)"),
        sample(.approved(by: "carol", step: .restart, incident: "inc-1"), "carol approved restart for incident inc-1"),
        sample(.ranStep(by: "alice", step: .failover, incident: "inc-1"), "alice ran failover for incident inc-1"),
        sample(
            .abortRequested(
                by: "alice", step: .restart, incident: "inc-1", key: "shop-web/inc-1/restart", reason: nil),
            "alice aborted restart for incident inc-1: the actuator stops at its next sub-step and puts back what it can (record step:shop-web/inc-1/restart). No automatic step follows in this incident: a person takes over."
        ),
        sample(
            .noOpenIncident(command: "ack", target: "shop-web", failures: 0, threshold: 3),
            "ack refused: shop-web has no open incident (the site is healthy); there is nothing to ack"),
        sample(
            .noOpenIncident(command: "restart", target: "shop-web", failures: 1, threshold: 3),
            "restart refused: shop-web has no open incident (1 of 3 failed checks so far, no outage declared); there is nothing to restart"
        ),
        sample(
            .alreadyAcknowledged(command: "ack", incident: "inc-1", by: "alice", since: at),
            "ack refused: incident inc-1 is already acknowledged by alice (since 2026-11-22T03:00:00Z)"),
        sample(
            .holdNeedsTime(command: "hold", target: "shop web", example: at + 3600),
            "hold refused: hold needs a time: recoveryctl hold 'shop web' --until 2026-11-22T04:00:00Z"),
        sample(
            .incidentChanged(command: "approve", expected: "inc-0", current: "inc-1"),
            "approve refused: it was for incident inc-0, which is over; the open incident is inc-1 (look again before acting on it)"
        ),
        sample(
            .holdNotInFuture(command: "hold", until: at, now: at + 60),
            "hold refused: --until 2026-11-22T03:00:00Z is not in the future (now is 2026-11-22T03:01:00Z)"),
        sample(
            .nothingToHold(command: "hold", incident: "inc-1", stopped: .quarantined),
            "hold refused: automation has already stopped for incident inc-1 (the target is quarantined (notify only)): there is no automatic step to hold"
        ),
        sample(
            .nothingToResume(command: "resume", incident: "inc-1"),
            "resume refused: incident inc-1 is neither acknowledged nor held: nothing to resume"),
        sample(
            .incidentHeld(
                command: "approve", target: "shop-web", incident: "inc-1", hold: .acknowledged(by: "alice", at: at)),
            "approve refused: incident inc-1 is acknowledged by alice (since 2026-11-22T03:00:00Z); run `recoveryctl resume shop-web` first, then approve"
        ),
        sample(
            .incidentHeld(command: "restart", target: "shop-web", incident: "inc-1", hold: .until(at + 600, by: "bob")),
            "restart refused: incident inc-1 is held by bob until 2026-11-22T03:10:00Z; run `recoveryctl resume shop-web` first"
        ),
        sample(
            .quarantined(command: "approve", target: "shop-web"),
            "approve refused: shop-web is quarantined (notify only); lift the quarantine in its configuration first"),
        sample(
            .brakeBlocks(command: "restart"),
            "restart refused: the fleet brake is engaged: no destructive step runs until it is released (an operator command does not override it)"
        ),
        sample(
            .stepInProgress(command: "approve", step: .restart, incident: "inc-1", requestedAt: at, deadline: at + 600),
            "approve refused: restart is in progress for incident inc-1 (requested 2026-11-22T03:00:00Z, verifying until 2026-11-22T03:10:00Z): there is nothing to approve"
        ),
        sample(
            .nothingToApprove(command: "approve", incident: "inc-1", stopped: .approvalTimedOut),
            "approve refused: the approval window closed; automation has stopped for incident inc-1 (the approval request timed out): there is nothing to approve; run a step by hand"
        ),
        sample(
            .nothingToApprove(command: "approve", incident: "inc-1", stopped: .ladderExhausted),
            "approve refused: automation has stopped for incident inc-1 (no automatic step left): there is nothing to approve; run a step by hand"
        ),
        sample(
            .awaitingOutcome(command: "reprovision", step: .restart, requestedAt: at, deadline: at + 600),
            "reprovision refused: restart was requested at 2026-11-22T03:00:00Z and the actuator has not reported yet; wait for its outcome (deadline 2026-11-22T03:10:00Z)"
        ),
        sample(
            .stepAlreadyRequested(command: "restart", step: .restart, incident: "inc-1", key: "shop-web/inc-1/restart"),
            "restart refused: restart was already requested in incident inc-1 (key shop-web/inc-1/restart); each step runs at most once per incident"
        ),
        sample(
            .noDRRegion(command: "failover", target: "shop-web"),
            "failover refused: no DR region is configured for shop-web, so it cannot fail over"),
        sample(
            .nothingToAbort(command: "abort", incident: "inc-1", verifying: nil),
            "abort refused: no step is running at the actuator in incident inc-1; there is nothing to abort (ack to keep the fleet from taking another step)"
        ),
        sample(
            .nothingToAbort(command: "abort", incident: "inc-1", verifying: .restart),
            "abort refused: restart has finished and its result is being verified in incident inc-1; there is nothing to abort (ack to keep the fleet from taking another step)"
        ),
        sample(
            .alreadyAborted(command: "abort", step: .restart, incident: "inc-1", by: "alice", since: at),
            "abort refused: restart of incident inc-1 was already aborted by alice at 2026-11-22T03:00:00Z"),
    ]

    static let brake: [Sample] = [
        sample(
            .brakeEngaged(.outageShare(inOutage: 4, fleetSize: 10, limitPercent: 30)),
            "fleet brake engaged: 4 of 10 targets (40%) are in outage at once, more than 30%: this looks like a shared cause, not 4 broken sites. No restart, re-provision or fail-over runs on any target until an operator releases it."
        ),
        sample(
            .brakeEngaged(.actionRate(steps: 5, window: 3600, limit: 5)),
            "fleet brake engaged: 5 destructive steps within 1h reached the limit of 5. No restart, re-provision or fail-over runs on any target until an operator releases it."
        ),
        sample(
            .brakeEngaged(.manual(by: "bob", reason: "AWS incident")),
            "fleet brake engaged: engaged by bob: AWS incident. No restart, re-provision or fail-over runs on any target until an operator releases it."
        ),
        sample(
            .brakeReleased(by: "alice", engagedAt: at, cause: "engaged by bob: AWS incident", targetsInOutage: []),
            "alice released the fleet brake (engaged 2026-11-22T03:00:00Z: engaged by bob: AWS incident); destructive steps may run again. Targets in outage: none"
        ),
        sample(
            .brakeReleased(by: "alice", engagedAt: at, cause: "x", targetsInOutage: ["site-1", "site-2"]),
            "alice released the fleet brake (engaged 2026-11-22T03:00:00Z: x); destructive steps may run again. Targets in outage: site-1, site-2"
        ),
        sample(
            .brakeAlreadyEngaged(since: at, cause: "engaged by bob: AWS incident"),
            "brake engage refused: the brake is already engaged (since 2026-11-22T03:00:00Z: engaged by bob: AWS incident)"
        ),
        sample(.brakeNotEngaged, "brake release refused: the brake is not engaged"),
    ]

    static let repairs: [Sample] = {
        let p = prediction
        func predicted(_ outlook: NoticeReason.Outlook) -> NoticeReason {
            .troublePredicted(prediction: p, confidence: 0.925, from: at + 43_200, to: at + 57_600, outlook: outlook)
        }
        let expected = "\(p) (confidence 93%, expected 2026-11-22T15:00:00Z to 2026-11-22T19:00:00Z)"
        return [
            sample(predicted(.planned), expected),
            sample(predicted(.quarantined), expected + ". The target is quarantined: no repair runs."),
            sample(predicted(.anotherPlanned), expected + ". Another repair is planned; nothing more is scheduled."),
            sample(predicted(.restartSuggested), expected + ". Suggested: a restart in a quiet hour."),
            sample(predicted(.toldOnly), expected + "."),
            sample(
                .repairAwaitsApproval(prediction: p), "\(p): the target now requires approval; the repair waits for it"),
            sample(.repairStarted(prediction: p, approvedBy: nil), "\(p) (automatic, after the grace period)"),
            sample(.repairStarted(prediction: p, approvedBy: "carol"), "\(p) (approved by carol)"),
            sample(
                .repairSucceeded(prediction: p, document: "disk-cleanup", instanceId: "i-0abc"),
                "\(p): ssm disk-cleanup ran on i-0abc"),
            sample(.repairFailed(prediction: p, reason: "SSM agent not registered"), "\(p): SSM agent not registered"),
            sample(.repairFailed(prediction: p, reason: nil), "\(p): the actuator reported a failure"),
            sample(.repairTimedOut(prediction: p), "\(p): no outcome from the actuator in time"),
            sample(
                .repairCancelled(prediction: p, why: .outageDeclared),
                "\(p): an outage was declared; the recovery ladder takes over"),
            sample(.repairCancelled(prediction: p, why: .quarantined), "\(p): the target is quarantined"),
            sample(
                .repairCancelled(prediction: p, why: .noApproval), "\(p): no approval came in time; nothing was done"),
            sample(.repairCancelled(prediction: p, why: .reset(by: "erin")), "\(p): reset by erin"),
            sample(
                .repairRunning(document: "disk-cleanup"),
                "the repair ssm disk-cleanup is already running; wait for its outcome"),
            sample(
                .repairDropped(document: "disk-cleanup", kind: "disk_exhaustion", quietUntil: at + 21_600),
                "the planned repair ssm disk-cleanup is cancelled; predictions of disk_exhaustion are quiet until 2026-11-22T09:00:00Z"
            ),
            sample(.repairQuarantined, "the target is quarantined: no repair runs"),
            sample(.repairBraked, "the fleet brake is engaged: no repair runs until it is released"),
            sample(.repairRunsNow(document: "disk-cleanup"), "the repair ssm disk-cleanup runs now"),
            sample(.repairHoldNeedsTime, "hold needs --until in the future"),
            sample(
                .repairStillAwaitsApproval(document: "disk-cleanup", until: at + 7200),
                "the repair ssm disk-cleanup still waits for approval, now until 2026-11-22T05:00:00Z"),
            sample(
                .repairHeld(document: "disk-cleanup", until: at + 3600),
                "the repair ssm disk-cleanup is held until 2026-11-22T04:00:00Z"),
            sample(
                .repairNotHeld(document: "disk-cleanup", target: "shop-web"),
                "the repair ssm disk-cleanup is not held, it waits for approval: recoveryctl approve shop-web"),
            sample(.repairResumed(document: "disk-cleanup"), "the repair ssm disk-cleanup runs at the next check"),
            sample(
                .repairRequested(command: "quarantine", target: "shop-web", key: "shop-web/repair/quarantine/c1"),
                "quarantine of shop-web requested from the actuator (shop-web/repair/quarantine/c1)"),
            sample(
                .volumeRepairQuarantined(target: "shop-web"),
                "shop-web is quarantined: no automatic or manual repair runs until `recoveryctl unquarantine shop-web`"),
            sample(
                .volumeRepairBraked,
                "the fleet brake is engaged: no destructive step runs until it is released (`recoveryctl brake release`)"
            ),
            sample(
                .volumeRepairLadderMayAct(target: "shop-web", incident: "inc-1"),
                "incident inc-1 is open and its ladder may act: `recoveryctl ack shop-web` (or hold it) first, then repair the volume"
            ),
        ]
    }()

    static let all = ladder + ladderCommands + brake + repairs

    @Test("each reason renders its sentence, as detail and in every channel", arguments: all)
    func renders(_ sample: Sample) throws {
        #expect(NoticeFormatter.text(sample.reason) == sample.text)
        let notice = Notice(id: "n1", kind: .commandAccepted, at: Self.at, target: "shop-web", reason: sample.reason)
        #expect(notice.detail == sample.text, "the machine's notice carries the sentence on the wire")
        #expect(NoticeFormatter().summary(notice).detail == sample.text)
    }

    @Test("each reason reads back from the wire unchanged, as an object with a code", arguments: all)
    func wire(_ sample: Sample) throws {
        let data = try Timestamp.jsonEncoder().encode(sample.reason)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((object["code"] as? String)?.isEmpty == false)
        #expect(try Timestamp.jsonDecoder().decode(NoticeReason.self, from: data) == sample.reason)
    }

    @Test("every case has a sample, with its own code")
    func codes() throws {
        let codes = try Self.all.map { sample -> String in
            let object =
                try JSONSerialization.jsonObject(with: Timestamp.jsonEncoder().encode(sample.reason)) as? [String: Any]
            return object?["code"] as? String ?? ""
        }
        // Cases with more than one sample share a code: the 65 cases have 65 codes.
        #expect(Set(codes).count == 65, "\(Set(codes).sorted())")
    }

    @Test("the wire form: code and snake_case parameters, times as timestamps, durations in seconds")
    func wireForm() throws {
        let reason = NoticeReason.stepStarted(
            target: "shop-web", step: .failover, instance: Self.home, destination: "eu-central-1",
            trigger: .approved(by: "carol"), deadline: Self.at + 1800, next: .notifyOnly)
        let text = String(decoding: try Timestamp.jsonEncoder().encode(reason), as: UTF8.self)
        #expect(
            text
                == #"{"by":"carol","code":"step_started","deadline":"2026-11-22T03:30:00.000Z","destination":"eu-central-1","instance":{"id":"i-0abc","region":"eu-west-1"},"next":"notify_only","step":"failover","target":"shop-web","trigger":"approved"}"#
        )
        let stopped = NoticeReason.noOutcome(
            target: "shop-web", step: .restart, window: 600, stillStopped: .humanNeeded("no snapshot"))
        #expect(
            String(decoding: try Timestamp.jsonEncoder().encode(stopped), as: UTF8.self)
                == #"{"code":"no_outcome","step":"restart","still_stopped":{"code":"human_needed","reason":"no snapshot"},"target":"shop-web","window":600}"#
        )
    }

    @Test(
        "a notice keeps detail on the wire next to reason; one without reason, or with one this reader does not know, shows its detail"
    )
    func fallback() throws {
        let notice = Notice(
            id: "n1", kind: .actionFailed, at: Self.at, target: "shop-web", step: .restart,
            reason: .stepFailed(step: .restart, reason: "boom"))
        let bytes = try EnvelopeCodec.encode(Envelope(type: .notification, occurredAt: Self.at, body: notice))
        let body = try #require(
            (try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])?["body"] as? [String: Any])
        #expect(body["detail"] as? String == "restart failed: boom")
        #expect((body["reason"] as? [String: Any])?["code"] as? String == "step_failed")
        #expect(try EnvelopeCodec.decode(bytes, as: Notice.self, expecting: .notification).body == notice)

        // An actuator's notice (free text, no reason) is shown as it is.
        let free = Notice(
            id: "n2", kind: .actionFailed, at: Self.at, target: "shop-web", detail: "DRY RUN: would reboot i-0abc")
        #expect(free.reason == nil && NoticeFormatter().summary(free).detail == "DRY RUN: would reboot i-0abc")
        #expect(!String(decoding: try Timestamp.jsonEncoder().encode(free), as: UTF8.self).contains("\"reason\""))

        // A newer producer's reason: the notice still decodes, without the reason, and shows its detail.
        let newer =
            #"{"id":"n3","kind":"action_failed","at":"2026-11-22T03:00:00Z","detail":"restart failed: a new way","commands":[],"reason":{"code":"from_the_future","x":1}}"#
        let decoded = try Timestamp.jsonDecoder().decode(Notice.self, from: Data(newer.utf8))
        #expect(decoded.reason == nil && decoded.detail == "restart failed: a new way")
        #expect(NoticeFormatter().summary(decoded).detail == "restart failed: a new way")

        // A known reason is rendered by this reader, whatever words the producer wrote.
        var reworded = notice
        reworded.detail = "older words"
        #expect(NoticeFormatter().summary(reworded).detail == "restart failed: boom")
    }
}
