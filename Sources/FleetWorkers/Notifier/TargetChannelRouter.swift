import AWSClient
import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import Synchronization

/// Routes each notice to its target's channels: the target's `notify` settings (targets file plus
/// instance-config table, a `TargetConfigReading`) laid over the fleet-wide `NotificationDefaults`. The
/// channels send through the HTTP port (webhooks) and `NoticeSenders` (SES and SNS).
///
/// - The configuration is re-read at most every `refresh` (default 30 s), not per notice: a burst of
///   notices costs one table scan.
/// - A notice never waits on, or is lost to, a configuration problem: when the table cannot be read the
///   last good configuration is used, and before any was read the fleet defaults; a target whose entry
///   is invalid gets the fleet defaults. Each case is logged and counted
///   (`recovery_notify_routing_fallbacks_total{reason}`).
public final class TargetChannelRouter: NotificationRouting {
    let defaults: NotificationDefaults
    let source: any TargetConfigReading
    let http: any HTTPExecuting
    let aws: any NoticeSenders
    let formatter: NoticeFormatter
    let refresh: Duration
    let logger: Logger
    private let cache = Mutex<(at: ContinuousClock.Instant, config: TargetConfigFile)?>(nil)

    public init(
        defaults: NotificationDefaults, source: any TargetConfigReading, http: any HTTPExecuting,
        aws: any NoticeSenders,
        formatter: NoticeFormatter, refresh: Duration = .seconds(30), logger: Logger = Logger(label: "notifier")
    ) {
        self.defaults = defaults
        self.source = source
        self.http = http
        self.aws = aws
        self.formatter = formatter
        self.refresh = refresh
        self.logger = logger
    }

    public func channels(for notice: Notice) async throws -> [any NotificationChannel] {
        build(defaults.specs(for: await notify(for: notice)), notice: notice)
    }

    /// The target's `notify` settings; nil for fleet-wide notices and on any configuration problem.
    func notify(for notice: Notice) async -> TargetNotify? {
        guard let target = notice.target, !target.isEmpty else { return nil }
        guard let config = await configuration() else { return nil }
        do {
            return try config.entry(for: target).notify
        } catch {
            fallback(
                "invalid-entry",
                "the configuration of target '\(target)' is invalid, its notice goes to the fleet's channels: \(error)")
            return nil
        }
    }

    func configuration() async -> TargetConfigFile? {
        let now = ContinuousClock.now
        let cached = cache.withLock { $0 }
        if let cached, now - cached.at < refresh { return cached.config }
        do {
            let config = try await source.current()
            cache.withLock { $0 = (now, config) }
            return config
        } catch {
            if let cached {
                fallback(
                    "table-unreadable",
                    "cannot read the target configuration, using the one read \(now - cached.at) ago: \(error)")
                return cached.config
            }
            fallback(
                "table-unreadable", "cannot read the target configuration, notices go to the fleet's channels: \(error)"
            )
            return nil
        }
    }

    func build(_ result: (specs: [ChannelSpec], problems: [String]), notice: Notice) -> [any NotificationChannel] {
        for problem in result.problems {
            var logger = logger
            if let target = notice.target { logger[metadataKey: "target"] = "\(target)" }
            logger.error("notification channels: \(problem)")
        }
        return result.specs.map { $0.channel(http: http, aws: aws, formatter: formatter) }
    }

    private func fallback(_ reason: String, _ message: String) {
        logger.warning("\(message)")
        FleetMetrics.routingFallbacks(reason: reason).increment()
    }
}
