import Foundation
import PredictionBacktest
import RecoveryCore
import Testing

/// The predictor on generated series (docs/prediction.md).
@Suite("Predictor")
struct PredictorTests {
    let predictor = Predictor()
    /// A whole UTC hour (midnight), so hour of day is hour index mod 24.
    static let origin = Date(timeIntervalSince1970: 1_767_571_200)

    /// 168 hourly points ending at the hour before `now` (= origin + 168 h).
    static func series(_ value: (Int) -> Double) -> [MetricPoint] {
        (0..<168).map { MetricPoint(time: origin.addingTimeInterval(Double($0) * 3600), value: value($0)) }
    }
    static let now = origin.addingTimeInterval(168 * 3600)

    func prediction(_ kind: PredictionKind, _ history: MetricHistory) -> Prediction? {
        predictor.predict(history, now: Self.now).first { $0.kind == kind }
    }

    @Test("a filling disk: high confidence, time to exhaustion within 10 % of the truth, window around it")
    func diskFilling() throws {
        var rng = SplitMix64(seed: 1)
        // Flat at 40 % for 96 h, then +0.5 %/h: at hour 167 it is 75.5 %, full 49 hours later.
        let history = MetricHistory([.disk: Self.series { h in 40 + 0.5 * Double(max(0, h - 96)) + 0.5 * rng.normal() }]
        )
        let p = try #require(prediction(.diskExhaustion, history))
        #expect(p.confidence >= 0.8)
        let tte = try #require(p.factors.first { $0.name == "time_to_exhaustion_hours" }?.value)
        let truth = (100 - 76.0) / 0.5  // from the end of hour 167 (now)
        #expect(abs(tte - truth) <= truth * 0.1, "TTE \(tte) h vs \(truth) h")
        let expected = Self.now.addingTimeInterval(truth * 3600)
        #expect(p.window.from <= expected && expected <= p.window.to, "window \(p.window) holds the true time")
        #expect(p.window.to.timeIntervalSince(p.window.from) < 24 * 3600, "and is not wide open")
    }

    @Test("a slow drift on an empty disk is not an alarm; neither is a full disk that does not grow")
    func emptyDiskDriftAndFlatFullDisk() {
        var rng = SplitMix64(seed: 2)
        let drift = MetricHistory([.disk: Self.series { h in 8 + 0.06 * Double(h) + 0.2 * rng.normal() }])
        #expect((prediction(.diskExhaustion, drift)?.confidence ?? 0) < 0.2)
        let flat = MetricHistory([.disk: Self.series { _ in 88 + 0.3 * rng.normal() }])
        #expect((prediction(.diskExhaustion, flat)?.confidence ?? 0) < 0.2)
    }

    @Test("a memory leak since the last restart is seen; a nightly-restart sawtooth is not an alarm")
    func memoryLeakAndSawtooth() throws {
        var rng = SplitMix64(seed: 3)
        // Restarted at hour 100 (from 85 % back to 45 %), leaking 0.6 %/h since.
        let leak = MetricHistory([
            .memory: Self.series { h in
                (h < 100 ? 85 : 45 + 0.6 * Double(h - 100)) + rng.normal()
            }
        ])
        let p = try #require(prediction(.memoryExhaustion, leak))
        #expect(p.confidence >= 0.8)
        #expect(p.factors.first { $0.name == "slope_per_hour" }.map { abs($0.value - 0.6) < 0.1 } == true)
        let sawtooth = MetricHistory([.memory: Self.series { h in 35 + 40 * Double(h % 24) / 23 + rng.normal() }])
        #expect((prediction(.memoryExhaustion, sawtooth)?.confidence ?? 0) < 0.5)
    }

    @Test("a CPU spike normal for its hour is not an anomaly; the same spike at another hour is")
    func seasonalCPU() throws {
        var rng = SplitMix64(seed: 4)
        // A batch job at 02:00 every night: ~95 % for that hour, ~20 % otherwise.
        func cpu(extra: Int?) -> MetricHistory {
            MetricHistory([
                .cpu: Self.series { h in
                    (h % 24 == 2 || h == extra ? 95 : 20) + 2 * rng.normal()
                }
            ])
        }
        // Now is 00:00 on day 8; the last point (hour 167) is 23:00. Put the batch spike there instead:
        let normal = MetricHistory([.cpu: Self.series { h in (h % 24 == 23 ? 95 : 20) + 2 * rng.normal() }])
        #expect((prediction(.cpuAnomaly, normal)?.confidence ?? 0) < 0.1, "23:00 is always busy")
        let offHour = cpu(extra: 167)
        let p = try #require(prediction(.cpuAnomaly, offHour))
        #expect(p.confidence >= 0.8, "95 % at 23:00, where it is usually 20 %")
        // Judged against its hour of day: the value is the residual from 23:00's usual, about 20 %.
        #expect(p.factors.first { $0.name == "seasonal" }?.value == 1)
        let point = try #require(offHour[.cpu].last?.value)
        let residual = try #require(p.factors.first { $0.name == "value" }?.value)
        #expect(abs(point - residual - 20) < 3, "23:00's usual \(point - residual) %")
    }

    @Test("network: a backup's nightly surge is normal; a collapse to nothing is an anomaly")
    func seasonalNetwork() throws {
        var rng = SplitMix64(seed: 5)
        let nightly = MetricHistory([
            .networkOut: Self.series { h in (h % 24 == 23 ? 8e8 : 1e8) * exp(0.1 * rng.normal()) }
        ])
        #expect((prediction(.networkAnomaly, nightly)?.confidence ?? 0) < 0.1)
        let collapse = MetricHistory([.networkIn: Self.series { h in (h == 167 ? 1e6 : 5e7) * exp(0.1 * rng.normal()) }]
        )
        let p = try #require(prediction(.networkAnomaly, collapse))
        #expect(p.confidence >= 0.8)
    }

    @Test("flapping status checks are detected; one isolated failure is not")
    func flapping() throws {
        let flapping = MetricHistory([
            .statusCheckFailed: Self.series { h in [120, 131, 140, 152, 160].contains(h) ? 1 : 0 }
        ])
        let p = try #require(prediction(.statusCheckRecurrence, flapping))
        #expect(p.confidence >= 0.8)
        #expect(p.factors.first { $0.name == "episodes" }?.value == 5)
        #expect(p.window.from >= Self.now)
        let once = MetricHistory([.statusCheckFailed: Self.series { h in h == 160 ? 1 : 0 }])
        #expect(prediction(.statusCheckRecurrence, once) == nil)
    }

    @Test("a CPU credit balance running to zero is predicted")
    func credits() throws {
        var rng = SplitMix64(seed: 6)
        let falling = MetricHistory([
            .cpuCreditBalance: Self.series { h in max(0, 300 - 1.5 * Double(h) + 2 * rng.normal()) }
        ])
        let p = try #require(prediction(.cpuCreditExhaustion, falling))
        #expect(p.confidence >= 0.8)
        let tte = try #require(p.factors.first { $0.name == "time_to_exhaustion_hours" }?.value)
        #expect(abs(tte - 32) < 4, "300 − 1.5·168 = 48 credits left at 1.5 per hour: 32 hours")
    }

    @Test("healthy noise on every metric gives no prediction above 0.5")
    func healthyNoise() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<20 {
            let history = MetricHistory([
                .cpu: Self.series { h in 25 + 10 * sin(Double(h % 24) / 24 * 2 * .pi) + 2.5 * rng.normal() },
                .networkIn: Self.series { h in
                    3e7 * (1 + 0.5 * sin(Double(h % 24) / 24 * 2 * .pi)) * exp(0.12 * rng.normal())
                },
                .networkOut: Self.series { _ in 6e7 * exp(0.12 * rng.normal()) },
                .statusCheckFailed: Self.series { _ in 0 },
                .cpuCreditBalance: Self.series { h in 400 + 10 * sin(Double(h % 24) / 24 * 2 * .pi) + rng.normal() },
                .memory: Self.series { _ in 55 + rng.normal() },
                .disk: Self.series { _ in 65 + 0.2 * rng.normal() },
            ])
            let loud = predictor.predict(history, now: Self.now).filter { $0.confidence >= 0.5 }
            #expect(loud.isEmpty, "\(loud.map { "\($0.kind) \($0.confidence)" })")
        }
    }

    @Test("stale or missing data predicts nothing")
    func staleData() {
        let old = MetricHistory([.disk: Self.series { h in 50 + 0.5 * Double(h) / 4 }])
        #expect(predictor.predict(old, now: Self.now.addingTimeInterval(6 * 3600)).isEmpty)
        #expect(predictor.predict(MetricHistory(), now: Self.now).isEmpty)
    }

    @Test("the selection median equals the sorted one (odd, even, ties, sorted input)")
    func selectionMedian() {
        var rng = SplitMix64(seed: 8)
        for n in [1, 2, 3, 4, 5, 12, 13, 200, 201] {
            for ties in [false, true] {
                var values = (0..<n).map { _ in ties ? Double(rng.int(0, 3)) : rng.normal() }
                let sorted = values.sorted()
                let expected = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
                #expect(RobustStatistics.median(values) == expected, "n \(n) ties \(ties)")
                values.sort()
                #expect(RobustStatistics.median(values) == expected, "sorted, n \(n) ties \(ties)")
            }
        }
        #expect(abs(RobustStatistics.normalRecord(count: 1) - 0) < 1e-3)
        #expect(abs(RobustStatistics.normalRecord(count: 999) - 3.09) < 1e-3)
    }

    @Test("Theil–Sen ignores outliers that would drag least squares")
    func theilSenIsRobust() throws {
        let hours = (0..<50).map(Double.init)
        var values = hours.map { 10 + 2 * $0 }
        values[10] = 500
        values[40] = -300
        let t = try #require(RobustStatistics.theilSen(hours: hours, values: values))
        #expect(abs(t.slope - 2) < 1e-9)
        #expect(abs(t.level - 10) < 1e-9)
        #expect(t.slopeLow <= 2 && 2 <= t.slopeHigh)
        #expect(t.tau > 0.8)
    }
}

/// The message body: numbers as plain decimals that read back equal.
@Suite("Prediction body")
struct PredictionBodyTests {
    @Test func plainNumbersAndKeys() throws {
        let now = Date(timeIntervalSince1970: 1_767_571_200)
        let prediction = Prediction(
            kind: .diskExhaustion, confidence: 0.876543, metric: .disk, detail: "d",
            factors: [
                PredictionFactor("tiny", 0.000012, ""), PredictionFactor("huge", 3.2e18, ""),
                PredictionFactor("third", 1.0 / 3, ""),
                PredictionFactor("nan", .nan, ""), PredictionFactor("inf", -.infinity, ""),
            ],
            window: PredictionWindow(from: now, to: now.addingTimeInterval(3600)), evaluatedAt: now)
        let body = PredictionBody(prediction, highConfidenceThreshold: 0.8, lookbackHours: 168)
        let text = String(decoding: try Timestamp.jsonEncoder().encode(body), as: UTF8.self)
        #expect(!text.contains("e-") && !text.contains("e+") && !text.contains("E"), "\(text)")
        #expect(text.contains(#""confidence":0.877"#))
        #expect(text.contains(#""high_confidence":true"#))
        #expect(text.contains(#""repair":"ssm:disk-cleanup""#))
        #expect(text.contains(#""value":0.3333"#))
        #expect(
            text.contains(#""name":"tiny","value":0}"#) && text.contains(#""name":"nan","value":0}"#),
            "NaN and tiny become 0")
        #expect(text.contains(#""value":1000000000000000"#), "clamped below 10^15")
        #expect(text.contains(#""window":{"from":"2026-01-05T00:00:00.000Z","to":"2026-01-05T01:00:00.000Z"}"#))
        let back = try Timestamp.jsonDecoder().decode(PredictionBody.self, from: Data(text.utf8))
        #expect(back == body)
    }
}

/// The backtest on a small fixed-seed set, so the model cannot silently get worse. The figures it must
/// keep are the ones it reached (docs/prediction.md), less 0.02.
@Suite("Predictor backtest")
struct PredictorBacktestTests {
    @Test func holdsItsFigures() async throws {
        let report = try await offThePool { Backtest().run(ScenarioGenerator.generate(seed: 7, perShape: 2)) }
        #expect(report.precision >= Reached.precision - 0.02, "\(report.table)")
        #expect(report.recall >= Reached.recall - 0.02, "\(report.table)")
        for kind in PredictionKind.allCases {
            let k = report[kind]
            #expect((k.precision ?? 1) >= (Reached.perKind[kind]?.precision ?? 1) - 0.02, "\(kind)\n\(report.table)")
            #expect((k.recall ?? 1) >= (Reached.perKind[kind]?.recall ?? 1) - 0.02, "\(kind)\n\(report.table)")
        }
        #expect((report.medianLead ?? 0) >= Reached.medianLead - 2, "\(report.table)")
    }

    /// The worker reads the slow series every sixth hour while nothing stirs (PredictionCadence): on the
    /// same scenarios every alarm of a slow kind comes in the same hour as when they are read every
    /// hour, and fewer series are read.
    @Test func cadenceLosesNoLeadTime() async throws {
        // The slow kinds' shapes and the healthy ones (the anomaly shapes read their series every hour
        // either way). On the full backtest set (seed 20260105, 40 per shape) this held too when written.
        // Without their fast series: the slow kinds (and whether a target stirs) never read them, and
        // judging two weeks of anomalies at every hour would only cost time.
        let scenarios = ScenarioGenerator.generate(seed: 7, perShape: 3).filter {
            $0.shape.label.map(PredictionCadence.slowKinds.contains) ?? true
        }.map { scenario in
            var slowOnly = scenario
            for metric in [PredictorMetric.cpu, .networkIn, .networkOut] { slowOnly.values[metric] = nil }
            return slowOnly
        }
        let hourly = Backtest(cadence: PredictionCadence(slowEvery: 1))
        let deployed = Backtest()
        #expect(deployed.cadence.slowEvery == 6)
        let (same, read) = try await offThePool {
            var same = true
            var read = (hourly: 0, deployed: 0)
            for scenario in scenarios {
                let a = hourly.firstAlarms(scenario)
                let b = deployed.firstAlarms(scenario)
                read.hourly += a.seriesRead
                read.deployed += b.seriesRead
                for kind in PredictionCadence.slowKinds where a.alarms[kind] != b.alarms[kind] {
                    print(
                        "\(scenario.shape.rawValue) #\(scenario.index) \(kind): \(String(describing: a.alarms[kind])) → \(String(describing: b.alarms[kind]))"
                    )
                    same = false
                }
            }
            return (same, read)
        }
        #expect(same, "every slow kind's alarm in the same hour")
        #expect(Double(read.deployed) < 0.75 * Double(read.hourly), "\(read)")
    }

    /// What the model reached on this set (seed 7, 2 per shape) when this test was written (the onset
    /// model with its noise floor, docs/prediction.md; the seasonal-z model before it: precision 1.000,
    /// recall 0.929, one of the two off-hour CPU spikes, a 70 % peak, missed).
    enum Reached {
        static let precision = 1.0
        static let recall = 1.0
        static let medianLead = 21.5
        /// Kinds below 1.0 (none: every kind reached 1.0).
        static let perKind: [PredictionKind: (precision: Double, recall: Double)] = [:]
    }
}
