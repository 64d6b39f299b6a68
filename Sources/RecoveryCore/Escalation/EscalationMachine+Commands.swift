import Foundation

extension EscalationMachine {
    // MARK: Operator commands

    mutating func onCommand(id: String, _ command: OperatorCommand, _ c: inout Context) {
        let ref = CommandRef(id: id, name: command.name.rawValue, operator: command.operator)
        let who = command.operator
        let name = command.name.rawValue
        func answer(_ kind: NotificationKind, _ reason: NoticeReason, _ commands: [String]) -> Notice {
            var notice = baseNotice(kind, id: "command:\(id)", c)
            notice.command = ref
            notice.reason = reason
            notice.commands = commands
            return notice
        }
        func reject(_ reason: NoticeReason, _ commands: [String] = []) {
            c.actions.append(.rejectCommand(answer(.commandRejected, reason, commands)))
        }
        func accept(_ reason: NoticeReason, _ commands: [String] = []) {
            c.actions.append(.notify(answer(.commandAccepted, reason, commands)))
        }

        if command.name == .reset {
            let before = outageCount(at: c.now)
            outageTimes = []
            return accept(
                .outageCountReset(
                    target: target, by: who, was: before, window: settings.outageCountWindow,
                    incident: incident?.id))
        }
        guard var incident else {
            return reject(
                .noOpenIncident(
                    command: name, target: target, failures: health.failures,
                    threshold: settings.failureThreshold))
        }
        // Meant for another incident (yesterday's Slack button, a page loaded before this one opened): never
        // applied to this one. Decided here, on the state the compare-and-set writes, so no race.
        if let expected = command.incident, expected != incident.id {
            return reject(.incidentChanged(command: name, expected: expected, current: incident.id))
        }

        switch command.name {
        case .reset:
            break  // handled above

        case .ack:
            if case .acknowledged(let by, let at)? = incident.hold {
                return reject(.alreadyAcknowledged(command: name, incident: incident.id, by: by, since: at))
            }
            let replaced = incident.hold
            incident.hold = .acknowledged(by: who, at: c.now)
            self.incident = incident
            accept(.acknowledged(by: who, incident: incident.id, replaces: replaced), [RecoveryCtl.resume(target)])

        case .hold:
            guard let until = command.until else {
                return reject(.holdNeedsTime(command: name, target: target, example: c.now.addingTimeInterval(3600)))
            }
            guard until > c.now else {
                return reject(.holdNotInFuture(command: name, until: until, now: c.now))
            }
            if case .stopped(let reason) = incident.phase {
                return reject(.nothingToHold(command: name, incident: incident.id, stopped: reason))
            }
            let replaced = incident.hold
            incident.hold = .until(until, by: who)
            self.incident = incident
            accept(
                .held(by: who, incident: incident.id, until: until, replaces: replaced), [RecoveryCtl.resume(target)])

        case .resume:
            guard incident.hold != nil else {
                return reject(.nothingToResume(command: name, incident: incident.id))
            }
            incident.hold = nil
            self.incident = incident
            accept(.resumed(by: who, incident: incident.id, stillStopped: incident.automationStopped))

        case .approve:
            if let hold = incident.hold {
                return reject(
                    .incidentHeld(command: name, target: target, incident: incident.id, hold: hold),
                    [RecoveryCtl.resume(target)])
            }
            switch incident.phase {
            case .pending(let step, _), .awaitingApproval(let step, _):
                if settings.quarantined {
                    return reject(.quarantined(command: name, target: target))
                }
                if c.brakeEngaged {
                    return reject(.brakeBlocks(command: name), [RecoveryCtl.brakeRelease])
                }
                accept(.approved(by: who, step: step, incident: incident.id))
                take(step, by: .approval(by: who), &c)
            case .inProgress(let attempt):
                reject(
                    .stepInProgress(
                        command: name, step: attempt.step, incident: incident.id,
                        requestedAt: attempt.requestedAt, deadline: attempt.deadline),
                    manualCommands(incident))
            case .stopped(let reason):
                reject(
                    .nothingToApprove(command: name, incident: incident.id, stopped: reason), manualCommands(incident))
            }

        case .restart, .reprovision, .failover:
            let step = command.name.step!
            if settings.quarantined {
                return reject(.quarantined(command: name, target: target))
            }
            if let hold = incident.hold {
                return reject(
                    .incidentHeld(command: name, target: target, incident: incident.id, hold: hold),
                    [RecoveryCtl.resume(target)])
            }
            if c.brakeEngaged {
                return reject(.brakeBlocks(command: name), [RecoveryCtl.brakeRelease])
            }
            if case .inProgress(let attempt) = incident.phase, attempt.succeededAt == nil {
                return reject(
                    .awaitingOutcome(
                        command: name, step: attempt.step, requestedAt: attempt.requestedAt,
                        deadline: attempt.deadline))
            }
            if incident.stepsRequested.contains(step) {
                let key = ActionRequest.key(target: target, incidentId: incident.id, step: step)
                return reject(
                    .stepAlreadyRequested(command: name, step: step, incident: incident.id, key: key),
                    manualCommands(incident))
            }
            if destinationRegion(for: step) == nil {
                return reject(.noDRRegion(command: name, target: target))
            }
            accept(.ranStep(by: who, step: step, incident: incident.id))
            take(step, by: .manual(by: who), &c)

        case .abort:
            // Stopping is never blocked: not by a hold, the brake or quarantine. Only a step the actuator
            // still works on (requested, not reported) can be aborted.
            guard case .inProgress(let attempt) = incident.phase, attempt.succeededAt == nil else {
                var verifying: RecoveryStep?
                if case .inProgress(let attempt) = incident.phase { verifying = attempt.step }
                return reject(
                    .nothingToAbort(command: name, incident: incident.id, verifying: verifying),
                    [RecoveryCtl.ack(target)])
            }
            // An earlier abort of this attempt (not of a step before it that a person has since re-run by hand).
            if let earlier = incident.aborted, earlier.at >= attempt.requestedAt {
                return reject(
                    .alreadyAborted(
                        command: name, step: attempt.step, incident: incident.id, by: earlier.by, since: earlier.at))
            }
            let abort = StepAbort(by: who, at: c.now, reason: command.reason, commandId: id)
            incident.aborted = abort
            // Automation stops now, not when the actuator reports: whatever it reports (aborted, failed, or
            // finished before it reached a boundary), nothing is escalated automatically any more.
            if incident.automationStopped == nil { incident.automationStopped = .humanNeeded(abort.text(attempt.step)) }
            self.incident = incident
            c.actions.append(.abortStep(key: attempt.idempotencyKey, abort))
            var notice = answer(
                .commandAccepted,
                .abortRequested(
                    by: who, step: attempt.step, incident: incident.id, key: attempt.idempotencyKey,
                    reason: command.reason), [RecoveryCtl.ack(target)])
            notice.step = attempt.step  // recoveryctl follows this step's outcome
            notice.nextStep = .notifyOnly
            c.actions.append(.notify(notice))
        }
    }
}
