// The predictor's backtest (docs/prediction.md): labelled synthetic histories from a fixed seed,
// replayed hour by hour; prints precision, recall and lead time per kind. scripts/backtest.sh runs it.
import Foundation
import PredictionBacktest
import RecoveryCore

var seed: UInt64 = 20_260_105
var perShape = 40
var threshold = 0.8
var showFalseAlarms = false
var slowEvery: Int64 = PredictionCadence().slowEvery
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    if flag == "--false-alarms" {
        showFalseAlarms = true
        continue
    }
    if flag == "--cost" {
        // Only the cost of an hourly run (three rounds), for profiling and the docs.
        for _ in 0..<3 {
            let all = CostBenchmark.run(targets: 1000)
            let fast = CostBenchmark.run(targets: 1000, fastOnly: true)
            // A quiet target reads the slow series one slot in six (PREDICTION_SLOW_INTERVAL).
            let typical = (all.perTenThousand + fast.perTenThousand * 5) / 6
            print(
                "cost per hourly run over 10,000 targets: all 7 series \(all.perTenThousand), the 3 fast ones \(fast.perTenThousand), a quiet fleet's average slot \(typical)"
            )
        }
        exit(0)
    }
    guard let value = arguments.popFirst() else { fatalError("\(flag) needs a value") }
    switch flag {
    case "--seed": seed = UInt64(value) ?? seed
    case "--per-shape": perShape = Int(value) ?? perShape
    case "--threshold": threshold = Double(value) ?? threshold
    case "--slow-every": slowEvery = Int64(value) ?? slowEvery
    default:
        fatalError(
            "unknown option \(flag); use --seed N --per-shape N --threshold X --slow-every N --false-alarms, or --cost")
    }
}

let started = ContinuousClock.now
let scenarios = ScenarioGenerator.generate(seed: seed, perShape: perShape)
let backtest = Backtest(threshold: threshold, cadence: PredictionCadence(slowEvery: slowEvery))
let report = backtest.run(scenarios)
let elapsed = ContinuousClock.now - started
print(
    "prediction backtest: seed \(seed), \(perShape) scenarios per shape × \(Scenario.Shape.allCases.count) shapes = \(report.scenarios) histories, \(report.evaluations) hourly evaluations, threshold \(threshold), \(elapsed)"
)
print(report.table)
print(
    "series read per target and hour (slow series every \(slowEvery) h while quiet): \(String(format: "%.2f", Double(report.seriesRead) / Double(report.evaluations))) of 7"
)
print(
    "false alarms by shape: \(report.falseAlarmsByShape.isEmpty ? "none" : report.falseAlarmsByShape.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
)
let cost = CostBenchmark.run()
print(
    "cost: \(cost.perTarget) per target (5-minute points: two weeks of the 3 fast series, one of the 4 slow ones; mean of \(cost.targets)), so an hourly run over 10,000 targets takes \(cost.perTenThousand) of CPU"
)
if showFalseAlarms {
    // Each false alarm with what the model said, to judge whether it is a defect or a genuine oddity.
    for scenario in scenarios {
        for (kind, hour) in backtest.firstAlarms(scenario).alarms.sorted(by: { $0.value < $1.value })
        where kind != scenario.shape.label || !(scenario.validFrom..<scenario.validTo).contains(hour) {
            let p = backtest.predictor.predict(scenario.history(through: hour), now: scenario.time(hour + 1))
                .first { $0.kind == kind }
            print(
                "\(scenario.shape.rawValue) #\(scenario.index) hour \(hour): \(p.map { "\($0.confidence) \($0.detail)" } ?? "")"
            )
        }
    }
}
