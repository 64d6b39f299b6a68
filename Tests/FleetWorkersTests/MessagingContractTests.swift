import AMQPTransport
import FleetRuntime
import FleetTestSupport
import Foundation
import Testing

/// The publisher and delivery-source ports: `MemoryPublisher`/`MemoryDeliverySource` must behave as
/// `AMQPPublisher`/`AMQPConsumer` do on a real RabbitMQ wherever a worker relies on it. The AMQP drivers
/// run when AMQP_URL is set (every CI run); the memory drivers always.
@Suite("Port contracts: memory and AMQP messaging")
struct MessagingContractTests {
    static var drivers: [String] { environment["AMQP_URL"] == nil ? ["memory"] : ["memory", "amqp"] }

    /// One exchange and one quorum queue bound to `orders.#` that gives a message up after one redelivery
    /// to its dead-letter queue, declared by the driver under test from the same `AMQPTopology`.
    struct Rig {
        var publisher: any MessagePublishing
        var source: any DeliverySource
        var dead: any DeliverySource
        var exchange: String
        var user: String
        var close: @Sendable () async -> Void
    }

    static func rig(_ driver: String) throws -> Rig {
        let name = "contract-\(UUID().uuidString.prefix(8).lowercased())"
        let topology = AMQPTopology(
            exchanges: [.init(name: name), .init(name: "\(name).dlx")],
            queues: [.quorum(name, deliveryLimit: 1, deadLetterExchange: "\(name).dlx"), .deadLetter("\(name).dead")],
            bindings: [
                .init(exchange: name, queue: name, routingKey: "orders.#"),
                .init(exchange: "\(name).dlx", queue: "\(name).dead", routingKey: name),
            ])
        if driver == "memory" {
            let broker = MemoryBroker(topology: topology)
            let queue = broker.queue(name)!
            let dead = broker.queue("\(name).dead")!
            return Rig(
                publisher: MemoryPublisher(broker: broker, user: "fleet-test"), source: queue, dead: dead,
                exchange: name,
                user: "fleet-test",
                close: {
                    queue.shutdown()
                    dead.shutdown()
                })
        }
        let url = try AMQPURL(environment["AMQP_URL"]!)
        let configuration = AMQPConfiguration(url: url, connectionName: "contract-test")
        let publisher = AMQPPublisher(configuration: configuration, topology: topology)
        let consumer = AMQPConsumer(configuration: configuration, topology: topology, queue: name, prefetch: 10)
        let dead = AMQPConsumer(configuration: configuration, topology: topology, queue: "\(name).dead", prefetch: 10)
        return Rig(
            publisher: publisher, source: consumer, dead: dead, exchange: name, user: url.user,
            close: {
                await consumer.shutdown(drainTimeout: Duration.zero)
                await dead.shutdown(drainTimeout: Duration.zero)
                await publisher.shutdown(drainTimeout: Duration.zero)
                await AMQPAdmin(configuration: configuration).deleteAll(of: topology)
            })
    }

    static func next(_ source: any DeliverySource) async throws -> AMQPDelivery {
        let stream = source.deliveries
        let delivery = try await withThrowingTaskGroup(of: AMQPDelivery?.self) { group in
            group.addTask {
                for await d in stream { return d }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        guard let delivery else { throw MemoryBrokerError("no delivery within 30 s") }
        return delivery
    }

    @Test(
        "a confirmed message arrives with its body and properties; the sender's own user_id passes",
        arguments: drivers)
    func publishedMessageArrives(_ driver: String) async throws {
        let rig = try Self.rig(driver)
        try await rig.publisher.publish(
            OutgoingMessage(
                exchange: rig.exchange, routingKey: "orders.eu.1", body: Array("hello".utf8),
                properties: AMQPProperties(messageId: "m-1", userId: rig.user, type: "observation")))
        let delivery = try await Self.next(rig.source)
        #expect(delivery.bodyString == "hello")
        #expect(delivery.properties.messageId == "m-1")
        #expect(delivery.properties.userId == rig.user)
        #expect(delivery.routingKey == "orders.eu.1")
        #expect(!delivery.redelivered)
        #expect(await rig.source.ack(delivery))
        await rig.close()
    }

    @Test("publishing to an exchange that does not exist throws", arguments: drivers)
    func unknownExchangeThrows(_ driver: String) async throws {
        let rig = try Self.rig(driver)
        await #expect(throws: (any Error).self) {
            try await rig.publisher.publish(
                OutgoingMessage(
                    exchange: rig.exchange + "-missing", routingKey: "orders.x",
                    body: Array("x".utf8)))
        }
        await rig.close()
    }

    @Test("every message carries the publisher's own user_id, whatever the caller set", arguments: drivers)
    func publisherStampsItsOwnUser(_ driver: String) async throws {
        let rig = try Self.rig(driver)
        try await rig.publisher.publish(
            OutgoingMessage(
                exchange: rig.exchange, routingKey: "orders.x", body: Array("forged".utf8),
                properties: AMQPProperties(messageId: "forged", userId: "fleet-operator-\(UUID().uuidString.prefix(4))")
            ))
        try await rig.publisher.publish(
            OutgoingMessage(exchange: rig.exchange, routingKey: "orders.x", body: Array("plain".utf8)))
        for body in ["forged", "plain"] {
            let delivery = try await Self.next(rig.source)
            #expect(delivery.bodyString == body)
            #expect(delivery.properties.userId == rig.user)
            await rig.source.ack(delivery)
        }
        await rig.close()
    }

    /// Issue 14, gap 8: an idempotency key from a very long target name once became a message_id over
    /// 255 bytes; the publisher took the encoding error for a lost connection and reconnected in a loop for
    /// two minutes, blocking every publish.
    @Test("a message_id over 255 bytes is refused at once, and the publisher goes on working", arguments: drivers)
    func overlongShortStringRefused(_ driver: String) async throws {
        let rig = try Self.rig(driver)
        let started = ContinuousClock.now
        do {
            try await rig.publisher.publish(
                OutgoingMessage(
                    exchange: rig.exchange, routingKey: "orders.x", body: Array("long".utf8),
                    properties: AMQPProperties(messageId: String(repeating: "k", count: 300))))
            Issue.record("an overlong message_id was accepted")
        } catch {
            #expect("\(error)".contains("message_id is 300 bytes"))
        }
        #expect(ContinuousClock.now - started < .seconds(2), "refused before sending, not after reconnecting")
        try await rig.publisher.publish(
            OutgoingMessage(exchange: rig.exchange, routingKey: "orders.x", body: Array("next".utf8)))
        let delivery = try await Self.next(rig.source)
        #expect(delivery.bodyString == "next")
        await rig.source.ack(delivery)
        await rig.close()
    }

    @Test("a requeued message comes again, marked redelivered, its delivery count one higher", arguments: drivers)
    func requeueRedelivers(_ driver: String) async throws {
        let rig = try Self.rig(driver)
        try await rig.publisher.publish(
            OutgoingMessage(
                exchange: rig.exchange, routingKey: "orders.x", body: Array("again".utf8),
                properties: AMQPProperties(messageId: "again")))
        let first = try await Self.next(rig.source)
        #expect(await rig.source.nack(first, requeue: true))
        let second = try await Self.next(rig.source)
        #expect(second.bodyString == "again" && second.properties.messageId == "again")
        #expect(second.redelivered)
        #expect(second.deliveryCount == first.deliveryCount + 1)
        #expect(await rig.source.ack(second))
        await rig.close()
    }

    @Test(
        "a message requeued more often than the delivery limit is dead-lettered with reason delivery_limit; a rejected one with reason rejected",
        arguments: drivers)
    func deliveryLimitDeadLetters(_ driver: String) async throws {
        let rig = try Self.rig(driver)
        try await rig.publisher.publish(
            OutgoingMessage(
                exchange: rig.exchange, routingKey: "orders.x", body: Array("poison".utf8),
                properties: AMQPProperties(messageId: "poison")))
        try await rig.publisher.publish(
            OutgoingMessage(
                exchange: rig.exchange, routingKey: "orders.x", body: Array("refused".utf8),
                properties: AMQPProperties(messageId: "refused")))
        var deliveries = 0
        var rejected = false
        while deliveries < 10 {
            let d = try await Self.next(rig.source)
            if d.bodyString == "refused" {
                #expect(await rig.source.nack(d, requeue: false))
                rejected = true
            } else {
                deliveries += 1
                #expect(await rig.source.nack(d, requeue: true))
            }
            if rejected && deliveries == 2 { break }
        }
        #expect(deliveries == 2, "a limit of 1: the first delivery and one redelivery")
        var reasons: [String: String] = [:]
        for _ in 0..<2 {
            let dead = try await Self.next(rig.dead)
            let death = dead.properties.headers["x-death"]
            guard case .array(let entries)? = death, case .table(let first)? = entries.first else {
                Issue.record("no x-death on \(dead.bodyString): \(String(describing: death))")
                continue
            }
            reasons[dead.bodyString] = first["reason"]?.stringValue
            await rig.dead.ack(dead)
        }
        #expect(reasons == ["poison": "delivery_limit", "refused": "rejected"])
        await rig.close()
    }
}
