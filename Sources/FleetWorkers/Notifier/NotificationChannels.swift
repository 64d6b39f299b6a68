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

/// Which channels a notice goes to. Today every notice goes to the fleet-wide channels configured in the
/// environment (`FleetChannels`); a per-target router (channels from the instance-config table) plugs in
/// here without touching the worker.
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
    public let ses: SESClient
    public let from: String
    public let to: [String]
    public let formatter: NoticeFormatter
    public var name: String { "email" }

    public init(ses: SESClient, from: String, to: [String], formatter: NoticeFormatter) {
        self.ses = ses
        self.from = from
        self.to = to
        self.formatter = formatter
    }

    public func deliver(_ notice: Notice) async throws {
        _ = try await ses.sendEmail(Email(
            from: from, to: to, subject: formatter.emailSubject(notice), textBody: formatter.emailText(notice),
            htmlBody: formatter.emailHTML(notice)))
    }
}

// MARK: SNS

public struct SNSChannel: NotificationChannel {
    public let sns: SNSClient
    public let topicArn: String
    public let formatter: NoticeFormatter
    public var name: String { "sns" }

    public init(sns: SNSClient, topicArn: String, formatter: NoticeFormatter) {
        self.sns = sns
        self.topicArn = topicArn
        self.formatter = formatter
    }

    public func deliver(_ notice: Notice) async throws {
        var attributes: [String: SNSMessageAttribute] = ["kind": .string(notice.kind.rawValue)]
        if let target = notice.target, !target.isEmpty { attributes["target"] = .string(target) }
        _ = try await sns.publish(SNSMessage(
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
        let advice = (400..<500).contains(status) && status != 408 && status != 429
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

    public init(name: String, http: any HTTPExecuting, url: String, timeout: Duration = .seconds(10),
                payload: @escaping @Sendable (Notice) throws -> Data) {
        self.name = name
        self.http = http
        self.url = url
        self.timeout = timeout
        self.payload = payload
    }

    public static func slack(http: any HTTPExecuting, url: String, channel: String?, username: String?,
                             formatter: NoticeFormatter) -> WebhookChannel {
        WebhookChannel(name: "slack", http: http, url: url) {
            try NoticeFormatter.json(formatter.slackPayload($0, channel: channel, username: username))
        }
    }

    public static func teams(http: any HTTPExecuting, url: String, formatter: NoticeFormatter) -> WebhookChannel {
        WebhookChannel(name: "teams", http: http, url: url) { try NoticeFormatter.json(formatter.teamsPayload($0)) }
    }

    public func deliver(_ notice: Notice) async throws {
        let response = try await http.execute(HTTPRequest(
            method: "POST", url: url, headers: [("Content-Type", "application/json; charset=utf-8")],
            body: Array(try payload(notice)), timeout: timeout, maxBodyBytes: 4096))
        guard (200..<300).contains(response.status) else {
            let error = WebhookError(channel: name, status: response.status,
                                     answer: String(response.bodyString.prefix(200)).trimmingCharacters(in: .whitespacesAndNewlines))
            if error.isPermanent { throw PermanentWebhookError(error: error) }
            throw error
        }
    }
}

// MARK: From the environment

extension WorkerEnvironment {
    /// The fleet-wide channels (docs/notifications.md): e-mail when NOTIFY_EMAIL_FROM and NOTIFY_EMAIL_TO
    /// are set, Slack with SLACK_WEBHOOK_URL, Teams with TEAMS_WEBHOOK_URL, SNS with SNS_TOPIC_ARN.
    public func notificationChannels(http: any HTTPExecuting, aws: AWSClient, formatter: NoticeFormatter) throws
        -> [any NotificationChannel]
    {
        var channels: [any NotificationChannel] = []
        let from = string("NOTIFY_EMAIL_FROM")
        let to = list("NOTIFY_EMAIL_TO")
        switch (from, to.isEmpty) {
        case (let from?, false):
            guard to.count <= SESClient.maxRecipients else {
                throw ConfigurationError("NOTIFY_EMAIL_TO has \(to.count) addresses; SES takes at most \(SESClient.maxRecipients) (use a mailing list)")
            }
            var ses = SESClient(aws)
            if let region = string("NOTIFY_SES_REGION") { ses = ses.withRegion(region) }
            channels.append(EmailChannel(ses: ses, from: from, to: to, formatter: formatter))
        case (nil, false):
            throw ConfigurationError("NOTIFY_EMAIL_TO is set but NOTIFY_EMAIL_FROM is not: set the verified SES sender")
        case (.some, true):
            throw ConfigurationError("NOTIFY_EMAIL_FROM is set but NOTIFY_EMAIL_TO is not: set a comma-separated list of recipients")
        case (nil, true):
            break
        }
        if let url = try webhookURL(string("SLACK_WEBHOOK_URL"), variable: "SLACK_WEBHOOK_URL") {
            channels.append(WebhookChannel.slack(http: http, url: url, channel: string("SLACK_CHANNEL"),
                                                 username: string("SLACK_USERNAME"), formatter: formatter))
        }
        if let url = try webhookURL(string("TEAMS_WEBHOOK_URL"), variable: "TEAMS_WEBHOOK_URL") {
            channels.append(WebhookChannel.teams(http: http, url: url, formatter: formatter))
        }
        if let arn = string("SNS_TOPIC_ARN") {
            guard arn.hasPrefix("arn:"), arn.split(separator: ":", omittingEmptySubsequences: false).count >= 6 else {
                throw ConfigurationError("SNS_TOPIC_ARN must be a topic ARN (arn:aws:sns:<region>:<account>:<name>), not '\(arn)'")
            }
            // The topic lives in the region its ARN names.
            let region = String(arn.split(separator: ":", omittingEmptySubsequences: false)[3])
            let sns = region.isEmpty ? SNSClient(aws) : SNSClient(aws).withRegion(region)
            channels.append(SNSChannel(sns: sns, topicArn: arn, formatter: formatter))
        }
        return channels
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
        guard url.lowercased().hasPrefix("https://") || url.lowercased().hasPrefix("http://") else {
            throw ConfigurationError("\(name) must be an https:// URL (the value is not shown: it is a secret)")
        }
        return url
    }
}
