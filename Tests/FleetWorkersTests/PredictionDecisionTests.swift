import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Testing

/// The decision worker and predictions, through the real broker and Redis: a high-confidence prediction
/// is told, and after the grace period an SSM repair is requested once; a medium one changes nothing.
@Suite(
    "Decision worker acts on predictions", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct PredictionDecisionTests {
    @Test(.timeLimit(.minutes(2)))
    func aHighConfidenceDiskPredictionIsToldThenRepairedOnceAfterTheGracePeriod() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-disk"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        let redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let config = try TargetConfigFile(data: Data(#"{"defaults": {"grace_period": 2}}"#.utf8))
        let decision = try await world.decision(
            "decision-pred", redis: redis, publisher: publisher, config: config, tick: .milliseconds(200))
        let running = world.runDecision(decision, publisher: publisher, workerName: "decision-pred")
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)
        let requestsConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let requests = Collector<ActionRequest>(requestsConsumer, type: .actionRequest)

        func publish(_ confidence: Double, kind: PredictionKind, id: String) async throws {
            let now = Date()
            let prediction = Prediction(
                kind: kind, confidence: confidence, metric: kind == .diskExhaustion ? .disk : .cpu,
                detail: "\(kind.rawValue) expected", factors: [PredictionFactor("level", 91.5, "percent used now")],
                window: PredictionWindow(
                    from: now.addingTimeInterval(12 * 3600), to: now.addingTimeInterval(16 * 3600)), evaluatedAt: now)
            let body = PredictionBody(prediction, highConfidenceThreshold: 0.8, lookbackHours: 168)
            let envelope = Envelope(
                type: .prediction, id: id, target: name, instanceId: instance.instanceId, occurredAt: now, body: body)
            try await publisher.publish(
                OutgoingMessage(
                    exchange: topology.exchange, routingKey: FleetTopology.routingKey(.prediction, target: name),
                    body: try EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: id)))
        }

        // A medium prediction is history only: no notice, no plan.
        try await publish(0.55, kind: .cpuAnomaly, id: "\(world.prefix)-p-medium")
        // A high-confidence disk prediction, delivered twice (a redelivery, or the next hour's run).
        try await publish(0.93, kind: .diskExhaustion, id: "\(world.prefix)-p-disk")
        try await publish(0.95, kind: .diskExhaustion, id: "\(world.prefix)-p-disk-next")

        let told = await notices.wait { $0.body.kind == .troublePredicted }
        #expect(told?.body.repair == "ssm disk-cleanup")
        #expect(told?.body.nextStepAt != nil)
        #expect(told?.body.commands.first == "recoveryctl ack \(name)")
        let request = await requests.wait(timeout: .seconds(30)) { _ in true }
        let repair = try #require(request?.body.repair)
        #expect(repair.kind == .ssm)
        #expect(repair.action == .ssm(document: "disk-cleanup", parameters: [:]))
        #expect(request?.body.idempotencyKey == "\(name)/repair/ssm/\(world.prefix)-p-disk")
        #expect(request?.body.instanceId == instance.instanceId)
        // Requested only after the grace period (2 s) from the notice.
        if let told, let request { #expect(request.sentAt.timeIntervalSince(told.body.at) >= 1.9) }
        let started = await notices.wait { $0.body.kind == .repairStarted }
        #expect(started != nil)

        // The actuator's outcome closes the plan with a notice.
        let outcome = ActionOutcome(for: request!.body, status: .succeeded)
        let outcomeEnvelope = Envelope(
            type: .actionEvent, id: "\(world.prefix)-outcome", target: name, occurredAt: Date(), body: outcome)
        try await publisher.publish(
            OutgoingMessage(
                exchange: topology.exchange, routingKey: FleetTopology.routingKey(.actionEvent, target: name),
                body: try EnvelopeCodec.encode(outcomeEnvelope),
                properties: AMQPProperties(messageId: outcomeEnvelope.id)))
        let done = await notices.wait { $0.body.kind == .repairSucceeded }
        #expect(done != nil)

        try await Task.sleep(for: .seconds(1))
        #expect(await requests.items.count == 1, "one repair for two predictions")
        #expect(await notices.items.filter { $0.body.kind == .troublePredicted }.count == 1)
        #expect(
            await notices.items.allSatisfy { !$0.body.id.contains("p-medium") }, "the medium prediction was not told")

        await running.stop()
        await noticesConsumer.shutdown()
        await requestsConsumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}
