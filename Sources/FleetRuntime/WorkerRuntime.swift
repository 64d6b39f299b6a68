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
    public static func bootstrap(environment: [String: String] = ProcessInfo.processInfo.environment) -> PrometheusCollectorRegistry {
        JSONLogHandler.bootstrap(environment: environment)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// Runs `services` plus the status server until a signal arrives or a service fails.
    public static func run(
        worker: String, services: [any Service], registry: PrometheusCollectorRegistry,
        readiness: [String: StatusServer.ReadinessCheck], environment: [String: String] = ProcessInfo.processInfo.environment
    ) async throws {
        let logger = Logger(label: worker)
        let port = Int(environment["METRICS_PORT"] ?? "") ?? 9090
        let status = StatusServer(port: port, registry: registry, checks: readiness, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: ([status] + services).map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        logger.info("\(worker) starting")
        try await group.run()
        logger.info("\(worker) stopped")
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
