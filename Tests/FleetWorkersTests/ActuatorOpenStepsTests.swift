import AWSClient
import FleetRuntime
import FleetTestSupport
import Foundation
import RecoveryCore
import Synchronization
import Testing

@testable import FleetWorkers

/// Issue 14, gap 9, on the memory drivers: the step record and the open-steps index, not the open
/// delivery, keep a step alive. Before, a request for a locked target held its delivery (and one of the
/// actuator's slots) for up to LOCK_WAIT_LIMIT (20 min), and a step was resumed only by the redelivery of
/// its request, which RabbitMQ's consumer timeout (30 min) takes away from a long step.
@Suite("Actuator: steps outlive their delivery (open-steps index and sweep)")
struct ActuatorOpenStepsTests {
    /// A re-provisionable `web` (instance, Elastic IP, tagged snapshot).
    func reprovisionable(_ h: MemoryActuatorHarness) -> EC2Instance {
        let old = h.launchTarget("web")
        _ = h.ec2.addAddress(on: old.instanceId)
        _ = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        return old
    }

    /// Before: the copy waited for the lock for up to an hour here (LOCK_WAIT_LIMIT), holding its delivery.
    @Test(.timeLimit(.minutes(1)))
    func aDeliveryOfAStepRunningUnderAnotherActorIsSettledAtOnce() async throws {
        let h = MemoryActuatorHarness()
        let old = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        let dying = h.actuator("actuator-dies") { options in
            options.afterSubStep = { _, sub in if sub == .launch { throw SimulatedCrash() } }
        }
        await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }
        #expect(await h.openSteps.due(at: .distantFuture, limit: 10) == [request.idempotencyKey])

        // The redelivered request: the dead actor's lock is still there, its record in progress.
        let copy = h.actuator("actuator-b") { $0.lockWaitLimit = .seconds(3600) }
        #expect(try await copy.perform(request, whenBusy: .settle) == .deferred)
        #expect(h.aws.calls("RunInstances").count == 1)
    }

    /// The delivery is gone (settled as above, or lost to the consumer timeout) and the actor died: the
    /// sweep resumes the step from its record once the lease has run out, and finishes it once.
    @Test func theSweepResumesAStepWhoseActorDiedAndWhoseDeliveryIsGone() async throws {
        let h = MemoryActuatorHarness()
        let old = reprovisionable(h)
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)
        let dying = h.actuator("actuator-dies") { options in
            options.afterSubStep = { _, sub in if sub == .launch { throw SimulatedCrash() } }
        }
        await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }
        let launched = try #require(try await h.records.load(request.idempotencyKey)?.resources.newInstanceId)

        // Within the lease's TTL nothing is due; the sweep leaves the step alone.
        #expect(await h.actuator("sweeper").sweepOpenSteps() == 0)
        // A TTL later (the sweeper's clock runs ahead), with the dead actor's lock expired, it resumes it.
        let ttl = ActuatorHarness.fastOptions("x").lockTTL
        h.lockClock.advance(ttl + .seconds(1))
        let sweeper = h.actuator("sweeper", clockAhead: ttl.timeInterval + 1)
        #expect(await sweeper.sweepOpenSteps() == 1)

        let outcome = try #require(h.outcomes(request.idempotencyKey).first?.body)
        #expect(outcome.status == .succeeded && outcome.instanceId == launched, "\(outcome.reason ?? "")")
        #expect(h.aws.calls("RunInstances").count == 1, "resumed, not repeated")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.status == .completed && record.owner == "sweeper" && record.attempts == 2)
        #expect(await h.openSteps.due(at: .distantFuture, limit: 10).isEmpty, "a completed step leaves the index")
        #expect(await sweeper.sweepOpenSteps() == 0)
    }

    /// Before: the request for the second step waited for the first step's lock, holding a slot.
    @Test func aStepForABusyTargetIsAcceptedAndTheSweepStartsItWhenTheLockIsFree() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let restart = h.request(.restart, target: "web", instance: instance.instanceId)
        let held = try #require(try await h.locks.acquire(name: "web", ttl: .seconds(60)))
        let repair = ActionRequest.repair(
            RepairRequest(.quarantine(detachElasticIP: false), id: "ops-1", reason: "look at it"), target: "web",
            instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date(), deadline: Date() + 300)

        let actuator = h.actuator()
        #expect(try await actuator.perform(restart, whenBusy: .settle) == .deferred)
        #expect(try await actuator.perform(repair, whenBusy: .settle) == .deferred)
        let accepted = try #require(try await h.records.load(restart.idempotencyKey))
        #expect(accepted.isAccepted && accepted.request?.idempotencyKey == restart.idempotencyKey)
        #expect(accepted.request?.instanceId == instance.instanceId)
        #expect(h.aws.mutations.isEmpty, "nothing runs while the lock is held")
        #expect(await actuator.sweepOpenSteps() == 0, "still locked: the sweep waits")

        _ = try await h.locks.release(held)
        // Each pass starts what it can: one takes the lock, the other waits for a later pass (a minute on).
        var ran = 0
        for pass in 0..<4 where ran < 2 {
            ran += await h.actuator("sweeper", clockAhead: 3600 + Double(pass) * 60).sweepOpenSteps()
        }
        #expect(ran == 2)
        let done = try #require(try await h.records.load(restart.idempotencyKey))
        #expect(done.status == .completed && done.attempts == 1 && done.owner == "sweeper")
        #expect(h.outcomes(restart.idempotencyKey).count == 1 && h.outcomes(repair.idempotencyKey).count == 1)
    }

    /// An accepted step that only gets the lock after its deadline does nothing, as a late request.
    @Test func anAcceptedStepWhoseDeadlinePassedBeforeTheLockFreedChangesNothing() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let restart = h.request(.restart, target: "web", instance: instance.instanceId, deadline: 60)
        let held = try #require(try await h.locks.acquire(name: "web", ttl: .seconds(60)))
        #expect(try await h.actuator().perform(restart, whenBusy: .settle) == .deferred)
        _ = try await h.locks.release(held)

        #expect(await h.actuator("sweeper", clockAhead: 120).sweepOpenSteps() == 1)

        let outcome = try #require(h.outcomes(restart.idempotencyKey).first?.body)
        #expect(outcome.status == .failed && outcome.reason?.contains("after its deadline") == true)
        #expect(h.aws.mutations.isEmpty)
    }

    /// An actor stored the outcome and died before publishing it: the sweep publishes it.
    @Test func theSweepPublishesAnOutcomeItsActorStoredButNeverSent() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)
        _ = try await h.actuator().perform(request)
        let sent = h.outcomes(request.idempotencyKey)
        #expect(sent.count == 1)
        // As if the completed step had stayed in the index (the removal failed, or the actor died first).
        await h.openSteps.schedule(request.idempotencyKey, at: Date())

        #expect(await h.actuator("sweeper").sweepOpenSteps() == 0)
        #expect(h.outcomes(request.idempotencyKey).count == 2 && h.outcomes(request.idempotencyKey)[1].id == sent[0].id)
        #expect(await h.openSteps.due(at: .distantFuture, limit: 10).isEmpty)
    }
}
