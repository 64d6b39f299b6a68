import Foundation

extension EscalationMachine {
    /// When the machine next needs a `.tick`, if it is waiting for a time. (A step blocked only by the
    /// brake has no deadline: the brake's release wakes the target.)
    public var nextDeadline: Date? {
        guard let incident else { return nil }
        let due: Date? =
            switch incident.phase {
            // A kept outage notice goes out before any step: after a window, the next failed check sends it.
            case .pending where incident.deferredNotice != nil: nil
            case .pending(_, let notBefore):
                switch incident.hold {
                case .acknowledged: nil
                case .until(let end, _): max(end, notBefore)
                case nil: notBefore
                }
            case .awaitingApproval(_, let deadline): deadline
            case .inProgress(let attempt): attempt.deadline
            case .stopped: nil
            }
        // A maintenance window holds the step (nothing before its end) or a deferred notice (due at its end).
        guard let until = incident.maintenanceUntil else { return due }
        guard let due else { return until }
        if case .pending = incident.phase { return max(due, until) }
        return min(due, until)
    }

    // MARK: Time

    mutating func advance(_ c: inout Context) {
        endMaintenance(&c)
        guard var incident else { return }
        if case .until(let end, _) = incident.hold, c.now >= end {
            incident.hold = nil
            self.incident = incident
        }
        switch incident.phase {
        case .pending(let step, let notBefore):
            if c.now >= notBefore { take(step, by: .automatic, &c) }
        case .awaitingApproval(let step, let deadline):
            if c.now >= deadline { approvalTimedOut(step, &c) }
        case .inProgress(let attempt):
            if c.now >= attempt.deadline {
                let window = attempt.deadline.timeIntervalSince(attempt.requestedAt)
                escalate(from: attempt, kind: .verificationFailed, &c) { [target] stopped in
                    attempt.succeededAt == nil
                        ? .noOutcome(target: target, step: attempt.step, window: window, stillStopped: stopped)
                        : .stillDown(target: target, step: attempt.step, window: window, stillStopped: stopped)
                }
            }
        case .stopped:
            break
        }
    }

    mutating func approvalTimedOut(_ step: RecoveryStep, _ c: inout Context) {
        guard var incident else { return }
        incident.phase = .stopped(.approvalTimedOut)
        incident.automationStopped = .approvalTimedOut
        self.incident = incident
        var notice = baseNotice(.approvalTimedOut, id: "\(incident.id):approval_timed_out:\(step.rawValue)", c)
        notice.step = step
        notice.nextStep = .notifyOnly
        notice.reason = .approvalTimedOut(target: target, step: step)
        notice.commands = manualCommands(incident)
        c.actions.append(.notify(notice))
    }

    mutating func scheduleWakeUp(_ c: inout Context) {
        var next = nextDeadline
        if let deadline = next, deadline <= c.now { next = nil }  // due but blocked (brake): the release wakes it
        guard next != scheduledWakeUp else { return }
        scheduledWakeUp = next
        if let next { c.actions.append(.scheduleWakeUp(at: next)) }
    }
}
