import Foundation
import Testing
@testable import RedisStore

@Suite("Counters and small values against REDIS_URL", .enabled(if: TestEnvironment.hasRedis))
struct RedisCounterStoreTests {
    @Test func incrementGetReset() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let counters = RedisCounterStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            #expect(try await counters.get("restarts") == 0)
            #expect(try await counters.increment("restarts") == 1)
            #expect(try await counters.increment("restarts", by: 5) == 6)
            #expect(try await counters.increment("restarts", by: -2) == 4)
            #expect(try await counters.get("restarts") == 4)
            #expect(
                try await client.command(["PTTL", keys.keyspace.counterKey("restarts")], idempotent: true)
                    == .integer(-1))
            try await counters.reset("restarts")
            #expect(try await counters.get("restarts") == 0)
            #expect(
                try await client.command(["EXISTS", keys.keyspace.counterKey("restarts")], idempotent: true)
                    == .integer(0))
            try await counters.reset("never-existed")
        }
    }

    @Test func incrementWithExpirySetsTTLEachTime() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let counters = RedisCounterStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            let key = keys.keyspace.counterKey("window")
            #expect(try await counters.increment("window", by: 3, expiry: .seconds(60)) == 3)
            let first = try #require(try await client.command(["PTTL", key], idempotent: true).integer)
            #expect(first > 0 && first <= 60_000)
            // A later increment with a longer expiry resets the TTL to it.
            #expect(try await counters.increment("window", expiry: .seconds(600)) == 4)
            let second = try #require(try await client.command(["PTTL", key], idempotent: true).integer)
            #expect(second > 60_000 && second <= 600_000)
            // Without expiry the existing TTL is left alone (INCRBY keeps it).
            #expect(try await counters.increment("window") == 5)
            let third = try #require(try await client.command(["PTTL", key], idempotent: true).integer)
            #expect(third > 60_000 && third <= 600_000)
            let error = try #require(await redisError { _ = try await counters.increment("window", expiry: .zero) })
            #expect(error.kind == .invalidArgument)
        }
    }

    @Test func concurrentIncrementsSumExactly() async throws {
        let url = try TestEnvironment.url()
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        var stores: [RedisCounterStore] = []
        for _ in 0..<5 {
            stores.append(RedisCounterStore(client: try await RedisClient.connect(url: url), keyspace: keys.keyspace))
        }
        try await keys.run(with: admin) {
            let tasks = 50
            let perTask = 20
            let results = try await withThrowingTaskGroup(of: [Int64].self) { group in
                for t in 0..<tasks {
                    let counters = stores[t % stores.count]
                    group.addTask {
                        var seen: [Int64] = []
                        for i in 0..<perTask {
                            // Half with expiry (the Lua path), half without (plain INCRBY).
                            seen.append(
                                try await counters.increment("hits", expiry: i.isMultiple(of: 2) ? .seconds(60) : nil))
                        }
                        return seen
                    }
                }
                var all: [Int64] = []
                for try await seen in group { all += seen }
                return all
            }
            #expect(try await stores[0].get("hits") == Int64(tasks * perTask))
            // Every increment saw a distinct value: no lost or duplicated update.
            #expect(results.sorted() == Array(1...Int64(tasks * perTask)))
        }
    }

    @Test func nonIntegerCounterIsATypedError() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let counters = RedisCounterStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            _ = try await client.command(["SET", keys.keyspace.counterKey("bad"), "abc"], idempotent: true)
            let readError = try #require(await redisError { _ = try await counters.get("bad") })
            #expect(readError.kind == .protocolViolation)
            let incrError = try #require(await redisError { _ = try await counters.increment("bad") })
            #expect(incrError.kind == .server)
            #expect(incrError.message.contains("not an integer"))
            let scriptError = try #require(
                await redisError { _ = try await counters.increment("bad", expiry: .seconds(1)) })
            #expect(scriptError.kind == .server)
            #expect(scriptError.message.contains("not an integer"))
            #expect(try await client.command(["PING"], idempotent: true) == .status("PONG"))
        }
    }

    @Test func keyValueSetGetDeleteAndSetIfAbsent() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let values = RedisKeyValueStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            #expect(try await values.get("state") == nil)
            try await values.set("state", "rebooting ✓")
            #expect(try await values.get("state") == "rebooting ✓")
            #expect(
                try await client.command(["PTTL", keys.keyspace.valueKey("state")], idempotent: true) == .integer(-1))
            try await values.set("state", "stopped", expiry: .seconds(30))
            #expect(try await values.get("state") == "stopped")
            let pttl = try #require(
                try await client.command(["PTTL", keys.keyspace.valueKey("state")], idempotent: true).integer)
            #expect(pttl > 0 && pttl <= 30_000)
            #expect(try await values.delete("state"))
            #expect(try await values.delete("state") == false)
            #expect(try await values.get("state") == nil)

            #expect(try await values.setIfAbsent("idem:msg-1", "first", expiry: .seconds(60)))
            #expect(try await values.setIfAbsent("idem:msg-1", "second", expiry: .seconds(60)) == false)
            #expect(try await values.get("idem:msg-1") == "first")
            let idemTTL = try #require(
                try await client.command(["PTTL", keys.keyspace.valueKey("idem:msg-1")], idempotent: true).integer)
            #expect(idemTTL > 0 && idemTTL <= 60_000)
            #expect(try await values.setIfAbsent("idem:msg-2", "x"))
        }
    }

    @Test func setIfAbsentHasExactlyOneWinner() async throws {
        let url = try TestEnvironment.url()
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        var stores: [RedisKeyValueStore] = []
        for _ in 0..<10 {
            stores.append(RedisKeyValueStore(client: try await RedisClient.connect(url: url), keyspace: keys.keyspace))
        }
        try await keys.run(with: admin) {
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for (i, store) in stores.enumerated() {
                    group.addTask { try await store.setIfAbsent("idem:race", "worker-\(i)", expiry: .seconds(60)) }
                }
                var count = 0
                for try await won in group where won { count += 1 }
                return count
            }
            #expect(wins == 1)
        }
    }
}
