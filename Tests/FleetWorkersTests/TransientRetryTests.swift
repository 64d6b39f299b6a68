import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// Issue 14, gap 2: transient trouble is retried in place with backoff and never spends the queue's
/// poison-message limit; a message that is itself bad still ends in the dead-letter queue. On memory
/// drivers whose queues keep RabbitMQ's delivery limit (the messaging contract test holds them to it).
@Suite("Transient failures are retried in place, poison messages still dead-lettered")
struct TransientRetryTests {
    static let fast = TransientRetryPolicy(maxAttempts: 20, initialDelay: .milliseconds(1), maxDelay: .milliseconds(5))

    /// A queue with a delivery limit of 2 (dead-lettered on the third delivery), a worker on it, and a
    /// handler that fails as `fail` says for each call.
    static func run(retry: TransientRetryPolicy = fast, fail: @escaping @Sendable (Int) -> (any Error)?) async throws
        -> (calls: Int, acked: Int, dead: [AMQPDelivery], deliveries: Int)
    {
        let topology = FleetTopology(prefix: "t-\(UUID().uuidString.prefix(6))", deliveryLimit: 2)
        let broker = MemoryBroker(topology: topology.amqp)
        let queue = broker.queue(topology.observationsQueue)!
        let dead = broker.queue(FleetTopology.deadLetterQueue(for: topology.observationsQueue))!
        let calls = Mutex(0)
        let deliveries = Mutex(0)
        let worker = MessageWorker<Envelope<ProbeResult>>(
            consumer: queue,
            deadLetters: DeadLetterSink(
                publisher: MemoryPublisher(broker: broker), topology: topology, workerName: "t"),
            logger: Logger(label: "test"), senders: nil,
            decode: { (bytes) throws(MessageDecodingError) in
                deliveries.withLock { $0 += 1 }
                return try EnvelopeCodec.decode(bytes, as: ProbeResult.self, expecting: .observation)
            },
            retry: retry,
            handler: { _, _ in
                let n = calls.withLock {
                    $0 += 1
                    return $0
                }
                if let error = fail(n) { throw error }
            })
        let running = Task { await worker.run() }
        queue.deliver(
            try EnvelopeCodec.encode(
                Envelope(
                    type: .observation, id: "o1", correlationId: nil, target: "shop", instanceId: nil,
                    occurredAt: Date(), producer: "t", body: ProbeResult(prober: "p", healthy: true))))
        try await waitUntil { queue.acked.count + dead.unacked.count == 1 }
        queue.shutdown()
        await running.value
        return (calls.withLock { $0 }, queue.acked.count, dead.unacked, deliveries.withLock { $0 })
    }

    static let redisDown = RedisError(kind: .connection, message: "Connection refused", endpoint: "127.0.0.1:6379")

    @Test func redisTroubleLongerThanTheDeliveryLimitIsRiddenOutWithoutARedelivery() async throws {
        // Old behaviour: each failure requeued the message at once; the third delivery dead-lettered it.
        let result = try await Self.run { n in n <= 8 ? Self.redisDown : nil }
        #expect(result.acked == 1 && result.dead.isEmpty)
        #expect(result.calls == 9 && result.deliveries == 1, "retried in place, never returned to the queue")
    }

    @Test func aMessageThatFailsForItsOwnReasonsStillEndsInTheDeadLetterQueue() async throws {
        struct Corrupt: Error {}
        let result = try await Self.run { _ in Corrupt() }
        #expect(result.acked == 0 && result.dead.count == 1)
        #expect(result.deliveries == 3, "the first delivery and two redeliveries, then the limit")
        guard case .array(let deaths)? = result.dead.first?.properties.headers["x-death"],
            case .table(let death)? = deaths.first
        else {
            Issue.record("no x-death")
            return
        }
        #expect(death["reason"]?.stringValue == "delivery_limit")
    }

    @Test func transientTroubleThatNeverEndsStillReachesTheDeadLetterQueueAfterItsRetries() async throws {
        let short = TransientRetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(1), maxDelay: .milliseconds(2))
        let result = try await Self.run(retry: short) { _ in Self.redisDown }
        #expect(result.dead.count == 1 && result.acked == 0)
        #expect(result.calls == 12, "4 attempts per delivery, 3 deliveries")
    }

    /// Found in review: a SIGTERM while Redis was down waited for the rest of the in-place retries (about
    /// 10 minutes by default). A graceful shutdown now ends them: the message is returned to the queue.
    @Test func aGracefulShutdownEndsTheRetriesAndHandsTheMessageBack() async throws {
        let topology = FleetTopology(prefix: "t-\(UUID().uuidString.prefix(6))", deliveryLimit: 5)
        let broker = MemoryBroker(topology: topology.amqp)
        let queue = broker.queue(topology.observationsQueue)!
        let calls = Mutex(0)
        let worker = MessageWorker<Envelope<ProbeResult>>(
            consumer: queue,
            deadLetters: DeadLetterSink(
                publisher: MemoryPublisher(broker: broker), topology: topology, workerName: "t"),
            expecting: .observation, logger: Logger(label: "test"), senders: nil,
            retry: TransientRetryPolicy(maxAttempts: 1000, initialDelay: .seconds(30), maxDelay: .seconds(30))
        ) { _, _ in
            calls.withLock { $0 += 1 }
            throw Self.redisDown
        }
        try await testGracefulShutdown { trigger in
            let group = ServiceGroup(
                configuration: try WorkerRuntime.configuration(services: [worker.service()], logger: Logger(label: "g"))
            )
            async let ran: Void = group.run()
            queue.deliver(
                try EnvelopeCodec.encode(
                    Envelope(
                        type: .observation, id: "o1", correlationId: nil, target: "shop", instanceId: nil,
                        occurredAt: Date(), producer: "t", body: ProbeResult(prober: "p", healthy: true))))
            try await waitUntil { calls.withLock { $0 } >= 1 }  // failing, now waiting 30 s to retry
            trigger.triggerGracefulShutdown()
            try await ran
        }
        // Without the fix the wait ran its 30 s and the handler ran again (and again, until the group's
        // shutdown timeout cancelled it): one call means the wait was cut short and no retry followed.
        #expect(calls.withLock { $0 } == 1)
        #expect(queue.acked.isEmpty && queue.deadLettered.isEmpty, "handed back, neither acked nor dead-lettered")
        #expect(queue.unacked.isEmpty, "settled: returned to the queue, not left hanging")
    }

    @Test func whatCountsAsTransient() {
        #expect(Self.redisDown.isTransient)
        #expect(RedisError(kind: .timeout, message: "t").isTransient)
        #expect(RedisError(kind: .server, message: "READONLY You can't write against a read only replica.").isTransient)
        #expect(
            !RedisError(kind: .server, message: "WRONGTYPE Operation against a key holding the wrong kind of value")
                .isTransient)
        #expect(!RedisError(kind: .invalidArgument, message: "bad").isTransient)
        #expect(!RedisError(kind: .server, message: "BUSYKEY Target key name already exists.").isTransient)
        #expect(
            RedisError(kind: .server, message: "OOM command not allowed when used memory > 'maxmemory'.").isTransient)
        let kinds: [AWSError.Kind] = [.throttling, .serverError, .transport, .accessDenied, .clientError, .credentials]
        let transient = kinds.map {
            AWSError(kind: $0, service: "dynamodb", operation: "PutItem", region: "eu-west-1", message: "m").isTransient
        }
        #expect(transient == [true, true, true, false, false, false])
        #expect(AMQPError.connectionFailed(host: "h", port: 5672, reason: "refused").isTransient)
        #expect(AMQPError.publishTimedOut(messageId: nil, after: .seconds(5)).isTransient)
        #expect(!AMQPError.brokerClosed(code: 406, text: "PRECONDITION_FAILED", context: "publish").isTransient)
        #expect(!AMQPError.loginRefused(user: "u", vhost: "/", reason: "r").isTransient)
        #expect(!AMQPError.shutdown.isTransient, "a publisher this process closed never comes back")
        let policy = TransientRetryPolicy()
        #expect(policy.delay(beforeAttempt: 1) <= .milliseconds(240) && policy.delay(beforeAttempt: 40) <= .seconds(18))
    }
}
