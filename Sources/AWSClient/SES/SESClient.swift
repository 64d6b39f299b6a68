import Foundation

/// Typed SES (v1, Query protocol, API 2010-12-01) calls on the core ``AWSClient``: send a notification
/// e-mail, and verify a sender address. One instance per region (SES identities are per region).
/// All calls throw ``AWSError`` (or `CancellationError`); invalid input is refused before sending
/// (`.invalidRequest`, no request made).
public struct SESClient: Sendable {
    public let aws: AWSClient

    /// SES's limit on recipients (To + Cc + Bcc) of one message.
    public static let maxRecipients = 50

    public init(_ aws: AWSClient) { self.aws = aws }

    public var region: String { aws.region }

    public func withRegion(_ region: String) -> SESClient { SESClient(aws.withRegion(region)) }

    /// SendEmail. Returns SES's message id. The sender must be verified in this region (and, in the
    /// SES sandbox, the recipients too).
    public func sendEmail(_ email: Email) async throws -> String {
        let recipients = email.to.count + email.cc.count + email.bcc.count
        guard recipients > 0 else { throw aws.invalidRequest(.ses, "SendEmail", "no recipients") }
        guard recipients <= Self.maxRecipients else {
            throw aws.invalidRequest(
                .ses, "SendEmail", "\(recipients) recipients; SES takes at most \(Self.maxRecipients) per message")
        }
        guard email.textBody != nil || email.htmlBody != nil else {
            throw aws.invalidRequest(.ses, "SendEmail", "neither a text nor an HTML body")
        }
        return try await aws.query(.ses, action: "SendEmail", parameters: Self.parameters(email)) { root in
            try root.required("SendEmailResult", "MessageId")
        }
    }

    /// VerifyEmailIdentity: AWS mails the address a link; until it is followed, SES refuses to send
    /// from it. (moto verifies at once.)
    public func verifyEmailIdentity(_ address: String) async throws {
        _ = try await aws.query(
            .ses, action: "VerifyEmailIdentity", parameters: QueryParameters(["EmailAddress": address]))
    }

    static func parameters(_ email: Email) -> QueryParameters {
        var params = QueryParameters()
        params.set("Source", email.from)
        params.setMemberList("Destination.ToAddresses", email.to)
        params.setMemberList("Destination.CcAddresses", email.cc)
        params.setMemberList("Destination.BccAddresses", email.bcc)
        params.setMemberList("ReplyToAddresses", email.replyTo)
        params.set("Message.Subject.Data", email.subject)
        params.set("Message.Subject.Charset", "UTF-8")
        if let text = email.textBody {
            params.set("Message.Body.Text.Data", text)
            params.set("Message.Body.Text.Charset", "UTF-8")
        }
        if let html = email.htmlBody {
            params.set("Message.Body.Html.Data", html)
            params.set("Message.Body.Html.Charset", "UTF-8")
        }
        return params
    }
}

/// One e-mail for ``SESClient/sendEmail(_:)``. Text is sent as UTF-8.
public struct Email: Sendable, Equatable {
    /// The sender, e.g. `Fleet <fleet@example.com>`; must be a verified identity.
    public var from: String
    public var to: [String]
    public var cc: [String]
    public var bcc: [String]
    public var replyTo: [String]
    public var subject: String
    public var textBody: String?
    public var htmlBody: String?

    public init(
        from: String, to: [String], subject: String, textBody: String? = nil, htmlBody: String? = nil,
        cc: [String] = [],
        bcc: [String] = [], replyTo: [String] = []
    ) {
        self.from = from
        self.to = to
        self.cc = cc
        self.bcc = bcc
        self.replyTo = replyTo
        self.subject = subject
        self.textBody = textBody
        self.htmlBody = htmlBody
    }
}
