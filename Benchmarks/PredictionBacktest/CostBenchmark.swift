import Foundation
import RecoveryCore

/// The CPU cost of an hourly run (docs/prediction.md, "Cost"): `Predictor.predict` on what the worker
/// fetches for one target, 5-minute points of all seven series: two weeks of the fast ones
/// (CPUUtilization, NetworkIn, NetworkOut: their hour-of-week pattern), a week of the slow ones
/// (StatusCheckFailed, CPUCreditBalance, mem_used_percent, disk_used_percent), with a daily cycle and
/// noise, timed over `targets` generated targets on one core.
public enum CostBenchmark {
    public struct Result: Sendable {
        public var targets: Int
        public var perTarget: Duration
        /// The CPU time of one hourly run over 10,000 such targets.
        public var perTenThousand: Duration { perTarget * 10_000 }
    }

    /// `fastOnly`: the three fast series alone, as a quiet target's run reads them five slots in six.
    public static func run(targets: Int = 200, seed: UInt64 = 3, fastOnly: Bool = false) -> Result {
        var rng = SplitMix64(seed: seed)
        let now = ScenarioGenerator.origin.addingTimeInterval(168 * 3600)
        let histories = (0..<targets).map { _ in
            var h = history(&rng, now: now)
            if fastOnly { for metric in PredictionCadence.slowMetrics { h[metric] = [] } }
            return h
        }
        let predictor = Predictor()
        var sink = 0.0
        let started = ContinuousClock.now
        for h in histories { sink += predictor.predict(h, now: now).reduce(0) { $0 + $1.confidence } }
        let elapsed = ContinuousClock.now - started
        precondition(sink >= 0)
        return Result(targets: targets, perTarget: elapsed / targets)
    }

    static func history(_ rng: inout SplitMix64, now: Date) -> MetricHistory {
        let phase = rng.uniform(0, 24)
        func series(weeks: Int = 1, _ value: (Double) -> Double) -> [MetricPoint] {
            let points = weeks * 168 * 12
            return (0..<points).map { i in
                let time = now.addingTimeInterval(Double(i - points) * 300)
                return MetricPoint(time: time, value: value(sin(2 * .pi * (Double(i) / 12 - phase) / 24)))
            }
        }
        let base = rng.uniform(1e6, 5e7)
        return MetricHistory([
            .cpu: series(weeks: 2) { d in max(0, 20 + 8 * d + 3 * rng.normal()) },
            .networkIn: series(weeks: 2) { d in base * (1 + 0.5 * d) * exp(0.2 * rng.normal()) },
            .networkOut: series(weeks: 2) { d in 2 * base * (1 + 0.5 * d) * exp(0.2 * rng.normal()) },
            .statusCheckFailed: series { _ in 0 },
            .cpuCreditBalance: series { d in 300 + 10 * d + rng.normal() },
            .memory: series { d in 60 + 2 * d + rng.normal() },
            .disk: series { _ in 70 + 0.2 * rng.normal() },
        ])
    }
}
