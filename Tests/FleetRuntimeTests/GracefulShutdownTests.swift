import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import ServiceLifecycle
import Synchronization
import Testing

/// Lifetimes by construction: a worker lists its clients (`ClientService`) before the consumers that
/// use them, and the group's reverse-order shutdown lets in-flight work finish before its clients close.
@Suite("Graceful shutdown order against a real broker", .enabled(if: amqpURL != nil, "set AMQP_URL"))
struct GracefulShutdownTests {
    enum Order { case clientsFirst, clientsLast }

    /// One message is in the handler when shutdown starts; the handler then publishes its result through
    /// the shared publisher. Returns what happened, in order.
    func run(_ order: Order) async throws -> [String] {
        let config = AMQPConfiguration(
            url: try AMQPURL(amqpURL!), connectionName: "shutdown-test",
            reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .milliseconds(500))
        let topology = FleetTopology(prefix: "test-\(UUID().uuidString.prefix(8).lowercased())")
        let events = Events()
        let note: @Sendable (String) -> Void = { event in events.value.withLock { $0.append(event) } }
        let publisher = AMQPPublisher(configuration: config, topology: topology.amqp, publishTimeout: .seconds(5))
        let consumer = AMQPConsumer(configuration: config, topology: topology.amqp, queue: topology.commandsQueue)
        let started = Mutex(false)
        let triggered = Mutex(false)
        let worker = MessageWorker<Envelope<Ping>>(
            consumer: consumer, deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "t"),
            expecting: .command, logger: Logger(label: "test"), senders: nil
        ) { envelope, _ in
            started.withLock { $0 = true }
            // Still working when shutdown begins, and (deterministically, not by timing) still working
            // when a client listed after it closes: wait for that close, for at most 3 s.
            while !triggered.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
            let patience = ContinuousClock.now + .seconds(3)
            while !events.value.withLock({ $0.contains("publisher closed") }), ContinuousClock.now < patience {
                try await Task.sleep(for: .milliseconds(10))
            }
            do {
                try await publisher.publish(
                    OutgoingMessage(
                        exchange: topology.exchange, routingKey: "event.t1", body: Array("{}".utf8),
                        properties: AMQPProperties(messageId: "result-\(envelope.body.n)")))
                note("result published")
            } catch {
                note("result lost: \(error)")
                throw error
            }
        }
        let client = ClientService("broker publisher") {
            await publisher.shutdown()
            note("publisher closed")
        }
        let consuming = ClosureService(run: { await worker.run() }, stop: { await consumer.shutdown() })
        let services: [any Service] = order == .clientsFirst ? [client, consuming] : [consuming, client]
        let group = ServiceGroup(
            configuration: try WorkerRuntime.configuration(services: services, logger: Logger(label: "group")))
        let running = Task { try await group.run() }

        let feeder = AMQPPublisher(configuration: config, topology: topology.amqp)
        try await feeder.publish(
            OutgoingMessage(
                exchange: topology.exchange, routingKey: "command.t1",
                body: try EnvelopeCodec.encode(
                    Envelope(type: .command, id: "in-flight", target: "t1", occurredAt: Date(), body: Ping(n: 1))),
                properties: AMQPProperties(messageId: "in-flight")))
        await feeder.shutdown()
        let deadline = ContinuousClock.now + .seconds(10)
        while !started.withLock({ $0 }), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(started.withLock { $0 }, "the message reached the handler")
        await group.triggerGracefulShutdown()
        triggered.withLock { $0 = true }
        try await running.value
        let admin = AMQPAdmin(configuration: config)
        await admin.deleteAll(of: topology.amqp)
        await admin.close()
        return events.value.withLock { $0 }
    }

    final class Events: Sendable { let value = Mutex<[String]>([]) }

    @Test(.timeLimit(.minutes(1)))
    func inFlightWorkFinishesBeforeItsClientsClose() async throws {
        #expect(try await run(.clientsFirst) == ["result published", "publisher closed"])
    }

    /// The control: listed the other way round (as the notifier and decision mains were), the client
    /// closes under the handler and its work is lost. This is what the ordering prevents.
    @Test(.timeLimit(.minutes(1)))
    func listedAfterItsUsersAClientClosesUnderThem() async throws {
        let events = try await run(.clientsLast)
        #expect(events.first == "publisher closed" && events.last?.hasPrefix("result lost") == true, "\(events)")
    }
}
