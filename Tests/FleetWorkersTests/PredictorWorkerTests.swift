import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// The predictor worker over the real broker and Redis; EC2 targets on the shared moto, CloudWatch and
/// the recorder's DynamoDB on a private moto (its GetMetricData scans every stored data point, so the
/// shared server's growing store would make it slow). docs/prediction.md.
@Suite("Predictor worker", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"), .serialized)
struct PredictorWorkerTests {
    /// The current whole hour; series end there, so the last complete hour is in the lookback.
    static func currentHour(_ now: Date = Date()) -> Date {
        Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
    }

    /// 168 hourly points of `metric` (CWAgent, dimension InstanceId) ending at `end`, in PutMetricData
    /// requests of at most 1000 points (the client splits; moto keeps the timestamps sent).
    static func putSeries(
        _ cloudWatch: CloudWatchClient, instanceId: String, metric: String, end: Date,
        value: (Int) -> Double
    ) async throws {
        let data = (0..<168).map { i in
            MetricDatum(
                metricName: metric, value: value(i), dimensions: [MetricDimension("InstanceId", instanceId)],
                timestamp: end.addingTimeInterval(Double(i - 167) * 3600), unit: .percent)
        }
        try await cloudWatch.putMetricData(namespace: "CWAgent", data: data)
    }

    /// Flat at 40 % for four days, then +0.5 %/h: about 76 % now, full in about two days.
    static func filling(_ i: Int) -> Double { 40 + 0.5 * Double(max(0, i - 96)) + (i % 2 == 0 ? 0.3 : -0.3) }
    static func healthy(_ i: Int) -> Double { 55 + (i % 3 == 0 ? 0.4 : -0.2) }

    struct Setup {
        let world: World
        let moto: WebhookReceiver
        let requestLog: RequestLog
        let cloudWatch: CloudWatchClient
        let dynamo: DynamoDBClient
        let redis: RedisClient
        let publisher: AMQPPublisher
        let catalog: TargetCatalog
        let logger = Logger(label: "predictor-test")

        init() async throws {
            world = try World()
            moto = try await WebhookReceiver(script: WebhookReceiver.motoScript)
            requestLog = RequestLog(world.http)
            let aws = AWSClient(
                region: "us-east-1",
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
                http: requestLog, environment: ["AWS_ENDPOINT_URL": moto.baseURL])
            cloudWatch = CloudWatchClient(aws)
            dynamo = DynamoDBClient(aws)
            redis = try await RedisClient.connect(url: world.redisURL)
            publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
            catalog = TargetCatalog(
                ec2: world.ec2, drRegion: nil, config: .empty, fleet: world.prefix, logger: Logger(label: "catalog"))
        }

        func worker(
            _ id: String, cloudWatch: CloudWatchClient? = nil, clock: @escaping @Sendable () -> Date = Date.init
        ) -> PredictorWorker {
            let catalog = catalog
            return PredictorWorker(
                options: PredictorWorker.Options(workerId: id), discover: { try await catalog.discover() },
                cloudWatch: cloudWatch ?? self.cloudWatch,
                claims: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
                publisher: publisher, topology: world.topology, logger: logger, clock: clock)
        }

        func tearDown(instances: [String]) async {
            await publisher.shutdown()
            await redis.close()
            moto.stop()
            await world.tearDown(instances: instances)
        }
    }

    @Test(
        "a filling disk gives a high-confidence prediction, recorded with a 30-day ttl; a healthy one does not; GetMetricData batched for both",
        .timeLimit(.minutes(3)))
    func fillingDiskIsPredictedAndRecorded() async throws {
        let setup = try await Setup()
        let world = setup.world
        var instances: [String] = []
        do {
            let full = try await world.launchTarget(name: "\(world.prefix)-full", healthURL: "http://127.0.0.1:9/")
            let fine = try await world.launchTarget(name: "\(world.prefix)-fine", healthURL: "http://127.0.0.1:9/")
            instances = [full.instanceId, fine.instanceId]
            let end = Self.currentHour()
            try await Self.putSeries(
                setup.cloudWatch, instanceId: full.instanceId, metric: "disk_used_percent", end: end,
                value: Self.filling)
            try await Self.putSeries(
                setup.cloudWatch, instanceId: fine.instanceId, metric: "disk_used_percent", end: end,
                value: Self.healthy)
            try await Self.putSeries(
                setup.cloudWatch, instanceId: fine.instanceId, metric: "mem_used_percent", end: end, value: Self.healthy
            )

            // The recorder, in-process, on the history queue; the decision's queue collected.
            let events = "\(world.prefix)-events"
            let predictionsTable = "\(world.prefix)-predictions"
            for table in [events, predictionsTable] {
                _ = try await setup.dynamo.createTable(
                    CreateTableInput(
                        tableName: table, partitionKey: DynamoKeyAttribute("instance_id", .string),
                        sortKey: DynamoKeyAttribute("timestamp", .string)))
            }
            let recorder = RecorderWorker(
                options: RecorderWorker.Options(eventsTable: events, predictionsTable: predictionsTable),
                dynamo: setup.dynamo, logger: setup.logger)
            let history = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.historyQueue)
            let sink = DeadLetterSink(
                publisher: setup.publisher, topology: world.topology, workerName: "predictor-test")
            let recorderLoop = Task {
                await MessageWorker(
                    consumer: history, deadLetters: sink, logger: setup.logger, senders: nil,
                    decode: RecorderWorker.decode,
                    handler: recorder.handle
                ).run()
            }
            let observations = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
            let decisionSide = Collector<PredictionBody>(observations, type: .prediction)

            let worker = setup.worker("predictor-a")
            let before = setup.requestLog.actions("GetMetricData").count
            await worker.refreshTargetsForTests()
            let result = await worker.runDueSlots()
            #expect(Set(result.evaluated) == ["\(world.prefix)-full", "\(world.prefix)-fine"])
            #expect(
                setup.requestLog.actions("GetMetricData").count - before == 2,
                "14 queries for two targets: one request for the fast series over two weeks, one for the slow over one")
            let request = try #require(setup.requestLog.actions("GetMetricData").last)
            #expect(
                request.body.contains("InstanceId") && request.body.contains(full.instanceId)
                    && request.body.contains(fine.instanceId))

            let disk = try #require(
                result.published.first { $0.target == "\(world.prefix)-full" && $0.body.kind == .diskExhaustion })
            #expect(disk.body.highConfidence && disk.body.confidence >= 0.8, "\(disk.body)")
            #expect(disk.body.repair == "ssm:disk-cleanup")
            #expect(disk.instanceId == full.instanceId)
            let tte = try #require(disk.body.factors.first { $0.name == "time_to_exhaustion_hours" }?.value)
            // ~76 % now (24 of 100 left) at 0.5 %/h: about 48 hours from the end of the data.
            #expect(tte > 38 && tte < 58, "time to exhaustion \(tte) h")
            #expect(disk.body.window.from > Date() && disk.body.window.from <= disk.body.window.to)
            #expect(
                !result.published.contains { $0.target == "\(world.prefix)-fine" && $0.body.highConfidence },
                "the healthy target: \(result.published.filter { $0.target == "\(world.prefix)-fine" }.map(\.body))")

            // The decision's queue gets it as published.
            let seen = await decisionSide.wait { $0.id == disk.id }
            let encoder = Timestamp.jsonEncoder()
            #expect(
                try seen.map { try encoder.encode($0.body) } == (try encoder.encode(disk.body)),
                "the same body on the wire")

            // The recorder wrote it to the predictions table, ttl 30 days after it occurred, numbers as sent.
            var row: DynamoItem?
            let deadline = ContinuousClock.now + .seconds(30)
            while row == nil, ContinuousClock.now < deadline {
                row = try await setup.dynamo.queryAll(
                    QueryInput(
                        tableName: predictionsTable,
                        key: DynamoKeyCondition(partitionKey: "instance_id", equals: .string("\(world.prefix)-full")))
                )
                .first { $0["message_id"]?.stringValue == disk.id }
                if row == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let recorded = try #require(row)
            #expect(
                recorded["ttl"]?.numberValue?.text
                    == "\(Int64(disk.occurredAt.timeIntervalSince1970.rounded(.down)) + 30 * 86_400)")
            let body = try #require(recorded["body"]?.mapValue)
            let sentText = String(decoding: try EnvelopeCodec.encode(disk), as: UTF8.self)
            let confidenceText = try #require(body["confidence"]?.numberValue?.text)
            #expect(sentText.contains("\"confidence\":\(confidenceText),"), "the confidence reads back digit for digit")
            #expect(Double(confidenceText) == disk.body.confidence)
            let factorValues = (body["factors"]?.listValue ?? []).compactMap {
                $0.mapValue?["value"]?.numberValue?.text
            }
            #expect(factorValues.map { Double($0)! } == disk.body.factors.map(\.value), "factors read back equal")
            #expect(body["high_confidence"] == .bool(true))
            #expect(recorded["why"]?.stringValue == disk.body.detail)

            // The same slot again: already claimed, nothing evaluated.
            #expect(await worker.runDueSlots().evaluated.isEmpty)

            // On request: `predict.<target>` predicts that one now, outside the schedule.
            let requests = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.predictionRequestsQueue)
            let requestLoop = Task {
                await MessageWorker(
                    consumer: requests, deadLetters: sink, logger: setup.logger, senders: nil,
                    decode: PredictorWorker.decodeRequest,
                    handler: worker.handle
                ).run()
            }
            let ask = Envelope(
                type: .predictionRequest, target: "\(world.prefix)-full", occurredAt: Date(),
                body: PredictionRequest(reason: "test"))
            try await setup.publisher.publish(
                OutgoingMessage(
                    exchange: world.topology.exchange,
                    routingKey: FleetTopology.routingKey(.predictionRequest, target: ask.target),
                    body: try EnvelopeCodec.encode(ask), properties: AMQPProperties(messageId: ask.id)))
            let onDemand = await decisionSide.wait {
                $0.id != disk.id && $0.target == "\(world.prefix)-full" && $0.body.kind == .diskExhaustion
            }
            #expect(onDemand?.body.highConfidence == true)
            // Named after the request, so a requeued request republishes the same ids (dropped downstream).
            #expect(onDemand?.id == "prediction-request-\(ask.id)-disk_exhaustion-\(world.prefix)-full")

            await requests.shutdown()
            requestLoop.cancel()
            await history.shutdown()
            recorderLoop.cancel()
            await observations.shutdown()
        } catch {
            await setup.tearDown(instances: instances)
            throw error
        }
        await setup.tearDown(instances: instances)
    }

    @Test(
        "two replicas over N targets: each target predicted exactly once per slot; GetMetricData batched across targets",
        .timeLimit(.minutes(3)))
    func replicasSplitTheTargets() async throws {
        let setup = try await Setup()
        let world = setup.world
        var instances: [String] = []
        do {
            let count = 5
            for i in 0..<count {
                let instance = try await world.launchTarget(
                    name: "\(world.prefix)-t\(i)", healthURL: "http://127.0.0.1:9/")
                instances.append(instance.instanceId)
            }
            let start = Date()
            let end = Self.currentHour(start).addingTimeInterval(3600)  // covers this slot and the next
            for id in instances {
                try await Self.putSeries(
                    setup.cloudWatch, instanceId: id, metric: "disk_used_percent", end: end, value: Self.filling)
            }
            // A shared test clock, so both replicas move to the next slot together.
            let clock = Mutex<Date>(start)
            var small = setup.cloudWatch
            small.queriesPerRequest = 10  // 7 queries per target: several targets per request, split across requests
            let a = setup.worker("predictor-a", cloudWatch: small, clock: { clock.withLock { $0 } })
            let b = setup.worker("predictor-b", cloudWatch: small, clock: { clock.withLock { $0 } })
            await a.refreshTargetsForTests()
            await b.refreshTargetsForTests()

            var predicted: [[String]] = []
            for slot in 0..<2 {
                if slot == 1 { clock.withLock { $0 = start.addingTimeInterval(3600) } }
                var evaluated: [String] = []
                var expectedRequests = 0
                let before = setup.requestLog.actions("GetMetricData").count
                for _ in 0..<3 {  // several ticks each, concurrently
                    async let ra = a.runDueSlots()
                    async let rb = b.runDueSlots()
                    for r in await [ra, rb] {
                        evaluated += r.evaluated
                        // The fast series (3 per target) over two weeks, the slow ones (4) over one.
                        if !r.evaluated.isEmpty {
                            expectedRequests += (r.evaluated.count * 3 + 9) / 10 + (r.evaluated.count * 4 + 9) / 10
                        }
                        #expect(r.failedTargets.isEmpty)
                        #expect(r.published.filter { $0.body.kind == .diskExhaustion }.count == r.evaluated.count)
                    }
                }
                predicted.append(evaluated)
                #expect(
                    evaluated.sorted() == (0..<count).map { "\(world.prefix)-t\($0)" }.sorted(),
                    "slot \(slot): each target exactly once")
                #expect(
                    setup.requestLog.actions("GetMetricData").count - before == expectedRequests,
                    "two batched calls per run: ⌈3·targets / 10⌉ + ⌈4·targets / 10⌉ requests, never one per metric")
            }
            #expect(predicted.count == 2)
        } catch {
            await setup.tearDown(instances: instances)
            throw error
        }
        await setup.tearDown(instances: instances)
    }
}

extension PredictorWorkerTests {
    /// The whole chain of issue 8 with real parts: metrics put through PutMetricData, the predictor, the
    /// decision worker (in-process, on the real observations queue), and the repair request it publishes
    /// for the actuator after the grace period.
    @Test("from a filling disk in CloudWatch to an SSM disk-cleanup request", .timeLimit(.minutes(3)))
    func fillingDiskLeadsToARepairRequest() async throws {
        let setup = try await Setup()
        let world = setup.world
        var instances: [String] = []
        do {
            let full = try await world.launchTarget(name: "\(world.prefix)-full", healthURL: "http://127.0.0.1:9/")
            instances = [full.instanceId]
            try await Self.putSeries(
                setup.cloudWatch, instanceId: full.instanceId, metric: "disk_used_percent", end: Self.currentHour(),
                value: Self.filling)

            let config = try TargetConfigFile(data: Data(#"{"defaults": {"grace_period": 1}}"#.utf8))
            let decision = try await world.decision(
                "decision-chain", redis: setup.redis, publisher: setup.publisher, config: config,
                tick: .milliseconds(200), logger: setup.logger)
            let observations = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
            let sink = DeadLetterSink(
                publisher: setup.publisher, topology: world.topology, workerName: "decision-chain")
            let decisionLoop = Task {
                await MessageWorker(
                    consumer: observations, deadLetters: sink, logger: setup.logger, senders: nil,
                    decode: DecisionWorker.decodeObservationQueue, handler: decision.handle
                ).run()
            }
            let ticker = Task { await decision.runTicker() }
            let requestsConsumer = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.actionRequestsQueue)
            let requests = Collector<ActionRequest>(requestsConsumer, type: .actionRequest)

            let worker = setup.worker("predictor-chain")
            await worker.refreshTargetsForTests()
            let result = await worker.runDueSlots()
            let disk = try #require(
                result.published.first { $0.body.kind == .diskExhaustion && $0.body.highConfidence })

            let request = await requests.wait(timeout: .seconds(30)) { _ in true }
            #expect(
                request?.body.repair
                    == RepairRequest(
                        .ssm(document: "disk-cleanup", parameters: [:]), id: disk.id,
                        reason: disk.body.detail))
            #expect(request?.body.instanceId == full.instanceId)
            #expect(request?.body.idempotencyKey == "\(world.prefix)-full/repair/ssm/\(disk.id)")

            ticker.cancel()
            await observations.shutdown()
            await decisionLoop.value
            await requestsConsumer.shutdown()
        } catch {
            await setup.tearDown(instances: instances)
            throw error
        }
        await setup.tearDown(instances: instances)
    }
}
