import Foundation
import RecoveryCore

// `recoveryctl abort` at the actuator (docs/actuator.md, "Abort"): the decision worker sets the step's
// abort flag in Redis; the resume loop (`StepContext.walk`) reads it before every sub-step, and an aborted
// step stops there, compensates as after a failure, and is completed with an outcome that names who
// aborted it. The flag lives in Redis, not in this process, so an actor that resumes the step after a
// crash or a redelivery sees it too.

/// The step's abort flag is set: thrown at a sub-step boundary, before the next sub-step starts.
struct StepAborted: Error, Sendable {
    let abort: StepAbort
}

extension StepContext {
    /// What every wait of the step checks before each poll (`AWSWaitGuard`): a lease the renewal found
    /// lost, and the abort flag. So a step waiting minutes for an image, an instance or the site stops
    /// within one poll interval of an abort, not at the next sub-step. A flag Redis cannot read now does
    /// not end a wait (nothing is changed while waiting); the check before the next sub-step fails closed.
    var waitGuard: @Sendable (String) async throws -> Void {
        { [keeper, aborts, key, clock] what in
            if let reason = keeper.lostReason { throw LeaseLost("\(reason); stopped waiting for \(what)") }
            do { try await Self.checkAbort(aborts, key: key, clock: clock) } catch is ActuatorError {}
        }
    }

    /// Throws `StepAborted` when the step's abort flag is set. Fails closed: a flag that cannot be read
    /// stops the actor as a lease it cannot check does (a passing error: the request goes back to the queue
    /// with its progress, and the next actor reads the flag again), and a flag that does not decode counts
    /// as set.
    func checkAbort() async throws { try await Self.checkAbort(aborts, key: key, clock: clock) }

    static func checkAbort(_ aborts: any KeyValueStore, key: String, clock: @Sendable () -> Date) async throws {
        let flag: String?
        do {
            flag = try await aborts.get(StepAbort.flagKey(key))
        } catch {
            throw ActuatorError.retryable(
                "the abort flag of \(key) cannot be read (\(error)); no sub-step starts on an unknown answer")
        }
        guard let flag else { return }
        let abort =
            (try? StepAbort.decode(flag))
            ?? StepAbort(by: "unknown", at: clock(), reason: "an abort flag that does not decode", commandId: "")
        throw StepAborted(abort: abort)
    }
}

extension ActuatorWorker {
    /// Ends an aborted step: who and why go into the record (`aborted` and a note) and an `aborted` history
    /// event, then the step's compensation runs as after a failure (a restart's stopped instance is started
    /// again, a launched replacement is stopped and tagged abandoned, an EBS repair's old root is put back).
    /// The result becomes a `human_needed` outcome with `aborted` set: automation stops, nothing escalates.
    func stopAborted(_ context: StepContext, _ abort: StepAbort) async throws -> StepEnd {
        let boundary =
            context.record.done.last { $0 != .compensated }.map { "after \($0.rawValue)" }
            ?? "before its first sub-step"
        let who = "aborted by \(abort.by) at \(Timestamp.format(abort.at))" + (abort.reason.map { " (\($0))" } ?? "")
        context.logger.notice("step \(who); stopping \(boundary)")
        context.note("\(who): \(options.workerId) stopped \(boundary)")
        context.record.aborted = abort
        let noted = context.record.notes.count
        do {
            try await records.save(context.record)
            await context.event(.aborted, id: "\(context.key):aborted", detail: "\(who); stopped \(boundary)")
            try await context.compensate()
        } catch let lost as LeaseLost {
            await leaseLost(context, lost)
            return .left(.leaseLost(lost.reason))
        }
        // The compensation's own notes (without their time stamps) say what was put back.
        let undone = context.record.notes.dropFirst(noted).map { $0.split(separator: " ", maxSplits: 1).last ?? "" }
        let after =
            !undone.isEmpty
            ? undone.joined(separator: "; ")
            : context.isDone(.compensated)
                ? "an earlier actor had already put back what the step changed (see notes)"
                : "nothing needed putting back"
        return .done(.aborted(abort, summary: "\(who); stopped \(boundary); \(after)"))
    }
}
