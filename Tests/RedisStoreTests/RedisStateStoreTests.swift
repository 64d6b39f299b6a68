import Foundation
import RedisStore
import Synchronization
import Testing

@Suite("RedisStateStore and RedisSchedule against REDIS_URL", .enabled(if: TestEnvironment.hasRedis))
struct RedisStateStoreTests {
    @Test func compareAndSetRefusesAStaleVersion() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let store = RedisStateStore(client: client, keyspace: keys.keyspace)
            let v1 = try await store.load("t1")
            #expect(v1 == nil)
            let v2 = try await store.compareAndSet("t1", expectedVersion: 0, data: #"{"a":1}"#)
            #expect(v2 == 1)
            let v3 = try await store.load("t1")
            #expect(v3 == .init(data: #"{"a":1}"#, version: 1))
            // A writer that read version 0 lost the race.
            let v4 = try await store.compareAndSet("t1", expectedVersion: 0, data: #"{"a":2}"#)
            #expect(v4 == nil)
            let v5 = try await store.compareAndSet("t1", expectedVersion: 1, data: #"{"a":3}"#)
            #expect(v5 == 2)
            let v6 = try await store.load("t1")?.data
            #expect(v6 == #"{"a":3}"#)
            let v7 = try await store.keys()
            #expect(v7 == ["t1"])
        }
    }

    @Test func concurrentReadModifyWriteLosesNoUpdate() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let store = RedisStateStore(client: client, keyspace: keys.keyspace)
            let keyspace = keys.keyspace
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        let own = try await RedisClient.connect(url: try TestEnvironment.url())
                        let mine = RedisStateStore(client: own, keyspace: keyspace)
                        for _ in 0..<10 {
                            while true {
                                let current = try await mine.load("counter")
                                let n = Int(current?.data ?? "0")! + 1
                                if try await mine.compareAndSet(
                                    "counter", expectedVersion: current?.version ?? 0, data: "\(n)") != nil
                                {
                                    break
                                }
                            }
                        }
                        await own.close()
                    }
                }
                try await group.waitForAll()
            }
            let v8 = try await store.load("counter")
            #expect(v8 == .init(data: "200", version: 200))
        }
    }

    @Test func scheduleReturnsDueMembersInOrder() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let schedule = RedisSchedule(client: client, keyspace: keys.keyspace, name: "deadlines")
            let t0 = Date(timeIntervalSince1970: 1_800_000_000)
            try await schedule.schedule("b", at: t0.addingTimeInterval(20))
            try await schedule.schedule("a", at: t0.addingTimeInterval(10))
            try await schedule.schedule("c", at: t0.addingTimeInterval(30))
            let v9 = try await schedule.due(at: t0)
            #expect(v9 == [])
            let v10 = try await schedule.due(at: t0.addingTimeInterval(25))
            #expect(v10 == ["a", "b"])
            try await schedule.schedule("a", at: t0.addingTimeInterval(40))  // moved later
            try await schedule.cancel("b")
            let v11 = try await schedule.due(at: t0.addingTimeInterval(35))
            #expect(v11 == ["c"])
        }
    }
}
