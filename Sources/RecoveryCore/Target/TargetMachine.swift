import Foundation

/// Everything the fleet decides about one target, in one value: the ladder (`EscalationMachine`), the
/// repair plan (`PredictiveRepair`), the last observation and the messages still to publish (the
/// outbox). It is the parent of the two machines (the pattern of async-http-client's connection pool):
/// every event for the target goes through `handle`, which routes it, keeps the two in step and returns
/// what the worker must do as one `Action` type. Pure: no I/O, time comes in the `Context`.
///
/// The decision worker loads it, calls `handle`, stages the publishes in the outbox, stores it with a
/// compare-and-set and then runs the actions (docs/architecture.md). Its stored form (`StateCodec`) lives
/// here too, so recoveryctl reads a target's state without importing a worker.
public struct TargetMachine: Codable, Sendable {
    public var ladder: EscalationMachine
    /// A repair planned from a high-confidence prediction, and the quiet periods; nil when neither.
    public var repair: PredictiveRepair?
    /// The last observation handled (for `recoveryctl status`: the ladder keeps streaks, not times).
    public var lastProbe: LastProbe?
    /// Messages stored with this state but not yet published.
    public var outbox: [OutboxItem]

    public init(
        ladder: EscalationMachine, repair: PredictiveRepair? = nil, lastProbe: LastProbe? = nil,
        outbox: [OutboxItem] = []
    ) {
        self.ladder = ladder
        self.repair = repair
        self.lastProbe = lastProbe
        self.outbox = outbox
    }

    enum CodingKeys: String, CodingKey {
        case ladder = "machine"
        case outbox, repair
        case lastProbe = "last_probe"
    }

    public var target: String { ladder.target }

    public enum Event: Sendable, Equatable {
        /// An observation, an actuator outcome, an operator command or a tick.
        case ladder(EscalationMachine.Event)
        /// A high-confidence prediction.
        case trouble(PredictiveRepair.Trouble)
        /// `quarantine`, `unquarantine` or `repair_volume`.
        case repairCommand(RepairCommand)
    }

    /// An operator's repair command, already checked to come from an operator.
    public struct RepairCommand: Sendable, Equatable {
        public var id: String
        public var action: RepairRequest.Action
        /// The command's name as sent (`quarantine`), for the answer.
        public var name: String
        public var `operator`: String
        public var reason: String?

        public init(id: String, action: RepairRequest.Action, name: String, operator: String, reason: String? = nil) {
            self.id = id
            self.action = action
            self.name = name
            self.operator = `operator`
            self.reason = reason
        }
    }

    /// What the worker knows besides the stored state.
    public struct Context: Sendable {
        public var now: Date
        public var brakeEngaged: Bool
        /// Discovery's current settings and identity of the target; nil keeps the stored ones.
        public var settings: TargetSettings?
        public var identity: TargetIdentity?
        /// A fresh unique string: the id of a state-change message, if this event makes one.
        public var uniqueId: String

        public init(
            now: Date, brakeEngaged: Bool, settings: TargetSettings? = nil, identity: TargetIdentity? = nil,
            uniqueId: String
        ) {
            self.now = now
            self.brakeEngaged = brakeEngaged
            self.settings = settings
            self.identity = identity
            self.uniqueId = uniqueId
        }
    }

    public enum Action: Sendable, Equatable {
        /// Publish this message (the worker stages it in the outbox first, in the same compare-and-set).
        case publish(FleetMessage)
        /// Apply this event to the fleet brake.
        case reportToFleet(FleetBrake.Event)
        /// Deliver a tick at this time; nil cancels any wake-up. Every `handle` returns exactly one.
        case schedule(at: Date?)
        /// Refuse the event with this reason (dead-letter it) once the rest is done.
        case refuse(String)
        /// Set the abort flag of the running step `key` (`StepAbort.flagKey`, kept `StepAbort.flagLifetime`).
        /// Written before the state is stored: see `DecisionWorker.apply`.
        case abortStep(key: String, StepAbort)
    }

    /// How long the actuator has to carry out a quarantine or volume repair: longer than it may wait for
    /// the target's lock (the actuator's lock wait limit, 20 minutes by default) plus the work itself.
    public static let repairCommandDeadline: TimeInterval = 3600

    /// Handles one event. The messages come in the order they must be published: the repair plan's, the
    /// state change for history, then the ladder's.
    public mutating func handle(_ event: Event, _ c: Context) -> [Action] {
        if let settings = c.settings { ladder.settings = settings }
        if var identity = c.identity {
            identity.name = ladder.identity.name
            ladder.identity = identity
        }
        let before = TargetStateChange.Summary(ladder)
        var plan = repair ?? PredictiveRepair()
        var repairActions: [PredictiveRepair.Action] = []
        var actions: [Action] = []
        switch event {
        case .trouble(let trouble):
            repairActions = plan.handle(.trouble(trouble), repairContext(c))
        case .repairCommand(let command):
            actions = onRepairCommand(command, c)
        case .ladder(.command(let id, let command)) where plan.takes(command, incidentOpen: ladder.incident != nil):
            // ack / approve / hold / resume while a repair is planned and no outage is open. The ladder's
            // memory of handled ids drops a redelivery, whoever handled it first.
            if ladder.remember(eventId: id) { repairActions = plan.handle(.command(id: id, command), repairContext(c)) }
        case .ladder(.actionOutcome(_, let outcome)) where outcome.repair != nil:
            repairActions = plan.handle(.outcome(outcome), repairContext(c))
        case .ladder(let ladderEvent):
            if case .probe(_, let result) = ladderEvent {
                lastProbe = LastProbe(
                    at: c.now, healthy: result.healthy, prober: result.prober,
                    instanceId: result.instanceId, detail: result.detail)
            }
            actions = ladder.handle(ladderEvent, now: c.now, brakeEngaged: c.brakeEngaged).compactMap(Self.action)
            if case .command(_, let command) = ladderEvent, command.name == .reset,
                let notice = plan.cancel(because: .reset(by: command.operator), repairContext(c))
            {
                repairActions.append(.notify(notice))
            }
            // After the ladder: an outage that just opened cancels a planned repair.
            repairActions += plan.handle(.tick, repairContext(c))
        }
        repair = plan.plan == nil && plan.quietUntil.isEmpty ? nil : plan
        var result = repairActions.map { repairAction($0, c) }
        if let change = TargetStateChange.between(before, TargetStateChange.Summary(ladder)) {
            result.append(.publish(.stateChange(change, id: "\(target):state:\(c.uniqueId)", target: target)))
        }
        result += actions
        result.append(.schedule(at: [ladder.nextDeadline, repair?.nextDeadline].compactMap { $0 }.min()))
        return result
    }

    private func repairContext(_ c: Context) -> PredictiveRepair.Context {
        PredictiveRepair.Context(
            now: c.now, target: target, instance: ladder.currentInstance, settings: ladder.settings,
            incidentOpen: ladder.incident != nil, brakeEngaged: c.brakeEngaged)
    }

    private static func action(_ ladderAction: EscalationMachine.Action) -> Action? {
        switch ladderAction {
        case .requestAction(let request): .publish(.actionRequest(request))
        case .notify(let notice), .rejectCommand(let notice): .publish(.notice(notice))
        case .reportToFleet(let event): .reportToFleet(event)
        case .scheduleWakeUp: nil  // `handle` schedules the earliest deadline of the ladder and the plan
        case .abortStep(let key, let abort): .abortStep(key: key, abort)
        }
    }

    private func repairAction(_ action: PredictiveRepair.Action, _ c: Context) -> Action {
        switch action {
        case let .requestRepair(_, id, document, reason, instance, deadline, requestedBy):
            .publish(
                .actionRequest(
                    .repair(
                        RepairRequest(.ssm(document: document, parameters: [:]), id: id, reason: reason),
                        target: target,
                        instanceId: instance.id, region: instance.region, requestedAt: c.now, deadline: deadline,
                        requestedBy: requestedBy)))
        case .notify(let notice):
            .publish(.notice(notice))
        }
    }

    /// `quarantine` / `unquarantine` / `repair_volume`: a repair request for the target's current
    /// instance and a `command_accepted` notice answering the command.
    /// - quarantine: the actuator tags the instance and sets the table flag; discovery then reports the
    ///   target quarantined and the ladder takes no step on it (docs/escalation.md, "Quarantine"). Not a
    ///   ladder event: a quarantine must also work while an incident is stopped or held.
    /// - repair_volume: the EBS root-volume swap (docs/actuator.md, "Repairs"). Destructive, so refused,
    ///   with a `command_rejected` notice, while the target is quarantined, the fleet brake is engaged or
    ///   an open incident's ladder may still act (the swap would hold the target's lock for minutes and
    ///   the ladder's next step would land on it).
    private mutating func onRepairCommand(_ command: RepairCommand, _ c: Context) -> [Action] {
        if case .ssm = command.action { return [.refuse("ssm repairs come from predictions, not from a command")] }
        // A redelivered command was answered already.
        guard ladder.remember(eventId: command.id) else { return [] }
        let instance = ladder.currentInstance
        let ref = CommandRef(id: command.id, name: command.name, operator: command.operator)
        if case .ebsRepair = command.action {
            let why: NoticeReason? =
                ladder.settings.quarantined
                ? .volumeRepairQuarantined(target: target)
                : c.brakeEngaged
                    ? .volumeRepairBraked
                    : ladder.mayAct(at: c.now)
                        ? .volumeRepairLadderMayAct(target: target, incident: ladder.incident!.id)
                        : nil
            if let why {
                let notice = Notice(
                    id: "\(command.id):command_rejected", kind: .commandRejected, at: c.now, target: target,
                    instanceId: instance.id, region: instance.region, command: ref, reason: why)
                return [.publish(.notice(notice)), .refuse(why.text)]
            }
        }
        let request = ActionRequest.repair(
            RepairRequest(command.action, id: command.id, reason: command.reason), target: target,
            incidentId: ladder.incident?.id, instanceId: instance.id, region: instance.region, requestedAt: c.now,
            deadline: c.now.addingTimeInterval(Self.repairCommandDeadline), requestedBy: command.operator)
        return [
            .publish(.actionRequest(request)),
            .publish(
                .notice(
                    Notice(
                        id: "\(command.id):command_accepted", kind: .commandAccepted, at: c.now, target: target,
                        instanceId: instance.id, region: instance.region, incidentId: request.incidentId, command: ref,
                        reason: .repairRequested(command: command.name, target: target, key: request.idempotencyKey)))),
        ]
    }
}
