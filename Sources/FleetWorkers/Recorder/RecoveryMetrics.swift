import AWSClient
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import Synchronization

/// The fleet's CloudWatch custom metrics, counted from the history queue by the recorder and sent with
/// PutMetricData, aggregated per minute (docs/history.md):
///
/// | metric | unit | what |
/// |---|---|---|
/// | `RecoveryActionsExecuted` | Count | action outcomes (`action.event`: succeeded, failed, human_needed) |
/// | `RecoverySuccessRate` | Percent | succeeded ÷ executed × 100, for minutes with at least one outcome |
/// | `PredictionsGenerated` | Count | `prediction` messages |
/// | `HighConfidencePredictions` | Count | predictions whose `confidence` (else `probability`) ≥ the threshold (minutes with one) |
///
/// Only messages whose history row was newly written are counted, so a redelivered message, or one
/// handled by two recorder replicas, counts once. Each datum carries its minute as timestamp. A flush
/// that fails keeps its minutes for the next flush. The same figures are Prometheus metrics on the
/// recorder's /metrics: `recovery_actions_executed_total{status}`, `recovery_predictions_total`,
/// `recovery_high_confidence_predictions_total` and `recovery_success_rate` (percent since start).
public final class RecoveryMetrics: Sendable {
    public struct Options: Sendable {
        public var namespace = "EC2/AutoRecovery"
        /// E.g. `[Fleet: production]`; empty for none.
        public var dimensions: [MetricDimension] = []
        /// A prediction at or above this confidence counts as high-confidence.
        public var highConfidence: Double = 0.8
        public init() {}
    }

    struct Minute: Sendable, Equatable {
        var executed = 0
        var succeeded = 0
        var predictions = 0
        var highConfidence = 0

        mutating func add(_ other: Minute) {
            executed += other.executed
            succeeded += other.succeeded
            predictions += other.predictions
            highConfidence += other.highConfidence
        }
    }

    struct State {
        var minutes: [Int64: Minute] = [:]
        var totalExecuted = 0
        var totalSucceeded = 0
    }

    public let options: Options
    let cloudWatch: (any MetricDataPutting)?
    let logger: Logger
    private let state = Mutex(State())

    /// Without a CloudWatch client the figures are only Prometheus metrics.
    public init(options: Options = Options(), cloudWatch: (any MetricDataPutting)?, logger: Logger) {
        self.options = options
        self.cloudWatch = cloudWatch
        self.logger = logger
    }

    /// Counts one newly recorded history message.
    public func observe(_ message: HistoryMessage) {
        let minute = Int64((message.occurredAt.timeIntervalSince1970 / 60).rounded(.down)) * 60
        let body = message.body.mapValue ?? [:]
        var delta = Minute()
        switch message.type {
        case .actionEvent:
            guard let status = body["status"]?.stringValue else { return }
            delta.executed = 1
            if status == ActionOutcome.Status.succeeded.rawValue { delta.succeeded = 1 }
            FleetMetrics.actionsExecuted(status: status).increment()
        case .prediction:
            delta.predictions = 1
            let confidence = (body["confidence"] ?? body["probability"])?.numberValue.flatMap { Double($0.text) }
            if let confidence, confidence >= options.highConfidence { delta.highConfidence = 1 }
            FleetMetrics.predictionsRecorded.increment()
            if delta.highConfidence == 1 { FleetMetrics.highConfidencePredictionsRecorded.increment() }
        default:
            return
        }
        let rate: Double? = state.withLock { s in
            s.minutes[minute, default: Minute()].add(delta)
            s.totalExecuted += delta.executed
            s.totalSucceeded += delta.succeeded
            return delta.executed > 0 ? Double(s.totalSucceeded) / Double(s.totalExecuted) * 100 : nil
        }
        if let rate { FleetMetrics.successRate.record(rate) }
    }

    /// The data of the minutes before `now`'s minute (all minutes when `all`), taken out of the buffer.
    func take(before now: Date, all: Bool) -> [Int64: Minute] {
        let current = Int64((now.timeIntervalSince1970 / 60).rounded(.down)) * 60
        return state.withLock { s in
            let done = s.minutes.filter { all || $0.key < current }
            for key in done.keys { s.minutes[key] = nil }
            return done
        }
    }

    func datums(_ minutes: [Int64: Minute]) -> [MetricDatum] {
        var data: [MetricDatum] = []
        for (start, m) in minutes.sorted(by: { $0.key < $1.key }) {
            let at = Date(timeIntervalSince1970: TimeInterval(start))
            func datum(_ name: String, _ value: Double, _ unit: MetricUnit) -> MetricDatum {
                MetricDatum(metricName: name, value: value, dimensions: options.dimensions, timestamp: at, unit: unit)
            }
            if m.executed > 0 {
                data.append(datum("RecoveryActionsExecuted", Double(m.executed), .count))
                data.append(datum("RecoverySuccessRate", Double(m.succeeded) / Double(m.executed) * 100, .percent))
            }
            if m.predictions > 0 { data.append(datum("PredictionsGenerated", Double(m.predictions), .count)) }
            // No zeros: CloudWatch bills a custom metric for every hour it receives data, and medium
            // predictions come most hours; a sum over missing minutes is the same.
            if m.highConfidence > 0 {
                data.append(datum("HighConfidencePredictions", Double(m.highConfidence), .count))
            }
        }
        return data
    }

    /// Sends the finished minutes (every minute when `all`, at shutdown) in one PutMetricData call (the
    /// client splits it at CloudWatch's limits). Returns the number of data points sent. On failure the
    /// minutes go back into the buffer and the error is thrown.
    @discardableResult
    public func flush(now: Date = Date(), all: Bool = false) async throws -> Int {
        let minutes = take(before: now, all: all)
        let data = datums(minutes)
        guard let cloudWatch, !data.isEmpty else { return 0 }
        do {
            try await cloudWatch.putMetricData(namespace: options.namespace, data: data)
            return data.count
        } catch {
            state.withLock { s in for (key, m) in minutes { s.minutes[key, default: Minute()].add(m) } }
            FleetMetrics.errors(worker: "recorder", kind: "put_metric_data").increment()
            throw error
        }
    }

    /// Flushes every `interval` until cancelled, then sends what is left.
    public func run(interval: Duration = .seconds(60), clock: @escaping @Sendable () -> Date = Date.init) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled {
                // Shutting down: the last flush runs in a task of its own, because the HTTP client refuses
                // to start a request in a cancelled task (it would fail and keep the minutes unsent).
                await Task { await self.flushLogging(now: clock(), all: true) }.value
                return
            }
            await flushLogging(now: clock(), all: false)
        }
    }

    public func flushLogging(now: Date = Date(), all: Bool) async {
        do { try await flush(now: now, all: all) } catch {
            logger.warning(
                "CloudWatch metrics not sent; they are kept for the next flush", metadata: ["error": "\(error)"])
        }
    }
}
