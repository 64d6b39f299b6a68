import Foundation

extension EscalationMachine {
    // MARK: Steps

    /// Takes `step` now if nothing stops it; otherwise leaves the incident waiting in the right phase.
    mutating func take(_ step: RecoveryStep, by initiator: Initiator, _ c: inout Context) {
        guard var incident else { return }
        if initiator == .automatic {
            if let stopped = incident.automationStopped {
                incident.phase = .stopped(stopped)
                self.incident = incident
                return
            }
            if step == .notifyOnly { return stop(.ladderExhausted, &c) }
            if settings.quarantined { return stop(.quarantined, &c) }
            if let end = maintenanceEnd(at: c.now) {  // stays pending until the window ends
                incident.maintenanceUntil = end
                self.incident = incident
                return
            }
            if incident.deferredNotice != nil { return }  // nobody paged yet: no step before the notice
            if isHeld(incident, c.now) || c.brakeEngaged { return }  // stays pending
            if incident.stepsRequested.contains(step) {
                // Never twice: cannot happen through the ladder (it skips requested steps), but guard it.
                incident.phase = .pending(step: nextUnrequested(after: step, in: incident), notBefore: c.now)
                self.incident = incident
                return take(nextUnrequested(after: step, in: incident), by: .automatic, &c)
            }
            if settings.requiresApproval {
                let deadline = c.now.addingTimeInterval(settings.approvalTimeout)
                incident.phase = .awaitingApproval(step: step, deadline: deadline)
                self.incident = incident
                var notice = baseNotice(.approvalRequested, id: "\(incident.id):approval_requested:\(step.rawValue)", c)
                notice.nextStep = step
                notice.blockedBy = .approval
                notice.respondBy = deadline
                notice.reason = .approvalRequested(target: target, step: step, deadline: deadline)
                notice.commands = [RecoveryCtl.approve(target), RecoveryCtl.ack(target)]
                c.actions.append(.notify(notice))
                return
            }
        }
        guard let destination = destinationRegion(for: step) else {
            return stop(.humanNeeded(NoticeReason.noDRRegion(target)), &c)
        }
        let key = ActionRequest.key(target: target, incidentId: incident.id, step: step)
        let deadline = c.now.addingTimeInterval(settings.verificationWindow(for: step))
        let request = ActionRequest(
            idempotencyKey: key, target: target, incidentId: incident.id, step: step,
            instanceId: currentInstance.id, region: currentInstance.region, destinationRegion: destination,
            elasticIpAllocationId: identity.elasticIpAllocationId, requestedAt: c.now, deadline: deadline,
            requestedBy: initiator.person)
        incident.stepsRequested.append(step)
        incident.phase = .inProgress(
            StepAttempt(
                step: step, idempotencyKey: key, requestedAt: c.now, requestedBy: initiator.person, deadline: deadline,
                succeededAt: nil))
        incident.hold = nil
        self.incident = incident
        requestedKeys.append(key)
        if requestedKeys.count > Self.requestMemory {
            requestedKeys.removeFirst(requestedKeys.count - Self.requestMemory)
        }

        c.actions.append(.requestAction(request))
        c.actions.append(.reportToFleet(.destructiveActionRequested(target: target, idempotencyKey: key)))
        var notice = baseNotice(.actionStarted, id: "\(incident.id):action_started:\(step.rawValue)", c)
        notice.step = step
        let next = nextUnrequested(after: step, in: incident)
        notice.nextStep = next
        notice.nextStepAt = deadline
        let trigger: NoticeReason.StepTrigger =
            switch initiator {
            case .automatic: .automatic
            case .approval(let by): .approved(by: by)
            case .manual(let by): .manual(by: by)
            }
        notice.reason = .stepStarted(
            target: target, step: step, instance: currentInstance, destination: destination, trigger: trigger,
            deadline: deadline, next: incident.automationStopped != nil ? .notifyOnly : next)
        notice.commands = [RecoveryCtl.ack(target)]
        c.actions.append(.notify(notice))
    }

    /// Reports that `attempt` did not bring the site back and takes the next step. `reason` gets the stop
    /// reason when automation has already stopped for the incident (and stays stopped).
    mutating func escalate(
        from attempt: StepAttempt, kind: NotificationKind, _ c: inout Context,
        reason: (EscalationMachine.StopReason?) -> NoticeReason
    ) {
        guard var incident else { return }
        let next = nextUnrequested(after: attempt.step, in: incident)
        var notice = baseNotice(kind, id: "\(incident.id):\(kind.rawValue):\(attempt.step.rawValue)", c)
        notice.step = attempt.step
        if let stopped = incident.automationStopped {
            incident.phase = .stopped(stopped)
            self.incident = incident
            notice.nextStep = .notifyOnly
            notice.reason = reason(stopped)
            notice.commands = manualCommands(incident) + [RecoveryCtl.ack(target)]
            c.actions.append(.notify(notice))
            return
        }
        incident.phase = .pending(step: next, notBefore: c.now)
        self.incident = incident
        let plan = plan(next, notBefore: c.now, c)
        notice.nextStep = next
        notice.nextStepAt = plan.at
        notice.blockedBy = plan.blocker
        notice.respondBy = plan.respondBy
        notice.reason = reason(nil)
        notice.commands =
            next == .notifyOnly
            ? [RecoveryCtl.ack(target)]
            : [RecoveryCtl.ack(target), RecoveryCtl.hold(target, until: c.now.addingTimeInterval(3600))]
        c.actions.append(.notify(notice))
        take(next, by: .automatic, &c)
    }

    mutating func stop(_ reason: StopReason, _ c: inout Context) {
        guard var incident else { return }
        incident.phase = .stopped(reason)
        incident.automationStopped = reason
        self.incident = incident
        var notice = baseNotice(.humanNeeded, id: "\(incident.id):human_needed", c)
        notice.nextStep = .notifyOnly
        notice.blockedBy = reason == .quarantined ? .quarantine : nil
        notice.reason = .automationStopped(
            target: target, incident: incident.id, tried: incident.stepsRequested, why: reason)
        notice.commands = (reason == .quarantined ? [] : manualCommands(incident)) + [RecoveryCtl.ack(target)]
        c.actions.append(.notify(notice))
    }

    /// The actuator reports the step aborted (`recoveryctl abort`): automation stops for the incident (it
    /// already has when this replica handled the abort command; an outcome that overtook the command, after
    /// a decision worker died between writing the flag and storing the state, stops it here) and a notice
    /// says who stopped the step and what the actuator put back. Never escalates.
    mutating func stepAborted(_ attempt: StepAttempt, _ outcome: ActionOutcome, _ c: inout Context) {
        guard var incident, let abort = outcome.aborted else { return }
        let stopped = incident.automationStopped ?? .humanNeeded(abort.text(attempt.step))
        incident.aborted = abort
        incident.automationStopped = stopped
        incident.phase = .stopped(stopped)
        self.incident = incident
        var notice = baseNotice(.humanNeeded, id: "\(incident.id):step_aborted:\(attempt.step.rawValue)", c)
        notice.step = attempt.step
        notice.nextStep = .notifyOnly
        notice.reason = .stepAborted(
            target: target, step: attempt.step, incident: incident.id, by: abort.by, reason: abort.reason,
            result: outcome.reason)
        notice.commands = manualCommands(incident) + [RecoveryCtl.ack(target)]
        c.actions.append(.notify(notice))
    }
}
