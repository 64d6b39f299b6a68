import Foundation
import PredictionBacktest
import RecoveryCore
import Testing

/// The NAB harness (docs/prediction.md, "Real labelled series"): its scorer against NAB's published
/// per-file scores, and the model's figures on the copied series (Benchmarks/nab).
@Suite("Prediction on NAB series")
struct PredictionNABTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Benchmarks/nab")
    static let corpus = Result { try NABCorpus.load(from: folder) }

    @Test("the null detector scores what NAB published for it on every file; the perfect one scores 1 per window")
    func nullAndPerfect() throws {
        let corpus = try Self.corpus.get()
        #expect(corpus.series.count == 13)
        for s in corpus.series {
            let published = try #require(corpus.published["null"]?[s.name])
            #expect(NABScorer.null(s) == published.score, "\(s.name)")
            #expect(NABScorer.perfect(s) == Double(s.windows.count), "\(s.name)")
        }
        #expect(NABScorer.normalised(raw: corpus.series.map { NABScorer.perfect($0) }, series: corpus.series) == 100)
        #expect(NABScorer.normalised(raw: corpus.series.map { NABScorer.null($0) }, series: corpus.series) == 0)
    }

    @Test("NAB's rules: probation, the scaled sigmoid, false positives weighted after the previous window")
    func rules() throws {
        #expect(NABScorer.probation(rows: 4032) == 604)
        #expect(NABScorer.probation(rows: 22_695) == 750)
        #expect(abs(NABScorer.scaledSigmoid(0)) < 1e-12)
        #expect(NABScorer.scaledSigmoid(3.5) == -1)
        let times = (0..<1000).map { Double($0) * 300 }
        let s = NABSeries(name: "t", times: times, values: times.map { _ in 0 }, windows: [400...499])
        #expect(NABScorer.score(s, flagged: [100]).raw == -1, "flagged in probation: ignored")
        #expect(abs(NABScorer.score(s, flagged: [200]).raw - (-1.11)) < 1e-12, "before the first window")
        #expect(abs(NABScorer.score(s, flagged: [400]).raw - 1) < 1e-12, "the window's first row")
        let late = NABScorer.score(s, flagged: [499]).raw
        #expect(late > 0 && late < 0.05, "its last row is worth almost nothing: \(late)")
        let after = NABScorer.score(s, flagged: [400, 505]).raw
        #expect(after < 1 && after > 0.98, "just after a window a false positive costs little: \(after)")
        #expect(abs(NABScorer.score(s, flagged: [400, 900]).raw - 0.89) < 1e-12, "beyond 3 widths, the full 0.11")
    }

    /// windowedGaussian is deterministic, so its detections can be derived. Flagging at a score of
    /// 1 − 10⁻¹² (the published runs' tail probabilities evidently rounded to 1 earlier than this
    /// platform's erfc), the scorer gives its published raw scores on 12 of the 13 files to 10⁻⁶; on
    /// ec2_request_latency the published detections catch all three windows, ours none of the first
    /// two (unexplained; docs/prediction.md).
    @Test("the scorer reproduces windowedGaussian's published per-file scores")
    func reproducesPublishedScores() async throws {
        let corpus = try Self.corpus.get()
        for s in corpus.series { _ = try #require(corpus.published["windowedGaussian"]?[s.name]) }
        let matched = try await offThePool {
            corpus.series.filter { s in
                let flagged = WindowedGaussian.scores(s.values).enumerated().filter { $0.element >= 1 - 1e-12 }
                    .map(\.offset)
                return abs(
                    NABScorer.score(s, flagged: flagged).raw - corpus.published["windowedGaussian"]![s.name]!.score)
                    < 1e-6
            }.map(\.name)
        }
        #expect(matched.count == 12, "\(matched)")
        #expect(!matched.contains { $0.contains("ec2_request_latency") })
    }

    @Test("the model on the artificial NAB series holds its figures")
    func modelFigures() async throws {
        // The artificial files only: the 13 files are about 80 s of CPU in a debug build, which starves
        // the suite's timing-sensitive tests. The goal on all 13 (above the best published detector with
        // fewer false alarms) is checked by the release harness in CI: scripts/backtest.sh nab --check.
        let corpus = try NABCorpus.load(from: Self.folder, only: ["artificialWithAnomaly"])
        let report = try await offThePool {
            NABReport.run(corpus) { s in
                NABReplay(predictor: Predictor(configuration: NABReport.configuration(for: s.name, base: .init())))
            }
        }
        let table = report.windowTable
        let detail = report.perFile(detectors: [])
        // Reached when written (robust-onset-v4): 6 of 6 windows, 1 false alarm, score 91.6 (v3: 5, 1 and
        // 76.2; ARTime 70.3).
        #expect(table.caught == 6, "\(detail)")
        #expect(table.falseAlarms <= 1, "\(detail)")
        #expect(report.normalised >= 90, "\(detail)")
    }
}
