import AMQPTransport
import Foundation
import Testing

/// Integration tests run when AMQP_URL points at a real broker (scripts/services.sh starts one).
let amqpURL = ProcessInfo.processInfo.environment["AMQP_URL"]
let brokerAvailable = amqpURL != nil

func configuration(_ url: String? = amqpURL, name: String = "test") throws -> AMQPConfiguration {
    AMQPConfiguration(
        url: try AMQPURL(try #require(url)), heartbeat: 10, connectionName: name,
        reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .milliseconds(500))
}

/// A unique queue, bound to a unique exchange, with its dead-letter queue; deleted by `cleanUp`.
struct ScratchTopology {
    let id = UUID().uuidString.prefix(8).lowercased()
    var exchange: String { "test.\(id).x" }
    var queue: String { "test.\(id).work" }
    var deadLetterExchange: String { "test.\(id).dlx" }
    var deadLetterQueue: String { "test.\(id).work.dead" }
    var deliveryLimit: Int64 = 3
    /// Without it the dead-letter exchange routes nowhere until a test declares `deadLetterBinding`.
    var bindDeadLetterQueue = true
    var deadLetterBinding: AMQPTopology.Binding {
        .init(exchange: deadLetterExchange, queue: deadLetterQueue, routingKey: queue)
    }

    var topology: AMQPTopology {
        AMQPTopology(
            exchanges: [.init(name: exchange), .init(name: deadLetterExchange)],
            queues: [
                .quorum(queue, deliveryLimit: deliveryLimit, deadLetterExchange: deadLetterExchange),
                .deadLetter(deadLetterQueue),
            ],
            bindings: [.init(exchange: exchange, queue: queue, routingKey: "work.#")]
                + (bindDeadLetterQueue ? [deadLetterBinding] : []))
    }

    func message(_ text: String, id: String = UUID().uuidString) -> OutgoingMessage {
        OutgoingMessage(
            exchange: exchange, routingKey: "work.item", body: Array(text.utf8),
            properties: AMQPProperties(messageId: id))
    }

    func cleanUp(_ config: AMQPConfiguration) async {
        let admin = AMQPAdmin(configuration: config)
        for q in [queue, deadLetterQueue] { try? await admin.deleteQueue(q) }
        for x in [exchange, deadLetterExchange] { try? await admin.deleteExchange(x) }
        await admin.close()
    }
}

/// Reads a consumer's deliveries in the background so tests can wait for them with a timeout.
actor DeliveryCollector {
    private(set) var received: [AMQPDelivery] = []

    /// The background reader ends when the consumer shuts down and its stream finishes.
    /// `requeue` hands every delivery back (a consumer that keeps failing).
    init(_ consumer: AMQPConsumer, autoAck: Bool = false, requeue: Bool = false) {
        let stream = consumer.deliveries
        Task { [weak self] in
            for await delivery in stream {
                if autoAck { await consumer.ack(delivery) }
                if requeue { await consumer.nack(delivery, requeue: true) }
                await self?.append(delivery)
            }
        }
    }

    private func append(_ d: AMQPDelivery) { received.append(d) }

    /// Waits (polling real I/O, bounded by `timeout`) until at least `count` deliveries have arrived.
    func wait(for count: Int, timeout: Duration = .seconds(20)) async -> [AMQPDelivery] {
        let deadline = ContinuousClock.now + timeout
        while received.count < count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return received
    }
}

/// The queue's ready-message count, polled until it equals `expected` or 10 s pass (the broker settles
/// requeues asynchronously after a connection closes).
func readyCount(_ queue: String, _ config: AMQPConfiguration, becomes expected: Int) async throws -> Int {
    let admin = AMQPAdmin(configuration: config)
    let deadline = ContinuousClock.now + .seconds(10)
    var count = try await admin.messageCount(queue: queue)
    while count != expected, ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(50))
        count = try await admin.messageCount(queue: queue)
    }
    await admin.close()
    return count
}
