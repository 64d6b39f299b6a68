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

/// One isolated actuator world: the shared broker, Redis and moto (us-east-1 and us-west-2), an AWS client
/// whose requests are logged, collectors for outcomes, notices and history events, and clean-up of every
/// resource a test or the actuator created.
final class ActuatorHarness: Sendable {
    let world: World
    let log: RequestLog
    let aws: AWSClient
    let redis: RedisClient
    let publisher: AMQPPublisher
    let consumers: [AMQPConsumer]
    let outcomes: Collector<ActionOutcome>
    let notices: Collector<Notice>
    let history: Collector<ActuatorEvent>
    let cleanup = Cleanup()
    /// The idempotency keys of the requests made, to find what the actuator created.
    let keys = Mutex<[String]>([])

    /// Runs `body` with a fresh harness and always cleans up, also after a failed `#require`.
    static func run(_ body: (ActuatorHarness) async throws -> Void) async throws {
        let h = try await ActuatorHarness()
        do { try await body(h) } catch { Issue.record(error) }
        await h.close()
    }

    init() async throws {
        world = try World()
        log = RequestLog(world.http)
        aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: log, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
        redis = try await RedisClient.connect(url: world.redisURL)
        publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        let outcomesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.notificationsQueue)
        let historyConsumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.historyQueue)
        consumers = [outcomesConsumer, noticesConsumer, historyConsumer]
        outcomes = Collector(outcomesConsumer, type: .actionEvent)
        notices = Collector(noticesConsumer, type: .notification)
        history = Collector(historyConsumer, type: .event)
    }

    var ec2: EC2Client { world.ec2 }
    var dr: EC2Client { world.ec2.withRegion("us-west-2") }
    var locks: RedisLockStore { RedisLockStore(client: redis, keyspace: world.keyspace) }
    var records: StepRecordStore { StepRecordStore(states: RedisStateStore(client: redis, keyspace: world.keyspace)) }
    var aborts: RedisKeyValueStore { RedisKeyValueStore(client: redis, keyspace: world.keyspace) }

    static func fastOptions(_ id: String) -> ActuatorWorker.Options {
        var o = ActuatorWorker.Options(workerId: id)
        // Long enough that a renewal delayed by a loaded machine never loses the lease by accident (the
        // watchdog gives a lease up at 5/6 of its TTL without a renewal, and a CI run starves tasks for
        // seconds); the crash tests shorten it for the actor that dies, whose lock the next actor waits out.
        o.lockTTL = .seconds(60)
        o.lockRetryInterval = .milliseconds(100)
        o.lockWaitLimit = .seconds(60)
        o.restartHealthTimeout = .seconds(1)
        o.rebootSettle = .zero
        o.healthPollInterval = .milliseconds(200)
        o.healthCheckTimeout = .seconds(2)
        o.waitInterval = .milliseconds(200)
        o.instanceWaitTimeout = .seconds(30)
        o.imageWaitTimeout = .seconds(30)
        o.dnsWaitTimeout = .seconds(30)
        o.retryDelay = .milliseconds(100)
        return o
    }

    /// `clockAhead`: the actuator's clock runs this many seconds ahead (a resumed request finds its deadline passed).
    func actuator(
        _ id: String = "actuator-a", config: ActuatorConfig = ActuatorConfig(), ssm: Bool = false,
        clockAhead: TimeInterval = 0,
        _ tweak: (inout ActuatorWorker.Options) -> Void = { _ in }
    ) -> ActuatorWorker {
        var options = Self.fastOptions(id)
        tweak(&options)
        var logger = Logger(label: id)
        logger.logLevel = environment["ACTUATOR_TEST_LOG"] == nil ? .warning : .debug
        return ActuatorWorker(
            options: options, ec2: EC2Client(aws), route53: Route53Client(aws), ssm: ssm ? SSMClient(aws) : nil,
            http: world.http,
            locks: locks, records: records, aborts: aborts,
            publisher: publisher, topology: world.topology, config: config,
            openSteps: RedisSchedule(client: redis, keyspace: world.keyspace, name: "actuator-open-steps"),
            logger: logger,
            clock: { Date() + clockAhead })
    }

    func name(_ suffix: String) -> String {
        "\(world.prefix)-\(suffix)"
    }

    func request(
        _ step: RecoveryStep, target: String, instance: String, allocation: String? = nil,
        destination: String = "us-east-1", deadline: TimeInterval = 300
    ) -> ActionRequest {
        let incident = "inc-\(target)-1"
        keys.withLock { $0.append(ActionRequest.key(target: target, incidentId: incident, step: step)) }
        return ActionRequest(
            idempotencyKey: ActionRequest.key(target: target, incidentId: incident, step: step), target: target,
            incidentId: incident,
            step: step, instanceId: instance, region: "us-east-1", destinationRegion: destination,
            elasticIpAllocationId: allocation,
            requestedAt: Date(), deadline: Date().addingTimeInterval(deadline), requestedBy: nil)
    }

    func launchTarget(_ target: String, healthURL: String) async throws -> EC2Instance {
        let instance = try await world.launchTarget(name: target, healthURL: healthURL)
        await cleanup.add { [ec2] in _ = try await ec2.terminateInstances([instance.instanceId]) }
        return try #require(try await ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100)).first)
    }

    /// An Elastic IP associated with `instanceId` in `client`'s region.
    func elasticIP(on instanceId: String?, _ client: EC2Client) async throws -> EC2Address {
        let address = try await client.allocateAddress(tags: ["test-run": world.prefix])
        let allocation = try #require(address.allocationId)
        await cleanup.add {
            if let current = try await client.describeAddresses(allocationIds: [allocation]).first,
                let association = current.associationId
            {
                try await client.disassociateAddress(associationId: association)
            }
            try await client.releaseAddress(allocationId: allocation)
        }
        if let instanceId { _ = try await client.associateAddress(allocationId: allocation, instanceId: instanceId) }
        return address
    }

    /// A completed snapshot tagged for `target` in `client`'s region.
    func snapshot(_ target: String, _ client: EC2Client) async throws -> EC2Snapshot {
        let volume = try await client.createVolume(
            CreateVolumeInput(availabilityZone: "\(client.region)a", size: 8, tags: ["test-run": world.prefix]))
        await cleanup.add { try await client.deleteVolume(volume.volumeId) }
        let snapshot = try await client.createSnapshot(volumeId: volume.volumeId, tags: [TargetCatalog.nameTag: target])
        await cleanup.add { try await client.deleteSnapshot(snapshot.snapshotId) }
        return try await client.waitUntilSnapshotCompleted(snapshot.snapshotId, interval: .milliseconds(100))
    }

    func instance(_ id: String, _ client: EC2Client) async throws -> EC2Instance {
        try #require(try await client.describeInstances(instanceIds: [id]).first)
    }

    /// The outcome published for `key` (waits for it).
    func outcome(_ key: String) async -> Envelope<ActionOutcome>? {
        await outcomes.wait { $0.id == "\(key):outcome" }
    }

    /// Removes what the actuator created (found in the step records: instances, images, DR addresses),
    /// then the test's own resources, the queues and the Redis keys.
    func close() async {
        for key in keys.withLock({ $0 }) {
            guard let record = try? await records.load(key), !record.dryRun else { continue }
            let r = record.resources
            let client = r.newRegion == "us-west-2" ? dr : ec2
            if let id = r.newInstanceId { _ = try? await client.terminateInstances([id]) }
            if let image = r.imageId { try? await client.deregisterImage(image) }
            if let allocation = r.drAllocationId,
                let address = try? await dr.describeAddresses(allocationIds: [allocation]).first,
                address.tags["AutoRecovery:DrFor"] != nil
            {
                if let association = address.associationId {
                    try? await dr.disassociateAddress(associationId: association)
                }
                try? await dr.releaseAddress(allocationId: allocation)
            }
        }
        await cleanup.run()
        for consumer in consumers { await consumer.shutdown() }
        await publisher.shutdown()
        await redis.close()
        await world.tearDown(instances: [])
    }
}

/// Serialized: the tests share one moto server with every other suite, and running these one at a time
/// keeps its queue short (a loaded moto makes other suites' calls time out).
@Suite(
    "Actuator against moto, RabbitMQ and Redis", .serialized,
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct ActuatorIntegrationTests {
    // MARK: Restart

    @Test(.timeLimit(.minutes(2)))
    func restartRebootsAndReportsSuccessWhenTheSiteAnswers() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("restart-ok")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let request = h.request(.restart, target: target, instance: instance.instanceId)

            let result = try await h.actuator().perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded)
            #expect(outcome.instanceId == nil, "a restart keeps the instance")
            #expect(h.log.actions("RebootInstances").count == 1)
            #expect(
                h.log.actions("RebootInstances").first?.body.contains("InstanceId.1=\(instance.instanceId)") == true)
            #expect(h.log.actions("StopInstances").isEmpty, "no stop/start when the site answers after the reboot")
            let published = try #require(await h.outcome(request.idempotencyKey))
            #expect(published.body == outcome)
            #expect(published.correlationId == request.incidentId)
            let notice = try #require(
                await h.notices.wait { $0.body.kind == .actionSucceeded && $0.body.target == target })
            #expect(notice.body.instanceId == instance.instanceId)
            #expect(notice.body.region == "us-east-1")
            #expect(notice.body.detail?.contains("rebooted") == true)
            #expect(await h.notices.wait { $0.body.kind == .actionStarted && $0.body.target == target } != nil)
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.status == .completed)
            #expect(record.done == [.inspect, .reboot, .rebootHealthy])
        }
    }

    /// An actor sent StopInstances and died before recording it; the next one resumes after the deadline.
    /// It must see the stopped instance and start it again, not report "no stop/start was made".
    @Test(.timeLimit(.minutes(2)))
    func restartResumedAfterTheDeadlineStartsAnInstanceTheDeadActorStopped() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("restart-late")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            site.set(healthy: false)
            let request = h.request(.restart, target: target, instance: instance.instanceId)
            let ec2 = h.ec2
            // The dying actor's StopInstances (sent, not recorded) is made by the test's own unlogged client.
            let dying = h.actuator("actuator-dies") { options in
                options.lockTTL = .seconds(2)
                options.afterSubStep = { _, sub in
                    guard sub == .rebootUnhealthy else { return }
                    _ = try await ec2.stopInstances([instance.instanceId])
                    site.set(healthy: true)
                    throw SimulatedCrash()
                }
            }
            await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }

            let late = h.actuator("actuator-late", clockAhead: 3600)
            let result = try await late.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            #expect(try await h.instance(instance.instanceId, h.ec2).state == .running, "not left stopped")
            #expect(h.log.mutations.map(\.action) == ["RebootInstances", "StartInstances"], "no second stop")
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.done.contains(.stop) && record.done.contains(.running))
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func restartFallsBackToStopStartAndKeepsTheElasticIP() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("restart-stop")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let address = try await h.elasticIP(on: instance.instanceId, h.ec2)
            let allocation = try #require(address.allocationId)
            site.set(healthy: false)
            // While the instance is stopped, the address comes off it (as it can on EC2-Classic or by a
            // person's hand) and the site is fixed by the new hardware.
            let ec2 = h.ec2
            let actuator = h.actuator { options in
                options.afterSubStep = { _, sub in
                    guard sub == .stopped else { return }
                    if let association = try await ec2.describeAddresses(allocationIds: [allocation]).first?
                        .associationId
                    {
                        try await ec2.disassociateAddress(associationId: association)
                    }
                    site.set(healthy: true)
                }
            }
            let request = h.request(.restart, target: target, instance: instance.instanceId)

            let result = try await actuator.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let order = h.log.mutations.map(\.action)
            #expect(order == ["RebootInstances", "StopInstances", "StartInstances", "AssociateAddress"])
            #expect(h.log.actions("AssociateAddress").first?.body.contains("AllowReassociation=true") == true)
            let after = try #require(try await h.ec2.describeAddresses(allocationIds: [allocation]).first)
            #expect(after.instanceId == instance.instanceId, "the Elastic IP is on the instance again")
            #expect(try await h.instance(instance.instanceId, h.ec2).state == .running)
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.done.contains(.rebootUnhealthy))
            #expect(record.done.contains(.stopped) && record.done.contains(.running) && record.done.contains(.eip))
            #expect(
                await h.notices.wait { $0.id == "\(request.idempotencyKey):actuator:stop_start" } != nil,
                "a notice says the instance is being stopped")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aRequestPublishedTwiceRunsOnceAndBothDeliveriesAreSettled() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("queue")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let request = h.request(.restart, target: target, instance: instance.instanceId)
            let consumer = AMQPConsumer(
                configuration: h.world.amqp, topology: h.world.topology.amqp,
                queue: h.world.topology.actionRequestsQueue, prefetch: 2)
            let loop = MessageWorker<Envelope<ActionRequest>>(
                consumer: consumer,
                deadLetters: DeadLetterSink(
                    publisher: h.publisher, topology: h.world.topology, workerName: "actuator-test"),
                expecting: .actionRequest, logger: Logger(label: "actuator-queue"), senders: nil,
                handler: h.actuator().handle)
            let running = Task { await loop.run(concurrency: 2) }
            // The decision worker publishes the request, and a restarted decision worker publishes it again.
            let envelope = Envelope(
                type: .actionRequest, id: request.idempotencyKey, correlationId: request.incidentId, target: target,
                instanceId: instance.instanceId, occurredAt: Date(), body: request)
            let message = OutgoingMessage(
                exchange: h.world.topology.exchange,
                routingKey: FleetTopology.routingKey(.actionRequest, target: target),
                body: try EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: envelope.id))
            try await h.publisher.publish(message)
            try await h.publisher.publish(message)

            let deadline = ContinuousClock.now + .seconds(30)
            while await h.outcomes.items.filter({ $0.id == "\(request.idempotencyKey):outcome" }).isEmpty,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(50))
            }
            // Both deliveries are settled (the queue drains): the second found the step done and published
            // the same outcome again, or found it running under the first actor's lock and was settled.
            await consumer.shutdown(drainTimeout: .seconds(30))
            await running.value
            let admin = AMQPAdmin(configuration: h.world.amqp)
            #expect(try await admin.messageCount(queue: h.world.topology.actionRequestsQueue) == 0)
            let copies = await h.outcomes.items.filter { $0.id == "\(request.idempotencyKey):outcome" }
            #expect(!copies.isEmpty)
            #expect(copies.allSatisfy { $0.body.status == .succeeded && $0.body == copies[0].body })
            #expect(copies.allSatisfy { $0.target == target && $0.correlationId == request.incidentId })
            #expect(h.log.actions("RebootInstances").count == 1, "the step ran once")
        }
    }

    // MARK: Re-provision

    @Test(.timeLimit(.minutes(2)))
    func reprovisionUsesTheNewestSnapshotMovesTheElasticIPAndKeepsTheOldInstance() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("reprov")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let address = try await h.elasticIP(on: old.instanceId, h.ec2)
            let older = try await h.snapshot(target, h.ec2)
            // moto stamps snapshots to the second; the newer one must be visibly newer.
            try await Task.sleep(for: .milliseconds(1100))
            let newer = try await h.snapshot(target, h.ec2)
            let request = h.request(.reprovision, target: target, instance: old.instanceId)

            let result = try await h.actuator().perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let newId = try #require(outcome.instanceId)
            #expect(newId != old.instanceId)
            #expect(outcome.region == "us-east-1")
            // moto ignores RegisterImage's block device mappings: check the request that was sent.
            let register = try #require(h.log.actions("RegisterImage").first)
            #expect(register.body.contains("Ebs.SnapshotId=\(newer.snapshotId)"))
            #expect(!register.body.contains(older.snapshotId))
            #expect(h.log.actions("RunInstances").count == 1)
            #expect(h.log.actions("TerminateInstances").isEmpty, "the old instance is never terminated")
            // The Elastic IP moved; the old instance is stopped and tagged; the new one carries the tags.
            #expect(
                try await h.ec2.describeAddresses(allocationIds: [address.allocationId!]).first?.instanceId == newId)
            let oldNow = try await h.instance(old.instanceId, h.ec2)
            #expect(oldNow.state == .stopped)
            #expect(oldNow.tags["AutoRecovery:ReplacedBy"] == newId)
            let replacement = try await h.instance(newId, h.ec2)
            #expect(replacement.state == .running)
            #expect(replacement.tags["AutoRecovery:ReplacementOf"] == old.instanceId)
            #expect(replacement.tags["AutoRecovery:Name"] == target)
            #expect(replacement.tags["AutoRecovery"] == "enabled")
            #expect(replacement.tags["test-run"] == h.world.prefix, "the original's tags are copied")
            #expect(replacement.instanceType == old.instanceType)
            #expect(replacement.subnetId == old.subnetId)
            let published = try #require(await h.outcome(request.idempotencyKey))
            #expect(published.body.instanceId == newId)
            let notice = try #require(
                await h.notices.wait { $0.body.kind == .actionSucceeded && $0.body.target == target })
            #expect(notice.body.instanceId == newId)
            #expect(notice.body.detail?.contains(old.instanceId) == true)

            // Redelivered after completion: the same outcome again, nothing else.
            let before = h.log.mutations.count
            let again = try await h.actuator("actuator-b").perform(request)
            #expect(again == .republished(outcome))
            #expect(h.log.mutations.count == before, "no AWS mutation for a completed step")
            let deadline = ContinuousClock.now + .seconds(10)
            while await h.outcomes.items.filter({ $0.id == "\(request.idempotencyKey):outcome" }).count < 2,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(50))
            }
            let copies = await h.outcomes.items.filter { $0.id == "\(request.idempotencyKey):outcome" }
            #expect(
                copies.count == 2 && copies.allSatisfy { $0.body == outcome },
                "the recorded outcome, republished with the same id")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func reprovisionWithoutSnapshotNeedsAHumanAndLaunchesNothing() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("nosnap")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let request = h.request(.reprovision, target: target, instance: old.instanceId)

            let result = try await h.actuator().perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .humanNeeded)
            #expect(outcome.reason?.contains("no completed snapshot tagged AutoRecovery:Name=\(target)") == true)
            #expect(outcome.reason?.contains("nothing was launched") == true)
            #expect(h.log.mutations.isEmpty, "nothing is launched, registered or stopped: \(h.log.mutations)")
            let notice = try #require(await h.notices.wait { $0.body.kind == .humanNeeded && $0.body.target == target })
            #expect(notice.body.detail?.contains("snapshot") == true)
            #expect(notice.body.commands.contains(RecoveryCtl.run(.reprovision, target)!))
            #expect(try await h.instance(old.instanceId, h.ec2).state == .running, "the old instance is left alone")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aReplacementThatCannotTakeTheAddressIsStoppedAndMarkedAbandoned() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("abandon")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            _ = try await h.snapshot(target, h.ec2)
            // The request names an Elastic IP that does not exist: the move fails after the launch.
            let request = h.request(
                .reprovision, target: target, instance: old.instanceId, allocation: "eipalloc-0000000000000dead")

            let result = try await h.actuator().perform(request)

            let record = try #require(try await h.records.load(request.idempotencyKey))
            let launchedId = try #require(record.resources.newInstanceId)
            ActuatorExpectations.abandonedReplacement(
                result, failedAt: "AssociateAddress", record: record,
                replacement: try await h.instance(launchedId, h.ec2),
                old: try await h.instance(old.instanceId, h.ec2))
            let notice = try #require(
                await h.notices.wait { $0.body.kind == .actionFailed && $0.body.target == target })
            #expect(notice.body.nextStep == .failover)
            #expect(notice.body.detail?.contains("abandoned") == true, "the notice quotes the record's notes")
        }
    }

    // MARK: Fail-over

    @Test(.timeLimit(.minutes(2)))
    func failoverLaunchesInTheDRRegionAttachesTheDRAddressAndMovesTheRecord() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("dr")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let primary = try await h.elasticIP(on: old.instanceId, h.ec2)
            _ = try await h.snapshot(target, h.dr)
            let route53 = Route53Client(h.world.aws)
            let zone = try await route53.createHostedZone(name: "\(h.world.prefix).example.com")
            let record = "www.\(h.world.prefix).example.com"
            _ = try await route53.upsertARecord(hostedZoneId: zone.id, name: record, addresses: [primary.publicIp])
            await h.cleanup.add {
                for set in try await route53.listResourceRecordSets(hostedZoneId: zone.id) where set.type == .a {
                    _ = try await route53.changeResourceRecordSets(
                        hostedZoneId: zone.id, changes: [.init(.delete, set)])
                }
                try await route53.deleteHostedZone(zone.id)
            }
            let config = try ActuatorConfig(
                file: TargetConfigFile(
                    data: Data(
                        """
                        {"targets": {"\(target)": {"dr": {"hosted_zone_id": "\(zone.id)", "record_name": "\(record)", "instance_type": "t3.small"}}}}
                        """.utf8)), defaultDRRegion: "us-west-2")
            let request = h.request(.failover, target: target, instance: old.instanceId, destination: "us-west-2")

            let result = try await h.actuator(config: config).perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            #expect(outcome.region == "us-west-2")
            let newId = try #require(outcome.instanceId)
            let launched = try await h.instance(newId, h.dr)
            #expect(launched.state == .running)
            #expect(launched.instanceType == "t3.small", "DR settings win")
            #expect(h.log.actions("RunInstances").map(\.region) == ["us-west-2"])
            // The DR address was allocated (tagged for reuse) and attached.
            let drAddresses = try await h.dr.describeAddresses(filters: [.tag("AutoRecovery:DrFor", target)])
            let drAddress = try #require(drAddresses.first)
            #expect(drAddresses.count == 1)
            #expect(drAddress.instanceId == newId)
            // The record points at it.
            let sets = try await route53.listResourceRecordSets(hostedZoneId: zone.id)
            let a = try #require(sets.first { DRPreflightNames.same($0.name, record) && $0.type == .a })
            #expect(a.values == [drAddress.publicIp])
            #expect(a.ttl == 60)
            #expect(h.log.actions("GetChange").count >= 1, "waited for INSYNC")
            // The primary instance is stopped and tagged, not terminated; its own address stays in us-east-1.
            let oldNow = try await h.instance(old.instanceId, h.ec2)
            #expect(oldNow.state == .stopped)
            #expect(oldNow.tags["AutoRecovery:ReplacedBy"] == newId)
            #expect(h.log.actions("TerminateInstances").isEmpty)
        }
    }

    // MARK: Concurrency, crashes, stale actors

    @Test(.timeLimit(.minutes(2)))
    func twoActuatorsWithTheSameRequestLaunchOnce() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("twice")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let address = try await h.elasticIP(on: old.instanceId, h.ec2)
            _ = try await h.snapshot(target, h.ec2)
            let request = h.request(.reprovision, target: target, instance: old.instanceId)
            let a = h.actuator("actuator-a")
            let b = h.actuator("actuator-b")

            async let first = a.perform(request)
            async let second = b.perform(request)
            let results = try await [first, second]

            #expect(h.log.actions("RunInstances").count == 1, "\(h.log.all)")
            #expect(h.log.actions("RegisterImage").count == 1)
            let outcomes = results.compactMap { result -> ActionOutcome? in
                switch result {
                case .completed(let o), .republished(let o): o
                case .leaseLost, .deferred: nil
                }
            }
            #expect(outcomes.count == 2 && outcomes[0] == outcomes[1], "\(results)")
            #expect(results.filter { if case .completed = $0 { true } else { false } }.count == 1)
            #expect(
                try await h.ec2.describeAddresses(allocationIds: [address.allocationId!]).first?.instanceId
                    == outcomes.first?.instanceId)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func anActuatorKilledBetweenLaunchAndAddressMoveIsFinishedByTheNext() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("crash")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let address = try await h.elasticIP(on: old.instanceId, h.ec2)
            _ = try await h.snapshot(target, h.ec2)
            let request = h.request(.reprovision, target: target, instance: old.instanceId)
            let dying = h.actuator("actuator-dies") { options in
                options.lockTTL = .seconds(4)
                options.afterSubStep = { _, sub in if sub == .launch { throw SimulatedCrash() } }
            }

            await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }
            let halfway = try #require(try await h.records.load(request.idempotencyKey))
            #expect(halfway.status == .inProgress)
            #expect(halfway.done.last == .launch)
            let launchedId = try #require(halfway.resources.newInstanceId)
            #expect(
                try await h.ec2.describeAddresses(allocationIds: [address.allocationId!]).first?.instanceId
                    == old.instanceId,
                "the address has not moved yet")

            // The next actor waits for the dead one's lock to expire, then resumes from the record.
            let result = try await h.actuator("actuator-next").perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded)
            #expect(outcome.instanceId == launchedId, "the instance the first actor launched")
            #expect(h.log.actions("RunInstances").count == 1, "no second launch")
            #expect(h.log.actions("RegisterImage").count == 1, "no second image")
            #expect(
                try await h.ec2.describeAddresses(allocationIds: [address.allocationId!]).first?.instanceId
                    == launchedId)
            #expect(try await h.instance(old.instanceId, h.ec2).state == .stopped)
            let final = try #require(try await h.records.load(request.idempotencyKey))
            #expect(final.attempts == 2)
            #expect(final.owner == "actuator-next")
            #expect(final.notes.contains { $0.contains("resumed by actuator-next") })
            #expect(final.done.filter { $0 == .launch }.count == 1)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func aStaleActorStopsBeforeItsNextMutationAndSaysWhy() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("stale")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            _ = try await h.snapshot(target, h.ec2)
            let request = h.request(.reprovision, target: target, instance: old.instanceId)
            let redis = h.redis
            let keyspace = h.world.keyspace
            let locks = h.locks
            let successor = Mutex<LockLease?>(nil)
            // After the image is ready, the actor's lock expires (as after a long pause) and another actor
            // takes it.
            let stale = h.actuator("actuator-stale") { options in
                options.afterSubStep = { _, sub in
                    guard sub == .imageAvailable else { return }
                    _ = try await redis.command(["DEL", keyspace.lockKey(target)], idempotent: true)
                    let lease = try await locks.acquire(name: target, ttl: .seconds(30))
                    successor.withLock { $0 = lease }
                }
            }

            let result = try await stale.perform(request)

            guard case .leaseLost(let reason) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(reason.contains("no longer held"))
            #expect(reason.contains("RunInstances"), "it stopped right before the launch")
            #expect(h.log.actions("RunInstances").isEmpty)
            #expect(h.log.mutations.map(\.action) == ["RegisterImage"])
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.status == .inProgress)
            #expect(record.notes.contains { $0.contains("actuator-stale stopped") })
            let event = try #require(
                await h.history.wait { $0.body.kind == .leaseLost && $0.body.idempotencyKey == request.idempotencyKey })
            #expect(event.body.actor == "actuator-stale")
            #expect(try #require(successor.withLock { $0 }).fencingToken > (event.body.fencingToken ?? .max))
            // The successor's lock is untouched by the stale actor.
            #expect(try await locks.isHeld(try #require(successor.withLock { $0 })))
        }
    }

    // MARK: Dry run

    @Test(.timeLimit(.minutes(2)))
    func dryRunPlansEveryStepAndMutatesNothing() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("dry")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            _ = try await h.elasticIP(on: old.instanceId, h.ec2)
            _ = try await h.snapshot(target, h.ec2)
            _ = try await h.snapshot(target, h.dr)
            let config = try ActuatorConfig(
                file: TargetConfigFile(
                    data: Data(
                        """
                        {"targets": {"\(target)": {"dry_run": true, "dr": {"hosted_zone_id": "Z123", "record_name": "www.example.com"}}}}
                        """.utf8)), defaultDRRegion: "us-west-2")
            let actuator = h.actuator(config: config)

            var plans: [RecoveryStep: ActionOutcome] = [:]
            for step in [RecoveryStep.restart, .reprovision, .failover] {
                let request = h.request(
                    step, target: target, instance: old.instanceId,
                    destination: step == .failover ? "us-west-2" : "us-east-1")
                guard case .completed(let outcome) = try await actuator.perform(request) else {
                    Issue.record("\(step) did not complete")
                    continue
                }
                plans[step] = outcome
                let record = try #require(try await h.records.load(request.idempotencyKey))
                #expect(record.dryRun)
                #expect(!record.plannedCalls.isEmpty)
            }

            #expect(h.log.mutations.isEmpty, "no mutating call: \(h.log.mutations)")
            #expect(
                Set(h.log.all.map(\.action)).isSubset(of: [
                    "DescribeInstances", "DescribeAddresses", "DescribeSnapshots", "DescribeImages", "DescribeVolumes",
                ]))
            for (step, outcome) in plans {
                #expect(outcome.status == .failed, "a dry run is never reported as done (\(step))")
                #expect(outcome.instanceId == nil)
                #expect(outcome.reason?.hasPrefix("dry run, nothing was changed") == true)
            }
            #expect(
                plans[.restart]?.reason?.contains("ec2:RebootInstances [us-east-1] InstanceId=\(old.instanceId)")
                    == true)
            #expect(plans[.restart]?.reason?.contains("ec2:StopInstances") == true)
            let reprovision = try #require(plans[.reprovision]?.reason)
            for call in [
                "ec2:RegisterImage [us-east-1]", "ec2:RunInstances [us-east-1]", "ec2:AssociateAddress",
                "ec2:CreateTags", "ec2:StopInstances",
            ] {
                #expect(reprovision.contains(call), "\(call) in \(reprovision)")
            }
            let failover = try #require(plans[.failover]?.reason)
            for call in [
                "ec2:RunInstances [us-west-2]", "ec2:AllocateAddress [us-west-2]",
                "route53:ChangeResourceRecordSets [global]",
            ] {
                #expect(failover.contains(call), "\(call) in \(failover)")
            }
            #expect(
                await h.notices.wait { $0.body.kind == .actionFailed && $0.body.detail?.hasPrefix("DRY RUN") == true }
                    != nil)
        }
    }

    // MARK: DR pre-flight

    @Test(.timeLimit(.minutes(2)))
    func preflightReportsTargetsThatWouldFailOverBadly() async throws {
        try await ActuatorHarness.run { h in
            let ready = h.name("pf-ready")
            let broken = h.name("pf-broken")
            _ = try await h.snapshot(ready, h.ec2)
            _ = try await h.snapshot(ready, h.dr)
            _ = try await h.snapshot(broken, h.ec2)
            let drAddress = try await h.elasticIP(on: nil, h.dr)
            let route53 = Route53Client(h.world.aws)
            let zone = try await route53.createHostedZone(name: "\(h.world.prefix).example.com")
            let record = "www.\(h.world.prefix).example.com"
            _ = try await route53.upsertARecord(hostedZoneId: zone.id, name: record, addresses: ["192.0.2.10"])
            await h.cleanup.add {
                for set in try await route53.listResourceRecordSets(hostedZoneId: zone.id) where set.type == .a {
                    _ = try await route53.changeResourceRecordSets(
                        hostedZoneId: zone.id, changes: [.init(.delete, set)])
                }
                try await route53.deleteHostedZone(zone.id)
            }
            let config = try ActuatorConfig(
                file: TargetConfigFile(
                    data: Data(
                        """
                        {"defaults": {"dr_region": "us-west-2"},
                         "targets": {
                           "\(ready)": {"dr": {"subnet_id": "subnet-dr1", "security_group_ids": ["sg-dr1"], "instance_type": "t3.micro",
                                               "elastic_ip_allocation_id": "\(drAddress.allocationId!)",
                                               "hosted_zone_id": "\(zone.id)", "record_name": "\(record)"}},
                           "\(broken)": {"dr": {"hosted_zone_id": "\(zone.id)", "record_name": "missing.\(record)"}}}}
                        """.utf8)))
            func target(_ name: String) -> Target {
                Target(
                    identity: TargetIdentity(name: name, homeRegion: "us-east-1", drRegion: "us-west-2"),
                    instance: InstanceRef(id: "i-\(name)", region: "us-east-1"), instanceState: "running",
                    healthURL: nil,
                    settings: TargetSettings())
            }
            let pfTargets = [target(ready), target(broken)]
            let preflight = DRPreflight(
                ec2: EC2Client(h.aws), route53: Route53Client(h.aws), config: config, logger: Logger(label: "pf"))
            let scheduled = ScheduledPreflight(
                preflight: preflight, catalog: { [pfTargets] in pfTargets },
                claims: RedisKeyValueStore(client: h.redis, keyspace: h.world.keyspace), publisher: h.publisher,
                topology: h.world.topology, interval: .seconds(86_400), workerId: "actuator-pf",
                logger: Logger(label: "pf"))

            let report = try await scheduled.runOnce(id: "preflight:\(h.world.prefix)")

            let good = try #require(report.targets.first { $0.target == ready })
            #expect(good.ok, "\(good.problems)")
            #expect(good.homeSnapshot != nil && good.drSnapshot != nil)
            #expect((good.drSnapshot?.ageSeconds ?? -1) >= 0)
            #expect(good.drSettingsComplete)
            #expect(good.drAddress?.contains(drAddress.publicIp) == true)
            #expect(good.dns?.contains("192.0.2.10") == true)
            let bad = try #require(report.targets.first { $0.target == broken })
            #expect(!bad.ok)
            #expect(bad.problems.contains { $0.contains("no completed snapshot") && $0.contains("us-west-2") })
            #expect(bad.problems.contains { $0.contains("DR settings incomplete") })
            #expect(bad.problems.contains { $0.contains("does not exist in hosted zone") })
            #expect(h.log.mutations.isEmpty, "the pre-flight only reads")
            let notice = try #require(
                await h.notices.wait { $0.body.kind == .drPreflight && $0.id == "preflight:\(h.world.prefix)" })
            #expect(notice.body.targets == [broken])
            #expect(notice.body.detail?.contains(broken) == true)
        }
    }
}

/// Route 53 returns absolute names.
enum DRPreflightNames {
    static func same(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String { (s.hasSuffix(".") ? String(s.dropLast()) : s).lowercased() }
        return norm(a) == norm(b)
    }
}
