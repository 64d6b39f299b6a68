import AMQPTransport
import FleetRuntime
import Foundation
import RecoveryCore

/// The shared test world on memory drivers: the fleet's topology declared on a `MemoryBroker` exactly as
/// the workers declare it on RabbitMQ (queues, bindings, delivery limits, dead-letter queues), the
/// decision worker's stores, and a clock the test moves. No server: a worker test built on it runs in
/// milliseconds.
public final class MemoryFleet: Sendable {
    public let topology: FleetTopology
    public let broker: MemoryBroker
    public let clock: TestClock
    public let states = MemoryVersionedStore()
    public let schedule = MemorySchedule()
    public let markers = MemoryKeyValueStore()

    public init(prefix: String = "test", clock: TestClock = TestClock()) {
        topology = FleetTopology(prefix: prefix)
        broker = MemoryBroker(topology: topology.amqp)
        self.clock = clock
    }

    /// A publisher logged in as `user` (it stamps that user_id, as RabbitMQ makes it).
    public func publisher(_ user: String) -> MemoryPublisher { MemoryPublisher(broker: broker, user: user) }

    /// A queue of the topology.
    public func queue(_ name: String) -> MemoryDeliverySource {
        guard let queue = broker.queue(name) else { preconditionFailure("no queue \(name) in the fleet topology") }
        return queue
    }

    /// The envelopes of `type` waiting on `queue` (delivered to nobody yet, or not yet acknowledged).
    public func waiting<Body: Codable & Sendable>(_ queue: String, _ type: MessageType, as body: Body.Type)
        -> [Envelope<Body>]
    {
        self.queue(queue).unacked.compactMap { try? EnvelopeCodec.decode($0.body, as: Body.self, expecting: type) }
    }

    /// An envelope as a producer publishes it, for a test to put on a queue.
    public func envelope<Body: Codable & Sendable>(
        _ type: MessageType, id: String = UUID().uuidString.lowercased(),
        target: String?, instanceId: String? = nil, body: Body
    ) -> [UInt8] {
        // Encoding a fleet body cannot fail; a test that builds a bad one should stop at once.
        try! EnvelopeCodec.encode(
            Envelope(
                type: type, id: id, correlationId: nil, target: target, instanceId: instanceId,
                occurredAt: clock.now(), producer: "test", body: body))
    }
}
