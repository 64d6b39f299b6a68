import AWSClient
import FleetTestSupport
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

@testable import FleetWorkers

/// Issue 14, gap 7, on the memory drivers. Lock-renewal failures were ignored, so an actor whose lease had
/// run out went on with its step (waiting, publishing, checking) and stopped only at its next mutation,
/// however far away; and a reboot whose answer was lost was sent again by the actor that resumed the step.
@Suite("Actuator on the memory drivers: lease renewal, and mutations with no clear answer")
struct ActuatorFencingMemoryTests {
    struct RedisDown: Error, CustomStringConvertible {
        var description: String { "Redis is not answering (injected)" }
    }

    /// Before: the actor sat in its hour-long health wait after the renewals failed, and this test ran into
    /// its time limit. Now the renewal loop gives the lease up before its TTL can have run out, and the
    /// step is stopped where it waits.
    @Test(.timeLimit(.minutes(2)))
    func renewalsThatFailForTheLeasesTTLStopTheStepWhereItWaits() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        h.site.set(healthy: false)
        let locks = h.locks
        let actuator = h.actuator { options in
            // Generous against a loaded CI machine, which starves tasks for up to ~20 s: only being lost counts.
            options.lockTTL = .seconds(30)
            options.restartHealthTimeout = .seconds(3600)
            options.afterSubStep = { _, sub in
                if sub == .reboot { await locks.failRenewals(with: RedisDown()) }
            }
        }
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await actuator.perform(request)

        guard case .leaseLost(let reason) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        // Which notices first (the failed renewal, or the watchdog when the machine is slow) decides whether
        // Redis's error is quoted; either way the lease could not be renewed in time.
        #expect(reason.contains("could not be renewed"), "\(reason)")
        #expect(h.operations() == ["RebootInstances"], "nothing after the reboot: no stop/start")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.status == .inProgress, "left for the next actor")
        #expect(record.notes.contains { $0.contains("could not be renewed") })
        #expect(h.history.contains { $0.body.kind == .leaseLost })
        #expect(h.outcomes(request.idempotencyKey).isEmpty)
    }

    /// A blip shorter than the TTL changes nothing: the one failed renewal is tried again a second later and
    /// succeeds, and the step goes on.
    @Test(.timeLimit(.minutes(2)))
    func aRenewalBlipShorterThanTheTTLLetsTheStepFinish() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        h.site.set(healthy: false)
        let (locks, site) = (h.locks, h.site)
        let actuator = h.actuator { options in
            // Renewed every 20 s; one failure is retried after 1 s, well inside the 50 s the lease allows
            // (room for a loaded CI machine that starves tasks for seconds).
            options.lockTTL = .seconds(60)
            options.healthPollInterval = .milliseconds(100)
            options.restartHealthTimeout = .seconds(3600)
            options.afterSubStep = { _, sub in
                guard sub == .reboot else { return }
                await locks.failRenewals(with: RedisDown(), times: 1)
                // The site comes back once a renewal has failed and the next one has gone through.
                Task {
                    while await locks.failedRenewals == 0 { try await Task.sleep(for: .milliseconds(50)) }
                    try await Task.sleep(for: .milliseconds(1500))
                    site.set(healthy: true)
                }
            }
        }
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await actuator.perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        #expect(await h.locks.failedRenewals == 1, "a renewal did fail")
        #expect(!h.history.contains { $0.body.kind == .leaseLost })
    }

    /// Before: the 5xx ended the attempt, and the actor that resumed the step rebooted the instance again (a
    /// second outage for a reboot that had most likely happened). Now it is not sent again: the health
    /// wait decides, and a site still down gets the stop/start.
    @Test func aRebootWithNoClearAnswerIsNotSentAgain() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        h.aws.fail(
            "RebootInstances", times: 1,
            with: AWSError(
                kind: .serverError, service: "EC2", operation: "RebootInstances", region: "us-east-1",
                httpStatus: 500, code: "InternalError", message: "injected", attempts: 1))
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await h.actuator().perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        #expect(h.aws.calls("RebootInstances").count == 1, "one RebootInstances, never a second")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.attempts == 1 && record.done.contains(.reboot) && record.done.contains(.rebootHealthy))
    }

    /// Chaos suite finding: an actuator killed after EC2 accepted its RebootInstances and before it recorded
    /// the reboot was followed by a second reboot from the actor that resumed the step (a second outage).
    /// The reboot is now marked in the record before it is sent, and a resumed step does not send it again.
    @Test func anActorKilledBetweenItsRebootAndItsRecordIsNotFollowedByASecondReboot() async throws {
        let h = MemoryActuatorHarness()
        let request = try await Self.rebootThenDie(h)
        let result = try await h.actuator("actuator-next").perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        #expect(h.aws.calls("RebootInstances").count == 1, "not rebooted a second time")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.attempts == 2 && record.resources.rebootSentAt != nil)
    }

    /// Sentinel incident finding: the actor that resumed a step after a Redis fail-over had passed the
    /// request's deadline and reported "the deadline passed before the reboot; nothing was done", though
    /// the reboot had gone out. A reboot marked in the record counts as sent, whatever the deadline.
    @Test func aResumerPastTheDeadlineCountsAMarkedRebootAsSent() async throws {
        let h = MemoryActuatorHarness()
        let request = try await Self.rebootThenDie(h)  // its deadline is 300 s ahead
        let late = h.actuator("actuator-late", clockAhead: 400)
        let result = try await late.perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(!(outcome.reason ?? "").contains("nothing was done"), "\(outcome.reason ?? "")")
        #expect(h.aws.calls("RebootInstances").count == 1, "not rebooted a second time")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.done.contains(.reboot), "the reboot is recorded as (possibly) sent: \(record.notes)")
    }

    /// Review finding: the reboot's mark written ahead of the call landed on the primary but no replica
    /// acknowledged it (`.notReplicated`): the reboot was not sent, and the retry found the mark and counted
    /// the reboot as sent. The mark is now taken back when its write fails, and the retry sends the reboot.
    @Test func aRebootMarkWhoseWriteFailedIsTakenBackAndTheRetrySendsTheReboot() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)
        let failOnce = WritesThenFails(h.records.states) { $0.contains(#""reboot_sent_at""#) }
        let actor = h.actuator("actuator-a", records: StepRecordStore(states: failOnce)) { $0.rebootSettle = .zero }
        await #expect(throws: ActuatorError.self) { try await actor.perform(request) }
        #expect(h.aws.calls("RebootInstances").isEmpty, "the write ahead failed: nothing sent")

        let result = try await actor.perform(request)
        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
        #expect(h.aws.calls("RebootInstances").count == 1, "the retry sent the reboot, once")
    }

    /// A restart of "web" whose actor sends the reboot and dies before recording it (the store "dies" with
    /// the actor: the write that would record the reboot never lands); its lock has expired since.
    static func rebootThenDie(_ h: MemoryActuatorHarness) async throws -> ActionRequest {
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)
        let dying = CrashingStore(h.records.states) { $0.contains(#""reboot""#) }
        let actor = h.actuator("actuator-dies", records: StepRecordStore(states: dying)) { $0.rebootSettle = .zero }
        await #expect(throws: SimulatedCrash.self) { try await actor.perform(request) }
        #expect(h.aws.calls("RebootInstances").count == 1)
        h.lockClock.advance(ActuatorHarness.fastOptions("actuator-dies").lockTTL + .seconds(1))
        return request
    }
}

/// A versioned store whose compare-and-set "kills the actor" (throws `SimulatedCrash`) when the data it
/// would write matches `crash`; everything else goes to `inner`.
struct CrashingStore: VersionedStore {
    let inner: any VersionedStore
    let crash: @Sendable (String) -> Bool
    init(_ inner: any VersionedStore, crash: @escaping @Sendable (String) -> Bool) {
        self.inner = inner
        self.crash = crash
    }
    func load(_ key: String) async throws -> VersionedValue? { try await inner.load(key) }
    func compareAndSet(_ key: String, expectedVersion: Int64, data: String) async throws -> Int64? {
        if crash(data) { throw SimulatedCrash() }
        return try await inner.compareAndSet(key, expectedVersion: expectedVersion, data: data)
    }
    func compareAndSet(all writes: [VersionedWrite]) async throws -> [Int64]? {
        try await inner.compareAndSet(all: writes)
    }
    func delete(_ key: String) async throws { try await inner.delete(key) }
    func keys() async throws -> [String] { try await inner.keys() }
}

/// A versioned store whose first compare-and-set matching `fails` is applied and then reported as failed
/// (as a write that reached the primary but no replica does: `.notReplicated`).
final class WritesThenFails: VersionedStore, @unchecked Sendable {
    let inner: any VersionedStore
    let fails: @Sendable (String) -> Bool
    private let done = Mutex(false)
    init(_ inner: any VersionedStore, fails: @escaping @Sendable (String) -> Bool) {
        self.inner = inner
        self.fails = fails
    }
    func load(_ key: String) async throws -> VersionedValue? { try await inner.load(key) }
    func compareAndSet(_ key: String, expectedVersion: Int64, data: String) async throws -> Int64? {
        let version = try await inner.compareAndSet(key, expectedVersion: expectedVersion, data: data)
        if version != nil, fails(data), !done.withLock({ $0 }) {
            done.withLock { $0 = true }
            throw RedisError(kind: .notReplicated, message: "0 of 1 replicas acknowledged the write (test)")
        }
        return version
    }
    func compareAndSet(all writes: [VersionedWrite]) async throws -> [Int64]? {
        try await inner.compareAndSet(all: writes)
    }
    func delete(_ key: String) async throws { try await inner.delete(key) }
    func keys() async throws -> [String] { try await inner.keys() }
}
