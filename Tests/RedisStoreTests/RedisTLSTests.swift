import Foundation
import Testing
@testable import RedisStore

/// Debian's stunnel4, which scripts/services.sh installs (CI runs it); the TLS suite is skipped without it.
enum Stunnel {
    static let path: String? = ["/usr/bin/stunnel4", "/usr/bin/stunnel", "/usr/local/bin/stunnel"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }
    static var isInstalled: Bool { path != nil }

    /// The shipped config `name` (compose/stunnel/), with only `values` replaced (addresses and file
    /// paths); throws if one of them is not in the file, so a reshaped config fails the test instead of
    /// being silently tested with its old settings.
    static func config(_ name: String, replacing values: [String: String]) throws -> String {
        let shipped = try String(
            contentsOf: repositoryRoot.appendingPathComponent("compose/stunnel/\(name)"), encoding: .utf8)
        var replaced = Set<String>()
        let lines = shipped.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { return String(line) }
            let option = parts[0].trimmingCharacters(in: .whitespaces)
            guard let value = values[option] else { return String(line) }
            replaced.insert(option)
            return "\(option) = \(value)"
        }
        guard replaced == Set(values.keys) else {
            throw ChildProcessError("compose/stunnel/\(name) has no \(Set(values.keys).subtracting(replaced).sorted())")
        }
        return lines.joined(separator: "\n")
    }
}

/// A throwaway CA with a server and a client certificate, made by the shipped
/// compose/stunnel/make-dev-certs.sh (openssl).
struct DevCertificates {
    let directory: URL
    func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    /// A new CA, or with `sameCAAs`, certificates issued by that one's CA. `serverName` is the server
    /// certificate's name (the script's default is the one redis-client.conf checks).
    static func make(in directory: URL, sameCAAs other: DevCertificates? = nil, serverName: String? = nil) async throws
        -> DevCertificates
    {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let other {
            for file in ["ca.pem", "ca.key"] {
                try FileManager.default.copyItem(
                    atPath: other.path(file), toPath: directory.appendingPathComponent(file).path)
            }
        }
        var environment = ProcessInfo.processInfo.environment
        environment["REDIS_TLS_NAME"] = serverName
        let made = try await ChildProcess.run(
            [repositoryRoot.appendingPathComponent("compose/stunnel/make-dev-certs.sh").path, directory.path],
            environment: environment)
        guard made.status == 0 else { throw ChildProcessError("make-dev-certs.sh failed: \(made.output)") }
        return DevCertificates(directory: directory)
    }
}

/// Both ends of the tunnel, from the shipped configs, on free loopback ports: the client end accepts
/// plain Redis on `url`'s port and carries it over TLS to the server end, which passes it to the shared
/// Redis (REDIS_URL).
struct RedisTunnel {
    let server: ChildProcess
    let client: ChildProcess
    let serverPort: Int
    /// The Redis URL through the tunnel (REDIS_URL's credentials, the client end's port).
    let url: RedisURL

    static func start(
        in directory: URL, server serverCertificates: DevCertificates,
        clientCertificate: DevCertificates, clientTrusts: DevCertificates
    ) async throws -> RedisTunnel {
        let redis = try TestEnvironment.url()
        let serverPort = try freeLoopbackPort()
        let serverConfig = directory.appendingPathComponent("redis-server.conf")
        try Stunnel.config(
            "redis-server.conf",
            replacing: [
                "accept": "127.0.0.1:\(serverPort)", "connect": redis.endpoint,
                "cert": serverCertificates.path("server.pem"), "key": serverCertificates.path("server.key"),
                "CAfile": serverCertificates.path("ca.pem"),
            ]
        ).write(to: serverConfig, atomically: true, encoding: .utf8)
        let server = try await ChildProcess.start(
            [try #require(Stunnel.path), serverConfig.path], readyPort: serverPort)

        let clientPort = try freeLoopbackPort()
        let clientConfig = directory.appendingPathComponent("redis-client.conf")
        try Stunnel.config(
            "redis-client.conf",
            replacing: [
                "accept": "127.0.0.1:\(clientPort)", "connect": "127.0.0.1:\(serverPort)",
                "cert": clientCertificate.path("client.pem"), "key": clientCertificate.path("client.key"),
                "CAfile": clientTrusts.path("ca.pem"),
            ]
        ).write(to: clientConfig, atomically: true, encoding: .utf8)
        let client: ChildProcess
        do {
            client = try await ChildProcess.start(
                [try #require(Stunnel.path), clientConfig.path], readyPort: clientPort)
        } catch {
            await server.stop()
            throw error
        }
        let url = try RedisURL(
            host: "127.0.0.1", port: clientPort, database: redis.database, user: redis.user,
            password: redis.password)
        return RedisTunnel(server: server, client: client, serverPort: serverPort, url: url)
    }

    func stop() async {
        await client.stop()
        await server.stop()
    }
}

@Suite(
    "Redis through the stunnel TLS tunnel (compose/stunnel)", .enabled(if: TestEnvironment.hasRedis),
    .enabled(if: Stunnel.isInstalled, "stunnel4 is not installed: scripts/services.sh install installs it"))
struct RedisTLSTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-tls-\(UUID().uuidString)")

    /// The fleet CA (server and client certificates) and another CA, both from make-dev-certs.sh.
    func certificates() async throws -> (fleet: DevCertificates, other: DevCertificates) {
        (
            try await DevCertificates.make(in: directory.appendingPathComponent("fleet")),
            try await DevCertificates.make(in: directory.appendingPathComponent("other"))
        )
    }

    /// Runs `body` with a tunnel and a client through it; stops both and deletes the files afterwards.
    func withTunnel(
        server: DevCertificates, clientCertificate: DevCertificates, clientTrusts: DevCertificates,
        _ body: (RedisTunnel, RedisClient) async throws -> Void
    ) async throws {
        defer { try? FileManager.default.removeItem(at: directory) }
        let tunnel = try await RedisTunnel.start(
            in: directory, server: server, clientCertificate: clientCertificate,
            clientTrusts: clientTrusts)
        let client = RedisClient(
            url: tunnel.url,
            options: .init(
                connectTimeout: .seconds(5), commandTimeout: .seconds(5),
                reconnectAttempts: 1, clientName: "tls-test"))
        let result: Result<Void, any Error>
        do { result = .success(try await body(tunnel, client)) } catch { result = .failure(error) }
        await client.close()
        await tunnel.stop()
        try result.get()
    }

    /// The client's command fails, and nothing reached Redis: the key the command would have set is absent.
    func expectNothingGetsThrough(
        _ client: RedisClient, _ keys: TestKeyspace, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let key = "\(keys.prefix)must-not-exist"
        let error = try #require(
            await redisError(
                { _ = try await client.command(["SET", key, "v"], idempotent: false) },
                sourceLocation: sourceLocation),
            sourceLocation: sourceLocation)
        #expect(error.kind == .connection, "\(error)", sourceLocation: sourceLocation)
        let direct = try await RedisClient.connect(url: try TestEnvironment.url())
        #expect(
            try await direct.command(["EXISTS", key], idempotent: true) == .integer(0), sourceLocation: sourceLocation)
        await direct.close()
    }

    @Test func commandsGoThroughWithCertificatesFromTheFleetCA() async throws {
        let (fleet, _) = try await certificates()
        try await withTunnel(server: fleet, clientCertificate: fleet, clientTrusts: fleet) { tunnel, client in
            let keys = TestKeyspace()
            let direct = try await RedisClient.connect(url: try TestEnvironment.url())
            try await keys.run(with: direct) {
                #expect(try await client.command(["PING"], idempotent: true) == .status("PONG"))
                #expect(
                    try await client.command(["SET", "\(keys.prefix)k", "through TLS"], idempotent: true)
                        == .status("OK"))
                #expect(try await direct.command(["GET", "\(keys.prefix)k"], idempotent: true).string == "through TLS")
                // The connection is the tunnel's: Redis sees it coming from the server end, named by the client.
                let info = try #require(try await client.command(["CLIENT", "INFO"], idempotent: true).string)
                #expect(info.contains("name=tls-test"))
                // The server end speaks only TLS: plain Redis to it is cut off.
                let plain = RedisClient(
                    url: try RedisURL(host: "127.0.0.1", port: tunnel.serverPort),
                    options: .init(reconnectAttempts: 1))
                let refused = try #require(await redisError { _ = try await plain.command(["PING"], idempotent: true) })
                #expect(refused.kind == .connection)
            }
            await direct.close()
            #expect(tunnel.client.log.contains("Certificate accepted at depth=0: CN=redis.fleet.internal"))
        }
    }

    @Test func clientCertificateFromAnotherCAIsRefused() async throws {
        let (fleet, other) = try await certificates()
        // The client end trusts the server, but presents a certificate the fleet CA did not issue.
        try await withTunnel(server: fleet, clientCertificate: other, clientTrusts: fleet) { tunnel, client in
            try await expectNothingGetsThrough(client, TestKeyspace())
            #expect(tunnel.server.log.contains("Rejected by CERT at depth=0: CN=client"), "\(tunnel.server.log)")
        }
    }

    @Test func clientEndThatDoesNotTrustTheServersCAFails() async throws {
        let (fleet, other) = try await certificates()
        try await withTunnel(server: fleet, clientCertificate: fleet, clientTrusts: other) { tunnel, client in
            try await expectNothingGetsThrough(client, TestKeyspace())
            #expect(tunnel.client.log.contains("Rejected by CERT"), "\(tunnel.client.log)")
        }
    }

    @Test func serverCertificateForAnotherNameIsRefused() async throws {
        let (fleet, _) = try await certificates()
        // Issued by the fleet CA, but for a name other than the one redis-client.conf checks.
        let elsewhere = try await DevCertificates.make(
            in: directory.appendingPathComponent("elsewhere"), sameCAAs: fleet,
            serverName: "elsewhere.example")
        try await withTunnel(server: elsewhere, clientCertificate: fleet, clientTrusts: fleet) { tunnel, client in
            try await expectNothingGetsThrough(client, TestKeyspace())
            #expect(tunnel.client.log.contains("Rejected by CERT"), "\(tunnel.client.log)")
        }
    }
}
