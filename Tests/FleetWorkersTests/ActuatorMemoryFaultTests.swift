import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import Foundation
import Logging
import RecoveryCore
import Synchronization
import Testing

@testable import FleetWorkers

/// The actuator on the memory drivers when something goes wrong: an actor that dies, a lock that is lost,
/// a successor's newer fencing token, AWS throttling or refusing a call, a region that does not answer.
@Suite("Actuator on the memory drivers: crashes, lost locks, AWS faults")
struct ActuatorMemoryFaultTests {
    /// An old instance of `web` with an Elastic IP and a tagged snapshot: ready for a re-provision.
    func reprovisionable(_ h: MemoryActuatorHarness) -> (old: EC2Instance, allocation: String) {
        let old = h.launchTarget("web")
        let address = h.ec2.addAddress(on: old.instanceId)
        _ = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        return (old, address.allocationId!)
    }

    @Test func anActuatorKilledAfterTheLaunchIsFinishedByTheNextWithoutASecondLaunch() async throws {
        let h = MemoryActuatorHarness()
        let (old, allocation) = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        let dying = h.actuator("actuator-dies") { options in
            options.afterSubStep = { _, sub in if sub == .launch { throw SimulatedCrash() } }
        }

        await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }
        let halfway = try #require(try await h.records.load(request.idempotencyKey))
        #expect(halfway.status == .inProgress && halfway.done.last == .launch)
        let launchedId = try #require(halfway.resources.newInstanceId)
        #expect(h.ec2.address(allocation)?.instanceId == old.instanceId, "the address has not moved yet")

        // The dead actor's lock runs out (its TTL passes); the next actor resumes from the record.
        h.lockClock.advance(ActuatorHarness.fastOptions("x").lockTTL + .seconds(1))
        let result = try await h.actuator("actuator-next").perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(
            outcome.status == .succeeded && outcome.instanceId == launchedId, "the instance the first actor launched")
        #expect(h.aws.calls("RunInstances").count == 1, "no second launch")
        #expect(h.aws.calls("RegisterImage").count == 1, "no second image")
        #expect(h.ec2.address(allocation)?.instanceId == launchedId)
        #expect(h.ec2.instance(old.instanceId)?.state == .stopped)
        let final = try #require(try await h.records.load(request.idempotencyKey))
        #expect(final.attempts == 2 && final.owner == "actuator-next")
        #expect(final.notes.contains { $0.contains("resumed by actuator-next") })
        #expect(final.done.filter { $0 == .launch }.count == 1)
    }

    @Test func anActorWhoseLockIsLostStopsBeforeItsNextMutationAndSaysWhy() async throws {
        let h = MemoryActuatorHarness()
        let (old, _) = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        let locks = h.locks
        let successor = Mutex<LockLease?>(nil)
        // After the image is ready the actor's lock ends (as after a long pause) and another actor takes it.
        let stale = h.actuator("actuator-stale") { options in
            options.afterSubStep = { _, sub in
                guard sub == .imageAvailable else { return }
                await locks.expire("web")
                let lease = try await locks.acquire(name: "web", ttl: .seconds(30))
                successor.withLock { $0 = lease }
            }
        }

        let result = try await stale.perform(request)

        guard case .leaseLost(let reason) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(
            reason.contains("no longer held") && reason.contains("RunInstances"),
            "it stopped right before the launch: \(reason)")
        #expect(h.aws.calls("RunInstances").isEmpty)
        #expect(h.operations() == ["RegisterImage"])
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.status == .inProgress)
        #expect(record.notes.contains { $0.contains("actuator-stale stopped") })
        let event = try #require(h.history.first { $0.body.kind == .leaseLost })
        #expect(event.body.actor == "actuator-stale")
        let lease = try #require(successor.withLock { $0 })
        #expect(lease.fencingToken > (event.body.fencingToken ?? .max))
        #expect(try await locks.isHeld(lease), "the successor's lock is untouched by the stale actor")
        #expect(h.outcomes(request.idempotencyKey).isEmpty, "no outcome: the successor finishes the step")
    }

    @Test func anActorFencedOutOfTheRecordStopsBeforeItsNextMutation() async throws {
        let h = MemoryActuatorHarness()
        let (old, allocation) = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        let (locks, records) = (h.locks, h.records)
        // Right after the launch, a successor takes the lock over and writes the record under its token;
        // the stale actor's next write (the `running` sub-step, before the address moves) is refused.
        let stale = h.actuator("actuator-stale") { options in
            options.afterSubStep = { key, sub in
                guard sub == .launch else { return }
                await locks.expire("web")
                let lease = try #require(try await locks.acquire(name: "web", ttl: .seconds(30)))
                var taken = try #require(try await records.load(key))
                (taken.owner, taken.fencingToken, taken.attempts) = (
                    "actuator-next", lease.fencingToken, taken.attempts + 1
                )
                try await records.save(taken)
            }
        }

        let result = try await stale.perform(request)

        guard case .leaseLost(let reason) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(reason.contains("actuator-next under fencing token 2, newer than 1"), "\(reason)")
        #expect(h.operations() == ["RegisterImage", "RunInstances"], "nothing after the fence")
        #expect(h.ec2.address(allocation)?.instanceId == old.instanceId, "the address was not moved by the stale actor")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.owner == "actuator-next" && record.fencingToken == 2)
        #expect(!record.done.contains(.running), "the stale actor's progress did not overwrite the successor's record")
    }

    @Test func aThrottledLaunchIsHandedBackAndTheRedeliveryFinishesTheStep() async throws {
        let h = MemoryActuatorHarness()
        let (old, allocation) = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        h.aws.throttle("RunInstances")
        let source = MemoryDeliverySource(queue: h.topology.actionRequestsQueue)
        let loop = MessageWorker<Envelope<ActionRequest>>(
            consumer: source,
            deadLetters: DeadLetterSink(publisher: h.publisher, topology: h.topology, workerName: "actuator-test"),
            expecting: .actionRequest, logger: Logger(label: "actuator-queue"), senders: nil,
            handler: h.actuator().handle)
        let running = Task { await loop.run() }
        let envelope = Envelope(
            type: .actionRequest, id: request.idempotencyKey, correlationId: request.incidentId, target: "web",
            instanceId: old.instanceId, occurredAt: Date(), body: request)
        source.deliver(try EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: envelope.id))

        // Generous: it normally takes well under a second, but at the start of a CI run, with hundreds of
        // tests starting at once on two cores, this test once needed 35 s for the first delivery alone.
        let deadline = ContinuousClock.now + .seconds(180)
        while source.acked.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        source.shutdown()
        await running.value

        let acked = try #require(source.acked.first, "the request was finished")
        #expect(
            acked.redelivered && acked.deliveryCount == 1, "the first delivery was handed back, the second finished it")
        #expect(h.aws.calls("RunInstances").map(\.error) == ["RequestLimitExceeded", nil])
        #expect(h.aws.calls("RegisterImage").count == 1, "the image registered before the throttle is reused")
        let outcome = try #require(h.outcomes(request.idempotencyKey).first?.body)
        #expect(outcome.status == .succeeded)
        #expect(
            h.ec2.instances.filter { $0.tags["AutoRecovery:ReplacementOf"] == old.instanceId }.count == 1,
            "one replacement")
        #expect(h.ec2.address(allocation)?.instanceId == outcome.instanceId)
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.attempts == 2)
        #expect(
            record.notes.contains {
                $0.contains("attempt 1 of 4 stopped by a passing error") && $0.contains("RequestLimitExceeded")
            })
    }

    @Test func aThrottleThatOutlastsEveryAttemptFailsTheStepAndLaunchesNothing() async throws {
        let h = MemoryActuatorHarness()
        let (old, _) = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        h.aws.throttle("RegisterImage", times: 10)
        let actuator = h.actuator { $0.maxAttempts = 2 }

        await #expect(throws: ActuatorError.self, "the first attempt hands the request back") {
            try await actuator.perform(request)
        }
        let result = try await actuator.perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .failed)
        #expect(outcome.reason?.contains("gave up after 2 attempts") == true, "\(outcome.reason ?? "")")
        #expect(h.aws.calls("RegisterImage").count == 2 && h.aws.calls("RunInstances").isEmpty)
        #expect(h.ec2.instance(old.instanceId)?.state == .running, "the old instance is left alone")
        #expect(h.notices.contains { $0.body.kind == .actionFailed && $0.body.nextStep == .failover })
    }

    @Test func aRefusedAddressMoveAfterTheLaunchStopsTheReplacementAsAbandoned() async throws {
        let h = MemoryActuatorHarness()
        let (old, allocation) = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        h.aws.fail(
            "AssociateAddress",
            with: AWSError(
                kind: .clientError, service: "EC2", operation: "AssociateAddress", region: "us-east-1",
                httpStatus: 400, code: "InvalidNetworkInterfaceID.NotFound", message: "refused (injected)"))

        let result = try await h.actuator().perform(request)

        let record = try #require(try await h.records.load(request.idempotencyKey))
        let launchedId = try #require(record.resources.newInstanceId)
        ActuatorExpectations.abandonedReplacement(
            result, failedAt: "AssociateAddress", record: record, replacement: h.ec2.instance(launchedId),
            old: try #require(h.ec2.instance(old.instanceId)))
        #expect(h.ec2.address(allocation)?.instanceId == old.instanceId)
        let notice = try #require(h.notices.first { $0.body.kind == .actionFailed })
        #expect(notice.body.nextStep == .failover && notice.body.detail?.contains("abandoned") == true)
    }

    @Test func anIdentityWithoutPermissionStopsTheStepForAPerson() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        h.aws.fail(
            "RebootInstances",
            with: AWSError(
                kind: .accessDenied, service: "EC2", operation: "RebootInstances", region: "us-east-1",
                httpStatus: 403, code: "UnauthorizedOperation", message: "not allowed (injected)"))

        let result = try await h.actuator().perform(h.request(.restart, target: "web", instance: instance.instanceId))

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .humanNeeded)
        #expect(outcome.reason?.contains("cannot do this: grant it") == true, "\(outcome.reason ?? "")")
        #expect(h.operations().isEmpty)
        #expect(h.notices.contains { $0.body.kind == .humanNeeded })
    }

    @Test func aFailoverWithTheHomeRegionDownLaunchesFromTheDRSettingsAndSaysWhatItCouldNotDo() async throws {
        let h = MemoryActuatorHarness()
        let old = h.launchTarget("web")
        _ = h.dr.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        h.aws.outage(region: "us-east-1")
        let config = try ActuatorConfig(
            file: TargetConfigFile(
                data: Data(
                    """
                    {"targets": {"web": {"health_url": "\(MemorySite.url)",
                                         "dr": {"instance_type": "t3.small", "subnet_id": "subnet-dr", "security_group_ids": ["sg-dr"]}}}}
                    """.utf8)), defaultDRRegion: "us-west-2")

        let result = try await h.actuator(config: config)
            .perform(h.request(.failover, target: "web", instance: old.instanceId, destination: "us-west-2"))

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        let launched = try #require(h.dr.instances.first { $0.instanceId == outcome.instanceId })
        #expect(
            launched.instanceType == "t3.small" && launched.subnetId == "subnet-dr"
                && launched.securityGroupIds == ["sg-dr"])
        #expect(h.ec2.instance(old.instanceId)?.state == .running, "the unreachable region was not changed")
        let record = try #require(try await h.records.load(outcome.idempotencyKey))
        #expect(
            record.notes.contains { $0.contains("did not answer") && $0.contains("launching from the DR settings") })
        #expect(record.notes.contains { $0.contains("could not stop the old instance") })
        #expect(record.summary?.contains("NOT stopped") == true)
    }
}
