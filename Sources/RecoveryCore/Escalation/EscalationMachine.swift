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
    /// The version of the stored JSON this build writes and the newest it reads. 2: `recentEventIds` holds
    /// fingerprints in one string (`EventIdMemory`); a worker that reads only 1 refuses it with "upgrade the worker", so
    /// the decision tier is upgraded all at once (docs/operations.md, "Upgrading").
    public static let currentSchemaVersion = 2
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
        /// Set by `recoveryctl abort` (or an aborted outcome): who stopped the step in progress, when, why.
        /// Absent in states stored before aborts existed; an older replica ignores it, and the stop reason
        /// (`humanNeeded`, naming who aborted) is readable by every version.
        public var aborted: StepAbort? = nil
        /// The end of the maintenance window that holds the ladder (EscalationMachine+Maintenance).
        public var maintenanceUntil: Date? = nil
        /// Declared during a window: its `outage_declared` notice waits here for the window's end.
        public var deferredNotice: Notice? = nil
        /// A flapping hold whose target stayed down for `flap_window` was told so (once).
        public var flapReminded: Bool? = nil
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

    /// Why automation stopped for an incident. Its words (`description`) are in NoticeReason+Text.swift,
    /// with the rest of the notices' wording.
    public enum StopReason: Codable, Sendable, Equatable {
        /// Restart, re-provision and fail-over were all used (or the outage count is 4 or more).
        case ladderExhausted
        /// The actuator (or the configuration) needs a person, e.g. no snapshot or no DR region.
        case humanNeeded(String)
        /// The target requires approval and none came in time.
        case approvalTimedOut
        /// The target is quarantined: notify only.
        case quarantined
        /// The target flaps: this is the `incidents`-th incident within `window` seconds, the others having
        /// closed by themselves. Held for a person instead of climbing the ladder (EscalationMachine+Flapping).
        case flapping(incidents: Int, window: TimeInterval)
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
        /// Every prober that checked the current instance within `proberWindow`, and when it last did
        /// (for the automatic quorum). Absent in states stored before it was added.
        public var seenProbers: [String: Date]?
        /// The last `failure_window` checks, newest last, for the windowed rule (absent while it is off).
        public var window: [WindowCheck]?
        /// When the current run of healthy checks began (for a flapping target's stable period).
        public var healthySince: Date?
        /// When the current run of failed checks began (a flapping hold still down: EscalationMachine+Checks).
        public var downSince: Date?
    }

    /// The instance the target ran on before a re-provision moved it, watched for "original instance back".
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
        /// Set the abort flag of the step with this idempotency key (`StepAbort.flagKey`), which the actuator
        /// reads at every sub-step boundary. The worker writes it before it stores the state (docs/actuator.md).
        case abortStep(key: String, StepAbort)
    }

    // MARK: Stored properties

    /// Set to the current one as a stored state is read (`StateCodec`): it is written back in this form.
    public internal(set) var schemaVersion: Int
    /// Who the target is. The worker may refresh it from configuration (a new DR region, say), but the
    /// `name` must stay the same: it is the state's key.
    public var identity: TargetIdentity
    /// The target's settings; the worker sets them from configuration before each `handle`.
    public var settings: TargetSettings
    public internal(set) var state: State
    /// The instance that serves the target now; changes when a re-provision or fail-over succeeds.
    public internal(set) var currentInstance: InstanceRef
    public internal(set) var health: HealthStreaks
    /// When each outage within the count window was declared. The outage count is how many are younger
    /// than the window, so expiry needs no timer and no Redis TTL.
    public internal(set) var outageTimes: [Date]
    public internal(set) var displaced: DisplacedInstance?
    public internal(set) var lastIncidentId: String?
    /// Incidents declared for this target so far (it disambiguates two incident ids in one second).
    public internal(set) var incidentCount: Int
    /// Idempotency keys of requested steps, newest last (bounded by `requestMemory`).
    public internal(set) var requestedKeys: [String]
    /// The key of the step whose outcome last moved the target (absent in states stored before it).
    public internal(set) var lastMoveKey: String?
    /// Discovery finds the target on another instance than `currentInstance` (EscalationMachine+Discovery).
    public internal(set) var servedElsewhere: Sighting?
    /// Instances the target moved away from, newest last: discovery is never followed back to one.
    public internal(set) var leftInstances: [String]?
    /// Ids of recently handled events, newest last (bounded by `eventMemory`).
    public internal(set) var recentEventIds: EventIdMemory
    /// The last wake-up asked for, so that it is asked for once.
    public internal(set) var scheduledWakeUp: Date?
    /// When incidents that closed by themselves (no step requested) closed, within `flap_window`.
    public internal(set) var selfRecoveries: [Date]?

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
        self.recentEventIds = EventIdMemory()
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

    // MARK: Handling

    /// Records `id` as handled; false when it was handled before. `handle` calls it for every event with
    /// an id; the decision worker also calls it for a command the target's repair plan takes instead, so
    /// a redelivery of that command is dropped the same way, whoever handled it first.
    public mutating func remember(eventId id: String) -> Bool {
        recentEventIds.insert(id, limit: Self.eventMemory)
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

    struct Context {
        let now: Date
        let brakeEngaged: Bool
        var actions: [Action] = []
    }

    enum Initiator: Equatable {
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
        if let discovered = probe.discovered { followDiscovery(discovered, &c) }
        let instanceId = probe.instanceId ?? currentInstance.id
        guard instanceId == currentInstance.id else {
            watchDisplaced(instanceId: instanceId, healthy: probe.healthy, &c)
            return
        }
        var seen = (health.seenProbers ?? [:]).filter { c.now.timeIntervalSince($0.value) < proberWindow }
        seen[probe.prober] = c.now
        health.seenProbers = seen
        if probe.healthy {
            if health.successes == 0 { health.healthySince = c.now }
            health.successes += 1
            health.failures = 0
            health.failingProbers = []
        } else {
            health.healthySince = nil
            if health.failures == 0 { health.downSince = c.now }
            health.failures += 1
            health.successes = 0
            if !health.failingProbers.contains(probe.prober) {
                health.failingProbers.append(probe.prober)
                health.failingProbers.sort()
            }
        }
        recordInWindow(probe)
        switch state {
        case .monitoring:
            let enoughFailures = health.failures >= max(1, settings.failureThreshold)
            let quorate = health.failingProbers.count >= requiredProbers(at: c.now)
            if !probe.healthy && ((enoughFailures && quorate) || windowDeclares(at: c.now)) { declare(probe, &c) }
        case .incident:
            if probe.healthy && health.successes >= max(1, settings.recoveryThreshold) && !heldForFlapping(at: c.now) {
                recover(&c)
            }
            if !probe.healthy { remindIfDownWhileFlapping(&c) }
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
            notice.reason = .originalInstanceBack(target: target, original: watched.instance, current: currentInstance)
            c.actions.append(.notify(notice))
        }
        displaced = watched
    }

    private mutating func declare(_ probe: ProbeResult, _ c: inout Context) {
        defer { health.window = nil }  // the failures that declared this one must not declare the next
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
        } else if let flapping = flapping(at: c.now) {
            stop = flapping
        } else if step == .notifyOnly {
            stop = .ladderExhausted
        } else if settings.requiresApproval {
            incident.phase = .awaitingApproval(step: step, deadline: c.now.addingTimeInterval(settings.approvalTimeout))
        }
        if let stop {
            incident.phase = .stopped(stop)
            incident.automationStopped = stop
        }
        let maintenanceEnd = maintenanceEnd(at: c.now)
        if let maintenanceEnd, case .awaitingApproval = incident.phase {
            // Approval is asked at the window's end, when the deadline can be met.
            incident.phase = .pending(step: step, notBefore: c.now.addingTimeInterval(settings.gracePeriod))
        }
        self.incident = incident
        // The brake counts the outage once it is paged: one kept for a maintenance window's end is not yet
        // (a fleet-wide window with many targets down must not engage the brake and page its alert).
        if maintenanceEnd == nil { c.actions.append(.reportToFleet(.outageOpened(target: target))) }

        var notice = baseNotice(.outageDeclared, id: "\(id):outage_declared", c)
        var noStep: NoticeReason.NoStep?
        switch stop {
        case .quarantined?:
            notice.nextStep = .notifyOnly
            notice.blockedBy = .quarantine
            noStep = .quarantined
            notice.commands = [RecoveryCtl.ack(target)]
        case .ladderExhausted?, .flapping?:
            notice.nextStep = .notifyOnly
            noStep = stop == .ladderExhausted ? .ladderExhausted : .flapping
            notice.commands = manualCommands(incident) + [RecoveryCtl.ack(target)]
        default:
            let plan = plan(step, notBefore: c.now.addingTimeInterval(settings.gracePeriod), c)
            notice.nextStep = step
            notice.nextStepAt = plan.at
            notice.blockedBy = plan.blocker
            if case .awaitingApproval(_, let deadline) = incident.phase { notice.respondBy = deadline }
            notice.commands = responseCommands(after: plan.at ?? c.now)
        }
        let (failures, probers, ofLast) = declaringFailures()
        notice.reason = .outageDeclared(
            target: target, failures: failures, probers: probers, lastCheck: probe.detail, outageCount: count,
            window: settings.outageCountWindow, noStep: noStep, ofLast: ofLast, flapping: stop?.flapping)
        if let maintenanceEnd { return holdNotice(notice, until: maintenanceEnd) }
        c.actions.append(.notify(notice))
    }

    private mutating func recover(_ c: inout Context) {
        guard let incident else { return }
        var fixedBy: RecoveryStep?
        if case .inProgress(let attempt) = incident.phase { fixedBy = attempt.step }
        health.window = nil
        if incident.deferredNotice != nil, incident.stepsRequested.isEmpty {
            // Declared and over within a maintenance window (no step taken): nobody is paged, and the
            // brake never counted it.
            lastIncidentId = incident.id
            state = .monitoring
            return
        }
        var notice = baseNotice(.recovered, id: "\(incident.id):recovered", c)
        notice.fixedBy = fixedBy
        notice.stepsTaken = incident.stepsRequested
        let took = c.now.timeIntervalSince(incident.declaredAt)
        if let fixedBy {
            notice.reason = .recoveredAfterStep(target: target, step: fixedBy, after: took)
        } else if incident.stepsRequested.isEmpty {
            let inGrace = c.now < incident.declaredAt.addingTimeInterval(settings.gracePeriod)
            notice.reason = .recoveredByItself(target: target, inGrace: inGrace, after: took)
        } else {
            notice.reason = .recoveredAfterSteps(target: target, steps: incident.stepsRequested, after: took)
        }
        c.actions.append(.notify(notice))
        c.actions.append(.reportToFleet(.outageClosed(target: target)))
        noteSelfRecovery(incident, at: c.now)
        lastIncidentId = incident.id
        state = .monitoring
    }

    // MARK: Actuator outcomes

    private mutating func onOutcome(_ outcome: ActionOutcome, _ c: inout Context) {
        // Only outcomes of steps this machine requested count; anything else is a stray.
        guard requestedKeys.contains(outcome.idempotencyKey) else { return }
        var moved = false
        // An older step's outcome that arrives after a later step has moved the target (late, or a dead
        // letter replayed by hand) must not move it back onto an instance that later step has left. A late
        // outcome whose later steps moved nothing is still news: that step did move the site.
        let laterStepMoved: Bool = {
            guard let last = lastMoveKey, let moved = requestedKeys.firstIndex(of: last),
                let this = requestedKeys.firstIndex(of: outcome.idempotencyKey)
            else { return false }
            return moved > this
        }()
        if outcome.status == .succeeded, let newId = outcome.instanceId, newId != currentInstance.id, !laterStepMoved {
            move(to: InstanceRef(id: newId, region: outcome.region ?? currentInstance.region))
            lastMoveKey = outcome.idempotencyKey
            moved = true
        }
        guard var incident, case .inProgress(var attempt) = incident.phase,
            attempt.idempotencyKey == outcome.idempotencyKey
        else {
            // A late outcome of a step the machine no longer waits for. Only a move is news.
            if moved {
                var notice = baseNotice(
                    .actionSucceeded, id: "\(outcome.incidentId):action_succeeded:\(outcome.step.rawValue)", c)
                notice.incidentId = outcome.incidentId
                notice.step = outcome.step
                notice.reason = .lateResult(
                    target: target, step: outcome.step, incident: outcome.incidentId, current: currentInstance)
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
            // Automation stopped (an abort that came after the last sub-step, a step by hand): nothing follows.
            let next = incident.automationStopped != nil ? .notifyOnly : nextUnrequested(after: step, in: incident)
            notice.nextStep = next
            notice.nextStepAt = attempt.deadline
            notice.reason = .stepFinished(
                target: target, step: step, movedTo: moved ? currentInstance : nil, checks: settings.recoveryThreshold,
                deadline: attempt.deadline, next: next)
            c.actions.append(.notify(notice))
        case .failed:
            escalate(from: attempt, kind: .actionFailed, &c) {
                .stepFailed(step: step, reason: outcome.reason, stillStopped: $0)
            }
        case .humanNeeded where outcome.aborted != nil:
            stepAborted(attempt, outcome, &c)
        case .humanNeeded:
            stop(.humanNeeded(NoticeReason.cannotRun(step, outcome.reason)), &c)
        }
    }
}
