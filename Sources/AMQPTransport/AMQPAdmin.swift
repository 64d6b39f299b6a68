import Dispatch
import Foundation

/// Short administrative calls on a connection of their own: declare a topology, inspect or delete a
/// queue. Used by `recoveryctl topology apply` and by tests. Calls run one at a time on a private
/// dispatch queue, never on the cooperative pool.
public final class AMQPAdmin: @unchecked Sendable {
    // Invariant: `handle` and `nodes` are only touched on `queue`.
    private let queue = DispatchQueue(label: "amqp-admin")
    private let configuration: AMQPConfiguration
    private var handle: AMQPConnectionHandle?
    private var nodes: NodeRotation

    public init(configuration: AMQPConfiguration) {
        self.configuration = configuration
        nodes = NodeRotation(configuration.nodes, shuffle: configuration.shuffleNodes)
    }

    private func run<R: Sendable>(_ body: @escaping @Sendable (AMQPConnectionHandle) throws(AMQPError) -> R)
        async throws(AMQPError) -> R
    {
        let result: Result<R, AMQPError> = await withCheckedContinuation { continuation in
            queue.async {
                do throws(AMQPError) {
                    if self.handle == nil {
                        self.handle = try AMQPConnectionHandle.connect(
                            configuration: self.configuration, rotation: &self.nodes, setUp: { _ in })
                    }
                    let handle = self.handle!
                    do throws(AMQPError) {
                        continuation.resume(returning: .success(try body(handle)))
                    } catch {
                        // Any error closes the channel; start afresh next time, on the next node.
                        self.handle = nil
                        self.nodes.lost()
                        continuation.resume(returning: .failure(error))
                    }
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    public func declare(_ topology: AMQPTopology) async throws(AMQPError) {
        try await run { (h) throws(AMQPError) in try h.declare(topology) }
    }

    public func deleteQueue(_ name: String) async throws(AMQPError) {
        try await run { (h) throws(AMQPError) in try h.deleteQueue(name) }
    }

    public func deleteExchange(_ name: String) async throws(AMQPError) {
        try await run { (h) throws(AMQPError) in try h.deleteExchange(name) }
    }

    /// Deletes every queue and exchange of `topology` that exists (tests and benchmarks clean up with it).
    public func deleteAll(of topology: AMQPTopology) async {
        for queue in topology.queues { try? await deleteQueue(queue.name) }
        for exchange in topology.exchanges { try? await deleteExchange(exchange.name) }
    }

    /// Ready messages in a queue (not counting unacknowledged ones).
    public func messageCount(queue name: String) async throws(AMQPError) -> Int {
        try await run { (h) throws(AMQPError) in Int(try h.messageCount(queue: name)) }
    }

    public func close() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            queue.async {
                self.handle?.close()
                self.handle = nil
                c.resume()
            }
        }
    }
}
