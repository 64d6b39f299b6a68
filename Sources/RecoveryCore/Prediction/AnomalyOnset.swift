import Foundation

/// The onset detector behind `cpu_anomaly` and `network_anomaly` (docs/prediction.md, "CPU and network
/// anomalies: onsets"). Pure; works at the series' own resolution (5-minute CloudWatch points, or hourly).
///
/// 1. **Reference and recent.** The reference is the lookback up to `recentHours` before now; the recent
///    part is cut into hours, the newest last. The reference must span `minReferenceHours`, or the
///    metric is reported as not judged yet (cold start).
/// 2. **Own seasonality.** When the reference spans `seasonalMinDays` days, each hour of day gets its
///    median; if the residuals (value − its hour's median) spread less than `seasonalGain` × the raw
///    values do (scaled MAD), the target is seasonal and every value is judged as its residual.
/// 3. **Departures beyond anything in the reference.** For each recent hour: a *spike* is its highest
///    (lowest) point beyond the reference's highest (lowest) point; a *level* is its median beyond the
///    highest (lowest) hourly median of the reference. The excess is measured in the reference's own
///    spread on that side (max − median), so it has no unit: `e = (x − max) / (max − median)`.
/// 4. **Absolute floor.** A departure smaller than the metric's floor (its units, per second of the
///    series' step for byte counts) is not an anomaly, whatever its ratio.
/// 5. **Graded confidence** `ramp(e; 0, excessFull)` for the strongest departure the metric's rules
///    allow (`AnomalyRules`: which directions and shapes count).
/// 6. **Onset, re-arming.** The newest hour alarms only when none of the other recent hours reached
///    `rearmBelow`: a lasting change alarms once, in its first hour; then its hours become part of the
///    reference and stop being departures. A continuing departure keeps at most `ongoingCap`.
public struct AnomalyRules: Sendable, Equatable {
    public var spikeUp: Bool
    public var spikeDown: Bool
    public var levelUp: Bool
    public var levelDown: Bool
    /// Smallest departure from the reference median that counts, in the metric's units.
    public var floor: Double
    /// Added to `floor` per second of the series' step (byte counts: a 5-minute sum carries 300 s).
    public var floorPerSecond: Double
    /// Judge `log(value + floor)` (byte counts: their noise and surges are multiplicative); the floor
    /// still applies to the raw departure.
    public var logScale: Bool

    public init(
        spikeUp: Bool = true, spikeDown: Bool = true, levelUp: Bool = true, levelDown: Bool = true,
        floor: Double = 0, floorPerSecond: Double = 0, logScale: Bool = false
    ) {
        self.logScale = logScale
        self.spikeUp = spikeUp
        self.spikeDown = spikeDown
        self.levelUp = levelUp
        self.levelDown = levelDown
        self.floor = floor
        self.floorPerSecond = floorPerSecond
    }

    /// CPU: rises, as a burst or a new level, of at least 10 points; a lasting fall (a service that
    /// stopped working) too, but not one quiet 5-minute point.
    public static let cpu = AnomalyRules(spikeDown: false, floor: 10)
    /// Network (bytes per period): surges, and lasting collapses; at least 1 MB per hour of step.
    public static let network = AnomalyRules(spikeDown: false, floorPerSecond: 1_000_000 / 3600, logScale: true)
    /// A series whose unit is not the fleet's (the harness's other NAB series): every shape, no floor.
    public static let unitFree = AnomalyRules()
}

/// What the onset detector found on one series at one time.
public struct AnomalyFinding: Sendable, Equatable {
    public enum Shape: String, Sendable { case spike, level }
    public var confidence: Double
    public var shape: Shape
    public var rising: Bool
    /// The value judged (a point, or an hour's median), and the reference's median and bound it passed.
    public var value: Double
    public var referenceMedian: Double
    public var bound: Double
    /// `(x − bound) / (bound − median)`: how far beyond the reference, in the reference's own spread.
    public var excess: Double
    public var seasonal: Bool
    /// False when an earlier recent hour already departed (the change is not new).
    public var onset: Bool
}

extension Predictor {
    /// The detector's parameters (docs/prediction.md).
    public struct AnomalySettings: Sendable, Equatable {
        public var recentHours = 6
        public var minReferenceHours = 24.0
        /// The confidence is scaled by ramp(reference span; minReferenceHours, fullReferenceHours): a short
        /// reference has not seen the target's range yet.
        public var fullReferenceHours = 72.0
        public var seasonalMinDays = 3.0
        public var seasonalGain = 0.6
        /// The excess at which the confidence is full (0 at the reference's bound).
        public var excessFull = 0.75
        public var rearmBelow = 0.8
        /// The spread floor: the record Gaussian noise of the reference's scale sets in this many weeks.
        public var noiseWeeks = 52.0
        public var ongoingCap = 0.5
        public var cpu = AnomalyRules.cpu
        public var network = AnomalyRules.network
        public init() {}
    }

    /// Nil when there is no point in the last `maxStalenessHours`; `.coldStart` when the reference is
    /// too short to judge.
    enum AnomalyResult: Equatable {
        case coldStart
        case finding(AnomalyFinding?)
    }

    func anomaly(_ raw: [MetricPoint], rules: AnomalyRules, now: Date) -> AnomalyResult? {
        let s = configuration.anomaly
        let step = Self.typicalStep(raw[...])
        let floor = rules.floor + rules.floorPerSecond * step
        let points =
            rules.logScale ? raw.map { MetricPoint(time: $0.time, value: log(max($0.value, 0) + max(floor, 1))) } : raw
        guard let last = points.last, now.timeIntervalSince(last.time) <= configuration.maxStalenessHours * 3600
        else { return nil }
        let cut = now.addingTimeInterval(-Double(s.recentHours) * 3600)
        let split = points.firstIndex { $0.time >= cut } ?? points.count
        let reference = points[..<split]
        guard let first = reference.first, cut.timeIntervalSince(first.time) >= s.minReferenceHours * 3600,
            reference.count >= 12
        else { return .coldStart }

        // Own seasonality: judge residuals from each hour of day's median when that explains the spread.
        // A reference point's residual is taken against its hour's median without itself (out of
        // sample, as a new point's is): with a week of hourly points an hour has 7 values, and the
        // middle one's in-sample residual would be exactly 0.
        let refValues = reference.map(\.value)
        var profile: [Double]? = nil
        var y = refValues
        var yScale: Double? = nil
        if cut.timeIntervalSince(first.time) >= s.seasonalMinDays * 86_400 {
            var byHour = [[Int]](repeating: [], count: 24)
            for (i, p) in reference.enumerated() { byHour[Self.hourOfDay(p.time)].append(i) }
            if byHour.allSatisfy({ $0.count >= 3 }) {
                var medians = [Double](repeating: 0, count: 24)
                var residuals = refValues
                for (hour, members) in byHour.enumerated() {
                    let order = members.sorted { refValues[$0] < refValues[$1] }
                    let sorted = order.map { refValues[$0] }
                    medians[hour] = RobustStatistics.median(sorted) ?? 0
                    for (rank, i) in order.enumerated() {
                        residuals[i] = refValues[i] - Self.medianWithout(rank: rank, sorted: sorted)
                    }
                }
                // Seasonal when the hour of day explains the bulk (scaled MAD) or the extremes (range): a
                // nightly batch hour is 1/24 of the points, so it widens the range but not the MAD.
                let residualScale = RobustStatistics.scaledMAD(residuals)
                let rawScale = RobustStatistics.scaledMAD(refValues)
                if residualScale < s.seasonalGain * rawScale
                    || Self.range(residuals) < s.seasonalGain * Self.range(refValues)
                {
                    profile = medians
                    y = residuals
                    yScale = residualScale
                } else {
                    yScale = rawScale
                }
            }
        }
        func judged(_ p: MetricPoint) -> Double { profile.map { p.value - $0[Self.hourOfDay(p.time)] } ?? p.value }
        guard let median = RobustStatistics.median(y), let high = y.max(), let low = y.min() else { return .coldStart }
        var offset = 0
        let hourly = Self.hourBuckets(reference).compactMap { bucket -> Double? in
            defer { offset += bucket.count }
            return RobustStatistics.median(Array(y[offset..<(offset + bucket.count)]))
        }
        guard let hourlyMedian = RobustStatistics.median(hourly), let hourlyHigh = hourly.max(),
            let hourlyLow = hourly.min()
        else { return .coldStart }
        let span = cut.timeIntervalSince(first.time) / 3600
        let history = RobustStatistics.ramp(
            span, from: s.minReferenceHours, to: max(s.fullReferenceHours, s.minReferenceHours))
        let rawMedian = rules.logScale ? RobustStatistics.median(raw[..<split].map(\.value)) ?? 0 : median
        let tiny = 1e-9 * max(abs(median), 1)
        // The least spread a bound is measured in: the record that Gaussian noise with the reference's
        // robust scale would set over `noiseWeeks` weeks like the reference. A week whose highest point
        // happens to be low (or a light-tailed series) does not make an ordinary value a large excess:
        // with a week of hourly points, full confidence needs about 5 noise deviations, not 4.
        let weeks = Int(s.noiseWeeks)
        let spikeSpread =
            RobustStatistics.normalRecord(count: y.count * weeks) * (yScale ?? RobustStatistics.scaledMAD(y))
        let levelSpread =
            RobustStatistics.normalRecord(count: hourly.count * weeks) * RobustStatistics.scaledMAD(hourly)

        func score(_ range: Range<Int>) -> AnomalyFinding? {
            let hour = points[range]
            let values = hour.map(judged)
            let rawValues = raw[range].map(\.value)
            guard let top = values.max(), let bottom = values.min(), let mid = RobustStatistics.median(values),
                let rawTop = rawValues.max(), let rawBottom = rawValues.min(),
                let rawMid = RobustStatistics.median(rawValues)
            else { return nil }
            var best: AnomalyFinding?
            func consider(
                _ on: Bool, _ shape: AnomalyFinding.Shape, _ rising: Bool, _ x: Double, _ bound: Double, _ rawX: Double
            ) {
                guard on else { return }
                let centre = shape == .spike ? median : hourlyMedian
                // The absolute floor, on the raw values (seasonal residuals judged as they are).
                let departure =
                    rules.logScale ? (rising ? rawX - rawMedian : rawMedian - rawX) : (rising ? x - centre : centre - x)
                guard departure >= max(floor, tiny), rising ? x > centre : x < centre else { return }
                let least = max(
                    shape == .spike ? spikeSpread : levelSpread, rules.logScale ? 0.01 : max(floor * 0.5, tiny))
                let spread = max(abs(bound - centre), least)
                let excess = (rising ? x - bound : bound - x) / spread
                let confidence = history * RobustStatistics.ramp(excess, from: 0, to: s.excessFull)
                guard confidence > (best?.confidence ?? 0) else { return }
                let shown = rules.logScale ? rawX : x
                best = AnomalyFinding(
                    confidence: confidence, shape: shape, rising: rising, value: shown,
                    referenceMedian: rules.logScale ? rawMedian : centre,
                    bound: rules.logScale ? rawMedian * exp(bound - centre) : bound, excess: excess,
                    seasonal: profile != nil, onset: true)
            }
            consider(rules.spikeUp, .spike, true, top, high, rawTop)
            consider(rules.spikeDown, .spike, false, bottom, low, rawBottom)
            consider(rules.levelUp, .level, true, mid, hourlyHigh, rawMid)
            consider(rules.levelDown, .level, false, mid, hourlyLow, rawMid)
            return best
        }
        // The recent hours, newest last; the newest one is judged, the others say whether it is new.
        var earlier = 0.0
        var newest: AnomalyFinding?
        for k in stride(from: s.recentHours - 1, through: 0, by: -1) {
            let from = now.addingTimeInterval(-Double(k + 1) * 3600)
            let to = now.addingTimeInterval(-Double(k) * 3600)
            let lower = points[split...].firstIndex { $0.time >= from } ?? points.count
            let upper = points[lower...].firstIndex { $0.time >= to } ?? points.count
            let finding = lower < upper ? score(lower..<upper) : nil
            if k == 0 { newest = finding } else { earlier = max(earlier, finding?.confidence ?? 0) }
        }
        guard var finding = newest else { return .finding(nil) }
        if earlier >= s.rearmBelow {
            finding.onset = false
            finding.confidence = min(finding.confidence, s.ongoingCap)
        }
        return .finding(finding)
    }

    /// The median of `sorted` without the element at `rank`.
    static func medianWithout(rank: Int, sorted: [Double]) -> Double {
        let n = sorted.count - 1
        guard n > 0 else { return sorted.first ?? 0 }
        func at(_ r: Int) -> Double { sorted[r < rank ? r : r + 1] }
        return n % 2 == 1 ? at(n / 2) : (at(n / 2 - 1) + at(n / 2)) / 2
    }

    /// The points grouped by the hour they fall in.
    static func hourBuckets(_ points: ArraySlice<MetricPoint>) -> [[MetricPoint]] {
        var out: [[MetricPoint]] = []
        var current = Int.min
        for p in points {
            let hour = Int((p.time.timeIntervalSince1970 / 3600).rounded(.down))
            if hour != current {
                out.append([])
                current = hour
            }
            out[out.count - 1].append(p)
        }
        return out
    }

    /// The median spacing of the newest 25 points, in seconds (3600 when it cannot be told).
    static func typicalStep(_ points: ArraySlice<MetricPoint>) -> Double {
        let newest = points.suffix(25)
        let steps = zip(newest.dropFirst(), newest).map { $0.time.timeIntervalSince($1.time) }.filter { $0 > 0 }
        return RobustStatistics.median(steps) ?? 3600
    }

    static func range(_ values: [Double]) -> Double { (values.max() ?? 0) - (values.min() ?? 0) }

    static func hourOfDay(_ date: Date) -> Int {
        Int((date.timeIntervalSince1970 / 3600).rounded(.down).truncatingRemainder(dividingBy: 24) + 24) % 24
    }
}
