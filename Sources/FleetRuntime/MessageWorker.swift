import AMQPTransport
import Foundation
import Logging
import Metrics
import RecoveryCore
import ServiceLifecycle

/// Thrown by a handler for a message that can never succeed (an unknown target, a command that makes no
/// sense). The message goes to the dead-letter queue with this reason instead of being retried.
public struct RejectMessage: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Publishes refused messages to the dead-letter exchange, with the reason in headers.
public struct DeadLetterSink: Sendable {
    let publisher: any MessagePublishing
    let exchange: String
    let workerName: String

    public init(publisher: any MessagePublishing, topology: FleetTopology, workerName: String) {
        self.publisher = publisher
        exchange = topology.deadLetterExchange
        self.workerName = workerName
    }

    /// Stores the message in `<queue>.dead` with `x-reject-reason` and where it came from (plus any
    /// `headers` the caller adds, e.g. the notifier's `x-notifier-channel`). Returns only once the broker
    /// has confirmed it, so the caller may then ack the original.
    public func deadLetter(
        _ delivery: AMQPDelivery, fromQueue queue: String, reason: String,
        headers: [String: AMQPFieldValue] = [:], now: Date = Date()
    ) async throws {
        var properties = delivery.properties
        for (name, value) in headers { properties.headers[name] = value }
        properties.headers["x-reject-reason"] = .string(reason)
        properties.headers["x-rejected-by"] = .string(workerName)
        properties.headers["x-rejected-at"] = .string(Timestamp.format(now))
        properties.headers["x-original-exchange"] = .string(delivery.exchange)
        properties.headers["x-original-routing-key"] = .string(delivery.routingKey)
        properties.headers["x-original-queue"] = .string(queue)
        // RabbitMQ refuses (406) a publish whose user_id is not the publishing connection's user, so a
        // message from another user (a command from someone not on OPERATORS) could never be dead-lettered
        // and would be requeued until the delivery limit. The sender's verified user moves to a header.
        // Always this worker's word, never a header the sender set: without a user_id it is removed.
        properties.headers["x-original-user-id"] = properties.userId.map { .string($0) }
        properties.userId = nil
        properties.deliveryMode = 2
        if properties.messageId == nil { properties.messageId = RandomId.uuid() }
        try await publisher.publish(
            OutgoingMessage(exchange: exchange, routingKey: queue, body: delivery.body, properties: properties))
    }
}

/// Consumes one queue, decodes each message's envelope and hands it to `handler`.
///
/// - The sender may not send the message's type (`senders`, the broker-verified `user_id`): the message
///   is dead-lettered with the reason and never reaches the handler.
/// - The handler returns normally: the effect is recorded, so the message is acked.
/// - The body does not decode, or the handler throws `RejectMessage`: the message is dead-lettered with
///   the reason (confirmed), then acked. Nothing is dropped silently and the worker keeps going.
/// - The handler throws a transient error (`TransientFailure`: Redis or the broker unreachable, AWS
///   throttling): the message is retried here, in place, with backoff (`TransientRetryPolicy`), so it
///   uses none of the queue's delivery limit. Only when the retries run out is it requeued (one delivery).
/// - The handler throws anything else: the message is requeued to be tried again; after the queue's
///   delivery limit RabbitMQ dead-letters it itself (`x-death` reason `delivery_limit`).
/// - Dead-lettering itself fails: the message is requeued, never acked.
public struct MessageWorker<Message: Sendable>: Sendable {
    public typealias Handler = @Sendable (Message, AMQPDelivery) async throws -> Void
    public typealias Decoder = @Sendable ([UInt8]) throws(MessageDecodingError) -> Message

    let consumer: any DeliverySource
    let deadLetters: DeadLetterSink
    /// Who may send what this worker acts on; nil checks nobody (tests of other things only: every
    /// worker executable passes one).
    let senders: SenderGate?
    let decode: Decoder
    let handler: Handler
    let logger: Logger
    /// When the message was sent (the envelope's `sent_at`), for the queue-lag metric; nil falls back to
    /// the AMQP `timestamp` property (whole seconds).
    let sentAt: @Sendable (Message) -> Date?
    let retry: TransientRetryPolicy

    /// A worker for a queue that carries several message types: `decode` picks the body type.
    public init(
        consumer: any DeliverySource, deadLetters: DeadLetterSink, logger: Logger, senders: SenderGate?,
        decode: @escaping Decoder, sentAt: @escaping @Sendable (Message) -> Date? = { _ in nil },
        retry: TransientRetryPolicy = TransientRetryPolicy(), handler: @escaping Handler
    ) {
        self.consumer = consumer
        self.retry = retry
        self.deadLetters = deadLetters
        self.senders = senders
        self.decode = decode
        self.handler = handler
        self.logger = logger
        self.sentAt = sentAt
    }

    /// Runs until the consumer is shut down.
    public func run() async {
        for await delivery in consumer.deliveries {
            await process(delivery)
        }
    }

    /// Runs until the consumer is shut down, handling up to `concurrency` deliveries at once (for
    /// handlers that take minutes, like the actuator's steps). Give the consumer at least that prefetch.
    public func run(concurrency: Int) async {
        guard concurrency > 1 else { return await run() }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await delivery in consumer.deliveries {
                if running >= concurrency {
                    await group.next()
                    running -= 1
                }
                group.addTask { await self.process(delivery) }
                running += 1
            }
        }
    }

    /// Runs until the consumer is shut down, handling deliveries in `lanes` concurrent lanes: deliveries
    /// with the same `laneKey` go to the same lane and are handled one after another, in delivery order;
    /// different lanes run at once. The decision worker keys by target, so one target's events keep their
    /// order while the fleet's are decided in parallel (and share Redis round trips). The consumer's
    /// prefetch bounds how many wait in the lanes; give it a few per lane.
    public func run(lanes: Int, laneKey: @escaping @Sendable (AMQPDelivery) -> String) async {
        guard lanes > 1 else { return await run() }
        await withTaskGroup(of: Void.self) { group in
            var queues: [AsyncStream<AMQPDelivery>.Continuation] = []
            for _ in 0..<lanes {
                let (stream, queue) = AsyncStream<AMQPDelivery>.makeStream()
                queues.append(queue)
                group.addTask {
                    for await delivery in stream { await self.process(delivery) }
                }
            }
            for await delivery in consumer.deliveries {
                var hasher = Hasher()
                hasher.combine(laneKey(delivery))
                queues[Int(UInt(bitPattern: hasher.finalize()) % UInt(lanes))].yield(delivery)
            }
            // The source ended (shutdown): every lane handles what it holds, then the group returns.
            for queue in queues { queue.finish() }
        }
    }

    /// The target of a `<type>.<target>` routing key (`MessageType.target(ofRoutingKey:)`). A sender can
    /// choose any key: it only picks the lane, never what is decided (the handler reads the envelope).
    @Sendable public static func targetOfRoutingKey(_ delivery: AMQPDelivery) -> String {
        MessageType.target(ofRoutingKey: delivery.routingKey)
    }

    /// The worker as a service: runs until graceful shutdown stops its source; `run` returns once the
    /// deliveries in flight are handled. List it after the clients its handler uses (see `WorkerRuntime`).
    public func service(concurrency: Int = 1) -> ClosureService {
        ClosureService(run: { await run(concurrency: concurrency) }, stop: { await consumer.stop() })
    }

    /// The worker as a service that handles deliveries in per-key lanes (`run(lanes:laneKey:)`).
    public func service(lanes: Int, laneKey: @escaping @Sendable (AMQPDelivery) -> String) -> ClosureService {
        ClosureService(run: { await run(lanes: lanes, laneKey: laneKey) }, stop: { await consumer.stop() })
    }

    func process(_ delivery: AMQPDelivery) async {
        let started = ContinuousClock.now
        defer {
            let (seconds, attoseconds) = (ContinuousClock.now - started).components
            FleetMetrics.handlingTime(queue: consumer.queue)
                .recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }
        var logger = logger
        logger[metadataKey: "message_id"] = "\(delivery.properties.messageId ?? "-")"
        if let senders, let refusal = senders.refusal(of: delivery, queue: consumer.queue) {
            await reject(delivery, reason: refusal.reason, logger: logger)
            await senders.refused(refusal)
            return
        }
        let message: Message
        do {
            message = try decode(delivery.body)
        } catch {
            await reject(delivery, reason: error.reason, logger: logger)
            return
        }
        recordLag(sentAt(message), delivery)
        var failures = 0
        while true {
            do {
                try await handler(message, delivery)
                await consumer.ack(delivery)
                count("acked")
                return
            } catch let rejection as RejectMessage {
                await reject(delivery, reason: rejection.reason, logger: logger)
                return
            } catch
                where TransientRetryPolicy.isTransient(error) && failures < retry.maxAttempts && !Task.isCancelled
                && !Task.isShuttingDownGracefully
            {
                failures += 1
                let delay = retry.delay(beforeAttempt: failures)
                logger.warning(
                    "transient failure; retrying the message in place",
                    metadata: [
                        "error": "\(error)", "attempt": "\(failures)", "retry_in": "\(delay)",
                    ])
                count("retried")
                // A graceful shutdown ends the wait: the message goes back to the queue for a replica that
                // stays, instead of holding the shutdown for the rest of the retries.
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                if Task.isShuttingDownGracefully {
                    await consumer.nack(delivery, requeue: true)
                    count("requeued")
                    return
                }
            } catch {
                logger.warning(
                    "handler failed; message requeued",
                    metadata: [
                        "error": "\(error)", "delivery_count": "\(delivery.deliveryCount)",
                    ])
                await consumer.nack(delivery, requeue: true)
                count("requeued")
                return
            }
        }
    }

    private func reject(_ delivery: AMQPDelivery, reason: String, logger: Logger) async {
        do {
            try await deadLetters.deadLetter(delivery, fromQueue: consumer.queue, reason: reason)
            logger.warning("message dead-lettered", metadata: ["reason": "\(reason)", "queue": "\(consumer.queue)"])
            await consumer.ack(delivery)
            count("dead_lettered")
        } catch {
            logger.error("could not dead-letter a refused message; requeued", metadata: ["error": "\(error)"])
            await consumer.nack(delivery, requeue: true)
            count("requeued")
        }
    }

    /// `recovery_messages_handled_total{queue,result}`: acked, dead_lettered or requeued.
    private func count(_ result: String) {
        FleetMetrics.messagesHandled(queue: consumer.queue, result: result).increment()
    }

    /// `recovery_queue_lag_seconds{queue}`: from the message's sending to its handling here (queue wait
    /// plus transit). Clocks of different hosts differ, so a negative lag is recorded as zero.
    private func recordLag(_ sent: Date?, _ delivery: AMQPDelivery) {
        let sentAt = sent ?? delivery.properties.timestamp.map { Date(timeIntervalSince1970: TimeInterval($0)) }
        guard let sentAt else { return }
        let lag = max(0, Date().timeIntervalSince(sentAt))
        FleetMetrics.queueLag(queue: consumer.queue)
            .recordNanoseconds(Int64(min(lag, 86_400 * 30) * 1e9))
    }
}

extension MessageWorker {
    /// A worker for a queue of one message type.
    public init<Body: Codable & Sendable>(
        consumer: any DeliverySource, deadLetters: DeadLetterSink, expecting: MessageType, logger: Logger,
        senders: SenderGate?, retry: TransientRetryPolicy = TransientRetryPolicy(),
        handler: @escaping @Sendable (Envelope<Body>, AMQPDelivery) async throws -> Void
    ) where Message == Envelope<Body> {
        self.init(
            consumer: consumer, deadLetters: deadLetters, logger: logger, senders: senders,
            decode: { (bytes) throws(MessageDecodingError) in
                try EnvelopeCodec.decode(bytes, as: Body.self, expecting: expecting)
            },
            sentAt: { $0.sentAt }, retry: retry, handler: handler)
    }
}
