import Foundation

/// The actuator's reasons (`NoticeReason.actuator`): what it is about to do, what a step or repair came to,
/// and the stops it announces on the way. Facts only; `text` is the sentence the notice's `detail` carries.
///
/// On the wire the reason's `code` is `actuator_<kind>` (`actuator_starting`, `actuator_step_result`,
/// `actuator_repair_result`, `actuator_stop_start`, `actuator_root_swap`, `actuator_preflight`) beside the
/// parameters in snake_case (docs/messages.md).
public enum ActuatorReason: Sendable, Equatable {
    /// The actuator took the step (or repair) `what` for `instance` and will do `plan`; its progress is
    /// recorded under `step:<recordKey>`.
    case starting(worker: String, what: String, instance: InstanceRef, plan: String, recordKey: String, dryRun: Bool)
    /// A ladder step ended with `status`; `next` is the step the decision worker escalates to.
    /// `dryRunReason`: in a dry run, what would have been done.
    case stepResult(
        step: RecoveryStep, instance: InstanceRef, status: ActionOutcome.Status, summary: String, next: RecoveryStep,
        notes: [String], dryRun: Bool, dryRunReason: String? = nil)
    /// A repair (`what`: `repair ebs_repair`…) ended with `status`; `askedFor` is the requester's reason.
    case repairResult(
        what: String, instance: InstanceRef, status: ActionOutcome.Status, summary: String, askedFor: String?,
        notes: [String], dryRun: Bool)
    /// The site is still down after a reboot (`lastCheck`): the instance is stopped and started.
    case stopStartAfterReboot(instance: InstanceRef, lastCheck: String, recordKey: String)
    /// An EBS repair stops the instance to swap its root `oldVolume` for `newVolume` (from `snapshot`).
    case rootSwap(instance: InstanceRef, oldVolume: String, newVolume: String, snapshot: String, recordKey: String)
    /// The DR pre-flight's report, one finding per line.
    case preflight(lines: [String])

    public var text: String {
        switch self {
        case let .starting(worker, what, instance, plan, key, dryRun):
            return (dryRun ? "DRY RUN (nothing will be changed): " : "")
                + "\(worker) is starting the \(what) of \(instance.id) in \(instance.region). Next: \(plan). "
                + "Progress is recorded in Redis under step:\(key)."
        case let .stepResult(step, instance, status, summary, next, notes, dryRun, dryRunReason):
            let text: String =
                switch status {
                case .succeeded:
                    "The \(step.rawValue) is done: \(summary). Next: the decision worker verifies that the site "
                        + "answers; if it does not, it escalates to \(next.rawValue)."
                case .failed where dryRun:
                    "DRY RUN of the \(step.rawValue): \(dryRunReason ?? summary)"
                case .failed:
                    "The \(step.rawValue) of \(instance.id) in \(instance.region) failed: \(summary). "
                        + "Next: the decision worker escalates to \(next.rawValue)."
                case .humanNeeded:
                    "The \(step.rawValue) of \(instance.id) in \(instance.region) needs a person: \(summary). "
                        + "Next: automation stops for this incident; fix the cause, then run the step by hand."
                }
            return text + Self.notes(notes)
        case let .repairResult(what, instance, status, summary, askedFor, notes, dryRun):
            let how =
                switch status {
                case .succeeded: "is done"
                case .failed: "failed"
                case .humanNeeded: "needs a person"
                }
            return (dryRun ? "DRY RUN: " : "")
                + "The \(what) of \(instance.id) in \(instance.region)\(askedFor.map { " (asked for: \($0))" } ?? "") "
                + "\(how): \(summary)." + Self.notes(notes)
        case let .stopStartAfterReboot(instance, lastCheck, key):
            return "the site is still down after the reboot of \(instance.id) in \(instance.region) (\(lastCheck)). "
                + "Stopping and starting it now to move it to new hardware; it is stopped in between. "
                + "Progress is recorded in Redis under step:\(key)."
        case let .rootSwap(instance, oldVolume, newVolume, snapshot, key):
            return "EBS repair of \(instance.id) in \(instance.region): stopping it to replace its root volume "
                + "\(oldVolume) with \(newVolume) (from \(snapshot)); the old volume is kept. "
                + "Progress is recorded in Redis under step:\(key)."
        case let .preflight(lines):
            return lines.joined(separator: "\n")
        }
    }

    /// The last three notes of the step record.
    static func notes(_ notes: [String]) -> String {
        notes.isEmpty ? "" : " Notes: " + notes.suffix(3).joined(separator: " | ")
    }
}

extension ActuatorReason: Codable {
    /// The flat wire form: every parameter of every kind, those of the kind present.
    private struct Wire: Codable {
        var code: String
        var worker, what, plan, recordKey, summary, askedFor, dryRunReason, lastCheck: String?
        var oldVolume, newVolume, snapshot: String?
        var instance: InstanceRef?
        var step, next: RecoveryStep?
        var status: ActionOutcome.Status?
        var notes, lines: [String]?
        var dryRun: Bool?

        enum CodingKeys: String, CodingKey {
            case code, worker, what, plan, summary, instance, step, next, status, notes, lines
            case recordKey = "record_key", askedFor = "asked_for", dryRunReason = "dry_run_reason"
            case lastCheck = "last_check", oldVolume = "old_volume", newVolume = "new_volume", snapshot
            case dryRun = "dry_run"
        }

        init(code: String) { self.code = code }

        func required<T>(_ value: T?, _ name: String) throws -> T {
            guard let value else {
                throw DecodingError.valueNotFound(
                    T.self, .init(codingPath: [], debugDescription: "\(code) without \(name)"))
            }
            return value
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var w: Wire
        switch self {
        case let .starting(worker, what, instance, plan, key, dryRun):
            w = Wire(code: "actuator_starting")
            (w.worker, w.what, w.instance, w.plan, w.recordKey, w.dryRun) = (worker, what, instance, plan, key, dryRun)
        case let .stepResult(step, instance, status, summary, next, notes, dryRun, dryRunReason):
            w = Wire(code: "actuator_step_result")
            (w.step, w.instance, w.status, w.summary, w.next) = (step, instance, status, summary, next)
            (w.notes, w.dryRun, w.dryRunReason) = (notes, dryRun, dryRunReason)
        case let .repairResult(what, instance, status, summary, askedFor, notes, dryRun):
            w = Wire(code: "actuator_repair_result")
            (w.what, w.instance, w.status, w.summary, w.askedFor) = (what, instance, status, summary, askedFor)
            (w.notes, w.dryRun) = (notes, dryRun)
        case let .stopStartAfterReboot(instance, lastCheck, key):
            w = Wire(code: "actuator_stop_start")
            (w.instance, w.lastCheck, w.recordKey) = (instance, lastCheck, key)
        case let .rootSwap(instance, oldVolume, newVolume, snapshot, key):
            w = Wire(code: "actuator_root_swap")
            (w.instance, w.oldVolume, w.newVolume, w.snapshot, w.recordKey) = (
                instance, oldVolume, newVolume, snapshot, key
            )
        case let .preflight(lines):
            w = Wire(code: "actuator_preflight")
            w.lines = lines
        }
        try w.encode(to: encoder)
    }

    public init(from decoder: any Decoder) throws {
        let w = try Wire(from: decoder)
        switch w.code {
        case "actuator_starting":
            self = .starting(
                worker: try w.required(w.worker, "worker"), what: try w.required(w.what, "what"),
                instance: try w.required(w.instance, "instance"), plan: try w.required(w.plan, "plan"),
                recordKey: try w.required(w.recordKey, "record_key"), dryRun: w.dryRun ?? false)
        case "actuator_step_result":
            self = .stepResult(
                step: try w.required(w.step, "step"), instance: try w.required(w.instance, "instance"),
                status: try w.required(w.status, "status"), summary: try w.required(w.summary, "summary"),
                next: try w.required(w.next, "next"), notes: w.notes ?? [], dryRun: w.dryRun ?? false,
                dryRunReason: w.dryRunReason)
        case "actuator_repair_result":
            self = .repairResult(
                what: try w.required(w.what, "what"), instance: try w.required(w.instance, "instance"),
                status: try w.required(w.status, "status"), summary: try w.required(w.summary, "summary"),
                askedFor: w.askedFor, notes: w.notes ?? [], dryRun: w.dryRun ?? false)
        case "actuator_stop_start":
            self = .stopStartAfterReboot(
                instance: try w.required(w.instance, "instance"), lastCheck: try w.required(w.lastCheck, "last_check"),
                recordKey: try w.required(w.recordKey, "record_key"))
        case "actuator_root_swap":
            self = .rootSwap(
                instance: try w.required(w.instance, "instance"), oldVolume: try w.required(w.oldVolume, "old_volume"),
                newVolume: try w.required(w.newVolume, "new_volume"), snapshot: try w.required(w.snapshot, "snapshot"),
                recordKey: try w.required(w.recordKey, "record_key"))
        case "actuator_preflight":
            self = .preflight(lines: try w.required(w.lines, "lines"))
        default:
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "unknown actuator reason '\(w.code)'"))
        }
    }
}

/// The gatekeepers' reasons (`NoticeReason.refusedSender`): a message or command from someone who may not
/// send it. Wire codes `unauthorized_sender` and `not_an_operator`.
public enum GateReason: Sendable, Equatable, Codable {
    /// `user` (nil: no user_id) published a `type` message on `routingKey`, which only `allowed` identities
    /// may send; it waits in `deadLetterQueue`. Noticed by `worker`.
    case unauthorizedSender(
        user: String?, type: String, routingKey: String, allowed: [String], deadLetterQueue: String, worker: String)
    /// `user` is not on OPERATORS (`noOperators`: the list is empty) and sent `command`.
    case notAnOperator(user: String, command: String, noOperators: Bool)

    public var text: String {
        switch self {
        case let .unauthorizedSender(user, type, routingKey, allowed, deadLetterQueue, worker):
            let who = user.map { "Broker user '\($0)'" } ?? "A sender without user_id"
            return "\(who) published a '\(type)' message (routing key \(routingKey)), which only the "
                + "\(allowed.joined(separator: "/")) identities may send. It was not acted on: "
                + "it is in \(deadLetterQueue) with its reason, and further messages from this sender "
                + "(to any queue) are refused and counted (recovery_unauthorized_messages_total) without another "
                + "notice. Check the broker permissions of that user (docs/security.md). Seen by \(worker)."
        case let .notAnOperator(user, command, noOperators):
            return noOperators
                ? "no operators are configured (OPERATORS is empty), so every command is refused; command \(command) from '\(user)' refused"
                : "user '\(user)' is not on the operator list (OPERATORS); command \(command) refused"
        }
    }

    private enum CodingKeys: String, CodingKey {
        case code, user, type, command, allowed, worker
        case routingKey = "routing_key", deadLetterQueue = "dead_letter_queue", noOperators = "no_operators"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case let .unauthorizedSender(user, type, routingKey, allowed, deadLetterQueue, worker):
            try c.encode("unauthorized_sender", forKey: .code)
            try c.encodeIfPresent(user, forKey: .user)
            try c.encode(type, forKey: .type)
            try c.encode(routingKey, forKey: .routingKey)
            try c.encode(allowed, forKey: .allowed)
            try c.encode(deadLetterQueue, forKey: .deadLetterQueue)
            try c.encode(worker, forKey: .worker)
        case let .notAnOperator(user, command, noOperators):
            try c.encode("not_an_operator", forKey: .code)
            try c.encode(user, forKey: .user)
            try c.encode(command, forKey: .command)
            try c.encode(noOperators, forKey: .noOperators)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .code) {
        case "unauthorized_sender":
            self = .unauthorizedSender(
                user: try c.decodeIfPresent(String.self, forKey: .user), type: try c.decode(String.self, forKey: .type),
                routingKey: try c.decode(String.self, forKey: .routingKey),
                allowed: try c.decode([String].self, forKey: .allowed),
                deadLetterQueue: try c.decode(String.self, forKey: .deadLetterQueue),
                worker: try c.decode(String.self, forKey: .worker))
        case "not_an_operator":
            self = .notAnOperator(
                user: try c.decode(String.self, forKey: .user), command: try c.decode(String.self, forKey: .command),
                noOperators: try c.decode(Bool.self, forKey: .noOperators))
        case let code:
            throw DecodingError.dataCorruptedError(
                forKey: .code, in: c, debugDescription: "unknown gate reason '\(code)'")
        }
    }
}
