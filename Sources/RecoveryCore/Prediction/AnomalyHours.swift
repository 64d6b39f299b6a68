import Foundation

/// The onset detector's reading of a series by hours, and its small helpers (AnomalyOnset.swift).
extension Predictor {
    /// One hour of points: where they are, their median, highest and lowest.
    struct Hour {
        var index: Int
        var lower: Int
        var upper: Int
        var high: Double
        var low: Double
        /// The two middle points (the same for an odd count), on the detector's scale.
        var lowerMiddle: Double
        var upperMiddle: Double
        var median: Double { (lowerMiddle + upperMiddle) / 2 }
    }

    /// `points` (oldest first) cut into calendar hours; indices are into `points`.
    static func hours(_ points: ArraySlice<MetricPoint>) -> [Hour] {
        var out: [Hour] = []
        var scratch: [Double] = []
        var i = points.startIndex
        while i < points.endIndex {
            let index = hourIndex(points[i].time)
            var j = i
            scratch.removeAll(keepingCapacity: true)
            var high = -Double.infinity
            var low = Double.infinity
            // The hour ends at the next whole hour (points are oldest first).
            let end = Date(timeIntervalSince1970: Double(index + 1) * 3600)
            while j < points.endIndex, points[j].time < end {
                let v = points[j].value
                scratch.append(v)
                high = max(high, v)
                low = min(low, v)
                j += 1
            }
            let (lowerMiddle, upperMiddle) = RobustStatistics.middlesInPlace(&scratch)
            out.append(
                Hour(
                    index: index, lower: i, upper: j, high: high, low: low,
                    lowerMiddle: lowerMiddle, upperMiddle: upperMiddle))
            i = j
        }
        return out
    }

    /// The hour of day (period 24) or hour of week (period 168) a time falls in.
    static func bucket(_ date: Date, _ period: Int) -> Int { (hourIndex(date) % period + period) % period }

    /// The hour a time falls in, counted from the epoch.
    static func hourIndex(_ date: Date) -> Int { Int((date.timeIntervalSince1970 / 3600).rounded(.down)) }

    /// The mean of every run of `length` consecutive values.
    static func runningMeans(_ values: [Double], _ length: Int) -> [Double] {
        guard length > 1 else { return values }
        guard values.count >= length else { return [] }
        var sum = values[..<length].reduce(0, +)
        var out = [sum / Double(length)]
        for i in length..<values.count {
            sum += values[i] - values[i - length]
            out.append(sum / Double(length))
        }
        return out
    }

    /// The median spacing of the newest 25 points, in seconds (3600 when it cannot be told).
    static func typicalStep(_ points: ArraySlice<MetricPoint>) -> Double {
        let newest = points.suffix(25)
        let steps = zip(newest.dropFirst(), newest).map { $0.time.timeIntervalSince($1.time) }.filter { $0 > 0 }
        return RobustStatistics.median(steps) ?? 3600
    }
}
