import FleetTestSupport
import Foundation
import RecoveryCore
import RedisStore
import Testing

@testable import FleetWorkers

/// The actuator's lock and record ports: `MemoryLockStore` must hold, refuse and fence as `RedisLockStore`
/// does, and `StepRecordStore` must refuse a stale actor's write on the memory store as on Redis. The
/// Redis drivers run when REDIS_URL is set.
@Suite("Port contracts: lock store and step records, memory and Redis")
struct LockStoreContractTests {
    static var drivers: [String] { environment["REDIS_URL"] == nil ? ["memory"] : ["memory", "redis"] }

    /// The drivers under test, how time passes for them (the memory clock is moved, Redis is waited out),
    /// a probe of a record key's expiry (nil: the store keeps records), and the clean-up.
    struct Rig {
        var locks: any LockStore
        var records: StepRecordStore
        var pass: @Sendable (Duration) async throws -> Void
        var expiry: @Sendable (String) async throws -> Duration?
        var cleanUp: @Sendable () async -> Void
    }

    static func rig(_ driver: String) async throws -> Rig {
        if driver == "memory" {
            let clock = TestInstant()
            return Rig(
                locks: MemoryLockStore(now: { clock.now }), records: StepRecordStore(states: MemoryVersionedStore()),
                pass: { clock.advance($0) }, expiry: { _ in nil }, cleanUp: {})
        }
        let redis = try await RedisClient.connect(url: try RedisURL(environment["REDIS_URL"]!))
        let keyspace = RedisKeyspace(prefix: "contract-\(UUID().uuidString.prefix(8)):")
        return Rig(
            locks: RedisLockStore(client: redis, keyspace: keyspace),
            records: StepRecordStore(states: RedisStateStore(client: redis, keyspace: keyspace)),
            pass: { try await Task.sleep(for: $0) },
            expiry: { key in
                let ttl =
                    try await redis.command(["TTL", "\(keyspace.prefix)state:\(key)"], idempotent: true).integer ?? -2
                return ttl > 0 ? .seconds(ttl) : nil
            },
            cleanUp: {
                _ = try? await redis.deleteAll(in: keyspace)
                await redis.close()
            })
    }

    @Test(
        "a lock held by one lease refuses another; each acquisition fences higher; a stale lease is refused",
        arguments: drivers)
    func oneHolderAndGrowingFences(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        let first = try #require(try await rig.locks.acquire(name: "web", ttl: .seconds(600)))
        #expect(first.fencingToken > 0)
        #expect(try await rig.locks.acquire(name: "web", ttl: .seconds(600)) == nil, "held: another actor is refused")
        #expect(try await rig.locks.isHeld(first))
        #expect(try await rig.locks.renew(first, ttl: .seconds(600)))
        #expect(try await rig.locks.acquire(name: "api", ttl: .seconds(600)) != nil, "another name is another lock")

        #expect(try await rig.locks.release(first))
        #expect(try await !rig.locks.isHeld(first))
        #expect(try await !rig.locks.release(first), "released once")
        let second = try #require(try await rig.locks.acquire(name: "web", ttl: .seconds(600)))
        #expect(second.fencingToken > first.fencingToken)
        #expect(
            try await !rig.locks.renew(first, ttl: .seconds(600)), "the stale lease cannot extend the successor's lock")
        #expect(try await !rig.locks.release(first), "nor free it")
        #expect(try await !rig.locks.isHeld(first))
        #expect(try await rig.locks.isHeld(second), "the successor still holds it")
        await rig.cleanUp()
    }

    @Test(
        "an expired lock can be taken, under a larger fencing token; the old lease no longer renews", arguments: drivers
    )
    func expiry(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        let paused = try #require(try await rig.locks.acquire(name: "web", ttl: .milliseconds(300)))
        try await rig.pass(.milliseconds(600))
        #expect(try await !rig.locks.isHeld(paused), "expired")
        let next = try #require(try await rig.locks.acquire(name: "web", ttl: .seconds(600)))
        #expect(next.fencingToken > paused.fencingToken)
        #expect(try await !rig.locks.renew(paused, ttl: .seconds(600)))
        #expect(try await rig.locks.isHeld(next))
        await rig.cleanUp()
    }

    @Test("a name that cannot be a lock and a TTL that is not positive are refused", arguments: drivers)
    func refusals(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        await #expect(throws: (any Error).self) { _ = try await rig.locks.acquire(name: "{web}", ttl: .seconds(1)) }
        await #expect(throws: (any Error).self) { _ = try await rig.locks.acquire(name: "", ttl: .seconds(1)) }
        await #expect(throws: (any Error).self) { _ = try await rig.locks.acquire(name: "web", ttl: .zero) }
        await rig.cleanUp()
    }

    @Test(
        "a step record written under a newer fencing token, or completed, refuses a stale actor's write",
        arguments: drivers)
    func stepRecordsAreFenced(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        let request = ActionRequest(
            idempotencyKey: "web/inc-1/reprovision", target: "web", incidentId: "inc-1", step: .reprovision,
            instanceId: "i-1",
            region: "us-east-1", destinationRegion: "us-east-1", elasticIpAllocationId: nil,
            requestedAt: Date(timeIntervalSince1970: 1_800_000_000),
            deadline: Date(timeIntervalSince1970: 1_800_000_600), requestedBy: nil)
        // Whole seconds: the stored record keeps its times to the second.
        let stale = StepRecord(
            request: request, owner: "actuator-a", fencingToken: 1, dryRun: false,
            now: Date(timeIntervalSince1970: 1_800_000_001))
        #expect(try await rig.records.create(stale))
        #expect(try await !rig.records.create(stale), "one record per key")

        var successor = stale
        (successor.owner, successor.fencingToken, successor.attempts) = ("actuator-b", 2, 2)
        successor.done = [.inspect, .snapshot]
        try await rig.records.save(successor)
        var late = stale
        late.done = [.inspect]
        await #expect(throws: LeaseLost.self, "the stale actor's write is refused") { try await rig.records.save(late) }
        #expect(try await rig.records.load(request.idempotencyKey) == successor, "the successor's progress is kept")

        var completed = successor
        completed.status = .completed
        completed.outcome = ActionOutcome(for: request, status: .succeeded)
        try await rig.records.save(completed)
        var again = successor
        again.notes = ["one more note"]
        await #expect(throws: LeaseLost.self, "a completed record is not reopened") {
            try await rig.records.save(again)
        }
        #expect(try await rig.records.load(request.idempotencyKey)?.status == .completed)
        if driver == "redis" {
            let ttl = try #require(try await rig.expiry(StepRecordStore.key(request.idempotencyKey)))
            #expect(ttl > .seconds(86_400), "a completed record in Redis expires after the retention")
        }
        await rig.cleanUp()
    }
}
