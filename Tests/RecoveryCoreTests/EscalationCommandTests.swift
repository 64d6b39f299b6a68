import Foundation
import RecoveryCore
import Testing

/// Asserts that `actions` is exactly one rejection of a command because of `reason` (its `detail` being the
/// reason's text), and returns it.
@discardableResult
func expectRejected(
    _ actions: [Action], because reason: NoticeReason, sourceLocation: SourceLocation = #_sourceLocation
) -> Notice? {
    #expect(actions.count == 1, "\(actions)", sourceLocation: sourceLocation)
    guard let notice = actions.rejections.first else {
        Issue.record("not rejected: \(actions)", sourceLocation: sourceLocation)
        return nil
    }
    #expect(notice.kind == .commandRejected, sourceLocation: sourceLocation)
    #expect(notice.command != nil, sourceLocation: sourceLocation)
    #expect(notice.reason == reason, sourceLocation: sourceLocation)
    #expect(notice.detail == reason.text, sourceLocation: sourceLocation)
    return notice
}

@Suite("Escalation ladder: admin responses during grace")
struct GraceCommandTests {
    @Test func ackHoldsAutomationForTheIncident() throws {
        var l = Ladder()
        l.declare()
        l.now = t0 + 60
        let ack = l.command(.ack, by: "alice")
        let accepted = try #require(ack.notices(.commandAccepted).first)
        #expect(accepted.command?.operator == "alice" && accepted.commands == ["recoveryctl resume shop-web"])
        #expect(ack.wakeUps.isEmpty)
        #expect(l.machine.nextDeadline == nil)
        #expect(l.tick(at: 300).requests.isEmpty)
        #expect(l.tick(at: 50_000).requests.isEmpty)
        // Recovery is still reported.
        l.ok(2)
        #expect(l.log.notices(.recovered).count == 1)
        #expect(l.log.requests.isEmpty)
    }

    @Test func resumeAfterAckActsWhenTheGraceIsOver() throws {
        var l = Ladder()
        l.declare()
        l.command(.ack)
        l.tick(at: 300)
        l.now = t0 + 400
        let resumed = l.command(.resume, by: "bob")
        #expect(resumed.notices(.commandAccepted).count == 1)
        let request = try #require(resumed.requests.first)
        #expect(request.step == .restart && request.requestedAt == t0 + 400 && request.requestedBy == nil)
    }

    @Test func resumeBeforeTheGraceEndsWaitsForIt() {
        var l = Ladder()
        l.declare()
        l.command(.ack)
        l.now = t0 + 100
        let resumed = l.command(.resume)
        #expect(resumed.requests.isEmpty)
        #expect(resumed.wakeUps == [t0 + 300])
        #expect(l.tick(at: 300).requests.count == 1)
    }

    @Test func approveActsBeforeTheGraceEnds() throws {
        var l = Ladder()
        l.declare()
        l.now = t0 + 60
        let approved = l.command(.approve, by: "carol")
        let request = try #require(approved.requests.first)
        #expect(request.step == .restart && request.requestedAt == t0 + 60 && request.requestedBy == "carol")
        #expect(approved.notices(.commandAccepted).count == 1)
        #expect(
            approved.notices(.actionStarted).first?.reason
                == .stepStarted(
                    target: "shop-web", step: .restart, instance: Ladder.home, destination: "eu-west-1",
                    trigger: .approved(by: "carol"), deadline: t0 + 60 + 600, next: .reprovision))
        #expect(l.tick(at: 300).isEmpty)
        #expect(l.log.requests.count == 1)
    }

    @Test func holdUntilDefersTheStepThenTheFlowContinues() throws {
        var l = Ladder()
        l.declare()
        let incident = try #require(l.incidentId)
        l.now = t0 + 60
        let held = l.command(.hold, by: "dave", until: t0 + 900)
        #expect(held.notices(.commandAccepted).first?.reason == .held(by: "dave", incident: incident, until: t0 + 900))
        #expect(held.wakeUps == [t0 + 900])
        #expect(l.tick(at: 300).requests.isEmpty)
        #expect(l.tick(at: 899).requests.isEmpty)
        let request = try #require(l.tick(at: 900).requests.first)
        #expect(request.step == .restart && request.requestedBy == nil)
        #expect(l.machine.incident?.hold == nil)
    }

    @Test func aHoldEndingBeforeTheGraceChangesNothing() {
        var l = Ladder()
        l.declare()
        l.command(.hold, until: t0 + 100)
        #expect(l.tick(at: 100).requests.isEmpty)
        #expect(l.tick(at: 300).requests.count == 1)
    }

    @Test func aHoldAlsoDefersAnEscalation() throws {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        l.now = t0 + 400
        l.command(.hold, until: t0 + 2000)
        let escalation = l.tick(at: 900)
        #expect(escalation.requests.isEmpty)
        let failed = try #require(escalation.notices(.verificationFailed).first)
        #expect(failed.nextStep == .reprovision && failed.blockedBy == .held && failed.nextStepAt == t0 + 2000)
        #expect(l.tick(at: 2000).requests.first?.step == .reprovision)
        _ = restart
    }

    @Test func holdReplacesAnAckAndAckReplacesAHold() throws {
        var l = Ladder()
        l.declare()
        let incident = try #require(l.incidentId)
        l.command(.ack, by: "alice")
        let hold = l.command(.hold, by: "bob", until: t0 + 600)
        #expect(
            hold.notices(.commandAccepted).first?.reason
                == .held(by: "bob", incident: incident, until: t0 + 600, replaces: .acknowledged(by: "alice", at: t0)))
        #expect(l.machine.incident?.hold == .until(t0 + 600, by: "bob"))
        l.command(.ack, by: "carol")
        #expect(l.machine.incident?.hold == .acknowledged(by: "carol", at: t0))
    }

    @Test func approvalRequiredTimesOutAndFailsClosed() throws {
        var settings = TargetSettings()
        settings.requiresApproval = true
        var l = Ladder(settings: settings)
        let declared = l.declare()
        let notice = try #require(declared.notices(.outageDeclared).first)
        #expect(notice.nextStep == .restart && notice.nextStepAt == nil)
        #expect(notice.blockedBy == .approval && notice.respondBy == t0 + 1800)
        #expect(declared.wakeUps == [t0 + 1800])
        #expect(l.tick(at: 300).requests.isEmpty)
        #expect(l.tick(at: 1799).requests.isEmpty)
        let timedOut = l.tick(at: 1800)
        #expect(timedOut.requests.isEmpty)
        let fail = try #require(timedOut.notices(.approvalTimedOut).first)
        #expect(fail.step == .restart && fail.nextStep == .notifyOnly)
        #expect(fail.commands.contains("recoveryctl restart shop-web"))
        #expect(l.machine.incident?.phase == .stopped(.approvalTimedOut))
        #expect(l.tick(at: 100_000).isEmpty)
        // A late approval is refused: the window closed.
        expectRejected(
            l.command(.approve),
            because: .nothingToApprove(
                command: "approve", incident: try #require(l.incidentId), stopped: .approvalTimedOut))
        #expect(l.log.requests.isEmpty)
    }

    @Test func approvalRequiredActsOnApprovalAndAsksAgainForTheNextStep() throws {
        var settings = TargetSettings()
        settings.requiresApproval = true
        var l = Ladder(settings: settings)
        l.declare()
        l.now = t0 + 500
        let restart = try #require(l.command(.approve, by: "erin").requests.first)
        #expect(restart.requestedBy == "erin")
        l.now = t0 + 600
        let failed = l.outcome(restart, .failed, reason: "x")
        #expect(failed.requests.isEmpty)
        let ask = try #require(failed.notices(.approvalRequested).first)
        #expect(ask.nextStep == .reprovision && ask.respondBy == t0 + 600 + 1800)
        #expect(failed.notices(.actionFailed).first?.blockedBy == .approval)
        #expect(l.tick(at: 2000).requests.isEmpty)
        #expect(l.command(.approve).requests.first?.step == .reprovision)
    }

    @Test func aManualStepAfterAutomationStoppedDoesNotRestartTheLadder() throws {
        var settings = TargetSettings()
        settings.requiresApproval = true
        var l = Ladder(settings: settings)
        l.declare()
        l.tick(at: 1800)  // approval timed out
        l.now = t0 + 2000
        let manual = try #require(l.command(.restart, by: "frank").requests.first)
        #expect(manual.requestedBy == "frank")
        let after = l.tick(at: 2600)
        #expect(after.requests.isEmpty)
        #expect(
            after.notices(.verificationFailed).first?.reason
                == .noOutcome(target: "shop-web", step: .restart, window: 600, stillStopped: .approvalTimedOut))
        #expect(l.machine.incident?.phase == .stopped(.approvalTimedOut))
    }
}

@Suite("Escalation ladder: operator step commands")
struct StepCommandTests {
    @Test func aManualStepRunsNowThroughTheSameIdempotency() throws {
        var l = Ladder()
        l.declare()
        let incidentId = try #require(l.incidentId)
        l.now = t0 + 30
        let actions = l.command(.reprovision, by: "alice")
        let request = try #require(actions.requests.first)
        #expect(request.step == .reprovision && request.requestedBy == "alice")
        #expect(request.idempotencyKey == "shop-web/\(incidentId)/reprovision")
        #expect(actions.notices(.commandAccepted).count == 1)
        // The grace deadline no longer starts a restart: a step is in progress.
        #expect(l.tick(at: 300).requests.isEmpty)
        // The reprovision fails verification: the ladder goes up from the step that failed, to fail-over.
        #expect(l.tick(at: 30 + 1200).requests.first?.step == .failover)
    }

    @Test func escalationSkipsStepsAlreadyRequested() throws {
        var l = Ladder()
        l.declare()
        l.command(.reprovision)  // manual reprovision first
        let reprovision = try #require(l.log.requests.first)
        l.outcome(reprovision, .succeeded)
        l.command(.restart)  // then a manual restart during verification
        let restart = try #require(l.log.requests.last)
        #expect(restart.step == .restart)
        // The restart fails: reprovision was already requested, so fail-over is next.
        let actions = l.outcome(restart, .failed, reason: "x")
        #expect(actions.requests.first?.step == .failover)
        #expect(Set(l.log.requests.map(\.idempotencyKey)).count == l.log.requests.count)
    }

    @Test func theSameStepIsRefusedTwiceInOneIncident() throws {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.command(.restart).requests.first)
        l.outcome(restart, .succeeded)
        let again = l.command(.restart, by: "bob")
        let notice = expectRejected(
            again,
            because: .stepAlreadyRequested(
                command: "restart", step: .restart, incident: try #require(l.incidentId), key: restart.idempotencyKey))
        #expect(notice?.commands == ["recoveryctl reprovision shop-web", "recoveryctl failover shop-web"])
    }

    @Test func aStepIsRefusedWhileTheActuatorHasNotReported() {
        var l = Ladder()
        l.declare()
        l.tick(at: 300)
        expectRejected(
            l.command(.reprovision),
            because: .awaitingOutcome(
                command: "reprovision", step: .restart, requestedAt: t0 + 300, deadline: t0 + 900))
    }

    @Test func stepsAndApprovalsAreRefusedWhileAcknowledgedOrHeld() throws {
        var l = Ladder()
        l.declare()
        let incident = try #require(l.incidentId)
        l.command(.ack, by: "alice")
        let acked = EscalationMachine.Hold.acknowledged(by: "alice", at: t0)
        let refused = expectRejected(
            l.command(.restart, by: "bob"),
            because: .incidentHeld(
                command: "restart", target: "shop-web", incident: incident, hold: acked))
        #expect(refused?.commands == ["recoveryctl resume shop-web"])
        expectRejected(
            l.command(.approve, by: "bob"),
            because: .incidentHeld(
                command: "approve", target: "shop-web", incident: incident, hold: acked))
        l.command(.hold, by: "alice", until: t0 + 1000)
        expectRejected(
            l.command(.failover),
            because: .incidentHeld(
                command: "failover", target: "shop-web", incident: incident, hold: .until(t0 + 1000, by: "alice")))
        #expect(l.log.requests.isEmpty)
    }

    @Test func theBrakeBlocksAutomaticStepsSilentlyAndRefusesCommands() throws {
        var l = Ladder()
        l.brakeEngaged = true
        let declared = l.declare()
        #expect(declared.notices(.outageDeclared).first?.blockedBy == .brake)
        let graceEnd = l.tick(at: 300)
        #expect(graceEnd.isEmpty)  // no request, and no per-target notice: the brake sent one alert
        #expect(l.machine.incident?.phase == .pending(step: .restart, notBefore: t0 + 300))
        let manual = expectRejected(l.command(.restart), because: .brakeBlocks(command: "restart"))
        #expect(manual?.commands == ["recoveryctl brake release"])
        expectRejected(l.command(.approve), because: .brakeBlocks(command: "approve"))
        // Released: the next event (the brake's wake-up tick, or any check) runs the step.
        l.brakeEngaged = false
        let released = l.tick(at: 400)
        #expect(released.requests.first?.step == .restart)
        #expect(released.requests.first?.requestedAt == t0 + 400)
    }

    @Test func theBrakeAlsoBlocksAnEscalation() throws {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        l.brakeEngaged = true
        let failed = l.outcome(restart, .failed, reason: "x")
        #expect(failed.requests.isEmpty)
        #expect(failed.notices(.actionFailed).first?.blockedBy == .brake)
        l.brakeEngaged = false
        #expect(l.fail().requests.first?.step == .reprovision)  // any event re-evaluates
    }
}

@Suite("Escalation ladder: commands in the wrong state are refused with a reason")
struct WrongStateCommandTests {
    @Test(arguments: [OperatorCommand.Name.ack, .approve, .hold, .resume, .restart, .reprovision, .failover])
    func noIncident(_ name: OperatorCommand.Name) {
        var l = Ladder()
        let actions = l.command(name, until: t0 + 600)
        expectRejected(
            actions, because: .noOpenIncident(command: name.rawValue, target: "shop-web", failures: 0, threshold: 3))
        l.fail()
        expectRejected(
            l.command(name, until: t0 + 600),
            because: .noOpenIncident(command: name.rawValue, target: "shop-web", failures: 1, threshold: 3))
    }

    @Test func resetIsAcceptedAnyTime() {
        var l = Ladder()
        #expect(l.command(.reset).notices(.commandAccepted).count == 1)
    }

    @Test func holdNeedsAFutureTime() {
        var l = Ladder()
        l.declare()
        expectRejected(
            l.command(.hold), because: .holdNeedsTime(command: "hold", target: "shop-web", example: t0 + 3600))
        l.now = t0 + 100
        expectRejected(
            l.command(.hold, until: t0 + 100),
            because: .holdNotInFuture(command: "hold", until: t0 + 100, now: t0 + 100))
    }

    /// A Slack button or a console page names its incident: once another incident is open, the command is
    /// refused, never applied to the new one; for the open incident it is applied.
    @Test(arguments: [OperatorCommand.Name.ack, .approve, .hold, .resume, .abort])
    func aCommandForAnIncidentThatIsOverIsRefused(_ name: OperatorCommand.Name) throws {
        var l = Ladder()
        l.declare()
        let current = try #require(l.incidentId)
        expectRejected(
            l.command(name, until: t0 + 600, incident: "inc-shop-web-yesterday"),
            because: .incidentChanged(command: name.rawValue, expected: "inc-shop-web-yesterday", current: current))
        #expect(l.command(.ack, incident: current).notices(.commandAccepted).count == 1)
    }

    @Test func ackTwiceIsRefused() throws {
        var l = Ladder()
        l.declare()
        l.command(.ack, by: "alice")
        expectRejected(
            l.command(.ack, by: "bob"),
            because: .alreadyAcknowledged(
                command: "ack", incident: try #require(l.incidentId), by: "alice", since: t0))
    }

    @Test func resumeWithoutHoldIsRefused() throws {
        var l = Ladder()
        l.declare()
        expectRejected(
            l.command(.resume), because: .nothingToResume(command: "resume", incident: try #require(l.incidentId)))
    }

    @Test func approveDuringAStepIsRefused() throws {
        var l = Ladder()
        l.declare()
        l.tick(at: 300)
        let notice = expectRejected(
            l.command(.approve),
            because: .stepInProgress(
                command: "approve", step: .restart, incident: try #require(l.incidentId), requestedAt: t0 + 300,
                deadline: t0 + 900))
        #expect(notice?.commands == ["recoveryctl reprovision shop-web", "recoveryctl failover shop-web"])
    }

    @Test func holdAfterAutomationStoppedIsRefused() throws {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        l.outcome(restart, .humanNeeded, reason: "instance terminated")
        let incident = try #require(l.incidentId)
        let stopped = EscalationMachine.StopReason.humanNeeded("restart cannot run: instance terminated")
        expectRejected(
            l.command(.hold, until: t0 + 5000),
            because: .nothingToHold(command: "hold", incident: incident, stopped: stopped))
        expectRejected(
            l.command(.approve), because: .nothingToApprove(command: "approve", incident: incident, stopped: stopped))
    }

    @Test func failoverWithoutDRRegionIsRefused() {
        var l = Ladder(drRegion: nil)
        l.declare()
        expectRejected(l.command(.failover), because: .noDRRegion(command: "failover", target: "shop-web"))
    }
}

@Suite("Escalation ladder: idempotence")
struct EscalationIdempotenceTests {
    @Test func aRedeliveredObservationCountsOnce() {
        var l = Ladder()
        let failure = EscalationMachine.Event.probe(id: "obs-same", ProbeResult(prober: "p1", healthy: false))
        for _ in 0..<5 { l.send(failure) }
        #expect(l.machine.health.failures == 1)
        #expect(l.machine.state == .monitoring)
    }

    @Test func aRedeliveredCommandIsAnsweredOnce() {
        var l = Ladder()
        l.declare()
        let ack = EscalationMachine.Event.command(id: "cmd-same", OperatorCommand(.ack, by: "alice"))
        #expect(l.send(ack).notices(.commandAccepted).count == 1)
        #expect(l.send(ack).isEmpty)  // not "already acknowledged": it is the same command
    }

    @Test func aRedeliveredOutcomeIsANoOp() throws {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        let failed = EscalationMachine.Event.actionOutcome(
            id: "evt-same", ActionOutcome(for: restart, status: .failed, reason: "x"))
        #expect(l.send(failed).requests.count == 1)
        #expect(l.send(failed).isEmpty)
        // The same outcome under a new message id (the actuator reporting twice) is ignored too: the
        // machine no longer waits for that key.
        #expect(
            l.send(.actionOutcome(id: "evt-other", ActionOutcome(for: restart, status: .failed, reason: "x"))).isEmpty)
        #expect(l.log.requests.count == 2)
    }

    @Test func theEventMemoryIsBounded() {
        var l = Ladder()
        for _ in 0..<(EscalationMachine.eventMemory + 50) { l.ok() }
        #expect(l.machine.recentEventIds.count == EscalationMachine.eventMemory)
        #expect(l.machine.recentEventIds.contains("obs-\(EscalationMachine.eventMemory + 50)"))
        #expect(l.machine.recentEventIds.contains("obs-51"))
        #expect(!l.machine.recentEventIds.contains("obs-50"), "the oldest are forgotten")
    }
}

@Suite("Commands handled outside the machine")
struct RememberedCommandTests {
    /// A command the repair plan took (the decision worker remembers its id in the machine) and then
    /// redelivered after an outage opened: the machine drops it instead of answering it again or applying
    /// an `approve` to the new incident.
    @Test func aRememberedCommandIsDroppedWhenItComesBack() {
        var l = Ladder()
        let first = l.machine.remember(eventId: "cmd-approve-1")
        let second = l.machine.remember(eventId: "cmd-approve-1")
        #expect(first)
        #expect(!second, "a second time: already handled")
        l.fail(3)
        #expect(l.incidentId != nil)
        let redelivered = l.send(.command(id: "cmd-approve-1", OperatorCommand(.approve, by: "alice")))
        #expect(redelivered.isEmpty, "no answer, no step")
        let fresh = l.send(.command(id: "cmd-approve-2", OperatorCommand(.approve, by: "alice")))
        #expect(!fresh.isEmpty, "the same command under a new id is handled")
    }
}
