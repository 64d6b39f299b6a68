import Foundation

/// The failure predictor (docs/prediction.md): pure, time injected. Given a target's hourly metrics up
/// to `now`, it returns at most one prediction per kind, each with a confidence in [0, 1]:
///
/// - disk and memory exhaustion: a robust linear trend (Theil–Sen since the last reset, Mann–Kendall
///   for its significance) extrapolated to 100 %, gated by the current level;
/// - CPU and network anomalies: the latest hour against the same hour of day over the lookback
///   (median and MAD per hour), so what is normal for that hour is not an anomaly;
/// - recurring `StatusCheckFailed`: failure episodes in the lookback and how recent the last one is;
/// - CPU credit exhaustion (burstable types): `CPUCreditBalance` trend to zero.
public struct Predictor: Sendable {
    /// Trend-to-a-limit parameters of one metric (disk, memory, credits).
    public struct ExhaustionSettings: Sendable, Equatable {
        /// The limit the metric runs into (100 % for disk and memory, 0 credits).
        public var limit: Double
        /// Confidence 0 at or below `levelFloor`, full weight at `levelFull` (percent metrics; unused for credits).
        public var levelFloor: Double
        public var levelFull: Double
        /// Full weight when the limit is reached within `horizonFull` hours, none beyond `horizonNone`.
        public var horizonFull: Double
        public var horizonNone: Double
        /// A fall larger than this between two hours is a reset (cleanup, restart): the trend starts after it.
        public var resetDrop: Double

        public init(
            limit: Double, levelFloor: Double, levelFull: Double, horizonFull: Double, horizonNone: Double,
            resetDrop: Double
        ) {
            self.limit = limit
            self.levelFloor = levelFloor
            self.levelFull = levelFull
            self.horizonFull = horizonFull
            self.horizonNone = horizonNone
            self.resetDrop = resetDrop
        }
    }

    public struct Configuration: Sendable, Equatable {
        /// How far back anything is read (hours).
        public var lookbackHours: Double = 168
        /// CPU and network are read this far back: the part older than `lookbackHours` only teaches their
        /// hour-of-week pattern (departures are measured against the last `lookbackHours`).
        public var patternLookbackHours: Double = 336
        /// The trend uses at most this many hours (and only the part since the last reset).
        public var trendHours: Double = 72
        /// A trend needs at least this many points, spanning at least `minTrendSpanHours`.
        public var minTrendPoints = 12
        public var minTrendSpanHours: Double = 12
        /// Kendall's tau at which the fit weight starts, and where it is full.
        public var tauFloor = 0.3
        public var tauFull = 0.7
        /// The Mann–Kendall z a trend needs at all (one-sided 95 %).
        public var minTrendZ = 1.645
        public var disk = ExhaustionSettings(
            limit: 100, levelFloor: 20, levelFull: 60, horizonFull: 48, horizonNone: 168, resetDrop: 5)
        public var memory = ExhaustionSettings(
            limit: 100, levelFloor: 40, levelFull: 75, horizonFull: 48, horizonNone: 168, resetDrop: 10)
        public var credits = ExhaustionSettings(
            limit: 0, levelFloor: 0, levelFull: 0, horizonFull: 24, horizonNone: 96, resetDrop: .infinity)
        /// CPU and network anomalies: the onset detector (AnomalyOnset.swift).
        public var anomaly = AnomalySettings()
        /// The latest point must be this recent (hours) to be judged.
        public var maxStalenessHours = 2.0
        /// How long an anomaly's risk window lasts (hours).
        public var anomalyWindowHours = 6.0
        /// Status checks: this many failure episodes give full weight (one gives none).
        public var recurrenceFull = 3.0
        /// Full weight while the last episode ended within this many hours, none after `recencyNone`.
        public var recencyFull = 24.0
        public var recencyNone = 72.0
        /// A trend whose series reset regularly (≥ 2 resets) and will reset again before it reaches the
        /// limit keeps this share of its confidence.
        public var periodicResetWeight = 0.3

        public init() {}
    }

    public let configuration: Configuration

    public init(configuration: Configuration = Configuration()) { self.configuration = configuration }

    /// Every kind the history supports, with confidence above zero, highest confidence first.
    public func predict(_ history: MetricHistory, now: Date) -> [Prediction] {
        func recent(_ metric: PredictorMetric) -> [MetricPoint] {
            Self.recent(history[metric], hours: configuration.lookbackHours, now: now)
        }
        /// CPU and network: the longer stretch their hour-of-week pattern is learnt from.
        func pattern(_ metric: PredictorMetric) -> [MetricPoint] {
            Self.recent(
                history[metric], hours: max(configuration.patternLookbackHours, configuration.lookbackHours), now: now)
        }
        // Trends and status checks read hourly points; the worker fetches every series at 5 minutes
        // (the anomalies need them), so finer points are folded into their hour here.
        func hourly(_ metric: PredictorMetric, maximum: Bool) -> [MetricPoint] {
            Self.hourly(recent(metric), maximum: maximum)
        }
        var out: [Prediction] = []
        if let p = exhaustion(
            hourly(.disk, maximum: true), metric: .disk, kind: .diskExhaustion, settings: configuration.disk, now: now)
        {
            out.append(p)
        }
        if let p = exhaustion(
            hourly(.memory, maximum: false), metric: .memory, kind: .memoryExhaustion, settings: configuration.memory,
            now: now)
        {
            out.append(p)
        }
        if let p = cpuAnomaly(pattern(.cpu), now: now) { out.append(p) }
        if let p = networkAnomaly(in: pattern(.networkIn), out: pattern(.networkOut), now: now) { out.append(p) }
        if let p = statusRecurrence(hourly(.statusCheckFailed, maximum: true), now: now) { out.append(p) }
        if let p = creditExhaustion(hourly(.cpuCreditBalance, maximum: false), now: now) { out.append(p) }
        return out.filter { $0.confidence > 0 }.sorted { $0.confidence > $1.confidence }
    }

    /// The finite points of the last `hours` up to `now`, oldest first.
    static func recent(_ points: [MetricPoint], hours: Double, now: Date) -> [MetricPoint] {
        let start = now.addingTimeInterval(-hours * 3600)
        let kept = points.filter { $0.time > start && $0.time <= now && $0.value.isFinite }
        // CloudWatch answers oldest first once the worker has sorted; sort only when needed.
        return zip(kept, kept.dropFirst()).allSatisfy { $0.time <= $1.time } ? kept : kept.sorted { $0.time < $1.time }
    }

    /// Points folded into whole hours (time = the hour's start): their mean, or their maximum (disk,
    /// status checks). Hourly points come back as they are.
    static func hourly(_ points: [MetricPoint], maximum: Bool) -> [MetricPoint] {
        var out: [MetricPoint] = []
        var count = 0.0
        for p in points {
            let hour = Date(timeIntervalSince1970: (p.time.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
            if let last = out.last, last.time == hour {
                count += 1
                out[out.count - 1].value =
                    maximum ? max(last.value, p.value) : last.value + (p.value - last.value) / count
            } else {
                out.append(MetricPoint(time: hour, value: p.value))
                count = 1
            }
        }
        return out
    }

    // MARK: Trends

    /// The points the trend is fitted on: the last `trendHours`, after the last reset; plus the resets.
    func trendSegment(_ points: [MetricPoint], settings: ExhaustionSettings, now: Date) -> (
        segment: [MetricPoint], resets: [Date]
    ) {
        var resets: [Date] = []
        var startIndex = 0
        for i in points.indices.dropFirst() where points[i - 1].value - points[i].value > settings.resetDrop {
            resets.append(points[i].time)
            startIndex = i
        }
        let earliest = now.addingTimeInterval(-configuration.trendHours * 3600)
        let segment = points[startIndex...].filter { $0.time >= earliest }
        return (Array(segment), resets)
    }

    func fit(_ segment: [MetricPoint], now: Date) -> RobustStatistics.Trend? {
        guard segment.count >= configuration.minTrendPoints, let first = segment.first, let last = segment.last,
            last.time.timeIntervalSince(first.time) >= configuration.minTrendSpanHours * 3600,
            now.timeIntervalSince(last.time) <= configuration.maxStalenessHours * 3600
        else { return nil }
        return RobustStatistics.theilSen(
            hours: segment.map { $0.time.timeIntervalSince(now) / 3600 }, values: segment.map(\.value))
    }

    /// Disk or memory running into 100 %.
    func exhaustion(
        _ points: [MetricPoint], metric: PredictorMetric, kind: PredictionKind, settings: ExhaustionSettings,
        now: Date
    ) -> Prediction? {
        guard let lastValue = points.last?.value else { return nil }
        // Cheap gate first: most series are far below the floor and need no fit.
        guard lastValue > settings.levelFloor else { return nil }
        let (segment, resets) = trendSegment(points, settings: settings, now: now)
        guard let trend = fit(segment, now: now), trend.slope > 0, trend.z >= configuration.minTrendZ else {
            return nil
        }
        let level = min(settings.limit, max(trend.level, 0))
        let remaining = settings.limit - level
        let hours = remaining / trend.slope
        let fLevel = RobustStatistics.ramp(level, from: settings.levelFloor, to: settings.levelFull)
        let fHorizon = RobustStatistics.ramp(hours, from: settings.horizonNone, to: settings.horizonFull)
        let fFit = RobustStatistics.ramp(trend.tau, from: configuration.tauFloor, to: configuration.tauFull)
        var confidence = fLevel * fHorizon * fFit
        let name = metric.rawValue
        var factors = [
            PredictionFactor("level", level, "\(name) is \(fmt(level)) % now (fitted)"),
            PredictionFactor(
                "slope_per_hour", trend.slope,
                "rising \(fmt(trend.slope)) points per hour (Theil–Sen over \(trend.count) hours)"),
            PredictionFactor(
                "time_to_exhaustion_hours", hours, "reaches \(fmt(settings.limit)) % in about \(fmt(hours)) hours"),
            PredictionFactor("kendall_tau", trend.tau, "trend consistency (Mann–Kendall z \(fmt(trend.z)))"),
            PredictionFactor("residual_scale", trend.residualScale, "robust scatter around the trend"),
        ]
        let window = exhaustionWindow(remaining: remaining, trend: trend, now: now, cap: configuration.lookbackHours)
        if let weight = periodicResetDiscount(resets: resets, exhaustionAt: now.addingTimeInterval(hours * 3600)) {
            confidence *= weight
            factors.append(
                PredictionFactor(
                    "periodic_reset", Double(resets.count),
                    "the series reset \(resets.count) times in the lookback; the next reset is due before the limit"))
        }
        return Prediction(
            kind: kind, confidence: confidence, metric: metric,
            detail: "\(name) \(fmt(level)) % rising \(fmt(trend.slope))/h: full in about \(fmt(hours)) h",
            factors: factors,
            window: window, evaluatedAt: now)
    }

    /// When the limit is reached: between the fast (upper slope) and slow (lower slope) ends of Sen's interval.
    func exhaustionWindow(remaining: Double, trend: RobustStatistics.Trend, now: Date, cap: Double) -> PredictionWindow
    {
        func at(_ slope: Double) -> Date {
            now.addingTimeInterval(min(cap, slope > 0 ? remaining / slope : cap) * 3600)
        }
        return PredictionWindow(from: at(max(trend.slopeHigh, trend.slope)), to: at(min(trend.slopeLow, trend.slope)))
    }

    /// With two or more resets, the next is expected one median cycle after the last; if that comes
    /// before the limit would be reached (central estimate), the trend is a sawtooth, not a leak.
    func periodicResetDiscount(resets: [Date], exhaustionAt: Date) -> Double? {
        guard resets.count >= 2, let last = resets.last else { return nil }
        let gaps = zip(resets.dropFirst(), resets).map { $0.timeIntervalSince($1) }
        guard let cycle = RobustStatistics.median(gaps), last.addingTimeInterval(cycle) < exhaustionAt else {
            return nil
        }
        return configuration.periodicResetWeight
    }

    /// The credit balance running out (burstable instances only have the series).
    func creditExhaustion(_ points: [MetricPoint], now: Date) -> Prediction? {
        let settings = configuration.credits
        guard points.count >= configuration.minTrendPoints else { return nil }
        let (segment, _) = trendSegment(points, settings: settings, now: now)
        guard let trend = fit(segment, now: now), trend.slope < 0, -trend.z >= configuration.minTrendZ else {
            return nil
        }
        let level = max(0, trend.level)
        let hours = level / -trend.slope
        let fHorizon = RobustStatistics.ramp(hours, from: settings.horizonNone, to: settings.horizonFull)
        let fFit = RobustStatistics.ramp(-trend.tau, from: configuration.tauFloor, to: configuration.tauFull)
        let confidence = fHorizon * fFit
        func at(_ slope: Double) -> Date {
            now.addingTimeInterval(
                min(configuration.lookbackHours, slope < 0 ? level / -slope : configuration.lookbackHours) * 3600)
        }
        return Prediction(
            kind: .cpuCreditExhaustion, confidence: confidence, metric: .cpuCreditBalance,
            detail:
                "CPU credit balance \(fmt(level)) falling \(fmt(-trend.slope))/h: exhausted in about \(fmt(hours)) h",
            factors: [
                PredictionFactor("level", level, "credit balance now (fitted)"),
                PredictionFactor(
                    "slope_per_hour", trend.slope, "credits per hour (Theil–Sen over \(trend.count) hours)"),
                PredictionFactor(
                    "time_to_exhaustion_hours", hours, "balance reaches zero in about \(fmt(hours)) hours"),
                PredictionFactor("kendall_tau", trend.tau, "trend consistency (Mann–Kendall z \(fmt(trend.z)))"),
            ],
            window: PredictionWindow(
                from: at(min(trend.slopeLow, trend.slope)), to: at(max(trend.slopeHigh, trend.slope))),
            evaluatedAt: now)
    }

    // MARK: Anomalies

    /// The anomaly metrics with fresh data but too short a history to judge yet (a new target: the
    /// reference needs `anomaly.minReferenceHours`). The worker logs them; nothing is predicted for them.
    public func notYetJudged(_ history: MetricHistory, now: Date) -> [PredictorMetric] {
        [PredictorMetric.cpu, .networkIn, .networkOut].filter { metric in
            let rules = metric == .cpu ? configuration.anomaly.cpu : configuration.anomaly.network
            return anomaly(
                Self.recent(history[metric], hours: configuration.lookbackHours, now: now), rules: rules, now: now)
                == .coldStart
        }
    }

    func cpuAnomaly(_ points: [MetricPoint], now: Date) -> Prediction? {
        guard case .finding(let f?)? = anomaly(points, rules: configuration.anomaly.cpu, now: now) else { return nil }
        return anomalyPrediction(.cpuAnomaly, metric: .cpu, f, unit: " %", now: now)
    }

    func networkAnomaly(in inbound: [MetricPoint], out outbound: [MetricPoint], now: Date) -> Prediction? {
        var best: (metric: PredictorMetric, finding: AnomalyFinding)?
        for (metric, points) in [(PredictorMetric.networkIn, inbound), (.networkOut, outbound)] {
            guard case .finding(let f?)? = anomaly(points, rules: configuration.anomaly.network, now: now) else {
                continue
            }
            if f.confidence > best?.finding.confidence ?? -1 { best = (metric, f) }
        }
        guard let best else { return nil }
        return anomalyPrediction(.networkAnomaly, metric: best.metric, best.finding, unit: " B", now: now)
    }

    func anomalyPrediction(
        _ kind: PredictionKind, metric: PredictorMetric, _ f: AnomalyFinding, unit: String, now: Date
    ) -> Prediction {
        let what =
            f.shape == .spike
            ? "a point" : f.hours <= 1 ? "the hour's median" : "the \(f.hours) hours' mean of hourly medians"
        let direction = f.rising ? "above" : "below"
        let basis = f.seasonal ? " (after this hour of \(f.weekly ? "week" : "day")'s usual)" : ""
        let state = f.onset ? "" : "; it continues a departure already reported"
        return Prediction(
            kind: kind, confidence: f.confidence, metric: metric,
            detail: f.shape == .rate
                ? "\(metric.rawValue): \(Int(f.value)) points of the hour\(basis) are past halfway to the week's highest, more than in any hour of the last week (at most \(Int(f.bound)), median \(fmt(f.referenceMedian)))\(state)"
                : "\(metric.rawValue): \(what) \(fmt(f.value))\(unit)\(basis) is \(direction) anything in the last week (\(f.rising ? "highest" : "lowest") \(fmt(f.bound))\(unit), median \(fmt(f.referenceMedian))\(unit))\(state)",
            factors: [
                PredictionFactor(
                    "value", f.value,
                    f.shape == .rate
                        ? "points of the hour past the fence"
                        : "\(f.shape.rawValue) judged\(f.seasonal ? ", less its hour of \(f.weekly ? "week" : "day")'s median" : "")"
                ),
                PredictionFactor("reference_median", f.referenceMedian, "median over the reference week"),
                PredictionFactor(
                    "reference_bound", f.bound,
                    f.shape == .rate
                        ? "the most points past the fence in one hour of the reference"
                        : "the reference's \(f.rising ? "highest" : "lowest") \(f.shape == .spike ? "point" : f.hours <= 1 ? "hourly median" : "\(f.hours)-hour mean")"
                ),
                PredictionFactor("excess", f.excess, "beyond the bound, in units of (bound − median)"),
                PredictionFactor("rising", f.rising ? 1 : 0, f.rising ? "a rise" : "a fall"),
                PredictionFactor(
                    "seasonal", f.seasonal ? 1 : 0,
                    "judged against the target's own hour-of-\(f.weekly ? "week" : "day") pattern"),
                PredictionFactor("onset", f.onset ? 1 : 0, f.onset ? "new in the last hour" : "continuing"),
            ],
            window: PredictionWindow(from: now, to: now.addingTimeInterval(configuration.anomalyWindowHours * 3600)),
            evaluatedAt: now)
    }

    // MARK: Recurring status-check failures

    /// Failure episodes: runs of consecutive hours with `StatusCheckFailed` ≥ 1.
    static func episodes(_ points: [MetricPoint]) -> [(start: Date, end: Date)] {
        var out: [(start: Date, end: Date)] = []
        for p in points where p.value >= 1 {
            if let last = out.last, p.time.timeIntervalSince(last.end) <= 3600 {
                out[out.count - 1].end = p.time
            } else {
                out.append((p.time, p.time))
            }
        }
        return out
    }

    func statusRecurrence(_ points: [MetricPoint], now: Date) -> Prediction? {
        let episodes = Self.episodes(points)
        guard episodes.count >= 2, let last = episodes.last else { return nil }
        let count = Double(episodes.count)
        let sinceLast = now.timeIntervalSince(last.end) / 3600
        let fCount = RobustStatistics.ramp(count, from: 1, to: configuration.recurrenceFull)
        let fRecent = RobustStatistics.ramp(sinceLast, from: configuration.recencyNone, to: configuration.recencyFull)
        let gaps = zip(episodes.dropFirst(), episodes).map { $0.start.timeIntervalSince($1.start) }
        let cycle = RobustStatistics.median(gaps) ?? 3600
        var from = last.start.addingTimeInterval(cycle * 0.5)
        var to = last.start.addingTimeInterval(cycle * 1.5)
        if to <= now {  // overdue: the next one any time within a cycle
            from = now
            to = now.addingTimeInterval(cycle)
        }
        return Prediction(
            kind: .statusCheckRecurrence, confidence: fCount * fRecent, metric: .statusCheckFailed,
            detail:
                "\(episodes.count) status-check failure episodes in \(Int(configuration.lookbackHours)) h, about every \(fmt(cycle / 3600)) h; last \(fmt(sinceLast)) h ago",
            factors: [
                PredictionFactor("episodes", count, "separate runs of failed status checks in the lookback"),
                PredictionFactor("hours_since_last", sinceLast, "since the last failed hour"),
                PredictionFactor("median_interval_hours", cycle / 3600, "between the starts of episodes"),
            ],
            window: PredictionWindow(from: max(from, now), to: to), evaluatedAt: now)
    }
}

private func fmt(_ value: Double) -> String {
    guard value.isFinite else { return "∞" }
    return String(format: abs(value) >= 100 ? "%.0f" : "%.2f", value)
}
