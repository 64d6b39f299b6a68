import Foundation
import RecoveryCore
import Testing

/// Issue 14, gap 10: `recoveryctl abort <target>` stops the step in progress. The ladder records who
/// aborted it, when and why, stops automation for the incident, asks the worker to flag the step for the
/// actuator, and never escalates after it.
@Suite("Escalation ladder: abort of a running step")
struct EscalationAbortTests {
    /// An incident whose restart the actuator is running (requested at t0 + 300, deadline t0 + 900).
    static func restarting() throws -> (Ladder, ActionRequest) {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        return (l, restart)
    }

    static let stoppedByAlice = EscalationMachine.StopReason.humanNeeded(
        "restart was aborted by alice (wrong instance)")

    @Test func anAbortRecordsWhoFlagsTheStepAndStopsAutomation() throws {
        var (l, restart) = try Self.restarting()
        let incident = try #require(l.incidentId)
        l.now = t0 + 400
        let actions = l.command(.abort, by: "alice", reason: "wrong instance")

        let abort = StepAbort(by: "alice", at: t0 + 400, reason: "wrong instance", commandId: "cmd-\(l.counter)")
        #expect(actions.aborts.map(\.key) == [restart.idempotencyKey], "the running step is flagged for the actuator")
        #expect(actions.aborts.first?.abort == abort)
        #expect(actions.requests.isEmpty)
        let accepted = try #require(actions.notices(.commandAccepted).first)
        #expect(
            accepted.reason
                == .abortRequested(
                    by: "alice", step: .restart, incident: incident, key: restart.idempotencyKey,
                    reason: "wrong instance"))
        #expect(accepted.detail == accepted.reason?.text)
        #expect(accepted.command?.operator == "alice" && accepted.step == .restart && accepted.nextStep == .notifyOnly)
        #expect(l.machine.incident?.aborted == abort)
        #expect(l.machine.incident?.automationStopped == Self.stoppedByAlice)
        // The actuator still works on it until its next sub-step boundary: the step stays in progress.
        guard case .inProgress(let attempt)? = l.machine.incident?.phase else {
            Issue.record("not in progress: \(String(describing: l.machine.incident?.phase))")
            return
        }
        #expect(attempt.idempotencyKey == restart.idempotencyKey)
        // Stored and read back (a restarted decision worker), the abort is still there.
        #expect(try StateCodec.decodeMachine(StateCodec.encode(l.machine)) == l.machine)

        // The actuator stops, puts the instance back and reports the abort.
        var outcome = ActionOutcome(
            for: restart, status: .humanNeeded, reason: "aborted by alice; stopped after stopped; StartInstances sent")
        outcome.aborted = abort
        l.now = t0 + 450
        let reported = l.send(.actionOutcome(id: "evt-aborted", outcome))
        #expect(reported.requests.isEmpty, "no escalation after an aborted step")
        let notice = try #require(reported.notices(.humanNeeded).first)
        #expect(
            notice.reason
                == .stepAborted(
                    target: "shop-web", step: .restart, incident: incident, by: "alice", reason: "wrong instance",
                    result: outcome.reason))
        #expect(notice.detail?.contains("was aborted by alice (wrong instance)") == true, "\(notice.detail ?? "")")
        #expect(notice.step == .restart && notice.nextStep == .notifyOnly)
        #expect(
            notice.commands == [
                "recoveryctl reprovision shop-web", "recoveryctl failover shop-web", "recoveryctl ack shop-web",
            ])
        #expect(l.machine.incident?.phase == .stopped(Self.stoppedByAlice))

        // Nothing automatic follows in this incident: not at the step's deadline, not later, not on failures.
        #expect(l.tick(at: 900).requests.isEmpty)
        #expect(l.tick(at: 50_000).requests.isEmpty)
        l.fail(5)
        #expect(l.log.requests.count == 1)
        // The operator has taken over: a step by hand still runs, and can be aborted in its turn.
        l.now = t0 + 500
        let reprovision = try #require(l.command(.reprovision, by: "alice").requests.first)
        #expect(reprovision.step == .reprovision)
        l.now = t0 + 600
        let second = l.command(.abort, by: "bob")
        #expect(second.aborts.map(\.key) == [reprovision.idempotencyKey])
        #expect(l.machine.incident?.aborted?.by == "bob")
        #expect(l.machine.incident?.automationStopped == Self.stoppedByAlice, "the first stop reason stays")
    }

    @Test func afterAnAbortAFailureOrASilentActuatorEscalatesNothing() throws {
        // The step failed on its own before it reached a boundary: reported, but automation stays stopped.
        var (l, restart) = try Self.restarting()
        l.command(.abort, by: "alice", reason: "wrong instance")
        let failed = l.outcome(restart, .failed, reason: "StopInstances: IncorrectInstanceState")
        #expect(failed.requests.isEmpty)
        let notice = try #require(failed.notices(.actionFailed).first)
        #expect(notice.nextStep == .notifyOnly)
        #expect(
            notice.reason
                == .stepFailed(
                    step: .restart, reason: "StopInstances: IncorrectInstanceState", stillStopped: Self.stoppedByAlice))

        // No outcome at all before the deadline: the same.
        var (quiet, _) = try Self.restarting()
        quiet.command(.abort, by: "alice", reason: "wrong instance")
        let late = quiet.tick(at: 901)
        #expect(late.requests.isEmpty)
        #expect(late.notices(.verificationFailed).first?.nextStep == .notifyOnly)
    }

    @Test func aStepThatFinishedBeforeItsNextBoundaryIsVerifiedButNotFollowed() throws {
        var (l, restart) = try Self.restarting()
        l.command(.abort, by: "alice", reason: "wrong instance")
        let done = l.outcome(restart, .succeeded)
        #expect(done.notices(.actionSucceeded).first?.nextStep == .notifyOnly)
        #expect(l.tick(at: 901).requests.isEmpty, "still down after the window: no reprovision")
    }

    @Test func anAbortedOutcomeThatOvertookItsCommandStopsAutomationToo() throws {
        // A decision worker died between writing the flag and storing the state: the actuator's outcome
        // comes before the (redelivered) command. It alone stops automation and says who aborted.
        var (l, restart) = try Self.restarting()
        var outcome = ActionOutcome(for: restart, status: .humanNeeded, reason: "aborted by carol")
        outcome.aborted = StepAbort(by: "carol", at: t0 + 350, reason: nil, commandId: "cmd-lost")
        let reported = l.send(.actionOutcome(id: "evt-aborted", outcome))
        #expect(reported.requests.isEmpty)
        #expect(reported.notices(.humanNeeded).first?.reason?.text.contains("was aborted by carol") == true)
        #expect(l.machine.incident?.aborted == outcome.aborted)
        #expect(l.machine.incident?.automationStopped == .humanNeeded("restart was aborted by carol"))
        #expect(l.tick(at: 50_000).requests.isEmpty)
    }

    @Test func anAbortNeedsAStepTheActuatorIsRunning() throws {
        var healthy = Ladder()
        expectRejected(
            healthy.command(.abort),
            because: .noOpenIncident(command: "abort", target: "shop-web", failures: 0, threshold: 3))

        // In the grace period nothing runs yet.
        var grace = Ladder()
        grace.declare()
        let incident = try #require(grace.incidentId)
        let pending = expectRejected(
            grace.command(.abort), because: .nothingToAbort(command: "abort", incident: incident, verifying: nil))
        #expect(pending?.commands == ["recoveryctl ack shop-web"])

        // The step finished and is being verified: nothing left to stop at the actuator.
        var (verifying, restart) = try Self.restarting()
        verifying.outcome(restart, .succeeded)
        expectRejected(
            verifying.command(.abort),
            because: .nothingToAbort(
                command: "abort", incident: try #require(verifying.incidentId), verifying: .restart))

        // Aborted already: the second one says by whom and since when, and flags nothing again.
        var (twice, _) = try Self.restarting()
        twice.now = t0 + 400
        twice.command(.abort, by: "alice", reason: "wrong instance")
        expectRejected(
            twice.command(.abort, by: "bob"),
            because: .alreadyAborted(
                command: "abort", step: .restart, incident: try #require(twice.incidentId), by: "alice",
                since: t0 + 400))
    }

    @Test func stoppingIsNeverBlockedByAHoldTheBrakeOrQuarantine() throws {
        var (l, restart) = try Self.restarting()
        l.command(.ack, by: "bob")
        l.brakeEngaged = true
        l.machine.settings.quarantined = true
        let actions = l.command(.abort, by: "alice")
        #expect(actions.aborts.map(\.key) == [restart.idempotencyKey])
        #expect(actions.notices(.commandAccepted).count == 1)
    }

    @Test func theTargetMachineHandsTheFlagToTheWorkerOnce() throws {
        var m = TargetMachineTests.machine()
        _ = TargetMachineTests.fail(&m, 3)
        let started = m.handle(.ladder(.tick), TargetMachineTests.context(t0 + 300))
        guard
            case .actionRequest(let request)? = TargetMachineTests.messages(started).first(where: {
                if case .actionRequest = $0 { true } else { false }
            })
        else {
            Issue.record("no request in \(started)")
            return
        }
        let abort = EscalationMachine.Event.command(
            id: "cmd-abort", OperatorCommand(.abort, by: "alice", reason: "wrong instance"))
        let actions = m.handle(.ladder(abort), TargetMachineTests.context(t0 + 310))
        let flags = actions.compactMap { if case .abortStep(let key, let abort) = $0 { (key, abort) } else { nil } }
        #expect(flags.map(\.0) == [request.idempotencyKey])
        #expect(
            flags.first?.1 == StepAbort(by: "alice", at: t0 + 310, reason: "wrong instance", commandId: "cmd-abort"))
        #expect(
            TargetMachineTests.messages(actions).contains {
                if case .notice(let n) = $0 { n.kind == .commandAccepted } else { false }
            })
        // A redelivered command is a known id: no second flag, no second answer.
        let again = m.handle(.ladder(abort), TargetMachineTests.context(t0 + 320))
        #expect(!again.contains { if case .abortStep = $0 { true } else { false } })
        #expect(TargetMachineTests.messages(again).allSatisfy { if case .notice = $0 { false } else { true } })
    }

    @Test func theNewReasonsAndTheOutcomeReadBackFromTheWire() throws {
        let abort = StepAbort(by: "alice", at: t0, reason: "wrong instance", commandId: "cmd-1")
        #expect(try StepAbort.decode(abort.encoded()) == abort)
        #expect(try abort.encoded().contains("\"command_id\":\"cmd-1\""))
        var outcome = ActionOutcome(
            idempotencyKey: "shop-web/inc-1/restart", incidentId: "inc-1", step: .restart, status: .humanNeeded,
            reason: "aborted by alice")
        outcome.aborted = abort
        let encoded = try Timestamp.jsonEncoder().encode(outcome)
        #expect(try Timestamp.jsonDecoder().decode(ActionOutcome.self, from: encoded) == outcome)
        // An outcome without the field (an older actuator) reads as not aborted.
        let old = #"{"idempotency_key":"k","incident_id":"i","step":"restart","status":"human_needed"}"#
        #expect(try Timestamp.jsonDecoder().decode(ActionOutcome.self, from: Data(old.utf8)).aborted == nil)
    }
}
