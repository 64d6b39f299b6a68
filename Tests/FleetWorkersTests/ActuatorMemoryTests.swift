import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import Synchronization
import Testing

@testable import FleetWorkers

/// A site the actuator checks over HTTP, without a server: healthy (200) or not (503), switched by the test.
final class MemorySite: HTTPExecuting {
    static let url = "http://site.memory.test/healthz"
    private let healthy = Atomic<Bool>(true)
    func set(healthy: Bool) { self.healthy.store(healthy, ordering: .relaxed) }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let ok = healthy.load(ordering: .relaxed)
        return HTTPResponse(
            status: ok ? 200 : 503, headers: [], body: Array((ok ? "ok" : "down").utf8),
            timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
    }
}

/// One actuator world on the memory drivers, no server: EC2 in us-east-1 and us-west-2, Route 53, SSM, a
/// lock store whose clock the test moves, step records, a broker whose queues take what the actuator
/// publishes, and a site. The same scenarios as `ActuatorIntegrationTests`, in milliseconds.
final class MemoryActuatorHarness: Sendable {
    let aws = MemoryAWS()
    let ec2: MemoryEC2
    let dr: MemoryEC2
    let route53: MemoryRoute53
    let ssm: MemorySSM
    let lockClock = TestInstant()
    let locks: MemoryLockStore
    let records = StepRecordStore(states: MemoryVersionedStore())
    /// The open-steps index, as the actuator has it in production.
    let openSteps = MemorySchedule()
    /// The abort flags the decision worker would set (`recoveryctl abort`).
    let aborts = MemoryKeyValueStore()
    let topology = FleetTopology(prefix: "mem")
    let broker = MemoryBroker()
    let publisher: MemoryPublisher
    let site = MemorySite()

    init() {
        ec2 = MemoryEC2(region: "us-east-1", aws: aws)
        dr = ec2.withRegion("us-west-2")
        route53 = MemoryRoute53(aws: aws)
        ssm = MemorySSM(aws: aws)
        let clock = lockClock
        locks = MemoryLockStore(now: { clock.now })
        for (queue, patterns) in topology.workQueues {
            _ = broker.queue(queue, boundTo: topology.exchange, patterns: patterns)
        }
        publisher = MemoryPublisher(broker: broker, user: "actuator")
    }

    func actuator(
        _ id: String = "actuator-a", config: ActuatorConfig = ActuatorConfig(), clockAhead: TimeInterval = 0,
        aborts: (any KeyValueStore)? = nil, records: StepRecordStore? = nil,
        _ tweak: (inout ActuatorWorker.Options) -> Void = { _ in }
    ) -> ActuatorWorker {
        var options = ActuatorHarness.fastOptions(id)
        tweak(&options)
        var logger = Logger(label: id)
        logger.logLevel = environment["ACTUATOR_TEST_LOG"] == nil ? .critical : .debug
        return ActuatorWorker(
            options: options, ec2: ec2, route53: route53, ssm: nil, http: site, locks: locks,
            records: records ?? self.records,
            aborts: aborts ?? self.aborts, publisher: publisher, topology: topology, config: config,
            openSteps: openSteps, logger: logger,
            clock: { Date() + clockAhead })
    }

    func request(
        _ step: RecoveryStep, target: String, instance: String, allocation: String? = nil,
        destination: String = "us-east-1", deadline: TimeInterval = 300
    ) -> ActionRequest {
        let incident = "inc-\(target)-1"
        return ActionRequest(
            idempotencyKey: ActionRequest.key(target: target, incidentId: incident, step: step), target: target,
            incidentId: incident,
            step: step, instanceId: instance, region: "us-east-1", destinationRegion: destination,
            elasticIpAllocationId: allocation,
            requestedAt: Date(), deadline: Date().addingTimeInterval(deadline), requestedBy: nil)
    }

    /// A running instance that opts in as `target`, with the site as its health URL and a tag of its own.
    func launchTarget(_ target: String) -> EC2Instance {
        ec2.addInstance(tags: [
            "AutoRecovery": "enabled", "AutoRecovery:Name": target, "AutoRecovery:HealthUrl": MemorySite.url,
            "team": "web",
        ])
    }

    /// The envelopes of one type the actuator published, decoded.
    func published<Body: Codable & Sendable>(_ type: MessageType, as body: Body.Type) -> [Envelope<Body>] {
        publisher.published.filter { $0.properties.type == type.rawValue }
            .compactMap { try? EnvelopeCodec.decode($0.body, as: Body.self, expecting: type) }
    }

    var outcomes: [Envelope<ActionOutcome>] { published(.actionEvent, as: ActionOutcome.self) }
    var notices: [Envelope<Notice>] { published(.notification, as: Notice.self) }
    var history: [Envelope<ActuatorEvent>] { published(.event, as: ActuatorEvent.self) }
    func outcomes(_ key: String) -> [Envelope<ActionOutcome>] { outcomes.filter { $0.id == "\(key):outcome" } }
    func operations() -> [String] { aws.mutations.map(\.operation) }
}

/// The ladder on the memory drivers, no server (AMQP_URL, REDIS_URL and AWS_ENDPOINT_URL are not needed):
/// restart, re-provision, fail-over and a redelivered request. Faults, lost locks and shutdown are in
/// ActuatorMemoryFaultTests and ActuatorMemoryShutdownTests.
@Suite("Actuator on the memory drivers: the ladder")
struct ActuatorMemoryTests {
    @Test func restartRebootsAndReportsSuccessWhenTheSiteAnswers() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await h.actuator().perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded)
        #expect(outcome.instanceId == nil, "a restart keeps the instance")
        #expect(h.operations() == ["RebootInstances"], "no stop/start when the site answers after the reboot")
        #expect(h.aws.calls("RebootInstances").first?.detail == instance.instanceId)
        #expect(h.outcomes(request.idempotencyKey).map(\.body) == [outcome])
        #expect(h.outcomes(request.idempotencyKey).first?.correlationId == request.incidentId)
        let notice = try #require(h.notices.first { $0.body.kind == .actionSucceeded })
        #expect(notice.body.target == "web" && notice.body.instanceId == instance.instanceId)
        #expect(notice.body.detail?.contains("rebooted") == true)
        // The facts, structured (what the wire carries as `reason`), and the sentence made of them.
        guard
            case .actuator(.stepResult(let step, let where_, let status, _, let next, _, let dryRun, _))? = notice.body
                .reason
        else {
            Issue.record("no actuator step result in \(String(describing: notice.body.reason))")
            return
        }
        #expect(step == .restart && status == .succeeded && next == .reprovision && !dryRun)
        #expect(where_ == InstanceRef(id: instance.instanceId, region: request.region))
        #expect(notice.body.detail == notice.body.reason?.text)
        let started = try #require(h.notices.first { $0.body.kind == .actionStarted })
        guard case .actuator(.starting(_, "restart", _, let plan, let key, false))? = started.body.reason else {
            Issue.record("no actuator start in \(String(describing: started.body.reason))")
            return
        }
        #expect(plan.hasPrefix("RebootInstances") && key == request.idempotencyKey)
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.status == .completed)
        #expect(record.done == [.inspect, .reboot, .rebootHealthy])
    }

    @Test func restartFallsBackToStopStartAndPutsTheElasticIPBack() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let address = h.ec2.addAddress(on: instance.instanceId)
        let allocation = try #require(address.allocationId)
        h.site.set(healthy: false)
        // While the instance is stopped, the address comes off it and the new hardware fixes the site.
        let (ec2, site) = (h.ec2, h.site)
        let actuator = h.actuator { options in
            options.afterSubStep = { _, sub in
                guard sub == .stopped else { return }
                ec2.moveAddress(allocation, to: nil)
                site.set(healthy: true)
            }
        }
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await actuator.perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        #expect(h.operations() == ["RebootInstances", "StopInstances", "StartInstances", "AssociateAddress"])
        #expect(h.ec2.address(allocation)?.instanceId == instance.instanceId, "the Elastic IP is on the instance again")
        #expect(h.ec2.instance(instance.instanceId)?.state == .running)
        #expect(h.ec2.instance(instance.instanceId)?.publicIpAddress == address.publicIp)
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(
            record.done.contains(.rebootUnhealthy) && record.done.contains(.stopped) && record.done.contains(.running))
        #expect(record.done.contains(.eip) && record.done.contains(.finalCheck))
        #expect(
            h.notices.contains { $0.id == "\(request.idempotencyKey):actuator:stop_start" },
            "a notice says it is being stopped")
    }

    /// Issue 14, gap 4: a restart of a stale original (the target moved to a replacement, then a late or
    /// replayed request names the original) re-associated the Elastic IP with AllowReassociation and took
    /// the site away from the healthy replacement. It never takes the address from a running instance.
    @Test func aRestartNeverTakesTheElasticIPFromAnotherRunningInstance() async throws {
        let h = MemoryActuatorHarness()
        let original = h.launchTarget("web")
        let replacement = h.launchTarget("web")
        let address = h.ec2.addAddress(on: replacement.instanceId)
        let allocation = try #require(address.allocationId)
        h.site.set(healthy: false)
        let site = h.site
        let actuator = h.actuator { options in
            options.afterSubStep = { _, sub in if sub == .stopped { site.set(healthy: true) } }
        }
        let request = h.request(.restart, target: "web", instance: original.instanceId, allocation: allocation)

        _ = try await actuator.perform(request)

        #expect(h.ec2.address(allocation)?.instanceId == replacement.instanceId, "the replacement keeps the address")
        #expect(!h.operations().contains("AssociateAddress"), "\(h.operations())")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.notes.contains { $0.contains("left there") }, "\(record.notes)")
    }

    @Test func reprovisionUsesTheNewestTaggedSnapshotMovesTheElasticIPAndKeepsTheOldInstance() async throws {
        let h = MemoryActuatorHarness()
        let old = h.launchTarget("web")
        let address = h.ec2.addAddress(on: old.instanceId)
        let now = Date()
        _ = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "web"], startTime: now.addingTimeInterval(-7200))
        let newest = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "web"], startTime: now.addingTimeInterval(-600))
        _ = h.ec2.addSnapshot(
            tags: ["AutoRecovery:Name": "web"], startTime: now.addingTimeInterval(-60), state: "pending")
        _ = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "shop"], startTime: now.addingTimeInterval(-30))
        _ = h.dr.addSnapshot(tags: ["AutoRecovery:Name": "web"], startTime: now.addingTimeInterval(-10))
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)

        let result = try await h.actuator().perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        let newId = try #require(outcome.instanceId)
        #expect(newId != old.instanceId && outcome.region == "us-east-1")
        let image = try #require(h.ec2.ownImages.first)
        #expect(h.ec2.ownImages.count == 1)
        #expect(
            image.blockDeviceMappings.first?.ebs?.snapshotId == newest.snapshotId,
            "the newest completed snapshot of this target in this region")
        #expect(h.aws.calls("RunInstances").map(\.region) == ["us-east-1"])
        #expect(h.ec2.address(try #require(address.allocationId))?.instanceId == newId, "the Elastic IP moved")
        let oldNow = try #require(h.ec2.instance(old.instanceId))
        #expect(oldNow.state == .stopped, "stopped, never terminated")
        #expect(oldNow.tags["AutoRecovery:ReplacedBy"] == newId)
        let replacement = try #require(h.ec2.instance(newId))
        #expect(replacement.state == .running && replacement.imageId == image.imageId)
        #expect(replacement.tags["AutoRecovery:ReplacementOf"] == old.instanceId)
        #expect(replacement.tags["AutoRecovery:Name"] == "web" && replacement.tags["AutoRecovery"] == "enabled")
        #expect(replacement.tags["team"] == "web", "the original's tags are copied")
        #expect(replacement.instanceType == old.instanceType && replacement.subnetId == old.subnetId)
        #expect(h.outcomes(request.idempotencyKey).first?.body.instanceId == newId)

        // Redelivered after completion: the same outcome again, nothing else.
        let before = h.aws.mutations.count
        let again = try await h.actuator("actuator-b").perform(request)
        #expect(again == .republished(outcome))
        #expect(h.aws.mutations.count == before, "no AWS mutation for a completed step")
        #expect(
            h.outcomes(request.idempotencyKey).map(\.body) == [outcome, outcome],
            "the recorded outcome, with the same id")
    }

    @Test func failoverLaunchesInTheDRRegionAttachesTheDRAddressAndMovesTheRecord() async throws {
        let h = MemoryActuatorHarness()
        let old = h.launchTarget("web")
        let primary = h.ec2.addAddress(on: old.instanceId)
        _ = h.dr.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        let zone = h.route53.createHostedZone(name: "example.com")
        _ = try await h.route53.upsertARecord(
            hostedZoneId: zone, name: "www.example.com", addresses: [primary.publicIp], ttl: 60, comment: nil)
        let config = try ActuatorConfig(
            file: TargetConfigFile(
                data: Data(
                    """
                    {"targets": {"web": {"dr": {"hosted_zone_id": "\(zone)", "record_name": "www.example.com", "instance_type": "t3.small"}}}}
                    """.utf8)), defaultDRRegion: "us-west-2")
        let request = h.request(.failover, target: "web", instance: old.instanceId, destination: "us-west-2")
        let before = h.aws.calls.count

        let result = try await h.actuator(config: config).perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        #expect(outcome.region == "us-west-2")
        let newId = try #require(outcome.instanceId)
        let launched = try #require(
            h.dr.instances.first { $0.instanceId == newId }, "the new instance is in the DR region")
        #expect(launched.state == .running && launched.instanceType == "t3.small", "DR settings win")
        #expect(h.aws.calls("RunInstances").map(\.region) == ["us-west-2"])
        let drAddresses = h.dr.addresses.filter { $0.tags["AutoRecovery:DrFor"] == "web" }
        #expect(drAddresses.count == 1, "the DR address was allocated, tagged for reuse")
        let drAddress = try #require(drAddresses.first)
        #expect(drAddress.instanceId == newId)
        let record = try #require(h.route53.record(zone: zone, name: "www.example.com"))
        #expect(record.values == [drAddress.publicIp] && record.ttl == 60, "the record points at the DR address")
        #expect(h.aws.calls.dropFirst(before).contains { $0.operation == "GetChange" }, "waited for INSYNC")
        let oldNow = try #require(h.ec2.instance(old.instanceId))
        #expect(oldNow.state == .stopped && oldNow.tags["AutoRecovery:ReplacedBy"] == newId)
        #expect(
            h.ec2.address(try #require(primary.allocationId))?.instanceId == old.instanceId,
            "the primary address stays in us-east-1")
    }

    @Test func aRequestDeliveredTwiceRunsOnceAndBothDeliveriesAreSettled() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)
        let source = MemoryDeliverySource(queue: h.topology.actionRequestsQueue)
        let loop = MessageWorker<Envelope<ActionRequest>>(
            consumer: source,
            deadLetters: DeadLetterSink(publisher: h.publisher, topology: h.topology, workerName: "actuator-test"),
            expecting: .actionRequest, logger: Logger(label: "actuator-queue"), senders: nil,
            handler: h.actuator().handle)
        let running = Task { await loop.run(concurrency: 2) }
        // The decision worker publishes the request, and a restarted decision worker publishes it again.
        let envelope = Envelope(
            type: .actionRequest, id: request.idempotencyKey, correlationId: request.incidentId, target: "web",
            instanceId: instance.instanceId, occurredAt: Date(), body: request)
        let body = try EnvelopeCodec.encode(envelope)
        source.deliver(
            body, properties: AMQPProperties(messageId: envelope.id, type: MessageType.actionRequest.rawValue))
        source.deliver(
            body, properties: AMQPProperties(messageId: envelope.id, type: MessageType.actionRequest.rawValue))

        let deadline = ContinuousClock.now + .seconds(30)
        while source.acked.count < 2, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        source.shutdown()
        await running.value

        #expect(source.acked.count == 2 && source.deadLettered.isEmpty && source.unacked.isEmpty)
        // The second copy finds the step done (and publishes the same outcome again) or running under the
        // first actor's lock (and is settled: the open-steps index keeps the step alive).
        let copies = h.outcomes(request.idempotencyKey)
        #expect(!copies.isEmpty)
        #expect(copies.allSatisfy { $0.body.status == .succeeded && $0.body == copies.first?.body })
        #expect(h.aws.calls("RebootInstances").count == 1, "the step ran once")
    }

    @Test func aDryRunPlansEveryStepAndMutatesNothing() async throws {
        let h = MemoryActuatorHarness()
        let old = h.launchTarget("web")
        h.ec2.addAddress(on: old.instanceId)
        _ = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        _ = h.dr.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        let config = try ActuatorConfig(
            file: TargetConfigFile(
                data: Data(
                    """
                    {"targets": {"web": {"dry_run": true, "dr": {"hosted_zone_id": "Z123", "record_name": "www.example.com"}}}}
                    """.utf8)), defaultDRRegion: "us-west-2")
        let actuator = h.actuator(config: config)

        var plans: [RecoveryStep: String] = [:]
        for step in [RecoveryStep.restart, .reprovision, .failover] {
            let request = h.request(
                step, target: "web", instance: old.instanceId,
                destination: step == .failover ? "us-west-2" : "us-east-1")
            guard case .completed(let outcome) = try await actuator.perform(request) else {
                Issue.record("\(step) did not complete")
                continue
            }
            #expect(
                outcome.status == .failed && outcome.instanceId == nil, "a dry run is never reported as done (\(step))")
            plans[step] = outcome.reason
        }

        #expect(h.aws.calls.filter(\.isMutation).isEmpty, "no mutating call: \(h.aws.calls.filter(\.isMutation))")
        #expect(plans[.restart]?.contains("ec2:RebootInstances [us-east-1] InstanceId=\(old.instanceId)") == true)
        let reprovision = try #require(plans[.reprovision])
        for call in [
            "ec2:RegisterImage [us-east-1]", "ec2:RunInstances [us-east-1]", "ec2:AssociateAddress",
            "ec2:StopInstances",
        ] {
            #expect(reprovision.contains(call), "\(call) in \(reprovision)")
        }
        let failover = try #require(plans[.failover])
        for call in [
            "ec2:RunInstances [us-west-2]", "ec2:AllocateAddress [us-west-2]",
            "route53:ChangeResourceRecordSets [global]",
        ] {
            #expect(failover.contains(call), "\(call) in \(failover)")
        }
    }
}
