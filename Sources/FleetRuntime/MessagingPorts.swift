import AMQPTransport
import Foundation

/// Publishes one message and returns once the broker has confirmed it (publisher confirms). Drivers:
/// `AMQPPublisher`, and `MemoryPublisher` in FleetTestSupport; both pass one contract test
/// (`Tests/FleetWorkersTests/MessagingContractTests.swift`).
public protocol MessagePublishing: Sendable {
    /// Throws when the message is not confirmed: refused (unknown exchange, a user_id that is not the
    /// connection's), nacked, or the broker unreachable. Nothing is stored then; the caller retries.
    func publish(_ message: OutgoingMessage) async throws
}

/// One queue's deliveries, settled by the source that delivered them. Drivers: `AMQPConsumer`, and
/// `MemoryDeliverySource` in FleetTestSupport; both pass one contract test.
public protocol DeliverySource: Sendable {
    /// The queue consumed ("" before the broker has named a private one).
    var queue: String { get }
    /// Ends when the source is shut down.
    var deliveries: AsyncStream<AMQPDelivery> { get }
    /// Done with the message. False when the delivery's connection is gone (it will come again).
    @discardableResult func ack(_ delivery: AMQPDelivery) async -> Bool
    /// Not done: with `requeue` it comes again (redelivered, its delivery count one higher); without, the
    /// queue dead-letters it.
    @discardableResult func nack(_ delivery: AMQPDelivery, requeue: Bool) async -> Bool
    /// Graceful stop: nothing new arrives, `deliveries` ends once those in flight are settled (or a drain
    /// timeout passed; the broker then requeues them).
    func stop() async
}

extension AMQPPublisher: MessagePublishing {}
extension AMQPConsumer: DeliverySource {
    public func stop() async { await shutdown() }
}
