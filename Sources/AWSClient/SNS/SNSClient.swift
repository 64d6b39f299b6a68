import Foundation

/// Typed SNS calls (Query protocol, API 2010-03-31) on the core ``AWSClient``: publish a notification,
/// and create or delete a topic. One instance per region. All calls throw ``AWSError`` (or
/// `CancellationError`); invalid input is refused before sending (`.invalidRequest`).
public struct SNSClient: Sendable {
    public let aws: AWSClient

    /// SNS's limit on a message with its attributes, in bytes.
    public static let maxMessageBytes = 262_144

    public init(_ aws: AWSClient) { self.aws = aws }

    public var region: String { aws.region }

    public func withRegion(_ region: String) -> SNSClient { SNSClient(aws.withRegion(region)) }

    /// Publish to a topic. Returns SNS's message id.
    public func publish(_ message: SNSMessage) async throws -> String {
        if let subject = message.subject {
            guard !subject.isEmpty, subject.count <= 100, !subject.contains(where: \.isNewline) else {
                throw aws.invalidRequest(.sns, "Publish", "a subject must be 1 to 100 characters on one line")
            }
        }
        guard !message.message.isEmpty else { throw aws.invalidRequest(.sns, "Publish", "an empty message") }
        let size =
            message.message.utf8.count + message.attributes.reduce(0) { $0 + $1.key.utf8.count + $1.value.byteCount }
        guard size <= Self.maxMessageBytes else {
            throw aws.invalidRequest(
                .sns, "Publish", "\(size) bytes; SNS takes at most \(Self.maxMessageBytes) with the attributes")
        }
        return try await aws.query(.sns, action: "Publish", parameters: Self.parameters(message)) { root in
            try root.required("PublishResult", "MessageId")
        }
    }

    /// CreateTopic (idempotent: an existing topic of that name is returned). Returns its ARN.
    public func createTopic(name: String, attributes: [String: String] = [:], tags: [String: String] = [:]) async throws
        -> String
    {
        var params = QueryParameters()
        params.set("Name", name)
        params.setList("Attributes.entry", attributes.sorted { $0.key < $1.key }) { prefix, entry, p in
            p.set("\(prefix).key", entry.key)
            p.set("\(prefix).value", entry.value)
        }
        params.setList("Tags", tags.sorted { $0.key < $1.key }, members: true) { prefix, tag, p in
            p.set("\(prefix).Key", tag.key)
            p.set("\(prefix).Value", tag.value)
        }
        return try await aws.query(.sns, action: "CreateTopic", parameters: params) { root in
            try root.required("CreateTopicResult", "TopicArn")
        }
    }

    public func deleteTopic(arn: String) async throws {
        _ = try await aws.query(.sns, action: "DeleteTopic", parameters: QueryParameters(["TopicArn": arn]))
    }

    static func parameters(_ message: SNSMessage) -> QueryParameters {
        var params = QueryParameters()
        params.set("TopicArn", message.topicArn)
        params.set("Message", message.message)
        params.set("Subject", message.subject)
        params.setList("MessageAttributes.entry", message.attributes.sorted { $0.key < $1.key }) { prefix, entry, p in
            p.set("\(prefix).Name", entry.key)
            p.set("\(prefix).Value.DataType", entry.value.dataType)
            switch entry.value {
            case .string(let value), .number(let value): p.set("\(prefix).Value.StringValue", value)
            case .stringArray(let values):
                let json = try? JSONSerialization.data(withJSONObject: values, options: [.withoutEscapingSlashes])
                p.set("\(prefix).Value.StringValue", json.map { String(decoding: $0, as: UTF8.self) })
            case .binary(let data): p.set("\(prefix).Value.BinaryValue", data.base64EncodedString())
            }
        }
        return params
    }
}

/// One message for ``SNSClient/publish(_:)``.
public struct SNSMessage: Sendable, Equatable {
    public var topicArn: String
    public var message: String
    /// The e-mail subject for e-mail subscribers (1–100 characters, one line).
    public var subject: String?
    /// Message attributes, for subscription filter policies.
    public var attributes: [String: SNSMessageAttribute]

    public init(
        topicArn: String, message: String, subject: String? = nil, attributes: [String: SNSMessageAttribute] = [:]
    ) {
        self.topicArn = topicArn
        self.message = message
        self.subject = subject
        self.attributes = attributes
    }
}

/// A message attribute value.
public enum SNSMessageAttribute: Sendable, Equatable {
    case string(String)
    /// A number, as its decimal text (sent as given, never through a `Double`).
    case number(String)
    case stringArray([String])
    case binary(Data)

    var dataType: String {
        switch self {
        case .string: "String"
        case .number: "Number"
        case .stringArray: "String.Array"
        case .binary: "Binary"
        }
    }

    var byteCount: Int {
        switch self {
        case .string(let v), .number(let v): dataType.utf8.count + v.utf8.count
        case .stringArray(let values): dataType.utf8.count + values.reduce(2) { $0 + $1.utf8.count + 3 }
        case .binary(let data): dataType.utf8.count + data.count
        }
    }
}
