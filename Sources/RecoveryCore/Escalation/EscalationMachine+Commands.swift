import Foundation

extension EscalationMachine {
    // MARK: Operator commands

    mutating func onCommand(id: String, _ command: OperatorCommand, _ c: inout Context) {
        let ref = CommandRef(id: id, name: command.name.rawValue, operator: command.operator)
        let who = command.operator
        func reject(_ detail: String, _ commands: [String] = []) {
            var notice = baseNotice(.commandRejected, id: "command:\(id)", c)
            notice.command = ref
            notice.detail = "\(command.name.rawValue) refused: \(detail)"
            notice.commands = commands
            c.actions.append(.rejectCommand(notice))
        }
        func accept(_ detail: String, _ commands: [String] = []) {
            var notice = baseNotice(.commandAccepted, id: "command:\(id)", c)
            notice.command = ref
            notice.detail = detail
            notice.commands = commands
            c.actions.append(.notify(notice))
        }

        if command.name == .reset {
            let before = outageCount(at: c.now)
            outageTimes = []
            var detail = "outage count of \(target) reset by \(who) (it was \(before) within \(TimeText.duration(settings.outageCountWindow))); the next outage starts at restart"
            if let incident { detail += ". Incident \(incident.id) continues where it is." }
            return accept(detail)
        }
        guard var incident else {
            let why = health.failures > 0
                ? "\(health.failures) of \(settings.failureThreshold) failed checks so far, no outage declared"
                : "the site is healthy"
            return reject("\(target) has no open incident (\(why)); there is nothing to \(command.name.rawValue)")
        }
        let heldText: String? = switch incident.hold {
        case .acknowledged(let by, let at)?: "incident \(incident.id) is acknowledged by \(by) (since \(TimeText.iso(at)))"
        case .until(let end, let by)?: "incident \(incident.id) is held by \(by) until \(TimeText.iso(end))"
        case nil: nil
        }

        switch command.name {
        case .reset:
            break  // handled above

        case .ack:
            if case .acknowledged(let by, let at)? = incident.hold {
                return reject("incident \(incident.id) is already acknowledged by \(by) (since \(TimeText.iso(at)))")
            }
            let replaced = heldText.map { " (replaces: \($0))" } ?? ""
            incident.hold = .acknowledged(by: who, at: c.now)
            self.incident = incident
            accept("\(who) acknowledged incident \(incident.id)\(replaced): no automatic step until resumed; recovery will still be reported",
                   [RecoveryCtl.resume(target)])

        case .hold:
            guard let until = command.until else {
                return reject("hold needs a time: \(RecoveryCtl.hold(target, until: c.now.addingTimeInterval(3600)))")
            }
            guard until > c.now else {
                return reject("--until \(TimeText.iso(until)) is not in the future (now is \(TimeText.iso(c.now)))")
            }
            if case .stopped(let reason) = incident.phase {
                return reject("automation has already stopped for incident \(incident.id) (\(reason)): there is no automatic step to hold")
            }
            let replaced = heldText.map { " (replaces: \($0))" } ?? ""
            incident.hold = .until(until, by: who)
            self.incident = incident
            accept("\(who) held incident \(incident.id) until \(TimeText.iso(until))\(replaced): no step before then, then the normal flow continues",
                   [RecoveryCtl.resume(target)])

        case .resume:
            guard incident.hold != nil else {
                return reject("incident \(incident.id) is neither acknowledged nor held: nothing to resume")
            }
            incident.hold = nil
            self.incident = incident
            let stopped = incident.automationStopped.map { " (automation stays stopped: \($0))" } ?? ""
            accept("\(who) resumed automation for incident \(incident.id)\(stopped)")

        case .approve:
            if let heldText {
                return reject("\(heldText); run `\(RecoveryCtl.resume(target))` first, then approve", [RecoveryCtl.resume(target)])
            }
            switch incident.phase {
            case .pending(let step, _), .awaitingApproval(let step, _):
                if settings.quarantined {
                    return reject("\(target) is quarantined (notify only); lift the quarantine in its configuration first")
                }
                if c.brakeEngaged {
                    return reject("the fleet brake is engaged: no destructive step runs until it is released (an operator command does not override it)", [RecoveryCtl.brakeRelease])
                }
                accept("\(who) approved \(step.rawValue) for incident \(incident.id)")
                take(step, by: .approval(by: who), &c)
            case .inProgress(let attempt):
                reject("\(attempt.step.rawValue) is in progress for incident \(incident.id) (requested \(TimeText.iso(attempt.requestedAt)), verifying until \(TimeText.iso(attempt.deadline))): there is nothing to approve",
                       manualCommands(incident))
            case .stopped(let reason):
                let closed = reason == .approvalTimedOut ? "the approval window closed; " : ""
                reject("\(closed)automation has stopped for incident \(incident.id) (\(reason)): there is nothing to approve; run a step by hand",
                       manualCommands(incident))
            }

        case .restart, .reprovision, .failover:
            let step = command.name.step!
            if settings.quarantined {
                return reject("\(target) is quarantined (notify only); lift the quarantine in its configuration first")
            }
            if let heldText {
                return reject("\(heldText); run `\(RecoveryCtl.resume(target))` first", [RecoveryCtl.resume(target)])
            }
            if c.brakeEngaged {
                return reject("the fleet brake is engaged: no destructive step runs until it is released (an operator command does not override it)", [RecoveryCtl.brakeRelease])
            }
            if case .inProgress(let attempt) = incident.phase, attempt.succeededAt == nil {
                return reject("\(attempt.step.rawValue) was requested at \(TimeText.iso(attempt.requestedAt)) and the actuator has not reported yet; wait for its outcome (deadline \(TimeText.iso(attempt.deadline)))")
            }
            if incident.stepsRequested.contains(step) {
                let key = ActionRequest.key(target: target, incidentId: incident.id, step: step)
                return reject("\(step.rawValue) was already requested in incident \(incident.id) (key \(key)); each step runs at most once per incident",
                              manualCommands(incident))
            }
            if destinationRegion(for: step) == nil {
                return reject("no DR region is configured for \(target), so it cannot fail over")
            }
            accept("\(who) ran \(step.rawValue) for incident \(incident.id)")
            take(step, by: .manual(by: who), &c)
        }
    }
}
