import Foundation
import RedisStore

/// Redis with Sentinel as scripts/redis-ha.sh runs it on loopback (a primary, two replicas, three Sentinels),
/// as the Sentinel tests see it: clients that find the primary through the Sentinels, direct connections
/// to one node, and the script that kills and restarts nodes by PID. `scripts/redis-ha.sh env` sets the
/// variables; one setup serves every Sentinel test of a run.
public struct RedisSentinelSetup: Sendable {
    public let sentinel: RedisSentinelConfiguration
    /// Ports of nodes 1-3.
    public let nodePorts: [Int]
    let urls: [String: RedisURL]
    let script: String
    let directory: String

    /// Nil without REDIS_HA_SENTINELS and REDIS_HA_SCRIPT (no Sentinels run: the suites are skipped).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let list = environment["REDIS_HA_SENTINELS"], let script = environment["REDIS_HA_SCRIPT"] else {
            return nil
        }
        sentinel = try RedisSentinelConfiguration(
            list: list, masterName: environment["REDIS_HA_MASTER"] ?? "fleet",
            password: environment["REDIS_HA_SENTINEL_PASSWORD"])
        nodePorts = (environment["REDIS_HA_NODE_PORTS"] ?? "").split(separator: ",").compactMap { Int($0) }
        var urls: [String: RedisURL] = [:]
        for user in ["admin", "decision", "actuator", "operator"] {
            if let text = environment["REDIS_HA_\(user.uppercased())_URL"] { urls[user] = try RedisURL(text) }
        }
        self.urls = urls
        self.script = script
        directory = environment["REDIS_HA_DIR"] ?? NSTemporaryDirectory()
        guard nodePorts.count == 3, urls["admin"] != nil else {
            throw BrokerCluster.Failure(description: "REDIS_HA_NODE_PORTS or REDIS_HA_ADMIN_URL is missing")
        }
    }

    public static var isAvailable: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["REDIS_HA_SENTINELS"] != nil && environment["REDIS_HA_SCRIPT"] != nil
    }

    /// Runs `body` with the setup to itself and every process running (tests that kill nodes must not
    /// overlap) and a primary with both replicas in sync.
    public static func exclusively(_ body: (RedisSentinelSetup) async throws -> Void) async throws {
        guard let setup = try RedisSentinelSetup() else {
            throw BrokerCluster.Failure(description: "no Sentinels: set REDIS_HA_SENTINELS (scripts/redis-ha.sh env)")
        }
        try await exclusive(lockFile: setup.directory + "/tests.lock") {
            try await setup.start()
            try await body(setup)
        }
    }

    /// A client as a worker makes one: it asks the Sentinels for the primary, logs in as `user` (an ACL
    /// user of compose/redis/users.acl.in) and waits for `replicas` replicas after replicated writes.
    public func client(
        _ user: String = "admin", replicas: Int = 1, name: String = "sentinel-test", reconnectAttempts: Int = 3,
        sentinel: RedisSentinelConfiguration? = nil
    ) throws -> RedisClient {
        guard let url = urls[user] else {
            throw BrokerCluster.Failure(description: "no URL for the Redis user \(user)")
        }
        return RedisClient(
            url: url,
            options: .init(
                commandTimeout: .seconds(3), reconnectAttempts: reconnectAttempts,
                reconnectInitialDelay: .milliseconds(100), reconnectMaxDelay: .seconds(1), clientName: name,
                sentinel: sentinel ?? self.sentinel, replicas: replicas))
    }

    /// A client of node `node` (1-3) itself, as the administrator: no Sentinel, no role check.
    public func direct(_ node: Int) throws -> RedisClient {
        let admin = urls["admin"]!
        return RedisClient(
            url: try RedisURL(
                host: "127.0.0.1", port: nodePorts[node - 1], user: admin.user, password: admin.password),
            options: .init(reconnectAttempts: 1, clientName: "sentinel-test-direct"))
    }

    /// Which node (1-3) the Sentinels name as primary.
    public func primary() async throws -> Int {
        let text = try await runScript(script, ["primary"]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let node = Int(text) else {
            throw BrokerCluster.Failure(description: "redis-ha.sh primary printed '\(text)'")
        }
        return node
    }

    /// Which node a port belongs to.
    public func node(port: Int) -> Int? { nodePorts.firstIndex(of: port).map { $0 + 1 } }

    /// Starts what is not running and waits until the replica is in sync and the Sentinels agree.
    public func start() async throws { _ = try await runScript(script, ["start"]) }
    public func kill(_ node: Int) async throws { _ = try await runScript(script, ["kill", "\(node)"]) }

    /// Runs `operation` until it stops failing the way a fail-over makes things fail for a while (no primary
    /// yet, a replica, no replica in sync yet), for at most 60 s: its result, how often it was refused, and
    /// for how long.
    public static func untilAccepted<T: Sendable>(_ operation: () async throws -> T) async throws -> (T, Int, Duration)
    {
        let start = ContinuousClock.now
        var refusals = 0
        while true {
            let failure: any Error
            do {
                return (try await operation(), refusals, ContinuousClock.now - start)
            } catch {
                guard let redisError = error as? RedisError, passing(redisError) else { throw error }
                failure = error
            }
            refusals += 1
            if ContinuousClock.now - start > .seconds(60) { throw failure }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    public static func passing(_ error: RedisError) -> Bool {
        [.connection, .timeout, .notReplicated].contains(error.kind)
            || ["READONLY", "NOREPLICAS", "LOADING", "MASTERDOWN"].contains(error.serverErrorCode ?? "")
    }
}
