import Foundation
import Logging

extension AMQPURL {
    /// `AMQP_URL`'s list form: one or more `amqp[s]://` URLs separated by commas, the nodes of one RabbitMQ
    /// cluster. Every node takes the same scheme, user, password, vhost and heartbeat (a client logs in to
    /// whichever node it reaches, as the same identity); a difference, or a node listed twice, is an
    /// error that names the node but never a password.
    public static func list(_ text: String) throws(AMQPError) -> [AMQPURL] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let redacted = parts.map { redact($0) }.joined(separator: ",")
        guard !parts.isEmpty else { throw AMQPError.invalidURL(reason: "no URL", url: redacted) }
        var nodes: [AMQPURL] = []
        for part in parts { nodes.append(try AMQPURL(part)) }
        let first = nodes[0]
        for (index, node) in nodes.enumerated().dropFirst() {
            let differences = [
                node.tls != first.tls ? "scheme" : nil, node.user != first.user ? "user" : nil,
                node.password != first.password ? "password" : nil, node.vhost != first.vhost ? "vhost" : nil,
                node.heartbeat != first.heartbeat ? "heartbeat" : nil,
            ].compactMap { $0 }
            if !differences.isEmpty {
                throw AMQPError.invalidURL(
                    reason:
                        "node \(index + 1) (\(node.address)) has another \(differences.joined(separator: ", ")) than node 1 (\(first.address)); every node of the cluster takes the same scheme, user, password, vhost and heartbeat",
                    url: redacted)
            }
            if nodes[..<index].contains(where: { $0.address == node.address }) {
                throw AMQPError.invalidURL(reason: "node \(node.address) is listed twice", url: redacted)
            }
        }
        return nodes
    }

    /// `host:port`, what logs name a node by (no user, no password).
    public var address: String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// The order in which a publisher, consumer or admin connection tries a cluster's nodes.
///
/// The nodes are shuffled once (so the workers of a fleet spread over the cluster instead of all piling
/// onto the first node listed), then tried in that order, round and round. A connection that is lost
/// makes the next attempt start at the node after the one it was on: the node it lost is the likeliest to
/// be down, and is tried last. A pure value; the loops own one each.
struct NodeRotation {
    private(set) var order: [AMQPURL]
    /// Index in `order` of the node the next pass starts with.
    private(set) var start = 0
    /// Index in `order` of the node connected to last.
    private var current = 0

    init<G: RandomNumberGenerator>(_ nodes: [AMQPURL], shuffle: Bool, using generator: inout G) {
        precondition(!nodes.isEmpty, "a cluster has at least one node")
        order = shuffle ? nodes.shuffled(using: &generator) : nodes
    }

    init(_ nodes: [AMQPURL], shuffle: Bool) {
        var generator = SystemRandomNumberGenerator()
        self.init(nodes, shuffle: shuffle, using: &generator)
    }

    /// Every node once, starting with `start`.
    var pass: [AMQPURL] { Array(order[start...] + order[..<start]) }

    /// A connection to `node` is open.
    mutating func connected(to node: AMQPURL) {
        current = order.firstIndex(of: node) ?? current
        start = current
    }

    /// The connection was lost: the next pass starts with the node after it.
    mutating func lost() { start = (current + 1) % order.count }
}

extension AMQPConnectionHandle {
    /// Tries the nodes of one pass in turn, each with a connect, a login and `setUp` (declaring the
    /// topology, subscribing): the first node where all of that works is the one connected to. A node that
    /// fails is logged (when there are others to try) as `client` with `metadata`. Throws when every node
    /// failed: a permanent error if one of them gave one (retrying cannot help), else the last node's error.
    static func connect(
        configuration: AMQPConfiguration, rotation: inout NodeRotation, logger: Logger? = nil, client: String = "",
        metadata: Logger.Metadata = [:], setUp: (AMQPConnectionHandle) throws(AMQPError) -> Void
    ) throws(AMQPError) -> AMQPConnectionHandle {
        var failure: AMQPError?
        for node in rotation.pass {
            do {
                let handle = try connect(configuration: configuration, node: node)
                try setUp(handle)
                rotation.connected(to: node)
                return handle
            } catch {
                // With one node, the caller's own line says it all.
                if let logger, rotation.order.count > 1 {
                    logger.warning(
                        "AMQP \(client) cannot use a node; trying the next",
                        metadata: metadata.merging(["broker": "\(node.address)", "error": "\(error)"]) { $1 })
                }
                if failure?.isPermanent != true { failure = error }
            }
        }
        throw failure ?? AMQPError.library(status: -1, message: "no node to connect to", context: "connect")
    }
}
