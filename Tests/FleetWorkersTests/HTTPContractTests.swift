import FleetTestSupport
import Foundation
import HTTPTransport
import Testing

/// The HTTP port: `MemoryHTTP` must behave as `HTTPClient` does against a real server wherever the probe
/// and the notifier rely on it. The real client talks to a local `WebhookReceiver` (a Python server, no
/// service variables needed), so both drivers run on every test run.
@Suite("Port contracts: memory and curl HTTP")
struct HTTPContractTests {
    static let drivers = ["memory", "curl"]

    /// What a server saw of one request.
    struct Seen: Equatable {
        var method: String
        var path: String
        /// `name: value`, the name in lower case.
        var headers: [String]
        var body: String
    }

    /// One driver, a server it can reach, a URL where nothing listens and one where nothing answers.
    struct Rig {
        var http: any HTTPExecuting
        var baseURL: String
        /// From now on, requests to `path` are answered `status` with `body`.
        var answer: @Sendable (_ path: String, _ status: Int, _ body: String) async throws -> Void
        /// The requests the server received, in order.
        var seen: @Sendable () async throws -> [Seen]
        var refusedURL: String
        var silentURL: String
        var shutdown: @Sendable () -> Void
        var close: @Sendable () async -> Void
    }

    static func rig(_ driver: String) async throws -> Rig {
        if driver == "memory" {
            let http = MemoryHTTP()
            let base = "http://127.0.0.1:8080"
            http.script("http://127.0.0.1:9090/never", .hang)
            return Rig(
                http: http, baseURL: base,
                answer: { path, status, body in http.script(base + path, .status(status, body)) },
                seen: {
                    http.requests.map { request in
                        Seen(
                            method: request.method, path: String(request.url.dropFirst(base.count)),
                            headers: request.headers.map { "\($0.name.lowercased()): \($0.value)" },
                            body: String(decoding: request.body, as: UTF8.self))
                    }
                },
                refusedURL: "http://127.0.0.1:9191", silentURL: "http://127.0.0.1:9090/never",
                shutdown: { http.shutdown() }, close: {})
        }
        let receiver = try await WebhookReceiver()
        let control = HTTPClient()
        let http = HTTPClient()
        let closedPort = try SilentListener().closeReturningPort()
        let silent = try SilentListener()
        return Rig(
            http: http, baseURL: receiver.baseURL,
            answer: { path, status, body in
                try await receiver.setStatus(status, forPathsStartingWith: path, answer: body, http: control)
            },
            seen: {
                try await receiver.requests(http: control).map { request in
                    Seen(
                        method: request.method, path: request.path, headers: request.headers,
                        body: String(decoding: request.body, as: UTF8.self))
                }
            },
            refusedURL: "http://127.0.0.1:\(closedPort)", silentURL: "http://127.0.0.1:\(silent.port)/never",
            shutdown: { http.shutdown() },
            close: {
                http.shutdown()
                control.shutdown()
                silent.close()
                receiver.stop()
            })
    }

    @Test(
        "the server sees the method, headers and body sent; the status and body it answers come back",
        arguments: drivers)
    func requestAndAnswer(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        try await rig.answer("/hooks/a", 202, "accepted")
        try await rig.answer("/health", 503, "down for maintenance")
        let payload = #"{"text":"shop is down"}"#
        let posted = try await rig.http.execute(
            HTTPRequest(
                method: "POST", url: rig.baseURL + "/hooks/a",
                headers: [("Content-Type", "application/json; charset=utf-8"), ("X-Fleet-Test", "contract")],
                body: Array(payload.utf8)))
        #expect(posted.status == 202)
        #expect(posted.bodyString == "accepted")
        let got = try await rig.http.execute(HTTPRequest(url: rig.baseURL + "/health"))
        #expect(got.status == 503)
        #expect(got.bodyString == "down for maintenance")

        let seen = try await rig.seen()
        try #require(seen.count == 2)
        #expect(seen[0].method == "POST" && seen[0].path == "/hooks/a")
        #expect(seen[0].headers.contains("content-type: application/json; charset=utf-8"))
        #expect(seen[0].headers.contains("x-fleet-test: contract"))
        #expect(seen[0].body == payload)
        #expect(seen[1].method == "GET" && seen[1].path == "/health")
        #expect(seen[1].body.isEmpty)
        await rig.close()
    }

    @Test("nothing listening: the request fails with couldNotConnect, and the error shows no path", arguments: drivers)
    func refusedConnection(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        let error = await #expect(throws: HTTPClientError.self) {
            try await rig.http.execute(
                HTTPRequest(method: "POST", url: rig.refusedURL + "/services/T0/B0/SECRETPATH", body: [1]))
        }
        #expect(error?.kind == .couldNotConnect)
        #expect(error?.redactedURL == rig.refusedURL)
        #expect(error.map { !"\($0)".contains("SECRETPATH") } == true, "a webhook's path is its secret")
        await rig.close()
    }

    @Test("a server that never answers: the request's timeout ends it with .timeout", arguments: drivers)
    func timeout(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        let started = ContinuousClock.now
        let error = await #expect(throws: HTTPClientError.self) {
            try await rig.http.execute(
                HTTPRequest(url: rig.silentURL, timeout: .milliseconds(400), connectTimeout: .milliseconds(400)))
        }
        let elapsed = ContinuousClock.now - started
        #expect(error?.kind == .timeout)
        #expect(elapsed >= .milliseconds(350), "not before the timeout: \(elapsed)")
        #expect(elapsed < .seconds(60), "ended by the timeout, not left hanging: \(elapsed)")
        await rig.close()
    }

    @Test("after shutdown a request fails with .shutdown and never reaches the server", arguments: drivers)
    func afterShutdown(_ driver: String) async throws {
        let rig = try await Self.rig(driver)
        try await rig.answer("/late", 200, "ok")
        rig.shutdown()
        let error = await #expect(throws: HTTPClientError.self) {
            try await rig.http.execute(HTTPRequest(url: rig.baseURL + "/late"))
        }
        #expect(error?.kind == .shutdown)
        #expect(try await rig.seen().isEmpty)
        await rig.close()
    }
}

/// A loopback TCP socket that listens and never accepts: the kernel completes the handshake, so a client
/// connects, sends its request and waits for an answer that never comes.
final class SilentListener: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = fd
        let listening = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard listening else {
            Glibc.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { Glibc.close(fd) }

    /// Closes the socket: its port is then one where nothing listens (connections are refused).
    func closeReturningPort() -> Int {
        close()
        return port
    }
}
