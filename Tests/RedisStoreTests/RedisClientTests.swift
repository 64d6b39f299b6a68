import Foundation
import Testing
@testable import RedisStore

@Suite("RedisClient against REDIS_URL", .enabled(if: TestEnvironment.hasRedis))
struct RedisClientTests {
    @Test func repliesAreCopiedIntoValues() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        #expect(try await client.command(["PING"], idempotent: true) == .status("PONG"))
        let nested = try await client.command(
            ["EVAL", "return {1, 'two', {3}, redis.error_reply('ERR boom'), redis.status_reply('FINE')}", "0"],
            idempotent: true)
        #expect(
            nested
                == .array([
                    .integer(1), .bulkString(Array("two".utf8)), .array([.integer(3)]),
                    .error("ERR boom"), .status("FINE"),
                ]))
        let keys = TestKeyspace()
        try await keys.run(with: client) { () async throws in
            #expect(try await client.command(["GET", "\(keys.prefix)absent"], idempotent: true) == .null)
        }
    }

    @Test func argumentsAreBinarySafe() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) { () async throws in
            let key = Array("\(keys.prefix)bin".utf8)
            let value: [UInt8] = [0, 255, 13, 10, 0, 37, 115, 32]  // NUL, 0xFF, CRLF, "%s "
            #expect(try await client.command([Array("SET".utf8), key, value], idempotent: true) == .status("OK"))
            #expect(try await client.command([Array("GET".utf8), key], idempotent: true) == .bulkString(value))
            #expect(try await client.command(["SET", "\(keys.prefix)empty", ""], idempotent: true) == .status("OK"))
            #expect(try await client.command(["GET", "\(keys.prefix)empty"], idempotent: true) == .bulkString([]))
        }
    }

    @Test func serverErrorIsTypedAndConnectionStaysUsable() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let key = "\(keys.prefix)text"
            _ = try await client.command(["SET", key, "x"], idempotent: true)
            let error = try #require(
                await redisError { _ = try await client.command(["LPUSH", key, "a"], idempotent: false) })
            #expect(error.kind == .server)
            #expect(error.serverErrorCode == "WRONGTYPE")
            #expect(error.message.hasPrefix("WRONGTYPE Operation against a key holding the wrong kind of value"))
            #expect(error.command == "LPUSH")
            #expect(error.description.contains(client.url.endpoint))
            // Same connection still works: the client id is unchanged.
            let idBefore = try await client.command(["CLIENT", "ID"], idempotent: true)
            let unknown = try #require(
                await redisError { _ = try await client.command(["NOSUCHCOMMAND"], idempotent: true) })
            #expect(unknown.kind == .server)
            #expect(unknown.message.contains("unknown command"))
            #expect(try await client.command(["CLIENT", "ID"], idempotent: true) == idBefore)
            #expect(try await client.command(["GET", key], idempotent: true).string == "x")
        }
    }

    @Test func emptyCommandIsRejectedLocally() async throws {
        let client = RedisClient(url: try TestEnvironment.url())
        let error = try #require(await redisError { _ = try await client.command([String](), idempotent: true) })
        #expect(error.kind == .invalidArgument)
    }

    @Test func scriptSHA1MatchesServer() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        for script in [
            RedisLockStore.acquireScript, RedisLockStore.renewScript, RedisLockStore.releaseScript,
            RedisCounterStore.incrementWithExpiryScript,
        ] {
            let loaded = try await client.command(["SCRIPT", "LOAD", script.source], idempotent: true)
            #expect(loaded.string == script.sha1)
        }
    }

    @Test func commandTimeoutDropsConnectionAndNextCommandWorks() async throws {
        // 1 s, not less: every command of this client has that budget, and on a loaded 2-core machine
        // (other suites starting redis-server and stunnel processes) a 200 ms budget made the quick
        // commands around the BLPOP time out too.
        let options = RedisClient.Options(commandTimeout: .seconds(1))
        let client = try await RedisClient.connect(url: try TestEnvironment.url(), options: options)
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let idBefore = try #require(try await client.command(["CLIENT", "ID"], idempotent: true).integer)
            // BLPOP on an empty list blocks for 5 s on the server: longer than the 1 s timeout.
            let error = try #require(
                await redisError {
                    _ = try await client.command(["BLPOP", "\(keys.prefix)never", "5"], idempotent: true)
                })
            #expect(error.kind == .timeout)
            #expect(error.command == "BLPOP")
            // The timed-out connection was dropped (its late reply must not be read as the next
            // answer): the next command runs on a new connection and gets its own reply.
            #expect(try await client.command(["ECHO", "after"], idempotent: true).string == "after")
            let idAfter = try #require(try await client.command(["CLIENT", "ID"], idempotent: true).integer)
            #expect(idAfter != idBefore)
        }
    }

    @Test func connectionRefusedIsTypedAfterBoundedAttempts() async throws {
        let server = try PrivateRedisServer()  // port reserved but nothing listening
        let options = RedisClient.Options(
            connectTimeout: .milliseconds(500), reconnectAttempts: 3,
            reconnectInitialDelay: .milliseconds(10))
        let client = RedisClient(url: try server.url, options: options)
        let error = try #require(await redisError { _ = try await client.command(["PING"], idempotent: true) })
        #expect(error.kind == .connection)
        #expect(error.message.contains("after 3 connect attempts"))
        #expect(error.endpoint == "127.0.0.1:\(server.port)")
    }

    @Test func closedClientRefusesCommands() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        await client.close()
        let error = try #require(await redisError { _ = try await client.command(["PING"], idempotent: true) })
        #expect(error.kind == .closed)
    }

    @Test func authAndSelectOnConnect() async throws {
        // A private server with a password: wrong password is a connection error that names no secret,
        // the right one works, and /db selects the database.
        let server = try PrivateRedisServer()
        try await server.start(extraArguments: ["--requirepass", "s3cret-pw"])
        defer { server.stop() }
        let wrong = RedisClient(
            url: try RedisURL("redis://:wrong-pw@127.0.0.1:\(server.port)/0"),
            options: .init(reconnectAttempts: 1))
        let error = try #require(await redisError { _ = try await wrong.command(["PING"], idempotent: true) })
        #expect(error.kind == .connection)
        #expect(error.message.contains("WRONGPASS") || error.message.contains("invalid password"))
        #expect(!error.description.contains("wrong-pw"))

        let right = try await RedisClient.connect(
            url: try RedisURL("redis://:s3cret-pw@127.0.0.1:\(server.port)/5"),
            options: .init(clientName: "auth-test"))
        let info = try #require(try await right.command(["CLIENT", "INFO"], idempotent: true).string)
        #expect(info.contains("db=5"))
        #expect(info.contains("name=auth-test"))
        let aclUser = try await RedisClient.connect(
            url: try RedisURL("redis://default:s3cret-pw@127.0.0.1:\(server.port)/0"))
        #expect(try await aclUser.command(["PING"], idempotent: true) == .status("PONG"))
    }
}

@Suite("RedisClient retry on a connection broken mid-command", .enabled(if: TestEnvironment.hasRedis))
struct RedisInFlightBreakTests {
    /// Waits until a connection named `name` (other than `excluding`) is blocked in BLPOP; returns its id.
    /// Polls CLIENT LIST with a deadline: the state change happens in another task on the server.
    func blockedClientID(_ admin: RedisClient, name: String, excluding: String? = nil) async throws -> String {
        // Generous: on a loaded 2-core machine the client can take seconds to connect and block.
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let list = try #require(try await admin.command(["CLIENT", "LIST"], idempotent: true).string)
            for line in list.split(separator: "\n") {
                let fields = Dictionary(
                    line.split(separator: " ").compactMap { field -> (String, String)? in
                        let parts = field.split(separator: "=", maxSplits: 1)
                        return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
                    }, uniquingKeysWith: { first, _ in first })
                if fields["name"] == name, fields["cmd"] == "blpop", let id = fields["id"], id != excluding {
                    return id
                }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw PrivateRedisServer.ServerError(message: "no connection named \(name) blocked in BLPOP")
    }

    @Test func nonIdempotentCommandThrowsConnectionError() async throws {
        let url = try TestEnvironment.url()
        let name = "t-\(UUID().uuidString.prefix(8))"
        let client = RedisClient(url: url, options: .init(commandTimeout: .seconds(40), clientName: name))
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        try await keys.run(with: admin) {
            let pending = Task { () async throws -> RedisValue in
                try await client.command(["BLPOP", "\(keys.prefix)q", "30"], idempotent: false)
            }
            let id = try await blockedClientID(admin, name: name)
            _ = try await admin.command(["CLIENT", "KILL", "ID", id], idempotent: true)
            let result = await pending.result
            guard case .failure(let failure) = result, let error = failure as? RedisError else {
                Issue.record("expected a RedisError, got \(result)")
                return
            }
            #expect(error.kind == .connection)
            #expect(error.command == "BLPOP")
            // Not resent: nothing is blocked under that name any more. The next command reconnects.
            let list = try #require(try await admin.command(["CLIENT", "LIST"], idempotent: true).string)
            #expect(!list.contains("name=\(name) "))
            #expect(try await client.command(["PING"], idempotent: false) == .status("PONG"))
        }
    }

    @Test func idempotentCommandIsResentOnceOnANewConnection() async throws {
        let url = try TestEnvironment.url()
        let name = "t-\(UUID().uuidString.prefix(8))"
        let client = RedisClient(url: url, options: .init(commandTimeout: .seconds(40), clientName: name))
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        try await keys.run(with: admin) {
            let queue = "\(keys.prefix)q"
            let pending = Task { () async throws -> RedisValue in
                try await client.command(["BLPOP", queue, "30"], idempotent: true)
            }
            let first = try await blockedClientID(admin, name: name)
            _ = try await admin.command(["CLIENT", "KILL", "ID", first], idempotent: true)
            // The client reconnects and sends BLPOP again: a new connection blocks under the same name.
            let second = try await blockedClientID(admin, name: name, excluding: first)
            #expect(second != first)
            _ = try await admin.command(["LPUSH", queue, "job-1"], idempotent: false)
            let reply = try await pending.value
            #expect(reply == .array([.bulkString(Array(queue.utf8)), .bulkString(Array("job-1".utf8))]))
        }
    }
}
