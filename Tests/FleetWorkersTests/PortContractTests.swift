import Foundation
import FleetTestSupport
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// One contract, every driver: the in-memory ports must behave exactly as the Redis ones, so worker tests
/// on the memory drivers say something about production. The Redis drivers run when REDIS_URL is set.
@Suite("Port contracts: memory and Redis drivers")
struct PortContractTests {
    static var drivers: [String] { environment["REDIS_URL"] == nil ? ["memory"] : ["memory", "redis"] }

    /// A store and a schedule of the named driver, on fresh keys, and how to clean up.
    func make(_ driver: String) async throws -> (any VersionedStore, any WakeUpSchedule, @Sendable () async -> Void) {
        guard driver == "redis" else { return (MemoryVersionedStore(), MemorySchedule(), {}) }
        let redis = try await RedisClient.connect(url: try RedisURL(environment["REDIS_URL"]!))
        let keyspace = RedisKeyspace(prefix: "contract-\(UUID().uuidString.prefix(8)):")
        return (
            RedisStateStore(client: redis, keyspace: keyspace),
            RedisSchedule(client: redis, keyspace: keyspace, name: "s"),
            {
                _ = try? await redis.deleteAll(in: keyspace)
                await redis.close()
            }
        )
    }

    @Test(arguments: drivers)
    func versionedStore(_ driver: String) async throws {
        let (store, _, cleanUp) = try await make(driver)
        #expect(try await store.load("a") == nil)
        #expect(try await store.compareAndSet("a", expectedVersion: 1, data: "x") == nil, "nothing to be at version 1")
        #expect(try await store.compareAndSet("a", expectedVersion: 0, data: "one") == 1)
        #expect(
            try await store.compareAndSet("a", expectedVersion: 0, data: "again") == nil, "a second first write loses")
        #expect(try await store.load("a") == VersionedValue(data: "one", version: 1))
        #expect(try await store.compareAndSet("a", expectedVersion: 1, data: "two") == 2)
        #expect(try await store.compareAndSet("a", expectedVersion: 1, data: "stale") == nil, "a stale writer loses")
        #expect(try await store.load("a") == VersionedValue(data: "two", version: 2))
        #expect(try await store.version("a") == 2, "the version alone")
        #expect(try await store.version("never") == 0)
        #expect(try await store.compareAndSet("b", expectedVersion: 0, data: "") == 1, "empty data is data")
        #expect(try await store.load("b") == VersionedValue(data: "", version: 1))
        #expect(try await store.keys() == ["a", "b"])
        try await store.delete("a")
        #expect(try await store.load("a") == nil)
        #expect(
            try await store.compareAndSet("a", expectedVersion: 0, data: "reborn") == 1,
            "after a delete the key starts again")
        // Racing writers on one version: exactly one wins.
        let wins = try await withThrowingTaskGroup(of: Int64?.self) { group in
            for i in 0..<8 {
                group.addTask { try await store.compareAndSet("race", expectedVersion: 0, data: "w\(i)") }
            }
            var won = 0
            for try await result in group where result != nil { won += 1 }
            return won
        }
        #expect(wins == 1)
        await cleanUp()
    }

    /// Two keys in one atomic write (the decision worker's target and fleet brake): both or neither.
    @Test(arguments: drivers)
    func versionedStoreWritesSeveralKeysAtomically(_ driver: String) async throws {
        let (store, _, cleanUp) = try await make(driver)
        #expect(
            try await store.compareAndSet(all: [
                VersionedWrite("t", expectedVersion: 0, data: "t1"),
                VersionedWrite("brake", expectedVersion: 0, data: "b1"),
            ]) == [1, 1])
        #expect(try await store.compareAndSet("brake", expectedVersion: 1, data: "b2") == 2)
        // The brake moved on: the target's write must not land either.
        #expect(
            try await store.compareAndSet(all: [
                VersionedWrite("t", expectedVersion: 1, data: "t2"),
                VersionedWrite("brake", expectedVersion: 1, data: "stale"),
            ]) == nil)
        #expect(try await store.load("t") == VersionedValue(data: "t1", version: 1))
        #expect(try await store.load("brake") == VersionedValue(data: "b2", version: 2))
        #expect(
            try await store.compareAndSet(all: [
                VersionedWrite("t", expectedVersion: 1, data: "t2"),
                VersionedWrite("brake", expectedVersion: 2, data: "b3"),
            ]) == [2, 3])
        #expect(try await store.compareAndSet(all: [VersionedWrite("solo", expectedVersion: 0, data: "s")]) == [1])
        await #expect(throws: (any Error).self) {
            try await store.compareAndSet(all: [
                VersionedWrite("d", expectedVersion: 0, data: "1"), VersionedWrite("d", expectedVersion: 0, data: "2"),
            ])
        }
        // Racing pairs that share the brake: exactly one wins.
        let wins = try await withThrowingTaskGroup(of: [Int64]?.self) { group in
            for i in 0..<8 {
                group.addTask {
                    try await store.compareAndSet(all: [
                        VersionedWrite("target-\(i)", expectedVersion: 0, data: "x"),
                        VersionedWrite("brake", expectedVersion: 3, data: "w\(i)"),
                    ])
                }
            }
            var won = 0
            for try await result in group where result != nil { won += 1 }
            return won
        }
        #expect(wins == 1)
        #expect(
            try await store.keys().filter { $0.hasPrefix("target-") }.count == 1, "the losers wrote no target either")
        await cleanUp()
    }

    @Test(arguments: drivers)
    func schedule(_ driver: String) async throws {
        let (_, schedule, cleanUp) = try await make(driver)
        let t0 = Date(timeIntervalSince1970: 1_796_000_000.25)
        try await schedule.schedule("late", at: t0.addingTimeInterval(60))
        try await schedule.schedule("b", at: t0)
        try await schedule.schedule("a", at: t0)
        try await schedule.schedule("early", at: t0.addingTimeInterval(-5))
        #expect(try await schedule.due(at: t0.addingTimeInterval(-10), limit: 10) == [])
        #expect(
            try await schedule.due(at: t0, limit: 10) == ["early", "a", "b"],
            "earliest first, ties by name, the boundary included")
        #expect(try await schedule.due(at: t0, limit: 2) == ["early", "a"])
        try await schedule.schedule("early", at: t0.addingTimeInterval(120))  // moved, not added
        try await schedule.cancel("a")
        try await schedule.cancel("never-there")
        #expect(try await schedule.due(at: t0.addingTimeInterval(90), limit: 10) == ["b", "late"])
        await cleanUp()
    }

    /// Expiry: the memory driver's clock is moved; Redis is given a short expiry and waited out.
    @Test(arguments: drivers)
    func keyValueStore(_ driver: String) async throws {
        let clock = TestInstant()
        var store: any KeyValueStore = MemoryKeyValueStore(now: { clock.now })
        var cleanUp: @Sendable () async -> Void = {}
        var pass: @Sendable (Duration) async throws -> Void = { clock.advance($0) }
        if driver == "redis" {
            let redis = try await RedisClient.connect(url: try RedisURL(environment["REDIS_URL"]!))
            let keyspace = RedisKeyspace(prefix: "contract-\(UUID().uuidString.prefix(8)):")
            store = RedisKeyValueStore(client: redis, keyspace: keyspace)
            cleanUp = {
                _ = try? await redis.deleteAll(in: keyspace)
                await redis.close()
            }
            pass = { try await Task.sleep(for: $0) }
        }
        #expect(try await store.get("k") == nil)
        #expect(try await store.setIfAbsent("k", "first", expiry: nil))
        #expect(try await store.setIfAbsent("k", "second", expiry: nil) == false)
        #expect(try await store.get("k") == "first")
        try await store.set("k", "replaced", expiry: nil)
        #expect(try await store.get("k") == "replaced")
        #expect(try await store.delete("k"))
        #expect(try await store.delete("k") == false)
        #expect(try await store.setIfAbsent("claim", "w1", expiry: .seconds(2)))
        #expect(
            try await store.setIfAbsent("claim", "w2", expiry: .seconds(2)) == false, "held until it expires")
        // Two seconds, not 200 ms: on Redis the clock is real, and a loaded CI machine once took longer than
        // 200 ms between two commands.
        try await pass(.milliseconds(2500))
        #expect(try await store.get("claim") == nil, "expired")
        #expect(try await store.setIfAbsent("claim", "w2", expiry: .seconds(2)), "an expired claim can be taken")
        await #expect(throws: (any Error).self, "a zero expiry is refused") {
            try await store.set("z", "v", expiry: .zero)
        }
        await cleanUp()
    }
}

/// A clock a test moves by hand.
final class TestInstant: Sendable {
    private let value = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { value.withLock { $0 } }
    func advance(_ by: Duration) { value.withLock { $0 += by } }
}
