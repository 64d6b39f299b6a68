import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore

/// The notifier: delivers each `notification` (a `Notice`) to every channel its router names.
///
/// - Channels are independent: they deliver concurrently, each retried with backoff on its own
///   (`maxAttempts`), and one that keeps failing does not stop the others.
/// - A channel that fails for good is recorded (log, `recovery_notifications_total{result="failed"}`) and
///   the message is copied to `<queue>.dead` with the channel and the error in `x-reject-reason` and the
///   channel in `x-notifier-channel`. The original is then acked: the channels that worked stay done.
/// - Each success leaves a marker `notified:<notice id>:<channel>` in Redis, checked before sending, so a
///   notice redelivered by the broker (or shovelled back from the dead-letter queue, or published twice
///   by a restarted decision worker) is sent only to the channels that did not take it yet.
/// - With `enabled` false, notices are acked and counted (`result="disabled"`), never sent.
///
/// It runs on ports (docs/architecture.md): the markers on a `KeyValueStore`, dead letters through a
/// `MessagePublishing`, the channels on `HTTPExecuting` and `NoticeSenders`; `services` lists what the
/// executable runs, in shutdown order.
public final class NotifierWorker: Sendable {
    public struct Options: Sendable {
        public var workerId: String
        public var enabled = true
        /// Attempts per channel and notice (the first included).
        public var maxAttempts = 3
        /// The wait before the second attempt; doubled before each later one.
        public var initialBackoff: Duration = .seconds(1)
        /// How long a sent-marker is kept: longer than any redelivery or shovel-back can take.
        public var markerExpiry: Duration = .seconds(7 * 86_400)
        public init(workerId: String) { self.workerId = workerId }
    }

    public enum Result: String, Sendable {
        case sent, failed, duplicate, disabled
        /// No channel is configured for the notice's target (muted with `notify.channels: []`, or none
        /// at all); the notice stays in history, nothing is sent.
        case unrouted
    }

    public static let channelHeader = "x-notifier-channel"

    let options: Options
    let router: any NotificationRouting
    let markers: any KeyValueStore
    let deadLetters: DeadLetterSink
    let queue: String
    let logger: Logger
    let sleep: @Sendable (Duration) async throws -> Void

    public init(
        options: Options, router: any NotificationRouting, markers: any KeyValueStore, deadLetters: DeadLetterSink,
        queue: String, logger: Logger,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.options = options
        self.router = router
        self.markers = markers
        self.deadLetters = deadLetters
        self.queue = queue
        self.logger = logger
        self.sleep = sleep
    }

    public static func markerKey(noticeId: String, channel: String) -> String { "notified:\(noticeId):\(channel)" }

    /// What happened per channel, for tests and logs.
    public struct Outcome: Sendable, Equatable {
        public var results: [String: Result]
    }

    public func handle(_ envelope: Envelope<Notice>, delivery: AMQPDelivery) async throws {
        _ = try await deliver(envelope.body, delivery: delivery)
    }

    /// The announcer for the notifier's `SenderGate`: a forged notification must not reach people, but
    /// the forgery itself must, so the notifier sends the `unauthorized_sender` notice straight to its
    /// channels (it may not publish notifications itself).
    public func announcingRefusals(clock: @escaping @Sendable () -> Date = Date.init) -> SenderGate.Announce {
        { refusal in
            let notice = refusal.notice(at: clock(), announcedBy: self.options.workerId)
            do { try await self.deliver(notice, delivery: nil) } catch {
                self.logger.error("could not announce a refused sender", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Delivers one notice. Throws (so the message is requeued) only when nothing can be decided: Redis
    /// unreachable before sending, or a dead-letter copy the broker did not confirm. A notice of the
    /// notifier's own (`delivery` nil: announcing a refused sender) has no message to dead-letter: a
    /// channel that fails it is only logged.
    @discardableResult
    public func deliver(_ notice: Notice, delivery: AMQPDelivery?) async throws -> Outcome {
        var logger = logger
        logger[metadataKey: "message_id"] = "\(delivery?.properties.messageId ?? notice.id)"
        if let incident = notice.incidentId { logger[metadataKey: "incident_id"] = "\(incident)" }
        if let instance = notice.instanceId { logger[metadataKey: "instance_id"] = "\(instance)" }
        guard options.enabled else {
            Self.count("all", .disabled)
            logger.info(
                "notification disabled (NOTIFICATION_ENABLED=false); notice not sent",
                metadata: ["kind": "\(notice.kind.rawValue)"])
            return Outcome(results: [:])
        }
        let channels = try await router.channels(for: notice)
        if channels.isEmpty {
            Self.count("none", .unrouted)
            logger.warning(
                "no notification channel for this notice's target; not sent",
                metadata: ["kind": "\(notice.kind.rawValue)"])
            return Outcome(results: [:])
        }
        let channelLogger = logger
        var failures: [(channel: String, error: String)] = []
        var results: [String: Result] = [:]
        try await withThrowingTaskGroup(of: (String, Result, String?).self) { group in
            for channel in channels {
                group.addTask { try await self.deliver(notice, to: channel, logger: channelLogger) }
            }
            for try await (name, result, error) in group {
                results[name] = result
                if let error { failures.append((name, error)) }
            }
        }
        for failure in failures.sorted(by: { $0.channel < $1.channel }) {
            let reason =
                "notifier channel \(failure.channel) failed after \(options.maxAttempts) attempts: \(failure.error)"
            guard let delivery else {
                logger.error(
                    "the notifier's own notice was not delivered to \(failure.channel)",
                    metadata: ["error": "\(failure.error)"])
                continue
            }
            try await deadLetters.deadLetter(
                delivery, fromQueue: queue, reason: reason,
                headers: [Self.channelHeader: .string(failure.channel)])
            logger.error(
                "notice not delivered to \(failure.channel); dead-lettered",
                metadata: [
                    "channel": "\(failure.channel)", "error": "\(failure.error)", "kind": "\(notice.kind.rawValue)",
                ])
        }
        return Outcome(results: results)
    }

    /// One channel: skip it when a marker says it was sent, else try it up to `maxAttempts` times.
    /// Returns the channel's name, the result and, for a failure, the last error's description.
    private func deliver(_ notice: Notice, to channel: any NotificationChannel, logger: Logger) async throws -> (
        String, Result, String?
    ) {
        let key = Self.markerKey(noticeId: notice.id, channel: channel.name)
        if try await markers.get(key) != nil {
            Self.count(channel.name, .duplicate)
            logger.debug("notice already sent to \(channel.name); skipped", metadata: ["channel": "\(channel.name)"])
            return (channel.name, .duplicate, nil)
        }
        var backoff = options.initialBackoff
        var lastError = ""
        for attempt in 1...max(1, options.maxAttempts) {
            do {
                try await channel.deliver(notice)
                do {
                    _ = try await markers.setIfAbsent(key, options.workerId, expiry: options.markerExpiry)
                } catch {
                    // Sent, but a redelivery would send it again; nothing better to do than say so.
                    logger.warning(
                        "notice sent but its marker was not stored; a redelivery would repeat it",
                        metadata: [
                            "channel": "\(channel.name)", "error": "\(error)",
                        ])
                }
                Self.count(channel.name, .sent)
                logger.info(
                    "notice sent to \(channel.name)",
                    metadata: ["channel": "\(channel.name)", "kind": "\(notice.kind.rawValue)"])
                return (channel.name, .sent, nil)
            } catch let error as CancellationError {
                throw error
            } catch {
                lastError = "\(error)"
                logger.warning(
                    "delivery to \(channel.name) failed",
                    metadata: [
                        "channel": "\(channel.name)", "attempt": "\(attempt)", "error": "\(error)",
                    ])
                if error is any PermanentDeliveryFailure { break }
                if attempt < options.maxAttempts {
                    try await sleep(backoff)
                    backoff *= 2
                }
            }
        }
        Self.count(channel.name, .failed)
        return (channel.name, .failed, lastError)
    }

    static func count(_ channel: String, _ result: Result) {
        FleetMetrics.notifications(channel: channel, result: result.rawValue).increment()
    }
}
