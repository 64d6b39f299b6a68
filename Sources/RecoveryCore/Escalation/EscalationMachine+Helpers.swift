import Foundation

extension EscalationMachine {
    // MARK: Helpers

    /// Whether an open incident's ladder may still take a step by itself: not stopped, not acknowledged,
    /// not held. False without an incident.
    public func mayAct(at now: Date) -> Bool {
        guard let incident else { return false }
        if incident.automationStopped != nil || isHeld(incident, now) { return false }
        if case .stopped = incident.phase { return false }
        return true
    }

    func isHeld(_ incident: Incident, _ now: Date) -> Bool {
        switch incident.hold {
        case .acknowledged?: true
        case .until(let end, _)?: now < end
        case nil: false
        }
    }

    func destinationRegion(for step: RecoveryStep) -> String? {
        step == .failover ? identity.failoverRegion(from: currentInstance.region) : currentInstance.region
    }

    func nextUnrequested(after step: RecoveryStep, in incident: Incident) -> RecoveryStep {
        var next = step.next
        while next != .notifyOnly && incident.stepsRequested.contains(next) { next = next.next }
        return next
    }

    /// When `step`, due at `notBefore`, will run by itself, or what blocks it.
    func plan(_ step: RecoveryStep, notBefore: Date, _ c: Context) -> (
        at: Date?, blocker: StepBlocker?, respondBy: Date?
    ) {
        guard step != .notifyOnly else { return (nil, nil, nil) }
        if settings.quarantined { return (nil, .quarantine, nil) }
        switch incident?.hold {
        case .acknowledged?: return (nil, .acknowledged, nil)
        case .until(let end, _)? where end > c.now: return (max(end, notBefore), .held, nil)
        default: break
        }
        if c.brakeEngaged { return (nil, .brake, nil) }
        if settings.requiresApproval {
            return (nil, .approval, max(c.now, notBefore).addingTimeInterval(settings.approvalTimeout))
        }
        return (max(c.now, notBefore), nil, nil)
    }

    /// The four ways to answer an outage notice.
    func responseCommands(after time: Date) -> [String] {
        [
            RecoveryCtl.ack(target), RecoveryCtl.approve(target),
            RecoveryCtl.hold(target, until: time.addingTimeInterval(3600)), RecoveryCtl.resume(target),
        ]
    }

    /// The step commands not yet used in the incident.
    func manualCommands(_ incident: Incident) -> [String] {
        [RecoveryStep.restart, .reprovision, .failover]
            .filter { !incident.stepsRequested.contains($0) }
            .filter { $0 != .failover || destinationRegion(for: .failover) != nil }
            .compactMap { RecoveryCtl.run($0, target) }
    }

    func baseNotice(_ kind: NotificationKind, id: String, _ c: Context) -> Notice {
        Notice(
            id: id, kind: kind, at: c.now, target: target, instanceId: currentInstance.id,
            region: currentInstance.region, incidentId: incident?.id, outageCount: incident?.outageNumber)
    }
}
