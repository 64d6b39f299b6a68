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

/// One incident walked by the real probe, decision and actuator on a world's broker, Redis client and moto,
/// with two faults injected: one during the grace period (after the outage is declared) and one just
/// before the actuator sends RebootInstances (it holds the request, unacknowledged, and its lock). The
/// cluster and Sentinel suites say what the faults are.
///
/// The incident must close as recovered by the restart, and the restart must run once: one
/// RebootInstances reaching AWS, one state change of each kind, one outcome.
struct IncidentUnderFaults {
    struct Workers: Sendable {
        let publisher: AMQPPublisher
        let actionRequests: AMQPConsumer
        let consumers: [AMQPConsumer]
    }

    struct Report {
        /// The lock's fencing token the step held when the second fault struck, and the step record's at the
        /// end (larger if another actor resumed it).
        var fenceAtFault: UInt64?
        var finalRecordFence: UInt64?
        /// The target's name: the name of its lock.
        var target = ""
    }

    let world: World
    let redis: RedisClient
    let label: String

    /// `ready` runs once the workers run; `inGrace` and `beforeReboot` inject the faults and say what they did.
    @discardableResult
    func run(
        ready: @escaping @Sendable (Workers) async throws -> Void = { _ in },
        inGrace: @escaping @Sendable (Workers) async throws -> String,
        beforeReboot: @escaping @Sendable (Workers) async throws -> String
    ) async throws -> Report {
        let world = self.world
        let redis = self.redis
        let site = try await FakeSite()
        let name = "\(world.prefix)-shop"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        let logger = Logger(label: "\(label)-incident")
        let topology = world.topology
        let config = try TargetConfigFile(
            data: Data(
                """
                {"defaults": {"probe_interval": 1, "probe_timeout": 1, "failure_threshold": 2, "recovery_threshold": 1,
                              "grace_period": 8, "restart_verification": 60}}
                """.utf8))
        let catalog = TargetCatalog(ec2: world.ec2, drRegion: nil, config: config, fleet: world.prefix, logger: logger)
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let sink = DeadLetterSink(publisher: publisher, topology: topology, workerName: "\(label)-incident")

        var probeOptions = ProbeWorker.Options(proberId: "probe-\(label)")
        probeOptions.tick = .milliseconds(100)
        probeOptions.discoveryInterval = .seconds(5)
        let probe = ProbeWorker(
            options: probeOptions, discover: { try await catalog.discover() }, http: world.http, ec2: world.ec2,
            claims: RedisKeyValueStore(client: redis, keyspace: world.keyspace), publisher: publisher,
            topology: topology, logger: logger)
        let decision = try await world.decision(
            "decision-\(label)", redis: redis, publisher: publisher, config: config, tick: .milliseconds(100),
            logger: logger)

        // The actuator's AWS calls are logged; the first RebootInstances waits for the second fault.
        let requestLog = RequestLog(world.http)
        let observations = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.observationsQueue)
        let actionRequests = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let historyConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.historyQueue)
        let workers = Workers(
            publisher: publisher, actionRequests: actionRequests,
            consumers: [observations, actionRequests, noticesConsumer, historyConsumer])
        let faults = Mutex<[String]>([])
        let locks = RedisLockStore(client: redis, keyspace: world.keyspace)
        let fenceAtFault = Mutex<UInt64?>(nil)
        let beforeRebootCall = BeforeFirstCall(requestLog, action: "RebootInstances") {
            fenceAtFault.withLock { $0 = nil }
            let fence = try await locks.currentFencingToken(name: name)
            fenceAtFault.withLock { $0 = fence }
            let what = try await beforeReboot(workers)
            faults.withLock { $0.append(what) }
            // The reboot that is about to go out fixes the site.
            site.set(healthy: true)
        }
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: beforeRebootCall, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
        let records = StepRecordStore(states: RedisStateStore(client: redis, keyspace: world.keyspace))
        let actuator = ActuatorWorker(
            options: ActuatorHarness.fastOptions("actuator-\(label)"), ec2: EC2Client(aws),
            route53: Route53Client(aws), http: world.http, locks: locks, records: records,
            aborts: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
            publisher: publisher, topology: topology, config: ActuatorConfig(), logger: logger)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)
        let history = DeliveryLog(historyConsumer)

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
        var report = Report(target: name)
        do {
            try await ready(workers)

            // The outage; during the grace period, the first fault.
            site.set(healthy: false)
            let declared = try #require(await notices.wait(timeout: .seconds(60)) { $0.body.kind == .outageDeclared })
            let first = try await inGrace(workers)
            faults.withLock { $0.append(first) }
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
                return ClusterIncidentTests.changes(items, incident: incident).contains { $0.kind == "incident_closed" }
                    && ClusterIncidentTests.envelopes(items, type: .actionEvent, as: ActionOutcome.self).contains {
                        $0.body.incidentId == incident
                    }
            }
            // Late redeliveries have a moment to arrive before the counts.
            try await Task.sleep(for: .seconds(2))

            let changes = ClusterIncidentTests.changes(await history.items, incident: incident)
            #expect(
                changes.map(\.kind) == ["incident_opened", "phase_changed", "incident_closed"],
                "one incident, one step: \(changes.map(\.detail))")
            #expect(requestLog.actions("RebootInstances").count == 1, "the restart rebooted once")
            #expect(requestLog.mutations.map(\.action) == ["RebootInstances"], "\(requestLog.mutations)")
            let outcomes = ClusterIncidentTests.envelopes(
                await history.items, type: .actionEvent, as: ActionOutcome.self)
            #expect(Set(outcomes.map(\.body.idempotencyKey)).count == 1, "one step, one outcome")
            #expect(
                outcomes.allSatisfy { $0.body.status == .succeeded },
                "\(outcomes.map { "\($0.body.status): \($0.body.reason ?? "")" })")
            let declaredIds = await notices.items.filter { $0.body.kind == .outageDeclared && $0.target == name }.map(
                \.id)
            #expect(Set(declaredIds).count == 1, "one outage declared")
            report.fenceAtFault = fenceAtFault.withLock { $0 }
            if let key = outcomes.first?.body.idempotencyKey {
                report.finalRecordFence = try await records.load(key)?.fencingToken
            }
            print(
                """
                \(label) incident: \(faults.withLock { $0 }.joined(separator: "; ")); \
                closed as \(changes.last?.detail ?? "-"); RebootInstances reached AWS \
                \(requestLog.actions("RebootInstances").count) time(s); history deliveries \
                \(await history.items.count) (\(Set(await history.items.compactMap(\.properties.messageId)).count) distinct); \
                fence at the fault \(report.fenceAtFault.map(String.init) ?? "-"), in the record at the end \
                \(report.finalRecordFence.map(String.init) ?? "-")
                """)
        } catch {
            Issue.record(error)
        }

        running.cancel()
        for consumer in workers.consumers { await consumer.shutdown(drainTimeout: .zero) }
        await running.value
        await publisher.shutdown(drainTimeout: .zero)
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
        return report
    }
}
