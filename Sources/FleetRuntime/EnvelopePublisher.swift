import AMQPTransport
import Foundation
import RecoveryCore

/// Publishes envelopes (confirmed, persistent, `user_id` stamped by the publisher) to the fleet exchange
/// with the routing key `<type>.<target>`.
public struct EnvelopePublisher: Sendable {
    let publisher: AMQPPublisher
    let topology: FleetTopology
    let producer: String
    let appId: String

    /// `producer` goes into the envelope (`actuator@host-1`); `appId` is the AMQP `app_id` (`actuator`).
    public init(publisher: AMQPPublisher, topology: FleetTopology, producer: String, appId: String) {
        self.publisher = publisher
        self.topology = topology
        self.producer = producer
        self.appId = appId
    }

    public func publish<Body: Codable & Sendable>(
        _ type: MessageType, id: String, target: String?, instanceId: String?, correlationId: String?, body: Body, now: Date
    ) async throws {
        let envelope = Envelope(type: type, id: id, correlationId: correlationId, target: target, instanceId: instanceId,
                                occurredAt: now, producer: producer, body: body)
        try await publisher.publish(OutgoingMessage(
            exchange: topology.exchange, routingKey: FleetTopology.routingKey(type, target: target),
            body: try EnvelopeCodec.encode(envelope),
            properties: AMQPProperties(messageId: id, correlationId: correlationId, timestamp: UInt64(now.timeIntervalSince1970),
                                       type: type.rawValue, appId: appId)))
    }

    /// The announcer for a `SenderGate` of a worker that may send notices (decision, actuator): a
    /// fleet-wide `unauthorized_sender` notice. A notice that cannot be published is lost; the refusal is
    /// still logged, counted and dead-lettered.
    public func announcingRefusals(clock: @escaping @Sendable () -> Date = Date.init) -> SenderGate.Announce {
        { refusal in
            let notice = refusal.notice(at: clock(), announcedBy: producer)
            try? await publish(.notification, id: notice.id, target: nil, instanceId: nil, correlationId: nil, body: notice, now: clock())
        }
    }
}
