// The prediction harness on NAB's labelled series (docs/prediction.md, "Real labelled series"): every
// file replayed hour by hour through the real Predictor and the decision's alarm rules, scored with
// NAB's standard profile beside the published detectors. scripts/backtest.sh nab runs it.
import Foundation
import PredictionBacktest
import RecoveryCore

var folder = "Benchmarks/nab"
var threshold = 0.8
var only: [String] = []
var base = Predictor.Configuration()
var perFile = false
var alarms = false
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    if flag == "--per-file" || flag == "--alarms" {
        perFile = true
        alarms = alarms || flag == "--alarms"
        continue
    }
    guard let value = arguments.popFirst() else { fatalError("\(flag) needs a value") }
    switch flag {
    case "--data": folder = value
    case "--threshold": threshold = Double(value) ?? threshold
    case "--only": only.append(value)
    case "--set":
        let parts = value.split(separator: "=").map(String.init)
        guard parts.count == 2, let v = Double(parts[1]) else { fatalError("--set name=value") }
        switch parts[0] {
        case "recentHours": base.anomaly.recentHours = Int(v)
        case "minReferenceHours": base.anomaly.minReferenceHours = v
        case "fullReferenceHours": base.anomaly.fullReferenceHours = v
        case "seasonalGain": base.anomaly.seasonalGain = v
        case "excessFull": base.anomaly.excessFull = v
        case "rearmBelow": base.anomaly.rearmBelow = v
        default: fatalError("unknown setting \(parts[0])")
        }
    default: fatalError("unknown option \(flag); use --data DIR --threshold X --only NAME --per-file")
    }
}

let started = ContinuousClock.now
let corpus = try NABCorpus.load(from: URL(fileURLWithPath: folder), only: only)
let report = NABReport.run(corpus) { series in
    var replay = NABReplay(
        predictor: Predictor(configuration: NABReport.configuration(for: series.name, base: base)))
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
if alarms {
    for f in report.files {
        print("== \(f.series.name)")
        let fmt = ISO8601DateFormatter()
        for w in f.series.windows {
            print("   window \(fmt.string(from: Date(timeIntervalSince1970: f.series.times[w.lowerBound]))) – \(fmt.string(from: Date(timeIntervalSince1970: f.series.times[w.upperBound])))")
        }
        for a in f.run.alarms {
            let inside = f.series.windows.contains { $0.contains(a.row) }
            let probation = a.row < NABScorer.probation(rows: f.series.times.count)
            print("   \(inside ? "TP" : probation ? "pr" : "FP") \(fmt.string(from: Date(timeIntervalSince1970: a.time))) \(a.confidence) \(a.detail)")
        }
    }
}
if let trace = ProcessInfo.processInfo.environment["NAB_TRACE"] {
    // NAB_TRACE=<name part>,<from epoch>,<to epoch>: each evaluation's confidence of the file's kind.
    let p = trace.split(separator: ",").map(String.init)
    for f in report.files where f.series.name.contains(p[0]) {
        for c in f.run.confidences where c.time >= Double(p[1])! && c.time <= Double(p[2])! {
            print(Date(timeIntervalSince1970: c.time), c.confidence, f.series.values[c.row])
        }
    }
}
if ProcessInfo.processInfo.environment["SYN_DEBUG"] != nil {
    let predictor = Predictor(configuration: base)
    for s in ScenarioGenerator.generate(seed: 20_260_105, perShape: 6, shapes: [.healthyNoise]) {
        for hour in s.evalFrom..<s.evalTo {
            let ps = predictor.predict(s.history(through: hour), now: s.time(hour + 1)).filter { $0.confidence >= 0.8 }
            if let p = ps.first { print(s.index, hour, hour % 24, p.kind, p.confidence, p.detail); break }
        }
    }
}
if ProcessInfo.processInfo.environment["SYN_RUN"] != nil {
    let r = Backtest(predictor: Predictor(configuration: base)).run(ScenarioGenerator.generate(seed: 20_260_105, perShape: 10))
    print(r.table)
}
