@testable import AMQPTransport
import Foundation
import HTTPTransport
import Testing

@Suite("AMQP URL")
struct AMQPURLTests {
    @Test func parsesFullURL() throws {
        let url = try AMQPURL("amqps://fleet:s3cr%40t@mq.example.com:5999/prod%2fa?heartbeat=15")
        #expect(url.tls)
        #expect(url.host == "mq.example.com")
        #expect(url.port == 5999)
        #expect(url.user == "fleet")
        #expect(url.password == "s3cr@t")
        #expect(url.vhost == "prod/a")
        #expect(url.heartbeat == 15)
    }

    @Test func defaults() throws {
        let plain = try AMQPURL("amqp://localhost")
        #expect(plain.port == 5672 && plain.vhost == "/" && plain.user == "guest" && !plain.tls)
        #expect(try AMQPURL("amqps://h/").port == 5671)
        #expect(try AMQPURL("amqp://h/%2f").vhost == "/")
    }

    @Test(arguments: ["http://h", "amqp://", "not a url at all", "amqp://h:99999", "amqp://h?heartbeat=x"])
    func rejectsBadURLs(_ text: String) {
        #expect(throws: AMQPError.self) { try AMQPURL(text) }
    }

    @Test func descriptionAndErrorsHideThePassword() throws {
        let url = try AMQPURL("amqp://fleet:hunter2@h:5672/v")
        #expect(!url.description.contains("hunter2"))
        do {
            _ = try AMQPURL("ftp://fleet:hunter2@h/")
            Issue.record("expected an error")
        } catch {
            #expect(!error.description.contains("hunter2"))
            #expect(error.description.contains("scheme"))
        }
    }
}

@Suite("AMQP topology")
struct AMQPTopologyTests {
    @Test func quorumQueueCarriesDeliveryLimitAndDeadLettering() {
        let q = AMQPTopology.Queue.quorum("recovery.actions", deliveryLimit: 5, deadLetterExchange: "recovery.dlx")
        #expect(q.arguments["x-queue-type"] == "quorum")
        #expect(q.arguments["x-delivery-limit"] == .int(5))
        #expect(q.arguments["x-dead-letter-exchange"] == "recovery.dlx")
        #expect(q.arguments["x-dead-letter-routing-key"] == "recovery.actions")
        #expect(q.arguments["x-dead-letter-strategy"] == "at-least-once")
        #expect(q.arguments["x-overflow"] == "reject-publish")
    }

    @Test func exportsDefinitionsFormat() throws {
        let topology = AMQPTopology(
            exchanges: [.init(name: "x")], queues: [.quorum("q", deliveryLimit: 2, deadLetterExchange: "d")],
            bindings: [.init(exchange: "x", queue: "q", routingKey: "k")],
            policies: [.init(name: "p", pattern: "^q$", definition: ["max-length": 10])])
        let json = try #require(try JSONSerialization.jsonObject(with: topology.definitionsJSON()) as? [String: Any])
        let queues = try #require(json["queues"] as? [[String: Any]])
        #expect(queues.first?["name"] as? String == "q")
        #expect((queues.first?["arguments"] as? [String: Any])?["x-delivery-limit"] as? Int == 2)
        let bindings = try #require(json["bindings"] as? [[String: Any]])
        #expect(bindings.first?["destination_type"] as? String == "queue")
        let policies = try #require(json["policies"] as? [[String: Any]])
        #expect(policies.first?["apply-to"] as? String == "queues")
    }
}

@Suite("AMQP against a real broker", .enabled(if: brokerAvailable, "set AMQP_URL"))
struct AMQPIntegrationTests {
    @Test func publishWithConfirmThenConsumeWithPropertiesAndAck() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        let consumer = AMQPConsumer(
            configuration: config, topology: scratch.topology, queue: scratch.queue, prefetch: 10)
        let collector = DeliveryCollector(consumer)
        defer { Task { await scratch.cleanUp(config) } }

        var message = scratch.message("{\"hello\":1}", id: "msg-1")
        message.properties.correlationId = "corr-1"
        message.properties.timestamp = 1_700_000_000
        message.properties.userId = "guest"
        message.properties.type = "test.hello"
        message.properties.headers = [
            "x-text": "value", "x-number": 42, "x-flag": true,
            "x-nested": .table(["a": .array([1, "b"])]),
        ]
        try await publisher.publish(message)

        let got = await collector.wait(for: 1)
        let delivery = try #require(got.first)
        #expect(delivery.bodyString == "{\"hello\":1}")
        #expect(delivery.properties.messageId == "msg-1")
        #expect(delivery.properties.correlationId == "corr-1")
        #expect(delivery.properties.timestamp == 1_700_000_000)
        #expect(delivery.properties.userId == "guest")
        #expect(delivery.properties.type == "test.hello")
        #expect(delivery.properties.deliveryMode == 2)
        #expect(delivery.properties.headers["x-text"] == "value")
        #expect(delivery.properties.headers["x-number"] == .int(42))
        #expect(delivery.properties.headers["x-flag"] == .bool(true))
        #expect(delivery.properties.headers["x-nested"] == .table(["a": .array([1, "b"])]))
        #expect(delivery.routingKey == "work.item")
        #expect(!delivery.redelivered)
        #expect(await consumer.ack(delivery))

        await consumer.shutdown()
        await publisher.shutdown()
        let admin = AMQPAdmin(configuration: config)
        #expect(try await admin.messageCount(queue: scratch.queue) == 0)
        await admin.close()
    }

    /// A publish the broker refuses (here 404, no such exchange; 403 for a topic permission behaves the
    /// same) closes the channel and the broker ignores what was pipelined after it: only that one fails,
    /// every other publish in flight is confirmed.
    @Test func aRefusedPublishAmongPipelinedOnesFailsAloneAndTheOthersAreStored() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        defer { Task { await scratch.cleanUp(config) } }
        try await publisher.publish(scratch.message("warm-up"))
        let results = await withTaskGroup(of: (String, Bool).self) { group in
            for i in 0..<40 {
                group.addTask {
                    var message = scratch.message("m\(i)", id: "m\(i)")
                    if i == 20 { message.exchange = "test.no-such-exchange-\(scratch.id)" }
                    do {
                        try await publisher.publish(message)
                        return (message.properties.messageId!, true)
                    } catch { return (message.properties.messageId!, false) }
                }
            }
            var all: [String: Bool] = [:]
            for await (id, ok) in group { all[id] = ok }
            return all
        }
        #expect(results.filter { !$0.value }.map(\.key) == ["m20"], "\(results.filter { !$0.value })")
        // Every other one is stored (some possibly twice: one stored before the channel closed but not
        // yet confirmed is sent again; consumers drop duplicates by message_id).
        let consumer = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        let collector = DeliveryCollector(consumer, autoAck: true)
        let expected = Set((0..<40).filter { $0 != 20 }.map { "m\($0)" })
        let deadline = ContinuousClock.now + .seconds(15)
        var stored = Set<String>()
        while !expected.isSubset(of: stored), ContinuousClock.now < deadline {
            stored = Set(await collector.wait(for: 0).compactMap(\.properties.messageId))
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(expected.isSubset(of: stored) && !stored.contains("m20"), "missing: \(expected.subtracting(stored))")
        await consumer.shutdown(drainTimeout: .zero)
        await publisher.shutdown()
    }

    /// Consumers trust `user_id` as the sender's identity (docs/security.md): the publisher always sends
    /// its own login, whatever the caller set, and the broker refuses any other value.
    @Test func theUserIdIsAlwaysTheConnectionsUserAndTheBrokerRefusesAForgedOne() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        // The default publish timeout: the broker is slow to confirm while the whole suite starts at once.
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        defer { Task { await scratch.cleanUp(config) } }
        var message = scratch.message("x")
        message.properties.userId = "somebody-else"
        try await publisher.publish(message)
        let consumer = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        let received = try #require(await DeliveryCollector(consumer, autoAck: true).wait(for: 1).first)
        #expect(received.properties.userId == config.url.user)
        await consumer.shutdown()
        await publisher.shutdown()

        // Below the publisher, on a raw connection: the broker closes the channel over a forged user_id.
        let forged = message
        let refusal: Result<Void, AMQPError> = await withCheckedContinuation { continuation in
            Thread {
                do throws(AMQPError) {
                    let handle = try AMQPConnectionHandle.connect(configuration: config, node: config.url)
                    try handle.publish(forged)
                    let deadline = ContinuousClock.now + .seconds(5)
                    while ContinuousClock.now < deadline { _ = try handle.nextFrame(timeout: .milliseconds(100)) }
                    continuation.resume(returning: .success(()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }.start()
        }
        guard case .failure(.brokerClosed(let code, let text, _)) = refusal else {
            Issue.record("the broker accepted a forged user_id: \(refusal)")
            return
        }
        #expect(code == 406 && text.contains("user_id"), "\(text)")
    }

    @Test func unroutablePublishFailsInsteadOfVanishing() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        defer { Task { await scratch.cleanUp(config) } }
        var message = scratch.message("nowhere")
        message.routingKey = "no.queue.binds.this"
        do {
            try await publisher.publish(message)
            Issue.record("an unroutable publish must fail")
        } catch {
            guard case .unroutable = error else {
                Issue.record("wrong error \(error)")
                return
            }
        }
        await publisher.shutdown()
    }

    @Test func unackedDeliveryIsRedeliveredWhenItsConsumerDies() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        defer { Task { await scratch.cleanUp(config) } }
        try await publisher.publish(scratch.message("work", id: "job-1"))

        let first = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        let firstCollector = DeliveryCollector(first)
        let taken = await firstCollector.wait(for: 1)
        #expect(taken.first?.properties.messageId == "job-1")
        // The worker dies without acknowledging: its connection goes away.
        await first.shutdown(drainTimeout: .zero)
        #expect(await first.ack(taken[0]) == false, "an ack after the connection is gone cannot count")

        let second = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        let secondCollector = DeliveryCollector(second)
        let again = await secondCollector.wait(for: 1)
        let redelivered = try #require(again.first)
        #expect(redelivered.properties.messageId == "job-1")
        #expect(redelivered.redelivered)
        #expect(redelivered.deliveryCount >= 1)
        #expect(await second.ack(redelivered))
        await second.shutdown()
        await publisher.shutdown()
    }

    /// Acks sent together go as one `basic.ack multiple` only over the oldest deliveries in flight: a
    /// multiple ack acknowledges every outstanding tag up to it, so one covering a delivery nobody settled
    /// would lose that message. 40 in flight; all but two in the middle are acked at once,
    /// then the consumer dies: exactly those two come back.
    @Test func acksSentTogetherNeverCoverADeliveryInFlight() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        defer { Task { await scratch.cleanUp(config) } }
        for i in 0..<40 { try await publisher.publish(scratch.message("m\(i)", id: "m\(i)")) }
        let first = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue, prefetch: 40)
        let taken = await DeliveryCollector(first).wait(for: 40)
        #expect(taken.count == 40)
        let keep = Set(["m17", "m30"])
        await withTaskGroup(of: Bool.self) { group in
            for delivery in taken where !keep.contains(delivery.properties.messageId ?? "") {
                group.addTask { await first.ack(delivery) }
            }
            for await acked in group { #expect(acked) }
        }
        await first.shutdown(drainTimeout: .zero)
        #expect(try await readyCount(scratch.queue, config, becomes: 2) == 2)
        let second = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        let again = await DeliveryCollector(second, autoAck: true).wait(for: 2)
        #expect(Set(again.compactMap(\.properties.messageId)) == keep)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await readyCount(scratch.queue, config, becomes: 0) == 0)
        await second.shutdown()
        await publisher.shutdown()
    }

    @Test func poisonMessageIsDeadLetteredAfterTheDeliveryLimit() async throws {
        let config = try configuration()
        let scratch = ScratchTopology(deliveryLimit: 2)
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        let consumer = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        let dead = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.deadLetterQueue)
        let deadCollector = DeliveryCollector(dead)
        defer { Task { await scratch.cleanUp(config) } }

        try await publisher.publish(scratch.message("crashes the worker", id: "poison-1"))
        // The consumer keeps failing and handing it back.
        let requeuer = Task { [consumer] in
            for await delivery in consumer.deliveries { await consumer.nack(delivery, requeue: true) }
        }
        // Bounded, but generous: with the whole suite starting at once the broker can take a while to
        // declare quorum queues (541 INTERNAL_ERROR, retried) and to redeliver.
        let deadLetters = await deadCollector.wait(for: 1, timeout: .seconds(60))
        requeuer.cancel()
        let letter = try #require(deadLetters.first)
        #expect(letter.properties.messageId == "poison-1")
        guard case let .array(deaths)? = letter.properties.headers["x-death"],
            case let .table(death)? = deaths.first
        else {
            Issue.record("no x-death header: \(letter.properties.headers)")
            return
        }
        #expect(death["reason"] == "delivery_limit")
        #expect(death["queue"] == .string(scratch.queue))
        await dead.ack(letter)
        await consumer.shutdown(drainTimeout: .zero)
        await dead.shutdown()
        await publisher.shutdown()
    }

    /// RabbitMQ's dead-letter worker re-sends a dead letter whose first attempt failed only when its
    /// timer fires (180 s by default). Under load the first attempt fails now and then (the dead-letter
    /// queue's leader not yet up: 7 of 40 poison messages declared at once on this machine reached their
    /// queue at 180 s), and in a fail-over. compose/rabbitmq-advanced.config sets the timer to 10 s; every
    /// local broker boots with that file. Here the first attempt fails for sure: the dead-letter queue is
    /// bound only after the message was dead-lettered.
    @Test func aDeadLetterWhoseFirstAttemptFailedArrivesSoonAfter() async throws {
        let config = try configuration()
        let scratch = ScratchTopology(deliveryLimit: 1, bindDeadLetterQueue: false)
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        let consumer = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
        defer { Task { await scratch.cleanUp(config) } }

        try await publisher.publish(scratch.message("crashes the worker", id: "poison-unrouted"))
        let seen = DeliveryCollector(consumer, requeue: true)
        // Delivered twice (the second time with x-delivery-count 1), then dead-lettered with no route.
        let deliveries = await seen.wait(for: 2, timeout: .seconds(60))
        try #require(deliveries.count == 2, "the poison message was not delivered twice")
        // The broker holds it as a dead letter it could not route (the management API's `messages_dlx`,
        // refreshed every 5 s): its first attempt has failed.
        try #require(
            await deadLettersHeld(in: scratch.queue, timeout: .seconds(30)) == 1,
            "the source queue does not hold the unroutable dead letter")
        #expect(await seen.received.count == 2, "a message past its delivery limit was delivered again")

        // Now the route exists; the worker's next re-send finds it.
        let admin = AMQPAdmin(configuration: config)
        try await admin.declare(AMQPTopology(bindings: [scratch.deadLetterBinding]))
        await admin.close()
        let bound = ContinuousClock.now
        let dead = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.deadLetterQueue)
        let deadCollector = DeliveryCollector(dead)
        let letters = await deadCollector.wait(for: 1, timeout: .seconds(40))
        let letter = try #require(
            letters.first,
            "no dead letter within 40 s of its route appearing: is the broker's dead_letter_worker_publisher_confirm_timeout still 180 s (compose/rabbitmq-advanced.config)?"
        )
        #expect(letter.properties.messageId == "poison-unrouted")
        print("dead letter arrived \(ContinuousClock.now - bound) after its route appeared")
        await dead.ack(letter)
        await consumer.shutdown(drainTimeout: .zero)
        await dead.shutdown()
        await publisher.shutdown()
    }

    /// `messages_dlx` of a quorum queue, from the management API (RABBITMQ_MANAGEMENT_URL, as the AMQP
    /// user): polled until it is above 0 or `timeout` passes.
    func deadLettersHeld(in queue: String, timeout: Duration) async -> Int? {
        guard let base = ProcessInfo.processInfo.environment["RABBITMQ_MANAGEMENT_URL"],
            let url = try? AMQPURL(amqpURL ?? "")
        else {
            Issue.record("RABBITMQ_MANAGEMENT_URL is not set (scripts/services.sh env)")
            return nil
        }
        let http = HTTPClient()
        defer { http.shutdown() }
        let auth = "Basic " + Data("\(url.user):\(url.password)".utf8).base64EncodedString()
        let deadline = ContinuousClock.now + timeout
        var held: Int?
        while ContinuousClock.now < deadline {
            let request = HTTPRequest(
                url: "\(base)/api/queues/%2F/\(queue)?columns=messages_dlx", headers: [("Authorization", auth)])
            if let response = try? await http.execute(request), response.status == 200,
                let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            {
                held = json["messages_dlx"] as? Int
                if let held, held > 0 { return held }
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return held
    }

    @Test func wrongPasswordIsAClearLoginError() async throws {
        var url = try AMQPURL(try #require(amqpURL))
        url.password = "definitely-wrong-\(UUID())"
        let admin = AMQPAdmin(configuration: AMQPConfiguration(url: url))
        do {
            try await admin.declare(.empty)
            Issue.record("login with a wrong password must fail")
        } catch {
            guard case .loginRefused = error else {
                Issue.record("wrong error: \(error)")
                return
            }
            #expect(!error.description.contains(url.password))
        }
    }

    @Test func redeclaringAQueueWithOtherArgumentsIsAPermanentError() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let admin = AMQPAdmin(configuration: config)
        defer { Task { await scratch.cleanUp(config) } }
        try await admin.declare(scratch.topology)
        await admin.close()
        let clash = AMQPTopology(queues: [.quorum(scratch.queue, deliveryLimit: 99, deadLetterExchange: "other")])
        // A connection lost on the way (CI's loaded broker once dropped one mid-declare) is transient, and
        // retried as a worker retries it; the clash itself must come back as the permanent 406 every time.
        var attempt = 0
        while true {
            attempt += 1
            let admin = AMQPAdmin(configuration: config)
            defer { Task { await admin.close() } }
            do {
                try await admin.declare(clash)
                Issue.record("a clashing declaration must fail")
                return
            } catch {
                if !error.isPermanent && attempt < 3 { continue }
                guard case let .brokerClosed(code, _, _) = error else {
                    Issue.record("wrong error \(error) (attempt \(attempt))")
                    return
                }
                #expect(code == 406)
                #expect(error.isPermanent)
                return
            }
        }
    }

    @Test func gracefulShutdownStopsDeliveringAndReturnsUnackedMessages() async throws {
        let config = try configuration()
        let scratch = ScratchTopology()
        let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
        defer { Task { await scratch.cleanUp(config) } }
        for i in 0..<5 { try await publisher.publish(scratch.message("m\(i)", id: "m\(i)")) }
        let consumer = AMQPConsumer(
            configuration: config, topology: scratch.topology, queue: scratch.queue, prefetch: 2)
        let collector = DeliveryCollector(consumer)
        let firstTwo = await collector.wait(for: 2)
        #expect(firstTwo.count == 2, "prefetch bounds what is in flight")
        try await Task.sleep(for: .milliseconds(200))
        #expect(await collector.received.count == 2, "no third delivery while two are unacked")
        // Finish one in-flight message during the drain, leave the other: it must go back to the queue.
        async let stopped: Void = consumer.shutdown(drainTimeout: .milliseconds(500))
        #expect(await consumer.ack(firstTwo[0]))
        await stopped
        #expect(consumer.acknowledgementFrames == 1, "the one ack was written, and nothing for the other")
        // The broker returns the unacked one to the queue once it sees the connection close.
        #expect(try await readyCount(scratch.queue, config, becomes: 4) == 4)
        await publisher.shutdown()
    }
}
