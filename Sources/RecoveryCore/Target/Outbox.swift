import Foundation

extension MessageType {
    /// The routing key of a message of this type about `target`: `<type>.<target>`, or `<type>.fleet` for
    /// the whole fleet. The target lets an operator bind a debugging queue to one site with `*.shop-web`;
    /// the topic wildcards `.`, `#`, `*` in a name become `_`.
    public func routingKey(target: String?) -> String {
        "\(rawValue).\(target.map { String($0.map { $0 == "." || $0 == "#" || $0 == "*" ? "_" : $0 }) } ?? "fleet")"
    }

    /// The `<target>` part of a key `routingKey(target:)` made (its wildcards already `_`); the whole key
    /// when it starts with no type.
    public static func target(ofRoutingKey key: String) -> String {
        for prefix in routingPrefixes where key.hasPrefix(prefix) { return String(key.dropFirst(prefix.count)) }
        return key
    }

    private static let routingPrefixes = allCases.map { $0.rawValue + "." }
}

/// A message a target's machine asks to be published, typed so tests assert on what it says.
public enum FleetMessage: Sendable, Equatable {
    /// To the actuator (idempotent by its key).
    case actionRequest(ActionRequest)
    /// To the notifier.
    case notice(Notice)
    /// To the recorder's history.
    case stateChange(TargetStateChange, id: String, target: String)

    /// The envelope's id: deterministic for requests and notices, so a republished one is recognised.
    public var id: String {
        switch self {
        case .actionRequest(let request): request.idempotencyKey
        case .notice(let notice): notice.id
        case .stateChange(_, let id, _): id
        }
    }
}

/// A message ready to publish, stored with the state that produced it (the outbox), so a worker that dies
/// between storing the state and publishing leaves it for the next reader instead of losing it.
public struct OutboxItem: Codable, Sendable, Equatable {
    public var type: String
    public var routingKey: String
    public var messageId: String
    public var correlationId: String?
    /// The whole envelope, JSON.
    public var body: String

    public init(type: String, routingKey: String, messageId: String, correlationId: String?, body: String) {
        self.type = type
        self.routingKey = routingKey
        self.messageId = messageId
        self.correlationId = correlationId
        self.body = body
    }

    /// The envelope of any body, as sent by `producer` at `now`.
    public static func message<Body: Codable & Sendable>(
        type: MessageType, id: String, target: String?, instanceId: String?, correlationId: String?, body: Body,
        producer: String, now: Date
    ) throws -> OutboxItem {
        let envelope = Envelope(
            type: type, id: id, correlationId: correlationId, target: target, instanceId: instanceId,
            occurredAt: now, producer: producer, body: body)
        return OutboxItem(
            type: type.rawValue, routingKey: type.routingKey(target: target), messageId: id,
            correlationId: correlationId, body: String(decoding: try EnvelopeCodec.encode(envelope), as: UTF8.self))
    }

    /// The envelope of a machine's message.
    public init(_ message: FleetMessage, producer: String, now: Date) throws {
        switch message {
        case .actionRequest(let r):
            self = try .message(
                type: .actionRequest, id: message.id, target: r.target, instanceId: r.instanceId,
                correlationId: r.incidentId, body: r, producer: producer, now: now)
        case .notice(let n):
            self = try .message(
                type: .notification, id: message.id, target: n.target, instanceId: n.instanceId,
                correlationId: n.incidentId, body: n, producer: producer, now: now)
        case .stateChange(let change, let id, let target):
            self = try .message(
                type: .event, id: id, target: target, instanceId: change.instanceId,
                correlationId: change.incidentId, body: change, producer: producer, now: now)
        }
    }
}
