import FleetTestSupport
import Foundation
import Testing
@testable import RedisStore

/// The Redis client on a primary, two replicas and three Sentinels (scripts/redis-ha.sh, running the
/// deployment's compose/redis files on loopback): it finds the primary through the Sentinels, follows a
/// fail-over, never writes to a demoted primary, waits for a replica after locks and compare-and-sets, and
/// never hands out a fencing token twice, even when a fail-over loses the last increments.
@Suite(
    "Redis with Sentinel", .serialized,
    .enabled(if: RedisSentinelSetup.isAvailable, "set the Sentinel variables (scripts/redis-ha.sh env)"))
struct RedisSentinelTests {
    /// The workers' own ACL users work through the Sentinels: ROLE on connect, WAIT after writes, TIME in
    /// the acquire script.
    @Test func theWorkersUsersTakeLocksAndCompareAndSetThroughTheSentinels() async throws {
        try await RedisSentinelSetup.exclusively { ha in try await Self.workersUsers(ha) }
    }

    static func workersUsers(_ ha: RedisSentinelSetup) async throws {
        // The first Sentinel listed is down: the next one is asked.
        let listed = try RedisSentinelConfiguration(
            list: (["127.0.0.1:\(try freeLoopbackPort())"] + ha.sentinel.sentinels.map(\.description)).joined(
                separator: ","),
            masterName: ha.sentinel.masterName, password: ha.sentinel.password)
        let actuator = try ha.client("actuator", name: "sentinel-test-actuator", sentinel: listed)
        let decision = try ha.client("decision", name: "sentinel-test-decision")
        let name = "sentinel-acl-\(UUID().uuidString.lowercased())"
        let locks = RedisLockStore(client: actuator, keyspace: RedisKeyspace(prefix: "recovery:"))
        let lease = try #require(try await locks.acquire(name: name, ttl: .seconds(30)))
        #expect(try await locks.renew(lease, ttl: .seconds(30)))
        #expect(try await locks.release(lease))
        let states = RedisStateStore(client: decision, keyspace: RedisKeyspace(prefix: "recovery:"))
        let key = "target:\(name)"
        #expect(try await states.compareAndSet(key, expectedVersion: 0, data: "{}") == 1)
        #expect(try await states.compareAndSet(key, expectedVersion: 1, data: "{\"a\":1}") == 2)
        let admin = try ha.client()
        _ = try await admin.command(
            ["DEL", "recovery:state:\(key)", RedisKeyspace(prefix: "recovery:").fenceKey(name)], idempotent: true)
        for client in [actuator, decision, admin] { await client.close() }
    }

    @Test(.timeLimit(.minutes(2)))
    func aKilledPrimaryIsFollowedAndComesBackAsAReplicaThatRefusesWrites() async throws {
        try await RedisSentinelSetup.exclusively { ha in
            let client = try ha.client()
            let key = "sentinel-test:\(UUID().uuidString.lowercased())"
            _ = try await client.command(["SET", key, "before"], idempotent: true, replicated: true)
            let old = try await ha.primary()
            #expect(ha.node(port: try await Self.port(of: client)) == old)

            try await ha.kill(old)
            let (refusals, waited) = try await Self.writeUntilAccepted(client, key: key + ":after")
            let new = try await ha.primary()
            #expect(new != old)
            #expect(ha.node(port: try await Self.port(of: client)) == new, "the client followed to node \(new)")
            #expect(
                try await client.command(["GET", key], idempotent: true).string == "before",
                "the replicated write survived")
            print(
                "sentinel fail-over: node \(old) killed, node \(new) primary; writes refused \(refusals) times over \(waited)"
            )

            // The old primary comes back as a replica of the new one, and refuses writes.
            try await ha.start()
            let direct = try ha.direct(old)
            #expect(try await direct.command(["ROLE"], idempotent: true).array?.first?.string == "slave")
            let refused = await redisError { _ = try await direct.command(["SET", key, "stale"], idempotent: true) }
            #expect(refused?.serverErrorCode == "READONLY")
            _ = try await client.command(["DEL", key, key + ":after"], idempotent: true)
            await direct.close()
            await client.close()
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aPrimaryDemotedUnderALiveConnectionIsLeftWithoutTheCallerNoticing() async throws {
        try await RedisSentinelSetup.exclusively { ha in
            let client = try ha.client()
            let key = "sentinel-test:\(UUID().uuidString.lowercased())"
            _ = try await client.command(["SET", key, "1"], idempotent: true, replicated: true)
            let old = try await ha.primary()

            // A planned fail-over: the primary is demoted while the client's connection to it stays open.
            let sentinel = RedisClient(
                url: try RedisURL(
                    host: ha.sentinel.sentinels[0].host, port: ha.sentinel.sentinels[0].port,
                    password: ha.sentinel.password))
            _ = try await sentinel.command(["SENTINEL", "FAILOVER", "fleet"], idempotent: false)
            try await Self.poll("node \(old) demoted") {
                let role = try? await ha.direct(old).command(["ROLE"], idempotent: true)
                return try await ha.primary() != old && role?.array?.first?.string == "slave"
            }
            let (refusals, _) = try await Self.writeUntilAccepted(client, key: key)
            let new = try await ha.primary()
            #expect(ha.node(port: try await Self.port(of: client)) == new)
            #expect(refusals == 0, "READONLY is answered by asking the Sentinels again, not by an error")
            #expect(try await ha.direct(new).command(["GET", key], idempotent: true).string == "1")
            _ = try await client.command(["DEL", key], idempotent: true)
            await sentinel.close()
            await client.close()
        }
    }

    /// Both replicas are cut off, so the primary's last lock is on the primary alone. A primary refuses writes
    /// at once when its replicas disconnect (min-replicas-to-write 1, tested here too), but one cut off
    /// silently keeps writing for up to min-replicas-max-lag (10 s): that window is played by switching the
    /// setting off. With REDIS_WAIT_REPLICAS the acquire refuses the lock; without, it is handed out, the
    /// primary is killed and the promoted replica never saw the increment: its next fence must still be
    /// larger (the acquire script's clock floor).
    @Test(.timeLimit(.minutes(2)))
    func aFencingTokenIsNeverHandedOutTwiceAcrossAFailOverThatLosesWrites() async throws {
        try await RedisSentinelSetup.exclusively { ha in
            let name = "sentinel-fence-\(UUID().uuidString.lowercased())"
            let keyspace = RedisKeyspace(prefix: "recovery:")
            let waiting = try ha.client("actuator", replicas: 1, name: "sentinel-test-waiting")
            let locks = RedisLockStore(client: waiting, keyspace: keyspace)
            let replicated = try #require(try await locks.acquire(name: name, ttl: .seconds(60)))
            #expect(try await locks.release(replicated))
            let held = try #require(try await locks.acquire(name: name + "-held", ttl: .seconds(60)))

            // Cut both replicas off: the replication user is switched off and its connections closed. Whatever
            // happens next, the node is killed at the end: it comes back with the users of its aclfile.
            let old = try await ha.primary()
            let primary = try ha.direct(old)
            do {
                try await Self.loseAFence(
                    ha, old: old, primary: primary, locks: locks, replicated: replicated, held: held, name: name)
            } catch {
                try? await ha.kill(old)
                try? await ha.start()
                throw error
            }
            try await ha.start()
            _ = try await waiting.command(["DEL", keyspace.fenceKey(name)], idempotent: true, replicated: true)
            for client in [waiting, primary] { await client.close() }
        }
    }

    static func loseAFence(
        _ ha: RedisSentinelSetup, old: Int, primary: RedisClient, locks: RedisLockStore, replicated: LockLease,
        held: LockLease, name: String
    ) async throws {
        let keyspace = locks.keyspace
        _ = try await primary.command(["ACL", "SETUSER", "replica", "off"], idempotent: true)
        _ = try await primary.command(["CLIENT", "KILL", "USER", "replica"], idempotent: true)

        let noReplicas = await redisError { _ = try await locks.acquire(name: name, ttl: .seconds(60)) }
        #expect(noReplicas?.serverErrorCode == "NOREPLICAS", "\(String(describing: noReplicas))")
        _ = try await primary.command(["CONFIG", "SET", "min-replicas-to-write", "0"], idempotent: true)

        // A lock held from before is no longer "held" for its holder: the cut-off primary still answers
        // reads, but neither the check nor the renewal reaches a replica.
        let check = await redisError { _ = try await locks.isHeld(held) }
        #expect(check?.kind == .notReplicated, "\(String(describing: check))")
        let renewal = await redisError { _ = try await locks.renew(held, ttl: .seconds(60)) }
        #expect(renewal?.kind == .notReplicated, "\(String(describing: renewal))")

        let refused = await redisError { _ = try await locks.acquire(name: name, ttl: .seconds(60)) }
        #expect(refused?.kind == .notReplicated, "\(String(describing: refused))")
        #expect(
            try await primary.command(["GET", keyspace.lockKey(name)], idempotent: true) == .null,
            "a lock no replica acknowledged is given back")

        let unguarded = try ha.client("actuator", replicas: 0, name: "sentinel-test-unguarded")
        let lost = try #require(
            try await RedisLockStore(client: unguarded, keyspace: keyspace).acquire(name: name, ttl: .seconds(60)))
        #expect(lost.fencingToken > replicated.fencingToken)
        // The replicas (which serve no reads while cut off) never received it: their offsets stay behind.
        let written = try await Self.info(primary, "master_repl_offset")
        for replica in [1, 2, 3] where replica != old {
            let offset = try await Self.info(try ha.direct(replica), "master_repl_offset")
            #expect(offset < written, "node \(replica) is at \(offset), the primary at \(written)")
        }

        try await ha.kill(old)
        try await Self.poll("a replica promoted") { try await ha.primary() != old }
        let after = try await Self.acquireWhenAccepted(locks, name)
        #expect(
            after.fencingToken > lost.fencingToken,
            "fence \(after.fencingToken) after the fail-over, \(lost.fencingToken) handed out before it")
        print(
            "fences: \(replicated.fencingToken) replicated, \(lost.fencingToken) lost with node \(old), \(after.fencingToken) on node \(try await ha.primary())"
        )
        #expect(try await locks.release(after))
        await unguarded.close()
    }

    // MARK: Helpers

    /// The port of the server a client is connected to.
    static func port(of client: RedisClient) async throws -> Int { Int(try await info(client, "tcp_port")) }

    /// A numeric field of INFO.
    static func info(_ client: RedisClient, _ field: String) async throws -> Int64 {
        let text = try await client.command(["INFO"], idempotent: true).string ?? ""
        let line = text.split(whereSeparator: \.isNewline).first { $0.hasPrefix(field + ":") }
        return try #require(line.flatMap { Int64($0.dropFirst(field.count + 1)) }, "INFO has no \(field)")
    }

    /// Sends a replicated SET until it is accepted: how often and for how long the fail-over refused it.
    static func writeUntilAccepted(_ client: RedisClient, key: String) async throws -> (Int, Duration) {
        let (_, refusals, waited) = try await RedisSentinelSetup.untilAccepted {
            try await client.command(["SET", key, "1"], idempotent: true, replicated: true)
        }
        return (refusals, waited)
    }

    static func acquireWhenAccepted(_ locks: RedisLockStore, _ name: String) async throws -> LockLease {
        let (lease, _, _) = try await RedisSentinelSetup.untilAccepted {
            try await locks.acquire(name: name, ttl: .seconds(60))
        }
        return try #require(lease)
    }

    static func poll(_ what: String, _ condition: () async throws -> Bool) async throws {
        let start = ContinuousClock.now
        while try await !condition() {
            try #require(ContinuousClock.now - start < .seconds(60), "\(what): not after 60 s")
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
