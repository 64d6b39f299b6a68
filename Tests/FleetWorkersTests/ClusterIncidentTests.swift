import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// One incident walked by the real probe, decision and actuator over a three-node RabbitMQ cluster
/// (scripts/cluster.sh), with Redis and moto as usual, while broker nodes die under it:
///
/// 1. once the outage is declared, node 2 is killed: every worker's node and the leader of every queue of
///    the fleet (a quorum queue's leader is the node that declared it, and the workers declared from 2);
/// 2. with node 2 back, just before the actuator sends RebootInstances (it holds the request,
///    unacknowledged), the node its consumer is on is killed: the broker hands the request out again.
///
/// The incident must close as recovered by the restart, and the restart must run once: one
/// RebootInstances reaching AWS, one state change of each kind, one outcome.
@Suite(
    "An incident on a three-node broker cluster",
    .enabled(
        if: servicesAvailable && BrokerCluster.isAvailable,
        "set the services' and the cluster's variables (scripts/services.sh env, scripts/cluster.sh env)"))
struct ClusterIncidentTests {
    @Test(.timeLimit(.minutes(4)))
    func anIncidentCompletesOnceWhileItsBrokerNodesAreKilled() async throws {
        try await BrokerCluster.exclusively { cluster in
            try await Self.incident(cluster)
        }
    }

    static func incident(_ cluster: BrokerCluster) async throws {
        let world = try World(amqp: cluster.configuration(first: 2, name: "cluster-incident"))
        let site = try FakeSite()
        let name = "\(world.prefix)-shop"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        let logger = Logger(label: "cluster-incident")
        let topology = world.topology
        let config = try TargetConfigFile(
            data: Data(
                """
                {"defaults": {"probe_interval": 1, "probe_timeout": 1, "failure_threshold": 2, "recovery_threshold": 1,
                              "grace_period": 8, "restart_verification": 60}}
                """.utf8))
        let catalog = TargetCatalog(ec2: world.ec2, drRegion: nil, config: config, fleet: world.prefix, logger: logger)
        let redis = try await RedisClient.connect(url: world.redisURL)
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let sink = DeadLetterSink(publisher: publisher, topology: topology, workerName: "cluster-incident")

        var probeOptions = ProbeWorker.Options(proberId: "probe-cluster")
        probeOptions.tick = .milliseconds(100)
        probeOptions.discoveryInterval = .seconds(5)
        let probe = ProbeWorker(
            options: probeOptions, discover: { try await catalog.discover() }, http: world.http, ec2: world.ec2,
            claims: RedisKeyValueStore(client: redis, keyspace: world.keyspace), publisher: publisher,
            topology: topology, logger: logger)
        let decision = try await world.decision(
            "decision-cluster", redis: redis, publisher: publisher, config: config, tick: .milliseconds(100),
            logger: logger)

        // The actuator's AWS calls are logged; the first RebootInstances waits for the second fault.
        let requestLog = RequestLog(world.http)
        let observations = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.observationsQueue)
        let actionRequests = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let faults = Mutex<[String]>([])
        let beforeReboot = BeforeFirstCall(requestLog, action: "RebootInstances") {
            // Node 2 back first: two nodes of three must stay up.
            try await cluster.start()
            let node = try #require(cluster.node(at: actionRequests.connectedNode))
            let leader = try await cluster.leader(of: topology.actionRequestsQueue)
            try await cluster.kill(node)
            faults.withLock {
                $0.append("mid-step: killed node \(node), the actuator's (the requests queue's leader: node \(leader))")
            }
            // The reboot that is about to go out fixes the site.
            site.set(healthy: true)
        }
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: beforeReboot, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
        let actuator = ActuatorWorker(
            options: ActuatorHarness.fastOptions("actuator-cluster"), ec2: EC2Client(aws),
            route53: Route53Client(aws), http: world.http,
            locks: RedisLockStore(client: redis, keyspace: world.keyspace),
            records: StepRecordStore(states: RedisStateStore(client: redis, keyspace: world.keyspace)),
            aborts: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
            publisher: publisher, topology: topology, config: ActuatorConfig(), logger: logger)
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)
        let historyConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.historyQueue)
        let history = DeliveryLog(historyConsumer)
        let consumers = [observations, actionRequests, noticesConsumer, historyConsumer]

        let running = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await probe.run() }
                group.addTask { await decision.runTicker() }
                group.addTask {
                    await MessageWorker(
                        consumer: observations, deadLetters: sink, logger: logger, senders: nil,
                        decode: DecisionWorker.decodeObservationQueue, handler: decision.handle
                    ).run()
                }
                group.addTask {
                    await MessageWorker<Envelope<ActionRequest>>(
                        consumer: actionRequests, deadLetters: sink, expecting: .actionRequest, logger: logger,
                        senders: nil, handler: actuator.handle
                    ).run()
                }
            }
        }
        do {
            try await poll("every worker on node 2", timeout: .seconds(60)) {
                consumers.allSatisfy { cluster.node(at: $0.connectedNode) == 2 }
                    && cluster.node(at: publisher.connectedNode) == 2
            }
            #expect(try await cluster.leader(of: topology.actionRequestsQueue) == 2)

            // The outage; during the grace period, node 2 dies with every worker's connection and leader.
            site.set(healthy: false)
            let declared = try #require(await notices.wait(timeout: .seconds(60)) { $0.body.kind == .outageDeclared })
            try await cluster.kill(2)
            faults.withLock { $0.append("in grace: killed node 2, every worker's and every queue's leader") }
            let incident = try #require(declared.body.incidentId)

            // The restart runs (the second fault inside it), the site answers, the decision verifies.
            let recovered = try #require(
                await notices.wait(timeout: .seconds(120)) {
                    $0.body.kind == .recovered && $0.body.incidentId == incident
                })
            #expect(recovered.body.fixedBy == .restart)
            // The decision closes the incident on the site's health; the actuator's outcome may come after.
            try await poll("the incident's close and the step's outcome reach the history queue", timeout: .seconds(90))
            {
                let items = await history.items
                return Self.changes(items, incident: incident).contains { $0.kind == "incident_closed" }
                    && Self.envelopes(items, type: .actionEvent, as: ActionOutcome.self).contains {
                        $0.body.incidentId == incident
                    }
            }
            // Late redeliveries have a moment to arrive before the counts.
            try await Task.sleep(for: .seconds(2))

            let changes = Self.changes(await history.items, incident: incident)
            #expect(
                changes.map(\.kind) == ["incident_opened", "phase_changed", "incident_closed"],
                "one incident, one step: \(changes.map(\.detail))")
            #expect(requestLog.actions("RebootInstances").count == 1, "the restart rebooted once")
            #expect(requestLog.mutations.map(\.action) == ["RebootInstances"], "\(requestLog.mutations)")
            let outcomes = Self.envelopes(await history.items, type: .actionEvent, as: ActionOutcome.self)
            #expect(Set(outcomes.map(\.body.idempotencyKey)).count == 1, "one step, one outcome")
            #expect(outcomes.allSatisfy { $0.body.status == .succeeded })
            let declaredIds = await notices.items.filter { $0.body.kind == .outageDeclared && $0.target == name }.map(
                \.id)
            #expect(Set(declaredIds).count == 1, "one outage declared")
            print(
                """
                cluster incident: \(faults.withLock { $0 }.joined(separator: "; ")); \
                closed as \(changes.last?.detail ?? "-"); RebootInstances reached AWS \
                \(requestLog.actions("RebootInstances").count) time(s); history deliveries \
                \(await history.items.count) (\(Set(await history.items.compactMap(\.properties.messageId)).count) distinct)
                """)
        } catch {
            Issue.record(error)
        }

        running.cancel()
        for consumer in consumers { await consumer.shutdown(drainTimeout: .zero) }
        await running.value
        await publisher.shutdown(drainTimeout: .zero)
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }

    /// The incident's state changes from the history queue, each message once (by id).
    static func changes(_ deliveries: [AMQPDelivery], incident: String) -> [TargetStateChange] {
        envelopes(deliveries, type: .event, as: TargetStateChange.self).map(\.body).filter {
            $0.incidentId == incident
        }
    }

    static func envelopes<Body: Codable & Sendable>(_ deliveries: [AMQPDelivery], type: MessageType, as: Body.Type)
        -> [Envelope<Body>]
    {
        var seen = Set<String>()
        return deliveries.compactMap { delivery in
            guard let envelope = try? EnvelopeCodec.decode(delivery.body, as: Body.self, expecting: type),
                seen.insert(envelope.id).inserted
            else { return nil }
            return envelope
        }
    }
}

/// Passes every request on to `inner`, but runs `pause` before the first request of `action`.
final class BeforeFirstCall: HTTPExecuting, Sendable {
    let inner: RequestLog
    let action: String
    let pause: @Sendable () async throws -> Void
    private let done = Atomic<Bool>(false)

    init(_ inner: RequestLog, action: String, pause: @escaping @Sendable () async throws -> Void) {
        self.inner = inner
        self.action = action
        self.pause = pause
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        if RequestLog.action(request, body: String(decoding: request.body, as: UTF8.self)) == action,
            !done.exchange(true, ordering: .relaxed)
        {
            try await pause()
        }
        return try await inner.execute(request)
    }
}
