import AMQPTransport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The three-node cluster that scripts/cluster.sh runs on loopback, shared by every cluster test of a run
/// (one boot per run). `scripts/cluster.sh env` sets both variables.
let clusterURLs = ProcessInfo.processInfo.environment["AMQP_CLUSTER_URLS"]
let clusterScript = ProcessInfo.processInfo.environment["FLEET_CLUSTER_SCRIPT"]
let clusterAvailable = clusterURLs != nil && clusterScript != nil

/// The cluster as its tests see it: the nodes (1-3, in AMQP_CLUSTER_URLS's order) and the script that kills,
/// freezes and restarts them by PID.
struct BrokerCluster {
    let nodes: [AMQPURL]
    let script: String

    init() throws {
        nodes = try AMQPURL.list(try #require(clusterURLs))
        script = try #require(clusterScript)
        try #require(nodes.count == 3, "AMQP_CLUSTER_URLS lists \(nodes.count) nodes, not 3")
    }

    /// Runs `body` with the cluster to itself, all three nodes running: tests that kill nodes must not
    /// overlap, in this process (every test target runs in one) or another. A file lock, because flock(2)
    /// locks held through two descriptors exclude each other even in one process.
    static func exclusively(_ body: (BrokerCluster) async throws -> Void) async throws {
        let cluster = try BrokerCluster()
        let path = (ProcessInfo.processInfo.environment["FLEET_CLUSTER_DIR"] ?? NSTemporaryDirectory()) + "/tests.lock"
        let fd = open(path, O_CREAT | O_RDWR, 0o600)
        try #require(fd >= 0, "cannot open \(path)")
        defer { close(fd) }
        await offPool { _ = flock(fd, LOCK_EX) }
        defer { _ = flock(fd, LOCK_UN) }
        try await cluster.run("start")
        try await body(cluster)
    }

    /// A client configuration that tries node `first` first, then the others in order (no shuffle), so a
    /// test knows which node it lands on.
    func configuration(first: Int, heartbeat: Int = AMQPConfiguration.defaultHeartbeat, name: String)
        -> AMQPConfiguration
    {
        var config = AMQPConfiguration(
            nodes: [nodes[first - 1]] + nodes.enumerated().filter { $0.offset != first - 1 }.map(\.element),
            heartbeat: heartbeat, connectTimeout: .seconds(5), connectionName: name,
            reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .milliseconds(500))
        config.shuffleNodes = false
        return config
    }

    /// Which node (1-3) a client's `connectedNode` names.
    func node(at address: String?) -> Int? {
        nodes.firstIndex { $0.address == address }.map { $0 + 1 }
    }

    func kill(_ node: Int) async throws { try await run("kill", "\(node)") }
    func freeze(_ node: Int) async throws { try await run("freeze", "\(node)") }
    func thaw(_ node: Int) async throws { try await run("thaw", "\(node)") }

    /// The node (1-3) leading a quorum queue, from `rabbitmqctl list_queues name leader`.
    func leader(of queue: String) async throws -> Int {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("leader-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: output) }
        try await run("leader", queue, output: output.path)
        let text = try String(contentsOf: output, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try #require(Int(text), "cluster.sh leader printed '\(text)'")
    }

    func run(_ arguments: String..., output: String = "/dev/null") async throws {
        let status = try await spawnAndWait(
            ["/bin/bash", "-c", #"out=$1; shift; exec "$@" > "$out""#, "run", output, "/bin/bash", script]
                + arguments,
            environment: ProcessInfo.processInfo.environment)
        try #require(status == 0, "cluster.sh \(arguments.joined(separator: " ")) failed (\(status))")
    }
}

/// Blocking work on a thread of its own, never on the cooperative pool.
func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}

/// Publishes without pause on `lanes` concurrent lanes (unique ids `<lane>-<n>`) while `fault` runs, and
/// for `after` more confirms once it returned; records what was confirmed.
final class PublishStream: Sendable {
    struct Tally {
        var started = 0
        var confirmed: [String] = []
        var failed: [String: String] = [:]
        var stop = false
        var lastConfirm: ContinuousClock.Instant?
        /// The longest time without any confirm: how long the fault held publishing up.
        var longestPause: Duration = .zero

        mutating func confirm(_ id: String) {
            let now = ContinuousClock.now
            if let lastConfirm { longestPause = max(longestPause, now - lastConfirm) }
            lastConfirm = now
            confirmed.append(id)
        }
    }
    let tally = Mutex(Tally())

    var confirmedCount: Int { tally.withLock { $0.confirmed.count } }
    var stopped: Bool { tally.withLock { $0.stop } }

    func run(
        _ publisher: AMQPPublisher, _ scratch: ScratchTopology, lanes: Int = 16, before: Int = 200,
        after: Int = 200, during fault: () async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var n = 0
                    while !self.stopped {
                        let id = "\(lane)-\(n)"
                        n += 1
                        self.tally.withLock { $0.started += 1 }
                        do {
                            try await publisher.publish(scratch.message(id, id: id))
                            self.tally.withLock { $0.confirm(id) }
                        } catch {
                            self.tally.withLock { $0.failed[id] = "\(error)" }
                        }
                    }
                }
            }
            do {
                try await waitUntil("\(before) confirms before the fault") { self.confirmedCount >= before }
                try await fault()
                let resumed = confirmedCount
                try await waitUntil("\(after) confirms after the fault") { self.confirmedCount >= resumed + after }
            } catch {
                tally.withLock { $0.stop = true }
                throw error
            }
            tally.withLock { $0.stop = true }
            try await group.waitForAll()
        }
    }
}

/// Polls `condition` (real I/O) until it holds; fails after `timeout`, which is generous, not a measure.
func waitUntil(
    _ what: String, timeout: Duration = .seconds(90), _ condition: @Sendable () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for \(what)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
