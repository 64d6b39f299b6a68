import Foundation
import RecoveryCore
import Testing

/// When a scheduled prediction reads the slow series (docs/prediction.md, "Cadence and cost").
@Suite("Prediction cadence")
struct PredictionCadenceTests {
    typealias Read = PredictionCadence.SlowRead
    let cadence = PredictionCadence(slowEvery: 6)

    @Test(
        "no record reads; a quiet read waits slowEvery slots; a stirring one reads next slot; a clock gone back reads")
    func readsSlow() {
        #expect(cadence.readsSlow(in: 100, last: nil))
        #expect(!cadence.readsSlow(in: 101, last: Read(slot: 100, stirring: false)))
        #expect(!cadence.readsSlow(in: 105, last: Read(slot: 100, stirring: false)))
        #expect(cadence.readsSlow(in: 106, last: Read(slot: 100, stirring: false)))
        #expect(cadence.readsSlow(in: 101, last: Read(slot: 100, stirring: true)))
        #expect(cadence.readsSlow(in: 99, last: Read(slot: 100, stirring: false)))
        #expect(PredictionCadence(slowEvery: 1).readsSlow(in: 101, last: Read(slot: 100, stirring: false)))
        #expect(PredictionCadence(slowEvery: 0).slowEvery == 1, "never less than every slot")
    }

    @Test("the series read: the three fast series always, the four slow series when due")
    func metrics() {
        #expect(Set(cadence.metrics(readingSlow: true)) == Set(PredictorMetric.allCases))
        #expect(Set(cadence.metrics(readingSlow: false)) == [.cpu, .networkIn, .networkOut])
    }

    @Test("the stored record: slot and mark round-trip; anything else is no record")
    func text() {
        for read in [
            Read(slot: 491_234, stirring: true), Read(slot: 0, stirring: false), Read(slot: -3, stirring: true),
        ] {
            #expect(Read(text: read.text) == read)
        }
        #expect(Read(slot: 7, stirring: true).text == "7+")
        for bad in ["", "+", "7", "7*", "x+", "7 +", "99999999999999999999-"] {
            #expect(Read(text: bad) == nil, "\(bad)")
        }
    }

    @Test("stirring: a slow kind above zero, or a failed status check within the last day; anomalies never")
    func stirring() {
        let none = MetricHistory()
        func prediction(_ kind: PredictionKind, _ confidence: Double) -> Prediction {
            Prediction(
                kind: kind, confidence: confidence, metric: .disk, detail: "", factors: [],
                window: PredictionWindow(from: Date(), to: Date()), evaluatedAt: Date())
        }
        #expect(PredictionCadence.stirring([prediction(.diskExhaustion, 0.01)], history: none))
        #expect(PredictionCadence.stirring([prediction(.cpuCreditExhaustion, 0.3)], history: none))
        #expect(PredictionCadence.stirring([prediction(.statusCheckRecurrence, 0.5)], history: none))
        #expect(
            PredictionCadence.stirring([prediction(.cpuAnomaly, 1), prediction(.memoryExhaustion, 0.2)], history: none))
        #expect(!PredictionCadence.stirring([prediction(.memoryExhaustion, 0)], history: none))
        #expect(
            !PredictionCadence.stirring([prediction(.cpuAnomaly, 1), prediction(.networkAnomaly, 0.9)], history: none))
        #expect(!PredictionCadence.stirring([], history: none))
        // One failed status check is no prediction yet (it takes two episodes) but is a stir.
        let at = Date(timeIntervalSince1970: 1_800_000_000)
        var status = MetricHistory()
        status[.statusCheckFailed] = [MetricPoint(time: at, value: 0), MetricPoint(time: at + 3600, value: 0)]
        #expect(!PredictionCadence.stirring([], history: status))
        status[.statusCheckFailed].append(MetricPoint(time: at + 7200, value: 1))
        #expect(PredictionCadence.stirring([], history: status))
        // A day later (passing since) it no longer stirs.
        status[.statusCheckFailed].append(MetricPoint(time: at + 7200 + 24 * 3600, value: 0))
        #expect(!PredictionCadence.stirring([], history: status))
    }
}
