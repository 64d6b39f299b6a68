import Foundation
import RecoveryCore

/// A target's own notification channels: the `notify` object of its entry in the targets file or its
/// instance-config item. Each setting replaces the fleet-wide one (docs/notifications.md) for this
/// target's notices only; fleet-wide notices (the brake) keep the fleet's channels.
///
/// ```json
/// "notify": {"channels": ["email", "slack"], "email_to": ["shop-team@example.com"],
///            "slack_webhook_url": "https://hooks.slack.com/services/…", "slack_channel": "#shop"}
/// ```
public struct TargetNotify: Sendable, Equatable {
    /// The channel kinds this target's notices go to (`email`, `slack`, `teams`, `sns`); nil: every kind
    /// the fleet or the target configures. An empty list mutes the target (recorded, never sent).
    public var channels: Set<String>?
    public var emailTo: [String]?
    public var slackWebhookURL: String?
    public var slackChannel: String?
    public var teamsWebhookURL: String?
    public var snsTopicArn: String?

    public static let kinds: Set<String> = Set(ChannelKind.allCases.map(\.rawValue))
    static let keys: Set<String> = Set(["channels"] + ChannelKind.allCases.flatMap(\.targetKeys))

    public init() {}

    /// Parses and checks a `notify` value. Errors name the key and never show a webhook URL.
    init(_ value: JSONValue, target: String) throws {
        guard case .object(let object) = value else {
            throw ConfigurationError(
                "notify of target '\(target)' must be an object with keys \(Self.keys.sorted().joined(separator: ", "))"
            )
        }
        if let unknown = object.keys.sorted().first(where: { !Self.keys.contains($0) }) {
            throw ConfigurationError(
                "notify of target '\(target)' has an unknown key '\(unknown)' (expected one of \(Self.keys.sorted().joined(separator: ", ")))"
            )
        }
        func strings(_ key: String) throws -> [String]? {
            guard let v = object[key], v != .null else { return nil }
            guard case .array(let items) = v, items.allSatisfy({ $0.stringValue != nil }) else {
                throw ConfigurationError("notify.\(key) of target '\(target)' must be a list of strings")
            }
            return items.compactMap(\.stringValue)
        }
        func string(_ key: String) throws -> String? {
            guard let v = object[key], v != .null else { return nil }
            guard let s = v.stringValue, !s.isEmpty else {
                throw ConfigurationError("notify.\(key) of target '\(target)' must be a non-empty string")
            }
            return s
        }
        if let channels = try strings("channels") {
            if let bad = channels.first(where: { !Self.kinds.contains($0) }) {
                throw ConfigurationError(
                    "notify.channels of target '\(target)': unknown channel '\(bad)' (expected \(Self.kinds.sorted().joined(separator: ", ")))"
                )
            }
            self.channels = Set(channels)
        }
        if let to = try strings("email_to") {
            guard !to.isEmpty else {
                throw ConfigurationError(
                    "notify.email_to of target '\(target)' is empty; leave it out to use NOTIFY_EMAIL_TO, or drop email from notify.channels"
                )
            }
            try ChannelSettingCheck.recipients(to, name: "notify.email_to of target '\(target)'")
            emailTo = to
        }
        if let url = try string("slack_webhook_url") {
            try ChannelSettingCheck.webhookURL(url, name: "notify.slack_webhook_url of target '\(target)'")
            slackWebhookURL = url
        }
        slackChannel = try string("slack_channel")
        if let url = try string("teams_webhook_url") {
            try ChannelSettingCheck.webhookURL(url, name: "notify.teams_webhook_url of target '\(target)'")
            teamsWebhookURL = url
        }
        if let arn = try string("sns_topic_arn") {
            try ChannelSettingCheck.topicArn(arn, name: "notify.sns_topic_arn of target '\(target)'")
            snsTopicArn = arn
        }
    }
}
