import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` on one port, for every worker.
///
/// `/healthz` answers 200 only when every readiness check passes (connected to the broker, to Redis, …)
/// and 503 otherwise, with a JSON body naming each check, so an orchestrator can see why.
///
/// On Hummingbird (SwiftNIO): connections are served concurrently on the event loops, so a client that
/// connects and sends nothing, or asks and never reads the answer, holds only its own connection (closed
/// after `idleTimeout`) and never delays a scraper or a health check. (The hand-written socket server
/// it replaces answered one connection at a time; each silent client stalled everyone for 2 s.)
public final class StatusServer: Service, Sendable {
    public typealias ReadinessCheck = @Sendable () -> Bool

    private let host: String
    private let requestedPort: Int
    private let registry: PrometheusCollectorRegistry
    private let checks: [String: ReadinessCheck]
    private let logger: Logger
    private let idleTimeout: Duration
    private let state = Mutex<(port: Int, group: ServiceGroup?)>((0, nil))

    public init(
        host: String = "0.0.0.0", port: Int, registry: PrometheusCollectorRegistry,
        checks: [String: ReadinessCheck], logger: Logger, idleTimeout: Duration = .seconds(30)
    ) {
        self.host = host
        requestedPort = port
        self.registry = registry
        self.checks = checks
        self.logger = logger
        self.idleTimeout = idleTimeout
    }

    /// The bound port (useful with port 0 in tests), once the server is listening.
    public var port: Int { state.withLock { $0.port } }

    /// ServiceLifecycle entry: serves until graceful shutdown (or cancellation).
    public func run() async throws {
        try await application(onListening: { _ in }).run()
    }

    /// Starts serving in the background and returns once the port is bound (tests, helpers); `stop()`
    /// ends it. A bind failure is thrown.
    public func start() async throws {
        let group = try await Self.startInBackground(logger: logger, what: "\(host):\(requestedPort)") {
            application(onListening: $0)
        }
        state.withLock { $0.group = group }
    }

    /// Runs the service `make` builds (given the callback it must call once listening, with the port) in a
    /// service group of its own, in the background; returns the group once the service listens, or throws
    /// what stopped it first. For servers started by tests and helpers (the console's too).
    public static func startInBackground(
        logger: Logger, what: String, _ make: (@escaping @Sendable (Int) -> Void) -> some Service
    ) async throws -> ServiceGroup {
        let (bound, continuation) = AsyncStream.makeStream(of: Result<Int, any Error>.self)
        let group = ServiceGroup(
            configuration: .init(services: [make { continuation.yield(.success($0)) }], logger: logger))
        Task {
            do { try await group.run() } catch { continuation.yield(.failure(error)) }
            continuation.finish()
        }
        for await result in bound {
            _ = try result.get()
            return group
        }
        throw StatusServerError(message: "stopped before listening on \(what)")
    }

    /// Ends a server begun with `start()`.
    public func stop() {
        guard let group = state.withLock({ $0.group }) else { return }
        Task { await group.triggerGracefulShutdown() }
    }

    private func application(onListening: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let responder = CallbackResponder<BasicRequestContext> { [self] request, _ in
            let (status, contentType, body) = respond(method: request.method.rawValue, path: request.uri.path)
            var response = Response(
                status: status, headers: [.contentType: contentType],
                body: request.method == .head ? .init() : .init(byteBuffer: ByteBuffer(bytes: body)))
            response.headers[.contentLength] = "\(body.count)"
            return response
        }
        var logger = logger
        logger.logLevel = max(logger.logLevel, .notice)  // not one line per scrape
        let timeout = idleTimeout.components
        return Application(
            responder: responder,
            server: .http1(
                configuration: .init(
                    idleTimeout: .nanoseconds(timeout.seconds * 1_000_000_000 + timeout.attoseconds / 1_000_000_000))),
            configuration: ApplicationConfiguration(address: .hostname(host, port: requestedPort), serverName: nil),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? 0
                state.withLock { $0.port = port }
                self.logger.info("serving /metrics and /healthz", metadata: ["port": "\(port)"])
                onListening(port)
            },
            logger: logger)
    }

    func respond(method: String, path: String) -> (HTTPResponse.Status, String, [UInt8]) {
        guard method == "GET" || method == "HEAD" else {
            return (.methodNotAllowed, "text/plain", Array("GET only\n".utf8))
        }
        switch path {
        case "/metrics":
            var out: [UInt8] = []
            registry.emit(into: &out)
            return (.ok, "text/plain; version=0.0.4", out)
        case "/healthz", "/readyz":
            let results = checks.mapValues { $0() }
            let ok = results.values.allSatisfy { $0 }
            let body =
                (try? JSONSerialization.data(withJSONObject: ["ready": ok, "checks": results], options: [.sortedKeys]))
                ?? Data()
            return (ok ? .ok : .serviceUnavailable, "application/json", Array(body) + [10])
        default:
            return (.notFound, "text/plain", Array("try /metrics or /healthz\n".utf8))
        }
    }
}

public struct StatusServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { "status server: \(message)" }
}
