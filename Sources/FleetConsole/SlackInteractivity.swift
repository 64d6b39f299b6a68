import FleetControl
import FleetWorkers
import FleetCrypto
import Foundation
import Logging
import RecoveryCore

/// Slack's interactivity endpoint (docs/console.md, "Approve from Slack"): the buttons on an outage notice
/// (approve, acknowledge, hold 1 h) post here.
///
/// A request is acted on only when
/// - its `X-Slack-Signature` is `v0=` + HMAC-SHA-256 of `v0:<timestamp>:<body>` under the signing secret,
///   compared in constant time;
/// - its `X-Slack-Request-Timestamp` is within 5 minutes of our clock (a captured request cannot be
///   replayed later);
/// - the Slack user is mapped to a person in `SLACK_OPERATORS` (`U024BE7LH=alice,…`) who is on `OPERATORS`.
/// A bad signature or an old timestamp gets 401 and nothing else; an unknown Slack user gets an ephemeral
/// reply saying so, and no command is sent. Slack wants an answer within 3 s, so the request is answered at
/// once and the command's answer goes to the message's `response_url`, which updates the message with who
/// did what. The command carries the button's incident: the decision worker refuses it if that incident
/// is over (`incident_changed`), so last week's Approve never approves today's step.
public struct SlackInteractivity: Sendable {
    public typealias Poster = @Sendable (_ url: String, _ json: [UInt8]) async throws -> Void
    let signingSecret: [UInt8]
    /// Slack user id → operator.
    let people: [String: String]
    let operators: Set<String>
    /// Only URLs starting with this get the follow-up (Slack's own: https://hooks.slack.com/).
    let responseURLPrefix: String
    let post: Poster
    let logger: Logger
    let commandTimeout: Duration
    /// Signatures seen within the window: a captured request replayed inside it is refused too.
    let seen = SeenSignatures()
    static let window: TimeInterval = 300

    public init(
        signingSecret: String, people: [String: String], operators: Set<String>,
        responseURLPrefix: String = "https://hooks.slack.com/", commandTimeout: Duration = .seconds(20),
        logger: Logger, post: @escaping Poster
    ) throws {
        guard !signingSecret.isEmpty else { throw ConsoleError("SLACK_SIGNING_SECRET is empty") }
        self.signingSecret = Array(signingSecret.utf8)
        self.people = people
        self.operators = operators
        self.responseURLPrefix = responseURLPrefix
        self.commandTimeout = commandTimeout
        self.logger = logger
        self.post = post
    }

    /// `U024BE7LH=alice,U0G9QF9C6=bob`.
    public static func parsePeople(_ text: String) throws -> [String: String] {
        var people: [String: String] = [:]
        for item in text.split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, !pair[0].isEmpty, ConsoleIdentity.isValidName(pair[1]) else {
                throw ConsoleError("SLACK_OPERATORS: '\(item)' is not SLACKUSERID=operator")
            }
            guard people.updateValue(pair[1], forKey: pair[0]) == nil else {
                throw ConsoleError("SLACK_OPERATORS names Slack user \(pair[0]) twice")
            }
        }
        return people
    }

    /// The signature Slack sends for `body` at `timestamp`.
    public static func signature(secret: String, timestamp: String, body: [UInt8]) -> String {
        let mac = (try? hmacSHA256(key: Array(secret.utf8), data: Array("v0:\(timestamp):".utf8) + body)) ?? []
        return "v0=" + hexEncoded(mac)
    }

    func verified(_ request: ConsoleRequest, now: Date) -> String? {
        guard let timestamp = request.headers["x-slack-request-timestamp"], let seconds = Double(timestamp) else {
            return "no X-Slack-Request-Timestamp"
        }
        guard abs(now.timeIntervalSince1970 - seconds) <= Self.window else {
            return "timestamp outside the 5-minute window (replayed, or a clock is off)"
        }
        guard let given = request.headers["x-slack-signature"], given.hasPrefix("v0="),
            let givenBytes = hexDecoded(String(given.dropFirst(3))),
            let expected = try? hmacSHA256(
                key: signingSecret, data: Array("v0:\(timestamp):".utf8) + request.body)
        else { return "no valid X-Slack-Signature" }
        return constantTimeEquals(givenBytes, expected) ? nil : "signature mismatch"
    }

    func handle(_ request: ConsoleRequest, backend: any ConsoleBackend, now: Date) async -> ConsoleResponse {
        if let refusal = verified(request, now: now) {
            logger.warning("Slack request refused", metadata: ["reason": "\(refusal)"])
            return .plain(401, "refused: \(refusal)\n")
        }
        guard await seen.first(request.headers["x-slack-signature"] ?? "", now: now) else {
            logger.warning("Slack request refused", metadata: ["reason": "replayed"])
            return .plain(401, "refused: this request was already received (replayed)\n")
        }
        guard let payloadText = request.form["payload"],
            let payload = try? JSONSerialization.jsonObject(with: Data(payloadText.utf8)) as? [String: Any],
            let user = (payload["user"] as? [String: Any])?["id"] as? String,
            let action = (payload["actions"] as? [[String: Any]])?.first,
            let actionId = action["action_id"] as? String, let value = action["value"] as? String
        else { return .plain(400, "not a Slack block_actions payload\n") }
        // `target|incident`: a button answers the incident its notice was about, never a later one.
        let parts = value.split(separator: "|", maxSplits: 1).map(String.init)
        let target = parts.first ?? ""
        let incident = parts.count > 1 ? parts[1] : nil
        let responseURL = (payload["response_url"] as? String).flatMap { $0.hasPrefix(responseURLPrefix) ? $0 : nil }
        guard let person = people[user], operators.contains(person) else {
            logger.notice("Slack action from an unmapped user refused", metadata: ["slack_user": "\(user)"])
            reply(
                responseURL,
                [
                    "response_type": "ephemeral", "replace_original": false,
                    "text":
                        "Refused: your Slack user \(user) is not mapped to an operator (SLACK_OPERATORS), so nothing was sent.",
                ])
            return ConsoleResponse(status: 200)
        }
        let command: CommandRequest
        switch actionId {
        case "approve":
            command = CommandRequest(target: target, name: .approve, onBehalfOf: person, incidentId: incident)
        case "ack": command = CommandRequest(target: target, name: .ack, onBehalfOf: person, incidentId: incident)
        case "hold_1h":
            command = CommandRequest(
                target: target, name: .hold, until: now.addingTimeInterval(3600), onBehalfOf: person,
                incidentId: incident)
        default: return .plain(400, "unknown action \(actionId)\n")
        }
        let message = payload["message"] as? [String: Any]
        let timeout = commandTimeout
        Task {
            var line: String
            do {
                let result = try await backend.send(command, timeout: timeout)
                line = "\(person) (Slack) sent \(command.name.rawValue) for \(target): \(result.status.rawValue)"
                if let detail = result.detail { line += ", \(detail)" }
                if let outcome = result.outcome { line += "; \(outcome.step) \(outcome.status)" }
            } catch {
                line = "\(person) (Slack) pressed \(command.name.rawValue) for \(target), but it was not sent: \(error)"
            }
            reply(responseURL, Self.updated(message, line: line))
        }
        return ConsoleResponse(status: 200)
    }

    /// The original message without its buttons, with a line saying who did what.
    static func updated(_ message: [String: Any]?, line: String) -> [String: Any] {
        var blocks = ((message?["blocks"] as? [[String: Any]]) ?? []).filter {
            ($0["block_id"] as? String) != NoticeFormatter.slackActionsBlock
        }
        blocks.append(["type": "context", "elements": [["type": "mrkdwn", "text": NoticeSlackText.escape(line)]]])
        return ["replace_original": true, "text": (message?["text"] as? String) ?? line, "blocks": blocks]
    }

    private func reply(_ url: String?, _ json: [String: Any]) {
        guard let url, let data = try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) else {
            return
        }
        let post = post
        let logger = logger
        Task {
            do { try await post(url, Array(data)) } catch {
                logger.warning("Slack response_url post failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

enum NoticeSlackText {
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}

/// Signatures of the last 5 minutes (at most 10,000; older ones are forgotten first).
actor SeenSignatures {
    private var seen: [String: Date] = [:]

    func first(_ signature: String, now: Date) -> Bool {
        if seen.count >= 10_000 {
            seen = seen.filter { now.timeIntervalSince($0.value) <= SlackInteractivity.window }
            if seen.count >= 10_000, let oldest = seen.min(by: { $0.value < $1.value }) { seen[oldest.key] = nil }
        }
        guard seen[signature] == nil else { return false }
        seen[signature] = now
        return true
    }
}
