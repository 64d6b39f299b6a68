import AMQPTransport
import FleetRuntime
import Foundation
import Synchronization

/// An in-memory broker with what the fleet relies on: topic exchanges, queues bound by pattern, one user
/// per publisher whose `user_id` is checked like RabbitMQ checks it, and publishing that throws instead of
/// confirming when the exchange is unknown. Queues are `MemoryDeliverySource`s.
public final class MemoryBroker: Sendable {
    private struct Binding {
        var queue: MemoryDeliverySource
        var pattern: String
    }
    private let state = Mutex<(exchanges: Set<String>, bindings: [String: [Binding]])>(([], [:]))

    private let queues = Mutex<[String: MemoryDeliverySource]>([:])

    public init(exchanges: Set<String> = []) {
        state.withLock { $0.exchanges = exchanges }
    }

    /// A broker with `topology` declared as RabbitMQ declares it: its exchanges, its queues (a quorum
    /// queue's `x-delivery-limit` and dead-letter exchange included) and its bindings.
    public convenience init(topology: AMQPTopology) {
        self.init(exchanges: Set(topology.exchanges.map(\.name)))
        for queue in topology.queues {
            let limit = queue.arguments["x-delivery-limit"]?.intValue
            let exchange = queue.arguments["x-dead-letter-exchange"]?.stringValue
            let key = queue.arguments["x-dead-letter-routing-key"]?.stringValue ?? queue.name
            var giveUp: (@Sendable (AMQPDelivery, String) -> Void)?
            if let exchange {
                giveUp = { [weak self] delivery, reason in
                    self?.deadLetter(delivery, reason: reason, exchange: exchange, routingKey: key)
                }
            }
            let source = MemoryDeliverySource(queue: queue.name, deliveryLimit: limit, deadLetter: giveUp)
            queues.withLock { $0[queue.name] = source }
        }
        for binding in topology.bindings {
            guard let queue = queues.withLock({ $0[binding.queue] }) else { continue }
            state.withLock {
                $0.bindings[binding.exchange, default: []].append(Binding(queue: queue, pattern: binding.routingKey))
            }
        }
    }

    /// A queue declared by `init(topology:)`.
    public func queue(_ name: String) -> MemoryDeliverySource? { queues.withLock { $0[name] } }

    /// What a quorum queue does with a message it gives up on: republish it to its dead-letter exchange
    /// with an `x-death` entry naming the reason (`delivery_limit`, `rejected`).
    private func deadLetter(_ delivery: AMQPDelivery, reason: String, exchange: String, routingKey: String) {
        var properties = delivery.properties
        properties.headers["x-death"] = .array([
            .table([
                "reason": .string(reason), "queue": .string(routingKey), "exchange": .string(delivery.exchange),
                "count": .int(1),
            ])
        ])
        try? route(
            OutgoingMessage(exchange: exchange, routingKey: routingKey, body: delivery.body, properties: properties))
    }

    public func declareExchange(_ name: String) { state.withLock { _ = $0.exchanges.insert(name) } }

    /// A queue bound to `exchange` with each of `patterns` (topic patterns: `*` one word, `#` any).
    public func queue(_ name: String, boundTo exchange: String, patterns: [String]) -> MemoryDeliverySource {
        let queue = MemoryDeliverySource(queue: name)
        state.withLock {
            $0.exchanges.insert(exchange)
            for pattern in patterns {
                $0.bindings[exchange, default: []].append(Binding(queue: queue, pattern: pattern))
            }
        }
        return queue
    }

    func route(_ message: OutgoingMessage) throws {
        let queues: [MemoryDeliverySource] = try state.withLock {
            guard $0.exchanges.contains(message.exchange) else {
                throw MemoryBrokerError("NOT_FOUND - no exchange '\(message.exchange)'")
            }
            return ($0.bindings[message.exchange] ?? []).filter { Self.matches(message.routingKey, $0.pattern) }.map(
                \.queue)
        }
        var seen = Set<ObjectIdentifier>()
        for queue in queues where seen.insert(ObjectIdentifier(queue)).inserted {
            queue.deliver(
                message.body, properties: message.properties, exchange: message.exchange, routingKey: message.routingKey
            )
        }
    }

    /// AMQP topic matching: words split on ".", `*` is exactly one word, `#` zero or more.
    public static func matches(_ key: String, _ pattern: String) -> Bool {
        func match(_ k: ArraySlice<Substring>, _ p: ArraySlice<Substring>) -> Bool {
            guard let head = p.first else { return k.isEmpty }
            if head == "#" {
                return match(k, p.dropFirst()) || (!k.isEmpty && match(k.dropFirst(), p))
            }
            guard let word = k.first else { return false }
            return (head == "*" || head == word) && match(k.dropFirst(), p.dropFirst())
        }
        return match(
            ArraySlice(key.split(separator: ".", omittingEmptySubsequences: false)),
            ArraySlice(pattern.split(separator: ".", omittingEmptySubsequences: false)))
    }
}

public struct MemoryBrokerError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The in-memory `MessagePublishing`: routes through a `MemoryBroker` and keeps every confirmed message.
/// Like `AMQPPublisher` it stamps its own user as `user_id` on every message, whatever the caller set, so
/// a consumer's sender check sees who really published. `failNext` makes the next publishes
/// throw (a broker that is down), so a test can show what a caller does then; after `shutdown()` every
/// publish throws, as `AMQPPublisher`'s do once it is shut down.
public final class MemoryPublisher: MessagePublishing {
    public let broker: MemoryBroker
    public let user: String
    private let state = Mutex<(published: [OutgoingMessage], failures: Int, closed: Bool)>(([], 0, false))

    public init(broker: MemoryBroker = MemoryBroker(), user: String = "guest") {
        self.broker = broker
        self.user = user
    }

    public func publish(_ message: OutgoingMessage) async throws {
        var message = message
        message.properties.userId = user
        if let problem = message.shortStringProblem { throw AMQPError.invalidMessage(reason: problem) }
        try state.withLock {
            if $0.closed { throw MemoryBrokerError("publisher is shut down") }
            if $0.failures > 0 {
                $0.failures -= 1
                throw MemoryBrokerError("connection refused (injected)")
            }
        }
        try broker.route(message)
        state.withLock { $0.published.append(message) }
    }

    /// Every confirmed message, in order.
    public var published: [OutgoingMessage] { state.withLock { $0.published } }
    public func failNext(_ count: Int) { state.withLock { $0.failures = count } }
    public func shutdown() { state.withLock { $0.closed = true } }
}

/// The in-memory `DeliverySource`: a queue. Messages come in through `deliver` (or a `MemoryBroker`);
/// `ack` removes one, `nack(requeue: true)` delivers it again with `redelivered` set and its
/// `x-delivery-count` one higher, `nack(requeue: false)` moves it to `deadLettered`. `shutdown` ends the
/// stream; what is unsettled then stays in `unacked`, as the broker would requeue it.
public final class MemoryDeliverySource: DeliverySource {
    public let queue: String
    public let deliveries: AsyncStream<AMQPDelivery>
    private let continuation: AsyncStream<AMQPDelivery>.Continuation
    private struct State {
        var nextTag: UInt64 = 1
        var unacked: [UInt64: AMQPDelivery] = [:]
        var acked: [AMQPDelivery] = []
        var deadLettered: [AMQPDelivery] = []
        var closed = false
    }
    private let state = Mutex(State())
    private let deliveryLimit: Int64?
    private let deadLetter: (@Sendable (AMQPDelivery, String) -> Void)?

    /// `deliveryLimit`: like a quorum queue's `x-delivery-limit`, a message requeued more often than that
    /// is given to `deadLetter` (reason `delivery_limit`) instead of coming again; `nack` without requeue
    /// gives it there too (reason `rejected`).
    public init(
        queue: String, deliveryLimit: Int64? = nil, deadLetter: (@Sendable (AMQPDelivery, String) -> Void)? = nil
    ) {
        self.queue = queue
        self.deliveryLimit = deliveryLimit
        self.deadLetter = deadLetter
        (deliveries, continuation) = AsyncStream.makeStream(of: AMQPDelivery.self)
    }

    /// Puts a message on the queue.
    public func deliver(
        _ body: [UInt8], properties: AMQPProperties = AMQPProperties(), exchange: String = "",
        routingKey: String = ""
    ) {
        enqueue(body: body, properties: properties, exchange: exchange, routingKey: routingKey, redelivered: false)
    }

    private func enqueue(
        body: [UInt8], properties: AMQPProperties, exchange: String, routingKey: String, redelivered: Bool
    ) {
        let delivery: AMQPDelivery? = state.withLock {
            guard !$0.closed else { return nil }
            let d = AMQPDelivery(
                body: body, properties: properties, exchange: exchange, routingKey: routingKey,
                redelivered: redelivered, deliveryTag: $0.nextTag)
            $0.nextTag += 1
            $0.unacked[d.tag] = d
            return d
        }
        if let delivery { continuation.yield(delivery) }
    }

    @discardableResult
    public func ack(_ delivery: AMQPDelivery) async -> Bool {
        state.withLock {
            guard let d = $0.unacked.removeValue(forKey: delivery.tag) else { return false }
            $0.acked.append(d)
            return true
        }
    }

    @discardableResult
    public func nack(_ delivery: AMQPDelivery, requeue: Bool) async -> Bool {
        let overLimit = requeue && deliveryLimit.map { delivery.deliveryCount + 1 > $0 } == true
        let taken: AMQPDelivery? = state.withLock {
            guard let d = $0.unacked.removeValue(forKey: delivery.tag) else { return nil }
            if !requeue || overLimit { $0.deadLettered.append(d) }
            return d
        }
        guard let taken else { return false }
        if !requeue || overLimit {
            deadLetter?(taken, overLimit ? "delivery_limit" : "rejected")
        } else {
            var properties = taken.properties
            properties.headers["x-delivery-count"] = .int(taken.deliveryCount + 1)
            enqueue(
                body: taken.body, properties: properties, exchange: taken.exchange, routingKey: taken.routingKey,
                redelivered: true)
        }
        return true
    }

    public func stop() async { shutdown() }

    /// Ends `deliveries`; later messages are refused.
    public func shutdown() {
        state.withLock { $0.closed = true }
        continuation.finish()
    }

    public var acked: [AMQPDelivery] { state.withLock { $0.acked } }
    public var deadLettered: [AMQPDelivery] { state.withLock { $0.deadLettered } }
    public var unacked: [AMQPDelivery] { state.withLock { $0.unacked.values.sorted { $0.tag < $1.tag } } }
}

/// A clock a test moves by hand: pass `now` wherever a worker takes `clock:`.
public final class TestClock: Sendable {
    private let current: Mutex<Date>
    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Mutex(start) }
    public var now: @Sendable () -> Date { { [self] in current.withLock { $0 } } }
    public func advance(by seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
    public func set(_ date: Date) { current.withLock { $0 = date } }
}
