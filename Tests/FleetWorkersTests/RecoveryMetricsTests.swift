import AWSClient
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import Testing

/// The recorder's CloudWatch custom metrics against moto: PutMetricData per finished minute, read back
/// with GetMetricData.
@Suite("Recovery metrics in CloudWatch", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct RecoveryMetricsTests {
    static func message(_ type: String, id: String, target: String, at: Date, body: String) throws -> HistoryMessage {
        try RecorderWorker.decode(
            Array(
                """
                {"type":"\(type)","schema_version":1,"id":"\(id)","target":"\(target)","occurred_at":"\(Timestamp.format(at))",
                 "sent_at":"\(Timestamp.format(at))","producer":"test","body":\(body)}
                """.utf8))
    }

    @Test(.timeLimit(.minutes(2)))
    func actionEventsAndPredictionsBecomePerMinuteMetrics() async throws {
        let world = try World()
        let dynamo = DynamoDBClient(world.aws)
        let cloudWatch = CloudWatchClient(world.aws)
        let events = "\(world.prefix)-events"
        let predictions = "\(world.prefix)-predictions"
        for table in [events, predictions] {
            _ = try await dynamo.createTable(
                CreateTableInput(
                    tableName: table, partitionKey: DynamoKeyAttribute("instance_id", .string),
                    sortKey: DynamoKeyAttribute("timestamp", .string)))
        }
        var options = RecoveryMetrics.Options()
        options.dimensions = [MetricDimension("Fleet", world.prefix)]
        let metrics = RecoveryMetrics(options: options, cloudWatch: cloudWatch, logger: Logger(label: "metrics"))
        let recorder = RecorderWorker(
            options: RecorderWorker.Options(eventsTable: events, predictionsTable: predictions),
            dynamo: dynamo, logger: Logger(label: "recorder"), metrics: metrics)

        // Two whole minutes, ten minutes ago.
        let first = Date(timeIntervalSince1970: ((Date().timeIntervalSince1970 - 600) / 60).rounded(.down) * 60)
        let second = first.addingTimeInterval(60)
        let target = "\(world.prefix)-shop"
        func outcome(_ n: Int, _ status: String, _ at: Date) throws -> HistoryMessage {
            try Self.message(
                "action.event", id: "\(world.prefix)-k\(n):outcome", target: target, at: at,
                body: """
                    {"idempotency_key":"k\(n)","incident_id":"inc-1","step":"restart","status":"\(status)"}
                    """)
        }
        let firstMinute = [
            try outcome(1, "succeeded", first.addingTimeInterval(5)),
            try outcome(2, "failed", first.addingTimeInterval(20)),
            try outcome(3, "succeeded", first.addingTimeInterval(40)),
            try outcome(4, "human_needed", first.addingTimeInterval(50)),
        ]
        for m in firstMinute { try await recorder.record(m, verifiedUser: nil) }
        // Redelivered: counted once.
        #expect(try await recorder.record(firstMinute[0], verifiedUser: nil) == .alreadyWritten)
        try await recorder.record(try outcome(5, "succeeded", second.addingTimeInterval(1)), verifiedUser: nil)
        for (i, body) in [
            #"{"confidence":0.91}"#, #"{"confidence":0.5}"#, #"{"probability":0.8}"#, #"{"note":"none"}"#,
        ].enumerated() {
            try await recorder.record(
                try Self.message(
                    "prediction", id: "\(world.prefix)-p\(i)", target: target,
                    at: second.addingTimeInterval(Double(10 + i)), body: body), verifiedUser: nil)
        }
        // The next minute, a medium prediction only.
        try await recorder.record(
            try Self.message(
                "prediction", id: "\(world.prefix)-p9", target: target, at: second.addingTimeInterval(65),
                body: #"{"confidence":0.6}"#), verifiedUser: nil)
        // A status event is history but no metric.
        try await recorder.record(
            try Self.message("event", id: "\(world.prefix)-e1", target: target, at: first, body: #"{"kind":"x"}"#),
            verifiedUser: nil)

        // During the second minute only the first is finished; at shutdown the rest goes.
        #expect(try await metrics.flush(now: second.addingTimeInterval(30)) == 2)
        #expect(try await metrics.flush(now: second.addingTimeInterval(30)) == 0, "nothing new finished")
        #expect(try await metrics.flush(now: second.addingTimeInterval(30), all: true) == 5)

        func query(_ id: String, _ name: String, _ stat: String) -> MetricDataQuery {
            .metric(
                id: id, Metric(namespace: "EC2/AutoRecovery", name: name, dimensions: options.dimensions), period: 60,
                stat: stat)
        }
        let results = try await cloudWatch.getMetricData(
            [
                query("executed", "RecoveryActionsExecuted", "Sum"), query("rate", "RecoverySuccessRate", "Average"),
                query("predictions", "PredictionsGenerated", "Sum"), query("high", "HighConfidencePredictions", "Sum"),
            ], start: first.addingTimeInterval(-60), end: second.addingTimeInterval(120))
        func points(_ id: String) -> [Double: Double] {
            var byTime: [Double: Double] = [:]
            for p in results[id]?.points ?? [] { byTime[p.timestamp.timeIntervalSince1970] = p.value }
            return byTime
        }
        let t1 = first.timeIntervalSince1970
        let t2 = second.timeIntervalSince1970
        #expect(points("executed") == [t1: 4, t2: 1])
        #expect(points("rate") == [t1: 50, t2: 100])
        #expect(points("predictions") == [t2: 4, t2 + 60: 1])
        #expect(points("high") == [t2: 2], "0.91 and 0.8 are at or above the 0.8 threshold")
        // A minute without a high-confidence prediction sends no zero: every hour a custom metric gets
        // data is billed (docs/benchmarks.md, "The AWS bill").

        for table in [events, predictions] { _ = try? await dynamo.deleteTable(table) }
        await world.tearDown(instances: [])
    }

    /// Stopping the flush loop (worker shutdown) sends the minute in progress, although the loop's own
    /// task is cancelled by then.
    @Test(.timeLimit(.minutes(1)))
    func stoppingTheLoopSendsWhatIsLeft() async throws {
        let world = try World()
        let cloudWatch = CloudWatchClient(world.aws)
        var options = RecoveryMetrics.Options()
        options.dimensions = [MetricDimension("Fleet", world.prefix)]
        let metrics = RecoveryMetrics(options: options, cloudWatch: cloudWatch, logger: Logger(label: "metrics"))
        let now = Date()
        metrics.observe(
            try Self.message(
                "action.event", id: "\(world.prefix)-a", target: "t", at: now, body: #"{"status":"succeeded"}"#))
        let loop = Task { await metrics.run(interval: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(200))
        loop.cancel()
        await loop.value
        #expect(try await metrics.flush(now: now, all: true) == 0, "nothing was left behind")
        let minute = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 60).rounded(.down) * 60)
        let results = try await cloudWatch.getMetricData(
            [
                .metric(
                    id: "executed",
                    Metric(
                        namespace: "EC2/AutoRecovery", name: "RecoveryActionsExecuted", dimensions: options.dimensions),
                    period: 60, stat: "Sum")
            ], start: minute.addingTimeInterval(-60), end: minute.addingTimeInterval(120))
        #expect(results["executed"]?.points.map(\.value) == [1])
        await world.tearDown(instances: [])
    }

    /// A flush that CloudWatch refuses keeps its minutes for the next one.
    @Test func aFailedFlushKeepsItsMinutes() async throws {
        let down = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "A", secretAccessKey: "s")),
            http: FailingHTTP(), environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:9"],
            dependencies: AWSClientDependencies(now: { Date() }, sleep: { _ in }, random: { 0 }))
        let metrics = RecoveryMetrics(cloudWatch: CloudWatchClient(down), logger: Logger(label: "m"))
        let at = Date(timeIntervalSince1970: 1_795_316_400)
        metrics.observe(
            try Self.message("action.event", id: "a", target: "t", at: at, body: #"{"status":"succeeded"}"#))
        await #expect(throws: (any Error).self) { try await metrics.flush(now: at.addingTimeInterval(120)) }
        // Still buffered: a second attempt tries the same data again (and fails again), rather than nothing.
        await #expect(throws: (any Error).self) { try await metrics.flush(now: at.addingTimeInterval(120)) }
    }
}
