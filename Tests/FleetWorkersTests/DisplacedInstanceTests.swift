import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Testing

/// "It also says when the original instance comes back": after a re-provision the original instance is
/// kept (stopped, tagged AutoRecovery:ReplacedBy). Discovery lists it as displaced, and the probe's
/// status sweep reports it under its own id while it runs, which feeds the decision worker's
/// `original_instance_back` notice (EscalationLadderTests.originalInstanceBackIsReportedOnce).
@Suite("Displaced instances", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct DisplacedInstanceTests {
    @Test(.timeLimit(.minutes(2)))
    func theProbeReportsARunningOriginalUnderItsOwnIdAndNothingWhileItIsStopped() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-orig"
        let original = try await world.launchTarget(name: name, healthURL: site.url)
        let replacement = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning(
            [original.instanceId, replacement.instanceId], interval: .milliseconds(100))
        try await world.ec2.createTags(
            resourceIds: [original.instanceId], tags: [TargetCatalog.replacedByTag: replacement.instanceId])
        let logger = Logger(label: "displaced-test")
        let catalog = TargetCatalog(ec2: world.ec2, drRegion: nil, config: .empty, fleet: world.prefix, logger: logger)

        let target = try #require(try await catalog.discover().first { $0.name == name })
        #expect(target.instance.id == replacement.instanceId, "the replacement serves the target")
        #expect(target.displaced == [InstanceRef(id: original.instanceId, region: "us-east-1")])

        let redis = try await RedisClient.connect(url: world.redisURL)
        let publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        let consumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
        let observations = Collector<ProbeResult>(consumer, type: .observation)
        var options = ProbeWorker.Options(proberId: "probe-displaced")
        options.tick = .milliseconds(100)
        options.statusInterval = .seconds(1)
        options.discoveryInterval = .seconds(30)
        let probe = ProbeWorker(
            options: options, discover: { try await catalog.discover() }, http: world.http, ec2: world.ec2,
            claims: RedisKeyValueStore(client: redis, keyspace: world.keyspace), publisher: publisher,
            topology: world.topology, logger: logger)
        let run = Task { await probe.run() }

        // Running: reported under the original's id, healthy when its status checks pass.
        let back = await observations.wait { $0.body.instanceId == original.instanceId }
        #expect(back?.body.source == .ec2Status)
        #expect(back?.body.healthy == true, "\(back?.body.detail ?? "none")")
        #expect(back?.body.detail?.contains("original instance \(original.instanceId) is running") == true)
        #expect(back?.instanceId == original.instanceId && back?.target == name)
        // The serving instance is healthy: no status observation for it (site checks carry no instance id).
        #expect(await observations.items.allSatisfy { $0.body.instanceId != replacement.instanceId })

        // Stopped (the actuator's normal state for an original): nothing more is published for it.
        _ = try await world.ec2.stopInstances([original.instanceId])
        _ = try await world.ec2.waitUntilStopped([original.instanceId], interval: .milliseconds(100))
        try await Task.sleep(for: .seconds(1.5))
        let afterStop = await observations.items.filter { $0.body.instanceId == original.instanceId }.count
        try await Task.sleep(for: .seconds(2.5))
        #expect(
            await observations.items.filter { $0.body.instanceId == original.instanceId }.count == afterStop,
            "two more sweeps, no observation of a stopped original")

        run.cancel()
        await run.value
        await consumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [original.instanceId, replacement.instanceId])
    }
}
