import Foundation
import Testing
@testable import RedisStore

/// A private redis-server that loads the ACL users the deployment ships: compose/redis/users.acl.in,
/// rendered by compose/redis/render-users-acl.sh exactly as the compose `redis` service does at start
/// (docs/redis-keys.md, "Access control"). Private, so the default user can be off and the keys keep
/// the workers' real prefix `recovery:` without touching the shared server.
struct ACLRedis {
    static let kinds = ["admin", "probe", "predictor", "decision", "actuator", "notifier", "operator"]
    let server: PrivateRedisServer
    let directory: URL
    /// One random password per user, as REDIS_<KIND>_PASSWORD.
    let passwords: [String: String]
    let aclFile: URL

    static func start(fleetPrefix: String? = nil) async throws -> ACLRedis {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-acl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var passwords: [String: String] = [:]
        for kind in kinds { passwords[kind] = "pw-\(kind)-\(UUID().uuidString.lowercased())" }
        var environment = ["PATH": "/usr/bin:/bin"]
        for (kind, password) in passwords { environment["REDIS_\(kind.uppercased())_PASSWORD"] = password }
        if let fleetPrefix { environment["FLEET_PREFIX"] = fleetPrefix }
        let aclFile = directory.appendingPathComponent("users.acl")
        let rendered = try await ChildProcess.run(
            [
                "/bin/sh", repositoryRoot.appendingPathComponent("compose/redis/render-users-acl.sh").path,
                repositoryRoot.appendingPathComponent("compose/redis/users.acl.in").path, aclFile.path,
            ],
            environment: environment)
        guard rendered.status == 0 else { throw ChildProcessError("render-users-acl.sh failed: \(rendered.output)") }
        let server = try PrivateRedisServer()
        try await server.start(extraArguments: ["--aclfile", aclFile.path])
        return ACLRedis(server: server, directory: directory, passwords: passwords, aclFile: aclFile)
    }

    func url(_ user: String, password: String? = nil) throws -> RedisURL {
        try RedisURL(host: "127.0.0.1", port: server.port, user: user, password: password ?? passwords[user] ?? "none")
    }

    /// A client as the workers make one: authenticated as `user`, naming itself with CLIENT SETNAME.
    func client(_ user: String, password: String? = nil) throws -> RedisClient {
        RedisClient(
            url: try url(user, password: password),
            options: .init(reconnectAttempts: 1, clientName: "\(user)@acl-test"))
    }

    func stop() {
        server.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs `body` against a fresh server and stops it afterwards, even on failure.
    static func with(fleetPrefix: String? = nil, _ body: (ACLRedis) async throws -> Void) async throws {
        let redis = try await start(fleetPrefix: fleetPrefix)
        defer { redis.stop() }
        try await body(redis)
    }
}

/// Expects `operation` to be refused by the ACL (NOPERM, or a script refused a key), with an error that
/// names the user and never the password.
func expectRefused(
    _ redis: ACLRedis, as user: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ operation: () async throws -> Void
) async {
    guard let error = await redisError(operation, sourceLocation: sourceLocation) else { return }
    #expect(
        error.isPermissionDenied, "\(user): \(what) should be refused by the ACL, got \(error)",
        sourceLocation: sourceLocation)
    #expect(error.description.contains("user '\(user)'"), sourceLocation: sourceLocation)
    if let password = redis.passwords[user] {
        #expect(!error.description.contains(password), sourceLocation: sourceLocation)
    }
}

@Suite("Redis ACL users per worker kind (compose/redis/users.acl.in)", .enabled(if: TestEnvironment.hasRedis))
struct RedisACLTests {
    /// The stores as the workers build them: default keyspace `recovery:` (FLEET_PREFIX=recovery).
    let keyspace = RedisKeyspace()

    /// The admin user seeds what the other kinds find in production: a target's decision document, the
    /// brake, a held lock with its fence, a step record.
    func seed(_ redis: ACLRedis) async throws -> LockLease {
        let admin = try redis.client("admin")
        let states = RedisStateStore(client: admin, keyspace: keyspace)
        #expect(try await states.compareAndSet("target:web", expectedVersion: 0, data: "{}") == 1)
        #expect(try await states.compareAndSet("fleet:brake", expectedVersion: 0, data: "{}") == 1)
        #expect(try await states.compareAndSet("step:web-1", expectedVersion: 0, data: "{}") == 1)
        return try #require(
            try await RedisLockStore(client: admin, keyspace: keyspace).acquire(name: "web", ttl: .seconds(60)))
    }

    /// The refusals every kind without business there must get: locks and fences, decision state, the brake.
    func expectNoLocksStateOrBrake(_ redis: ACLRedis, _ user: String, lease: LockLease) async throws {
        let client = try redis.client(user)
        let locks = RedisLockStore(client: client, keyspace: keyspace)
        let states = RedisStateStore(client: client, keyspace: keyspace)
        await expectRefused(redis, as: user, "acquire a lock") {
            _ = try await locks.acquire(name: "web-2", ttl: .seconds(600))
        }
        await expectRefused(redis, as: user, "read a lock") { _ = try await locks.isHeld(lease) }
        await expectRefused(redis, as: user, "release a lock") { _ = try await locks.release(lease) }
        await expectRefused(redis, as: user, "read a fence") { _ = try await locks.currentFencingToken(name: "web") }
        await expectRefused(redis, as: user, "delete a lock") {
            _ = try await client.command(["DEL", keyspace.lockKey("web")], idempotent: true)
        }
        await expectRefused(redis, as: user, "read decision state") { _ = try await states.load("target:web") }
        await expectRefused(redis, as: user, "write decision state") {
            _ = try await states.compareAndSet("target:web", expectedVersion: 1, data: "{\"forged\":true}")
        }
        await expectRefused(redis, as: user, "read the brake") { _ = try await states.load("fleet:brake") }
        await expectRefused(redis, as: user, "release the brake") {
            _ = try await states.compareAndSet("fleet:brake", expectedVersion: 1, data: "{}")
        }
        await expectRefused(redis, as: user, "overwrite the brake") {
            _ = try await client.command(["HSET", "recovery:state:fleet:brake", "d", "{}"], idempotent: true)
        }
        await expectRefused(redis, as: user, "flush") { _ = try await client.command(["FLUSHALL"], idempotent: true) }
    }

    @Test func probeClaimsItsSlotsAndNothingElse() async throws {
        try await ACLRedis.with { redis in
            let lease = try await seed(redis)
            let probe = try redis.client("probe")
            // What ProbeWorker does: PING for /healthz, SET NX PX claims of probe slots and status sweeps.
            #expect(try await probe.command(["PING"], idempotent: true) == .status("PONG"))
            let claims = RedisKeyValueStore(client: probe, keyspace: keyspace)
            #expect(try await claims.setIfAbsent("probe:web:1800000:0", "probe-1", expiry: .seconds(600)))
            #expect(try await !claims.setIfAbsent("probe:web:1800000:0", "probe-2", expiry: .seconds(600)))
            #expect(try await claims.setIfAbsent("probe:status:30000", "probe-1", expiry: .seconds(600)))

            try await expectNoLocksStateOrBrake(redis, "probe", lease: lease)
            await expectRefused(redis, as: "probe", "read a claim (write-only)") {
                _ = try await claims.get("probe:web:1800000:0")
            }
            await expectRefused(redis, as: "probe", "claim another kind's slot") {
                _ = try await claims.setIfAbsent("predict:web:1", "probe-1", expiry: .seconds(600))
            }
            await expectRefused(redis, as: "probe", "mark a notice sent") {
                _ = try await claims.setIfAbsent("notified:n1:slack", "probe-1", expiry: .seconds(600))
            }
            await expectRefused(redis, as: "probe", "run a script") {
                _ = try await probe.eval(
                    RedisLockStore.releaseScript, keys: [keyspace.lockKey("web")], args: [lease.storedValue],
                    idempotent: true)
            }
            // The seeded lock and state are untouched.
            let admin = try redis.client("admin")
            #expect(try await RedisLockStore(client: admin, keyspace: keyspace).isHeld(lease))
            #expect(try await RedisStateStore(client: admin, keyspace: keyspace).load("target:web")?.data == "{}")
        }
    }

    @Test func notifierChecksAndLeavesMarkersOnly() async throws {
        try await ACLRedis.with { redis in
            let lease = try await seed(redis)
            let markers = RedisKeyValueStore(client: try redis.client("notifier"), keyspace: keyspace)
            // NotifierWorker: GET the marker, deliver, SET NX PX the marker.
            #expect(try await markers.get("notified:n1:slack") == nil)
            #expect(try await markers.setIfAbsent("notified:n1:slack", "notifier-1", expiry: .seconds(60)))
            #expect(try await markers.get("notified:n1:slack") == "notifier-1")

            try await expectNoLocksStateOrBrake(redis, "notifier", lease: lease)
            await expectRefused(redis, as: "notifier", "read the decision outbox markers") {
                _ = try await markers.get("published:m1")
            }
            await expectRefused(redis, as: "notifier", "claim a probe slot") {
                _ = try await markers.setIfAbsent("probe:web:1:0", "x", expiry: .seconds(600))
            }
        }
    }

    @Test func predictorClaimsPredictionSlotsOnly() async throws {
        try await ACLRedis.with { redis in
            let lease = try await seed(redis)
            let predictor = try redis.client("predictor")
            #expect(try await predictor.command(["PING"], idempotent: true) == .status("PONG"))
            let claims = RedisKeyValueStore(client: predictor, keyspace: keyspace)
            #expect(try await claims.setIfAbsent("predict:web:500", "predictor-1", expiry: .seconds(600)))
            // The cadence's record of the last slow-series read: read and written.
            try await claims.set("predict-slow:web", "500+", expiry: .seconds(600))
            #expect(try await claims.get("predict-slow:web") == "500+")
            try await expectNoLocksStateOrBrake(redis, "predictor", lease: lease)
            await expectRefused(redis, as: "predictor", "claim a probe slot") {
                _ = try await claims.setIfAbsent("probe:web:1:0", "x", expiry: .seconds(600))
            }
            await expectRefused(redis, as: "predictor", "read a slot claim back") {
                _ = try await claims.get("predict:web:500")
            }
            await expectRefused(redis, as: "predictor", "read a notifier's marker") {
                _ = try await claims.get("notified:web:x")
            }
        }
    }

    @Test func decisionKeepsStateBrakeScheduleAndOutboxButNoLocks() async throws {
        try await ACLRedis.with { redis in
            let lease = try await seed(redis)
            let decision = try redis.client("decision")
            // DecisionWorker: versioned documents (HMGET + compare-and-set script) for targets and the brake.
            let states = RedisStateStore(client: decision, keyspace: keyspace)
            #expect(try await states.load("target:web")?.version == 1)
            #expect(try await states.compareAndSet("target:web", expectedVersion: 1, data: "{\"v\":2}") == 2)
            #expect(try await states.compareAndSet("target:new", expectedVersion: 0, data: "{}") == 1)
            #expect(try await states.compareAndSet("fleet:brake", expectedVersion: 1, data: "{\"engaged\":true}") == 2)
            // The wake-up schedule.
            let schedule = RedisSchedule(client: decision, keyspace: keyspace, name: "decision")
            try await schedule.schedule("web", at: Date(timeIntervalSince1970: 1_000))
            #expect(try await schedule.due(at: Date(timeIntervalSince1970: 2_000)) == ["web"])
            try await schedule.cancel("web")
            // The outbox's per-message markers.
            let markers = RedisKeyValueStore(client: decision, keyspace: keyspace)
            #expect(try await markers.get("published:m1") == nil)
            #expect(try await markers.setIfAbsent("publishing:m1", "decision-1", expiry: .seconds(30)))
            try await markers.set("published:m1", "1", expiry: .seconds(60))
            #expect(try await markers.get("published:m1") == "1")
            // An abort flag (recoveryctl abort): written, never read back.
            try await markers.set("abort:web/inc-1/restart", "{\"by\":\"alice\"}", expiry: .seconds(60))
            await expectRefused(redis, as: "decision", "read an abort flag") {
                _ = try await markers.get("abort:web/inc-1/restart")
            }

            let locks = RedisLockStore(client: decision, keyspace: keyspace)
            await expectRefused(redis, as: "decision", "acquire a lock") {
                _ = try await locks.acquire(name: "web-2", ttl: .seconds(600))
            }
            await expectRefused(redis, as: "decision", "release the actuator's lock") {
                _ = try await locks.release(lease)
            }
            await expectRefused(redis, as: "decision", "read a step record") { _ = try await states.load("step:web-1") }
            await expectRefused(redis, as: "decision", "another schedule") {
                try await RedisSchedule(client: decision, keyspace: keyspace, name: "other").schedule("web", at: Date())
            }
            // A script is checked key by key inside, not only on its declared KEYS.
            await expectRefused(redis, as: "decision", "a script reaching a lock it did not declare") {
                _ = try await decision.command(
                    ["EVAL", "return redis.call('GET', '\(keyspace.lockKey("web"))')", "0"], idempotent: true)
            }
        }
    }

    @Test func actuatorTakesLocksAndKeepsStepRecords() async throws {
        try await ACLRedis.with { redis in
            let lease = try await seed(redis)
            let actuator = try redis.client("actuator")
            // ActuatorWorker: the target's lock with its fencing token (acquire, renew, isHeld, release).
            let locks = RedisLockStore(client: actuator, keyspace: keyspace)
            #expect(try await locks.acquire(name: "web", ttl: .seconds(600)) == nil)  // the seeded lease holds it
            let mine = try #require(try await locks.acquire(name: "db", ttl: .seconds(600)))
            #expect(mine.fencingToken > 0)
            #expect(try await locks.renew(mine, ttl: .seconds(1200)))
            #expect(try await locks.isHeld(mine))
            #expect(try await locks.currentFencingToken(name: "web") == lease.fencingToken)
            #expect(try await locks.release(mine))
            // StepRecordStore: load, compare-and-set, EXPIRE once completed.
            let records = RedisStateStore(client: actuator, keyspace: keyspace)
            #expect(try await records.load("step:web-1")?.version == 1)
            #expect(
                try await records.compareAndSet("step:web-1", expectedVersion: 1, data: "{\"status\":\"completed\"}")
                    == 2)
            #expect(
                try await actuator.command(["EXPIRE", "recovery:state:step:web-1", "60"], idempotent: true)
                    == .integer(1))
            // DRPreflight's slot claim.
            #expect(
                try await RedisKeyValueStore(client: actuator, keyspace: keyspace)
                    .setIfAbsent("preflight:20000", "actuator-1", expiry: .seconds(600)))
            // The open-steps index (ActuatorWorker.sweepOpenSteps).
            let open = RedisSchedule(client: actuator, keyspace: keyspace, name: "actuator-open-steps")
            try await open.schedule("web-1", at: Date(timeIntervalSince1970: 1))
            #expect(try await open.due(at: Date()) == ["web-1"])
            try await open.cancel("web-1")
            // The abort flags: read at every sub-step boundary; only the decision worker sets one.
            let flags = RedisKeyValueStore(client: actuator, keyspace: keyspace)
            try await RedisKeyValueStore(client: try redis.client("admin"), keyspace: keyspace)
                .set("abort:web/inc-1/restart", "{}", expiry: .seconds(60))
            #expect(try await flags.get("abort:web/inc-1/restart") == "{}")
            await expectRefused(redis, as: "actuator", "set an abort flag") {
                try await flags.set("abort:web/inc-1/reprovision", "{}", expiry: .seconds(60))
            }

            await expectRefused(redis, as: "actuator", "read decision state") {
                _ = try await records.load("target:web")
            }
            await expectRefused(redis, as: "actuator", "release the brake") {
                _ = try await records.compareAndSet("fleet:brake", expectedVersion: 1, data: "{}")
            }
            await expectRefused(redis, as: "actuator", "the decision schedule") {
                _ = try await RedisSchedule(client: actuator, keyspace: keyspace, name: "decision").due(at: Date())
            }
            await expectRefused(redis, as: "decision", "the actuator's open steps") {
                _ = try await RedisSchedule(
                    client: try redis.client("decision"), keyspace: keyspace, name: "actuator-open-steps"
                )
                .due(at: Date())
            }
            await expectRefused(redis, as: "actuator", "mark a notice sent") {
                _ = try await RedisKeyValueStore(client: actuator, keyspace: keyspace).setIfAbsent(
                    "notified:n1:slack", "x")
            }
        }
    }

    @Test func operatorReadsStatusAndWritesNothing() async throws {
        try await ACLRedis.with { redis in
            let lease = try await seed(redis)
            let operatorClient = try redis.client("operator")
            // recoveryctl status: SCAN for the documents, HMGET them, GET + PTTL of each target's lock.
            let states = RedisStateStore(client: operatorClient, keyspace: keyspace)
            #expect(try await states.keys() == ["fleet:brake", "step:web-1", "target:web"])
            #expect(try await states.load("target:web")?.data == "{}")
            #expect(try await states.load("fleet:brake")?.version == 1)
            #expect(try await states.load("step:web-1") != nil)
            #expect(
                try await operatorClient.command(["GET", keyspace.lockKey("web")], idempotent: true).string
                    == lease.storedValue)
            #expect(
                (try await operatorClient.command(["PTTL", keyspace.lockKey("web")], idempotent: true).integer ?? 0) > 0
            )

            await expectRefused(redis, as: "operator", "write decision state") {
                _ = try await states.compareAndSet("target:web", expectedVersion: 1, data: "{}")
            }
            await expectRefused(redis, as: "operator", "delete a lock") {
                _ = try await operatorClient.command(["DEL", keyspace.lockKey("web")], idempotent: true)
            }
            await expectRefused(redis, as: "operator", "acquire a lock") {
                _ = try await RedisLockStore(client: operatorClient, keyspace: keyspace).acquire(
                    name: "x", ttl: .seconds(600))
            }
            await expectRefused(redis, as: "operator", "read a fence") {
                _ = try await RedisLockStore(client: operatorClient, keyspace: keyspace).currentFencingToken(
                    name: "web")
            }
            await expectRefused(redis, as: "operator", "write a claim") {
                _ = try await RedisKeyValueStore(client: operatorClient, keyspace: keyspace).setIfAbsent(
                    "probe:x:1:0", "x")
            }
        }
    }

    @Test func recorderAndDefaultUserCannotConnect() async throws {
        try await ACLRedis.with { redis in
            // The recorder's user is off: whatever the password, AUTH fails, once, with a clear error.
            let recorder = try redis.client("recorder", password: "anything")
            let refused = try #require(await redisError { _ = try await recorder.command(["PING"], idempotent: true) })
            #expect(refused.kind == .connection)
            #expect(refused.isAuthenticationFailure)
            #expect(refused.description.contains("refused to authenticate user 'recorder'"))
            #expect(!refused.description.contains("anything"))
            // The default user is off: a URL without credentials gets NOAUTH, one with only a password WRONGPASS.
            let anonymous = RedisClient(url: try redis.server.url, options: .init(reconnectAttempts: 1))
            let noAuth = try #require(
                await redisError { _ = try await anonymous.command(["GET", "recovery:kv:x"], idempotent: true) })
            #expect(noAuth.isAuthenticationFailure)
            #expect(noAuth.description.contains("the default user"))
            let passwordOnly = RedisClient(
                url: try RedisURL("redis://:\(redis.passwords["admin"]!)@127.0.0.1:\(redis.server.port)/0"),
                options: .init(reconnectAttempts: 1))
            let wrongUser = try #require(
                await redisError { _ = try await passwordOnly.command(["PING"], idempotent: true) })
            #expect(wrongUser.isAuthenticationFailure)
            #expect(!wrongUser.description.contains(redis.passwords["admin"]!))
        }
    }

    @Test func wrongPasswordIsReportedOnceWithoutTheSecret() async throws {
        try await ACLRedis.with { redis in
            let client = RedisClient(
                url: try redis.url("probe", password: "not-the-probe-password"),
                options: .init(reconnectAttempts: 3, reconnectInitialDelay: .seconds(5)))
            let started = ContinuousClock.now
            let error = try #require(await redisError { _ = try await client.command(["PING"], idempotent: true) })
            // Not retried: the server's answer will not change (3 attempts would have waited 5 + 10 s).
            #expect(ContinuousClock.now - started < .seconds(4))
            #expect(error.kind == .connection)
            #expect(error.command == "AUTH")
            #expect(error.message.contains("WRONGPASS"))
            #expect(error.description.contains("refused to authenticate user 'probe'"))
            #expect(!error.description.contains("not-the-probe-password"))
            #expect(!"\(error)".contains("not-the-probe-password"))
        }
    }

    /// A user whose ACL lacks WAIT (a hand-written ACL older than the Sentinel layout) is told so, as a
    /// refusal: not as a write that failed to replicate, which would be retried for ever.
    @Test func aWaitTheACLRefusesIsAPermissionErrorNotAPassingOne() async throws {
        try await ACLRedis.with { redis in
            let probe = RedisClient(
                url: try redis.url("probe"),
                options: .init(reconnectAttempts: 1, clientName: "probe@acl-test", replicas: 1))
            let error = await redisError {
                _ = try await probe.command(
                    ["SET", "recovery:kv:probe:wait-test", "1"], idempotent: true, replicated: true)
            }
            #expect(error?.kind == .server && error?.isPermissionDenied == true, "\(String(describing: error))")
            await probe.close()
        }
    }

    @Test func renderedFileHoldsHashesAndTheFleetPrefix() async throws {
        try await ACLRedis.with(fleetPrefix: "fleet-b") { redis in
            let text = try String(contentsOf: redis.aclFile, encoding: .utf8)
            for password in redis.passwords.values { #expect(!text.contains(password)) }
            #expect(!text.contains("recovery:"))
            // Only rule lines are left (an aclfile allows no comments), one per user.
            let lines = text.split(separator: "\n")
            #expect(lines.allSatisfy { $0.hasPrefix("user ") })
            // + default and recorder, both off, and the Sentinel layout's replica and monitor, off without
            // their passwords.
            #expect(lines.count == ACLRedis.kinds.count + 4)
            #expect(lines.contains("user replica reset") && lines.contains("user monitor reset"))
            // The workers of FLEET_PREFIX=fleet-b write under fleet-b:, and only there.
            let claims = try redis.client("probe")
            #expect(
                try await RedisKeyValueStore(client: claims, keyspace: RedisKeyspace(prefix: "fleet-b:"))
                    .setIfAbsent("probe:web:1:0", "probe-1", expiry: .seconds(600)))
            await expectRefused(redis, as: "probe", "the default prefix") {
                _ = try await RedisKeyValueStore(client: claims, keyspace: keyspace).setIfAbsent(
                    "probe:web:1:0", "probe-1")
            }
        }
    }
}
