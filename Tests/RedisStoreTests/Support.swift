import Foundation
import Testing
@testable import RedisStore

#if canImport(Glibc)
import Glibc
#endif

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
/// without touching the shared one. Killed on `stop()` and in `deinit`.
final class PrivateRedisServer: @unchecked Sendable {
    // Used from one test task at a time; the lock only guards `process` against deinit.
    let port: Int
    private let lock = NSLock()
    private var process: Process?

    init() throws {
        port = try Self.freePort()
    }

    deinit { stop() }

    var url: RedisURL { get throws { try RedisURL("redis://127.0.0.1:\(port)/0") } }

    func start(extraArguments: [String] = []) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.redisServerPath())
        process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        lock.withLock { self.process = process }
        // Wait for readiness by polling the port (the server is usually up in a few ms).
        let deadline = ContinuousClock.now + .seconds(10)
        while !Self.canConnect(port: port) {
            guard ContinuousClock.now < deadline, process.isRunning else {
                throw ServerError(message: "private redis-server on port \(port) did not start")
            }
            usleep(5_000)
        }
    }

    /// SIGKILL, then wait for the process to be gone (its sockets are closed by then).
    func stop() {
        let process = lock.withLock { () -> Process? in
            defer { self.process = nil }
            return self.process
        }
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    struct ServerError: Error, CustomStringConvertible { let message: String; var description: String { message } }

    private static func redisServerPath() throws -> String {
        for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw ServerError(message: "redis-server not found")
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerError(message: "socket() failed") }
        defer { close(fd) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw ServerError(message: "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// Runs `operation` and returns the `RedisError` it threw (failing the test if it did not throw one).
func redisError(_ operation: () async throws -> Void,
                sourceLocation: SourceLocation = #_sourceLocation) async -> RedisError? {
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
