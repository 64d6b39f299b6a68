import Foundation

/// Which departures count for a metric, and its absolute floor (docs/prediction.md, "CPU and network
/// anomalies").
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
    public enum Shape: String, Sendable { case spike, level, rate }
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
    /// The pattern is the hour of the week's (else the hour of the day's).
    public var weekly: Bool
    /// False when an earlier recent hour already departed (the change is not new).
    public var onset: Bool
    /// A level's length: the mean of this many hourly medians (0 for a spike, a single point).
    public var hours: Int
}
