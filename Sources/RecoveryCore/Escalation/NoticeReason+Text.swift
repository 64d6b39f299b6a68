import Foundation

// The one place where notice reasons become English. `Notice.reason` sets `detail` to this text when a
// machine sets the reason (so every `notification` on the wire still carries it for the recorder,
// recoveryctl and older consumers), and the notifier's `NoticeFormatter.text(_:)` renders the same.
// It lives in RecoveryCore, not in the notifier, because the machines that build notices are here and
// RecoveryCore cannot import FleetWorkers. Pure: no clock, no locale (times are ISO 8601 UTC).

extension NoticeReason {
    /// The sentence for `detail`.
    public var text: String {
        switch self {
        case .actuator(let reason):
            return reason.text
        case .refusedSender(let reason):
            return reason.text
        // The ladder
        case let .outageDeclared(
            target, failures, probers, lastCheck, count, window, noStep, ofLast, flapping, afterMaintenance, declaredAt):
            var text = ""
            if let afterMaintenance {
                let since = declaredAt.map { " since \(Timestamp.format($0))" } ?? ""
                text +=
                    "Still down at the end of the maintenance window (\(Timestamp.format(afterMaintenance))), down\(since). "
            }
            text +=
                ofLast.map { "\(failures) of the last \($0) checks failed" } ?? "\(failures) consecutive failed checks"
            text += " (from \(probers.joined(separator: ", ")))"
            if let lastCheck { text += ", last: \(lastCheck)" }
            text += "; outage \(count) within \(TimeText.duration(window))"
            switch noStep {
            case .quarantined?: text += ". \(target) is quarantined: no automatic step."
            case .ladderExhausted?:
                text +=
                    ". Restart, re-provision and fail-over were all used within the window: no automatic step. Act by hand."
            case .flapping?:
                let n =
                    flapping.map { "\($0.incidents) incidents within \(TimeText.duration($0.window))" } ?? "incidents"
                text +=
                    ". \(target) flaps (\(n), the others over by themselves): held for a person, no automatic step, no further page until it has stayed up as long."
            case nil: break
            }
            return text
        case let .approvalRequested(target, step, deadline):
            return
                "\(target) requires approval for \(step.rawValue); without approval by \(TimeText.iso(deadline)) nothing is done"
        case let .stepStarted(target, step, instance, destination, trigger, deadline, next):
            var text = "\(step.rawValue) of \(instance)"
            if step == .failover { text += " into \(destination)" }
            switch trigger {
            case .automatic: text += " (automatic)"
            case .approved(let by): text += " (approved by \(by))"
            case .manual(let by): text += " (run by \(by))"
            }
            let then = next == .notifyOnly ? "no further automatic step" : next.rawValue
            return text + "; if \(target) is not back by \(TimeText.iso(deadline)): \(then)"
        case let .stepFinished(target, step, movedTo, checks, deadline, next):
            var text = "\(step.rawValue) finished"
            if let movedTo { text += "; \(target) now runs on \(movedTo)" }
            return text
                + "; verifying: \(checks) healthy checks needed by \(TimeText.iso(deadline)), else \(next.rawValue)"
        case let .stepFailed(step, reason, stillStopped):
            return Self.staysStopped("\(step.rawValue) failed: \(reason ?? "no reason given")", stillStopped)
        case let .noOutcome(target, step, window, stillStopped):
            return Self.staysStopped(
                "the actuator did not report on \(step.rawValue) within \(TimeText.duration(window)) and \(target) is still down",
                stillStopped)
        case let .stillDown(target, step, window, stillStopped):
            return Self.staysStopped(
                "\(step.rawValue) ran but \(target) is still down \(TimeText.duration(window)) after the request",
                stillStopped)
        case let .automationStopped(target, incident, tried, why):
            let steps = tried.isEmpty ? "" : " (tried: \(Self.list(tried)))"
            return
                "automation stopped for incident \(incident)\(steps): \(why). \(target) is still down; a person must act."
        case let .approvalTimedOut(target, step):
            return
                "\(target) requires approval and none came in time: \(step.rawValue) was not run, and no automatic step will run for this incident. Act by hand if needed."
        case let .recoveredAfterStep(target, step, after):
            return "\(target) is back after \(step.rawValue), \(TimeText.duration(after)) after the outage was declared"
        case let .recoveredAfterSteps(target, steps, after):
            return
                "\(target) is back, \(TimeText.duration(after)) after the outage was declared (steps: \(Self.list(steps)))"
        case let .recoveredByItself(target, inGrace, after):
            return
                "\(target) came back by itself \(inGrace ? "during the grace period" : "without any step"), \(TimeText.duration(after)) after the outage was declared; nothing was done"
        case let .originalInstanceBack(target, original, current):
            return
                "the original instance \(original) answers health checks again; \(target) now runs on \(current). Nothing was changed: fail back by hand if you want it back."
        case let .instanceFollowed(target, from, to):
            return
                "\(target) is now followed on \(to): discovery finds it there, not on \(from) as recorded (moved outside the fleet's steps, or a record that was out of date). Nothing was changed in AWS."
        case let .lateResult(target, step, incident, current):
            return
                "late result: \(step.rawValue) for incident \(incident) finished after the machine stopped waiting for it; \(target) now runs on \(current)"

        case let .stepAborted(target, step, incident, by, reason, result):
            return "\(step.rawValue) for incident \(incident) was aborted by \(by)"
                + (reason.map { " (\($0))" } ?? "")
                + ": the actuator stopped at a sub-step boundary and put back what it could"
                + (result.map { " (\($0))" } ?? "")
                + ". No automatic step follows: \(target) is in a person's hands; run a step by hand if it stays down."

        // The ladder's command answers
        case let .outageCountReset(target, by, was, window, incident):
            var text =
                "outage count of \(target) reset by \(by) (it was \(was) within \(TimeText.duration(window))); the next outage starts at restart"
            if let incident { text += ". Incident \(incident) continues where it is." }
            return text
        case let .acknowledged(by, incident, replaces):
            return
                "\(by) acknowledged incident \(incident)\(Self.replacing(replaces, incident)): no automatic step until resumed; recovery will still be reported"
        case let .held(by, incident, until, replaces):
            return
                "\(by) held incident \(incident) until \(TimeText.iso(until))\(Self.replacing(replaces, incident)): no step before then, then the normal flow continues"
        case let .resumed(by, incident, stillStopped):
            return "\(by) resumed automation for incident \(incident)"
                + (stillStopped.map { " (automation stays stopped: \($0))" } ?? "")
        case let .approved(by, step, incident):
            return "\(by) approved \(step.rawValue) for incident \(incident)"
        case let .ranStep(by, step, incident):
            return "\(by) ran \(step.rawValue) for incident \(incident)"
        case let .abortRequested(by, step, incident, key, reason):
            return "\(by) aborted \(step.rawValue) for incident \(incident)" + (reason.map { " (\($0))" } ?? "")
                + ": the actuator stops at its next sub-step and puts back what it can (record step:\(key)). "
                + "No automatic step follows in this incident: a person takes over."

        // Why the ladder refused a command
        case let .noOpenIncident(command, target, failures, threshold):
            let why =
                failures > 0
                ? "\(failures) of \(threshold) failed checks so far, no outage declared" : "the site is healthy"
            return "\(command) refused: \(target) has no open incident (\(why)); there is nothing to \(command)"
        case let .alreadyAcknowledged(command, incident, by, since):
            return
                "\(command) refused: incident \(incident) is already acknowledged by \(by) (since \(TimeText.iso(since)))"
        case let .holdNeedsTime(command, target, example):
            return "\(command) refused: hold needs a time: \(RecoveryCtl.hold(target, until: example))"
        case let .holdNotInFuture(command, until, now):
            return
                "\(command) refused: --until \(TimeText.iso(until)) is not in the future (now is \(TimeText.iso(now)))"
        case let .incidentChanged(command, expected, current):
            return
                "\(command) refused: it was for incident \(expected), which is over; the open incident is \(current) (look again before acting on it)"
        case let .nothingToHold(command, incident, stopped):
            return
                "\(command) refused: automation has already stopped for incident \(incident) (\(stopped)): there is no automatic step to hold"
        case let .nothingToResume(command, incident):
            return "\(command) refused: incident \(incident) is neither acknowledged nor held: nothing to resume"
        case let .incidentHeld(command, target, incident, hold):
            let then = command == OperatorCommand.Name.approve.rawValue ? ", then approve" : ""
            return "\(command) refused: \(Self.text(hold, incident)); run `\(RecoveryCtl.resume(target))` first\(then)"
        case let .quarantined(command, target):
            return
                "\(command) refused: \(target) is quarantined (notify only); lift the quarantine in its configuration first"
        case let .brakeBlocks(command):
            return
                "\(command) refused: the fleet brake is engaged: no destructive step runs until it is released (an operator command does not override it)"
        case let .stepInProgress(command, step, incident, requestedAt, deadline):
            return
                "\(command) refused: \(step.rawValue) is in progress for incident \(incident) (requested \(TimeText.iso(requestedAt)), verifying until \(TimeText.iso(deadline))): there is nothing to approve"
        case let .nothingToApprove(command, incident, stopped):
            let closed = stopped == .approvalTimedOut ? "the approval window closed; " : ""
            return
                "\(command) refused: \(closed)automation has stopped for incident \(incident) (\(stopped)): there is nothing to approve; run a step by hand"
        case let .awaitingOutcome(command, step, requestedAt, deadline):
            return
                "\(command) refused: \(step.rawValue) was requested at \(TimeText.iso(requestedAt)) and the actuator has not reported yet; wait for its outcome (deadline \(TimeText.iso(deadline)))"
        case let .stepAlreadyRequested(command, step, incident, key):
            return
                "\(command) refused: \(step.rawValue) was already requested in incident \(incident) (key \(key)); each step runs at most once per incident"
        case let .noDRRegion(command, target):
            return "\(command) refused: \(Self.noDRRegion(target))"
        case let .nothingToAbort(command, incident, verifying):
            let why =
                verifying.map { "\($0.rawValue) has finished and its result is being verified" }
                ?? "no step is running at the actuator"
            return
                "\(command) refused: \(why) in incident \(incident); there is nothing to abort (ack to keep the fleet from taking another step)"
        case let .alreadyAborted(command, step, incident, by, since):
            return
                "\(command) refused: \(step.rawValue) of incident \(incident) was already aborted by \(by) at \(TimeText.iso(since))"

        // The fleet brake
        case .brakeEngaged(let cause):
            return
                "fleet brake engaged: \(cause.text). No restart, re-provision or fail-over runs on any target until an operator releases it."
        case let .brakeReleased(by, engagedAt, cause, targets):
            return
                "\(by) released the fleet brake (engaged \(TimeText.iso(engagedAt)): \(cause)); destructive steps may run again. Targets in outage: \(targets.isEmpty ? "none" : targets.joined(separator: ", "))"
        case let .brakeAlreadyEngaged(since, cause):
            return "brake engage refused: the brake is already engaged (since \(TimeText.iso(since)): \(cause))"
        case .brakeNotEngaged:
            return "brake release refused: the brake is not engaged"

        // Predicted trouble and its repair
        case let .troublePredicted(prediction, confidence, from, to, outlook):
            let text =
                "\(prediction) (confidence \(Int((confidence * 100).rounded()))%, expected \(TimeText.iso(from)) to \(TimeText.iso(to)))"
            switch outlook {
            case .planned: return text
            case .quarantined: return text + ". The target is quarantined: no repair runs."
            case .anotherPlanned: return text + ". Another repair is planned; nothing more is scheduled."
            case .restartSuggested: return text + ". Suggested: a restart in a quiet hour."
            case .toldOnly: return text + "."
            }
        case .repairAwaitsApproval(let prediction):
            return "\(prediction): the target now requires approval; the repair waits for it"
        case let .repairStarted(prediction, approvedBy):
            return prediction + (approvedBy.map { " (approved by \($0))" } ?? " (automatic, after the grace period)")
        case let .repairSucceeded(prediction, document, instanceId):
            return "\(prediction): ssm \(document) ran on \(instanceId)"
        case let .repairFailed(prediction, reason):
            return "\(prediction): \(reason ?? "the actuator reported a failure")"
        case .repairTimedOut(let prediction):
            return "\(prediction): no outcome from the actuator in time"
        case let .repairCancelled(prediction, why):
            return "\(prediction): \(why.text)"

        // The repair plan's command answers
        case .repairRunning(let document):
            return "the repair ssm \(document) is already running; wait for its outcome"
        case let .repairDropped(document, kind, quietUntil):
            return
                "the planned repair ssm \(document) is cancelled; predictions of \(kind) are quiet until \(TimeText.iso(quietUntil))"
        case .repairQuarantined:
            return "the target is quarantined: no repair runs"
        case .repairBraked:
            return "the fleet brake is engaged: no repair runs until it is released"
        case .repairRunsNow(let document):
            return "the repair ssm \(document) runs now"
        case .repairHoldNeedsTime:
            return "hold needs --until in the future"
        case let .repairStillAwaitsApproval(document, until):
            return "the repair ssm \(document) still waits for approval, now until \(TimeText.iso(until))"
        case let .repairHeld(document, until):
            return "the repair ssm \(document) is held until \(TimeText.iso(until))"
        case let .repairNotHeld(document, target):
            return "the repair ssm \(document) is not held, it waits for approval: \(RecoveryCtl.approve(target))"
        case .repairResumed(let document):
            return "the repair ssm \(document) runs at the next check"

        // Repair commands
        case let .repairRequested(command, target, key):
            return "\(command) of \(target) requested from the actuator (\(key))"
        case .volumeRepairQuarantined(let target):
            return
                "\(target) is quarantined: no automatic or manual repair runs until `recoveryctl unquarantine \(target)`"
        case .volumeRepairBraked:
            return
                "the fleet brake is engaged: no destructive step runs until it is released (`\(RecoveryCtl.brakeRelease)`)"
        case let .volumeRepairLadderMayAct(target, incident):
            return
                "incident \(incident) is open and its ladder may act: `\(RecoveryCtl.ack(target))` (or hold it) first, then repair the volume"
        }
    }

    /// The words of a human-needed stop for a fail-over without a DR region (also a command refusal).
    static func noDRRegion(_ target: String) -> String {
        "no DR region is configured for \(target), so it cannot fail over"
    }

    /// The words of a human-needed stop for a step the actuator cannot run.
    static func servedElsewhere(_ discovered: InstanceRef, recorded: InstanceRef) -> String {
        "discovery finds the target on \(discovered), not on \(recorded) that this incident is about: the next step could act on the wrong instance"
    }

    static func cannotRun(_ step: RecoveryStep, _ reason: String?) -> String {
        "\(step.rawValue) cannot run: \(reason ?? "no reason given")"
    }

    private static func list(_ steps: [RecoveryStep]) -> String { steps.map(\.rawValue).joined(separator: ", ") }

    private static func staysStopped(_ text: String, _ stopped: EscalationMachine.StopReason?) -> String {
        stopped.map { "\(text); automation stays stopped for this incident (\($0))" } ?? text
    }

    private static func replacing(_ hold: EscalationMachine.Hold?, _ incident: String) -> String {
        hold.map { " (replaces: \(text($0, incident)))" } ?? ""
    }

    private static func text(_ hold: EscalationMachine.Hold, _ incident: String) -> String {
        switch hold {
        case let .acknowledged(by, at): "incident \(incident) is acknowledged by \(by) (since \(TimeText.iso(at)))"
        case let .until(end, by): "incident \(incident) is held by \(by) until \(TimeText.iso(end))"
        }
    }
}

extension NoticeReason.BrakeCause {
    /// The engagement's words (`FleetBrake.Engagement.detail`, shown by `recoveryctl status`).
    public var text: String {
        switch self {
        case let .outageShare(count, size, limit):
            let percent = Int((Double(count) / Double(size) * 100).rounded())
            return
                "\(count) of \(size) targets (\(percent)%) are in outage at once, more than \(limit)%: this looks like a shared cause, not \(count) broken sites"
        case let .actionRate(steps, window, limit):
            return "\(steps) destructive steps within \(TimeText.duration(window)) reached the limit of \(limit)"
        case let .manual(by, reason):
            return "engaged by \(by): \(reason)"
        }
    }
}

extension NoticeReason.RepairCancellation {
    var text: String {
        switch self {
        case .outageDeclared: "an outage was declared; the recovery ladder takes over"
        case .quarantined: "the target is quarantined"
        case .noApproval: "no approval came in time; nothing was done"
        case .reset(let by): "reset by \(by)"
        }
    }
}

extension EscalationMachine.StopReason: CustomStringConvertible {
    /// Words for notices and `recoveryctl status`; `humanNeeded` carries its own.
    public var description: String {
        switch self {
        case .ladderExhausted: "no automatic step left"
        case .humanNeeded(let reason): "a person is needed: \(reason)"
        case .approvalTimedOut: "the approval request timed out"
        case .quarantined: "the target is quarantined (notify only)"
        case let .flapping(incidents, window):
            "the target flaps (\(incidents) incidents within \(TimeText.duration(window)), the others over by themselves): held for a person"
        }
    }
}
