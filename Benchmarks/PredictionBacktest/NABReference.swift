import Foundation

/// NAB's `windowedGaussian` detector, rewritten from its published description, so the scorer can be
/// checked against that detector's published per-file scores (the published files hold scores, not
/// detections; this detector is deterministic, so its detections can be derived).
///
/// Each row scores `1 − Q((x − μ)/σ)` for a row above the mean (Q the normal tail) and `Q` of the
/// mirrored value below it, against the mean and population standard deviation of a window of up to
/// 6400 earlier rows, which fills row by row and then slides 100 rows at a time (σ = 10⁻⁶ when 0).
/// The first row scores 0. NAB's standard threshold for it is 1.0: a row is flagged when its score
/// rounds to exactly 1 in double precision.
public enum WindowedGaussian {
    public static func scores(_ values: [Double], windowSize: Int = 6400, stepSize: Int = 100) -> [Double] {
        var window: [Double] = []
        var buffer: [Double] = []
        var mean = 0.0
        var std = 1.0
        func update() {
            let n = Double(window.count)
            mean = window.reduce(0, +) / n
            std = (window.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n).squareRoot()
            if std == 0 { std = 0.000001 }
        }
        var out: [Double] = []
        out.reserveCapacity(values.count)
        for x in values {
            out.append(window.isEmpty ? 0 : 1 - tail(x, mean: mean, std: std))
            if window.count < windowSize {
                window.append(x)
                update()
            } else {
                buffer.append(x)
                if buffer.count == stepSize {
                    window.removeFirst(stepSize)
                    window += buffer
                    buffer = []
                    update()
                }
            }
        }
        return out
    }

    /// P(X > x) for X normal(mean, std), mirrored below the mean.
    static func tail(_ x: Double, mean: Double, std: Double) -> Double {
        if x < mean { return 1 - tail(2 * mean - x, mean: mean, std: std) }
        return 0.5 * erfc((x - mean) / std / 2.0.squareRoot())
    }

    /// The rows flagged at `threshold`.
    public static func flagged(_ values: [Double], threshold: Double = 1.0) -> [Int] {
        scores(values).enumerated().filter { $0.element >= threshold }.map(\.offset)
    }
}
