import AWSClient
import FleetRuntime
import FleetTestSupport
import Foundation
import RecoveryCore
import Synchronization
import Testing

@testable import FleetWorkers

/// Issue 14, gap 10: `recoveryctl abort` at the actuator, on the memory drivers. The decision worker's flag
/// (`kv:abort:<key>`) is set by the test hook right after a sub-step is recorded; the actor must start
/// nothing after that boundary, compensate as after a failure, complete the record with who aborted, and
/// report it; a redelivery republishes instead of running the step again.
@Suite("Actuator on the memory drivers: abort")
struct ActuatorMemoryAbortTests {
    static let abort = StepAbort(
        by: "alice", at: Date(timeIntervalSince1970: 1_795_316_400), reason: "wrong AMI", commandId: "cmd-abort")

    /// An actuator whose hook sets the step's abort flag once `sub` is recorded.
    static func aborting(_ h: MemoryActuatorHarness, after sub: SubStep) -> ActuatorWorker {
        let aborts = h.aborts
        return h.actuator { options in
            options.afterSubStep = { key, done in
                guard done == sub else { return }
                try await aborts.set(StepAbort.flagKey(key), try abort.encoded(), expiry: StepAbort.flagLifetime)
            }
        }
    }

    @Test func aReprovisionAbortedAfterTheLaunchAbandonsTheReplacementAndMovesNothing() async throws {
        let h = MemoryActuatorHarness()
        let old = h.launchTarget("web")
        let allocation = try #require(h.ec2.addAddress(on: old.instanceId).allocationId)
        _ = h.ec2.addSnapshot(tags: ["AutoRecovery:Name": "web"])
        let request = h.request(.reprovision, target: "web", instance: old.instanceId)

        let result = try await Self.aborting(h, after: .launch).perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .humanNeeded && outcome.aborted == Self.abort)
        #expect(outcome.instanceId == nil, "the abandoned replacement does not become the target's instance")
        #expect(
            outcome.reason?.contains("aborted by alice") == true && outcome.reason?.contains("after launch") == true)
        // Nothing after the boundary but the compensation: no address move, no stop of the original.
        #expect(
            h.operations() == ["RegisterImage", "RunInstances", "CreateTags", "StopInstances"], "\(h.operations())")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        let launched = try #require(record.resources.newInstanceId)
        #expect(h.aws.calls("StopInstances").map(\.detail) == [launched])
        #expect(record.status == .completed && record.outcome == outcome && record.aborted == Self.abort)
        #expect(record.done.contains(.compensated) && !record.done.contains(.running) && !record.done.contains(.eip))
        #expect(record.notes.contains { $0.contains("aborted by alice") && $0.contains("(wrong AMI)") })
        ActuatorExpectations.abandonedReplacement(
            result, status: .humanNeeded, failedAt: "aborted by alice", record: record,
            replacement: h.ec2.instance(launched), old: try #require(h.ec2.instance(old.instanceId)))
        #expect(h.ec2.address(allocation)?.instanceId == old.instanceId, "the site stays where it was")
        // History and the notice say who stopped it.
        #expect(h.history.contains { $0.id == "\(request.idempotencyKey):aborted" && $0.body.kind == .aborted })
        let notice = try #require(h.notices.first { $0.body.kind == .humanNeeded })
        #expect(notice.body.detail?.contains("aborted by alice") == true, "\(notice.body.detail ?? "")")
        #expect(notice.body.commands == ["recoveryctl ack web"], "the step cannot run again in this incident")

        // A redelivered request republishes the aborted outcome and starts nothing.
        let again = try await h.actuator("actuator-b").perform(request)
        #expect(again == .republished(outcome))
        #expect(h.operations().count == 4)
        #expect(h.outcomes(request.idempotencyKey).map(\.body) == [outcome, outcome])
    }

    @Test func aRestartAbortedWhileStoppedStartsTheInstanceAgain() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        h.site.set(healthy: false)  // the reboot does not help: stop/start follows
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await Self.aborting(h, after: .stopped).perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .humanNeeded && outcome.aborted?.by == "alice")
        #expect(h.operations() == ["RebootInstances", "StopInstances", "StartInstances"], "\(h.operations())")
        #expect(h.ec2.instance(instance.instanceId)?.state == .running, "not left stopped")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.done.last == .compensated && !record.done.contains(.start))
        #expect(outcome.reason?.contains("StartInstances was sent") == true, "\(outcome.reason ?? "")")
    }

    @Test func anAbortBeforeTheActorStartsChangesNothing() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)
        try await h.aborts.set(
            StepAbort.flagKey(request.idempotencyKey), try Self.abort.encoded(), expiry: StepAbort.flagLifetime)

        let result = try await h.actuator().perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.aborted == Self.abort)
        #expect(outcome.reason?.contains("before its first sub-step; nothing needed putting back") == true)
        #expect(h.operations().isEmpty)
    }

    @Test func aFlagThatCannotBeReadStopsTheActorBeforeAnyMutation() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        await #expect(throws: ActuatorError.self) {
            try await h.actuator(aborts: UnreadableStore()).perform(request)
        }

        #expect(h.operations().isEmpty, "no sub-step starts on an unknown answer")
        let record = try #require(try await h.records.load(request.idempotencyKey))
        #expect(record.status == .inProgress, "handed back to the queue with its progress")
        #expect(record.notes.contains { $0.contains("abort flag") })
    }
}

/// A key-value store Redis cannot answer for.
struct UnreadableStore: KeyValueStore {
    struct Down: Error {}
    func set(_ key: String, _ value: String, expiry: Duration?) async throws { throw Down() }
    func get(_ key: String) async throws -> String? { throw Down() }
    func delete(_ key: String) async throws -> Bool { throw Down() }
    func setIfAbsent(_ key: String, _ value: String, expiry: Duration?) async throws -> Bool { throw Down() }
}

/// An abort reaches a step that waits (for the site here; for an image or an instance through the AWS
/// waiters, which run the same guard before every poll). Before, the actor noticed only at the next
/// sub-step boundary, after the wait (an hour here): the test ran into its time limit.
@Suite("Actuator on the memory drivers: an abort interrupts a wait")
struct ActuatorAbortWaitTests {
    @Test(.timeLimit(.minutes(1)))
    func anAbortDuringTheHealthWaitStopsTheRestartThere() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        h.site.set(healthy: false)
        let aborts = h.aborts
        let actuator = h.actuator { options in
            options.restartHealthTimeout = .seconds(3600)
            options.healthPollInterval = .milliseconds(50)
            options.afterSubStep = { key, done in
                guard done == .reboot else { return }
                // Set while the actor waits for the site, not at a boundary.
                Task {
                    try await Task.sleep(for: .milliseconds(200))
                    try await aborts.set(
                        StepAbort.flagKey(key), try ActuatorMemoryAbortTests.abort.encoded(),
                        expiry: StepAbort.flagLifetime)
                }
            }
        }
        let request = h.request(.restart, target: "web", instance: instance.instanceId)

        let result = try await actuator.perform(request)

        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)")
            return
        }
        #expect(outcome.status == .humanNeeded && outcome.aborted == ActuatorMemoryAbortTests.abort)
        #expect(outcome.reason?.contains("after reboot") == true, "\(outcome.reason ?? "")")
        #expect(h.operations() == ["RebootInstances"], "no stop/start after the abort")
    }

    @Test func aWaiterStopsAtTheNextPollWhenItsGuardThrows() async throws {
        struct Stop: Error {}
        let polls = Mutex(0)
        await #expect(throws: Stop.self) {
            try await AWSWaitGuard.$beforePoll.withValue({ _ in throw Stop() }) {
                _ = try await waitUntil("forever", timeout: .seconds(3600), interval: .milliseconds(1)) {
                    () async throws -> WaiterStep<Int> in
                    polls.withLock { $0 += 1 }
                    return .pending(state: "pending")
                }
            }
        }
        #expect(polls.withLock { $0 } == 1, "the first poll runs, the guard stops the second")
    }
}
