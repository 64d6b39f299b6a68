import AMQPTransport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The three-node RabbitMQ cluster that scripts/cluster.sh runs on loopback, as the cluster tests see it:
/// its nodes (1-3, in AMQP_CLUSTER_URLS's order) and the script that kills, freezes and restarts them by
/// PID. One cluster serves every cluster test of a run; `scripts/cluster.sh env` sets the variables.
public struct BrokerCluster: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let nodes: [AMQPURL]
    let script: String
    let directory: String

    /// Nil without AMQP_CLUSTER_URLS and FLEET_CLUSTER_SCRIPT (no cluster runs: the suites are skipped).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let urls = environment["AMQP_CLUSTER_URLS"], let script = environment["FLEET_CLUSTER_SCRIPT"] else {
            return nil
        }
        nodes = try AMQPURL.list(urls)
        self.script = script
        directory = environment["FLEET_CLUSTER_DIR"] ?? NSTemporaryDirectory()
        guard nodes.count == 3 else {
            throw Failure(description: "AMQP_CLUSTER_URLS lists \(nodes.count) nodes, not 3")
        }
    }

    public static var isAvailable: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["AMQP_CLUSTER_URLS"] != nil && environment["FLEET_CLUSTER_SCRIPT"] != nil
    }

    /// Runs `body` with the cluster to itself and all three nodes running: tests that kill nodes must not
    /// overlap, in this process (every test target runs in one) or in another. A file lock, because two
    /// flock(2) locks through two descriptors exclude each other even within one process.
    public static func exclusively(_ body: (BrokerCluster) async throws -> Void) async throws {
        guard let cluster = try BrokerCluster() else { throw Failure(description: "no cluster: set AMQP_CLUSTER_URLS") }
        try await exclusive(lockFile: cluster.directory + "/tests.lock") {
            try await cluster.start()
            try await body(cluster)
        }
    }

    /// A client configuration that tries node `first` first, then the others in order (no shuffle), so a
    /// test knows which node a client lands on.
    public func configuration(first: Int, heartbeat: Int = AMQPConfiguration.defaultHeartbeat, name: String)
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
    public func node(at address: String?) -> Int? {
        nodes.firstIndex { $0.address == address }.map { $0 + 1 }
    }

    /// Starts the nodes that are not running (a killed node rejoins); heals a partition.
    public func start() async throws { _ = try await run("start") }
    /// SIGKILL, returning once the node is gone.
    public func kill(_ node: Int) async throws { _ = try await run("kill", "\(node)") }
    /// SIGSTOP: the node hangs with its sockets open.
    public func freeze(_ node: Int) async throws { _ = try await run("freeze", "\(node)") }
    public func thaw(_ node: Int) async throws { _ = try await run("thaw", "\(node)") }

    /// The node (1-3) leading a quorum queue, from `rabbitmqctl list_queues name leader`.
    public func leader(of queue: String) async throws -> Int {
        let text = try await run("leader", queue).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let node = Int(text) else { throw Failure(description: "cluster.sh leader printed '\(text)'") }
        return node
    }

    /// Runs scripts/cluster.sh off the cooperative pool and returns what it printed on stdout.
    func run(_ arguments: String...) async throws -> String {
        try await runScript(script, arguments)
    }
}

/// Runs a test-harness script (scripts/cluster.sh, scripts/redis-ha.sh) with bash off the cooperative pool
/// and returns what it printed on stdout; throws when it fails.
func runScript(_ script: String, _ arguments: [String]) async throws -> String {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("script-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: output) }
    // Descriptors above 2 are closed first: a server must not inherit a copy of a test's socket.
    let prologue =
        #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null; "#
        + #"out=$1; shift; exec "$@" > "$out""#
    let argv = ["/bin/bash", "-c", prologue, "script", output.path, "/bin/bash", script] + arguments
    let environment = ProcessInfo.processInfo.environment
    let status: Int32 = await offPool {
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/bash", nil, nil, cArgs, cEnv) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
    guard status == 0 else {
        throw BrokerCluster.Failure(
            description: "\(script) \(arguments.joined(separator: " ")) failed with status \(status)")
    }
    return (try? String(contentsOf: output, encoding: .utf8)) ?? ""
}

/// Runs `body` holding an exclusive flock(2) on `path`: tests that kill servers must not overlap, in this
/// process (every test target runs in one) or in another. Two locks through two descriptors exclude each
/// other even within one process.
func exclusive(lockFile path: String, _ body: () async throws -> Void) async throws {
    let fd = open(path, O_CREAT | O_RDWR, 0o600)
    guard fd >= 0 else { throw BrokerCluster.Failure(description: "cannot open \(path)") }
    defer { close(fd) }
    await offPool { _ = flock(fd, LOCK_EX) }
    defer { _ = flock(fd, LOCK_UN) }
    try await body()
}

/// Blocking work on a thread of its own, never on the cooperative pool.
func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}
