import Foundation

/// Robust statistics for the predictor (docs/prediction.md). Pure functions on `[Double]`; every one
/// ignores nothing and assumes finite input (the caller drops NaN and infinities first).
public enum RobustStatistics {
    /// The median (the mean of the two middle values for an even count); nil for no values. O(n):
    /// Hoare's selection on a copy, not a sort (the predictor takes several per series every hour).
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        var a = values
        return medianInPlace(&a)
    }

    /// The median of `values`, reordering them (no copy); 0 for none.
    static func medianInPlace(_ values: inout [Double]) -> Double {
        let (lower, upper) = middlesInPlace(&values)
        return (lower + upper) / 2
    }

    /// The two middle values of `values` (the same one for an odd count), reordering them; 0 for none.
    static func middlesInPlace(_ values: inout [Double]) -> (lower: Double, upper: Double) {
        guard !values.isEmpty else { return (0, 0) }
        let mid = values.count / 2
        let upper = select(&values, mid)
        guard values.count % 2 == 0 else { return (upper, upper) }
        // The lower middle is the largest of the part selection left below `mid`.
        return (values[..<mid].max()!, upper)
    }

    /// The `k`-th smallest value (0-based); `a` is partly reordered so that `a[..<k]` are ≤ it.
    static func select(_ a: inout [Double], _ k: Int) -> Double {
        var low = 0
        var high = a.count - 1
        while low < high {
            // A short range is sorted in place (an hour of 5-minute points is 12): cheaper than partitioning.
            if high - low < 24 {
                a.withUnsafeMutableBufferPointer { b in
                    for i in (low + 1)...high {
                        let v = b[i]
                        var j = i - 1
                        while j >= low && b[j] > v {
                            b[j + 1] = b[j]
                            j -= 1
                        }
                        b[j + 1] = v
                    }
                }
                return a[k]
            }
            // Median of three as the pivot: sorted or constant input stays O(n).
            let m = low + (high - low) / 2
            if a[m] < a[low] { a.swapAt(m, low) }
            if a[high] < a[low] { a.swapAt(high, low) }
            if a[high] < a[m] { a.swapAt(high, m) }
            let pivot = a[m]
            var i = low
            var j = high
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j {
                    a.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if k <= j { high = j } else if k >= i { low = i } else { return a[k] }
        }
        return a[k]
    }

    /// The value a record of `n` independent normal values typically reaches, in standard deviations:
    /// the normal quantile at 1 − 1/(n + 1) (Abramowitz and Stegun 26.2.23, error below 5·10⁻⁴).
    /// About 2.5 for a week of hourly points, 3.5 for a week of 5-minute points.
    public static func normalRecord(count n: Int) -> Double {
        let p = 1 / Double(max(n, 1) + 1)
        let t = (-2 * log(p)).squareRoot()
        return t - (2.515517 + 0.802853 * t + 0.010328 * t * t)
            / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
    }

    /// The median absolute deviation around the median, scaled by 1.4826 so that it estimates the
    /// standard deviation of normal data. Zero for fewer than two values.
    public static func scaledMAD(_ values: [Double]) -> Double {
        guard values.count > 1, let m = median(values) else { return 0 }
        return 1.4826 * (median(values.map { abs($0 - m) }) ?? 0)
    }

    /// A robust linear trend: the Theil–Sen slope with the Mann–Kendall test.
    public struct Trend: Sendable, Equatable {
        /// Median of the pairwise slopes, in units per hour.
        public var slope: Double
        /// The fitted value at time 0 (the caller's "now"): median of `y - slope·t`.
        public var level: Double
        /// Sen's confidence interval for the slope (95 %), from the Mann–Kendall variance.
        public var slopeLow: Double
        public var slopeHigh: Double
        /// Kendall's tau between time and value, in [-1, 1]: the share of concordant minus discordant pairs.
        public var tau: Double
        /// The Mann–Kendall z statistic (continuity corrected, no tie correction).
        public var z: Double
        /// 1.4826 × MAD of the residuals around the fit.
        public var residualScale: Double
        public var count: Int
    }

    /// The Theil–Sen fit of `values` against `hours` (time in hours, any origin; the level is at 0).
    /// Needs at least three points with distinct times; O(n²).
    public static func theilSen(hours: [Double], values: [Double]) -> Trend? {
        let n = min(hours.count, values.count)
        guard n >= 3 else { return nil }
        var slopes: [Double] = []
        slopes.reserveCapacity(n * (n - 1) / 2)
        var s = 0
        for i in 0..<(n - 1) {
            for j in (i + 1)..<n {
                let dt = hours[j] - hours[i]
                let dy = values[j] - values[i]
                if dy > 0 { s += dt > 0 ? 1 : -1 } else if dy < 0 { s += dt > 0 ? -1 : 1 }
                if dt != 0 { slopes.append(dy / dt) }
            }
        }
        guard !slopes.isEmpty else { return nil }
        let m = slopes.count
        // Order statistics by selection, not a sort of all n(n−1)/2 slopes.
        func rank(_ k: Int) -> Double { select(&slopes, k) }
        let slope = m % 2 == 1 ? rank(m / 2) : (rank(m / 2 - 1) + rank(m / 2)) / 2
        let level = median((0..<n).map { values[$0] - slope * hours[$0] }) ?? 0
        let pairs = Double(n * (n - 1) / 2)
        let variance = Double(n * (n - 1) * (2 * n + 5)) / 18
        let sd = variance.squareRoot()
        let z = s > 0 ? (Double(s) - 1) / sd : s < 0 ? (Double(s) + 1) / sd : 0
        // Sen's interval: the slopes of rank (N ∓ C)/2 with C = 1.96·sd(S).
        let c = 1.96 * sd
        let low = max(0, min(m - 1, Int(((Double(m) - c) / 2).rounded(.down))))
        let high = max(0, min(m - 1, Int(((Double(m) + c) / 2).rounded(.up))))
        let residuals = (0..<n).map { values[$0] - (level + slope * hours[$0]) }
        return Trend(
            slope: slope, level: level, slopeLow: rank(low), slopeHigh: rank(high), tau: Double(s) / pairs,
            z: z, residualScale: scaledMAD(residuals), count: n)
    }

    /// `(x - low) / (high - low)` clamped to [0, 1]; a falling ramp when `high < low`.
    public static func ramp(_ x: Double, from low: Double, to high: Double) -> Double {
        guard low != high else { return x >= high ? 1 : 0 }
        return min(1, max(0, (x - low) / (high - low)))
    }
}
