import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// One target walked through the whole ladder by the real probe and decision workers, over the real
/// broker, Redis and moto, with a local HTTP server standing in for the site and a stand-in actuator
/// that records the requests it receives and reports each step as done.
@Suite(
    "Probe and decision workers walk the ladder",
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct LadderIntegrationTests {
    @Test(.timeLimit(.minutes(3)))
    func outageGraceRestartRecoverThenReprovisionThenDRThenNotifyOnly() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-shop"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        let logger = Logger(label: "ladder-test")
        let grace: TimeInterval = 2
        let config = try TargetConfigFile(
            data: Data(
                """
                {"defaults": {"probe_interval": 1, "probe_timeout": 1, "failure_threshold": 2, "recovery_threshold": 1,
                              "grace_period": \(grace), "restart_verification": 60, "reprovision_verification": 60,
                              "failover_verification": 60, "dr_region": "us-west-2"}}
                """.utf8))

        let redis = try await RedisClient.connect(url: world.redisURL)
        let publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        let catalog = TargetCatalog(
            ec2: world.ec2, drRegion: "us-west-2", config: config, fleet: world.prefix, logger: logger)

        var probeOptions = ProbeWorker.Options(proberId: "probe-test")
        probeOptions.tick = .milliseconds(100)
        probeOptions.discoveryInterval = .seconds(5)
        let probe = ProbeWorker(
            options: probeOptions, discover: { try await catalog.discover() }, http: world.http, ec2: world.ec2,
            claims: RedisKeyValueStore(client: redis, keyspace: world.keyspace), publisher: publisher,
            topology: world.topology, logger: logger)

        var decisionOptions = DecisionWorker.Options(workerId: "decision-test")
        decisionOptions.tick = .milliseconds(100)
        let decision = DecisionWorker(
            options: decisionOptions, states: RedisStateStore(client: redis, keyspace: world.keyspace),
            schedule: RedisSchedule(client: redis, keyspace: world.keyspace, name: "decision"), publisher: publisher,
            topology: world.topology, catalog: { try await catalog.discover() }, defaultRegion: "us-east-1",
            logger: logger)
        try await decision.refreshCatalog()

        let observations = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
        let sink = DeadLetterSink(publisher: publisher, topology: world.topology, workerName: "decision-test")
        let decisionLoop = MessageWorker(
            consumer: observations, deadLetters: sink, logger: logger, senders: nil,
            decode: DecisionWorker.decodeObservationQueue, handler: decision.handle)

        // The stand-in actuator: records each request and reports the step done.
        let requestsConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.actionRequestsQueue)
        let topology = world.topology
        let requests = Collector<ActionRequest>(requestsConsumer, type: .actionRequest) { envelope in
            let outcome = ActionOutcome(for: envelope.body, status: .succeeded)
            let reply = Envelope(
                type: .actionEvent, id: "\(envelope.body.idempotencyKey):outcome",
                correlationId: envelope.body.incidentId,
                target: envelope.body.target, occurredAt: Date(), body: outcome)
            try? await publisher.publish(
                OutgoingMessage(
                    exchange: topology.exchange,
                    routingKey: FleetTopology.routingKey(.actionEvent, target: envelope.body.target),
                    body: try EnvelopeCodec.encode(reply), properties: AMQPProperties(messageId: reply.id)))
        }
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)
        let historyConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.historyQueue)
        let history = Collector<TargetStateChange>(historyConsumer, type: .event)

        let running = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await probe.run() }
                group.addTask { await decision.runTicker() }
                group.addTask { await decisionLoop.run() }
            }
        }

        func noticeCount(_ kind: NotificationKind) async -> Int {
            await notices.items.filter { $0.body.kind == kind }.count
        }

        // Outage 1: notice, grace, restart.
        site.set(healthy: false)
        let declared1 = try #require(await notices.wait { $0.body.kind == .outageDeclared })
        #expect(declared1.body.target == name)
        #expect(declared1.body.instanceId == instance.instanceId)
        #expect(declared1.body.nextStep == .restart)
        let nextAt = try #require(declared1.body.nextStepAt)
        #expect(abs(nextAt.timeIntervalSince(declared1.body.at) - grace) < 0.01, "the notice says when the step runs")
        #expect(declared1.body.commands.contains { $0.hasPrefix("recoveryctl ack") }, "the notice says how to respond")
        let restart = try #require(await requests.wait { $0.body.step == .restart })
        #expect(
            restart.body.requestedAt.timeIntervalSince(declared1.body.at) >= grace - 0.05,
            "nothing happens during grace")
        #expect(restart.body.instanceId == instance.instanceId)
        #expect(
            restart.body.idempotencyKey
                == ActionRequest.key(target: name, incidentId: restart.body.incidentId, step: .restart))

        // The site comes back: recovered notice, incident closed.
        site.set(healthy: true)
        let recovered1 = try #require(await notices.wait { $0.body.kind == .recovered })
        #expect(recovered1.body.fixedBy == .restart)
        // History holds the incident's state changes, as `event` messages from the decision worker.
        let incident1 = restart.body.incidentId
        _ = await history.wait { $0.body.kind == "incident_closed" && $0.body.incidentId == incident1 }
        let changes1 = await history.items.filter { $0.body.incidentId == incident1 && $0.target == name }
        #expect(
            changes1.map(\.body.kind) == ["incident_opened", "phase_changed", "incident_closed"],
            "\(changes1.map(\.body.detail))")
        #expect(
            changes1.map(\.body.detail) == [
                "monitoring → pending(restart)", "pending(restart) → in_progress(restart)",
                "in_progress(restart) → monitoring",
            ])
        #expect(changes1.allSatisfy { $0.correlationId == incident1 && $0.body.instanceId == instance.instanceId })

        // Outage 2 within the count window: re-provision.
        site.set(healthy: false)
        let reprovision = try #require(await requests.wait { $0.body.step == .reprovision })
        #expect(reprovision.body.incidentId != restart.body.incidentId)
        site.set(healthy: true)
        let deadline = ContinuousClock.now + .seconds(30)
        while await noticeCount(.recovered) < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await noticeCount(.recovered) == 2)

        // Outage 3: fail over to the DR region.
        site.set(healthy: false)
        let failover = try #require(await requests.wait { $0.body.step == .failover })
        #expect(failover.body.destinationRegion == "us-west-2")
        site.set(healthy: true)
        let deadline3 = ContinuousClock.now + .seconds(30)
        while await noticeCount(.recovered) < 3, ContinuousClock.now < deadline3 {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await noticeCount(.recovered) == 3)

        // Outage 4: notify only.
        site.set(healthy: false)
        let deadline4 = ContinuousClock.now + .seconds(30)
        while await noticeCount(.outageDeclared) < 4, ContinuousClock.now < deadline4 {
            try await Task.sleep(for: .milliseconds(50))
        }
        let fourth = try #require(await notices.items.filter { $0.body.kind == .outageDeclared }.last)
        #expect(fourth.body.nextStep == .notifyOnly)
        #expect(fourth.body.outageCount == 4)
        try await Task.sleep(for: .seconds(Int64(grace) + 2))
        let stepsRequested = await requests.items.map(\.body.step)
        #expect(
            stepsRequested == [.restart, .reprovision, .failover],
            "each step exactly once, and nothing for the fourth outage")

        running.cancel()
        await observations.shutdown()
        await running.value
        await requestsConsumer.shutdown()
        await noticesConsumer.shutdown()
        await historyConsumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}
