import Foundation
import RecoveryCore

/// One entry of a step's plan: a named sub-step, when it runs, what it does, and what puts right what it
/// did if the step fails later. A step is an ordered list of these (`StepContext.plan`), walked by
/// `StepContext.walk`; an actor that resumes a step skips the entries its record already has.
struct PlannedSubStep {
    /// What puts right a finished sub-step after the step failed, while `until` is not done (restart: the
    /// stopped instance is started again until it runs; re-provision: the launched replacement is stopped
    /// and tagged abandoned until it has the address).
    struct Compensation {
        let until: SubStep
        let run: () async throws -> Void
    }

    /// The sub-step it records when it finishes.
    let name: SubStep
    /// The entry is skipped once any of these is in the record: its name, and the sub-steps it may record
    /// instead (the reboot records `reboot_unhealthy` for an instance found stopped). Empty: it runs on
    /// every walk that reaches it (a check that ends the step).
    let skipWhenDone: Set<SubStep>
    /// Whether it applies on this walk (fail-over only, after another entry's outcome, …).
    let applies: () -> Bool
    /// Does the work and records it with `finish`; a result ends the step there.
    let run: () async throws -> StepResult?
    let compensation: Compensation?

    init(
        _ name: SubStep, skipWhenDone: Set<SubStep>? = nil, when applies: @escaping () -> Bool = { true },
        compensation: Compensation? = nil, run: @escaping () async throws -> StepResult?
    ) {
        self.name = name
        self.skipWhenDone = skipWhenDone ?? [name]
        self.applies = applies
        self.run = run
        self.compensation = compensation
    }
}

extension StepContext {
    /// The request's plan: its step's sub-steps, in order.
    func plan() -> [PlannedSubStep] {
        if let repair = request.repair {
            switch repair.action {
            case .ssm(let document, let parameters): return ssmRepairPlan(document: document, parameters: parameters)
            case .ebsRepair: return ebsRepairPlan()
            case .quarantine(let detach): return quarantinePlan(detachElasticIP: detach, reason: repair.reason)
            case .unquarantine: return unquarantinePlan()
            }
        }
        switch request.step {
        case .restart: return restartPlan()
        case .reprovision: return replacementPlan(failover: false)
        case .failover: return replacementPlan(failover: true)
        case .notifyOnly: return []
        }
    }

    /// The resume loop: runs, in order, every entry that is not in the record yet and applies now, until one
    /// ends the step (its result) or the plan is done (nil). Before each entry (a sub-step boundary) it reads
    /// the step's abort flag: an aborted step throws `StepAborted` there and starts nothing more.
    func walk(_ plan: [PlannedSubStep]) async throws -> StepResult? {
        for entry in plan {
            guard !entry.skipWhenDone.contains(where: isDone), entry.applies() else { continue }
            try await checkAbort()
            if let end = try await entry.run() { return end }
        }
        return nil
    }

    /// After a failed step: the compensation of the latest finished sub-step that has one still needed
    /// (its `until` not done). Errors are noted, not thrown (except a lost lease).
    func compensate() async throws {
        guard !dryRun, !isDone(.compensated) else { return }
        let needed = plan().reversed().first { entry in
            guard let compensation = entry.compensation else { return false }
            return isDone(entry.name) && !isDone(compensation.until)
        }
        try await needed?.compensation?.run()
    }
}
