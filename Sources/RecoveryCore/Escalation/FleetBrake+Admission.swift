import Foundation

extension FleetBrake {
    /// Applies a target's reports as one decision, keeping what the brake says in `pending`. Returns false
    /// when a report is a destructive step that the brake no longer admits: it is engaged (by an earlier
    /// report of the same event, or by another replica since the target's machine looked) and the step was
    /// not counted before. That step must not start; discard this value and decide the event again with
    /// the brake engaged.
    ///
    /// The decision worker stores the brake with this count and the target that publishes the step in one
    /// atomic compare-and-set, so two replicas can never both pass a brake at its last free slot: one of
    /// the two writes fails and that replica decides again on the brake the other one stored.
    public mutating func admit(_ events: [Event], now: Date) -> Bool {
        for event in events {
            if case .destructiveActionRequested(_, let key) = event, isEngaged,
                !recentActions.contains(where: { $0.idempotencyKey == key })
            {
                return false
            }
            keep(handle(event, now: now))
        }
        return true
    }

    /// Keeps the actions of `handle` for whoever carries them out.
    public mutating func keep(_ actions: [Action]) {
        guard !actions.isEmpty else { return }
        var p = pending ?? Pending()
        for action in actions {
            switch action {
            case .notify(let notice), .rejectCommand(let notice): p.notices.append(notice)
            case .wakeTargets(let targets): p.wake += targets.filter { !p.wake.contains($0) }
            }
        }
        pending = p
    }
}
