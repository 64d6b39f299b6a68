import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Testing

/// A fleet-wide maintenance window through the real broker and Redis (docs/escalation.md, "Maintenance
/// windows"): the decision worker opens the incident but requests no step and pages nobody while the
/// window lasts; still down at its end, one notice says so and the restart follows after the grace period.
@Suite(
    "Decision worker in a maintenance window",
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct MaintenanceDecisionTests {
    @Test(.timeLimit(.minutes(2)))
    func aWindowSuppressesTheStepAndItsEndIsSummarised() async throws {
        let world = try World()
        let name = "\(world.prefix)-patching"
        let instance = try await world.launchTarget(name: name, healthURL: "http://127.0.0.1:9/health")
        let redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let config = try TargetConfigFile(
            data: Data(#"{"defaults": {"grace_period": 1, "failure_threshold": 2, "quorum": false}}"#.utf8))
        // Discovery first: on a loaded machine moto's DescribeInstances took most of an 8 s window in CI, and
        // the test then saw no observation inside the window.
        let targets = try await world.discover(config: config)
        try #require(targets.contains { $0.name == name }, "discovery finds the target")
        // The window: already on, for 8 more seconds (whole seconds: stored times are milliseconds).
        let windowEnd = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 8).rounded(.up))
        let window = MaintenanceWindow(
            start: windowEnd.addingTimeInterval(-60), end: windowEnd, reason: "kernel patching")
        let decision = try await world.decision(
            "decision-mw", redis: redis, publisher: publisher, config: config, tick: .milliseconds(200),
            fleetMaintenance: [window], targets: targets)
        let running = world.runDecision(decision, publisher: publisher, workerName: "decision-mw")
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)
        let requestsConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let requests = Collector<ActionRequest>(requestsConsumer, type: .actionRequest)
        let historyConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.historyQueue)
        let history = Collector<TargetStateChange>(historyConsumer, type: .event)

        func fail(_ i: Int) async throws {
            let observation = Envelope(
                type: .observation, id: "\(world.prefix)-obs-\(i)", target: name, instanceId: instance.instanceId,
                occurredAt: Date(),
                body: ProbeResult(prober: "probe-mw", healthy: false, statusCode: 503, detail: "HTTP 503"))
            try await publisher.publish(
                OutgoingMessage(
                    exchange: topology.exchange, routingKey: FleetTopology.routingKey(.observation, target: name),
                    body: try EnvelopeCodec.encode(observation), properties: AMQPProperties(messageId: observation.id)))
        }

        // Down during the window: the incident opens (history has it), nothing else happens.
        var i = 0
        while Date() < windowEnd.addingTimeInterval(-1) {
            try await fail(i)
            i += 1
            try await Task.sleep(for: .milliseconds(500))
        }
        try #require(i >= 3, "only \(i) observations fitted in the window: the set-up took it")
        let opened = await history.wait { $0.body.kind == "incident_opened" }
        #expect(opened != nil, "the incident is recorded")
        let early = await notices.items.map(\.body.kind)
        #expect(early.isEmpty, "nobody paged during the window: \(early)")
        #expect(await requests.items.isEmpty, "no step during the window")

        // Still down at its end: one notice, then the restart after the 1 s grace period.
        let summary = await notices.wait(timeout: .seconds(20)) { $0.body.kind == .outageDeclared }
        let notice = try #require(summary?.body)
        #expect(notice.id.hasSuffix(":outage_declared:after_maintenance"))
        #expect(notice.detail?.hasPrefix("Still down at the end of the maintenance window") == true)
        #expect(notice.at >= windowEnd)
        let request = await requests.wait(timeout: .seconds(20)) { _ in true }
        #expect(request?.body.step == .restart)
        if let request { #expect(request.sentAt.timeIntervalSince(windowEnd) >= 0.9, "after the grace period") }
        try await Task.sleep(for: .seconds(1))
        #expect(await notices.items.filter { $0.body.kind == .outageDeclared }.count == 1)

        await running.stop()
        await noticesConsumer.shutdown()
        await requestsConsumer.shutdown()
        await historyConsumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        await world.tearDown(instances: [instance.instanceId])
    }
}
