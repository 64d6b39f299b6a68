internal import CRabbitMQ
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Settings shared by publishers and consumers.
public struct AMQPConfiguration: Sendable {
    /// The nodes of the broker cluster (one for a single broker), all with the same credentials and
    /// vhost (`AMQPURL.list`). A client connects to one of them and, when it loses it, to another.
    public var nodes: [AMQPURL]
    /// Shuffle `nodes` before the first connect (the default, so that a fleet's workers spread over the
    /// cluster), or try them in the order listed (a preferred node first, e.g. the one on the same host).
    public var shuffleNodes = true
    /// The first node: the user, password and vhost of every node.
    public var url: AMQPURL { nodes[0] }
    /// Heartbeat interval in seconds (0 turns heartbeats off). The URL's `heartbeat` wins when present.
    /// rabbitmq-c gives up on a connection that has been silent for two intervals, so this bounds how long
    /// a node that hangs, or a host that vanished without closing its sockets, goes unnoticed
    /// (docs/scaling.md). A node that dies on a live host closes its sockets and is noticed at once.
    public var heartbeat: Int
    /// TCP connect and, separately, the AMQP handshake and login.
    public var connectTimeout: Duration
    /// How long one request to the broker (a declare, a subscription, confirm.select) may go unanswered
    /// before the connection is given up and the next node tried. A node can keep a connection alive
    /// (heartbeats) and still not answer: RabbitMQ holds every change to its metadata, a binding declared
    /// again included, until a hung peer is declared down (net_ticktime, about a minute; docs/scaling.md).
    public var rpcTimeout: Duration = .seconds(30)
    /// Shown as the connection name in the management UI, e.g. `probe@host-1`.
    public var connectionName: String
    /// For amqps: a PEM bundle of CAs to trust instead of the system store. Peer and host-name
    /// verification are always on.
    public var caFile: String?
    /// Reconnect backoff: doubles from `initial` to `max`, with full jitter. It applies between passes
    /// over the nodes; within a pass the next node is tried at once.
    public var reconnectInitialDelay: Duration
    public var reconnectMaxDelay: Duration
    /// What a publisher or consumer does with its topology on every (re)connect.
    public var topologyMode: TopologyMode

    public enum TopologyMode: String, Sendable {
        /// Declare exchanges, queues and bindings (needs configure permission on them): development
        /// brokers and the tests.
        case declare
        /// Only check, by passive declares that need no permission, that the shared exchanges and queues
        /// exist; the deployment created them (docs/deployment.md). A worker's user then needs no
        /// configure permission at all. Exclusive queues (a private reply queue) and their bindings are
        /// still declared.
        case verify
    }

    /// The default heartbeat, in seconds: a hung node is given up after about 20 s.
    public static let defaultHeartbeat = 10

    public init(
        nodes: [AMQPURL], heartbeat: Int = defaultHeartbeat, connectTimeout: Duration = .seconds(10),
        connectionName: String = "ec2-recovery-fleet", caFile: String? = nil,
        reconnectInitialDelay: Duration = .milliseconds(100), reconnectMaxDelay: Duration = .seconds(5),
        topologyMode: TopologyMode = .declare
    ) {
        precondition(!nodes.isEmpty, "AMQPConfiguration needs at least one node")
        self.topologyMode = topologyMode
        self.nodes = nodes
        self.heartbeat = nodes[0].heartbeat ?? heartbeat
        self.connectTimeout = connectTimeout
        self.connectionName = connectionName
        self.caFile = caFile
        self.reconnectInitialDelay = reconnectInitialDelay
        self.reconnectMaxDelay = reconnectMaxDelay
    }

    /// One broker.
    public init(
        url: AMQPURL, heartbeat: Int = defaultHeartbeat, connectTimeout: Duration = .seconds(10),
        connectionName: String = "ec2-recovery-fleet", caFile: String? = nil,
        reconnectInitialDelay: Duration = .milliseconds(100), reconnectMaxDelay: Duration = .seconds(5),
        topologyMode: TopologyMode = .declare
    ) {
        self.init(
            nodes: [url], heartbeat: heartbeat, connectTimeout: connectTimeout, connectionName: connectionName,
            caFile: caFile, reconnectInitialDelay: reconnectInitialDelay, reconnectMaxDelay: reconnectMaxDelay,
            topologyMode: topologyMode)
    }
}

/// What the event loops learn from a frame that is not a delivery.
enum AMQPFrameEvent {
    case publisherAck(tag: UInt64, multiple: Bool)
    case publisherNack(tag: UInt64, multiple: Bool)
    /// A mandatory publish came back unroutable. The returned message's id names it.
    case returned(messageId: String?, exchange: String, routingKey: String, replyText: String)
    /// The broker cancelled our consumer (e.g. the queue was deleted).
    case consumerCancelled
    case heartbeatOrOther
}

/// Owns one rabbitmq-c connection with one open channel (number 1).
///
/// Invariant: an instance is created, used and destroyed on a single thread (the event-loop thread of
/// the publisher or consumer that owns it). rabbitmq-c connections are not thread-safe.
final class AMQPConnectionHandle {
    private let state: amqp_connection_state_t
    let channel: amqp_channel_t = 1
    private var open: Bool
    let url: AMQPURL
    let topologyMode: AMQPConfiguration.TopologyMode

    private init(state: amqp_connection_state_t, url: AMQPURL, topologyMode: AMQPConfiguration.TopologyMode) {
        self.state = state
        self.url = url
        self.topologyMode = topologyMode
        open = true
    }

    /// Opens the socket to `node`, logs in and opens channel 1. On failure the C connection is destroyed
    /// here; once an instance exists, its deinit owns the destruction.
    static func connect(configuration: AMQPConfiguration, node url: AMQPURL) throws(AMQPError)
        -> AMQPConnectionHandle
    {
        guard let state = amqp_new_connection() else {
            throw AMQPError.library(status: -1, message: "out of memory", context: "amqp_new_connection")
        }
        var handshake = timeval(configuration.connectTimeout)
        amqp_set_handshake_timeout(state, &handshake)
        var rpc = timeval(configuration.rpcTimeout)
        amqp_set_rpc_timeout(state, &rpc)
        do throws(AMQPError) {
            try openAndLogin(state, configuration, url)
        } catch {
            amqp_destroy_connection(state)
            throw error
        }
        let handle = AMQPConnectionHandle(state: state, url: url, topologyMode: configuration.topologyMode)
        amqp_channel_open(state, handle.channel)
        try handle.check(amqp_get_rpc_reply(state), "channel.open")
        return handle
    }

    private static func openAndLogin(
        _ state: amqp_connection_state_t, _ configuration: AMQPConfiguration, _ url: AMQPURL
    ) throws(AMQPError) {
        let socket: OpaquePointer?
        if url.tls {
            socket = amqp_ssl_socket_new(state)
            if let socket {
                amqp_ssl_socket_set_verify_peer(socket, 1)
                amqp_ssl_socket_set_verify_hostname(socket, 1)
                if let caFile = configuration.caFile {
                    let status = amqp_ssl_socket_set_cacert(socket, caFile)
                    if status != AMQP_STATUS_OK.rawValue {
                        throw AMQPError.connectionFailed(
                            host: url.host, port: url.port,
                            reason: "cannot load CA file \(caFile): \(statusString(status))")
                    }
                }
            }
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else {
            throw AMQPError.library(status: -1, message: "cannot create socket", context: "connect")
        }
        var timeout = timeval(configuration.connectTimeout)
        let status = amqp_socket_open_noblock(socket, url.host, Int32(url.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError.connectionFailed(host: url.host, port: url.port, reason: statusString(status))
        }
        let reply = try withTable([
            "connection_name": .string(configuration.connectionName),
            "product": "ec2-recovery-fleet",
        ]) { properties in
            withUnsafePointer(to: properties) { props in
                cshim_amqp_login_plain_with_properties(
                    state, url.vhost, 0, 131_072, Int32(configuration.heartbeat), props, url.user, url.password)
            }
        }
        guard reply.reply_type != AMQP_RESPONSE_NORMAL else { return }
        let error = Self.error(from: reply, context: "login")
        switch error {
        case .brokerClosed(let code, let text, _) where code == 403 || code == 530:
            throw AMQPError.loginRefused(user: url.user, vhost: url.vhost, reason: text)
        case .library(let status, _, _)
        where status == AMQP_STATUS_SOCKET_CLOSED.rawValue
            || status == AMQP_STATUS_CONNECTION_CLOSED.rawValue:
            // RabbitMQ closes the socket on a failed PLAIN login before it sends a close reason.
            throw AMQPError.loginRefused(
                user: url.user, vhost: url.vhost, reason: "the broker closed the connection during login")
        default:
            throw error
        }
    }

    deinit {
        if open {
            amqp_channel_close(state, channel, Int32(AMQP_REPLY_SUCCESS))
            amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        }
        amqp_destroy_connection(state)
    }

    /// Closes the channel and the connection politely; the broker requeues anything unacked.
    func close() {
        guard open else { return }
        open = false
        amqp_channel_close(state, channel, Int32(AMQP_REPLY_SUCCESS))
        amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
    }

    var socketFD: Int32 { amqp_get_sockfd(state) }
    /// True when rabbitmq-c already holds frames or bytes, so polling the socket would miss them.
    var hasBufferedData: Bool { amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 }

    /// Holds the socket's partial segments back (TCP_CORK) while `on`; turning it off sends what is held.
    /// rabbitmq-c writes every frame of a message with its own `send`, and on its own each message's last
    /// frame goes out as a segment: a batch written corked goes out as full segments instead (one pass
    /// through the TCP stack, and on loopback through the broker's receive path, for many messages).
    /// Best effort: a socket that refuses the option only costs the batching.
    func setCorked(_ on: Bool) {
        #if os(Linux)
            var value: Int32 = on ? 1 : 0
            _ = setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size))
        #endif  // Linux only (TCP_NOPUSH elsewhere behaves differently): elsewhere, no batching
    }

    // MARK: Declarations

    /// Declares (or in verify mode checks) `topology`. A queue with an empty name is named by the broker
    /// (`amq.gen-…`, a name no client may declare, so a permission for it cannot be turned into one for an
    /// exchange); its bindings name it with "" too. Returns the name the broker gave it.
    @discardableResult
    func declare(_ topology: AMQPTopology) throws(AMQPError) -> String? {
        let verify = topologyMode == .verify
        let privateQueues = Set(topology.queues.filter(\.exclusive).map(\.name))
        var generated: String?
        for exchange in topology.exchanges {
            try Self.withTable(verify ? [:] : exchange.arguments) { (args) throws(AMQPError) in
                try Self.withBytes(exchange.name) { (name) throws(AMQPError) in
                    try Self.withBytes(exchange.type) { (type) throws(AMQPError) in
                        amqp_exchange_declare(
                            state, channel, name, type, verify ? 1 : 0, exchange.durable ? 1 : 0, 0,
                            exchange.isInternal ? 1 : 0, args)
                        try checkDeclared(amqp_get_rpc_reply(state), "exchange", exchange.name, passive: verify)
                    }
                }
            }
        }
        for queue in topology.queues {
            let passive = verify && !queue.exclusive
            try Self.withTable(passive ? [:] : queue.arguments) { (args) throws(AMQPError) in
                try Self.withBytes(queue.name) { (name) throws(AMQPError) in
                    let ok = amqp_queue_declare(
                        state, channel, name, passive ? 1 : 0, queue.durable ? 1 : 0, queue.exclusive ? 1 : 0,
                        queue.autoDelete ? 1 : 0, args)
                    try checkDeclared(amqp_get_rpc_reply(state), "queue", queue.name, passive: passive)
                    if queue.name.isEmpty, let ok { generated = Self.string(ok.pointee.queue) }
                }
            }
        }
        // Bindings cannot be checked over AMQP; in verify mode only a private queue's are made.
        for binding in topology.bindings where !verify || privateQueues.contains(binding.queue) {
            let target = binding.queue.isEmpty ? generated ?? "" : binding.queue
            try Self.withBytes(target) { (queue) throws(AMQPError) in
                try Self.withBytes(binding.exchange) { (exchange) throws(AMQPError) in
                    try Self.withBytes(binding.routingKey) { (key) throws(AMQPError) in
                        amqp_queue_bind(state, channel, queue, exchange, key, amqp_empty_table)
                        try check(amqp_get_rpc_reply(state), "binding \(target) to \(binding.exchange)")
                    }
                }
            }
        }
        return generated
    }

    /// A passive declare of something missing says who creates it, instead of a bare 404.
    private func checkDeclared(_ reply: amqp_rpc_reply_t, _ what: String, _ name: String, passive: Bool)
        throws(AMQPError)
    {
        do {
            try check(reply, passive ? "checking that \(what) \(name) exists" : "declaring \(what) \(name)")
        } catch {
            if passive, case .brokerClosed(404, _, _) = error {
                throw AMQPError.brokerClosed(
                    code: 404,
                    text:
                        "\(what) '\(name)' does not exist; the deployment creates the fleet's topology (recoveryctl topology apply --identities, docs/deployment.md)",
                    context: "checking the topology")
            }
            throw error
        }
    }

    /// Deletes a queue (tests and `recoveryctl` use this; workers never do).
    func deleteQueue(_ name: String) throws(AMQPError) {
        try Self.withBytes(name) { (bytes) throws(AMQPError) in
            amqp_queue_delete(state, channel, bytes, 0, 0)
            try check(amqp_get_rpc_reply(state), "deleting queue \(name)")
        }
    }

    func deleteExchange(_ name: String) throws(AMQPError) {
        try Self.withBytes(name) { (bytes) throws(AMQPError) in
            amqp_exchange_delete(state, channel, bytes, 0)
            try check(amqp_get_rpc_reply(state), "deleting exchange \(name)")
        }
    }

    /// Message count of a queue, by a passive declare.
    func messageCount(queue: String) throws(AMQPError) -> UInt32 {
        try Self.withBytes(queue) { (bytes) throws(AMQPError) in
            let ok = amqp_queue_declare(state, channel, bytes, 1, 0, 0, 0, amqp_empty_table)
            try check(amqp_get_rpc_reply(state), "inspecting queue \(queue)")
            return ok?.pointee.message_count ?? 0
        }
    }

    // MARK: Publishing

    func enablePublisherConfirms() throws(AMQPError) {
        amqp_confirm_select(state, channel)
        try check(amqp_get_rpc_reply(state), "confirm.select")
    }

    /// Sends one basic.publish (mandatory, so an unroutable message comes back instead of vanishing).
    func publish(_ message: OutgoingMessage) throws(AMQPError) {
        let status = Self.withProperties(message.properties) { props in
            message.body.withUnsafeBytes { body in
                Self.withBytesUnchecked(message.exchange) { exchange in
                    Self.withBytesUnchecked(message.routingKey) { key in
                        amqp_basic_publish(
                            state, channel, exchange, key, 1, 0, props,
                            cshim_amqp_bytes(body.baseAddress, body.count))
                    }
                }
            }
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError.library(status: status, message: Self.statusString(status), context: "basic.publish")
        }
    }

    // MARK: Consuming

    func qos(prefetch: UInt16) throws(AMQPError) {
        amqp_basic_qos(state, channel, 0, prefetch, 0)
        try check(amqp_get_rpc_reply(state), "basic.qos")
    }

    func consume(queue: String, consumerTag: String) throws(AMQPError) {
        try Self.withBytes(queue) { (q) throws(AMQPError) in
            try Self.withBytes(consumerTag) { (tag) throws(AMQPError) in
                amqp_basic_consume(state, channel, q, tag, 0, 0, 0, amqp_empty_table)
                try check(amqp_get_rpc_reply(state), "basic.consume on \(queue)")
            }
        }
    }

    func cancel(consumerTag: String) throws(AMQPError) {
        try Self.withBytes(consumerTag) { (tag) throws(AMQPError) in
            amqp_basic_cancel(state, channel, tag)
            try check(amqp_get_rpc_reply(state), "basic.cancel")
        }
    }

    /// `multiple`: every outstanding delivery up to and including `tag`.
    func ack(tag: UInt64, multiple: Bool = false) throws(AMQPError) {
        let status = amqp_basic_ack(state, channel, tag, multiple ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError.library(status: status, message: Self.statusString(status), context: "basic.ack")
        }
    }

    func nack(tag: UInt64, requeue: Bool) throws(AMQPError) {
        let status = amqp_basic_nack(state, channel, tag, 0, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError.library(status: status, message: Self.statusString(status), context: "basic.nack")
        }
    }

    /// Result of one non-blocking read attempt.
    enum Incoming {
        case delivery(AMQPDelivery)
        case event(AMQPFrameEvent)
        case nothing
    }

    /// Reads the next delivery or frame if one is ready within `timeout`. Throws when the connection or
    /// channel is gone.
    func nextDelivery(timeout: Duration, generation: UInt64) throws(AMQPError) -> Incoming {
        amqp_maybe_release_buffers(state)
        var envelope = amqp_envelope_t()
        var tv = Self.timeval(timeout)
        let reply = amqp_consume_message(state, &envelope, &tv, 0)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            defer { amqp_destroy_envelope(&envelope) }
            let delivery = AMQPDelivery(
                body: Self.copy(envelope.message.body),
                properties: Self.properties(from: envelope.message.properties),
                exchange: Self.string(envelope.exchange), routingKey: Self.string(envelope.routing_key),
                redelivered: envelope.redelivered != 0, deliveryTag: envelope.delivery_tag,
                generation: generation)
            return .delivery(delivery)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_TIMEOUT.rawValue:
            return .nothing
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue:
            return .event(try nextFrame(timeout: .zero) ?? .heartbeatOrOther)
        default:
            throw Self.error(from: reply, context: "consuming")
        }
    }

    /// Reads one frame (publisher side: confirms and returns) if one arrives within `timeout`.
    func nextFrame(timeout: Duration) throws(AMQPError) -> AMQPFrameEvent? {
        var frame = amqp_frame_t()
        var tv = Self.timeval(timeout)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &tv)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
        guard status == AMQP_STATUS_OK.rawValue else {
            throw AMQPError.library(status: status, message: Self.statusString(status), context: "reading a frame")
        }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return .heartbeatOrOther }
        let decoded = cshim_frame_method_decoded(&frame)
        switch cshim_frame_method_id(&frame) {
        case AMQP_BASIC_ACK_METHOD:
            let ack = decoded!.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .publisherAck(tag: ack.delivery_tag, multiple: ack.multiple != 0)
        case AMQP_BASIC_NACK_METHOD:
            let nack = decoded!.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .publisherNack(tag: nack.delivery_tag, multiple: nack.multiple != 0)
        case AMQP_BASIC_RETURN_METHOD:
            let ret = decoded!.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let exchange = Self.string(ret.exchange)
            let key = Self.string(ret.routing_key)
            let text = Self.string(ret.reply_text)
            var message = amqp_message_t()
            let reply = amqp_read_message(state, frame.channel, &message, 0)
            guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
                throw Self.error(from: reply, context: "reading a returned message")
            }
            defer { amqp_destroy_message(&message) }
            let props = Self.properties(from: message.properties)
            return .returned(messageId: props.messageId, exchange: exchange, routingKey: key, replyText: text)
        case AMQP_BASIC_CANCEL_METHOD:
            return .consumerCancelled
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            open = false
            throw AMQPError.brokerClosed(
                code: Int(close.reply_code), text: Self.string(close.reply_text), context: "channel")
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            open = false
            throw AMQPError.brokerClosed(
                code: Int(close.reply_code), text: Self.string(close.reply_text), context: "connection")
        default:
            return .heartbeatOrOther
        }
    }

    // MARK: Status checking (every rabbitmq-c reply goes through here)

    private func check(_ reply: amqp_rpc_reply_t, _ context: String) throws(AMQPError) {
        guard reply.reply_type != AMQP_RESPONSE_NORMAL else { return }
        let error = Self.error(from: reply, context: context)
        if case .brokerClosed = error { open = false }
        throw error
    }

    static func error(from reply: amqp_rpc_reply_t, context: String) -> AMQPError {
        switch reply.reply_type {
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return .library(status: reply.library_error, message: statusString(reply.library_error), context: context)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            switch reply.reply.id {
            case AMQP_CONNECTION_CLOSE_METHOD:
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                return .brokerClosed(code: Int(close.reply_code), text: string(close.reply_text), context: context)
            case AMQP_CHANNEL_CLOSE_METHOD:
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                return .brokerClosed(code: Int(close.reply_code), text: string(close.reply_text), context: context)
            default:
                return .library(status: -1, message: "unexpected server method \(reply.reply.id)", context: context)
            }
        default:
            return .library(status: -1, message: "no RPC reply", context: context)
        }
    }

    static func statusString(_ status: Int32) -> String {
        guard let s = amqp_error_string2(status) else { return "status \(status)" }
        return String(cString: s)
    }
}
