import AWSClient
import Foundation

/// SES's SendEmail, for the e-mail channel. `SESClient` in production.
public protocol EmailSending: Sendable {
    /// Returns SES's message id.
    func sendEmail(_ email: Email) async throws -> String
}

/// SNS's Publish, for the SNS channel. `SNSClient` in production.
public protocol TopicPublishing: Sendable {
    /// Returns SNS's message id.
    func publish(_ message: SNSMessage) async throws -> String
}

extension SESClient: EmailSending {}
extension SNSClient: TopicPublishing {}

/// Where the notification channels get their e-mail and SNS senders, per region: `AWSClient` in
/// production (SES identities and SNS topics live in a region), an in-memory recorder in tests.
public protocol NoticeSenders: Sendable {
    /// The e-mail sender for `region`; nil: the home region.
    func email(region: String?) -> any EmailSending
    /// The SNS publisher for `region`; nil: the home region.
    func topics(region: String?) -> any TopicPublishing
}

extension AWSClient: NoticeSenders {
    public func email(region: String?) -> any EmailSending {
        region.map { SESClient(self).withRegion($0) } ?? SESClient(self)
    }

    public func topics(region: String?) -> any TopicPublishing {
        region.map { SNSClient(self).withRegion($0) } ?? SNSClient(self)
    }
}
