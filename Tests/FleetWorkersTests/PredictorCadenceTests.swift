import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import Synchronization
import Testing

/// The predictor's read cadence on memory drivers (docs/prediction.md, "Cadence and cost"): which series
/// each scheduled run asks CloudWatch for, since the bill is per series asked.
@Suite("Predictor cadence")
struct PredictorCadenceTests {
    static let topology = FleetTopology(prefix: "mem")

    static func target(_ name: String) -> Target {
        Target(
            identity: TargetIdentity(name: name, homeRegion: "us-east-1"),
            instance: InstanceRef(id: "i-0\(name)", region: "us-east-1"), instanceState: "running",
            healthURL: "https://\(name).example.com/health", settings: TargetSettings())
    }

    /// GetMetricData that keeps every query id asked, per request. A week of hourly points ending at the
    /// request's end: `filling` has a disk at 40 % for four days then +0.5 %/h, everything else is flat
    /// (status checks passing).
    final class RecordingMetrics: MetricDataReading {
        private let asked = Mutex<[[String]]>([])
        /// Each request's range, in hours.
        private let ranges = Mutex<[Double]>([])
        var hours: [Double] { ranges.withLock { $0 } }
        /// CloudWatch answers the quiet target's disk series with this status instead of `Complete`.
        let quietDiskStatus = Mutex("Complete")
        /// Requests over less than two weeks (the slow series) fail while set.
        let failSlow = Mutex(false)
        struct Throttled: Error {}
        var requests: [[String]] { asked.withLock { $0 } }

        func metricData(_ queries: [MetricDataQuery], start: Date, end: Date, region: String) async throws
            -> MetricDataResults
        {
            if failSlow.withLock({ $0 }) && end.timeIntervalSince(start) < 336 * 3600 { throw Throttled() }
            asked.withLock { $0.append(queries.map(\.id)) }
            ranges.withLock { $0.append(end.timeIntervalSince(start) / 3600) }
            return MetricDataResults(
                queries.map { query in
                    guard case .metric(let metric, _, _, _) = query.kind else { preconditionFailure("metrics only") }
                    let filling = metric.dimensions.first?.value == "i-0filling" && metric.name == "disk_used_percent"
                    let points = (0..<168).map { i -> (timestamp: Date, value: Double) in
                        let value =
                            filling
                            ? 40 + 0.5 * Double(max(0, i - 96))
                            : metric.name == "StatusCheckFailed" ? 0 : 30 + Double(i % 3) * 0.2
                        return (end.addingTimeInterval(-Double(167 - i) * 3600), value)
                    }
                    let quietDisk = metric.dimensions.first?.value == "i-0quiet" && metric.name == "disk_used_percent"
                    return MetricDataResult(
                        id: query.id, points: points,
                        statusCode: quietDisk ? quietDiskStatus.withLock { $0 } : "Complete")
                })
        }
    }

    /// A store whose reads fail (Redis answering writes but not reads is contrived; a failed read is not).
    struct UnreadableStore: KeyValueStore {
        let inner: MemoryKeyValueStore
        struct ReadFailed: Error {}
        func set(_ key: String, _ value: String, expiry: Duration?) async throws {
            try await inner.set(key, value, expiry: expiry)
        }
        func get(_ key: String) async throws -> String? {
            if key.hasPrefix("predict-slow:") { throw ReadFailed() }
            return try await inner.get(key)
        }
        func delete(_ key: String) async throws -> Bool { try await inner.delete(key) }
        func setIfAbsent(_ key: String, _ value: String, expiry: Duration?) async throws -> Bool {
            try await inner.setIfAbsent(key, value, expiry: expiry)
        }
    }

    struct Run {
        let clock = TestClock()
        let metrics = RecordingMetrics()
        let publisher = MemoryPublisher(
            broker: MemoryBroker(exchanges: [topology.exchange, topology.deadLetterExchange]), user: "fleet-predictor")
        let store: MemoryKeyValueStore

        init() {
            // Expiries judged on the test clock.
            let clock = clock
            let start = clock.now()
            let base = ContinuousClock.now
            store = MemoryKeyValueStore(now: {
                base + .milliseconds(Int64(clock.now().timeIntervalSince(start) * 1000))
            })
        }

        /// Runs `slots` hourly slots over the targets; per slot, the metric suffixes asked per target.
        func slots(_ slots: Int, targets: [String], claims: (any KeyValueStore)? = nil) async
            -> [[String: Set<String>]]
        {
            let worker = PredictorWorker(
                options: PredictorWorker.Options(workerId: "predictor-a"),
                discover: { targets.map(PredictorCadenceTests.target) }, cloudWatch: metrics,
                claims: claims ?? store, publisher: publisher, topology: PredictorCadenceTests.topology,
                logger: Logger(label: "predictor"), clock: clock.now)
            await worker.refreshTargetsForTests()
            var out: [[String: Set<String>]] = []
            for _ in 0..<slots {
                let before = metrics.requests.count
                let result = await worker.runDueSlots()
                #expect(result.failedTargets.isEmpty)
                // Query ids are t<index>_<metric>, index in the order of the request's targets: map back
                // through the instance each query names.
                var asked: [String: Set<String>] = [:]
                for ids in metrics.requests[before...] {
                    for id in ids {
                        let index = Int(id.dropFirst().prefix { $0 != "_" })!
                        asked[result.evaluated[index], default: []].insert(String(id.split(separator: "_")[1]))
                    }
                }
                out.append(asked)
                clock.advance(by: 3600)
            }
            return out
        }
    }

    static let fastSeries: Set<String> = ["cpu", "nin", "nout"]
    static let allSeries = fastSeries.union(["status", "credit", "mem", "disk"])

    @Test(
        "a quiet target's slow series are read every sixth slot, a stirring target's every slot, the fast series always"
    )
    func quietAndStirring() async throws {
        let run = Run()
        let slots = await run.slots(13, targets: ["quiet", "filling"])
        for (slot, asked) in slots.enumerated() {
            #expect(
                asked["filling"] == Self.allSeries, "slot \(slot): a stirring target's slow series are read every slot")
            let quietReadsSlow = slot % 6 == 0
            #expect(
                asked["quiet"] == (quietReadsSlow ? Self.allSeries : Self.fastSeries),
                "slot \(slot): \(asked["quiet"] ?? [])")
        }
        // The filling disk is predicted in every slot (its series is read every slot).
        let disk = try run.publisher.published.map {
            try EnvelopeCodec.decode($0.body, as: PredictionBody.self, expecting: .prediction)
        }
        .filter { $0.target == "filling" && $0.body.kind == .diskExhaustion }
        #expect(disk.count == 13)
        // 13 slots: 7 series for the stirring target, 3 + 4 every sixth slot for the quiet one.
        let asked = run.metrics.requests.reduce(0) { $0 + $1.count }
        #expect(asked == 13 * 7 + 13 * 3 + 3 * 4)
        // The fast series over two weeks (their hour-of-week pattern), the slow ones over the lookback.
        for (ids, hours) in zip(run.metrics.requests, run.metrics.hours) {
            let suffixes = Set(ids.map { String($0.split(separator: "_")[1]) })
            #expect(
                suffixes.isSubset(of: Self.fastSeries)
                    ? hours == 336 : hours == 168 && suffixes.isDisjoint(with: Self.fastSeries),
                "\(suffixes) over \(hours) h")
        }
    }

    @Test("at most targetsPerFetch targets are fetched and predicted together; every target is still predicted")
    func chunkedFetches() async throws {
        let run = Run()
        var options = PredictorWorker.Options(workerId: "predictor-a")
        options.targetsPerFetch = 2
        let names = ["a", "b", "c", "d", "e"]
        let worker = PredictorWorker(
            options: options, discover: { names.map(Self.target) }, cloudWatch: run.metrics, claims: run.store,
            publisher: run.publisher, topology: Self.topology, logger: Logger(label: "predictor"),
            clock: run.clock.now)
        let result = await worker.predict(names.map(Self.target), now: run.clock.now(), idPrefix: "chunks")
        #expect(Set(result.evaluated) == Set(names) && result.failedTargets.isEmpty)
        // Three chunks (2, 2, 1 targets), each one call for the fast series and one for the slow.
        #expect(run.metrics.requests.count == 6, "\(run.metrics.requests)")
        for ids in run.metrics.requests {
            let targets = Set(ids.map { $0.split(separator: "_")[0] })
            #expect(targets.count <= 2, "\(ids)")
        }
    }

    @Test("a failed call for the slow series loses no prediction of the fast ones, and they are read next slot")
    func failedSlowCall() async throws {
        let run = Run()
        run.metrics.failSlow.withLock { $0 = true }
        let first = await run.slots(1, targets: ["quiet"])
        #expect(first[0]["quiet"] == Self.fastSeries, "the fast series were answered: \(first)")
        run.metrics.failSlow.withLock { $0 = false }
        let next = await run.slots(1, targets: ["quiet"])
        #expect(next[0]["quiet"] == Self.allSeries, "the slow read did not count: read again next slot")
    }

    @Test("without a readable record of the last slow read, every slot reads the slow series (fail-safe)")
    func unreadableRecordReadsTrends() async throws {
        let run = Run()
        let slots = await run.slots(4, targets: ["quiet"], claims: UnreadableStore(inner: run.store))
        #expect(slots.allSatisfy { $0["quiet"] == Self.allSeries }, "\(slots)")
    }

    @Test("a slow read CloudWatch did not answer in full is not recorded: the next slot reads them again")
    func incompleteReadIsNotARead() async throws {
        let run = Run()
        run.metrics.quietDiskStatus.withLock { $0 = "InternalError" }
        let slots = await run.slots(3, targets: ["quiet"])
        #expect(slots.allSatisfy { $0["quiet"] == Self.allSeries }, "\(slots)")
        run.metrics.quietDiskStatus.withLock { $0 = "Complete" }
        let after = await run.slots(2, targets: ["quiet"])
        #expect(after.map { $0["quiet"] } == [Self.allSeries, Self.fastSeries])
    }

    @Test("PREDICTION_SLOW_INTERVAL: slots between reads; at least PREDICTION_INTERVAL; default six hours")
    func configuration() throws {
        func options(_ values: [String: String]) throws -> PredictorWorker.Options {
            try WorkerEnvironment(kind: "predictor", values: values).predictorOptions()
        }
        #expect(try options([:]).cadence.slowEvery == 6)
        #expect(try options(["PREDICTION_SLOW_INTERVAL": "43200"]).cadence.slowEvery == 12)
        #expect(try options(["PREDICTION_INTERVAL": "86400"]).cadence.slowEvery == 1, "a daily run reads everything")
        #expect(throws: ConfigurationError.self) {
            try options(["PREDICTION_INTERVAL": "3600", "PREDICTION_SLOW_INTERVAL": "600"])
        }
    }
}
