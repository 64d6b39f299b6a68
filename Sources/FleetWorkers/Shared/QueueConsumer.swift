import AMQPTransport
import FleetRuntime
import Foundation
import ServiceLifecycle

/// A queue a worker consumes, and how to stop consuming it on graceful shutdown: nothing new arrives,
/// the delivery in hand is finished and settled, and the stream of deliveries ends. An `AMQPConsumer` in
/// production (`amqp(_:)`), a `MemoryDeliverySource` in the tests.
public struct QueueConsumer: Sendable {
    public let source: any DeliverySource
    public let stop: @Sendable () async -> Void

    public init(_ source: any DeliverySource, stop: @escaping @Sendable () async -> Void) {
        self.source = source
        self.stop = stop
    }

    /// The consumer's `shutdown()`: it cancels the subscription, waits for the deliveries in flight to be
    /// settled, and the broker requeues the prefetched rest.
    public static func amqp(_ consumer: AMQPConsumer) -> QueueConsumer {
        QueueConsumer(consumer, stop: { await consumer.shutdown() })
    }

    /// The service that consumes with `loop` (a `MessageWorker`'s `run`): graceful shutdown stops the
    /// consumption and waits for `loop` to return, after the delivery in hand.
    func service(_ loop: @escaping @Sendable () async -> Void) -> any Service {
        ClosureService(run: { await loop() }, stop: stop)
    }
}
