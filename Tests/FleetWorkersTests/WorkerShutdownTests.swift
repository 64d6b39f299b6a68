import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// Graceful shutdown of each worker's real service list (`<Worker>.services(...)`, what main.swift runs),
/// on the memory drivers: work in flight when shutdown is triggered finishes (its effect published or
/// recorded, its message acked) before any client closes, and the clients close in reverse order.
///
/// Deterministic, not by timing: the in-flight call is held until shutdown is triggered, then for up to
/// a second longer unless a client closes meanwhile. Listed in the wrong order, a client closes in that
/// second, the held call then fails on the closed driver, and the test sees both.
@Suite("Graceful shutdown of each worker on memory drivers")
struct WorkerShutdownTests {
    /// The in-flight hold, and each client's close with whether the work was done by then.
    final class Shutdown: Sendable {
        private let state = Mutex<(started: Bool, triggered: Bool, closed: [String])>((false, false, []))
        /// Whether the in-flight work's effect is complete (published, recorded, acked).
        let done: @Sendable () async -> Bool

        init(done: @escaping @Sendable () async -> Bool) { self.done = done }

        var closed: [String] { state.withLock { $0.closed } }

        /// Runs inside the in-flight call: returns after shutdown was triggered and either a client closed
        /// or a second passed.
        func hold() async {
            state.withLock { $0.started = true }
            let limit = ContinuousClock.now + .seconds(60)
            while !state.withLock({ $0.triggered }), ContinuousClock.now < limit {
                try? await Task.sleep(for: .milliseconds(5))
            }
            let patience = ContinuousClock.now + .seconds(1)
            while state.withLock({ $0.closed.isEmpty }), ContinuousClock.now < patience {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }

        /// A client whose close records its name, marked when the in-flight work was not done yet.
        func client(_ name: String, close: @escaping @Sendable () async -> Void = {}) -> ClientService {
            ClientService(name) { [self] in
                let finished = await done()
                state.withLock { $0.closed.append(finished ? name : "\(name) (before the work was done)") }
                await close()
            }
        }

        /// Runs `services` in a ServiceGroup configured as the workers' are, triggers graceful shutdown once
        /// the work is held in flight, and returns when the group has stopped.
        func run(_ services: [any Service]) async throws {
            try await testGracefulShutdown { trigger in
                let group = ServiceGroup(
                    configuration: try WorkerRuntime.configuration(
                        services: services, logger: Logger(label: "shutdown-test")))
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await group.run() }
                    let started = await eventually { [self] in state.withLock { $0.started } }
                    #expect(started, "the work reached the held call")
                    trigger.triggerGracefulShutdown()
                    state.withLock { $0.triggered = true }
                    try await tasks.waitForAll()
                }
            }
        }
    }

    static let topology = FleetTopology(prefix: "mem")
    static let target = Target(
        identity: TargetIdentity(name: "shop", homeRegion: "us-east-1"),
        instance: InstanceRef(id: "i-0shop", region: "us-east-1"), instanceState: "running",
        healthURL: "https://shop.example.com/health", settings: TargetSettings())

    static func publisher(_ user: String) -> MemoryPublisher {
        MemoryPublisher(broker: MemoryBroker(exchanges: [topology.exchange, topology.deadLetterExchange]), user: user)
    }

    static func envelope<Body: Codable & Sendable>(_ type: MessageType, id: String, target: String?, body: Body) throws
        -> [UInt8]
    {
        try EnvelopeCodec.encode(Envelope(type: type, id: id, target: target, occurredAt: Date(), body: body))
    }

    @Test(
        "probe: a check in flight publishes its observation before the publisher, HTTP and Redis close",
        .timeLimit(.minutes(3)))
    func probe() async throws {
        let http = MemoryHTTP()
        let publisher = Self.publisher("fleet-probe")
        let shutdown = Shutdown(done: { publisher.published.count == 1 })
        http.script(Self.target.healthURL!, .status(200, "ok"), hold: { _ in await shutdown.hold() })
        var options = ProbeWorker.Options(proberId: "probe-a")
        options.tick = .milliseconds(10)
        // An hour's interval: the held check is the only one, wherever the target's phase puts its next interval.
        var hourly = Self.target
        hourly.settings.probeInterval = 3600
        let target = hourly
        let worker = ProbeWorker(
            options: options, discover: { [target] }, http: http, ec2: MemoryInstanceStatuses(),
            claims: MemoryKeyValueStore(), publisher: publisher, topology: Self.topology,
            logger: Logger(label: "probe"))
        try await shutdown.run(
            worker.services(clients: [
                shutdown.client("redis"),
                shutdown.client("http") { http.shutdown() },
                shutdown.client("broker publisher") { publisher.shutdown() },
            ]))
        #expect(shutdown.closed == ["broker publisher", "http", "redis"])
        let observations = try publisher.published.map {
            try EnvelopeCodec.decode($0.body, as: ProbeResult.self, expecting: .observation)
        }
        #expect(
            observations.map(\.body.healthy) == [true], "the check's own result, not a failure made by shutting down")
        #expect(http.requests.count == 1, "no check started after the shutdown")
    }

    @Test(
        "notifier: a notice in flight is sent, marked and acked before the publisher, HTTP and Redis close",
        .timeLimit(.minutes(3)))
    func notifier() async throws {
        let http = MemoryHTTP()
        let markers = MemoryKeyValueStore()
        let publisher = Self.publisher("fleet-notifier")
        let notifications = MemoryDeliverySource(queue: Self.topology.notificationsQueue)
        let url = "https://hooks.slack.com/services/T0/B0/SECRET"
        let marker = NotifierWorker.markerKey(noticeId: "n-1", channel: "slack")
        let shutdown = Shutdown(done: {
            let marked = (try? await markers.get(marker)) != nil
            return marked && notifications.acked.count == 1 && http.requests(to: url).count == 1
        })
        http.script(url, .status(200, "ok"), hold: { _ in await shutdown.hold() })
        let worker = NotifierWorker(
            options: NotifierWorker.Options(workerId: "notifier-test"),
            router: FleetChannels([
                WebhookChannel.slack(http: http, url: url, channel: nil, username: nil, formatter: NoticeFormatter())
            ]),
            markers: markers,
            deadLetters: DeadLetterSink(publisher: publisher, topology: Self.topology, workerName: "notifier-test"),
            queue: Self.topology.notificationsQueue, logger: Logger(label: "notifier"), sleep: { _ in })
        let notice = Notice(id: "n-1", kind: .outageDeclared, at: Date(), target: "shop", detail: "down")
        notifications.deliver(
            try Self.envelope(.notification, id: "n-1", target: "shop", body: notice),
            properties: AMQPProperties(messageId: "n-1", userId: "fleet-decision"))
        try await shutdown.run(
            worker.services(
                notifications: notifications, identities: .deploymentDefaults,
                ownUser: "fleet-notifier",
                clients: [
                    shutdown.client("redis"),
                    shutdown.client("http") { http.shutdown() },
                    shutdown.client("broker publisher") { publisher.shutdown() },
                ]))
        #expect(shutdown.closed == ["broker publisher", "http", "redis"])
        #expect(notifications.unacked.isEmpty)
        #expect(publisher.published.isEmpty, "nothing dead-lettered")
    }

    @Test(
        "recorder: a history message in flight is written and acked, and the last metrics sent, before the publisher and HTTP close",
        .timeLimit(.minutes(3)))
    func recorder() async throws {
        let history = MemoryDeliverySource(queue: Self.topology.historyQueue)
        let cloudWatch = MemoryMetricSink()
        let shutdown = Shutdown(done: {
            history.acked.count == 1
                && cloudWatch.calls.flatMap(\.data).contains {
                    $0.metricName == "RecoveryActionsExecuted" && $0.value == 1
                }
        })
        let tables = MemoryTables(sortKey: RecorderWorker.sortKey, hold: { await shutdown.hold() })
        let publisher = Self.publisher("fleet-recorder")
        let logger = Logger(label: "recorder")
        let recorder = RecorderWorker(
            options: RecorderWorker.Options(eventsTable: "events", predictionsTable: "predictions"), dynamo: tables,
            logger: logger,
            metrics: RecoveryMetrics(cloudWatch: cloudWatch, logger: logger))
        history.deliver(
            try Self.envelope(
                .actionEvent, id: "a-1", target: "shop", body: ["status": "succeeded", "step": "restart"]),
            properties: AMQPProperties(messageId: "a-1", userId: "fleet-actuator"))
        try await shutdown.run(
            recorder.services(
                history: history,
                deadLetters: DeadLetterSink(publisher: publisher, topology: Self.topology, workerName: "recorder-test"),
                identities: .deploymentDefaults, ownUser: "fleet-recorder",
                clients: [
                    shutdown.client("http"),
                    shutdown.client("broker publisher") { publisher.shutdown() },
                ]))
        #expect(shutdown.closed == ["broker publisher", "http"])
        let rows = tables.items("events")
        #expect(rows.count == 1)
        #expect(rows.first?["message_id"] == .string("a-1"))
        #expect(history.unacked.isEmpty)
    }

    @Test(
        "predictor: a prediction request in flight publishes its predictions and is acked before the publisher, HTTP and Redis close",
        .timeLimit(.minutes(3)))
    func predictor() async throws {
        let requests = MemoryDeliverySource(queue: Self.topology.predictionRequestsQueue)
        let publisher = Self.publisher("fleet-predictor")
        let claims = MemoryKeyValueStore()
        let clock = TestClock()
        let shutdown = Shutdown(done: {
            requests.acked.count == 1
                && publisher.published.contains { $0.properties.type == MessageType.prediction.rawValue }
        })
        // A disk flat at 40 % for four days, then filling 0.5 %/h: full in about two days.
        let metrics = MemoryMetricData(hold: { await shutdown.hold() }) { query, end in
            guard query.id.hasSuffix("_disk") else { return [] }
            return (0..<168).map { (i: Int) -> (timestamp: Date, value: Double) in
                let hoursAgo = Double(167 - i)
                let filled = Double(max(0, i - 96)) * 0.5
                return (end.addingTimeInterval(-hoursAgo * 3600), 40 + filled)
            }
        }
        let worker = PredictorWorker(
            options: PredictorWorker.Options(workerId: "predictor-test"), discover: { [Self.target] },
            cloudWatch: metrics, claims: claims, publisher: publisher, topology: Self.topology,
            logger: Logger(label: "predictor"), clock: clock.now)
        // The schedule's slot is another replica's: only the request predicts.
        let slot = Int64(clock.now().timeIntervalSince1970 / 3600)
        #expect(try await claims.setIfAbsent("predict:shop:\(slot)", "predictor-other", expiry: .seconds(7200)))
        var identities = FleetIdentities.deploymentDefaults
        identities.users[.operator] = ["alice"]
        requests.deliver(
            try Self.envelope(.predictionRequest, id: "r-1", target: "shop", body: PredictionRequest(reason: "test")),
            properties: AMQPProperties(messageId: "r-1", userId: "alice"))
        try await shutdown.run(
            worker.services(
                requests: requests, identities: identities, ownUser: "fleet-predictor",
                clients: [
                    shutdown.client("redis"),
                    shutdown.client("http"),
                    shutdown.client("broker publisher") { publisher.shutdown() },
                ]))
        #expect(shutdown.closed == ["broker publisher", "http", "redis"])
        let predictions = try publisher.published.map {
            try EnvelopeCodec.decode($0.body, as: PredictionBody.self, expecting: .prediction)
        }
        #expect(!predictions.isEmpty)
        #expect(predictions.allSatisfy { $0.id.hasPrefix("prediction-request-r-1-") && $0.target == "shop" })
        // One call for the fast series (two weeks), one for the slow (the lookback): a request reads all seven.
        #expect(metrics.requests.count == 2, "the request alone fetched metrics")
        #expect(requests.unacked.isEmpty)
    }
}
