import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import Logging
import PredictionBacktest
import RecoveryCore
import Synchronization

// fleet-bench bill [--targets N] [--trouble N] [--hours N]: the monthly AWS bill of watching N targets
// (docs/benchmarks.md, "The AWS bill"). The fleet's AWS calls in a quiet or troubled week are the
// predictor's GetMetricData and the recorder's history rows and custom metrics (EC2 Describe*, SSM Run
// Command and the Route 53 API cost nothing; SES and SNS only send on incidents, counted apart). So the
// real PredictorWorker (its options from the environment, the defaults unless PREDICTION_* is set), the
// real RecorderWorker and RecoveryMetrics run a simulated week on memory ports that count what would be
// billed: metrics requested, PutMetricData requests, custom metric-hours, DynamoDB write units and bytes.
// The targets' series are the backtest's generated ones: `trouble` of them develop one of its trouble
// shapes during the week, the others are its healthy shapes.

/// US East list prices (checked December 2026; free tiers ignored).
enum Price {
    static let metricRequested = 0.01 / 1000  // GetMetricData, per metric requested
    static let putMetricDataRequest = 0.01 / 1000
    static let customMetricMonth = 0.30  // first 10,000 metrics; prorated by the hour it receives data
    static let writeUnit = 0.625 / 1_000_000  // DynamoDB on-demand
    static let storageGBMonth = 0.25
    static let email = 0.10 / 1000  // SES
    static let hoursPerMonth = 730.0
}

/// GetMetricData answered from the generated scenarios, counting the metrics requested.
final class BillMetrics: MetricDataReading {
    let scenarios: [String: Scenario]
    private let counts = Mutex<(requests: Int, metrics: Int)>((0, 0))
    var requested: (requests: Int, metrics: Int) { counts.withLock { $0 } }

    init(scenarios: [String: Scenario]) { self.scenarios = scenarios }

    func metricData(_ queries: [MetricDataQuery], start: Date, end: Date, region: String) async throws
        -> MetricDataResults
    {
        counts.withLock {
            $0.requests +=
                (queries.count + CloudWatchClient.maxQueriesPerRequest - 1)
                / CloudWatchClient.maxQueriesPerRequest
            $0.metrics += queries.count
        }
        return MetricDataResults(
            queries.map { query in
                guard case .metric(let metric, _, _, _) = query.kind,
                    let instance = metric.dimensions.first(where: { $0.name == "InstanceId" })?.value,
                    let scenario = scenarios[instance], let kind = PredictorMetric(rawValue: metric.name),
                    let values = scenario.values[kind]
                else { return MetricDataResult(id: query.id, points: []) }
                let points = values.indices.compactMap { h -> (timestamp: Date, value: Double)? in
                    let t = scenario.time(h)
                    return t >= start && t < end && !values[h].isNaN ? (t, values[h]) : nil
                }
                return MetricDataResult(id: query.id, points: points)
            })
    }
}

/// PutItem-if-absent, counting write units (1 per KB, rounded up) and the bytes stored.
final class BillTables: ConditionalItemWriting {
    private let counts = Mutex<(rows: Int, units: Int, bytes: Int)>((0, 0, 0))
    var written: (rows: Int, units: Int, bytes: Int) { counts.withLock { $0 } }

    func putItemIfAbsent(tableName: String, item: DynamoItem, partitionKey: String) async throws -> PutIfAbsentResult {
        let size = item.reduce(0) { $0 + $1.key.utf8.count + Self.size($1.value) }
        counts.withLock {
            $0.rows += 1
            $0.units += (size + 1023) / 1024
            $0.bytes += size + 100  // DynamoDB counts 100 bytes of index overhead per item
        }
        return .written
    }

    /// DynamoDB's item size rules: names and strings in UTF-8, a number about one byte per two digits
    /// plus one, 3 bytes per list or map plus one per element.
    static func size(_ value: DynamoValue) -> Int {
        switch value {
        case .string(let s): s.utf8.count
        case .number(let n): (n.text.count + 1) / 2 + 1
        case .binary(let d): d.count
        case .bool, .null: 1
        case .list(let l): 3 + l.reduce(0) { $0 + 1 + size($1) }
        case .map(let m): 3 + m.reduce(0) { $0 + 1 + $1.key.utf8.count + size($1.value) }
        case .stringSet(let s): s.reduce(0) { $0 + $1.utf8.count }
        case .numberSet(let s): s.reduce(0) { $0 + size(.number($1)) }
        case .binarySet(let s): s.reduce(0) { $0 + $1.count }
        }
    }
}

/// PutMetricData, counting requests and the hours each custom metric received data (what is billed).
final class BillMetricSink: MetricDataPutting {
    private let state = Mutex<(requests: Int, metricHours: Set<String>)>((0, []))
    var sent: (requests: Int, metricHours: Int) { state.withLock { ($0.requests, $0.metricHours.count) } }

    func putMetricData(namespace: String, data: [MetricDatum]) async throws -> Int {
        let requests = (data.count + CloudWatchClient.maxDatumsPerRequest - 1) / CloudWatchClient.maxDatumsPerRequest
        state.withLock { s in
            s.requests += requests
            for datum in data {
                let hour = Int((datum.timestamp ?? Date()).timeIntervalSince1970 / 3600)
                let dimensions = datum.dimensions.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
                s.metricHours.insert("\(namespace)|\(datum.metricName)|\(dimensions)|\(hour)")
            }
        }
        return requests
    }
}

func runBillBenchmark(_ options: BenchOptions) async {
    let count = options.int("targets", default: 100)
    let troubled = min(count, options.int("trouble", default: count / 10))
    let hours = options.int("hours", default: 168)
    let environment = WorkerEnvironment(kind: "predictor")
    let predictorOptions: PredictorWorker.Options
    let metricsOptions: RecoveryMetrics.Options
    do {
        predictorOptions = try environment.predictorOptions()
        metricsOptions = try environment.recoveryMetricsOptions()
    } catch {
        FileHandle.standardError.write(Data("configuration: \(error)\n".utf8))
        exit(2)
    }

    // The fleet: the backtest's healthy shapes, and `troubled` targets with its trouble shapes.
    let healthyShapes = Scenario.Shape.allCases.filter { $0.label == nil }
    let troubleShapes = Scenario.Shape.allCases.filter { $0.label != nil }
    func pick(_ shapes: [Scenario.Shape], _ n: Int, seed: UInt64) -> [Scenario] {
        guard n > 0 else { return [] }
        let perShape = (n + shapes.count - 1) / shapes.count
        let all = ScenarioGenerator.generate(seed: seed, perShape: perShape, shapes: shapes)
        return (0..<n).map { all[($0 % shapes.count) * perShape + $0 / shapes.count] }
    }
    let scenarios = pick(healthyShapes, count - troubled, seed: 1) + pick(troubleShapes, troubled, seed: 2)
    var byInstance: [String: Scenario] = [:]
    var targets: [Target] = []
    for (i, scenario) in scenarios.enumerated() {
        let instance = "i-0bill\(i)"
        byInstance[instance] = scenario
        targets.append(
            Target(
                identity: TargetIdentity(name: "site-\(i)", homeRegion: "us-east-1"),
                instance: InstanceRef(id: instance, region: "us-east-1"), instanceState: "running",
                healthURL: "https://site-\(i).example.com/health", settings: TargetSettings()))
    }

    // Simulated time: each run five minutes past an hour of the scenarios' replayed week.
    let start = ScenarioGenerator.origin.addingTimeInterval(Double(168 * 3600 + 300))
    let simulated = Mutex(start)
    let clock: @Sendable () -> Date = { simulated.withLock { $0 } }
    let base = ContinuousClock.now
    let store = MemoryKeyValueStore(now: {
        base + .milliseconds(Int64(clock().timeIntervalSince(start) * 1000))
    })
    let topology = FleetTopology(prefix: "bill")
    let publisher = MemoryPublisher(
        broker: MemoryBroker(exchanges: [topology.exchange, topology.deadLetterExchange]), user: "fleet-predictor")
    let metrics = BillMetrics(scenarios: byInstance)
    let tables = BillTables()
    let sink = BillMetricSink()
    var quiet = Logger(label: "bill")
    quiet.logLevel = .error
    let predictor = PredictorWorker(
        options: predictorOptions, discover: { [targets] in targets }, cloudWatch: metrics, claims: store,
        publisher: publisher,
        topology: topology, logger: quiet, clock: clock)
    let recoveryMetrics = RecoveryMetrics(options: metricsOptions, cloudWatch: sink, logger: quiet)
    let recorder = RecorderWorker(
        options: RecorderWorker.Options(eventsTable: "recovery-events", predictionsTable: "prediction-events"),
        dynamo: tables, logger: quiet, clock: clock, metrics: recoveryMetrics)

    await predictor.refreshTargetsForTests()
    var recorded = 0
    let began = ContinuousClock.now
    // The predictor's scheduler looks every 5 minutes of simulated time: `hours` slots from the start.
    for step in 0..<(hours * 12 - 1) {
        simulated.withLock { $0 = start.addingTimeInterval(Double(step * 300)) }
        await predictor.runDueSlots()
        let published = publisher.published
        for message in published[recorded...] {
            do {
                _ = try await recorder.record(RecorderWorker.decode(message.body), verifiedUser: "fleet-predictor")
            } catch {
                FileHandle.standardError.write(Data("recorder: \(error)\n".utf8))
                exit(1)
            }
        }
        recorded = published.count
        _ = try? await recoveryMetrics.flush(now: clock())  // the recorder flushes every minute
    }
    _ = try? await recoveryMetrics.flush(now: clock(), all: true)

    let scale = Price.hoursPerMonth / Double(hours)
    let requested = metrics.requested
    let rows = tables.written
    let sent = sink.sent
    // Storage: predictions live 30 days (ttl), so a month holds a month of rows.
    let storedGB = Double(rows.bytes) * scale / 1e9
    let lines: [(String, Double, String, Double)] = [
        ("GetMetricData, metrics requested", Double(requested.metrics) * scale, "$0.01 / 1,000", Price.metricRequested),
        ("PutMetricData requests", Double(sent.requests) * scale, "$0.01 / 1,000", Price.putMetricDataRequest),
        (
            "custom metric-hours (4 metrics, billed per hour with data)", Double(sent.metricHours) * scale,
            "$0.30 / 730", Price.customMetricMonth / Price.hoursPerMonth
        ),
        ("DynamoDB write units (history rows)", Double(rows.units) * scale, "$0.625 / 1M", Price.writeUnit),
        ("DynamoDB storage, GB (30-day ttl)", storedGB, "$0.25", Price.storageGBMonth),
    ]
    let total = lines.reduce(0) { $0 + $1.1 * $1.3 }
    let runs = Double(count) * (Double(hours) * 3600 / predictorOptions.interval).rounded(.down)
    print(
        "AWS bill: \(count) targets (\(troubled) with a trouble shape), \(hours) simulated hours in \(ContinuousClock.now - began); predictor every \(Int(predictorOptions.interval)) s, slow series every \(predictorOptions.cadence.slowEvery) runs while quiet"
    )
    print("| item | per month | price | $ per month |")
    print("|---|---|---|---|")
    for (name, amount, price, unit) in lines {
        print("| \(name) | \(formatAmount(amount)) | \(price) | \(String(format: "%.2f", amount * unit)) |")
    }
    print("| **total** | | | **\(String(format: "%.2f", total))** |")
    print(
        "series read per target and run: \(String(format: "%.2f", Double(requested.metrics) / runs)) of 7; GetMetricData requests per month: \(formatAmount(Double(requested.requests) * scale)); history rows per month: \(formatAmount(Double(rows.rows) * scale))"
    )
    print("seed design's estimate for the same fleet: $21–95 a month")
}

func formatAmount(_ x: Double) -> String {
    x >= 100 ? String(Int(x.rounded())) : String(format: "%.3g", x)
}
