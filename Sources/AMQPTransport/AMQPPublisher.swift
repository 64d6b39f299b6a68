import DequeModule
import Foundation
import Logging
import Synchronization

/// Publishes persistent messages with publisher confirms on its own connection and thread.
///
/// `publish` returns only after the broker has confirmed the message, i.e. has written it to every
/// queue it routes to. Publishes are pipelined: many can wait for their confirms at once.
///
/// When the connection drops, every publish that was sent but not yet confirmed is sent again after the
/// reconnect, in its original order, with its original `message_id`; consumers dedupe by that id. A
/// publish that cannot be confirmed within `publishTimeout` fails with `.publishTimedOut`. Publishes are
/// mandatory: a message that matches no queue fails with `.unroutable` instead of being dropped. A
/// publish the broker nacks (it could not store it at that moment) is sent again after a short backoff,
/// until `publishTimeout`.
///
/// Every message goes out with `user_id` set to the connection's login. RabbitMQ refuses a publish whose
/// `user_id` is not the publishing connection's user, so consumers can trust it as the sender's identity
/// (docs/security.md).
public final class AMQPPublisher: Sendable {
    private let state: PublisherState
    private let user: String

    public init(
        configuration: AMQPConfiguration, topology: AMQPTopology = .empty,
        publishTimeout: Duration = .seconds(120), logger: Logger = Logger(label: "amqp.publisher")
    ) {
        state = PublisherState()
        user = configuration.url.user
        let loop = PublisherLoop(
            configuration: configuration, topology: topology, publishTimeout: publishTimeout,
            state: state, logger: logger)
        startThread(name: "amqp-publisher") { loop.run() }
    }

    deinit { state.requestStop(drainTimeout: .zero) }

    /// Publishes and waits for the broker's confirm.
    public func publish(_ message: OutgoingMessage) async throws(AMQPError) {
        var message = message
        message.properties.userId = user
        // Checked here, not in the connection's loop: an encoding failure there looks like a broken
        // connection and would reconnect (and retry the same message) in a loop, blocking every publish.
        if let problem = message.shortStringProblem { throw .invalidMessage(reason: problem) }
        let result: Result<Void, AMQPError> = await withCheckedContinuation { continuation in
            state.enqueue(message, continuation)
        }
        try result.get()
    }

    /// True while a connection to the broker is open.
    public var isConnected: Bool { connectedNode != nil }

    /// `host:port` of the cluster node the publisher is connected to, nil while it is not connected.
    public var connectedNode: String? { state.connectedNode.withLock { $0 } }

    /// Stops accepting publishes, waits up to `drainTimeout` for the ones in flight to be confirmed,
    /// fails the rest with `.shutdown`, and closes the connection.
    public func shutdown(drainTimeout: Duration = .seconds(10)) async {
        state.requestStop(drainTimeout: drainTimeout)
        await state.finished.wait()
    }
}

struct PendingPublish {
    let message: OutgoingMessage
    let continuation: CheckedContinuation<Result<Void, AMQPError>, Never>
    let deadline: ContinuousClock.Instant

    func complete(_ result: Result<Void, AMQPError>) { continuation.resume(returning: result) }
}

/// State shared between callers and the publisher's thread.
final class PublisherState: Sendable {
    struct Shared {
        var pending: [PendingPublish] = []
        var stopping = false
        var drainTimeout: Duration = .zero
        var publishTimeout: Duration = .seconds(120)
    }
    let shared = Mutex(Shared())
    let wakeup = Wakeup()
    let finished = Completion()
    /// `host:port` of the node the publisher is connected to; nil while it is not.
    let connectedNode = Mutex<String?>(nil)

    func enqueue(_ message: OutgoingMessage, _ continuation: CheckedContinuation<Result<Void, AMQPError>, Never>) {
        let accepted = shared.withLock { s -> Bool in
            guard !s.stopping else { return false }
            s.pending.append(
                PendingPublish(
                    message: message, continuation: continuation, deadline: .now + s.publishTimeout))
            return true
        }
        if accepted { wakeup.signal() } else { continuation.resume(returning: .failure(.shutdown)) }
    }

    func requestStop(drainTimeout: Duration) {
        shared.withLock { s in
            if !s.stopping { s.drainTimeout = drainTimeout }
            s.stopping = true
        }
        wakeup.signal()
    }
}

/// The publisher's event loop. Invariant: `run()` and everything it touches below `state` execute on
/// the one thread started for it; that is why it may be `@unchecked Sendable`.
final class PublisherLoop: @unchecked Sendable {
    private let configuration: AMQPConfiguration
    private let topology: AMQPTopology
    private let state: PublisherState
    private var logger: Logger

    private var handle: AMQPConnectionHandle?
    // Deques: messages leave from the front (written, confirmed), one at a time or a few, while hundreds
    // wait behind them; an array moved all of those with every confirm.
    private var toSend: Deque<PendingPublish> = []
    private var outstanding: Deque<(tag: UInt64, publish: PendingPublish)> = []
    private var returned: [String: AMQPError] = [:]
    /// Nacked publishes waiting to be sent again, each with the time it is due.
    private var nacked: [(due: ContinuousClock.Instant, publish: PendingPublish)] = []
    private var nackBackoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
    private var nextTag: UInt64 = 1
    /// After the broker closed the channel over one of several unconfirmed publishes, that many are sent
    /// one at a time (each waits for its confirm), so that a refusal names exactly the message refused.
    private var oneAtATime = 0
    private var backoff: Backoff
    private var random = SystemRandomNumberGenerator()
    private var nodes: NodeRotation

    init(
        configuration: AMQPConfiguration, topology: AMQPTopology, publishTimeout: Duration,
        state: PublisherState, logger: Logger
    ) {
        self.configuration = configuration
        self.topology = topology
        self.state = state
        self.logger = logger
        backoff = Backoff(initial: configuration.reconnectInitialDelay, maximum: configuration.reconnectMaxDelay)
        nodes = NodeRotation(configuration.nodes, shuffle: configuration.shuffleNodes)
        state.shared.withLock { $0.publishTimeout = publishTimeout }
    }

    func run() {
        var drainDeadline: ContinuousClock.Instant?
        while true {
            let (incoming, stopping, drainTimeout) = state.shared.withLock { s in
                defer { s.pending = [] }
                return (s.pending, s.stopping, s.drainTimeout)
            }
            toSend.append(contentsOf: incoming)
            let now = ContinuousClock.now
            toSend.append(contentsOf: nacked.filter { $0.due <= now }.map(\.publish))
            nacked.removeAll { $0.due <= now }
            expireOverdue()

            if stopping {
                if drainDeadline == nil { drainDeadline = .now + drainTimeout }
                if toSend.isEmpty && outstanding.isEmpty && nacked.isEmpty { break }
                if ContinuousClock.now >= drainDeadline! {
                    failAll(.shutdown)
                    break
                }
            }

            guard let handle = handle ?? connect() else {
                if stopping && handle == nil {
                    failAll(.shutdown)
                    break
                }
                let delay = backoff.next(using: &random)
                state.wakeup.wait(socket: nil, timeout: delay)
                continue
            }

            do {
                try sendWaiting(on: handle)
                if !handle.hasBufferedData {
                    let nextDue = nacked.map(\.due).min().map { max(.zero, $0 - ContinuousClock.now) }
                    state.wakeup.wait(
                        socket: handle.socketFD, timeout: min(.milliseconds(500), nextDue ?? .milliseconds(500)))
                }
                // Read everything that is ready; also services heartbeats when nothing is.
                while let event = try handle.nextFrame(timeout: .zero) {
                    process(event)
                }
            } catch {
                connectionLost(error)
            }
        }
        handle?.close()
        handle = nil
        state.connectedNode.withLock { $0 = nil }
        state.finished.finish()
    }

    /// Writes the messages waiting (one, while `oneAtATime` resends after a nack), each recorded as
    /// outstanding once written. Several are written corked and sent together when uncorked, also when a
    /// write fails.
    private func sendWaiting(on handle: AMQPConnectionHandle) throws(AMQPError) {
        let corked = toSend.count > 1 && oneAtATime == 0
        if corked { handle.setCorked(true) }
        var sent = 0
        defer {
            toSend.removeFirst(sent)
            if corked { handle.setCorked(false) }
        }
        while sent < toSend.count && (oneAtATime == 0 || outstanding.isEmpty) {
            let publish = toSend[sent]
            try handle.publish(publish.message)
            sent += 1
            outstanding.append((nextTag, publish))
            nextTag += 1
            if oneAtATime > 0 { oneAtATime -= 1 }
        }
    }

    private func connect() -> AMQPConnectionHandle? {
        do {
            let handle = try AMQPConnectionHandle.connect(
                configuration: configuration, rotation: &nodes,
                logger: logger, client: "publisher"
            ) { (handle) throws(AMQPError) in
                try handle.declare(topology)
                try handle.enablePublisherConfirms()
            }
            self.handle = handle
            nextTag = 1
            backoff.reset()
            state.connectedNode.withLock { $0 = handle.url.address }
            logger.info(
                "AMQP publisher connected",
                metadata: ["broker": "\(handle.url.address)", "resending": "\(toSend.count)"])
            return handle
        } catch {
            logger.warning("AMQP publisher cannot connect to any node; retrying", metadata: ["error": "\(error)"])
            if error.isPermanent {
                // Nothing will change by retrying these publishes: report the reason to their callers.
                toSend.forEach { $0.complete(.failure(error)) }
                toSend = []
            }
            return nil
        }
    }

    private func process(_ event: AMQPFrameEvent) {
        switch event {
        case let .publisherAck(tag, multiple), let .publisherNack(tag, multiple):
            var isAck = false
            if case .publisherAck = event { isAck = true }
            let confirmed: [PendingPublish]
            if multiple {
                let count = outstanding.prefix { $0.tag <= tag }.count
                confirmed = outstanding.prefix(count).map(\.publish)
                outstanding.removeFirst(count)
            } else if let index = outstanding.firstIndex(where: { $0.tag == tag }) {
                confirmed = [outstanding.remove(at: index).publish]
            } else {
                confirmed = []
            }
            for publish in confirmed {
                let id = publish.message.properties.messageId
                if let error = returned.removeValue(forKey: id ?? "") {
                    publish.complete(.failure(error))
                } else if isAck {
                    nackBackoff.reset()
                    publish.complete(.success(()))
                } else if publish.deadline > .now {
                    // A nack means the broker could not store it right now (a quorum queue without a
                    // leader, say). Keep the promise "stored or timed out": send it again after a pause.
                    logger.warning(
                        "RabbitMQ nacked a publish; sending it again", metadata: ["message_id": "\(id ?? "-")"])
                    nacked.append((.now + nackBackoff.next(using: &random), publish))
                } else {
                    publish.complete(.failure(.publishNacked(messageId: id)))
                }
            }
        case let .returned(messageId, exchange, routingKey, replyText):
            returned[messageId ?? ""] = .unroutable(exchange: exchange, routingKey: routingKey, replyText: replyText)
        case .consumerCancelled, .heartbeatOrOther:
            break
        }
    }

    private func connectionLost(_ error: Error) {
        logger.warning(
            "AMQP publisher lost its connection; unconfirmed messages will be sent again",
            metadata: [
                "broker": "\(handle?.url.address ?? "-")", "error": "\(error)", "unconfirmed": "\(outstanding.count)",
            ])
        handle = nil
        nodes.lost()
        state.connectedNode.withLock { $0 = nil }
        returned = [:]
        if let amqpError = error as? AMQPError, amqpError.isPermanent {
            // The broker closed the channel over a publish (403: not permitted, 404: no such exchange)
            // and ignored the ones after it. Alone in flight, it is the one refused. With others in flight
            // it could be any of them: they are all sent again one at a time, so the next refusal is exact
            // and no other message is failed in its place.
            if outstanding.count == 1 {
                outstanding.removeFirst().publish.complete(.failure(amqpError))
            } else if outstanding.count > 1 {
                oneAtATime = max(oneAtATime, outstanding.count)
            }
        }
        toSend.insert(contentsOf: outstanding.map(\.publish), at: 0)
        outstanding = []
    }

    private func expireOverdue() {
        let now = ContinuousClock.now
        toSend.removeAll { publish in
            guard publish.deadline <= now else { return false }
            publish.complete(
                .failure(
                    .publishTimedOut(
                        messageId: publish.message.properties.messageId,
                        after: state.shared.withLock { $0.publishTimeout })))
            return true
        }
    }

    private func failAll(_ error: AMQPError) {
        (outstanding.map(\.publish) + toSend + nacked.map(\.publish)).forEach { $0.complete(.failure(error)) }
        outstanding = []
        toSend = []
        nacked = []
    }
}

extension Error {
    var isPermanent: Bool { (self as? AMQPError)?.isPermanent ?? false }
}

extension OutgoingMessage {
    /// AMQP 0-9-1 short strings (exchange, routing key, the string properties, header names) hold at most
    /// 255 bytes. Nil when every one fits.
    public var shortStringProblem: String? {
        let fields: [(String, String?)] =
            [
                ("exchange", exchange), ("routing key", routingKey), ("message_id", properties.messageId),
                ("correlation_id", properties.correlationId), ("user_id", properties.userId), ("type", properties.type),
                ("app_id", properties.appId), ("content_type", properties.contentType),
            ] + properties.headers.keys.map { ("header name", $0) }
        for case let (name, value?) in fields where value.utf8.count > 255 {
            return "\(name) is \(value.utf8.count) bytes, more than AMQP's 255 (starts '\(value.prefix(40))…')"
        }
        return nil
    }
}
