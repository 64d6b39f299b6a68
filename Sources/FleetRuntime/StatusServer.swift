import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` on one port, for every worker.
///
/// `/healthz` answers 200 only when every readiness check passes (connected to the broker, to Redis, …)
/// and 503 otherwise, with a JSON body naming each check, so an orchestrator can see why.
/// A tiny blocking HTTP/1.0 server on its own thread is enough for a scraper and a health checker: it
/// answers one short request at a time and closes the connection.
public final class StatusServer: Service, Sendable {
    public typealias ReadinessCheck = @Sendable () -> Bool

    private let host: String
    private let requestedPort: Int
    private let registry: PrometheusCollectorRegistry
    private let checks: [String: ReadinessCheck]
    private let logger: Logger
    private let state = Mutex<(fd: Int32, port: Int, stopping: Bool)>((-1, 0, false))

    public init(
        host: String = "0.0.0.0", port: Int, registry: PrometheusCollectorRegistry,
        checks: [String: ReadinessCheck], logger: Logger
    ) {
        self.host = host
        requestedPort = port
        self.registry = registry
        self.checks = checks
        self.logger = logger
    }

    /// The bound port (useful with port 0 in tests), once `start` has run.
    public var port: Int { state.withLock { $0.port } }

    /// Binds and starts serving on a thread of its own.
    public func start() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StatusServerError(message: "socket() failed: errno \(errno)") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(requestedPort).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            let code = errno
            close(fd)
            throw StatusServerError(
                message: "cannot listen on \(host):\(requestedPort): errno \(code) (is the port in use?)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: actual.sin_port))
        state.withLock { $0 = (fd, port, false) }
        let thread = Thread { [self] in serve(fd) }
        thread.name = "status-server"
        thread.start()
        logger.info("serving /metrics and /healthz", metadata: ["port": "\(port)"])
    }

    public func stop() {
        state.withLock { $0.stopping = true }
    }

    /// ServiceLifecycle entry: serve until graceful shutdown.
    public func run() async throws {
        try start()
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !self.state.withLock({ $0.stopping }) {
                try? await Task.sleep(for: .milliseconds(200))
            }
        } onGracefulShutdown: {
            self.stop()
        }
        stop()
    }

    private func serve(_ listener: Int32) {
        defer { close(listener) }
        while !state.withLock({ $0.stopping }) {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(client, &buffer, buffer.count, 0)
        guard n > 0 else { return }
        let requestLine = String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = requestLine.split(separator: " ")
        let path = parts.count > 1 ? String(parts[1].split(separator: "?").first ?? "") : ""
        let (status, contentType, body) = respond(method: parts.first.map(String.init) ?? "", path: path)
        let head =
            "HTTP/1.0 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func respond(method: String, path: String) -> (String, String, [UInt8]) {
        guard method == "GET" || method == "HEAD" else {
            return ("405 Method Not Allowed", "text/plain", Array("GET only\n".utf8))
        }
        switch path {
        case "/metrics":
            var out: [UInt8] = []
            registry.emit(into: &out)
            return ("200 OK", "text/plain; version=0.0.4", out)
        case "/healthz", "/readyz":
            let results = checks.mapValues { $0() }
            let ok = results.values.allSatisfy { $0 }
            let body =
                (try? JSONSerialization.data(withJSONObject: ["ready": ok, "checks": results], options: [.sortedKeys]))
                ?? Data()
            return (ok ? "200 OK" : "503 Service Unavailable", "application/json", Array(body) + [10])
        default:
            return ("404 Not Found", "text/plain", Array("try /metrics or /healthz\n".utf8))
        }
    }
}

public struct StatusServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "status server: \(message)" }
}
