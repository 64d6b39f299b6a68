// The prediction harness on NAB's labelled series (docs/prediction.md, "Real labelled series"): every
// file replayed hour by hour through the real Predictor and the decision's alarm rules, scored with
// NAB's standard profile beside the published detectors. scripts/backtest.sh nab runs it.
import Foundation
import PredictionBacktest
import RecoveryCore

var folder = "Benchmarks/nab"
var threshold = 0.8
var only: [String] = []
var perFile = false
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    if flag == "--per-file" {
        perFile = true
        continue
    }
    guard let value = arguments.popFirst() else { fatalError("\(flag) needs a value") }
    switch flag {
    case "--data": folder = value
    case "--threshold": threshold = Double(value) ?? threshold
    case "--only": only.append(value)
    default: fatalError("unknown option \(flag); use --data DIR --threshold X --only NAME --per-file")
    }
}

let started = ContinuousClock.now
let corpus = try NABCorpus.load(from: URL(fileURLWithPath: folder), only: only)
let report = NABReport.run(corpus) { _ in
    var replay = NABReplay()
    replay.threshold = threshold
    return replay
}
let elapsed = ContinuousClock.now - started
let detectors = ["numenta", "ARTime", "knncad", "twitterADVec", "windowedGaussian", "random", "null"]
print(
    "prediction harness: \(corpus.series.count) NAB files from \(folder), \(report.evaluations) hourly evaluations, threshold \(threshold), \(elapsed)"
)
print(report.table(modelName: "\(PredictionBody.modelName), confidence ≥ \(threshold)", detectors: detectors))
if perFile { print(report.perFile(detectors: detectors)) }
