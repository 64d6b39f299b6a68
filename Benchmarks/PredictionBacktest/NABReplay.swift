import Foundation
import RecoveryCore

/// Replays a labelled series through the real `Predictor` as the workers run it, and says which rows
/// the fleet would have alarmed on (docs/prediction.md, "Real labelled series").
///
/// - Cadence: the predictor runs at every whole `interval` (PREDICTION_INTERVAL, an hour) and sees the
///   rows of the last `lookbackHours` whose period has ended (a row at t covers [t, t + step)), as the
///   worker's GetMetricData returns them; the series is fed as `metric` at its own resolution.
/// - Alarm: every prediction of the metric's kind at or above `threshold` (HIGH_CONFIDENCE_THRESHOLD)
///   goes to the decision worker's own `PredictiveRepair` machine, as the decision worker hands it
///   over; an alarm is a prediction that machine accepts (its `trouble_predicted` notice). So the quiet
///   period, the one plan at a time and an SSM repair's grace period are exactly the decision's. A
///   repair the machine requests succeeds `repairTakes` later.
/// - The alarm flags the newest row the predictor saw.
public struct NABReplay: Sendable {
    public var predictor: Predictor
    public var threshold = 0.8
    public var interval: TimeInterval = 3600
    /// The rows fed at each run: as far back as the predictor reads CPU and network (their pattern).
    public var lookbackHours = Predictor.Configuration().patternLookbackHours
    public var settings = TargetSettings()
    public var repairTakes: TimeInterval = 120

    public init(predictor: Predictor = Predictor()) { self.predictor = predictor }

    public struct Alarm: Sendable, Equatable {
        public var time: Double
        public var row: Int
        public var confidence: Double
        public var detail: String
    }

    /// What one run over a series gave.
    public struct Run: Sendable {
        public var alarms: [Alarm]
        /// Every evaluation's confidence of the kind (0 when none), for threshold sweeps.
        public var confidences: [(time: Double, row: Int, confidence: Double, detail: String)]
        public var evaluations: Int
    }

    /// The kind a metric's anomalies are published as.
    public static func kind(of metric: PredictorMetric) -> PredictionKind {
        switch metric {
        case .cpu: .cpuAnomaly
        case .networkIn, .networkOut: .networkAnomaly
        case .disk: .diskExhaustion
        case .memory: .memoryExhaustion
        case .cpuCreditBalance: .cpuCreditExhaustion
        case .statusCheckFailed: .statusCheckRecurrence
        }
    }

    public func run(_ series: NABSeries, as metric: PredictorMetric) -> Run {
        let kind = Self.kind(of: metric)
        let step = series.step
        guard let firstTime = series.times.first, let lastTime = series.times.last else {
            return Run(alarms: [], confidences: [], evaluations: 0)
        }
        let instance = InstanceRef(id: "i-0000000000nab0000", region: "us-east-1")
        var machine = PredictiveRepair()
        var pendingOutcome: (at: Double, outcome: ActionOutcome)?
        func context(_ t: Double) -> PredictiveRepair.Context {
            PredictiveRepair.Context(
                now: Date(timeIntervalSince1970: t), target: "nab", instance: instance, settings: settings,
                incidentOpen: false, brakeEngaged: false)
        }
        /// Carries out the machine's actions: a requested repair succeeds `repairTakes` later.
        func perform(_ actions: [PredictiveRepair.Action], at t: Double) -> Bool {
            var accepted = false
            for action in actions {
                switch action {
                case .requestRepair(let key, let id, _, _, _, _, _):
                    pendingOutcome = (
                        t + repairTakes,
                        ActionOutcome(idempotencyKey: key, incidentId: id, step: .notifyOnly, status: .succeeded)
                    )
                case .notify(let notice):
                    if notice.kind == .troublePredicted, notice.id.hasSuffix(":predicted") { accepted = true }
                }
            }
            return accepted
        }
        /// Runs the machine's own deadlines and outcomes up to `t`.
        func advance(to t: Double) {
            while true {
                let deadline = machine.nextDeadline?.timeIntervalSince1970 ?? .infinity
                let outcomeAt = pendingOutcome?.at ?? .infinity
                let next = min(deadline, outcomeAt)
                guard next <= t else { return }
                if outcomeAt <= deadline, let pending = pendingOutcome {
                    pendingOutcome = nil
                    _ = perform(machine.handle(.outcome(pending.outcome), context(pending.at)), at: pending.at)
                } else {
                    _ = perform(machine.handle(.tick, context(max(next, 0))), at: next)
                }
            }
        }

        var alarms: [Alarm] = []
        var confidences: [(time: Double, row: Int, confidence: Double, detail: String)] = []
        var now = ((firstTime + step) / interval).rounded(.up) * interval
        var low = 0
        var evaluations = 0
        while now <= lastTime + step {
            defer { now += interval }
            // Rows whose period has ended by now, within the lookback.
            guard let newest = series.row(atOrBefore: now - step) else { continue }
            while low < newest && series.times[low] <= now - lookbackHours * 3600 { low += 1 }
            let points = (low...newest).map {
                MetricPoint(time: Date(timeIntervalSince1970: series.times[$0]), value: series.values[$0])
            }
            let date = Date(timeIntervalSince1970: now)
            evaluations += 1
            advance(to: now)
            let prediction = predictor.predict(MetricHistory([metric: points]), now: date).first { $0.kind == kind }
            confidences.append((now, newest, prediction?.confidence ?? 0, prediction?.detail ?? ""))
            guard let prediction, prediction.confidence >= threshold else { continue }
            let trouble = PredictiveRepair.Trouble(
                id: "prediction-\(Int(now))-\(kind.rawValue)-nab", kind: kind.rawValue,
                confidence: prediction.confidence, repair: kind.suggestedRepair, detail: prediction.detail,
                window: prediction.window.from...prediction.window.to)
            if perform(machine.handle(.trouble(trouble), context(now)), at: now) {
                alarms.append(
                    Alarm(time: now, row: newest, confidence: prediction.confidence, detail: prediction.detail))
            }
        }
        return Run(alarms: alarms, confidences: confidences, evaluations: evaluations)
    }
}
