import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import Metrics
import Prometheus
import RecoveryCore
import Synchronization
import Testing
#if canImport(Glibc)
    import Glibc
#endif

let amqpURL = ProcessInfo.processInfo.environment["AMQP_URL"]
let managementURL = ProcessInfo.processInfo.environment["RABBITMQ_MANAGEMENT_URL"]

let definitionsPath = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("topology/definitions.json").path

/// The metrics every test in this process records to (the metrics system is bootstrapped once per
/// process); tests look only at series labelled with their own unique queue names.
let testMetrics: PrometheusCollectorRegistry = {
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    return registry
}()

func emittedMetrics() -> String {
    var buffer: [UInt8] = []
    testMetrics.emit(into: &buffer)
    return String(decoding: buffer, as: UTF8.self)
}

@Suite("Fleet topology")
struct FleetTopologyTests {
    @Test func definitionsFileMatchesTheTopologyWorkersDeclare() throws {
        let generated = try FleetTopology().amqp.definitionsJSON() + Data("\n".utf8)
        if ProcessInfo.processInfo.environment["UPDATE_DEFINITIONS"] == "1" {
            try generated.write(to: URL(fileURLWithPath: definitionsPath))
        }
        let onDisk = try Data(contentsOf: URL(fileURLWithPath: definitionsPath))
        #expect(
            onDisk == generated,
            "topology/definitions.json is stale: run UPDATE_DEFINITIONS=1 swift test --filter definitionsFile")
    }

    @Test func everyWorkQueueIsAQuorumQueueWithALimitAndItsOwnDeadLetterQueue() {
        let t = FleetTopology()
        let queues = Dictionary(uniqueKeysWithValues: t.amqp.queues.map { ($0.name, $0) })
        for (name, _) in t.workQueues {
            let q = queues[name]
            #expect(q?.arguments["x-queue-type"] == "quorum")
            #expect(q?.arguments["x-delivery-limit"] == .int(5))
            #expect(q?.arguments["x-dead-letter-exchange"] == .string(t.deadLetterExchange))
            #expect(queues[FleetTopology.deadLetterQueue(for: name)]?.arguments["x-queue-type"] == "quorum")
            #expect(
                t.amqp.bindings.contains {
                    $0.exchange == t.deadLetterExchange && $0.queue == "\(name).dead" && $0.routingKey == name
                })
        }
    }

    @Test func routingKeysCannotBeHijackedByTargetNames() {
        #expect(FleetTopology.routingKey(.observation, target: "shop-web") == "observation.shop-web")
        #expect(FleetTopology.routingKey(.command, target: "a.b#c*") == "command.a_b_c_")
        #expect(FleetTopology.routingKey(.notification, target: nil) == "notification.fleet")
    }
}

struct Ping: Codable, Sendable { var n: Int }

@Suite("Message worker against a real broker", .enabled(if: amqpURL != nil, "set AMQP_URL"))
struct MessageWorkerTests {
    func setUp() throws -> (AMQPConfiguration, FleetTopology) {
        let config = AMQPConfiguration(
            url: try AMQPURL(amqpURL!), connectionName: "worker-test",
            reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .milliseconds(500))
        return (config, FleetTopology(prefix: "test-\(UUID().uuidString.prefix(8).lowercased())", deliveryLimit: 3))
    }

    func tearDown(_ config: AMQPConfiguration, _ topology: FleetTopology) async {
        let admin = AMQPAdmin(configuration: config)
        await admin.deleteAll(of: topology.amqp)
        await admin.close()
    }

    func envelope(_ n: Int, id: String) throws -> [UInt8] {
        try EnvelopeCodec.encode(Envelope(type: .command, id: id, target: "t1", occurredAt: Date(), body: Ping(n: n)))
    }

    @Test func malformedAndRejectedMessagesLandInTheDeadLetterQueueWithTheirReasonAndTheWorkerGoesOn() async throws {
        let (config, topology) = try setUp()
        let publisher = AMQPPublisher(configuration: config, topology: topology.amqp)
        let consumer = AMQPConsumer(configuration: config, topology: topology.amqp, queue: topology.commandsQueue)
        let handled = Mutex<[Int]>([])
        let worker = MessageWorker<Envelope<Ping>>(
            consumer: consumer,
            deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "decision-test"),
            expecting: .command, logger: Logger(label: "test"), senders: nil
        ) { envelope, _ in
            if envelope.body.n < 0 { throw RejectMessage("unknown target t1") }
            handled.withLock { $0.append(envelope.body.n) }
        }
        _ = testMetrics
        let running = Task { await worker.run() }
        let key = FleetTopology.routingKey(.command, target: "t1")
        func send(_ body: [UInt8], id: String) async throws {
            try await publisher.publish(
                OutgoingMessage(
                    exchange: topology.exchange, routingKey: key, body: body,
                    properties: AMQPProperties(messageId: id)))
        }
        try await send(Array("{not json".utf8), id: "bad-json")
        try await send(
            Array(
                #"{"type":"command","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"n":"seven"}}"#
                    .utf8), id: "bad-body")
        try await send(try envelope(-1, id: "rejected"), id: "rejected")
        try await send(try envelope(7, id: "good"), id: "good")

        let dead = AMQPConsumer(
            configuration: config, topology: topology.amqp,
            queue: FleetTopology.deadLetterQueue(for: topology.commandsQueue))
        var letters: [String: AMQPDelivery] = [:]
        for await letter in dead.deliveries {
            letters[letter.properties.messageId ?? ""] = letter
            await dead.ack(letter)
            if letters.count == 3 { break }
        }
        #expect(letters["bad-json"]?.properties.headers["x-reject-reason"]?.stringValue?.hasPrefix("not-json") == true)
        #expect(letters["bad-json"]?.bodyString == "{not json", "the original body is kept for a person to read")
        #expect(letters["bad-body"]?.properties.headers["x-reject-reason"]?.stringValue?.contains("body.n") == true)
        #expect(letters["rejected"]?.properties.headers["x-reject-reason"] == "unknown target t1")
        #expect(letters["rejected"]?.properties.headers["x-original-queue"] == .string(topology.commandsQueue))
        #expect(letters["rejected"]?.properties.headers["x-rejected-by"] == "decision-test")
        // The worker survived all three and handled the good one.
        let deadline = ContinuousClock.now + .seconds(10)
        while handled.withLock({ $0 }) != [7], ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(handled.withLock { $0 } == [7])

        // What happened is counted per queue and result, and the handled messages' queue lag recorded.
        let q = topology.commandsQueue
        // The good one is acked (and counted) after its handler returned: wait for that, bounded.
        let acked = #"recovery_messages_handled_total{queue="\#(q)",result="acked"} 1"#
        let countDeadline = ContinuousClock.now + .seconds(10)
        while !emittedMetrics().contains(acked), ContinuousClock.now < countDeadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let metrics = emittedMetrics()
        #expect(
            metrics.contains(#"recovery_messages_handled_total{queue="\#(q)",result="dead_lettered"} 3"#), "\(metrics)")
        #expect(metrics.contains(#"recovery_messages_handled_total{queue="\#(q)",result="acked"} 1"#))
        // Lag is recorded for the two that decoded (the rejected and the good one), not for broken bodies.
        #expect(metrics.contains(#"recovery_queue_lag_seconds_count{queue="\#(q)"} 2"#))

        await consumer.shutdown()
        await running.value
        await dead.shutdown()
        let admin = AMQPAdmin(configuration: config)
        #expect(try await admin.messageCount(queue: topology.commandsQueue) == 0, "everything was acked")
        await admin.close()
        await publisher.shutdown()
        await tearDown(config, topology)
    }

    @Test func aTransientFailureIsRetriedAndSucceeds() async throws {
        let (config, topology) = try setUp()
        let publisher = AMQPPublisher(configuration: config, topology: topology.amqp)
        let consumer = AMQPConsumer(configuration: config, topology: topology.amqp, queue: topology.commandsQueue)
        let attempts = Mutex(0)
        struct Flaky: Error {}
        _ = testMetrics
        let worker = MessageWorker<Envelope<Ping>>(
            consumer: consumer, deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "t"),
            expecting: .command, logger: Logger(label: "test"), senders: nil
        ) { _, _ in
            let n = attempts.withLock {
                $0 += 1
                return $0
            }
            if n < 3 { throw Flaky() }
        }
        let running = Task { await worker.run() }
        try await publisher.publish(
            OutgoingMessage(
                exchange: topology.exchange, routingKey: "command.t1", body: try envelope(1, id: "flaky"),
                properties: AMQPProperties(messageId: "flaky")))
        let deadline = ContinuousClock.now + .seconds(10)
        while attempts.withLock({ $0 }) < 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(attempts.withLock { $0 } == 3)
        // The third attempt is acked (and counted) after its handler returns: wait for that, bounded.
        let counted = #"recovery_messages_handled_total{queue="\#(topology.commandsQueue)",result="acked"} 1"#
        let countDeadline = ContinuousClock.now + .seconds(10)
        while !emittedMetrics().contains(counted), ContinuousClock.now < countDeadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let metrics = emittedMetrics()
        #expect(
            metrics.contains(
                #"recovery_messages_handled_total{queue="\#(topology.commandsQueue)",result="requeued"} 2"#),
            "\(metrics)")
        #expect(
            metrics.contains(#"recovery_messages_handled_total{queue="\#(topology.commandsQueue)",result="acked"} 1"#))
        await consumer.shutdown()
        await running.value
        let admin = AMQPAdmin(configuration: config)
        #expect(try await admin.messageCount(queue: topology.commandsQueue) == 0)
        #expect(try await admin.messageCount(queue: FleetTopology.deadLetterQueue(for: topology.commandsQueue)) == 0)
        await admin.close()
        await publisher.shutdown()
        await tearDown(config, topology)
    }
}

@Suite(
    "Definitions file against a real broker",
    .enabled(if: managementURL != nil && amqpURL != nil, "set RABBITMQ_MANAGEMENT_URL and AMQP_URL"))
struct DefinitionsImportTests {
    /// Imports topology/definitions.json through the management API (as an operator would), then
    /// declares the same topology over AMQP as a worker does at start-up: no 406 means they agree.
    @Test func definitionsImportAndWorkersAgreeWithThem() async throws {
        let status = try await spawnAndWait([
            "/usr/bin/curl", "-sf", "-u", "guest:guest", "-H", "content-type: application/json",
            "-X", "POST", "--data-binary", "@\(definitionsPath)", "\(managementURL!)/api/definitions",
        ])
        #expect(status == 0, "the management API refused topology/definitions.json")
        let admin = AMQPAdmin(configuration: AMQPConfiguration(url: try AMQPURL(amqpURL!)))
        try await admin.declare(FleetTopology().amqp)
        await admin.close()
    }
}

/// Runs a command to completion on a thread of its own and returns its exit status. It takes seconds
/// (a broker start or restart), so it must not block one of the cooperative pool's few threads: that
/// would stall every other test running in parallel. (posix_spawn + waitpid, because Foundation's
/// Process.waitUntilExit never returned here for a script that leaves a daemon running.)
func spawnAndWait(_ argv: [String]) async throws -> Int32 {
    let result: Result<Int32, POSIXError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            var pid: pid_t = 0
            // The child must not inherit the test process's sockets (posix_spawn does not close them): a
            // broker that kept a copy of a test's connection would hold it open after the test closed it.
            // So a small bash prologue closes every inherited descriptor above 2, then runs the command.
            let closeInherited =
                #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null; exec "$@""#
            let cArgs = (["/bin/bash", "-c", closeInherited, "spawn"] + argv).map { strdup($0) } + [nil]
            defer { cArgs.forEach { free($0) } }
            let rc = posix_spawn(&pid, "/bin/bash", nil, nil, cArgs, environ)
            guard rc == 0 else {
                continuation.resume(returning: .failure(POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO)))
                return
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            continuation.resume(
                returning: .success((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)))
        }
        thread.start()
    }
    return try result.get()
}
