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

    /// Acknowledges a delivery. Returns false when its connection is gone (the broker has requeued it).
    @discardableResult
    public func ack(_ delivery: AMQPDelivery) async -> Bool {
        await state.settle(delivery, .ack)
    }

    /// Negatively acknowledges a delivery. With `requeue` it goes back to the queue; without, the queue
    /// dead-letters it (its `x-death` header then says `rejected`).
    @discardableResult
    public func nack(_ delivery: AMQPDelivery, requeue: Bool) async -> Bool {
        await state.settle(delivery, requeue ? .requeue : .reject)
    }

    public var isConnected: Bool { connectedNode != nil }

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
        let continuation: CheckedContinuation<Bool, Never>
    }
    struct Shared {
        var commands: [Command] = []
        var stopping = false
        var drainTimeout: Duration = .zero
        var finished = false
    }
    let shared = Mutex(Shared())
    let wakeup = Wakeup()
    let finished = Completion()
    /// `host:port` of the node the consumer is subscribed on; nil while it is not.
    let connectedNode = Mutex<String?>(nil)

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
            defer { s.commands = [] }
            return s.commands
        }
        leftover.forEach { $0.continuation.resume(returning: false) }
        output.finish()
        state.finished.finish()
    }

    private func settle(_ commands: [ConsumerState.Command]) {
        for command in commands {
            guard let handle, command.generation == generation, inFlight.contains(command.tag) else {
                logger.debug("settling a delivery from a lost connection; the broker has requeued it")
                command.continuation.resume(returning: false)
                continue
            }
            do {
                switch command.settlement {
                case .ack: try handle.ack(tag: command.tag)
                case .requeue: try handle.nack(tag: command.tag, requeue: true)
                case .reject: try handle.nack(tag: command.tag, requeue: false)
                }
                inFlight.remove(command.tag)
                command.continuation.resume(returning: true)
            } catch {
                command.continuation.resume(returning: false)
                connectionLost(error)
            }
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
        state.connectedNode.withLock { $0 = nil }
    }
}
