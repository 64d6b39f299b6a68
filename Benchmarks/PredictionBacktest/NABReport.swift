import Foundation
import RecoveryCore

/// The harness's figures on a NAB set: the model's runs scored beside the published detectors on the
/// same files (docs/prediction.md, "Real labelled series").
public struct NABReport: Sendable {
    public struct FileResult: Sendable {
        public var series: NABSeries
        public var metric: PredictorMetric
        public var run: NABReplay.Run
        public var score: NABScorer.FileScore
    }

    public var files: [FileResult]
    public var published: [String: [String: NABPublishedScore]]

    /// The metric a file is fed as: CPU for a CPU series, NetworkOut / NetworkIn for network series, and
    /// NetworkIn (network's rules without its byte floors, see `Predictor.Configuration.unitFree`) for the
    /// rest, whose units are not the fleet's.
    public static func metric(for name: String) -> PredictorMetric {
        let lower = name.lowercased()
        if lower.contains("cpu") { return .cpu }
        if lower.contains("network_out") || lower.contains("networkout") { return .networkOut }
        return .networkIn
    }

    /// Whether a file is one of the fleet's own metrics (CPU, network); the others run with
    /// `AnomalyRules.unitFree` in the metric's place.
    public static func isFleetMetric(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.contains("cpu") || lower.contains("network")
    }

    /// The model configuration a file runs with: `base`, with unit-free rules for a series that is not
    /// one of the fleet's metrics.
    public static func configuration(for name: String, base: Predictor.Configuration) -> Predictor.Configuration {
        var c = base
        if !isFleetMetric(name) { c.anomaly.network = .unitFree }
        return c
    }

    public static func run(_ corpus: NABCorpus, replay: (NABSeries) -> NABReplay) -> NABReport {
        let files = corpus.series.map { series in
            let metric = metric(for: series.name)
            let run = replay(series).run(series, as: metric)
            return FileResult(
                series: series, metric: metric, run: run,
                score: NABScorer.score(series, flagged: run.alarms.map(\.row)))
        }
        return NABReport(files: files, published: corpus.published)
    }

    public var normalised: Double {
        NABScorer.normalised(raw: files.map(\.score.raw), series: files.map(\.series))
    }

    public var windowTable: NABWindowTable {
        var table = NABWindowTable()
        for f in files { table.add(f.series, f.score) }
        return table
    }

    public var evaluations: Int { files.reduce(0) { $0 + $1.run.evaluations } }

    /// A published detector's figures on the files of this report that it has scores for: normalised
    /// score, windows caught (bounds: the published files give scores and row counts, not detections),
    /// false alarms per 1,000 h, files.
    public func publishedRow(_ detector: String) -> (
        score: Double, caught: ClosedRange<Int>, falseAlarms: Double, files: Int
    )? {
        guard let scores = published[detector] else { return nil }
        let have = files.filter { scores[$0.series.name] != nil }
        guard !have.isEmpty else { return nil }
        var table = NABWindowTable()
        var low = 0
        var high = 0
        for f in have {
            let p = scores[f.series.name]!
            table.add(f.series, NABScorer.score(f.series, flagged: []))
            table.falseAlarms += p.fpRows
            let w = f.score.scoredWindows
            // S = Σ caught window scores (each in (0, 1]) − missed + FP costs (in [−0.11·FP, 0]).
            let atLeast = max(Int(((p.score + Double(w)) / 2 - 1e-9).rounded(.up)), p.tpRows > 0 ? 1 : 0)
            let below = p.score + Double(w) + 0.11 * Double(p.fpRows)
            let atMost = max(atLeast, min(w, p.tpRows, Int((below - 1e-9).rounded(.up)) - 1))
            low += atLeast
            high += atMost
        }
        let raw = have.map { scores[$0.series.name]!.score }
        return (
            NABScorer.normalised(raw: raw, series: have.map(\.series)), low...high, table.falseAlarmsPer1000Hours,
            have.count
        )
    }

    /// The Markdown table docs/prediction.md quotes.
    public func table(modelName: String, detectors: [String]) -> String {
        let t = windowTable
        func f1(_ v: Double) -> String { String(format: "%.1f", v) }
        var lines = [
            "| detector | standard score | windows caught | false alarms per 1,000 h | median delay from the label |",
            "|---|---|---|---|---|",
            "| \(modelName) | \(f1(normalised)) | \(t.caught) of \(t.windows) | \(f1(t.falseAlarmsPer1000Hours)) (\(t.falseAlarms)) | \(t.medianDelay.map { f1($0) + " h" } ?? "n/a") |",
        ]
        for d in detectors {
            guard let row = publishedRow(d) else { continue }
            let caught =
                row.caught.count == 1 ? "\(row.caught.lowerBound)" : "\(row.caught.lowerBound)–\(row.caught.upperBound)"
            let note = row.files == files.count ? "" : " (\(row.files) of \(files.count) files)"
            lines.append(
                "| \(d) (published)\(note) | \(f1(row.score)) | \(caught) of \(t.windows) | \(f1(row.falseAlarms)) | n/a |"
            )
        }
        return lines.joined(separator: "\n")
    }

    /// One line per file: raw score, windows caught, false alarms, and the published detectors' raw scores.
    public func perFile(detectors: [String]) -> String {
        var lines = ["file | fed as | raw | caught | FA | " + detectors.joined(separator: " | ")]
        for f in files {
            let pub = detectors.map { d in published[d]?[f.series.name].map { String(format: "%.2f", $0.score) } ?? "-"
            }
            lines.append(
                "\(f.series.name) | \(f.metric.rawValue) | \(String(format: "%.2f", f.score.raw)) | \(f.score.windowsCaught)/\(f.score.scoredWindows) | \(f.score.fpRows) | "
                    + pub.joined(separator: " | "))
        }
        return lines.joined(separator: "\n")
    }
}
