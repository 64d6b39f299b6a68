import Foundation
import Testing
@testable import RedisStore

/// Restarts a private redis-server (never the shared one) under a live client.
@Suite("Reconnect after a Redis restart", .enabled(if: TestEnvironment.hasRedis), .serialized)
struct RedisReconnectTests {
    @Test func clientRecoversAfterServerRestarts() async throws {
        let server = try PrivateRedisServer()
        try await server.start()
        defer { server.stop() }
        let options = RedisClient.Options(
            connectTimeout: .milliseconds(500), commandTimeout: .seconds(2),
            reconnectAttempts: 3, reconnectInitialDelay: .milliseconds(20))
        let client = try await RedisClient.connect(url: try server.url, options: options)
        let locks = RedisLockStore(client: client)
        let before = try #require(try await locks.acquire(name: "restart", ttl: .seconds(30)))
        #expect(try await client.command(["INCR", "n"], idempotent: false) == .integer(1))
        #expect(
            try await client.command(["SCRIPT", "EXISTS", RedisLockStore.acquireScript.sha1], idempotent: true)
                == .array([.integer(1)]))

        // 1. Restart while the client is idle. Documented: the client sees the closed socket before
        //    sending, reconnects, and the first command succeeds, even a non-idempotent one, and runs
        //    exactly once (the new server has no data, so INCR gives 1).
        server.stop()
        try await server.start()
        #expect(try await client.command(["INCR", "n"], idempotent: false) == .integer(1))
        #expect(try await client.command(["GET", "n"], idempotent: true).integer == 1)

        // The restart flushed the script cache: EVALSHA gets NOSCRIPT and the store falls back to EVAL.
        #expect(
            try await client.command(["SCRIPT", "EXISTS", RedisLockStore.acquireScript.sha1], idempotent: true)
                == .array([.integer(0)]))
        let after = try #require(try await locks.acquire(name: "restart", ttl: .seconds(30)))
        #expect(
            try await client.command(["SCRIPT", "EXISTS", RedisLockStore.acquireScript.sha1], idempotent: true)
                == .array([.integer(1)]))
        // Without persistence the fence restarted too: that is why production Redis for locks must
        // persist (see docs/redis-keys.md). Here it only shows the lease is new.
        #expect(after.token != before.token)
        #expect(try await locks.isHeld(after))

        // 2. Server down: commands fail with a typed connection error after the bounded attempts.
        server.stop()
        let down = try #require(await redisError { _ = try await client.command(["PING"], idempotent: true) })
        #expect(down.kind == .connection)
        #expect(down.message.contains("after 3 connect attempts"))
        let downAgain = try #require(
            await redisError { _ = try await client.command(["INCR", "n"], idempotent: false) })
        #expect(downAgain.kind == .connection)

        // 3. Server back on the same port: the next command reconnects and works.
        try await server.start()
        #expect(try await client.command(["INCR", "n"], idempotent: false) == .integer(1))
        #expect(try await client.command(["PING"], idempotent: true) == .status("PONG"))
    }
}
