import Foundation

/// The onset detector behind `cpu_anomaly` and `network_anomaly` (docs/prediction.md, "CPU and network
/// anomalies"). Pure; works at the series' own resolution (5-minute CloudWatch points, or coarser).
///
/// 1. **Reference and recent.** The reference is the lookback up to `recentHours` before now, read
///    through its calendar hours (median, highest, lowest); the recent part is cut into hours, the newest
///    last. Points older than the lookback only teach the pattern. Too short a reference is a cold start.
/// 2. **Own seasonality.** An hour-of-day or hour-of-week pattern (each reference hour left out of its
///    own median) is used when it explains the spread; then every value is judged as its residual.
/// 3. **Departures beyond anything in the reference:** spikes, levels over 1 and 24 hours, and the rate
///    of points past a fence, each in the reference's own spread on that side, with floors on that
///    spread (Gaussian record, the hourly spread for long runs) and an absolute floor in the metric's
///    units.
/// 4. **Graded confidence** `ramp(e; 0, excessFull)` for the strongest departure the rules allow.
/// 5. **Onset, re-arming.** The newest hour alarms only when none of the other recent hours (for a
///    day-long level, none of the last day's runs) reached `rearmBelow`.
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
        /// The days of history an hour-of-week pattern needs, and the share of reference hours that must
        /// have the same hour of another week (in practice two weeks). Below `weeklyCoverage` the weekly
        /// pattern is not used (the day's is); with less than 1, the hours a gap left alone are judged
        /// against the day's pattern. `weeklyMinDays` 0 turns the weekly pattern off.
        public var weeklyMinDays = 10.0
        public var weeklyCoverage = 1.0
        /// The excess at which the confidence is full (0 at the reference's bound).
        public var excessFull = 0.75
        public var rearmBelow = 0.8
        /// The spread floor: the record Gaussian noise of the reference's scale sets in this many weeks.
        public var noiseWeeks = 52.0
        public var ongoingCap = 0.5
        /// The lengths, in hours, levels are judged at (each needs a reference three times as long).
        public var levelHours = [1, 24]
        public var levelShrink = 0.5
        public var levelApart = true
        public var levelDeviations = 2.0
        /// The rate's fence, as a share of the way from the reference's median to its highest point, and
        /// the fewest points past it an hour needs.
        public var rateFence = 0.5
        public var rateMinimum = 3.0
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

    func anomaly(_ fetched: [MetricPoint], rules: AnomalyRules, now: Date) -> AnomalyResult? {
        let s = configuration.anomaly
        let step = Self.typicalStep(fetched[...])
        let floor = rules.floor + rules.floorPerSecond * step
        // Log-scale series are judged as log(bytes + offset). The transform keeps the order, so an hour's
        // median, highest and lowest are taken on the bytes and transformed after: a week of points needs
        // no logarithm each, only the summaries, the recent hours and the spikes' scale sample do.
        let offset = max(floor, 1)
        func f(_ v: Double) -> Double { rules.logScale ? log(max(v, 0) + offset) : v }
        func inverse(_ x: Double) -> Double { rules.logScale ? exp(x) - offset : x }
        func transformed(_ hours: [Hour]) -> [Hour] {
            rules.logScale
                ? hours.map {
                    // The median of the transformed points: the mean of the transformed middle values
                    // (for an even count, not the transform of their mean).
                    Hour(
                        index: $0.index, lower: $0.lower, upper: $0.upper, high: f($0.high), low: f($0.low),
                        lowerMiddle: f($0.lowerMiddle), upperMiddle: f($0.upperMiddle))
                }
                : hours
        }
        // Points older than the lookback only teach the seasonal pattern (a week's pattern needs two weeks);
        // the reference departures are measured against stays the lookback.
        let lookbackStart = now.addingTimeInterval(-configuration.lookbackHours * 3600)
        let olderEnd = fetched.firstIndex { $0.time > lookbackStart } ?? fetched.count
        let raw = Array(fetched[olderEnd...])
        guard let last = raw.last, now.timeIntervalSince(last.time) <= configuration.maxStalenessHours * 3600
        else { return nil }
        let cut = now.addingTimeInterval(-Double(s.recentHours) * 3600)
        let split = raw.firstIndex { $0.time >= cut } ?? raw.count
        let reference = raw[..<split]
        // The points as judged: the reference's stay as fetched (read through their hours), the recent
        // ones transformed.
        let points = Array(reference) + raw[split...].map { MetricPoint(time: $0.time, value: f($0.value)) }
        guard let first = reference.first, cut.timeIntervalSince(first.time) >= s.minReferenceHours * 3600,
            reference.count >= 12
        else { return .coldStart }
        let older = fetched[..<olderEnd]

        // The reference and the older stretch as hours: each hour's points, median, highest and lowest. The
        // model reads the week through these (about 170 of them), and the points only where it must
        // (extremes, the spikes' scale, the rate), so an hourly run stays cheap.
        let olderHours = transformed(Self.hours(older))
        let referenceHours = transformed(Self.hours(reference))
        let referenceMedians = referenceHours.map(\.median)

        // Own seasonality: judge residuals from each hour of day's (or hour of week's) median when that
        // explains the spread. A reference hour is judged against the same hour of the other days (or
        // weeks) only, out of sample as a new hour is: with its own value in the median the reference
        // would look tighter than the pattern will be for a new point.
        var profile: (period: Int, medians: [Double])? = nil
        var leftOut = [Double](repeating: 0, count: referenceHours.count)
        var bestScale = Double.infinity
        let rawHourScale = RobustStatistics.scaledMAD(referenceMedians)
        let rawRange = (referenceHours.map(\.high).max() ?? 0) - (referenceHours.map(\.low).min() ?? 0)
        let learnStart = older.first?.time ?? first.time
        // The daily candidate's values stand in for the few reference hours with no other week (a gap).
        var daily: [Double]? = nil
        for (period, days, least) in [(24, s.seasonalMinDays, 3), (168, s.weeklyMinDays, 1)]
        where period == 24 || s.weeklyMinDays > 0 {
            guard cut.timeIntervalSince(learnStart) >= days * 86_400 else { continue }
            func bucket(_ hour: Int) -> Int { (hour % period + period) % period }
            var members = [[(hour: Int, value: Double)]](repeating: [], count: period)
            let perBucket = (olderHours.count + referenceHours.count) / period + 2
            for b in members.indices { members[b].reserveCapacity(perBucket) }
            for h in olderHours { members[bucket(h.index)].append((h.index, h.median)) }
            for h in referenceHours { members[bucket(h.index)].append((h.index, h.median)) }
            guard members.allSatisfy({ $0.count >= least }) else { continue }
            var candidate = leftOut
            var missing = 0
            var others: [Double] = []
            others.reserveCapacity(perBucket)
            for (k, h) in referenceHours.enumerated() {
                others.removeAll(keepingCapacity: true)
                for m in members[bucket(h.index)] where m.hour != h.index { others.append(m.value) }
                if others.isEmpty {
                    missing += 1
                    candidate[k] = daily?[k] ?? .nan
                } else {
                    candidate[k] = RobustStatistics.medianInPlace(&others)
                }
            }
            // Every hour judged, and a week's pattern only when nearly every hour has another week.
            guard !candidate.contains(where: \.isNaN),
                Double(missing) <= (1 - s.weeklyCoverage) * Double(referenceHours.count)
            else { continue }
            if period == 24 { daily = candidate }
            // Seasonal when the pattern explains the bulk (scaled MAD) or the extremes (range): a nightly
            // batch hour is 1/24 of the hours, so it widens the range but not the MAD.
            let residualScale = RobustStatistics.scaledMAD(zip(referenceMedians, candidate).map(-))
            let residualRange =
                (zip(referenceHours, candidate).map { $0.high - $1 }.max() ?? 0)
                - (zip(referenceHours, candidate).map { $0.low - $1 }.min() ?? 0)
            guard
                residualScale < s.seasonalGain * rawHourScale || residualRange < s.seasonalGain * rawRange,
                residualScale < bestScale
            else { continue }
            profile = (period, members.map { RobustStatistics.median($0.map(\.value)) ?? 0 })
            leftOut = candidate
            bestScale = residualScale
        }
        func judged(_ p: MetricPoint) -> Double {
            profile.map { p.value - $0.medians[Self.bucket(p.time, $0.period)] } ?? p.value
        }
        let hourly = zip(referenceMedians, leftOut).map(-)
        // The reference's extremes as judged (less their hour's pattern, left out as above).
        guard let median = RobustStatistics.median(hourly),
            let high = zip(referenceHours, leftOut).map({ $0.high - $1 }).max(),
            let low = zip(referenceHours, leftOut).map({ $0.low - $1 }).min()
        else { return .coldStart }
        // Rate: how many of an hour's points pass the fence halfway from the median to the reference's
        // highest, per reference hour (spikes that come more often, none higher than before); counted on
        // the points as fetched against the fence taken back through the transform.
        let fence = median + s.rateFence * (high - median)
        let counts = zip(referenceHours, leftOut).map { h, left in
            let bound = inverse(fence + left)
            return Double((h.lower..<h.upper).count { reference[$0].value > bound })
        }
        let countHigh = counts.max() ?? 0
        let countMedian = RobustStatistics.median(counts) ?? 0
        // Log-scale series: the hours' medians of the raw values (the absolute floor is on them).
        let rawHourly = rules.logScale ? referenceMedians.map(inverse) : []
        let rawMedian = rules.logScale ? inverse(RobustStatistics.median(referenceMedians) ?? 0) : median
        // The spikes' scale from at most about 500 of the points, evenly spaced (a scaled MAD needs two
        // selections; over every point of a week they were most of an hourly run's cost).
        let every = max(1, reference.count / 500)
        var sample: [Double] = []
        for (h, left) in zip(referenceHours, leftOut) {
            for i in h.lower..<h.upper where i % every == 0 { sample.append(f(reference[i].value) - left) }
        }
        let yScale = RobustStatistics.scaledMAD(sample)
        let span = cut.timeIntervalSince(first.time) / 3600
        let history = RobustStatistics.ramp(
            span, from: s.minReferenceHours, to: max(s.fullReferenceHours, s.minReferenceHours))
        let tiny = 1e-9 * max(abs(median), 1)
        // The least spread a bound is measured in: the record that Gaussian noise with the reference's
        // robust scale would set over `noiseWeeks` weeks like the reference. A week whose highest point
        // happens to be low (or a light-tailed series) does not make an ordinary value a large excess:
        // with a week of hourly points, full confidence needs about 5 noise deviations, not 4.
        let weeks = Int(s.noiseWeeks)
        let spikeSpread =
            RobustStatistics.normalRecord(count: reference.count * weeks) * yScale
        // Levels at several lengths: the mean of `hours` consecutive hourly medians against every such run
        // in the reference. One hour sees a step at once; 6 and 24 hours see a departure that builds up
        // slowly (each hour only a little past the last) or lasts longer than anything before it, where
        // the reference's short dips were as deep.
        struct Scale {
            var hours: Int
            var median: Double
            var high: Double
            var low: Double
            var spread: Double
            /// The least spread on each side: the one-hour level's, shrunk by `hours^levelShrink`. A week
            /// holds few independent day-long runs, so their own range understates how they vary.
            var upFloor: Double
            var downFloor: Double
            /// The least departure from the median that counts: `levelDeviations` robust deviations of the
            /// hourly medians. A day's mean that moved less than the hours usually do is not a new level.
            var least = 0.0
        }
        var scales: [Scale] = []
        for hours in s.levelHours where hours >= 1 && hourly.count >= 4 * hours {
            // Runs that end before the oldest recent hour's run starts: a departure is not measured against
            // runs that already hold part of it.
            let apart = s.levelApart ? max(hours - 1, 0) : 0
            let blocks = Self.runningMeans(Array(hourly[..<(hourly.count - apart)]), hours)
            guard let m = RobustStatistics.median(blocks), let hi = blocks.max(), let lo = blocks.min() else {
                continue
            }
            let independent = max(blocks.count / hours, 1)
            let spread =
                RobustStatistics.normalRecord(count: independent * weeks) * RobustStatistics.scaledMAD(blocks)
            var scale = Scale(hours: hours, median: m, high: hi, low: lo, spread: spread, upFloor: 0, downFloor: 0)
            if hours > 1, let one = scales.first(where: { $0.hours == 1 }) {
                let shrink = pow(Double(hours), -s.levelShrink)
                scale.upFloor = max(one.high - one.median, one.spread) * shrink
                scale.downFloor = max(one.median - one.low, one.spread) * shrink
                scale.least = s.levelDeviations * RobustStatistics.scaledMAD(hourly)
            }
            scales.append(scale)
        }

        // The recent hours, oldest first: their point ranges and medians.
        // `pattern`: the hour's mean pattern value (log-scale series: what its bytes are expected to be).
        var recent: [(range: Range<Int>, median: Double, raw: Double, pattern: Double)?] = []
        for k in stride(from: s.recentHours - 1, through: 0, by: -1) {
            let from = now.addingTimeInterval(-Double(k + 1) * 3600)
            let to = now.addingTimeInterval(-Double(k) * 3600)
            let lower = points[split...].firstIndex { $0.time >= from } ?? points.count
            let upper = points[lower...].firstIndex { $0.time >= to } ?? points.count
            let pattern =
                profile.map { p in
                    points[lower..<upper].reduce(0) { $0 + p.medians[Self.bucket($1.time, p.period)] }
                        / Double(max(upper - lower, 1))
                } ?? 0
            recent.append(
                lower < upper
                    ? (
                        lower..<upper, RobustStatistics.median(points[lower..<upper].map(judged)) ?? 0,
                        rules.logScale ? RobustStatistics.median(raw[lower..<upper].map(\.value)) ?? 0 : 0, pattern
                    ) : nil)
        }
        let ladder = hourly + recent.compactMap { $0?.median }
        let rawLadder = rawHourly + recent.compactMap { $0?.raw }
        // Each hour's pattern value: a reference hour's as it was judged (left out), a recent hour's mean.
        let patternLadder = leftOut + recent.compactMap { $0?.pattern }
        // Log-scale series: what each hour's bytes are expected to be at each level length's centre,
        // taken back through the transform once (the runs below average them).
        let expectedLadders = scales.map { scale in
            rules.logScale ? patternLadder.map { inverse(scale.median + $0) } : []
        }

        func score(_ range: Range<Int>, at position: Int, pattern: Double) -> AnomalyFinding? {
            let hour = points[range]
            let values = hour.map(judged)
            let rawValues = raw[range].map(\.value)
            guard let top = values.max(), let bottom = values.min(), let rawTop = rawValues.max(),
                let rawBottom = rawValues.min()
            else { return nil }
            var best: AnomalyFinding?
            /// The confidence and excess of a departure to `x`; nil when it does not count.
            func judge(
                _ rising: Bool, _ x: Double, _ centre: Double, _ bound: Double, _ least: Double, _ rawX: Double,
                _ departing: Double, expected: Double
            ) -> (confidence: Double, excess: Double)? {
                guard abs(x - centre) >= departing else { return nil }
                // The absolute floor, on the raw values (seasonal residuals judged as they are). Log-scale
                // series: against what the hour's bytes are expected to be (the centre at the hour's
                // pattern), so a collapse in a busy hour counts even while above the week's median.
                let departure =
                    rules.logScale ? (rising ? rawX - expected : expected - rawX) : (rising ? x - centre : centre - x)
                guard departure >= max(floor, tiny), rising ? x > centre : x < centre else { return nil }
                let spread = max(abs(bound - centre), least, rules.logScale ? 0.01 : max(floor * 0.5, tiny))
                let excess = (rising ? x - bound : bound - x) / spread
                return (history * RobustStatistics.ramp(excess, from: 0, to: s.excessFull), excess)
            }
            func consider(
                _ on: Bool, _ shape: AnomalyFinding.Shape, hours: Int, _ rising: Bool, _ x: Double, _ centre: Double,
                _ bound: Double, spread least: Double, _ rawX: Double, departing: Double = 0, continuing: Bool = false,
                expected: Double
            ) {
                guard on,
                    let (judged, excess) = judge(rising, x, centre, bound, least, rawX, departing, expected: expected)
                else { return }
                let confidence = continuing ? min(judged, s.ongoingCap) : judged
                guard confidence > (best?.confidence ?? 0) else { return }
                let shown = rules.logScale ? rawX : x
                best = AnomalyFinding(
                    confidence: confidence, shape: shape, rising: rising, value: shown,
                    referenceMedian: rules.logScale ? rawMedian : centre,
                    bound: rules.logScale ? rawMedian * exp(bound - centre) : bound, excess: excess,
                    seasonal: profile != nil, weekly: profile?.period == 168, onset: !continuing, hours: hours)
            }
            let expected = inverse(median + pattern)
            consider(
                rules.spikeUp, .spike, hours: 0, true, top, median, high, spread: spikeSpread, rawTop,
                expected: expected)
            consider(
                rules.spikeDown, .spike, hours: 0, false, bottom, median, low, spread: spikeSpread, rawBottom,
                expected: expected)
            // The rate: only when the fence itself is a departure the rules count.
            let count = Double(values.count { $0 > fence })
            // (Log-scale series: in bytes, at the hour's pattern.)
            let fenceDeparture =
                rules.logScale ? inverse(fence + pattern) - inverse(median + pattern) : fence - median
            if rules.spikeUp, count >= s.rateMinimum, count > countHigh, fenceDeparture >= max(floor, tiny) {
                let excess = (count - countHigh) / max(countHigh - countMedian, 1)
                let confidence = history * RobustStatistics.ramp(excess, from: 0, to: s.excessFull)
                if confidence > (best?.confidence ?? 0) {
                    best = AnomalyFinding(
                        confidence: confidence, shape: .rate, rising: true, value: count, referenceMedian: countMedian,
                        bound: countHigh, excess: excess, seasonal: profile != nil, weekly: profile?.period == 168,
                        onset: true, hours: 1)
                }
            }
            for (scaleIndex, scale) in scales.enumerated() where position + 1 >= scale.hours {
                func mean(_ values: [Double], endingAt end: Int) -> Double {
                    values[(end + 1 - scale.hours)...end].reduce(0, +) / Double(scale.hours)
                }
                let x = mean(ladder, endingAt: position)
                // Log-scale series: the floor and the message are on the same hours' raw medians.
                let rawX = rules.logScale ? mean(rawLadder, endingAt: position) : x
                /// What the run's bytes are expected to be (log-scale series): the centre at each hour's pattern.
                func expected(endingAt end: Int) -> Double {
                    rules.logScale ? mean(expectedLadders[scaleIndex], endingAt: end) : 0
                }
                let upSpread = max(scale.spread, scale.upFloor)
                let downSpread = max(scale.spread, scale.downFloor)
                // A run as long as a day already departed within the last day is not new (the six recent
                // hours only cover a quarter of it).
                var upBefore = false
                var downBefore = false
                for end in max(scale.hours - 1, position + 1 - scale.hours)..<position where scale.hours > s.recentHours
                {
                    let earlierX = mean(ladder, endingAt: end)
                    let earlierRaw = rules.logScale ? mean(rawLadder, endingAt: end) : earlierX
                    let was = expected(endingAt: end)
                    let up = judge(
                        true, earlierX, scale.median, scale.high, upSpread, earlierRaw, scale.least, expected: was)
                    let down = judge(
                        false, earlierX, scale.median, scale.low, downSpread, earlierRaw, scale.least, expected: was)
                    upBefore = upBefore || (up?.confidence ?? 0) >= s.rearmBelow
                    downBefore = downBefore || (down?.confidence ?? 0) >= s.rearmBelow
                }
                let expectedHere = expected(endingAt: position)
                consider(
                    rules.levelUp, .level, hours: scale.hours, true, x, scale.median, scale.high, spread: upSpread,
                    rawX, departing: scale.least, continuing: upBefore, expected: expectedHere)
                consider(
                    rules.levelDown, .level, hours: scale.hours, false, x, scale.median, scale.low, spread: downSpread,
                    rawX, departing: scale.least, continuing: downBefore, expected: expectedHere)
            }
            return best
        }
        // The recent hours, newest last; the newest one is judged, the others say whether it is new.
        var earlier = 0.0
        var newest: AnomalyFinding?
        var position = hourly.count - 1
        for (k, hour) in recent.enumerated() {
            guard let hour else {
                if k == recent.count - 1 { newest = nil }
                continue
            }
            position += 1
            let finding = score(hour.range, at: position, pattern: hour.pattern)
            if k == recent.count - 1 { newest = finding } else { earlier = max(earlier, finding?.confidence ?? 0) }
        }
        guard var finding = newest else { return .finding(nil) }
        if earlier >= s.rearmBelow {
            finding.onset = false
            finding.confidence = min(finding.confidence, s.ongoingCap)
        }
        return .finding(finding)
    }
}
