import Foundation

/// What the decision worker does with a high-confidence prediction (docs/prediction.md): tell the
/// admins, leave them the grace period (or wait for approval), then ask the actuator for the matching
/// repair — the ladder's rules, applied before the outage instead of after it. Pure: no I/O, no clock.
///
///     prediction ──notice──▶ pending(grace) ──▶ in progress ──outcome──▶ done (quiet period)
///                   │ requires_approval: awaiting approval ──approve──▶ in progress
///                   └ ack: cancelled          hold --until: pending until then
///
/// - Only `ssm:<document>` repairs run (`ssm:disk-cleanup` for a disk about to fill,
///   `ssm:restart-services` for a memory leak). Any other suggestion (`restart`, `notify`) is told,
///   with the command to run by hand, and nothing runs: a reboot before an outage is a person's call.
/// - While an incident is open the ladder owns the target: predictions are left to the recorder.
/// - A quarantined target, or the fleet brake, is told and nothing runs.
/// - After a prediction of a kind was handled (repaired, cancelled, told), the same kind is quiet for
///   `quietPeriod`, so an hourly predictor does not repeat itself.
public struct PredictiveRepair: Codable, Sendable, Equatable {
    /// A high-confidence prediction, as the decision worker hands it over.
    public struct Trouble: Sendable, Equatable {
        /// The prediction's message id: the repair's id, so a redelivered prediction plans nothing twice.
        public var id: String
        public var kind: String
        public var confidence: Double
        /// The predictor's suggestion: `ssm:<document>`, `restart` or `notify`.
        public var repair: String
        public var detail: String
        /// When the trouble is expected (from, to).
        public var window: ClosedRange<Date>

        public init(
            id: String, kind: String, confidence: Double, repair: String, detail: String, window: ClosedRange<Date>
        ) {
            self.id = id
            self.kind = kind
            self.confidence = confidence
            self.repair = repair
            self.detail = detail
            self.window = window
        }
    }

    public enum Phase: Codable, Sendable, Equatable {
        case pending(notBefore: Date)
        case awaitingApproval(deadline: Date)
        case inProgress(key: String, deadline: Date)
    }

    public struct Plan: Codable, Sendable, Equatable {
        public var id: String
        public var kind: String
        /// The SSM document's short name (`disk-cleanup`).
        public var document: String
        public var detail: String
        public var phase: Phase
        /// Set by `approve`: who let it run.
        public var approvedBy: String?

        public var isRunning: Bool {
            if case .inProgress = phase { return true }
            return false
        }
    }

    /// What the worker must do.
    public enum Action: Sendable, Equatable {
        /// Publish a repair request: run `document` on `instance`, idempotency key `key`.
        case requestRepair(
            key: String, id: String, document: String, reason: String, instance: InstanceRef,
            deadline: Date, requestedBy: String?)
        case notify(Notice)
    }

    public enum Input: Sendable, Equatable {
        case trouble(Trouble)
        /// The actuator's outcome of a repair this plan requested.
        case outcome(ActionOutcome)
        case command(id: String, OperatorCommand)
        case tick
    }

    /// What the worker knows about the target at the time.
    public struct Context: Sendable {
        public var now: Date
        public var target: String
        public var instance: InstanceRef
        public var settings: TargetSettings
        public var incidentOpen: Bool
        public var brakeEngaged: Bool

        public init(
            now: Date, target: String, instance: InstanceRef, settings: TargetSettings, incidentOpen: Bool,
            brakeEngaged: Bool
        ) {
            self.now = now
            self.target = target
            self.instance = instance
            self.settings = settings
            self.incidentOpen = incidentOpen
            self.brakeEngaged = brakeEngaged
        }
    }

    public static let quietPeriod: TimeInterval = 6 * 3600
    /// How long the actuator gets for an SSM repair before the plan gives up on it.
    public static let repairTimeout: TimeInterval = 1800

    public var plan: Plan?
    /// Per prediction kind: no new notice or plan before this time.
    public var quietUntil: [String: Date] = [:]

    public init() {}

    /// The idempotency key of a repair: `<target>/repair/ssm/<id>` (the actuator's `RepairRequest.key`).
    public static func key(target: String, id: String) -> String {
        RepairRequest.key(target: target, kind: .ssm, id: id)
    }

    /// When the worker must call `handle(.tick)` next.
    public var nextDeadline: Date? {
        switch plan?.phase {
        case .pending(let at)?: at
        case .awaitingApproval(let at)?: at
        case .inProgress(_, let at)?: at
        case nil: nil
        }
    }

    /// Whether `command` is for this plan rather than the escalation machine: ack, approve, hold and
    /// resume while a repair is planned and no incident is open. (`reset` is the machine's — it clears
    /// the outage count — and also cancels a planned repair: `cancel`.)
    public func takes(_ command: OperatorCommand, incidentOpen: Bool) -> Bool {
        guard plan != nil, !incidentOpen else { return false }
        return [.ack, .approve, .hold, .resume].contains(command.name)
    }

    /// Cancels a planned (not running) repair, e.g. after `reset`. Returns the notice, nil when nothing
    /// was planned.
    public mutating func cancel(because why: NoticeReason.RepairCancellation, _ c: Context) -> Notice? {
        guard let plan, !plan.isRunning else { return nil }
        self.plan = nil
        return cancelled(plan, why, c)
    }

    public mutating func handle(_ input: Input, _ c: Context) -> [Action] {
        quietUntil = quietUntil.filter { $0.value > c.now }
        switch input {
        case .trouble(let t): return onTrouble(t, c)
        case .outcome(let o): return onOutcome(o, c)
        case .command(let id, let command): return onCommand(id: id, command, c)
        case .tick: return onTick(c)
        }
    }

    // MARK: Events

    private mutating func onTrouble(_ t: Trouble, _ c: Context) -> [Action] {
        guard !c.incidentOpen else { return [] }
        if let plan, plan.kind == t.kind || plan.id == t.id { return [] }
        if quietUntil[t.kind] != nil { return [] }
        var notice = base(kind: .troublePredicted, id: "\(t.id):predicted", c)
        func predicted(_ outlook: NoticeReason.Outlook) -> NoticeReason {
            .troublePredicted(
                prediction: t.detail, confidence: t.confidence, from: t.window.lowerBound,
                to: t.window.upperBound, outlook: outlook)
        }
        notice.respondBy = t.window.lowerBound
        let document = t.repair.hasPrefix("ssm:") ? String(t.repair.dropFirst(4)) : nil
        guard let document, !document.isEmpty, plan == nil else {
            // Told only: no repair suggested, or another kind's repair is already planned.
            notice.reason = predicted(
                plan != nil ? .anotherPlanned : t.repair == "restart" ? .restartSuggested : .toldOnly)
            notice.commands = t.repair == "restart" ? [RecoveryCtl.run(.restart, c.target)].compactMap { $0 } : []
            quietUntil[t.kind] = c.now.addingTimeInterval(Self.quietPeriod)
            return [.notify(notice)]
        }
        notice.repair = "ssm \(document)"
        if c.settings.quarantined {
            notice.blockedBy = .quarantine
            notice.reason = predicted(.quarantined)
            quietUntil[t.kind] = c.now.addingTimeInterval(Self.quietPeriod)
            return [.notify(notice)]
        }
        notice.reason = predicted(.planned)
        var phase = Phase.pending(notBefore: c.now.addingTimeInterval(c.settings.gracePeriod))
        if c.settings.requiresApproval {
            let deadline = c.now.addingTimeInterval(c.settings.approvalTimeout)
            phase = .awaitingApproval(deadline: deadline)
            notice.blockedBy = .approval
            notice.respondBy = deadline
            notice.commands = [RecoveryCtl.approve(c.target), RecoveryCtl.ack(c.target)]
        } else {
            notice.nextStepAt = c.now.addingTimeInterval(c.settings.gracePeriod)
            if c.brakeEngaged { notice.blockedBy = .brake }
            notice.commands = [
                RecoveryCtl.ack(c.target), RecoveryCtl.approve(c.target),
                RecoveryCtl.hold(c.target, until: c.now.addingTimeInterval(c.settings.gracePeriod + 3600)),
            ]
        }
        plan = Plan(id: t.id, kind: t.kind, document: document, detail: t.detail, phase: phase)
        return [.notify(notice)]
    }

    private mutating func onTick(_ c: Context) -> [Action] {
        guard var plan else { return [] }
        if c.incidentOpen, !plan.isRunning {
            // The outage came first: the ladder owns the target now.
            self.plan = nil
            return [.notify(cancelled(plan, .outageDeclared, c))]
        }
        switch plan.phase {
        case .pending(let notBefore):
            guard c.now >= notBefore else { return [] }
            if c.settings.quarantined {
                self.plan = nil
                quietUntil[plan.kind] = c.now.addingTimeInterval(Self.quietPeriod)
                return [.notify(cancelled(plan, .quarantined, c))]
            }
            if c.brakeEngaged {
                // Re-checked every minute until the brake is released; the notice said so.
                plan.phase = .pending(notBefore: c.now.addingTimeInterval(60))
                self.plan = plan
                return []
            }
            if let end = MaintenanceWindow.activeEnd(of: c.settings.maintenance, at: c.now) {
                // A maintenance window: no automatic repair runs; it is due again at the window's end.
                plan.phase = .pending(notBefore: end)
                self.plan = plan
                return []
            }
            if c.settings.requiresApproval && plan.approvedBy == nil {
                // The target came to require approval after the plan was made: nothing runs without it.
                let deadline = c.now.addingTimeInterval(c.settings.approvalTimeout)
                plan.phase = .awaitingApproval(deadline: deadline)
                self.plan = plan
                var n = base(kind: .troublePredicted, id: "\(plan.id):approval", c)
                n.repair = "ssm \(plan.document)"
                n.blockedBy = .approval
                n.respondBy = deadline
                n.reason = .repairAwaitsApproval(prediction: plan.detail)
                n.commands = [RecoveryCtl.approve(c.target), RecoveryCtl.ack(c.target)]
                return [.notify(n)]
            }
            return start(&plan, c, by: plan.approvedBy)
        case .awaitingApproval(let deadline):
            guard c.now >= deadline else { return [] }
            self.plan = nil
            quietUntil[plan.kind] = c.now.addingTimeInterval(Self.quietPeriod)
            return [.notify(cancelled(plan, .noApproval, c))]
        case .inProgress(_, let deadline):
            guard c.now >= deadline else { return [] }
            self.plan = nil
            quietUntil[plan.kind] = c.now.addingTimeInterval(Self.quietPeriod)
            return [.notify(done(.repairFailed, plan, .repairTimedOut(prediction: plan.detail), c))]
        }
    }

    private mutating func start(_ plan: inout Plan, _ c: Context, by: String?) -> [Action] {
        let key = Self.key(target: c.target, id: plan.id)
        let deadline = c.now.addingTimeInterval(Self.repairTimeout)
        plan.phase = .inProgress(key: key, deadline: deadline)
        self.plan = plan
        var notice = base(kind: .repairStarted, id: "\(plan.id):repair_started", c)
        notice.repair = "ssm \(plan.document)"
        notice.reason = .repairStarted(prediction: plan.detail, approvedBy: by)
        return [
            .requestRepair(
                key: key, id: plan.id, document: plan.document, reason: plan.detail, instance: c.instance,
                deadline: deadline, requestedBy: by),
            .notify(notice),
        ]
    }

    private mutating func onOutcome(_ o: ActionOutcome, _ c: Context) -> [Action] {
        guard let plan, case .inProgress(let key, _) = plan.phase, o.idempotencyKey == key else { return [] }
        self.plan = nil
        quietUntil[plan.kind] = c.now.addingTimeInterval(Self.quietPeriod)
        switch o.status {
        case .succeeded:
            return [
                .notify(
                    done(
                        .repairSucceeded, plan,
                        .repairSucceeded(prediction: plan.detail, document: plan.document, instanceId: c.instance.id), c
                    ))
            ]
        case .failed, .humanNeeded:
            return [.notify(done(.repairFailed, plan, .repairFailed(prediction: plan.detail, reason: o.reason), c))]
        }
    }

    private mutating func onCommand(id: String, _ command: OperatorCommand, _ c: Context) -> [Action] {
        guard var plan else { return [] }
        let ref = CommandRef(id: id, name: command.name.rawValue, operator: command.operator)
        func answer(_ kind: NotificationKind, _ reason: NoticeReason) -> Action {
            var n = base(kind: kind, id: "\(id):\(kind.rawValue)", c)
            n.command = ref
            n.repair = "ssm \(plan.document)"
            n.reason = reason
            return .notify(n)
        }
        if plan.isRunning, command.name != .reset {
            return [answer(.commandRejected, .repairRunning(document: plan.document))]
        }
        switch command.name {
        case .ack, .reset:
            self.plan = nil
            quietUntil[plan.kind] = c.now.addingTimeInterval(Self.quietPeriod)
            return [
                answer(
                    .commandAccepted,
                    .repairDropped(
                        document: plan.document, kind: plan.kind,
                        quietUntil: c.now.addingTimeInterval(Self.quietPeriod)))
            ]
        case .approve:
            plan.approvedBy = command.operator
            if c.settings.quarantined { return [answer(.commandRejected, .repairQuarantined)] }
            if c.brakeEngaged { return [answer(.commandRejected, .repairBraked)] }
            var actions = [answer(.commandAccepted, .repairRunsNow(document: plan.document))]
            actions = start(&plan, c, by: command.operator) + actions
            return actions
        case .hold:
            guard let until = command.until, until > c.now else {
                return [answer(.commandRejected, .repairHoldNeedsTime)]
            }
            if case .awaitingApproval(let deadline) = plan.phase {
                // A hold never stands in for the approval: the plan keeps waiting for it, at least until then.
                plan.phase = .awaitingApproval(deadline: max(deadline, until))
                self.plan = plan
                return [
                    answer(
                        .commandAccepted,
                        .repairStillAwaitsApproval(document: plan.document, until: max(deadline, until)))
                ]
            }
            plan.phase = .pending(notBefore: until)
            self.plan = plan
            return [answer(.commandAccepted, .repairHeld(document: plan.document, until: until))]
        case .resume:
            if case .awaitingApproval = plan.phase {
                return [answer(.commandRejected, .repairNotHeld(document: plan.document, target: c.target))]
            }
            plan.phase = .pending(notBefore: c.now)
            self.plan = plan
            return [answer(.commandAccepted, .repairResumed(document: plan.document))]
        case .restart, .reprovision, .failover, .abort:
            return []  // never taken (`takes`): they go to the ladder
        }
    }

    // MARK: Notices

    private func base(kind: NotificationKind, id: String, _ c: Context) -> Notice {
        Notice(id: id, kind: kind, at: c.now, target: c.target, instanceId: c.instance.id, region: c.instance.region)
    }

    private func cancelled(_ plan: Plan, _ why: NoticeReason.RepairCancellation, _ c: Context) -> Notice {
        done(.repairCancelled, plan, .repairCancelled(prediction: plan.detail, why: why), c)
    }

    private func done(_ kind: NotificationKind, _ plan: Plan, _ reason: NoticeReason, _ c: Context) -> Notice {
        var n = base(kind: kind, id: "\(plan.id):\(kind.rawValue)", c)
        n.repair = "ssm \(plan.document)"
        n.reason = reason
        return n
    }
}
