import AWSClient
import Foundation
import HTTPTransport
import RecoveryCore

/// One place notices go: e-mail through SES, a Slack or Teams webhook, an SNS topic. `deliver` returns
/// once the channel accepted the notice and throws when it did not; the notifier retries and records.
public protocol NotificationChannel: Sendable {
    /// `email`, `slack`, `teams`, `sns`: the metric label, the dedupe key's suffix and the dead-letter
    /// header `x-notifier-channel`.
    var name: String { get }
    func deliver(_ notice: Notice) async throws
}

/// Why a delivery will not succeed however often it is retried (a webhook answering 400 to the payload,
/// say). The notifier stops retrying at once.
public protocol PermanentDeliveryFailure: Error {}

/// Which channels a notice goes to: `TargetChannelRouter` (the target's own `notify` settings over the
/// fleet-wide defaults) in production, `FleetChannels` (the same channels for every notice) in tests.
public protocol NotificationRouting: Sendable {
    func channels(for notice: Notice) async throws -> [any NotificationChannel]
}

/// Every notice to the same channels.
public struct FleetChannels: NotificationRouting {
    public let channels: [any NotificationChannel]
    public init(_ channels: [any NotificationChannel]) { self.channels = channels }
    public func channels(for notice: Notice) async throws -> [any NotificationChannel] { channels }
}

// MARK: E-mail

public struct EmailChannel: NotificationChannel {
    public let ses: any EmailSending
    public let from: String
    public let to: [String]
    public let formatter: NoticeFormatter
    public var name: String { ChannelKind.email.rawValue }

    public init(ses: any EmailSending, from: String, to: [String], formatter: NoticeFormatter) {
        self.ses = ses
        self.from = from
        self.to = to
        self.formatter = formatter
    }

    public func deliver(_ notice: Notice) async throws {
        _ = try await ses.sendEmail(
            Email(
                from: from, to: to, subject: formatter.emailSubject(notice), textBody: formatter.emailText(notice),
                htmlBody: formatter.emailHTML(notice)))
    }
}

// MARK: SNS

public struct SNSChannel: NotificationChannel {
    public let sns: any TopicPublishing
    public let topicArn: String
    public let formatter: NoticeFormatter
    public var name: String { ChannelKind.sns.rawValue }

    public init(sns: any TopicPublishing, topicArn: String, formatter: NoticeFormatter) {
        self.sns = sns
        self.topicArn = topicArn
        self.formatter = formatter
    }

    public func deliver(_ notice: Notice) async throws {
        var attributes: [String: SNSMessageAttribute] = ["kind": .string(notice.kind.rawValue)]
        if let target = notice.target, !target.isEmpty { attributes["target"] = .string(target) }
        _ = try await sns.publish(
            SNSMessage(
                topicArn: topicArn, message: try formatter.snsMessage(notice), subject: formatter.snsSubject(notice),
                attributes: attributes))
    }
}

// MARK: Webhooks (Slack, Teams)

/// A webhook answered with a status other than 2xx. Carries no URL: the webhook URL is the credential.
public struct WebhookError: Error, Sendable, CustomStringConvertible {
    public var channel: String
    public var status: Int
    /// The start of the answer's body (Slack says e.g. `invalid_payload` or `no_service`).
    public var answer: String

    public var description: String {
        let text = answer.isEmpty ? "" : ": \(answer)"
        let advice =
            (400..<500).contains(status) && status != 408 && status != 429
            ? "the webhook refused the message; check that the URL is current and the payload is accepted"
            : "the service failed; it will be retried"
        return "\(channel) webhook answered HTTP \(status)\(text) (\(advice))"
    }

    /// 4xx other than 408 and 429 will not get better by retrying.
    public var isPermanent: Bool { (400..<500).contains(status) && status != 408 && status != 429 }
}

struct PermanentWebhookError: PermanentDeliveryFailure, CustomStringConvertible {
    let error: WebhookError
    var description: String { error.description }
}

/// POSTs a JSON payload to a webhook URL. The URL never appears in errors or logs (`HTTPClientError`
/// already reduces it to `scheme://host:port`).
public struct WebhookChannel: NotificationChannel {
    public let name: String
    let http: any HTTPExecuting
    let url: String
    let timeout: Duration
    let payload: @Sendable (Notice) throws -> Data

    public init(
        name: String, http: any HTTPExecuting, url: String, timeout: Duration = .seconds(10),
        payload: @escaping @Sendable (Notice) throws -> Data
    ) {
        self.name = name
        self.http = http
        self.url = url
        self.timeout = timeout
        self.payload = payload
    }

    public static func slack(
        http: any HTTPExecuting, url: String, channel: String?, username: String?,
        formatter: NoticeFormatter
    ) -> WebhookChannel {
        WebhookChannel(name: ChannelKind.slack.rawValue, http: http, url: url) {
            try NoticeFormatter.json(formatter.slackPayload($0, channel: channel, username: username))
        }
    }

    public static func teams(http: any HTTPExecuting, url: String, formatter: NoticeFormatter) -> WebhookChannel {
        WebhookChannel(name: ChannelKind.teams.rawValue, http: http, url: url) {
            try NoticeFormatter.json(formatter.teamsPayload($0))
        }
    }

    public func deliver(_ notice: Notice) async throws {
        let response = try await http.execute(
            HTTPRequest(
                method: "POST", url: url, headers: [("Content-Type", "application/json; charset=utf-8")],
                body: Array(try payload(notice)), timeout: timeout, maxBodyBytes: 4096))
        guard (200..<300).contains(response.status) else {
            let error = WebhookError(
                channel: name, status: response.status,
                answer: String(response.bodyString.prefix(200)).trimmingCharacters(in: .whitespacesAndNewlines))
            if error.isPermanent { throw PermanentWebhookError(error: error) }
            throw error
        }
    }
}

// MARK: From the environment

/// The fleet-wide channel settings (docs/notifications.md), read once from the environment. A target's
/// own `notify` settings (`TargetNotify`, from the targets file or the instance-config table) are laid
/// over them per notice by `TargetChannelRouter`.
public struct NotificationDefaults: Sendable {
    public var emailFrom: String?
    public var emailTo: [String] = []
    public var sesRegion: String?
    public var slackWebhookURL: String?
    public var slackChannel: String?
    public var slackUsername: String?
    public var teamsWebhookURL: String?
    public var snsTopicArn: String?

    public init() {}

    /// The channels for one target: each of this value's settings, replaced by the target's own where it
    /// has one, and only the channel kinds the target lists when it lists them. `nil`: the defaults.
    func specs(for notify: TargetNotify?) -> (specs: [ChannelSpec], problems: [String]) {
        var specs: [ChannelSpec] = []
        var problems: [String] = []
        let wanted = notify?.channels
        func on(_ kind: ChannelKind) -> Bool { wanted?.contains(kind.rawValue) ?? true }
        let to = notify?.emailTo ?? emailTo
        if on(.email), !to.isEmpty {
            if let emailFrom {
                specs.append(.email(from: emailFrom, to: to, region: sesRegion))
            } else {
                problems.append(
                    "the target has e-mail recipients but NOTIFY_EMAIL_FROM (the verified SES sender) is not set")
            }
        }
        if on(.slack), let url = notify?.slackWebhookURL ?? slackWebhookURL {
            specs.append(.slack(url: url, channel: notify?.slackChannel ?? slackChannel, username: slackUsername))
        }
        if on(.teams), let url = notify?.teamsWebhookURL ?? teamsWebhookURL { specs.append(.teams(url: url)) }
        if on(.sns), let arn = notify?.snsTopicArn ?? snsTopicArn { specs.append(.sns(topicArn: arn)) }
        for name in (wanted ?? []).sorted() where !specs.contains(where: { $0.name == name }) {
            problems.append("the target asks for the \(name) channel, but neither it nor the fleet configures one")
        }
        return (specs, problems)
    }
}

/// One channel to build: what `NotificationDefaults.specs` decides, before any client exists.
enum ChannelSpec: Sendable, Equatable {
    case email(from: String, to: [String], region: String?)
    case slack(url: String, channel: String?, username: String?)
    case teams(url: String)
    case sns(topicArn: String)

    var kind: ChannelKind {
        switch self {
        case .email: .email
        case .slack: .slack
        case .teams: .teams
        case .sns: .sns
        }
    }

    var name: String { kind.rawValue }

    func channel(http: any HTTPExecuting, aws: any NoticeSenders, formatter: NoticeFormatter) -> any NotificationChannel
    {
        switch self {
        case let .email(from, to, region):
            return EmailChannel(ses: aws.email(region: region), from: from, to: to, formatter: formatter)
        case let .slack(url, channel, username):
            return WebhookChannel.slack(
                http: http, url: url, channel: channel, username: username, formatter: formatter)
        case let .teams(url):
            return WebhookChannel.teams(http: http, url: url, formatter: formatter)
        case let .sns(arn):
            // The topic lives in the region its ARN names.
            let region = String(arn.split(separator: ":", omittingEmptySubsequences: false)[3])
            return SNSChannel(
                sns: aws.topics(region: region.isEmpty ? nil : region), topicArn: arn, formatter: formatter)
        }
    }
}

/// The checks shared by the environment and a target's `notify` settings. Errors name the setting,
/// never a webhook URL's value (the URL is the credential).
enum ChannelSettingCheck {
    static func webhookURL(_ url: String, name: String) throws {
        guard url.lowercased().hasPrefix("https://") || url.lowercased().hasPrefix("http://") else {
            throw ConfigurationError("\(name) must be an https:// URL (the value is not shown: it is a secret)")
        }
    }

    static func topicArn(_ arn: String, name: String) throws {
        guard arn.hasPrefix("arn:"), arn.split(separator: ":", omittingEmptySubsequences: false).count >= 6 else {
            throw ConfigurationError(
                "\(name) must be a topic ARN (arn:aws:sns:<region>:<account>:<name>), not '\(arn)'")
        }
    }

    static func recipients(_ to: [String], name: String) throws {
        guard to.count <= SESClient.maxRecipients else {
            throw ConfigurationError(
                "\(name) has \(to.count) addresses; SES takes at most \(SESClient.maxRecipients) (use a mailing list)")
        }
        if let bad = to.first(where: { !$0.contains("@") || $0.contains(" ") }) {
            throw ConfigurationError("\(name): '\(bad)' is not an e-mail address")
        }
    }
}

extension WorkerEnvironment {
    /// The fleet-wide channel settings: e-mail when NOTIFY_EMAIL_FROM and NOTIFY_EMAIL_TO are set, Slack
    /// with SLACK_WEBHOOK_URL, Teams with TEAMS_WEBHOOK_URL, SNS with SNS_TOPIC_ARN.
    public func notificationDefaults() throws -> NotificationDefaults {
        var d = NotificationDefaults()
        let from = string("NOTIFY_EMAIL_FROM")
        let to = list("NOTIFY_EMAIL_TO")
        switch (from, to.isEmpty) {
        case (nil, false):
            throw ConfigurationError("NOTIFY_EMAIL_TO is set but NOTIFY_EMAIL_FROM is not: set the verified SES sender")
        case (.some, true):
            throw ConfigurationError(
                "NOTIFY_EMAIL_FROM is set but NOTIFY_EMAIL_TO is not: set a comma-separated list of recipients")
        default:
            break
        }
        try ChannelSettingCheck.recipients(to, name: "NOTIFY_EMAIL_TO")
        d.emailFrom = from
        d.emailTo = to
        d.sesRegion = string("NOTIFY_SES_REGION")
        d.slackWebhookURL = try webhookURL(string("SLACK_WEBHOOK_URL"), variable: "SLACK_WEBHOOK_URL")
        d.slackChannel = string("SLACK_CHANNEL")
        d.slackUsername = string("SLACK_USERNAME")
        d.teamsWebhookURL = try webhookURL(string("TEAMS_WEBHOOK_URL"), variable: "TEAMS_WEBHOOK_URL")
        if let arn = string("SNS_TOPIC_ARN") {
            try ChannelSettingCheck.topicArn(arn, name: "SNS_TOPIC_ARN")
            d.snsTopicArn = arn
        }
        return d
    }

    /// The fleet-wide channels, built (what every notice gets when no target overrides them).
    public func notificationChannels(http: any HTTPExecuting, aws: any NoticeSenders, formatter: NoticeFormatter) throws
        -> [any NotificationChannel]
    {
        try notificationDefaults().specs(for: nil).specs.map { $0.channel(http: http, aws: aws, formatter: formatter) }
    }

    /// NOTIFICATION_ENABLED (default true): false acks and counts notices without sending them.
    public func notificationEnabled() throws -> Bool {
        guard let text = string("NOTIFICATION_ENABLED")?.lowercased() else { return true }
        switch text {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ConfigurationError("NOTIFICATION_ENABLED must be true or false, not '\(text)'")
        }
    }

    /// A webhook URL is a secret: the error names the variable, never the value.
    func webhookURL(_ value: String?, variable name: String) throws -> String? {
        guard let url = value else { return nil }
        try ChannelSettingCheck.webhookURL(url, name: name)
        return url
    }
}
