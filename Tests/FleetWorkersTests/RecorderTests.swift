import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import Synchronization
import Testing

/// The recorder's rows, without servers.
@Suite("Recorder rows")
struct RecorderRowTests {
    static let bytes = Array(
        #"""
        {"type":"event","schema_version":1,"id":"m-1","correlation_id":"inc-1","target":"shop-web","instance_id":"i-0abc",
         "occurred_at":"2026-11-22T03:00:00.123Z","sent_at":"2026-11-22T03:00:00.200Z","producer":"decision@h1",
         "body":{"reason":"3 failed checks","score":0.30000000000000004,"big":123456789012345678901234567890,
                 "tiny":1e-130,"huge":1e200,"list":[1,"two",true,null,{"x":"\u00e9\ud83d\ude00"}],"empty":{}}}
        """#.utf8)

    let worker = RecorderWorker(
        options: RecorderWorker.Options(eventsTable: "events", predictionsTable: "predictions"),
        dynamo: DynamoDBClient(
            AWSClient(
                region: "us-east-1",
                credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "A", secretAccessKey: "s")),
                http: HTTPClient())),
        logger: Logger(label: "t"), clock: { Date(timeIntervalSince1970: 1_795_316_500) })

    @Test("key, who, why; numbers kept digit for digit; the raw envelope kept")
    func eventRow() throws {
        let message = try RecorderWorker.decode(Self.bytes)
        let (table, item) = worker.row(message, verifiedUser: nil)
        #expect(table == "events")
        #expect(item["instance_id"] == .string("shop-web"))
        #expect(item["timestamp"] == .string("2026-11-22T03:00:00.123Z#m-1"))
        #expect(item["who"] == .string("decision@h1"))
        #expect(item["why"] == .string("3 failed checks"))
        #expect(item["ec2_instance_id"] == .string("i-0abc"))
        #expect(item["correlation_id"] == .string("inc-1"))
        #expect(item["envelope"] == .string(String(decoding: Self.bytes, as: UTF8.self)))
        let body = try #require(item["body"]?.mapValue)
        #expect(body["score"]?.numberValue?.text == "0.30000000000000004")
        #expect(body["big"]?.numberValue?.text == "123456789012345678901234567890")
        #expect(body["tiny"]?.numberValue?.text == "1e-130")
        #expect(body["huge"] == .string("1e200"), "beyond DynamoDB's range: kept as text")
        #expect(body["list"] == .list([1, "two", true, .null, .map(["x": .string("é😀")])]))
        #expect(body["empty"] == .map([:]))
        // Every message now carries its publisher's verified user_id; for an event that is a fleet
        // identity, kept as `sender`, while `who` stays the actor the body names.
        let sent = worker.row(message, verifiedUser: "fleet-decision").item
        #expect(sent["who"] == .string("decision@h1") && sent["sender"] == .string("fleet-decision"))
        // For a command the broker-verified user wins over whatever the body claims.
        let command = Array(
            #"{"type":"command","schema_version":1,"id":"c-1","target":"shop-web","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"name":"restart","operator":"alice"}}"#
                .utf8)
        let commandRow = worker.row(try RecorderWorker.decode(command), verifiedUser: "mallory").item
        #expect(commandRow["who"] == .string("mallory"), "the broker-verified user wins")
        // on_behalf_of names the person only when a console user sent it; anyone else's is a claim.
        let relayed = try RecorderWorker.decode(
            Array(
                #"{"type":"command","schema_version":1,"id":"c-2","target":"shop-web","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"name":"approve","on_behalf_of":"bob"}}"#
                    .utf8))
        var consoleAware = RecorderWorker.Options(eventsTable: "events", predictionsTable: "predictions")
        consoleAware.consoleUsers = ["fleet-console"]
        let recorder = RecorderWorker(
            options: consoleAware,
            dynamo: DynamoDBClient(
                AWSClient(
                    region: "us-east-1",
                    credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "A", secretAccessKey: "s")),
                    http: HTTPClient())), logger: Logger(label: "t"))
        #expect(recorder.row(relayed, verifiedUser: "fleet-console").item["who"] == .string("bob via fleet-console"))
        #expect(
            recorder.row(relayed, verifiedUser: "alice").item["who"] == .string("alice (claimed on_behalf_of bob)"))
    }

    @Test("predictions go to their table with a ttl 30 days out, in whole epoch seconds")
    func predictionRow() throws {
        let bytes = Array(
            #"{"type":"prediction","schema_version":1,"id":"p-1","target":"shop-web","occurred_at":"2026-11-22T03:00:00.900Z","sent_at":"2026-11-22T03:00:01Z","body":{"probability":0.125}}"#
                .utf8)
        let (table, item) = worker.row(try RecorderWorker.decode(bytes), verifiedUser: nil)
        #expect(table == "predictions")
        #expect(item["ttl"]?.numberValue?.text == "\(1_795_316_400 + 30 * 86_400)")
        #expect(item["why"] == .string("prediction"))
    }

    @Test("what is not an envelope is refused with the codec's reasons")
    func refusals() {
        #expect(throws: MessageDecodingError.self) { _ = try RecorderWorker.decode(Array("nope".utf8)) }
        #expect(throws: MessageDecodingError.self) {
            _ = try RecorderWorker.decode(Array(#"{"type":"event","id":"x"}"#.utf8))
        }
    }
}

/// The recorder over the real broker and DynamoDB on moto.
@Suite("Recorder writes history", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct RecorderTests {
    @Test(
        "DynamoDB down: messages stay queued, never dropped; DynamoDB back: each written exactly once, also under redelivery",
        .timeLimit(.minutes(2)))
    func outageThenExactlyOnce() async throws {
        let world = try World()
        let dynamo = DynamoDBClient(world.aws)
        let events = "\(world.prefix)-events"
        let predictions = "\(world.prefix)-predictions"
        for table in [events, predictions] {
            _ = try await dynamo.createTable(
                CreateTableInput(
                    tableName: table, partitionKey: DynamoKeyAttribute("instance_id", .string),
                    sortKey: DynamoKeyAttribute("timestamp", .string)))
        }
        let publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        let admin = AMQPAdmin(configuration: world.amqp)
        let logger = Logger(label: "recorder-test")
        let sink = DeadLetterSink(publisher: publisher, topology: world.topology, workerName: "recorder-test")
        let options = RecorderWorker.Options(eventsTable: events, predictionsTable: predictions)
        let target = "\(world.prefix)-shop"
        do {
            // 1. DynamoDB unreachable (a closed port; the AWS client's own retries do not sleep).
            let closed = try await WebhookReceiver()
            let closedPort = closed.port
            closed.stop()
            let down = AWSClient(
                region: "us-east-1",
                credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "A", secretAccessKey: "s")),
                http: world.http, environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:\(closedPort)"],
                dependencies: AWSClientDependencies(now: { Date() }, sleep: { _ in }, random: { 0 }))
            var failingOptions = options
            failingOptions.failureDelay = .milliseconds(100)
            let failing = RecorderWorker(options: failingOptions, dynamo: DynamoDBClient(down), logger: logger)
            let failures = Atomic<Int>(0)
            let consumerA = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.historyQueue)
            let loopA = MessageWorker(
                consumer: consumerA, deadLetters: sink, logger: logger, senders: nil, decode: RecorderWorker.decode
            ) { m, d in
                do { try await failing.handle(m, delivery: d) } catch {
                    failures.add(1, ordering: .relaxed)
                    throw error
                }
            }
            let runA = Task { await loopA.run() }

            let at = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
            var ids: [String] = []
            for i in 0..<3 {
                let id = "\(world.prefix)-ev-\(i)"
                ids.append(id)
                try await publish(
                    publisher, world, type: .event, id: id, target: target, at: at.addingTimeInterval(Double(i)),
                    body: #"{"reason":"state change \#(i)","score":0.30000000000000004,"count":\#(i)}"#)
            }
            try await publish(
                publisher, world, type: .command, id: "\(world.prefix)-cmd", target: target, at: at,
                body: #"{"name":"ack","reason":"looking into it"}"#, userId: "guest")
            try await publish(
                publisher, world, type: .prediction, id: "\(world.prefix)-pred", target: target, at: at,
                body: #"{"probability":0.125}"#)
            let deadline = ContinuousClock.now + .seconds(30)
            while failures.load(ordering: .relaxed) < 5, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(failures.load(ordering: .relaxed) >= 5, "every message was tried and failed")
            await consumerA.shutdown()
            runA.cancel()
            // The broker requeues the closed consumer's unacked deliveries asynchronously: wait for it (bounded).
            var queued = try await admin.messageCount(queue: world.topology.historyQueue)
            let settle = ContinuousClock.now + .seconds(10)
            while queued != 5, ContinuousClock.now < settle {
                try await Task.sleep(for: .milliseconds(50))
                queued = try await admin.messageCount(queue: world.topology.historyQueue)
            }
            #expect(queued == 5, "all five still queued")
            #expect(
                try await admin.messageCount(queue: FleetTopology.deadLetterQueue(for: world.topology.historyQueue))
                    == 0)

            // 2. DynamoDB back. The first delivery of event 0 is written and then "crashes" before the
            //    ack (the handler throws after writing), so it is redelivered: still one row.
            let recorder = RecorderWorker(options: options, dynamo: dynamo, logger: logger)
            let crashed = Mutex<Set<String>>([])
            let handled = Atomic<Int>(0)
            let consumerB = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.historyQueue)
            let firstId = ids[0]
            let loopB = MessageWorker(
                consumer: consumerB, deadLetters: sink, logger: logger, senders: nil, decode: RecorderWorker.decode
            ) { m, d in
                try await recorder.handle(m, delivery: d)
                if m.id == firstId, crashed.withLock({ $0.insert(m.id).inserted }) {
                    throw CancellationError()  // written, but not acked: the broker delivers it again
                }
                handled.add(1, ordering: .relaxed)
            }
            let runB = Task { await loopB.run() }
            // And the same event published a second time.
            try await publish(
                publisher, world, type: .event, id: ids[1], target: target, at: at.addingTimeInterval(1),
                body: #"{"reason":"state change 1","score":0.30000000000000004,"count":1}"#)
            let deadlineB = ContinuousClock.now + .seconds(30)
            while handled.load(ordering: .relaxed) < 6, ContinuousClock.now < deadlineB {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(handled.load(ordering: .relaxed) == 6)
            await consumerB.shutdown()
            runB.cancel()

            let rows = try await dynamo.queryAll(
                QueryInput(
                    tableName: events, key: DynamoKeyCondition(partitionKey: "instance_id", equals: .string(target))))
            #expect(rows.count == 4, "three events and one command, once each")
            #expect(
                rows.compactMap { $0["message_id"]?.stringValue }.sorted() == (ids + ["\(world.prefix)-cmd"]).sorted())
            let first = try #require(rows.first { $0["message_id"]?.stringValue == ids[0] })
            #expect(first["timestamp"]?.stringValue == Timestamp.format(at) + "#" + ids[0])
            #expect(first["body"]?.mapValue?["score"]?.numberValue?.text == "0.30000000000000004")
            #expect(first["why"]?.stringValue == "state change 0")
            let command = try #require(rows.first { $0["type"]?.stringValue == "command" })
            #expect(command["who"]?.stringValue == "guest")
            #expect(command["why"]?.stringValue == "looking into it")
            let predictionRows = try await dynamo.queryAll(
                QueryInput(
                    tableName: predictions,
                    key: DynamoKeyCondition(partitionKey: "instance_id", equals: .string(target))))
            #expect(predictionRows.count == 1)
            #expect(
                predictionRows.first?["ttl"]?.numberValue?.text == "\(Int64(at.timeIntervalSince1970) + 30 * 86_400)")
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()

        func cleanup() async {
            _ = try? await dynamo.deleteTable(events)
            _ = try? await dynamo.deleteTable(predictions)
            await admin.close()
            await publisher.shutdown()
            await world.tearDown(instances: [])
        }
    }

    func publish(
        _ publisher: AMQPPublisher, _ world: World, type: MessageType, id: String, target: String, at: Date,
        body: String,
        userId: String? = nil
    ) async throws {
        let json =
            #"{"type":"\#(type.rawValue)","schema_version":1,"id":"\#(id)","target":"\#(target)","occurred_at":"\#(Timestamp.format(at))","sent_at":"\#(Timestamp.format(at))","producer":"test@here","body":\#(body)}"#
        try await publisher.publish(
            OutgoingMessage(
                exchange: world.topology.exchange, routingKey: FleetTopology.routingKey(type, target: target),
                body: Array(json.utf8),
                properties: AMQPProperties(messageId: id, userId: userId)))
    }
}
