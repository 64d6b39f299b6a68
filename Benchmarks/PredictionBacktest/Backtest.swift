import Foundation
import RecoveryCore

/// Replays scenarios hour by hour through the predictor and scores its high-confidence alarms
/// (docs/prediction.md, "Backtest").
///
/// Per scenario and kind, the first hour with a prediction of that kind at or above the threshold is
/// the alarm. It is a true positive when the scenario is labelled with that kind and the alarm falls in
/// the scenario's valid hours (after the failure began to build up, before it happened); every other
/// alarm is a false positive. Precision = TP ÷ scenarios with an alarm of the kind; recall = TP ÷
/// scenarios labelled with it. Lead time: hours from the alarm to the failure (exhaustion) or to the
/// next failure episode (status checks); for anomalies, the detection delay from the anomaly's start.
///
/// The slow series (disk, memory, credits, status checks) are visible only in the hours the worker
/// reads them (`PredictionCadence`, the worker's default unless told otherwise), so lead times are those
/// of the deployed schedule.
public struct Backtest: Sendable {
    public struct KindResult: Sendable, Equatable {
        public var kind: PredictionKind
        public var labelled = 0
        public var alarmed = 0
        public var truePositives = 0
        /// Lead times (exhaustion, recurrence) or detection delays (anomalies), in hours.
        public var leads: [Double] = []

        public var precision: Double? { alarmed == 0 ? nil : Double(truePositives) / Double(alarmed) }
        public var recall: Double? { labelled == 0 ? nil : Double(truePositives) / Double(labelled) }
        public var medianLead: Double? { RobustStatistics.median(leads) }
        public var isAnomaly: Bool { kind == .cpuAnomaly || kind == .networkAnomaly }
    }

    public struct Report: Sendable {
        public var kinds: [KindResult]
        public var scenarios: Int
        public var evaluations: Int
        /// Series asked of CloudWatch over all evaluations (what the bill counts).
        public var seriesRead = 0
        /// False alarms per shape (which healthy pattern fooled the model).
        public var falseAlarmsByShape: [String: Int]

        public var truePositives: Int { kinds.reduce(0) { $0 + $1.truePositives } }
        public var alarmed: Int { kinds.reduce(0) { $0 + $1.alarmed } }
        public var labelled: Int { kinds.reduce(0) { $0 + $1.labelled } }
        public var precision: Double { alarmed == 0 ? 1 : Double(truePositives) / Double(alarmed) }
        public var recall: Double { labelled == 0 ? 1 : Double(truePositives) / Double(labelled) }
        /// Median lead over the kinds that predict ahead (exhaustion and recurrence).
        public var medianLead: Double? { RobustStatistics.median(kinds.filter { !$0.isAnomaly }.flatMap(\.leads)) }

        public subscript(kind: PredictionKind) -> KindResult { kinds.first { $0.kind == kind }! }
    }

    public var predictor: Predictor
    public var threshold: Double
    public var cadence: PredictionCadence

    public init(predictor: Predictor = Predictor(), threshold: Double = 0.8, cadence: PredictionCadence = .init()) {
        self.predictor = predictor
        self.threshold = threshold
        self.cadence = cadence
    }

    /// The hours of one scenario with a high-confidence prediction, per kind (first one only), each hour
    /// seeing the series the worker's cadence reads then (the first hour has no record: it reads all).
    public func firstAlarms(_ scenario: Scenario) -> (alarms: [PredictionKind: Int], evaluations: Int, seriesRead: Int)
    {
        var alarms: [PredictionKind: Int] = [:]
        var evaluations = 0
        var seriesRead = 0
        var last: PredictionCadence.SlowRead?
        for hour in scenario.evalFrom..<scenario.evalTo {
            let now = scenario.time(hour + 1)
            evaluations += 1
            let readsSlow = cadence.readsSlow(in: Int64(hour), last: last)
            var history = scenario.history(through: hour)
            let metrics = cadence.metrics(readingSlow: readsSlow)
            for metric in PredictorMetric.allCases where !metrics.contains(metric) { history[metric] = [] }
            seriesRead += metrics.count
            let predictions = predictor.predict(history, now: now)
            if readsSlow {
                last = PredictionCadence.SlowRead(
                    slot: Int64(hour), stirring: PredictionCadence.stirring(predictions, history: history))
            }
            for p in predictions where p.confidence >= threshold && alarms[p.kind] == nil {
                alarms[p.kind] = hour
            }
        }
        return (alarms, evaluations, seriesRead)
    }

    public func run(_ scenarios: [Scenario]) -> Report {
        var results = Dictionary(uniqueKeysWithValues: PredictionKind.allCases.map { ($0, KindResult(kind: $0)) })
        var falseAlarms: [String: Int] = [:]
        var evaluations = 0
        var seriesRead = 0
        for scenario in scenarios {
            let (alarms, count, series) = firstAlarms(scenario)
            evaluations += count
            seriesRead += series
            if let label = scenario.shape.label { results[label]!.labelled += 1 }
            for (kind, hour) in alarms {
                results[kind]!.alarmed += 1
                guard kind == scenario.shape.label, (scenario.validFrom..<scenario.validTo).contains(hour) else {
                    falseAlarms["\(scenario.shape.rawValue) → \(kind.rawValue)", default: 0] += 1
                    continue
                }
                results[kind]!.truePositives += 1
                let alarmEnd = Double(hour + 1)  // the prediction is made at the end of the hour
                switch kind {
                case .cpuAnomaly, .networkAnomaly:
                    results[kind]!.leads.append(alarmEnd - Double(scenario.eventHour))
                case .statusCheckRecurrence:
                    if let next = scenario.episodeStarts.first(where: { Double($0) >= alarmEnd }) {
                        results[kind]!.leads.append(Double(next) - alarmEnd)
                    }
                default:
                    results[kind]!.leads.append(Double(scenario.eventHour) - alarmEnd)
                }
            }
        }
        return Report(
            kinds: PredictionKind.allCases.map { results[$0]! }, scenarios: scenarios.count, evaluations: evaluations,
            seriesRead: seriesRead, falseAlarmsByShape: falseAlarms)
    }
}

extension Backtest.Report {
    /// A Markdown table of the figures (what docs/prediction.md quotes).
    public var table: String {
        func pct(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "n/a" }
        func hours(_ v: Double?) -> String { v.map { String(format: "%.1f h", $0) } ?? "n/a" }
        var lines = [
            "| kind | labelled | alarms | true pos. | precision | recall | median lead (delay for anomalies) |",
            "|---|---|---|---|---|---|---|",
        ]
        for k in kinds {
            let lead = k.isAnomaly ? k.medianLead.map { "delay " + hours($0) } ?? "n/a" : hours(k.medianLead)
            lines.append(
                "| \(k.kind.rawValue) | \(k.labelled) | \(k.alarmed) | \(k.truePositives) | \(pct(k.precision)) | \(pct(k.recall)) | \(lead) |"
            )
        }
        lines.append(
            "| **overall** | \(labelled) | \(alarmed) | \(truePositives) | \(pct(precision)) | \(pct(recall)) | \(hours(medianLead)) (lead kinds) |"
        )
        return lines.joined(separator: "\n")
    }
}
