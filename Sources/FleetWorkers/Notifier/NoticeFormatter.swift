import Foundation
import RecoveryCore

/// Turns a `Notice` (facts only) into what each channel sends. Pure: no I/O, no clock; every channel
/// renders the same `NoticeSummary`, so an e-mail, a Slack message, a Teams card and an SNS message say
/// the same things:
///
/// - what happened (the title), with the reason: `Notice.reason` rendered by `text(_:)`, or the notice's
///   free-text `detail` when it has no reason (the actuator's notices, older producers);
/// - the target, its instance and region, the incident;
/// - which step comes next and when, or what blocks it;
/// - how to respond: the exact recoveryctl command lines of `Notice.commands`;
/// - a link to the instance in the AWS console.
public struct NoticeFormatter: Sendable {
    /// The region used for the console link when a notice names none (the fleet's primary region).
    public var defaultRegion: String?
    /// The web console's address (FLEET_CONSOLE_URL): Slack and Teams get a link to the target's page.
    public var fleetConsoleURL: String?
    /// SLACK_BUTTONS: outage and approval notices to Slack carry approve / acknowledge / hold 1 h buttons,
    /// answered by the console's interactivity endpoint (docs/console.md). Only with a Slack app whose
    /// Interactivity Request URL is the console's `/slack/interactions`.
    public var slackButtons = false

    public init(defaultRegion: String? = nil, fleetConsoleURL: String? = nil, slackButtons: Bool = false) {
        self.defaultRegion = defaultRegion
        self.fleetConsoleURL = fleetConsoleURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.slackButtons = slackButtons
    }

    /// The console's page of the notice's target.
    func fleetConsoleLink(_ notice: Notice) -> String? {
        guard let base = fleetConsoleURL, let target = notice.target else { return nil }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "\(base)/targets/\(target.addingPercentEncoding(withAllowedCharacters: allowed) ?? target)"
    }

    /// The block id of the buttons the console answers; it removes them once someone has.
    public static let slackActionsBlock = "fleet_actions"

    // MARK: The shared summary

    public struct Fact: Sendable, Equatable {
        public var label: String
        public var value: String
    }

    /// Everything a notice says, as text.
    public struct NoticeSummary: Sendable, Equatable {
        /// What happened, one line, e.g. `shop-web is down: outage declared (restart next)`.
        public var title: String
        /// The reason in words (`text(_:)` of `Notice.reason`, else `Notice.detail`), when the notice has one.
        public var detail: String?
        /// Target, instance, region, incident, outages, step, …
        public var facts: [Fact]
        /// Which step comes next and when, or what blocks it; nil when nothing follows.
        public var next: String?
        /// The recoveryctl command lines, most useful first.
        public var commands: [String]
        /// The instance in the EC2 console, when the notice names an instance.
        public var consoleURL: String?
    }

    public func summary(_ notice: Notice) -> NoticeSummary {
        let region = notice.region ?? defaultRegion
        var facts: [Fact] = []
        func add(_ label: String, _ value: String?) {
            if let value, !value.isEmpty { facts.append(Fact(label: label, value: value)) }
        }
        add("Target", notice.target)
        add("Instance", notice.instanceId)
        add("Region", region)
        add("Incident", notice.incidentId)
        add("Outages in window", notice.outageCount.map(String.init))
        add("Step", notice.step.map(Self.stepName))
        add("Repair", notice.repair)
        add("Fixed by", notice.kind == .recovered ? (notice.fixedBy.map(Self.stepName) ?? "came back by itself") : nil)
        add("Steps taken", notice.stepsTaken.map { $0.isEmpty ? "none" : $0.map(\.rawValue).joined(separator: ", ") })
        add("Targets", notice.targets.map { $0.joined(separator: ", ") })
        add("Respond by", notice.respondBy.map { Self.time($0, from: notice.at) })
        if let command = notice.command { add("Command", "\(command.name) by \(command.operator) (\(command.id))") }
        add("At", Self.iso(notice.at))
        return NoticeSummary(
            title: title(notice), detail: notice.reason.map(Self.text) ?? notice.detail, facts: facts,
            next: next(notice),
            commands: notice.commands,
            consoleURL: Self.consoleURL(instanceId: notice.instanceId, region: region))
    }

    /// The sentence for a notice's reason: the one rendering of `NoticeReason`. It is `NoticeReason.text`,
    /// which lives in RecoveryCore next to the machines so that the decision worker fills `detail` with the
    /// same words when it builds the notice (the recorder, recoveryctl and older consumers read `detail`).
    public static func text(_ reason: NoticeReason) -> String { reason.text }

    /// `https://<region>.console.aws.amazon.com/ec2/home?region=<region>#InstanceDetails:instanceId=<id>`
    public static func consoleURL(instanceId: String?, region: String?) -> String? {
        guard let id = instanceId, !id.isEmpty, let region, !region.isEmpty,
            id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }),
            region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" })
        else { return nil }
        return "https://\(region).console.aws.amazon.com/ec2/home?region=\(region)#InstanceDetails:instanceId=\(id)"
    }

    func title(_ n: Notice) -> String {
        let target = n.target ?? "fleet"
        let step = n.step.map(\.rawValue) ?? "step"
        switch n.kind {
        case .outageDeclared:
            if case .outageDeclared(_, _, _, _, _, _, _, _, _, _?, _)? = n.reason {
                return "\(target) is still down after its maintenance window"
                    + (n.nextStep.map { " (\($0.rawValue) next)" } ?? "")
            }
            if case .outageDeclared(_, _, _, _, _, _, .flapping?, _, _, _, _)? = n.reason {
                return "\(target) flaps: outage declared, held for a person"
            }
            return "\(target) is down: outage declared" + (n.nextStep.map { " (\($0.rawValue) next)" } ?? "")
        case .approvalRequested:
            return
                "\(target) is down: approval needed for \(n.nextStep?.rawValue ?? n.step?.rawValue ?? "the next step")"
        case .approvalTimedOut: return "\(target): no approval in time, nothing was done"
        case .actionStarted: return "\(target): \(step) started"
        case .actionSucceeded: return "\(target): \(step) done, verifying that the site is back"
        case .actionFailed: return "\(target): \(step) failed"
        case .verificationFailed: return "\(target): still down after \(step)"
        case .humanNeeded: return "\(target): automation stopped, a person must act"
        case .recovered: return "\(target) recovered"
        case .originalInstanceBack: return "\(target): the original instance answers again"
        case .instanceFollowed: return "\(target): now followed on the instance discovery finds"
        case .brakeEngaged: return "Fleet brake engaged: destructive steps stopped"
        case .brakeReleased: return "Fleet brake released"
        case .commandAccepted:
            return "Command \(n.command?.name ?? "") accepted" + (n.target.map { " for \($0)" } ?? "")
        case .commandRejected: return "Command \(n.command?.name ?? "") refused" + (n.target.map { " for \($0)" } ?? "")
        case .troublePredicted: return "\(target): trouble predicted" + (n.repair.map { " (\($0) planned)" } ?? "")
        case .repairStarted: return "\(target): repair \(n.repair ?? "") started"
        case .repairSucceeded: return "\(target): repair \(n.repair ?? "") done"
        case .repairFailed: return "\(target): repair \(n.repair ?? "") failed"
        case .repairCancelled: return "\(target): planned repair \(n.repair ?? "") will not run"
        case .unauthorizedSender: return "Security: messages from a sender that may not send them were refused"
        case .drPreflight:
            if let one = n.target { return "DR pre-flight: \(one) would not fail over cleanly" }
            return
                "DR pre-flight: \(n.targets.map { "\($0.count) target(s) would not fail over cleanly" } ?? "problems found")"
        }
    }

    func next(_ n: Notice) -> String? {
        if n.kind == .troublePredicted, let repair = n.repair {
            switch n.blockedBy {
            case .approval:
                return "\(repair) waits for approval"
                    + (n.respondBy.map { " until \(Self.time($0, from: n.at))" } ?? "")
                    + "; without approval nothing is done."
            case .quarantine: return "No repair runs: the target is quarantined."
            case .brake: return "\(repair) is blocked by the fleet brake until `\(RecoveryCtl.brakeRelease)`."
            default:
                return n.nextStepAt.map {
                    "\(repair) at \(Self.time($0, from: n.at)), unless someone acks or holds it."
                }
            }
        }
        guard let step = n.nextStep else { return nil }
        if step == .notifyOnly || n.blockedBy == .quarantine {
            let why = n.blockedBy == .quarantine ? "the target is quarantined" : "the ladder is used up"
            return "No automatic step follows (\(why)); a person must act."
        }
        let name = Self.stepName(step)
        switch n.blockedBy {
        case .approval:
            let by = n.respondBy.map { " until \(Self.time($0, from: n.at))" } ?? ""
            return "\(name) waits for approval\(by); without approval nothing is done."
        case .acknowledged:
            return "\(name) is paused: an admin acknowledged the incident; `recoveryctl resume` hands it back."
        case .held:
            let until = n.nextStepAt.map { " until \(Self.time($0, from: n.at))" } ?? ""
            return "\(name) is held\(until)."
        case .brake:
            return "\(name) is blocked by the fleet brake until `\(RecoveryCtl.brakeRelease)`."
        case .quarantine, nil:
            if let at = n.nextStepAt {
                return "\(name) at \(Self.time(at, from: n.at)), unless the site comes back first."
            }
            return "\(name)."
        }
    }

    static func stepName(_ step: RecoveryStep) -> String {
        switch step {
        case .restart: "restart (reboot in place)"
        case .reprovision: "reprovision (new instance from the latest snapshot, Elastic IP moved)"
        case .failover: "failover (new instance in the DR region)"
        case .notifyOnly: "notify only"
        }
    }

    /// `2026-11-22T03:05:00Z (in 5m)`.
    static func time(_ date: Date, from now: Date) -> String {
        let delta = date.timeIntervalSince(now)
        guard delta >= 1 else { return iso(date) }
        return "\(iso(date)) (in \(duration(delta)))"
    }

    static func iso(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle()) }

    static func duration(_ seconds: TimeInterval) -> String {
        var s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        var parts: [String] = []
        let d = s / 86_400
        s %= 86_400
        let h = s / 3600
        s %= 3600
        let m = s / 60
        s %= 60
        if d > 0 { parts.append("\(d)d") }
        if h > 0 { parts.append("\(h)h") }
        if m > 0 { parts.append("\(m)m") }
        if s > 0 { parts.append("\(s)s") }
        return parts.joined()
    }

    // MARK: E-mail

    public func emailSubject(_ notice: Notice) -> String {
        "[recovery] " + summary(notice).title
    }

    public func emailText(_ notice: Notice) -> String {
        let s = summary(notice)
        var lines = [s.title, ""]
        if let detail = s.detail { lines += [detail, ""] }
        let width = s.facts.map(\.label.count).max() ?? 0
        lines += s.facts.map { $0.label.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.value }
        if let next = s.next { lines += ["", "Next: " + next] }
        if !s.commands.isEmpty {
            lines += ["", "To respond, run one of:"]
            lines += s.commands.map { "  " + $0 }
        }
        if let url = s.consoleURL { lines += ["", "Instance in the AWS console: " + url] }
        return lines.joined(separator: "\n") + "\n"
    }

    public func emailHTML(_ notice: Notice) -> String {
        let s = summary(notice)
        var html = "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">"
        html += "<h2>\(Self.html(s.title))</h2>"
        if let detail = s.detail { html += "<p>\(Self.html(detail))</p>" }
        html +=
            "<table>"
            + s.facts.map { "<tr><th align=\"left\">\(Self.html($0.label))</th><td>\(Self.html($0.value))</td></tr>" }
            .joined() + "</table>"
        if let next = s.next { html += "<p><b>Next:</b> \(Self.html(next))</p>" }
        if !s.commands.isEmpty {
            html += "<p>To respond, run one of:</p><pre>" + s.commands.map(Self.html).joined(separator: "\n") + "</pre>"
        }
        if let url = s.consoleURL {
            html += "<p><a href=\"\(Self.html(url))\">Open the instance in the AWS console</a></p>"
        }
        return html + "</body></html>"
    }

    /// HTML escaping for text and attribute values (the e-mail's body and the console's pages).
    public static func html(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    // MARK: Slack (incoming webhook, Block Kit)

    /// The JSON object posted to a Slack incoming webhook: `text` (the fallback for notifications) and
    /// Block Kit `blocks`. `channel` and `username` are only honoured by legacy webhooks; they are left
    /// out when not set.
    public func slackPayload(_ notice: Notice, channel: String? = nil, username: String? = nil) -> [String: Any] {
        let s = summary(notice)
        var blocks: [[String: Any]] = [
            ["type": "header", "text": ["type": "plain_text", "text": String(s.title.prefix(150)), "emoji": true]]
        ]
        if let detail = s.detail {
            blocks.append(["type": "section", "text": ["type": "mrkdwn", "text": Self.slack(detail)]])
        }
        // A section takes at most 10 fields.
        var facts = s.facts[...]
        while !facts.isEmpty {
            let chunk = facts.prefix(10)
            facts = facts.dropFirst(10)
            blocks.append([
                "type": "section",
                "fields": chunk.map {
                    ["type": "mrkdwn", "text": "*\(Self.slack($0.label))*\n\(Self.slack($0.value))"]
                },
            ])
        }
        if let next = s.next {
            blocks.append(["type": "section", "text": ["type": "mrkdwn", "text": "*Next:* " + Self.slack(next)]])
        }
        if !s.commands.isEmpty {
            blocks.append([
                "type": "section",
                "text": [
                    "type": "mrkdwn",
                    "text": "*To respond, run one of:*\n```" + s.commands.map(Self.slack).joined(separator: "\n")
                        + "```",
                ],
            ])
        }
        if slackButtons, let target = notice.target, [.outageDeclared, .approvalRequested].contains(notice.kind) {
            // action_id is the command, value `target|incident`: SlackInteractivity maps them back, and a
            // button of an incident that is over sends nothing.
            let value = notice.incidentId.map { "\(target)|\($0)" } ?? target
            func button(_ id: String, _ text: String, primary: Bool = false) -> [String: Any] {
                var b: [String: Any] = [
                    "type": "button", "action_id": id, "value": value, "text": ["type": "plain_text", "text": text],
                ]
                if primary { b["style"] = "primary" }
                return b
            }
            blocks.append([
                "type": "actions", "block_id": Self.slackActionsBlock,
                "elements": [
                    button("approve", "Approve", primary: true), button("ack", "Acknowledge"),
                    button("hold_1h", "Hold 1 h"),
                ],
            ])
        }
        var links: [[String: Any]] = []
        if let url = fleetConsoleLink(notice) {
            links.append([
                "type": "button", "text": ["type": "plain_text", "text": "Open in the fleet console"], "url": url,
            ])
        }
        if let url = s.consoleURL {
            links.append([
                "type": "button", "text": ["type": "plain_text", "text": "Open in the AWS console"], "url": url,
            ])
        }
        if !links.isEmpty { blocks.append(["type": "actions", "elements": links]) }
        var payload: [String: Any] = ["text": s.title, "blocks": blocks]
        if let channel, !channel.isEmpty { payload["channel"] = channel }
        if let username, !username.isEmpty { payload["username"] = username }
        return payload
    }

    /// Slack's mrkdwn escaping: only `&`, `<` and `>`.
    static func slack(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    // MARK: Microsoft Teams (Workflows webhook, Adaptive Card)

    public static let adaptiveCardSchema = "http://adaptivecards.io/schemas/adaptive-card.json"

    /// The message a Teams Workflows webhook ("Post to a channel when a webhook request is received")
    /// expects: one attachment holding an Adaptive Card 1.4.
    public func teamsPayload(_ notice: Notice) -> [String: Any] {
        let s = summary(notice)
        var body: [[String: Any]] = [
            ["type": "TextBlock", "text": s.title, "weight": "Bolder", "size": "Medium", "wrap": true]
        ]
        if let detail = s.detail { body.append(["type": "TextBlock", "text": detail, "wrap": true]) }
        body.append(["type": "FactSet", "facts": s.facts.map { ["title": $0.label, "value": $0.value] }])
        if let next = s.next { body.append(["type": "TextBlock", "text": "**Next:** " + next, "wrap": true]) }
        if !s.commands.isEmpty {
            body.append(["type": "TextBlock", "text": "To respond, run one of:", "wrap": true])
            body += s.commands.map { ["type": "TextBlock", "text": $0, "fontType": "Monospace", "wrap": true] }
        }
        var card: [String: Any] = [
            "type": "AdaptiveCard", "version": "1.4", "$schema": Self.adaptiveCardSchema, "body": body,
        ]
        // Only links: a card posted through a Workflows webhook cannot send an Action.Submit or Action.Execute
        // back to us (that needs a bot registration), so approving is done on the console page it opens.
        var actions: [[String: Any]] = []
        if let url = fleetConsoleLink(notice) {
            actions.append(["type": "Action.OpenUrl", "title": "Open in the fleet console", "url": url])
        }
        if let url = s.consoleURL {
            actions.append(["type": "Action.OpenUrl", "title": "Open in the AWS console", "url": url])
        }
        if !actions.isEmpty { card["actions"] = actions }
        return [
            "type": "message",
            "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "content": card]],
        ]
    }

    // MARK: SNS

    /// One line of at most 100 characters, as SNS requires of a subject.
    public func snsSubject(_ notice: Notice) -> String {
        let line = ("[recovery] " + summary(notice).title).map { $0.isNewline ? " " : $0 }
        return line.count <= 100 ? String(line) : String(line.prefix(99)) + "…"
    }

    /// For machines: the notice itself (the `notification` body, snake_case, ISO times) under `notice`,
    /// plus the rendered `title`, `next` and `console_url`.
    public func snsMessage(_ notice: Notice) throws -> String {
        let noticeObject = try JSONSerialization.jsonObject(with: Timestamp.jsonEncoder().encode(notice))
        let s = summary(notice)
        var object: [String: Any] = ["notice": noticeObject, "title": s.title, "kind": notice.kind.rawValue]
        if let next = s.next { object["next"] = next }
        if let url = s.consoleURL { object["console_url"] = url }
        return String(decoding: try Self.json(object), as: UTF8.self)
    }

    /// Sorted keys, slashes unescaped: stable bytes for the same notice.
    public static func json(_ object: Any) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    }
}
