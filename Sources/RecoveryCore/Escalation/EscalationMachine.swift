import Foundation

/// The escalation ladder of one target, as a pure value: the decision worker loads it from Redis, calls
/// `handle(_:now:brakeEngaged:)` with one event, carries out the returned actions, and stores it back.
/// It never sleeps, reads the clock, or does I/O; time comes in as `now`, and deadlines go out as
/// `.scheduleWakeUp(at:)` actions, answered later with `.tick`. See docs/escalation.md.
///
/// The ladder: N failed checks declare an outage and open an incident. After the grace period the
/// machine takes the step chosen by the outage count (1 restart, 2 re-provision, 3 fail-over to the DR
/// region, 4+ notify only) and verifies it by probing; when the site is not back within the step's
/// verification window, or the actuator reports a failure, it escalates to the next step. M healthy
/// checks close the incident. Admins can ack, hold, approve and resume; holds, acks, missing approval,
/// quarantine and the fleet brake all stop destructive steps.
public struct EscalationMachine: Codable, Sendable, Equatable {
    /// The version of the stored JSON this build writes and the newest it reads.
    public static let currentSchemaVersion = 1
    /// How many recent event ids the state keeps to drop redelivered events. With two probers every 30 s
    /// this covers a bit over an hour of observations, far longer than a broker redelivers.
    public static let eventMemory = 512
    /// How many idempotency keys of requested steps the state keeps (across incidents), to recognise
    /// late outcomes.
    public static let requestMemory = 64

    // MARK: State

    public enum State: Codable, Sendable, Equatable {
        /// No open incident; the health streaks count towards declaring one.
        case monitoring
        case incident(Incident)
    }

    /// One outage, from its declaration to the site's recovery.
    public struct Incident: Codable, Sendable, Equatable {
        public var id: String
        public var declaredAt: Date
        /// The outage's number within the count window; it chose the first step.
        public var outageNumber: Int
        /// The instance the target ran on when the outage was declared.
        public var startInstance: InstanceRef
        public var phase: Phase
        /// An admin's ack or hold; stops automatic steps (and approve / step commands) while active.
        public var hold: Hold?
        /// Every step requested in this incident, in order. A step is requested at most once.
        public var stepsRequested: [RecoveryStep]
        /// Set once automation has stopped for good in this incident (ladder used up, human needed,
        /// approval timed out, quarantine). A step run by hand afterwards is verified and reported, but
        /// its failure does not restart the ladder.
        public var automationStopped: StopReason?
    }

    public enum Phase: Codable, Sendable, Equatable {
        /// `step` runs at `notBefore` (the grace deadline, or at once after an escalation) unless held,
        /// acknowledged or braked; then it waits until that ends.
        case pending(step: RecoveryStep, notBefore: Date)
        /// `step` runs only after `recoveryctl approve`; at `deadline` the machine gives up (fail closed).
        case awaitingApproval(step: RecoveryStep, deadline: Date)
        /// A step was requested; the site must be back by the attempt's deadline.
        case inProgress(StepAttempt)
        /// No automatic step will run in this incident; waiting for recovery or an operator.
        case stopped(StopReason)
    }

    public struct StepAttempt: Codable, Sendable, Equatable {
        public var step: RecoveryStep
        public var idempotencyKey: String
        public var requestedAt: Date
        /// The operator who ran or approved it, nil when automatic.
        public var requestedBy: String?
        /// Requested at + the step's verification window, pushed out to (success + settle time) when the
        /// actuator reports success late. Not back by then: escalate.
        public var deadline: Date
        public var succeededAt: Date?
    }

    public enum StopReason: Codable, Sendable, Equatable, CustomStringConvertible {
        /// Restart, re-provision and fail-over were all used (or the outage count is 4 or more).
        case ladderExhausted
        /// The actuator (or the configuration) needs a person, e.g. no snapshot or no DR region.
        case humanNeeded(String)
        /// The target requires approval and none came in time.
        case approvalTimedOut
        /// The target is quarantined: notify only.
        case quarantined

        public var description: String {
            switch self {
            case .ladderExhausted: "no automatic step left"
            case .humanNeeded(let reason): "a person is needed: \(reason)"
            case .approvalTimedOut: "the approval request timed out"
            case .quarantined: "the target is quarantined (notify only)"
            }
        }
    }

    public enum Hold: Codable, Sendable, Equatable {
        /// `recoveryctl ack`: someone is on it; no automatic step until `resume`.
        case acknowledged(by: String, at: Date)
        /// `recoveryctl hold --until`: no step before the time; then the normal flow continues.
        case until(Date, by: String)
    }

    /// Consecutive check results for the current instance.
    public struct HealthStreaks: Codable, Sendable, Equatable {
        public var failures = 0
        public var successes = 0
        /// The distinct probers that reported failures in the current failure streak (for quorum).
        public var failingProbers: [String] = []
    }

    /// The instance the target ran on before a re-provision moved it, watched for "original instance back".
    public struct DisplacedInstance: Codable, Sendable, Equatable {
        public var instance: InstanceRef
        public var successes: Int
        public var reported: Bool
    }

    // MARK: Events and actions

    public enum Event: Sendable, Equatable {
        /// An `observation` message; `id` is its envelope id.
        case probe(id: String, ProbeResult)
        /// An `action.event` message from the actuator.
        case actionOutcome(id: String, ActionOutcome)
        /// A `command` message from recoveryctl.
        case command(id: String, OperatorCommand)
        /// Time passed: sent for a scheduled wake-up, and harmless at any other time.
        case tick

        /// The id the machine deduplicates on; ticks have none and are idempotent by themselves.
        public var id: String? {
            switch self {
            case .probe(let id, _), .actionOutcome(let id, _), .command(let id, _): id
            case .tick: nil
            }
        }
    }

    public enum Action: Sendable, Equatable {
        /// Publish an `action.request` to the actuator queue (idempotent by its key).
        case requestAction(ActionRequest)
        /// Publish a `notification`. When `command` is set, also answer that command's sender.
        case notify(Notice)
        /// The command was refused: answer its sender with the notice and publish it.
        case rejectCommand(Notice)
        /// Apply this event to the fleet brake (`FleetBrake.handle`), under the fleet lock.
        case reportToFleet(FleetBrake.Event)
        /// Deliver a `.tick` at (or soon after) this time. Replaces any earlier wake-up of this target.
        case scheduleWakeUp(at: Date)
    }

    // MARK: Stored properties

    public private(set) var schemaVersion: Int
    /// Who the target is. The worker may refresh it from configuration (a new DR region, say), but the
    /// `name` must stay the same: it is the state's key.
    public var identity: TargetIdentity
    /// The target's settings; the worker sets them from configuration before each `handle`.
    public var settings: TargetSettings
    public private(set) var state: State
    /// The instance that serves the target now; changes when a re-provision or fail-over succeeds.
    public private(set) var currentInstance: InstanceRef
    public private(set) var health: HealthStreaks
    /// When each outage within the count window was declared. The outage count is how many are younger
    /// than the window, so expiry needs no timer and no Redis TTL.
    public private(set) var outageTimes: [Date]
    public private(set) var displaced: DisplacedInstance?
    public private(set) var lastIncidentId: String?
    /// Incidents declared for this target so far (it disambiguates two incident ids in one second).
    public private(set) var incidentCount: Int
    /// Idempotency keys of requested steps, newest last (bounded by `requestMemory`).
    public private(set) var requestedKeys: [String]
    /// Ids of recently handled events, newest last (bounded by `eventMemory`).
    public private(set) var recentEventIds: [String]
    /// The last wake-up asked for, so that it is asked for once.
    public private(set) var scheduledWakeUp: Date?

    /// A new target, healthy, on `instance`.
    public init(identity: TargetIdentity, instance: InstanceRef, settings: TargetSettings = TargetSettings()) {
        self.schemaVersion = Self.currentSchemaVersion
        self.identity = identity
        self.settings = settings
        self.state = .monitoring
        self.currentInstance = instance
        self.health = HealthStreaks()
        self.outageTimes = []
        self.displaced = nil
        self.lastIncidentId = nil
        self.incidentCount = 0
        self.requestedKeys = []
        self.recentEventIds = []
        self.scheduledWakeUp = nil
    }

    // MARK: Queries

    public var target: String { identity.name }

    /// The open incident, if any.
    public var incident: Incident? {
        get { if case .incident(let incident) = state { incident } else { nil } }
        set { state = newValue.map { .incident($0) } ?? .monitoring }
    }

    /// Outages declared within the count window before `now`.
    public func outageCount(at now: Date) -> Int {
        outageTimes.filter { now.timeIntervalSince($0) < settings.outageCountWindow }.count
    }

    /// When the machine next needs a `.tick`, if it is waiting for a time. (A step blocked only by the
    /// brake has no deadline: the brake's release wakes the target.)
    public var nextDeadline: Date? {
        guard let incident else { return nil }
        switch incident.phase {
        case .pending(_, let notBefore):
            switch incident.hold {
            case .acknowledged: return nil
            case .until(let end, _): return max(end, notBefore)
            case nil: return notBefore
            }
        case .awaitingApproval(_, let deadline): return deadline
        case .inProgress(let attempt): return attempt.deadline
        case .stopped: return nil
        }
    }

    // MARK: Handling

    /// Records `id` as handled; false when it was handled before. `handle` calls it for every event with
    /// an id; the decision worker also calls it for a command the target's repair plan takes instead, so
    /// a redelivery of that command is dropped the same way, whoever handled it first.
    public mutating func remember(eventId id: String) -> Bool {
        guard !recentEventIds.contains(id) else { return false }
        recentEventIds.append(id)
        if recentEventIds.count > Self.eventMemory {
            recentEventIds.removeFirst(recentEventIds.count - Self.eventMemory)
        }
        return true
    }

    /// Handles one event at `now`. `brakeEngaged` is the fleet brake's state (`FleetBrake.isEngaged`),
    /// read under the fleet lock; while it is true no destructive step is requested.
    ///
    /// An event whose id was handled before is a no-op that returns no actions.
    public mutating func handle(_ event: Event, now: Date, brakeEngaged: Bool) -> [Action] {
        if let id = event.id, !remember(eventId: id) { return [] }
        var c = Context(now: now, brakeEngaged: brakeEngaged)
        switch event {
        case .probe(_, let result): onProbe(result, &c)
        case .actionOutcome(_, let outcome): onOutcome(outcome, &c)
        case .command(let id, let command): onCommand(id: id, command, &c)
        case .tick: break
        }
        advance(&c)
        scheduleWakeUp(&c)
        return c.actions
    }

    private struct Context {
        let now: Date
        let brakeEngaged: Bool
        var actions: [Action] = []
    }

    private enum Initiator: Equatable {
        case automatic
        case approval(by: String)
        case manual(by: String)

        var person: String? {
            switch self {
            case .automatic: nil
            case .approval(let by), .manual(let by): by
            }
        }
    }

    // MARK: Probes

    private mutating func onProbe(_ probe: ProbeResult, _ c: inout Context) {
        let instanceId = probe.instanceId ?? currentInstance.id
        guard instanceId == currentInstance.id else {
            watchDisplaced(instanceId: instanceId, healthy: probe.healthy, &c)
            return
        }
        if probe.healthy {
            health.successes += 1
            health.failures = 0
            health.failingProbers = []
        } else {
            health.failures += 1
            health.successes = 0
            if !health.failingProbers.contains(probe.prober) {
                health.failingProbers.append(probe.prober)
                health.failingProbers.sort()
            }
        }
        switch state {
        case .monitoring:
            let enoughFailures = health.failures >= max(1, settings.failureThreshold)
            let quorate = !settings.quorum || health.failingProbers.count >= max(1, settings.quorumSize)
            if !probe.healthy && enoughFailures && quorate { declare(probe, &c) }
        case .incident:
            if probe.healthy && health.successes >= max(1, settings.recoveryThreshold) { recover(&c) }
        }
    }

    private mutating func watchDisplaced(instanceId: String, healthy: Bool, _ c: inout Context) {
        guard var watched = displaced, watched.instance.id == instanceId else { return }
        watched.successes = healthy ? watched.successes + 1 : 0
        if !watched.reported && watched.successes >= max(1, settings.recoveryThreshold) {
            watched.reported = true
            var notice = baseNotice(.originalInstanceBack, id: "\(target):original_instance_back:\(instanceId)", c)
            notice.instanceId = watched.instance.id
            notice.region = watched.instance.region
            notice.detail = "the original instance \(watched.instance) answers health checks again; \(target) now runs on \(currentInstance). Nothing was changed: fail back by hand if you want it back."
            c.actions.append(.notify(notice))
        }
        displaced = watched
    }

    private mutating func declare(_ probe: ProbeResult, _ c: inout Context) {
        outageTimes = outageTimes.filter { c.now.timeIntervalSince($0) < settings.outageCountWindow }
        outageTimes.append(c.now)
        let count = outageTimes.count
        let step = RecoveryStep.forOutage(number: count)

        incidentCount += 1
        var id = "inc-\(target)-\(TimeText.compact(c.now))"
        if let last = lastIncidentId, last.hasPrefix(id) { id += "-\(incidentCount)" }

        var incident = Incident(
            id: id, declaredAt: c.now, outageNumber: count, startInstance: currentInstance,
            phase: .pending(step: step, notBefore: c.now.addingTimeInterval(settings.gracePeriod)),
            hold: nil, stepsRequested: [], automationStopped: nil)
        var stop: StopReason?
        if settings.quarantined {
            stop = .quarantined
        } else if step == .notifyOnly {
            stop = .ladderExhausted
        } else if settings.requiresApproval {
            incident.phase = .awaitingApproval(step: step, deadline: c.now.addingTimeInterval(settings.approvalTimeout))
        }
        if let stop {
            incident.phase = .stopped(stop)
            incident.automationStopped = stop
        }
        self.incident = incident
        c.actions.append(.reportToFleet(.outageOpened(target: target)))

        var notice = baseNotice(.outageDeclared, id: "\(id):outage_declared", c)
        let probers = health.failingProbers.joined(separator: ", ")
        var detail = "\(health.failures) consecutive failed checks (from \(probers))"
        if let reason = probe.detail { detail += ", last: \(reason)" }
        detail += "; outage \(count) within \(TimeText.duration(settings.outageCountWindow))"
        switch stop {
        case .quarantined?:
            notice.nextStep = .notifyOnly
            notice.blockedBy = .quarantine
            detail += ". \(target) is quarantined: no automatic step."
            notice.commands = [RecoveryCtl.ack(target)]
        case .ladderExhausted?:
            notice.nextStep = .notifyOnly
            detail += ". Restart, re-provision and fail-over were all used within the window: no automatic step. Act by hand."
            notice.commands = manualCommands(incident) + [RecoveryCtl.ack(target)]
        default:
            let plan = plan(step, notBefore: c.now.addingTimeInterval(settings.gracePeriod), c)
            notice.nextStep = step
            notice.nextStepAt = plan.at
            notice.blockedBy = plan.blocker
            if case .awaitingApproval(_, let deadline) = incident.phase { notice.respondBy = deadline }
            notice.commands = responseCommands(after: plan.at ?? c.now)
        }
        notice.detail = detail
        c.actions.append(.notify(notice))
    }

    private mutating func recover(_ c: inout Context) {
        guard let incident else { return }
        var fixedBy: RecoveryStep?
        if case .inProgress(let attempt) = incident.phase { fixedBy = attempt.step }
        var notice = baseNotice(.recovered, id: "\(incident.id):recovered", c)
        notice.fixedBy = fixedBy
        notice.stepsTaken = incident.stepsRequested
        let took = TimeText.duration(c.now.timeIntervalSince(incident.declaredAt))
        if let fixedBy {
            notice.detail = "\(target) is back after \(fixedBy.rawValue), \(took) after the outage was declared"
        } else if incident.stepsRequested.isEmpty {
            let inGrace = c.now < incident.declaredAt.addingTimeInterval(settings.gracePeriod)
            notice.detail = "\(target) came back by itself \(inGrace ? "during the grace period" : "without any step"), \(took) after the outage was declared; nothing was done"
        } else {
            notice.detail = "\(target) is back, \(took) after the outage was declared (steps: \(incident.stepsRequested.map(\.rawValue).joined(separator: ", ")))"
        }
        c.actions.append(.notify(notice))
        c.actions.append(.reportToFleet(.outageClosed(target: target)))
        lastIncidentId = incident.id
        state = .monitoring
    }

    // MARK: Actuator outcomes

    private mutating func onOutcome(_ outcome: ActionOutcome, _ c: inout Context) {
        // Only outcomes of steps this machine requested count; anything else is a stray.
        guard requestedKeys.contains(outcome.idempotencyKey) else { return }
        var moved = false
        if outcome.status == .succeeded, let newId = outcome.instanceId, newId != currentInstance.id {
            move(to: InstanceRef(id: newId, region: outcome.region ?? currentInstance.region))
            moved = true
        }
        guard var incident, case .inProgress(var attempt) = incident.phase,
            attempt.idempotencyKey == outcome.idempotencyKey
        else {
            // A late outcome of a step the machine no longer waits for. Only a move is news.
            if moved {
                var notice = baseNotice(.actionSucceeded, id: "\(outcome.incidentId):action_succeeded:\(outcome.step.rawValue)", c)
                notice.incidentId = outcome.incidentId
                notice.step = outcome.step
                notice.detail = "late result: \(outcome.step.rawValue) for incident \(outcome.incidentId) finished after the machine stopped waiting for it; \(target) now runs on \(currentInstance)"
                c.actions.append(.notify(notice))
            }
            return
        }
        let step = attempt.step
        switch outcome.status {
        case .succeeded:
            guard attempt.succeededAt == nil else { return }
            attempt.succeededAt = c.now
            attempt.deadline = max(attempt.deadline, c.now.addingTimeInterval(settings.settleTime))
            incident.phase = .inProgress(attempt)
            self.incident = incident
            var notice = baseNotice(.actionSucceeded, id: "\(incident.id):action_succeeded:\(step.rawValue)", c)
            notice.step = step
            notice.nextStep = nextUnrequested(after: step, in: incident)
            notice.nextStepAt = attempt.deadline
            var detail = "\(step.rawValue) finished"
            if moved { detail += "; \(target) now runs on \(currentInstance)" }
            detail += "; verifying: \(settings.recoveryThreshold) healthy checks needed by \(TimeText.iso(attempt.deadline)), else \(notice.nextStep!.rawValue)"
            notice.detail = detail
            c.actions.append(.notify(notice))
        case .failed:
            escalate(from: attempt, kind: .actionFailed, detail: "\(step.rawValue) failed: \(outcome.reason ?? "no reason given")", &c)
        case .humanNeeded:
            stop(.humanNeeded("\(step.rawValue) cannot run: \(outcome.reason ?? "no reason given")"), &c)
        }
    }

    private mutating func move(to instance: InstanceRef) {
        let from = incident?.startInstance ?? currentInstance
        if displaced == nil || displaced!.reported {
            displaced = DisplacedInstance(instance: from, successes: 0, reported: false)
        }
        if displaced?.instance.id == instance.id { displaced = nil }
        currentInstance = instance
        health = HealthStreaks()
    }

    // MARK: Time

    private mutating func advance(_ c: inout Context) {
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
                let window = TimeText.duration(attempt.deadline.timeIntervalSince(attempt.requestedAt))
                let detail = attempt.succeededAt == nil
                    ? "the actuator did not report on \(attempt.step.rawValue) within \(window) and \(target) is still down"
                    : "\(attempt.step.rawValue) ran but \(target) is still down \(window) after the request"
                escalate(from: attempt, kind: .verificationFailed, detail: detail, &c)
            }
        case .stopped:
            break
        }
    }

    private mutating func approvalTimedOut(_ step: RecoveryStep, _ c: inout Context) {
        guard var incident else { return }
        incident.phase = .stopped(.approvalTimedOut)
        incident.automationStopped = .approvalTimedOut
        self.incident = incident
        var notice = baseNotice(.approvalTimedOut, id: "\(incident.id):approval_timed_out:\(step.rawValue)", c)
        notice.step = step
        notice.nextStep = .notifyOnly
        notice.detail = "\(target) requires approval and none came in time: \(step.rawValue) was not run, and no automatic step will run for this incident. Act by hand if needed."
        notice.commands = manualCommands(incident)
        c.actions.append(.notify(notice))
    }

    private mutating func scheduleWakeUp(_ c: inout Context) {
        var next = nextDeadline
        if let deadline = next, deadline <= c.now { next = nil }  // due but blocked (brake): the release wakes it
        guard next != scheduledWakeUp else { return }
        scheduledWakeUp = next
        if let next { c.actions.append(.scheduleWakeUp(at: next)) }
    }

    // MARK: Steps

    /// Takes `step` now if nothing stops it; otherwise leaves the incident waiting in the right phase.
    private mutating func take(_ step: RecoveryStep, by initiator: Initiator, _ c: inout Context) {
        guard var incident else { return }
        if initiator == .automatic {
            if let stopped = incident.automationStopped {
                incident.phase = .stopped(stopped)
                self.incident = incident
                return
            }
            if step == .notifyOnly { return stop(.ladderExhausted, &c) }
            if settings.quarantined { return stop(.quarantined, &c) }
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
                notice.detail = "\(target) requires approval for \(step.rawValue); without approval by \(TimeText.iso(deadline)) nothing is done"
                notice.commands = [RecoveryCtl.approve(target), RecoveryCtl.ack(target)]
                c.actions.append(.notify(notice))
                return
            }
        }
        guard let destination = destinationRegion(for: step) else {
            return stop(.humanNeeded("no DR region is configured for \(target), so it cannot fail over"), &c)
        }
        let key = ActionRequest.key(target: target, incidentId: incident.id, step: step)
        let deadline = c.now.addingTimeInterval(settings.verificationWindow(for: step))
        let request = ActionRequest(
            idempotencyKey: key, target: target, incidentId: incident.id, step: step,
            instanceId: currentInstance.id, region: currentInstance.region, destinationRegion: destination,
            elasticIpAllocationId: identity.elasticIpAllocationId, requestedAt: c.now, deadline: deadline,
            requestedBy: initiator.person)
        incident.stepsRequested.append(step)
        incident.phase = .inProgress(StepAttempt(
            step: step, idempotencyKey: key, requestedAt: c.now, requestedBy: initiator.person, deadline: deadline,
            succeededAt: nil))
        incident.hold = nil
        self.incident = incident
        requestedKeys.append(key)
        if requestedKeys.count > Self.requestMemory { requestedKeys.removeFirst(requestedKeys.count - Self.requestMemory) }

        c.actions.append(.requestAction(request))
        c.actions.append(.reportToFleet(.destructiveActionRequested(target: target, idempotencyKey: key)))
        var notice = baseNotice(.actionStarted, id: "\(incident.id):action_started:\(step.rawValue)", c)
        notice.step = step
        let next = nextUnrequested(after: step, in: incident)
        notice.nextStep = next
        notice.nextStepAt = deadline
        var detail = "\(step.rawValue) of \(currentInstance)"
        if step == .failover { detail += " into \(destination)" }
        switch initiator {
        case .automatic: detail += " (automatic)"
        case .approval(let by): detail += " (approved by \(by))"
        case .manual(let by): detail += " (run by \(by))"
        }
        detail += "; if \(target) is not back by \(TimeText.iso(deadline)): \(next == .notifyOnly || incident.automationStopped != nil ? "no further automatic step" : next.rawValue)"
        notice.detail = detail
        notice.commands = [RecoveryCtl.ack(target)]
        c.actions.append(.notify(notice))
    }

    private mutating func escalate(from attempt: StepAttempt, kind: NotificationKind, detail: String, _ c: inout Context) {
        guard var incident else { return }
        let next = nextUnrequested(after: attempt.step, in: incident)
        var notice = baseNotice(kind, id: "\(incident.id):\(kind.rawValue):\(attempt.step.rawValue)", c)
        notice.step = attempt.step
        if let stopped = incident.automationStopped {
            incident.phase = .stopped(stopped)
            self.incident = incident
            notice.nextStep = .notifyOnly
            notice.detail = "\(detail); automation stays stopped for this incident (\(stopped))"
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
        notice.detail = detail
        notice.commands = next == .notifyOnly ? [RecoveryCtl.ack(target)] : [RecoveryCtl.ack(target), RecoveryCtl.hold(target, until: c.now.addingTimeInterval(3600))]
        c.actions.append(.notify(notice))
        take(next, by: .automatic, &c)
    }

    private mutating func stop(_ reason: StopReason, _ c: inout Context) {
        guard var incident else { return }
        incident.phase = .stopped(reason)
        incident.automationStopped = reason
        self.incident = incident
        var notice = baseNotice(.humanNeeded, id: "\(incident.id):human_needed", c)
        notice.nextStep = .notifyOnly
        notice.blockedBy = reason == .quarantined ? .quarantine : nil
        let tried = incident.stepsRequested.isEmpty ? "" : " (tried: \(incident.stepsRequested.map(\.rawValue).joined(separator: ", ")))"
        notice.detail = "automation stopped for incident \(incident.id)\(tried): \(reason). \(target) is still down; a person must act."
        notice.commands = (reason == .quarantined ? [] : manualCommands(incident)) + [RecoveryCtl.ack(target)]
        c.actions.append(.notify(notice))
    }

    // MARK: Operator commands

    private mutating func onCommand(id: String, _ command: OperatorCommand, _ c: inout Context) {
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

    // MARK: Helpers

    private func isHeld(_ incident: Incident, _ now: Date) -> Bool {
        switch incident.hold {
        case .acknowledged?: true
        case .until(let end, _)?: now < end
        case nil: false
        }
    }

    private func destinationRegion(for step: RecoveryStep) -> String? {
        step == .failover ? identity.failoverRegion(from: currentInstance.region) : currentInstance.region
    }

    private func nextUnrequested(after step: RecoveryStep, in incident: Incident) -> RecoveryStep {
        var next = step.next
        while next != .notifyOnly && incident.stepsRequested.contains(next) { next = next.next }
        return next
    }

    /// When `step`, due at `notBefore`, will run by itself, or what blocks it.
    private func plan(_ step: RecoveryStep, notBefore: Date, _ c: Context) -> (at: Date?, blocker: StepBlocker?, respondBy: Date?) {
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
    private func responseCommands(after time: Date) -> [String] {
        [RecoveryCtl.ack(target), RecoveryCtl.approve(target),
         RecoveryCtl.hold(target, until: time.addingTimeInterval(3600)), RecoveryCtl.resume(target)]
    }

    /// The step commands not yet used in the incident.
    private func manualCommands(_ incident: Incident) -> [String] {
        [RecoveryStep.restart, .reprovision, .failover]
            .filter { !incident.stepsRequested.contains($0) }
            .filter { $0 != .failover || destinationRegion(for: .failover) != nil }
            .compactMap { RecoveryCtl.run($0, target) }
    }

    private func baseNotice(_ kind: NotificationKind, id: String, _ c: Context) -> Notice {
        Notice(
            id: id, kind: kind, at: c.now, target: target, instanceId: currentInstance.id,
            region: currentInstance.region, incidentId: incident?.id, outageCount: incident?.outageNumber)
    }
}
