import Foundation

/// Why a notice was sent, as facts: the machines (`EscalationMachine`, `FleetBrake`, `PredictiveRepair`,
/// `TargetMachine`) set `Notice.reason` to one of these instead of writing prose, and tests assert on it.
/// `text` (NoticeReason+Text.swift) renders each reason as the English sentence that the notice's
/// `detail` carries; the notifier's `NoticeFormatter.text(_:)` is that rendering.
///
/// On the wire (`notification` body, key `reason`) a reason is one object: a `code` string and the
/// reason's parameters in snake_case (NoticeReason+Coding.swift, docs/messages.md). A reader that does
/// not know a code keeps the notice and falls back to its `detail`.
public enum NoticeReason: Sendable, Equatable {
    // MARK: The actuator

    /// `actuator_*`: what the actuator is about to do or did (ActuatorReason.swift).
    case actuator(ActuatorReason)
    /// `unauthorized_sender`, `not_an_operator`: a sender the gatekeepers refused (ActuatorReason.swift).
    case refusedSender(GateReason)

    // MARK: The ladder

    /// `outage_declared`: `failures` failed checks from `probers` (the last one's `lastCheck`; consecutive,
    /// or within the failure window) declared outage number `outageCount` within `window` seconds. `noStep`
    /// says why no step will run; `ofLast`: the failure window when the windowed rule declared it;
    /// `flapping`, for a flapping target, its numbers; `afterMaintenance`: sent when the maintenance
    /// window during which it was declared (at `declaredAt`) ended at that time, the target still down.
    case outageDeclared(
        target: String, failures: Int, probers: [String], lastCheck: String?, outageCount: Int,
        window: TimeInterval, noStep: NoStep? = nil, ofLast: Int? = nil, flapping: Flapping? = nil,
        afterMaintenance: Date? = nil, declaredAt: Date? = nil)
    /// `approval_requested`: `step` waits for `recoveryctl approve` until `deadline`.
    case approvalRequested(target: String, step: RecoveryStep, deadline: Date)
    /// `step_started`: `step` was requested for `instance` (into `destination`, the region a fail-over
    /// goes to); if the target is not back by `deadline`, `next` follows (`notifyOnly`: nothing does).
    case stepStarted(
        target: String, step: RecoveryStep, instance: InstanceRef, destination: String, trigger: StepTrigger,
        deadline: Date, next: RecoveryStep)
    /// `step_finished`: the actuator reports `step` done (the target moved to `movedTo`); `checks` healthy
    /// checks are needed by `deadline`, else `next`.
    case stepFinished(
        target: String, step: RecoveryStep, movedTo: InstanceRef? = nil, checks: Int, deadline: Date,
        next: RecoveryStep)
    /// `step_failed`: the actuator reports that `step` failed, with its `reason`. `stillStopped`: automation
    /// had already stopped for the incident, and stays stopped.
    case stepFailed(step: RecoveryStep, reason: String?, stillStopped: EscalationMachine.StopReason? = nil)
    /// `no_outcome`: the actuator did not report on `step` within `window` seconds, and the target is down.
    case noOutcome(
        target: String, step: RecoveryStep, window: TimeInterval,
        stillStopped: EscalationMachine.StopReason? = nil)
    /// `still_down`: `step` ran, but the target is still down `window` seconds after the request.
    case stillDown(
        target: String, step: RecoveryStep, window: TimeInterval,
        stillStopped: EscalationMachine.StopReason? = nil)
    /// `automation_stopped`: no automatic step will run in `incident` (`tried` so far), because of `why`.
    case automationStopped(target: String, incident: String, tried: [RecoveryStep], why: EscalationMachine.StopReason)
    /// `approval_timed_out`: no approval came in time, so `step` did not run.
    case approvalTimedOut(target: String, step: RecoveryStep)
    /// `recovered_after_step`: the target came back while `step` was being verified, `after` seconds after
    /// the outage was declared.
    case recoveredAfterStep(target: String, step: RecoveryStep, after: TimeInterval)
    /// `recovered_after_steps`: back after `steps` were requested, none of them being verified any more.
    case recoveredAfterSteps(target: String, steps: [RecoveryStep], after: TimeInterval)
    /// `recovered_by_itself`: back without any step (`inGrace`: during the grace period).
    case recoveredByItself(target: String, inGrace: Bool, after: TimeInterval)
    /// `original_instance_back`: the instance the target ran on before it moved answers again.
    case originalInstanceBack(target: String, original: InstanceRef, current: InstanceRef)
    /// `instance_followed`: discovery finds `target` on `to`, not on `from`; the machine follows it.
    case instanceFollowed(target: String, from: InstanceRef, to: InstanceRef)
    /// `late_result`: `step` of `incident` finished after the machine stopped waiting; the target moved.
    case lateResult(target: String, step: RecoveryStep, incident: String, current: InstanceRef)
    /// `step_aborted`: the actuator stopped `step` of `incident` because `by` aborted it (`reason`), and put
    /// back what it could (`result`: its summary); automation has stopped for the incident.
    case stepAborted(target: String, step: RecoveryStep, incident: String, by: String, reason: String?, result: String?)

    // MARK: The ladder's command answers

    /// `outage_count_reset`: `by` reset the outage count (it was `was` within `window` seconds); the open
    /// `incident`, if any, continues.
    case outageCountReset(target: String, by: String, was: Int, window: TimeInterval, incident: String?)
    /// `acknowledged`: `by` acknowledged `incident`, replacing the earlier ack or hold `replaces`.
    case acknowledged(by: String, incident: String, replaces: EscalationMachine.Hold? = nil)
    /// `held`: `by` held `incident` until `until`, replacing `replaces`.
    case held(by: String, incident: String, until: Date, replaces: EscalationMachine.Hold? = nil)
    /// `resumed`: `by` ended the ack or hold of `incident` (automation may have stopped for good: `stillStopped`).
    case resumed(by: String, incident: String, stillStopped: EscalationMachine.StopReason? = nil)
    /// `approved`: `by` approved `step`.
    case approved(by: String, step: RecoveryStep, incident: String)
    /// `ran_step`: `by` ran `step` by hand.
    case ranStep(by: String, step: RecoveryStep, incident: String)
    /// `abort_requested`: `by` aborted `step` (idempotency `key`) of `incident`, with `reason`.
    case abortRequested(by: String, step: RecoveryStep, incident: String, key: String, reason: String?)

    // MARK: Why the ladder refused a command (`command` is the command's name)

    /// `no_open_incident`: nothing to act on; `failures` of `threshold` failed checks so far.
    case noOpenIncident(command: String, target: String, failures: Int, threshold: Int)
    /// `already_acknowledged`: an `ack` of an incident `by` acknowledged `since`.
    case alreadyAcknowledged(command: String, incident: String, by: String, since: Date)
    /// `hold_needs_time`: a `hold` without `--until`; `example` is the line to run.
    case holdNeedsTime(command: String, target: String, example: Date)
    /// `hold_not_in_future`: `--until` is not after `now`.
    case holdNotInFuture(command: String, until: Date, now: Date)
    /// `incident_changed`: the command was for incident `expected` (a Slack button, a console page), but the
    /// target's open incident is now `current`: it is not applied to another incident.
    case incidentChanged(command: String, expected: String, current: String)
    /// `nothing_to_hold`: automation has stopped for `incident` because of `stopped`.
    case nothingToHold(command: String, incident: String, stopped: EscalationMachine.StopReason)
    /// `nothing_to_resume`: the incident is neither acknowledged nor held.
    case nothingToResume(command: String, incident: String)
    /// `incident_held`: an approve or step command while `hold` is on; resume first.
    case incidentHeld(command: String, target: String, incident: String, hold: EscalationMachine.Hold)
    /// `quarantined`: the target is quarantined (notify only).
    case quarantined(command: String, target: String)
    /// `brake_engaged`: the fleet brake is engaged; an operator command does not override it.
    case brakeBlocks(command: String)
    /// `step_in_progress`: an approve while `step`, requested at `requestedAt`, is verified until `deadline`.
    case stepInProgress(command: String, step: RecoveryStep, incident: String, requestedAt: Date, deadline: Date)
    /// `nothing_to_approve`: automation has stopped for `incident` because of `stopped`.
    case nothingToApprove(command: String, incident: String, stopped: EscalationMachine.StopReason)
    /// `awaiting_outcome`: a step command while the actuator has not reported on `step` yet.
    case awaitingOutcome(command: String, step: RecoveryStep, requestedAt: Date, deadline: Date)
    /// `step_already_requested`: `step` ran in `incident` already (idempotency `key`); once per incident.
    case stepAlreadyRequested(command: String, step: RecoveryStep, incident: String, key: String)
    /// `no_dr_region`: a fail-over without a DR region.
    case noDRRegion(command: String, target: String)
    /// `nothing_to_abort`: no step of `incident` is running at the actuator (`verifying`: the step that
    /// finished and whose result is being verified).
    case nothingToAbort(command: String, incident: String, verifying: RecoveryStep?)
    /// `already_aborted`: `by` aborted `step` of `incident` already, at `since`.
    case alreadyAborted(command: String, step: RecoveryStep, incident: String, by: String, since: Date)

    // MARK: The fleet brake

    /// `brake_engaged`: the brake engaged, because of `cause`.
    case brakeEngaged(BrakeCause)
    /// `brake_released`: `by` released the brake engaged at `engagedAt` (`cause`: the engagement's words).
    case brakeReleased(by: String, engagedAt: Date, cause: String, targetsInOutage: [String])
    /// `brake_already_engaged`: a `brake engage` while engaged since `since` because of `cause`.
    case brakeAlreadyEngaged(since: Date, cause: String)
    /// `brake_not_engaged`: a `brake release` with nothing to release.
    case brakeNotEngaged

    // MARK: Predicted trouble and its repair (`prediction` is the predictor's sentence)

    /// `trouble_predicted`: a prediction with `confidence`, expected `from` … `to`; `outlook` says what follows.
    case troublePredicted(prediction: String, confidence: Double, from: Date, to: Date, outlook: Outlook)
    /// `repair_awaits_approval`: the target came to require approval after the repair was planned.
    case repairAwaitsApproval(prediction: String)
    /// `repair_started`: the planned repair was requested, approved by `approvedBy` or automatically.
    case repairStarted(prediction: String, approvedBy: String?)
    /// `repair_succeeded`: SSM `document` ran on `instanceId`.
    case repairSucceeded(prediction: String, document: String, instanceId: String)
    /// `repair_failed`: the actuator reported a failure (its `reason`).
    case repairFailed(prediction: String, reason: String?)
    /// `repair_timed_out`: no outcome from the actuator in time.
    case repairTimedOut(prediction: String)
    /// `repair_cancelled`: the planned repair will not run, because of `why`.
    case repairCancelled(prediction: String, why: RepairCancellation)

    // MARK: The repair plan's command answers (`document`: the SSM document of the planned repair)

    /// `repair_running` (refused): the repair is running; wait for its outcome.
    case repairRunning(document: String)
    /// `repair_dropped` (accepted): an ack or reset cancelled it; predictions of `kind` are quiet until `quietUntil`.
    case repairDropped(document: String, kind: String, quietUntil: Date)
    /// `repair_quarantined` (refused): an approve on a quarantined target.
    case repairQuarantined
    /// `repair_braked` (refused): an approve while the fleet brake is engaged.
    case repairBraked
    /// `repair_runs_now` (accepted): approved.
    case repairRunsNow(document: String)
    /// `repair_hold_needs_time` (refused): a hold without a future `--until`.
    case repairHoldNeedsTime
    /// `repair_still_awaits_approval` (accepted): a hold while waiting for approval; it waits until `until`.
    case repairStillAwaitsApproval(document: String, until: Date)
    /// `repair_held` (accepted): no repair before `until`.
    case repairHeld(document: String, until: Date)
    /// `repair_not_held` (refused): a resume while the repair waits for approval, not a hold.
    case repairNotHeld(document: String, target: String)
    /// `repair_resumed` (accepted): the repair runs at the next check.
    case repairResumed(document: String)

    // MARK: Repair commands (quarantine, unquarantine, repair_volume)

    /// `repair_requested`: `command` was requested from the actuator under idempotency `key`.
    case repairRequested(command: String, target: String, key: String)
    /// `volume_repair_quarantined` (refused): the target is quarantined.
    case volumeRepairQuarantined(target: String)
    /// `volume_repair_braked` (refused): the fleet brake is engaged.
    case volumeRepairBraked
    /// `volume_repair_ladder_may_act` (refused): `incident` is open and its ladder may still act.
    case volumeRepairLadderMayAct(target: String, incident: String)

    // MARK: Parameters

    /// Why an outage notice names no step that will run.
    public enum NoStep: String, Codable, Sendable {
        case quarantined
        /// Restart, re-provision and fail-over were all used within the outage-count window.
        case ladderExhausted = "ladder_exhausted"
        /// The target flaps: held for a person.
        case flapping
    }

    /// Who set a step off.
    public enum StepTrigger: Sendable, Equatable {
        case automatic
        case approved(by: String)
        case manual(by: String)
    }

    /// Why the fleet brake engaged: `FleetBrake.Engagement`'s `trigger` with its numbers.
    public enum BrakeCause: Sendable, Equatable {
        /// `inOutage` of `fleetSize` targets in outage, more than `limitPercent` % of the fleet.
        case outageShare(inOutage: Int, fleetSize: Int, limitPercent: Int)
        /// `steps` destructive steps within `window` seconds reached the limit `limit`.
        case actionRate(steps: Int, window: TimeInterval, limit: Int)
        /// `recoveryctl brake engage` by `by`, with its reason.
        case manual(by: String, reason: String)

        public var trigger: FleetBrake.Trigger {
            switch self {
            case .outageShare: .outageShare
            case .actionRate: .actionRate
            case .manual: .manual
            }
        }
    }

    /// What follows a prediction.
    public enum Outlook: String, Codable, Sendable {
        /// A repair is planned (after the grace period, or with approval).
        case planned
        /// The target is quarantined: no repair runs.
        case quarantined
        /// Another kind's repair is planned already: told only.
        case anotherPlanned = "another_planned"
        /// The suggestion is a restart, a person's call: told, with the command.
        case restartSuggested = "restart_suggested"
        /// No repair suggested: told only.
        case toldOnly = "told_only"
    }

    /// Why a planned repair will not run.
    public enum RepairCancellation: Sendable, Equatable {
        /// An outage was declared; the ladder takes over.
        case outageDeclared
        case quarantined
        /// The target requires approval and none came in time.
        case noApproval
        /// `recoveryctl reset` by `by`.
        case reset(by: String)
    }
}
