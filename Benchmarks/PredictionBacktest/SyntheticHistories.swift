import Foundation
import RecoveryCore

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, so a seed gives the same histories on
/// every machine and Swift version (the standard library's `random(in:using:)` may change).
public struct SplitMix64: Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
    public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }
    public mutating func int(_ low: Int, _ high: Int) -> Int { low + Int(next() % UInt64(high - low + 1)) }
    public mutating func chance(_ p: Double) -> Bool { unit() < p }
    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u = max(unit(), 0x1p-53)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * unit())
    }
}

/// A labelled synthetic history (docs/prediction.md, "Backtest").
public struct Scenario: Sendable {
    public enum Shape: String, Sendable, CaseIterable {
        // Failures the predictor should see coming (or anomalies it should flag).
        case diskFilling = "disk-filling"
        case memoryLeak = "memory-leak"
        case cpuOffHourSpike = "cpu-off-hour-spike"
        case networkSurge = "network-surge"
        case networkDrop = "network-drop"
        case flappingStatusChecks = "flapping-status-checks"
        case creditExhaustion = "credit-exhaustion"
        // Healthy histories that look alarming to a naive model.
        case healthyNoise = "healthy-noise"
        case emptyDiskDrift = "empty-disk-drift"
        case hourNormalSpikes = "hour-normal-spikes"
        case fullFlatDisk = "full-flat-disk"
        case memorySawtooth = "memory-sawtooth"

        public var label: PredictionKind? {
            switch self {
            case .diskFilling: .diskExhaustion
            case .memoryLeak: .memoryExhaustion
            case .cpuOffHourSpike: .cpuAnomaly
            case .networkSurge, .networkDrop: .networkAnomaly
            case .flappingStatusChecks: .statusCheckRecurrence
            case .creditExhaustion: .cpuCreditExhaustion
            case .healthyNoise, .emptyDiskDrift, .hourNormalSpikes, .fullFlatDisk, .memorySawtooth: nil
            }
        }
    }

    public var shape: Shape
    public var index: Int
    /// Hour 0 of the history.
    public var origin: Date
    public var hours: Int
    /// One value per hour (NaN = no data point).
    public var values: [PredictorMetric: [Double]]
    /// Replayed hours: the predictor runs at the end of each hour in evalFrom..<evalTo.
    public var evalFrom: Int
    public var evalTo: Int
    /// An alarm of the labelled kind at an hour in validFrom..<validTo is a true positive.
    public var validFrom: Int
    public var validTo: Int
    /// Exhaustion: the hour the limit is reached. Anomaly: the hour it starts.
    public var eventHour: Int
    /// Flapping: the hours each failure episode starts (the lead time runs to the next one).
    public var episodeStarts: [Int] = []

    public func time(_ hour: Int) -> Date { origin.addingTimeInterval(Double(hour) * 3600) }

    /// The history as the predictor sees it at the end of `hour`: every point up to and including it.
    public func history(through hour: Int) -> MetricHistory {
        var history = MetricHistory()
        for (metric, series) in values {
            var points: [MetricPoint] = []
            points.reserveCapacity(hour + 1)
            for h in 0...min(hour, series.count - 1) where !series[h].isNaN {
                points.append(MetricPoint(time: time(h), value: series[h]))
            }
            history[metric] = points
        }
        return history
    }
}

/// Generates the scenarios: `perShape` of each shape, 336 hours each (7 days of warm-up, 7 replayed).
public struct ScenarioGenerator {
    public static let hours = 336
    public static let warmUp = 168
    /// 2026-01-05T00:00:00Z, a whole UTC hour (so hour-of-day is hour mod 24).
    public static let origin = Date(timeIntervalSince1970: 1_767_571_200)

    public static func generate(seed: UInt64, perShape: Int, shapes: [Scenario.Shape] = Scenario.Shape.allCases)
        -> [Scenario]
    {
        var rng = SplitMix64(seed: seed)
        var out: [Scenario] = []
        for shape in shapes {
            for i in 0..<perShape { out.append(make(shape, index: i, rng: &rng)) }
        }
        return out
    }

    static func daily(_ h: Int, phase: Double) -> Double { sin(2 * .pi * (Double(h % 24) - phase) / 24) }

    static func make(_ shape: Scenario.Shape, index: Int, rng: inout SplitMix64) -> Scenario {
        let n = hours
        // The healthy baseline every scenario starts from.
        let cpuBase = rng.uniform(5, 35)
        let cpuAmp = rng.uniform(3, 15)
        let phase = rng.uniform(0, 24)
        var cpu = (0..<n).map { h in min(100, max(0, cpuBase + cpuAmp * daily(h, phase: phase) + 2.5 * rng.normal())) }
        let netBase = rng.uniform(1e6, 5e7)
        let outRatio = rng.uniform(0.8, 3)
        var netIn = (0..<n).map { h in netBase * (1 + 0.6 * daily(h, phase: phase)) * exp(0.12 * rng.normal()) }
        var netOut = netIn.map { $0 * outRatio * exp(0.12 * rng.normal()) }
        var status = [Double](repeating: 0, count: n)
        let burstable = shape == .creditExhaustion || rng.chance(0.5)
        let creditMax = rng.uniform(144, 576)
        let creditLevel = creditMax * rng.uniform(0.6, 0.95)
        var credits = (0..<n).map { h in
            burstable
                ? max(0, min(creditMax, creditLevel + 0.05 * creditMax * daily(h, phase: phase) + rng.normal())) : .nan
        }
        let memBase = rng.uniform(25, 65)
        var memory = (0..<n).map { h in min(100, max(0, memBase + 2 * daily(h, phase: phase) + rng.normal())) }
        let diskBase = rng.uniform(20, 70)
        var disk = (0..<n).map { h in min(100, max(0, diskBase + 0.003 * Double(h) + 0.2 * rng.normal())) }

        var s = Scenario(
            shape: shape, index: index, origin: origin, hours: n, values: [:], evalFrom: warmUp, evalTo: n,
            validFrom: 0, validTo: 0, eventHour: 0)
        // The hour of day where the daily curve is lowest (sin at -1): phase + 18.
        let trough = (Int(phase.rounded()) + 18) % 24
        switch shape {
        case .diskFilling:
            let start = rng.int(140, 250)
            let full = rng.int(max(start + 24, 200), 330)
            let rate = (100 - diskBase) / Double(full - start)
            let noise = rng.uniform(0.2, 1.5)
            // Half fill smoothly, half in steps (a log written in bursts every 6 hours).
            let steps = rng.chance(0.5)
            for h in start..<n {
                let elapsed = steps ? Double((h - start) / 6 * 6) : Double(h - start)
                disk[h] = min(100, max(0, diskBase + rate * elapsed + noise * rng.normal()))
            }
            for h in full..<n { disk[h] = 100 }
            s.validFrom = start
            s.validTo = full
            s.eventHour = full
            s.evalTo = full
        case .memoryLeak:
            let start = rng.int(120, 250)
            let full = rng.int(max(start + 36, 200), 330)
            if rng.chance(0.5) {  // an earlier restart that already cleared an elevated level once
                let restart = rng.int(start - 60, start - 10)
                for h in max(0, restart - 48)..<restart { memory[h] = min(100, memBase + 20 + rng.normal()) }
            }
            let rate = (100 - memBase) / Double(full - start)
            let noise = rng.uniform(0.5, 3)
            for h in start..<n {
                memory[h] = min(100, max(0, memBase + rate * Double(h - start) + noise * rng.normal()))
            }
            for h in full..<n { memory[h] = 100 }
            s.validFrom = start
            s.validTo = full
            s.eventHour = full
            s.evalTo = full
        case .cpuOffHourSpike:
            let day = rng.int(8, 12)
            let length = rng.int(2, 4)
            let start = day * 24 + (trough + rng.int(-2, 2) + 24) % 24
            let peak = rng.uniform(70, 100)
            for h in start..<(start + length) { cpu[h] = min(100, peak + 2 * rng.normal()) }
            s.validFrom = start
            s.validTo = start + length
            s.eventHour = start
        case .networkSurge:
            let day = rng.int(8, 12)
            let length = rng.int(2, 3)
            let start = day * 24 + (trough + rng.int(-2, 2) + 24) % 24
            let factor = rng.uniform(3, 12)
            for h in start..<(start + length) {
                if index % 2 == 0 { netIn[h] *= factor } else { netOut[h] *= factor }
            }
            s.validFrom = start
            s.validTo = start + length
            s.eventHour = start
        case .networkDrop:
            let day = rng.int(8, 12)
            let length = rng.int(3, 6)
            let start = day * 24 + rng.int(0, 23)
            for h in start..<(start + length) {
                netIn[h] *= rng.uniform(0.01, 0.05)
                netOut[h] *= rng.uniform(0.01, 0.05)
            }
            s.validFrom = start
            s.validTo = start + length
            s.eventHour = start
        case .flappingStatusChecks:
            var h = rng.int(180, 260)
            s.validFrom = h
            while h < n {
                s.episodeStarts.append(h)
                for k in h..<min(n, h + rng.int(1, 2)) { status[k] = 1 }
                h += rng.int(5, 30)
            }
            s.validTo = s.episodeStarts.last ?? n
            s.eventHour = s.validFrom
        case .creditExhaustion:
            let start = rng.int(120, 220)
            let empty = rng.int(max(start + 48, 200), 330)
            let level0 = credits[start].isNaN ? creditLevel : credits[start]
            let rate = level0 / Double(empty - start)
            for h in start..<n {
                credits[h] = max(
                    0, level0 - rate * Double(h - start) + 0.04 * creditMax * daily(h, phase: phase) + rng.normal())
            }
            for h in empty..<n { credits[h] = 0 }
            s.validFrom = start
            s.validTo = empty
            s.eventHour = empty
            s.evalTo = empty
        case .healthyNoise:
            // Now and then an isolated failed status check, or two far apart: not a pattern.
            // (Three or more in a week is what the model calls recurring, so "healthy" has at most two.)
            if rng.chance(0.3) {
                status[rng.int(0, n - 1)] = 1
            } else if rng.chance(0.2) {
                let a = rng.int(0, 100)
                status[a] = 1
                status[min(n - 1, a + rng.int(100, 200))] = 1
            }
        case .emptyDiskDrift:
            let base = rng.uniform(3, 15)
            let drift = rng.uniform(0.02, 0.08)
            disk = (0..<n).map { h in base + drift * Double(h) + 0.2 * rng.normal() }
        case .hourNormalSpikes:
            // A nightly batch job: CPU near 100 % and a backup's outbound traffic, every day at the same hour.
            let hour = rng.int(0, 23)
            let length = rng.int(1, 2)
            let factor = rng.uniform(6, 10)
            for day in 0..<(n / 24) {
                for h in (day * 24 + hour)..<min(n, day * 24 + hour + length) {
                    cpu[h] = min(100, rng.uniform(88, 99))
                    netOut[h] *= factor
                }
            }
        case .fullFlatDisk:
            let level = rng.uniform(82, 92)
            disk = (0..<n).map { _ in min(100, level + 0.3 * rng.normal()) }
        case .memorySawtooth:
            // A service restarted every night: memory climbs all day, then drops back.
            let low = rng.uniform(30, 40)
            let high = rng.uniform(70, 80)
            let hour = rng.int(0, 23)
            memory = (0..<n).map { h in
                let sinceRestart = Double((h - hour + 24 * 100) % 24)
                return min(100, low + (high - low) * sinceRestart / 23 + rng.normal())
            }
        }
        if shape.label == nil {
            s.validFrom = 0
            s.validTo = 0
        }
        s.values = [
            .cpu: cpu, .networkIn: netIn, .networkOut: netOut, .statusCheckFailed: status, .cpuCreditBalance: credits,
            .memory: memory, .disk: disk,
        ]
        return s
    }
}
