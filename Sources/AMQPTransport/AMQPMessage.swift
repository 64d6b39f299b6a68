import Foundation

/// A header or argument value in an AMQP field table.
public indirect enum AMQPFieldValue: Sendable, Equatable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case timestamp(UInt64)
    case bytes([UInt8])
    case array([AMQPFieldValue])
    case table([String: AMQPFieldValue])
    case void

    public var stringValue: String? {
        switch self {
        case let .string(s): return s
        case let .bytes(b): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }
    public var intValue: Int64? {
        switch self {
        case let .int(i): return i
        case let .timestamp(t): return Int64(t)
        default: return nil
        }
    }
}

extension AMQPFieldValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// The basic-class properties the fleet uses.
public struct AMQPProperties: Sendable, Equatable {
    public var contentType: String?
    public var messageId: String?
    public var correlationId: String?
    /// Seconds since the epoch (AMQP timestamps have one-second resolution).
    public var timestamp: UInt64?
    /// The publishing user. RabbitMQ rejects a publish whose user_id is not the connection's user, so a
    /// consumer can trust it as the sender's identity.
    public var userId: String?
    public var type: String?
    public var appId: String?
    public var headers: [String: AMQPFieldValue]
    /// 2 = persistent (the default for everything the fleet publishes), 1 = transient.
    public var deliveryMode: UInt8?

    public init(
        contentType: String? = "application/json", messageId: String? = nil, correlationId: String? = nil,
        timestamp: UInt64? = nil, userId: String? = nil, type: String? = nil, appId: String? = nil,
        headers: [String: AMQPFieldValue] = [:], deliveryMode: UInt8? = 2
    ) {
        self.contentType = contentType
        self.messageId = messageId
        self.correlationId = correlationId
        self.timestamp = timestamp
        self.userId = userId
        self.type = type
        self.appId = appId
        self.headers = headers
        self.deliveryMode = deliveryMode
    }
}

/// A message to publish.
public struct OutgoingMessage: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var properties: AMQPProperties

    public init(exchange: String, routingKey: String, body: [UInt8], properties: AMQPProperties = AMQPProperties()) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
    }
}

/// A message received from a queue. Acknowledge it through the consumer that delivered it, after its
/// effect is recorded.
public struct AMQPDelivery: Sendable {
    public var body: [UInt8]
    public var properties: AMQPProperties
    public var exchange: String
    public var routingKey: String
    public var redelivered: Bool
    /// How many times a quorum queue has delivered this message before (`x-delivery-count`).
    public var deliveryCount: Int64 { properties.headers["x-delivery-count"]?.intValue ?? 0 }
    let deliveryTag: UInt64
    /// The connection the delivery came on: a tag is only valid on the channel that issued it.
    let generation: UInt64

    public var bodyString: String { String(decoding: body, as: UTF8.self) }

    /// A delivery made by something other than a broker connection (an in-memory delivery source):
    /// `deliveryTag` identifies it to that source, generation 0 is never a real connection's.
    public init(
        body: [UInt8], properties: AMQPProperties, exchange: String, routingKey: String, redelivered: Bool,
        deliveryTag: UInt64
    ) {
        self.body = body
        self.properties = properties
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.deliveryTag = deliveryTag
        generation = 0
    }

    init(
        body: [UInt8], properties: AMQPProperties, exchange: String, routingKey: String, redelivered: Bool,
        deliveryTag: UInt64, generation: UInt64
    ) {
        self.body = body
        self.properties = properties
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.deliveryTag = deliveryTag
        self.generation = generation
    }

    /// The tag that identifies this delivery to the source that delivered it.
    public var tag: UInt64 { deliveryTag }
}
