import Foundation
import Logging
import Synchronization

/// Consumes one queue with manual acknowledgement, on its own connection and thread.
///
/// Deliveries arrive on `deliveries`. At most `prefetch` are unacknowledged at a time (`basic.qos`).
/// Acknowledge each one with `ack` once its effect is recorded, or `nack` it. When the connection drops
/// the broker requeues every unacknowledged delivery; the consumer reconnects with backoff, declares its
/// topology again and resumes. An `ack` for a delivery from the lost connection returns false: the
/// message will come again (with `redelivered` set), so handlers must be idempotent.
///
/// `queue: ""` consumes a private queue that the broker names: `topology` then declares a queue with an
/// empty name (exclusive), and its bindings name it with "" too.
public final class AMQPConsumer: Sendable {
    public let deliveries: AsyncStream<AMQPDelivery>
    public let queue: String
    private let state: ConsumerState

    public init(
        configuration: AMQPConfiguration, topology: AMQPTopology = .empty, queue: String,
        prefetch: UInt16 = 32, logger: Logger = Logger(label: "amqp.consumer")
    ) {
        self.queue = queue
        let (stream, continuation) = AsyncStream.makeStream(of: AMQPDelivery.self)
        deliveries = stream
        state = ConsumerState()
        let loop = ConsumerLoop(
            configuration: configuration, topology: topology, queue: queue, prefetch: prefetch,
            state: state, output: continuation, logger: logger)
        startThread(name: "amqp-consumer-\(queue)") { loop.run() }
    }

    deinit { state.requestStop(drainTimeout: .zero) }

    /// Acknowledges a delivery. Returns false when its connection is already gone (the broker has requeued
    /// it). Does not wait for the consumer's thread: the ack is queued and goes out in its next turn,
    /// together with the others queued by then (as one `basic.ack multiple` where they are the oldest in
    /// flight). True means "queued for the live connection": if that connection breaks (or the consumer
    /// stops) before the ack is written, the broker redelivers the message, exactly as for an ack written
    /// but never read by the broker. A redelivered message is handled again: every handler is idempotent.
    @discardableResult
    public func ack(_ delivery: AMQPDelivery) async -> Bool {
        state.queueAck(delivery)
    }

    /// Negatively acknowledges a delivery. With `requeue` it goes back to the queue; without, the queue
    /// dead-letters it (its `x-death` header then says `rejected`).
    @discardableResult
    public func nack(_ delivery: AMQPDelivery, requeue: Bool) async -> Bool {
        await state.settle(delivery, requeue ? .requeue : .reject)
    }

    public var isConnected: Bool { connectedNode != nil }

    /// `basic.ack` and `basic.nack` frames written so far; fewer than the deliveries settled where a
    /// `multiple` ack covered several.
    public var acknowledgementFrames: Int { state.acknowledgementFrames.load(ordering: .relaxed) }

    /// `host:port` of the cluster node the consumer is subscribed on, nil while it is not.
    public var connectedNode: String? { state.connectedNode.withLock { $0 } }

    /// Graceful stop: cancels the subscription so nothing new arrives, waits up to `drainTimeout` for the
    /// deliveries in flight to be acknowledged, then closes; the broker requeues whatever is left.
    public func shutdown(drainTimeout: Duration = .seconds(10)) async {
        state.requestStop(drainTimeout: drainTimeout)
        await state.finished.wait()
    }
}

enum Settlement { case ack, requeue, reject }

final class ConsumerState: Sendable {
    struct Command {
        let tag: UInt64
        let generation: UInt64
        let settlement: Settlement
        /// Nil for an ack, which nobody waits for (`queueAck`).
        let continuation: CheckedContinuation<Bool, Never>?
    }
    struct Shared {
        var commands: [Command] = []
        var stopping = false
        var drainTimeout: Duration = .zero
        var finished = false
        /// The generation of the live connection; nil while there is none.
        var liveGeneration: UInt64?
    }
    let shared = Mutex(Shared())
    let wakeup = Wakeup()
    let finished = Completion()
    /// `host:port` of the node the consumer is subscribed on; nil while it is not.
    let connectedNode = Mutex<String?>(nil)
    /// `basic.ack` and `basic.nack` frames written so far.
    let acknowledgementFrames = Atomic<Int>(0)

    func settle(_ delivery: AMQPDelivery, _ settlement: Settlement) async -> Bool {
        await withCheckedContinuation { continuation in
            let accepted = shared.withLock { s -> Bool in
                guard !s.finished else { return false }
                s.commands.append(
                    Command(
                        tag: delivery.deliveryTag, generation: delivery.generation,
                        settlement: settlement, continuation: continuation))
                return true
            }
            if accepted { wakeup.signal() } else { continuation.resume(returning: false) }
        }
    }

    func queueAck(_ delivery: AMQPDelivery) -> Bool {
        let accepted = shared.withLock { s -> Bool in
            guard !s.finished, s.liveGeneration == delivery.generation else { return false }
            s.commands.append(
                Command(tag: delivery.deliveryTag, generation: delivery.generation, settlement: .ack, continuation: nil)
            )
            return true
        }
        if accepted { wakeup.signal() }
        return accepted
    }

    func requestStop(drainTimeout: Duration) {
        shared.withLock { s in
            if !s.stopping { s.drainTimeout = drainTimeout }
            s.stopping = true
        }
        wakeup.signal()
    }
}

/// The consumer's event loop. Invariant: `run()` and the state below `state` are touched only by the one
/// thread started for it; that is why it may be `@unchecked Sendable`.
final class ConsumerLoop: @unchecked Sendable {
    private let configuration: AMQPConfiguration
    private let topology: AMQPTopology
    private let queue: String
    private let prefetch: UInt16
    private let state: ConsumerState
    private let output: AsyncStream<AMQPDelivery>.Continuation
    private var logger: Logger

    private var handle: AMQPConnectionHandle?
    private var generation: UInt64 = 0
    private var inFlight = Set<UInt64>()
    private var cancelled = false
    private let consumerTag: String
    private var backoff: Backoff
    private var random = SystemRandomNumberGenerator()
    private var nodes: NodeRotation

    init(
        configuration: AMQPConfiguration, topology: AMQPTopology, queue: String, prefetch: UInt16,
        state: ConsumerState, output: AsyncStream<AMQPDelivery>.Continuation, logger: Logger
    ) {
        self.configuration = configuration
        self.topology = topology
        self.queue = queue
        self.prefetch = prefetch
        self.state = state
        self.output = output
        self.logger = logger
        consumerTag = "\(configuration.connectionName)-\(UUID().uuidString.prefix(8).lowercased())"
        backoff = Backoff(initial: configuration.reconnectInitialDelay, maximum: configuration.reconnectMaxDelay)
        nodes = NodeRotation(configuration.nodes, shuffle: configuration.shuffleNodes)
    }

    func run() {
        var drainDeadline: ContinuousClock.Instant?
        while true {
            let (commands, stopping, drainTimeout) = state.shared.withLock { s in
                defer { s.commands = [] }
                return (s.commands, s.stopping, s.drainTimeout)
            }
            settle(commands)

            if stopping {
                if drainDeadline == nil { drainDeadline = .now + drainTimeout }
                if let handle, !cancelled {
                    cancelled = true
                    do { try handle.cancel(consumerTag: consumerTag) } catch { connectionLost(error) }
                }
                if handle == nil || inFlight.isEmpty || ContinuousClock.now >= drainDeadline! { break }
            }

            guard let handle = handle ?? (stopping ? nil : connect()) else {
                if stopping { break }
                state.wakeup.wait(socket: nil, timeout: backoff.next(using: &random))
                continue
            }

            do {
                if !handle.hasBufferedData {
                    state.wakeup.wait(socket: handle.socketFD, timeout: .milliseconds(500))
                }
                // Take what is ready (bounded, so acks are not starved), servicing heartbeats on the way.
                for _ in 0..<256 {
                    switch try handle.nextDelivery(timeout: .zero, generation: generation) {
                    case let .delivery(delivery):
                        if cancelled {
                            // Arrived after basic.cancel while stopping: hand it straight back.
                            try handle.nack(tag: delivery.deliveryTag, requeue: true)
                        } else {
                            inFlight.insert(delivery.deliveryTag)
                            output.yield(delivery)
                        }
                        continue
                    case .event(.consumerCancelled):
                        throw AMQPError.brokerClosed(
                            code: 0, text: "the broker cancelled the consumer", context: "consuming \(queue)")
                    case .event:
                        continue
                    case .nothing:
                        break
                    }
                    break
                }
            } catch {
                connectionLost(error)
            }
        }
        handle?.close()
        handle = nil
        state.connectedNode.withLock { $0 = nil }
        let leftover = state.shared.withLock { s in
            s.finished = true
            s.liveGeneration = nil
            defer { s.commands = [] }
            return s.commands
        }
        leftover.forEach { $0.continuation?.resume(returning: false) }
        output.finish()
        state.finished.finish()
    }

    /// Sends the settlements taken in one loop turn. Acks that cover the oldest deliveries in flight go as
    /// one `basic.ack` with `multiple` (the broker then acks every outstanding tag up to it, which are
    /// exactly these); the rest one by one. Each caller learns whether its own settlement was sent.
    private func settle(_ commands: [ConsumerState.Command]) {
        var valid: [ConsumerState.Command] = []
        var seen = Set<UInt64>()
        for command in commands {
            guard handle != nil, command.generation == generation, inFlight.contains(command.tag),
                seen.insert(command.tag).inserted
            else {
                logger.debug("settling a delivery from a lost connection (or twice); the broker has requeued it")
                command.continuation?.resume(returning: false)
                continue
            }
            valid.append(command)
        }
        guard let handle, !valid.isEmpty else { return }
        let acked = Set(valid.lazy.filter { $0.settlement == .ack }.map(\.tag))
        var upTo: UInt64?
        var covered = 0
        if acked.count > 1 {
            for tag in inFlight.sorted() {
                guard acked.contains(tag) else { break }
                (upTo, covered) = (tag, covered + 1)
            }
            if covered < 2 { upTo = nil }
        }
        var sent = [Bool](repeating: false, count: valid.count)
        var frames = 0
        defer { state.acknowledgementFrames.add(frames, ordering: .relaxed) }
        do {
            if let upTo {
                try handle.ack(tag: upTo, multiple: true)
                frames += 1
                for (i, command) in valid.enumerated() where command.settlement == .ack && command.tag <= upTo {
                    sent[i] = true
                }
            }
            for (i, command) in valid.enumerated() where !sent[i] {
                switch command.settlement {
                case .ack: try handle.ack(tag: command.tag)
                case .requeue: try handle.nack(tag: command.tag, requeue: true)
                case .reject: try handle.nack(tag: command.tag, requeue: false)
                }
                sent[i] = true
                frames += 1
            }
        } catch {
            connectionLost(error)  // clears inFlight: the broker requeues what was not settled
        }
        for (i, command) in valid.enumerated() {
            if sent[i] { inFlight.remove(command.tag) }
            command.continuation?.resume(returning: sent[i])
        }
    }

    private func connect() -> AMQPConnectionHandle? {
        do {
            let handle = try AMQPConnectionHandle.connect(
                configuration: configuration, rotation: &nodes,
                logger: logger, client: "consumer", metadata: ["queue": "\(queue)"]
            ) { (handle) throws(AMQPError) in
                let generated = try handle.declare(topology)
                try handle.qos(prefetch: prefetch)
                try handle.consume(queue: queue.isEmpty ? generated ?? "" : queue, consumerTag: consumerTag)
            }
            self.handle = handle
            generation += 1
            inFlight = []
            state.shared.withLock { [generation] in $0.liveGeneration = generation }
            backoff.reset()
            state.connectedNode.withLock { $0 = handle.url.address }
            logger.info("AMQP consumer subscribed", metadata: ["broker": "\(handle.url.address)", "queue": "\(queue)"])
            return handle
        } catch {
            logger.warning(
                "AMQP consumer cannot subscribe on any node; retrying",
                metadata: ["queue": "\(queue)", "error": "\(error)"])
            return nil
        }
    }

    private func connectionLost(_ error: Error) {
        logger.warning(
            "AMQP consumer lost its connection; unacked deliveries return to the queue",
            metadata: [
                "broker": "\(handle?.url.address ?? "-")", "queue": "\(queue)", "error": "\(error)",
                "in_flight": "\(inFlight.count)",
            ])
        handle = nil
        nodes.lost()
        inFlight = []
        state.shared.withLock { $0.liveGeneration = nil }
        state.connectedNode.withLock { $0 = nil }
    }
}
