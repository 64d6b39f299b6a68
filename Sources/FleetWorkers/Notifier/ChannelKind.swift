/// The notification channel kinds, and for each what a newcomer adding one must name in one place: its
/// name (in `notify.channels` and metrics), a target's own settings keys (`notify.<key>`), which of those
/// are credentials, and the fleet-wide variables that are credentials. The notifier, the target
/// settings' validation and recoveryctl's masking all read this table.
public enum ChannelKind: String, CaseIterable, Sendable {
    case email, slack, teams, sns

    /// A target's own settings for this channel, in its `notify` object.
    public var targetKeys: [String] {
        switch self {
        case .email: ["email_to"]
        case .slack: ["slack_webhook_url", "slack_channel"]
        case .teams: ["teams_webhook_url"]
        case .sns: ["sns_topic_arn"]
        }
    }

    /// Keys whose values are credentials (a webhook URL is the secret): never printed.
    public var secretKeys: [String] {
        switch self {
        case .slack: ["slack_webhook_url"]
        case .teams: ["teams_webhook_url"]
        case .email, .sns: []
        }
    }

    /// Fleet-wide variables whose values are credentials.
    public var secretVariables: [String] {
        switch self {
        case .slack: ["SLACK_WEBHOOK_URL"]
        case .teams: ["TEAMS_WEBHOOK_URL"]
        case .email, .sns: []
        }
    }

    public static var allSecretKeys: Set<String> { Set(allCases.flatMap(\.secretKeys)) }
    public static var allSecretVariables: [String] { allCases.flatMap(\.secretVariables) }
}
