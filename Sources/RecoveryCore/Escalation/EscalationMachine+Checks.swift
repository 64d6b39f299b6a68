import Foundation

// Which checks declare an outage, and when a flapping target is held (docs/escalation.md, "Declaring an
// outage" and "Flapping"):
//
// - N consecutive failed checks from enough distinct probers (the quorum), as before;
// - or, with `failure_window` W > N, N failed checks among the last W from enough distinct probers, so a
//   site that fails every other check is declared too (3 of the last 5, say);
// - an incident declared when `flap_incidents` − 1 others closed by themselves (no step requested)
//   within `flap_window` is held for a person (stop reason `flapping`): one notice, no step, and it
//   closes only after the site has stayed healthy for `flap_window`, so the flapping pages once instead
//   of once per bounce and never climbs the ladder.

extension EscalationMachine {
    /// One check in the windowed rule's memory.
    public struct WindowCheck: Codable, Sendable, Equatable {
        public var failed: Bool
        public var prober: String
        public init(failed: Bool, prober: String) {
            self.failed = failed
            self.prober = prober
        }
    }

    /// How long a prober counts as present after its last check of a target, for the automatic quorum:
    /// ten probe intervals, at least 5 minutes. A probe replica that died stops counting after it, so
    /// the others can declare an outage alone again.
    public var proberWindow: TimeInterval { max(300, 10 * settings.probeInterval) }

    /// Distinct failing probers an outage needs: `quorum_size` when quorum is on, 1 when it is off, and
    /// by default 2 once two probers have checked the target within `proberWindow` (else 1).
    public func requiredProbers(at now: Date) -> Int {
        switch settings.quorum {
        case true?: return max(1, settings.quorumSize)
        case false?: return 1
        case nil:
            let present = (health.seenProbers ?? [:]).filter { now.timeIntervalSince($0.value) < proberWindow }
            return present.count >= 2 ? 2 : 1
        }
    }

    /// Whether the windowed rule is on: a window longer than the failure threshold.
    var windowed: Bool { settings.failureWindow > max(1, settings.failureThreshold) }

    /// Keeps the check in the window (only while the windowed rule is on; off, the memory is dropped).
    mutating func recordInWindow(_ probe: ProbeResult) {
        guard windowed else {
            health.window = nil
            return
        }
        var window = health.window ?? []
        window.append(WindowCheck(failed: !probe.healthy, prober: probe.prober))
        if window.count > settings.failureWindow { window.removeFirst(window.count - settings.failureWindow) }
        health.window = window
    }

    /// The failed checks in the window and their distinct probers.
    var windowFailures: (count: Int, probers: [String]) {
        let failed = (health.window ?? []).filter(\.failed)
        return (failed.count, Array(Set(failed.map(\.prober))).sorted())
    }

    /// Whether the windowed rule declares an outage now (the newest check failed, N of the last W failed,
    /// from enough distinct probers).
    func windowDeclares(at now: Date) -> Bool {
        guard windowed, health.window?.last?.failed == true else { return false }
        let (count, probers) = windowFailures
        return count >= max(1, settings.failureThreshold) && probers.count >= requiredProbers(at: now)
    }

    /// The failures and probers that declared the outage: the consecutive run when it did, else the
    /// window's (with the window's length).
    func declaringFailures() -> (Int, [String], Int?) {
        if health.failures >= max(1, settings.failureThreshold) || !windowed {
            return (health.failures, health.failingProbers, nil)
        }
        let (count, probers) = windowFailures
        return (count, probers, settings.failureWindow)
    }

    /// The stop reason for an incident declared now if the target flaps, else nil.
    func flapping(at now: Date) -> StopReason? {
        guard settings.flapIncidents >= 2 else { return nil }
        let closed = (selfRecoveries ?? []).filter { now.timeIntervalSince($0) < settings.flapWindow }
        guard closed.count + 1 >= settings.flapIncidents else { return nil }
        return .flapping(incidents: closed.count + 1, window: settings.flapWindow)
    }

    /// Whether the open incident is a flapping hold that has not yet been healthy for `flap_window`.
    /// A step a person ran in the hold ends it: that step's verification decides, as for any step.
    func heldForFlapping(at now: Date) -> Bool {
        guard case .flapping? = incident?.automationStopped, incident?.stepsRequested.isEmpty == true else {
            return false
        }
        guard let since = health.healthySince else { return true }
        return now.timeIntervalSince(since) < settings.flapWindow
    }

    /// A flapping hold is one notice, but not silence for ever: a target that has stayed down for
    /// `flap_window` (no healthy check) in the hold, with no step taken, is said once more to need a person.
    mutating func remindIfDownWhileFlapping(_ c: inout Context) {
        guard var incident, let stopped = incident.automationStopped, stopped.flapping != nil,
            incident.stepsRequested.isEmpty, incident.flapReminded != true, health.failures > 0,
            let since = health.downSince, c.now.timeIntervalSince(since) >= settings.flapWindow
        else { return }
        incident.flapReminded = true
        self.incident = incident
        var notice = baseNotice(.humanNeeded, id: "\(incident.id):still_down_while_flapping", c)
        notice.nextStep = .notifyOnly
        notice.reason = .automationStopped(target: target, incident: incident.id, tried: [], why: stopped)
        notice.commands = manualCommands(incident) + [RecoveryCtl.ack(target)]
        c.actions.append(.notify(notice))
    }

    /// Remembers an incident that closed by itself (no step was requested), within `flap_window`. A
    /// flapping hold that closes does not count: it closed after a stable period, the flapping is over.
    mutating func noteSelfRecovery(_ incident: Incident, at now: Date) {
        var closed = (selfRecoveries ?? []).filter { now.timeIntervalSince($0) < settings.flapWindow }
        if incident.automationStopped?.flapping != nil {
            closed = []
        } else if incident.stepsRequested.isEmpty {
            closed.append(now)
        }
        selfRecoveries = closed.isEmpty ? nil : closed
    }
}

extension NoticeReason {
    /// A flapping target's numbers: the `incidents`-th incident within `window` seconds.
    public struct Flapping: Sendable, Equatable {
        public var incidents: Int
        public var window: TimeInterval
        public init(incidents: Int, window: TimeInterval) {
            self.incidents = incidents
            self.window = window
        }
    }
}

extension EscalationMachine.StopReason {
    /// The flapping numbers when automation stopped because the target flaps.
    public var flapping: NoticeReason.Flapping? {
        if case .flapping(let incidents, let window) = self {
            NoticeReason.Flapping(incidents: incidents, window: window)
        } else {
            nil
        }
    }
}
