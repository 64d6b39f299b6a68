import Foundation
import RecoveryCore

/// NAB's scoring (the standard profile), written from its documented rules (Benchmarks/nab/README.md,
/// docs/prediction.md "Real labelled series"):
///
/// - the first min(⌊15 % of the rows⌋, 750) rows are a probation period: nothing flagged there counts;
/// - a window's score is that of its best (earliest) flagged row, `A_TP · σ(−(r − i + 1)/w) / σ(−1)`
///   with `σ(y) = 2/(1 + e^{5y}) − 1`, `r` the window's last row and `w` its width in rows; a window
///   with no flagged row scores `−A_FN`;
/// - every flagged row outside the windows costs `A_FP · σ(d / (w' − 1))`, `d` rows after the end of
///   the previous window of width `w'` (σ is −1 beyond 3 widths), or `−A_FP` before the first window;
/// - a file's raw score is the sum; a detector's normalised score is
///   `100 · (S − S_null) / (S_perfect − S_null)` over a set of files, where the null detector flags
///   nothing and the perfect one flags the first row of every window.
public enum NABScorer {
    public struct Profile: Sendable {
        public var truePositive = 1.0
        public var falsePositive = 0.11
        public var falseNegative = 1.0
        public var probationShare = 0.15
        /// NAB caps the probation at 15 % of 5000 rows.
        public var probationCap = 750
        public static let standard = Profile()
    }

    /// One file's result.
    public struct FileScore: Sendable, Equatable {
        public var raw: Double
        /// Flagged rows inside windows / outside them, after the probation period (NAB's TP and FP).
        public var tpRows: Int
        public var fpRows: Int
        /// Per window: its first flagged row, or nil when it was missed.
        public var firstDetections: [Int?]
        /// Windows that count (not wholly inside the probation period).
        public var scoredWindows: Int
        public var windowsCaught: Int { firstDetections.compactMap { $0 }.count }
    }

    /// The number of probation rows of a file with `rows` rows.
    public static func probation(rows: Int, profile: Profile = .standard) -> Int {
        min(Int((profile.probationShare * Double(rows)).rounded(.down)), profile.probationCap)
    }

    /// NAB's scaled sigmoid: about 1 at −1 (a window's first row), 0 at its end, −1 well after it.
    public static func scaledSigmoid(_ position: Double) -> Double {
        position > 3 ? -1 : 2 / (1 + exp(5 * position)) - 1
    }

    /// Scores the rows flagged (any order, duplicates ignored) on one series.
    public static func score(_ series: NABSeries, flagged: [Int], profile: Profile = .standard) -> FileScore {
        let start = probation(rows: series.times.count, profile: profile)
        let windows = series.windows
        var windowScores = windows.map { $0.upperBound >= start ? -profile.falseNegative : 0 }
        var first = [Int?](repeating: nil, count: windows.count)
        var fpScore = 0.0
        var tp = 0
        var fp = 0
        for row in Set(flagged).sorted() where row >= start && row < series.times.count {
            if let w = windows.firstIndex(where: { $0.contains(row) }) {
                tp += 1
                let width = Double(windows[w].count)
                let position = -Double(windows[w].upperBound - row + 1) / width
                let value = profile.truePositive * scaledSigmoid(position) / scaledSigmoid(-1)
                if first[w] == nil {
                    first[w] = row
                    windowScores[w] = value
                } else {
                    windowScores[w] = max(windowScores[w], value)
                }
            } else {
                fp += 1
                if let previous = windows.last(where: { $0.upperBound < row }) {
                    let distance = Double(row - previous.upperBound) / Double(max(previous.count - 1, 1))
                    fpScore += profile.falsePositive * scaledSigmoid(distance)
                } else {
                    fpScore -= profile.falsePositive
                }
            }
        }
        return FileScore(
            raw: windowScores.reduce(0, +) + fpScore, tpRows: tp, fpRows: fp, firstDetections: first,
            scoredWindows: windows.filter { $0.upperBound >= start }.count)
    }

    /// The perfect detector's raw score on a file: every counted window caught at its first row.
    public static func perfect(_ series: NABSeries, profile: Profile = .standard) -> Double {
        score(series, flagged: series.windows.map(\.lowerBound), profile: profile).raw
    }

    /// The null detector's raw score on a file: every counted window missed.
    public static func null(_ series: NABSeries, profile: Profile = .standard) -> Double {
        score(series, flagged: [], profile: profile).raw
    }

    /// `100 · (S − S_null) / (S_perfect − S_null)` over `series` for the raw scores `raw` (same order).
    public static func normalised(raw: [Double], series: [NABSeries], profile: Profile = .standard) -> Double {
        let s = raw.reduce(0, +)
        let null = series.map { self.null($0, profile: profile) }.reduce(0, +)
        let perfect = series.map { self.perfect($0, profile: profile) }.reduce(0, +)
        return perfect == null ? 0 : 100 * (s - null) / (perfect - null)
    }
}

/// The plain window table beside NAB's score: windows caught, false alarms per 1,000 hours, and the
/// delay from the labelled point (NAB centres each window on its label, so the window's middle row).
public struct NABWindowTable: Sendable {
    public var windows = 0
    public var caught = 0
    public var falseAlarms = 0
    /// Hours scored (after each file's probation period).
    public var hours = 0.0
    /// Hours from the labelled point to the first detection of each caught window (negative: before it).
    public var delays: [Double] = []

    public init() {}

    public var falseAlarmsPer1000Hours: Double { hours > 0 ? Double(falseAlarms) / hours * 1000 : 0 }
    public var medianDelay: Double? { RobustStatistics.median(delays) }

    public mutating func add(_ series: NABSeries, _ score: NABScorer.FileScore) {
        let start = NABScorer.probation(rows: series.times.count)
        windows += score.scoredWindows
        caught += score.windowsCaught
        falseAlarms += score.fpRows
        if start < series.times.count { hours += series.hours - (series.times[start] - series.times[0]) / 3600 }
        for (window, row) in zip(series.windows, score.firstDetections) {
            guard let row else { continue }
            let middle = (window.lowerBound + window.upperBound) / 2
            delays.append((series.times[row] - series.times[middle]) / 3600)
        }
    }
}
