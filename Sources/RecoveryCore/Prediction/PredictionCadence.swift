/// Which series a scheduled prediction run reads (docs/prediction.md, "Cadence and cost").
///
/// CloudWatch prices GetMetricData per metric requested, whatever the number of points, so the bill is
/// (series read per run) × (runs). The **fast** series (CPU, network in and out) are read every slot: an
/// onset is judged in the hour it happens. The **slow** series (disk, memory, CPU credits, status
/// checks) tell of trouble that builds over days or over several episodes: they are read every
/// `slowEvery` slots while the last read found nothing, and every slot while it found something
/// stirring, that is a trend kind with a confidence above zero (its limit within the horizon: a week for
/// disk and memory, four days for credits) or a failed status check in the last day. Each read returns
/// the whole lookback, so a late read loses no history, only time; and the stir comes well before the
/// alarm (0.8, or a third failure episode), so the alarm's hour is the same as with hourly reads (the
/// backtest checks it scenario by scenario).
///
/// Fail-safe: no record of the last read (a new target, an expired or unreadable record, a clock that
/// went back) reads the slow series.
public struct PredictionCadence: Sendable, Equatable {
    /// The last scheduled read of a target's slow series.
    public struct SlowRead: Sendable, Equatable {
        public var slot: Int64
        /// Whether it found something stirring (then the next slot reads them again).
        public var stirring: Bool
        public init(slot: Int64, stirring: Bool) {
            self.slot = slot
            self.stirring = stirring
        }

        /// As kept in the store: `<slot>` then `+` (stirring) or `-`.
        public var text: String { "\(slot)\(stirring ? "+" : "-")" }

        /// nil for anything else (read as no record: the slow series are read).
        public init?(text: String) {
            guard let mark = text.last, mark == "+" || mark == "-", let slot = Int64(text.dropLast()) else {
                return nil
            }
            self.init(slot: slot, stirring: mark == "+")
        }
    }

    /// Slots between two reads of the slow series while nothing stirs (1 reads them every slot).
    public var slowEvery: Int64

    public init(slowEvery: Int64 = 6) { self.slowEvery = max(1, slowEvery) }

    public static let slowMetrics: [PredictorMetric] = [.statusCheckFailed, .cpuCreditBalance, .memory, .disk]
    public static let slowKinds: Set<PredictionKind> = [
        .diskExhaustion, .memoryExhaustion, .cpuCreditExhaustion, .statusCheckRecurrence,
    ]

    /// Whether slot `slot` reads the slow series, given the last read.
    public func readsSlow(in slot: Int64, last: SlowRead?) -> Bool {
        guard let last else { return true }
        return last.stirring || slot < last.slot || slot - last.slot >= slowEvery
    }

    /// The series a run reads.
    public func metrics(readingSlow: Bool) -> [PredictorMetric] {
        readingSlow ? PredictorMetric.allCases : PredictorMetric.allCases.filter { !Self.slowMetrics.contains($0) }
    }

    /// Whether a read of the slow series found something stirring: `predictions` as `Predictor.predict`
    /// returns them (every kind above zero) on `history`, the series read. A failed status check counts
    /// within the last 24 hours of the series: an older single one is no trouble yet, and the second
    /// episode, seen at most `slowEvery` slots late, is a prediction (so a stir) before the third, which
    /// is what alarms.
    public static func stirring(_ predictions: [Prediction], history: MetricHistory) -> Bool {
        if predictions.contains(where: { slowKinds.contains($0.kind) && $0.confidence > 0 }) { return true }
        let status = history[.statusCheckFailed]
        guard let newest = status.last?.time else { return false }
        return status.contains { $0.value >= 1 && newest.timeIntervalSince($0.time) < 24 * 3600 }
    }
}
