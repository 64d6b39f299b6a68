import AMQPTransport
import Foundation
import RecoveryCore

/// Publishes envelopes (confirmed, persistent, `user_id` stamped by the publisher) to the fleet exchange
/// with the routing key `<type>.<target>`.
public struct EnvelopePublisher: Sendable {
    let publisher: any MessagePublishing
    let topology: FleetTopology
    let producer: String
    let appId: String

    /// `producer` goes into the envelope (`actuator@host-1`); `appId` is the AMQP `app_id` (`actuator`).
    public init(publisher: any MessagePublishing, topology: FleetTopology, producer: String, appId: String) {
        self.publisher = publisher
        self.topology = topology
        self.producer = producer
        self.appId = appId
    }

    /// Encodes and publishes an envelope of `type` about `target` (the routing key names it).
    public func publish<Body: Codable & Sendable>(
        _ type: MessageType, id: String, target: String?, instanceId: String?, correlationId: String?, body: Body,
        now: Date
    ) async throws {
        try await publish(
            encoded: encode(
                type, id: id, target: target, instanceId: instanceId, correlationId: correlationId,
                body: body, now: now), now: now)
    }

    /// The envelope's bytes and routing, without publishing: the decision worker stores them in its
    /// outbox first and publishes them with `publish(encoded:now:)`.
    public func encode<Body: Codable & Sendable>(
        _ type: MessageType, id: String, target: String?, instanceId: String?, correlationId: String?, body: Body,
        now: Date
    ) throws -> Encoded {
        let envelope = Envelope(
            type: type, id: id, correlationId: correlationId, target: target, instanceId: instanceId,
            occurredAt: now, producer: producer, body: body)
        return Encoded(
            type: type, routingKey: FleetTopology.routingKey(type, target: target), id: id,
            correlationId: correlationId,
            body: try EnvelopeCodec.encode(envelope))
    }

    /// Publishes an envelope encoded earlier; `now` is the AMQP timestamp.
    public func publish(encoded message: Encoded, now: Date) async throws {
        try await publisher.publish(
            OutgoingMessage(
                exchange: topology.exchange, routingKey: message.routingKey, body: message.body,
                properties: AMQPProperties(
                    messageId: message.id, correlationId: message.correlationId,
                    timestamp: UInt64(now.timeIntervalSince1970), type: message.type.rawValue, appId: appId)))
    }

    /// An encoded envelope with its routing.
    public struct Encoded: Sendable {
        public var type: MessageType
        public var routingKey: String
        public var id: String
        public var correlationId: String?
        public var body: [UInt8]

        public init(type: MessageType, routingKey: String, id: String, correlationId: String?, body: [UInt8]) {
            self.type = type
            self.routingKey = routingKey
            self.id = id
            self.correlationId = correlationId
            self.body = body
        }
    }

    /// The announcer for a `SenderGate` of a worker that may send notices (decision, actuator): a
    /// fleet-wide `unauthorized_sender` notice. A notice that cannot be published is lost; the refusal is
    /// still logged, counted and dead-lettered.
    public func announcingRefusals(clock: @escaping @Sendable () -> Date = Date.init) -> SenderGate.Announce {
        { refusal in
            let notice = refusal.notice(at: clock(), announcedBy: producer)
            try? await publish(
                .notification, id: notice.id, target: nil, instanceId: nil, correlationId: nil, body: notice,
                now: clock())
        }
    }
}
