import Foundation

// Maintenance windows in the ladder (docs/escalation.md, "Maintenance windows"; MaintenanceWindow.swift):
// during a window probing goes on and an outage opens an incident (history records it), but no automatic
// step runs (`take` leaves the step pending until the window's end) and nothing is paged: the
// `outage_declared` notice of an incident declared during the window waits in the incident. If the target
// comes back before the end, the incident closes without a word; if it is still down at the end, that
// notice goes out then (one summary: when it was declared, that it is still down), and the step follows
// after the grace period, counted from the end, so people have the same time to answer as for any outage.
// An operator's explicit command (a step by hand, approve) is theirs to give during a window.

extension EscalationMachine {
    /// The end of the maintenance covering `now` (the target's windows and the fleet's, which the
    /// decision worker adds to the settings), if any.
    public func maintenanceEnd(at now: Date) -> Date? {
        settings.maintenance.isEmpty ? nil : MaintenanceWindow.activeEnd(of: settings.maintenance, at: now)
    }

    /// Keeps the outage notice of an incident declared during a window until `end`.
    mutating func holdNotice(_ notice: Notice, until end: Date) {
        guard var incident else { return }
        incident.maintenanceUntil = end
        incident.deferredNotice = notice
        self.incident = incident
    }

    /// While a window holds the incident, follows its end (a window that goes on or was extended moves
    /// it); once no window covers now (it ended, or its configuration was removed), the deferred notice
    /// goes out, with the step's new time.
    ///
    /// A site that is answering again when the window ends (healthy checks, not yet M of them) is not
    /// paged: the notice waits for its next failed check, or the incident closes silently.
    mutating func endMaintenance(_ c: inout Context) {
        guard var incident, incident.maintenanceUntil != nil || incident.deferredNotice != nil else { return }
        if let end = maintenanceEnd(at: c.now) {
            if end != incident.maintenanceUntil {
                incident.maintenanceUntil = end
                self.incident = incident
            }
            return
        }
        let until = incident.maintenanceUntil ?? c.now
        incident.maintenanceUntil = nil
        guard var notice = incident.deferredNotice, health.successes == 0 else {
            self.incident = incident
            return
        }
        incident.deferredNotice = nil
        notice.id += ":after_maintenance"
        notice.at = c.now
        if case .outageDeclared(let t, let f, let p, let l, let n, let w, let noStep, let ofLast, let flap, _, _)? =
            notice.reason
        {
            notice.reason = .outageDeclared(
                target: t, failures: f, probers: p, lastCheck: l, outageCount: n, window: w, noStep: noStep,
                ofLast: ofLast, flapping: flap, afterMaintenance: until, declaredAt: incident.declaredAt)
        }
        if case .pending(let step, let notBefore) = incident.phase {
            let at = max(notBefore, c.now.addingTimeInterval(settings.gracePeriod))
            incident.phase = .pending(step: step, notBefore: at)
            self.incident = incident
            let plan = plan(step, notBefore: at, c)
            notice.nextStep = step
            notice.nextStepAt = plan.at
            notice.blockedBy = plan.blocker
            notice.respondBy = plan.respondBy
            notice.commands = responseCommands(after: plan.at ?? c.now)
        } else {
            self.incident = incident
        }
        c.actions.append(.reportToFleet(.outageOpened(target: target)))  // counted from now, as paged
        c.actions.append(.notify(notice))
    }
}
