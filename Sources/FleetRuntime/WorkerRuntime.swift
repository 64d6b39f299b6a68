import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// What every worker executable does in `main`: JSON-lines logging, Prometheus metrics on `/metrics`,
/// readiness on `/healthz`, and a ServiceGroup that shuts down gracefully on SIGTERM and SIGINT (each
/// service stops consuming, finishes or requeues what is in flight, and closes its connections).
public enum WorkerRuntime {
    /// Bootstraps logging and metrics once for the process and returns the registry `/metrics` serves.
    public static func bootstrap(environment: [String: String] = ProcessInfo.processInfo.environment)
        -> PrometheusCollectorRegistry
    {
        JSONLogHandler.bootstrap(environment: environment)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// Runs `services` plus the status server until a signal arrives or a service fails.
    ///
    /// The group shuts its services down in reverse order, each after the one listed after it has
    /// finished: list the clients (`ClientService`) first and the consumers last, and in-flight work
    /// always finishes before the clients it uses close. A shutdown that takes longer than
    /// GRACEFUL_SHUTDOWN_TIMEOUT seconds (default 60; keep compose's `stop_grace_period` above it) is
    /// escalated to cancellation.
    public static func run(
        worker: String, services: [any Service], registry: PrometheusCollectorRegistry,
        readiness: [String: StatusServer.ReadinessCheck],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws {
        let logger = Logger(label: worker)
        let port = Int(environment["METRICS_PORT"] ?? "") ?? 9090
        let status = StatusServer(port: port, registry: registry, checks: readiness, logger: logger)
        let group = ServiceGroup(
            configuration: try configuration(services: [status] + services, environment: environment, logger: logger))
        logger.info("\(worker) starting")
        try await group.run()
        logger.info("\(worker) stopped")
    }

    /// The group's configuration (for the tests, which run a worker's services the same way).
    public static func configuration(services: [any Service], environment: [String: String] = [:], logger: Logger)
        throws -> ServiceGroupConfiguration
    {
        let text = environment["GRACEFUL_SHUTDOWN_TIMEOUT"] ?? "60"
        guard let seconds = Double(text), seconds > 0, seconds < 86_400 else {
            throw RuntimeConfigurationError(
                "GRACEFUL_SHUTDOWN_TIMEOUT must be a number of seconds between 0 and 86400, not '\(text)'")
        }
        var configuration = ServiceGroupConfiguration(
            services: services.map {
                .init(
                    service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup)
            },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = .milliseconds(Int64(seconds * 1000))
        return configuration
    }

}

/// A setting of the runtime itself that is malformed.
public struct RuntimeConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A client (broker publisher, Redis, HTTP) as a service: it does nothing until graceful shutdown, then
/// closes the client. List it before the services that use it: the group shuts down in reverse order,
/// so they have finished their in-flight work by the time it closes. Lifetimes by construction, not by
/// remembering which closure carries the cleanup.
public struct ClientService: Service {
    public let name: String
    let close: @Sendable () async -> Void

    public init(_ name: String, close: @escaping @Sendable () async -> Void) {
        self.name = name
        self.close = close
    }

    public func run() async throws {
        // Cancelled (the group escalated, or a test ended) or shut down: close either way.
        try? await gracefulShutdown()
        await close()
    }
}

/// Adapts an async closure to a ServiceLifecycle `Service`. On graceful shutdown `stop` is called; the
/// closure should then return once its in-flight work is finished or handed back.
public struct ClosureService: Service {
    let body: @Sendable () async throws -> Void
    let stop: @Sendable () async -> Void

    public init(run body: @escaping @Sendable () async throws -> Void, stop: @escaping @Sendable () async -> Void) {
        self.body = body
        self.stop = stop
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await body()
        } onGracefulShutdown: {
            Task { await stop() }
        }
    }
}

/// A service whose body runs until cancelled: graceful shutdown cancels it, then `cleanup` closes its
/// connections.
public struct LoopService: Service {
    let body: @Sendable () async -> Void
    let cleanup: @Sendable () async -> Void

    public init(run body: @escaping @Sendable () async -> Void, cleanup: @escaping @Sendable () async -> Void = {}) {
        self.body = body
        self.cleanup = cleanup
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await body() }
        await cleanup()
    }
}
