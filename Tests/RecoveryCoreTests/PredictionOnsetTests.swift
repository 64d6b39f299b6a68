import Foundation
import PredictionBacktest
import RecoveryCore
import Testing

/// The onset detector behind cpu_anomaly and network_anomaly, on 5-minute series (docs/prediction.md).
@Suite("Predictor onsets")
struct PredictionOnsetTests {
    let predictor = Predictor()
    static let origin = Date(timeIntervalSince1970: 1_767_571_200)
    static func at(hour: Int) -> Date { origin.addingTimeInterval(Double(hour) * 3600) }

    /// 5-minute points for `hours` hours from the origin.
    static func series(hours: Int, _ value: (Int) -> Double) -> [MetricPoint] {
        (0..<(hours * 12)).map { MetricPoint(time: origin.addingTimeInterval(Double($0) * 300), value: value($0)) }
    }

    func confidence(_ kind: PredictionKind, _ history: MetricHistory, hour: Int) -> Double {
        let now = Self.at(hour: hour)
        var seen = MetricHistory()
        for (metric, points) in history.series { seen[metric] = points.filter { $0.time < now } }
        return predictor.predict(seen, now: now).first { $0.kind == kind }?.confidence ?? 0
    }

    @Test("a lasting level shift alarms once, in its first hour; its return to normal does not alarm")
    func levelShiftIsAnOnset() {
        var rng = SplitMix64(seed: 11)
        // 20 % for a week, 60 % from hour 168 to 198, then 20 % again.
        let cpu = Self.series(hours: 210) { i in ((168 * 12)..<(198 * 12)).contains(i) ? 60 : 20 + 2 * rng.normal() }
        let history = MetricHistory([.cpu: cpu])
        #expect(confidence(.cpuAnomaly, history, hour: 169) >= 0.8, "the first hour at the new level")
        let later = (170...198).map { confidence(.cpuAnomaly, history, hour: $0) }
        #expect(later.allSatisfy { $0 < 0.8 }, "not again while it lasts: \(later)")
        let after = (199...209).map { confidence(.cpuAnomaly, history, hour: $0) }
        #expect(after.allSatisfy { $0 < 0.8 }, "nor on the way back: \(after)")
    }

    @Test("a CPU that falls to nothing and stays there is an anomaly; one quiet 5-minute point is not")
    func cpuFalls() throws {
        var rng = SplitMix64(seed: 12)
        let fall = MetricHistory([.cpu: Self.series(hours: 170) { i in i >= 168 * 12 ? 1 : 40 + 3 * rng.normal() }])
        #expect(confidence(.cpuAnomaly, fall, hour: 169) >= 0.8)
        let now = Self.at(hour: 169)
        let p = try #require(predictor.predict(fall, now: now).first { $0.kind == .cpuAnomaly })
        #expect(p.factors.first { $0.name == "rising" }?.value == 0)
        let dip = MetricHistory([.cpu: Self.series(hours: 170) { i in i == 168 * 12 + 5 ? 1 : 40 + 3 * rng.normal() }])
        #expect(confidence(.cpuAnomaly, dip, hour: 169) < 0.5)
    }

    @Test("a 10-minute burst to 95 % is seen at 5-minute resolution (its hourly mean stays near 32 %)")
    func shortBurst() {
        var rng = SplitMix64(seed: 13)
        let cpu = Self.series(hours: 170) { i in [168 * 12 + 3, 168 * 12 + 4].contains(i) ? 95 : 20 + 3 * rng.normal() }
        #expect(confidence(.cpuAnomaly, MetricHistory([.cpu: cpu]), hour: 169) >= 0.8)
    }

    @Test("a near-idle host: recurring bursts of a few MB and a skipped nightly transfer are not anomalies")
    func idleHost() {
        var rng = SplitMix64(seed: 14)
        // About 20 kB per 5 minutes, a 2–4 MB burst every 6 hours, and a 3 MB nightly transfer at 02:00
        // that is skipped on the last night.
        let inbound = Self.series(hours: 200) { i in
            let hour = i / 12
            if i % 72 == 7 { return rng.uniform(2e6, 4e6) }
            if hour % 24 == 2 && hour < 194 { return 3e6 * exp(0.1 * rng.normal()) }
            return 2e4 * exp(0.3 * rng.normal())
        }
        let history = MetricHistory([.networkIn: inbound])
        let loud = (170...200).map { confidence(.networkAnomaly, history, hour: $0) }.filter { $0 >= 0.8 }
        #expect(loud.isEmpty, "\(loud)")
    }

    @Test("a new target is not judged until a day of history: it says so instead of predicting")
    func coldStart() {
        let cpu = Self.series(hours: 20) { i in i == 20 * 12 - 1 ? 99 : 10 }
        let history = MetricHistory([.cpu: cpu])
        let now = Self.at(hour: 20)
        #expect(predictor.predict(history, now: now).isEmpty)
        #expect(predictor.notYetJudged(history, now: now) == [.cpu])
        let week = MetricHistory([.cpu: Self.series(hours: 168) { _ in 10 }])
        #expect(predictor.notYetJudged(week, now: Self.at(hour: 168)).isEmpty)
    }

    @Test("trend metrics at 5-minute resolution give the same forecast as their hourly points")
    func fiveMinuteTrends() throws {
        // Disk filling 0.5 points per hour from 40 %, as 5-minute points and as hourly maxima.
        let fine = Self.series(hours: 168) { i in 40 + 0.5 * Double(i) / 12 }
        let hourly = (0..<168).map { h in MetricPoint(time: Self.at(hour: h), value: 40 + 0.5 * (Double(h) + 11 / 12)) }
        let now = Self.at(hour: 168)
        let a = try #require(predictor.predict(MetricHistory([.disk: fine]), now: now).first)
        let b = try #require(predictor.predict(MetricHistory([.disk: hourly]), now: now).first)
        #expect(a.kind == .diskExhaustion && a.confidence == b.confidence)
        #expect(
            a.factors.first { $0.name == "time_to_exhaustion_hours" }
                == b.factors.first { $0.name == "time_to_exhaustion_hours" })
    }

    @Test("a slow decline past every dip of the week is seen by the day's level, which a one-hour level misses")
    func slowDecline() {
        var rng = SplitMix64(seed: 15)
        // 60 % with a one-hour dip to 35 % every 23 hours (no hour of day of its own); from hour 168 a fall
        // of 1.5 points an hour.
        let cpu = Self.series(hours: 200) { i in
            let hour = i / 12
            if hour >= 168 { return 60 - 1.5 * Double(i - 168 * 12) / 12 + rng.normal() }
            return hour % 23 == 3 ? 35 + rng.normal() : 60 + 2 * rng.normal()
        }
        let history = MetricHistory([.cpu: cpu])
        let hours = 169...199
        let full = hours.map { confidence(.cpuAnomaly, history, hour: $0) }
        #expect(full.contains { $0 >= 0.8 }, "the day's level sees it: \(full)")
        var configuration = Predictor.Configuration()
        configuration.anomaly.levelHours = [1]
        let oneHour = Predictor(configuration: configuration)
        let short = hours.map { hour -> Double in
            let now = Self.at(hour: hour)
            return oneHour.predict(MetricHistory([.cpu: cpu.filter { $0.time < now }]), now: now).first?.confidence ?? 0
        }
        #expect(short.allSatisfy { $0 < 0.8 }, "each hour is only a little past the last: \(short)")
    }

    @Test("spikes that come more often, none higher than before, are seen by their rate")
    func denserSpikes() {
        var rng = SplitMix64(seed: 16)
        // 20 % with a 5-minute spike to 80 % every 8 hours; in hour 168, four of them.
        func cpu(_ spikesInHour168: Int) -> MetricHistory {
            MetricHistory([
                .cpu: Self.series(hours: 170) { i in
                    let spike = i / 12 == 168 ? i % 12 < spikesInHour168 * 3 && i % 3 == 0 : i % 96 == 40
                    return spike ? 80 : 20 + rng.normal()
                }
            ])
        }
        #expect(confidence(.cpuAnomaly, cpu(4), hour: 169) >= 0.8)
        #expect(confidence(.cpuAnomaly, cpu(1), hour: 169) < 0.5, "one spike, as usual")
        var configuration = Predictor.Configuration()
        configuration.anomaly.rateMinimum = .infinity
        let now = Self.at(hour: 169)
        let withoutRate = Predictor(configuration: configuration).predict(
            MetricHistory([.cpu: cpu(4)[.cpu].filter { $0.time < now }]), now: now)
        #expect((withoutRate.first?.confidence ?? 0) < 0.5, "no point is higher than the week's")
    }

    @Test("a collapse in a host's busy hours counts even while its bytes stay above the week's median")
    func busyHourCollapse() {
        var rng = SplitMix64(seed: 17)
        // 100 MB per 5 minutes from 12:00 to 18:00, 2 MB otherwise (the week's median); at 12:00 on day 7
        // the busy hour carries 8 MB: 4 times the median, 8 % of what that hour always carries.
        let network = Self.series(hours: 182) { i in
            let hour = i / 12
            let busy = (12..<18).contains(hour % 24)
            let usual = busy ? 100e6 : 2e6
            return (hour == 180 ? 8e6 : usual) * exp(0.1 * rng.normal())
        }
        let history = MetricHistory([.networkIn: network])
        #expect(confidence(.networkAnomaly, history, hour: 181) >= 0.8)
        #expect(confidence(.networkAnomaly, history, hour: 180) < 0.5, "the hours before were as usual")
    }
}
