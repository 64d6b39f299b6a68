import Foundation
import Synchronization
import Testing
@testable import RedisStore

enum TestEnvironment {
    static let redisURL = ProcessInfo.processInfo.environment["REDIS_URL"]
    static var hasRedis: Bool { redisURL != nil }

    static func url() throws -> RedisURL {
        try RedisURL(try #require(redisURL, "REDIS_URL is not set"))
    }
}

/// A fresh key prefix per test (`test:<uuid>:`); `cleanUp` deletes every key under it.
struct TestKeyspace {
    let keyspace = RedisKeyspace(prefix: "test:\(UUID().uuidString.lowercased()):")
    var prefix: String { keyspace.prefix }

    /// Runs `body`, then deletes the test's keys whether or not `body` threw.
    func run(with client: RedisClient, _ body: () async throws -> Void) async throws {
        let result: Result<Void, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        try await cleanUp(client)
        try result.get()
    }

    func cleanUp(_ client: RedisClient) async throws {
        try await client.deleteAll(in: keyspace)
    }
}

/// A redis-server of the test's own on a free loopback port, so a test can kill and restart it
/// without touching the shared one (or give it other settings, such as an aclfile). Killed on `stop()`
/// and when released.
final class PrivateRedisServer: Sendable {
    let port: Int
    private let process = Mutex<ChildProcess?>(nil)

    init() throws {
        port = try freeLoopbackPort()
    }

    deinit { stop() }

    var url: RedisURL { get throws { try RedisURL("redis://127.0.0.1:\(port)/0") } }

    /// Starts it and returns once it accepts connections (usually a few ms); the wait runs off the
    /// cooperative pool.
    func start(extraArguments: [String] = []) async throws {
        let child = try await ChildProcess.start(
            [
                try Self.redisServerPath(), "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "no",
            ]
                + extraArguments,
            readyPort: port)
        process.withLock { $0 = child }
    }

    /// SIGKILL, then wait for the process to be gone (its sockets are closed by then).
    func stop() {
        let child = process.withLock { current -> ChildProcess? in
            defer { current = nil }
            return current
        }
        child?.forceStop()
    }

    struct ServerError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    private static func redisServerPath() throws -> String {
        for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw ServerError(message: "redis-server not found")
    }
}

/// Runs `operation` and returns the `RedisError` it threw (failing the test if it did not throw one).
func redisError(
    _ operation: () async throws -> Void,
    sourceLocation: SourceLocation = #_sourceLocation
) async -> RedisError? {
    do {
        try await operation()
        Issue.record("expected a RedisError, but the operation succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as RedisError {
        return error
    } catch {
        Issue.record("expected a RedisError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A lease or claim no test means to outlive. Long, because a CI machine starting hundreds of tests on
/// two cores can stall a test for many seconds between two commands: a 10 s lease once expired between
/// `isHeld` and `release`. Tests of expiry use their own short TTLs and wait on Redis's clock.
let held: Duration = .seconds(600)
