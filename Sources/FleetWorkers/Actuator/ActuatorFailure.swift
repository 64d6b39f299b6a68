import AMQPTransport
import AWSClient
import RecoveryCore
import RedisStore

extension ActuatorWorker {
    /// AWS error codes that no later step can fix: a person must raise a limit or grant something.
    static let humanCodes: Set<String> = [
        "InstanceLimitExceeded", "VcpuLimitExceeded", "AddressLimitExceeded", "ResourceLimitExceeded",
        "AMIQuotaExceeded", "SnapshotLimitExceeded", "MaxSpotInstanceCountExceeded",
        "InvalidIamInstanceProfile.NotFound",
        "Blocked", "PendingVerification",
    ]

    static func classify(_ error: any Error) -> Failure {
        switch error {
        case let error as AWSError:
            switch error.kind {
            case .accessDenied, .authentication, .credentials:
                return .humanNeeded(
                    "\(error) The actuator's AWS identity cannot do this: grant it, then run the step by hand")
            case .throttling, .serverError, .transport, .invalidResponse:
                return .retry("\(error)")
            case .clientError, .invalidRequest:
                if let code = error.code, humanCodes.contains(code) {
                    return .humanNeeded(
                        "\(error) An account limit or setting blocks the step: fix it, then run the step by hand")
                }
                return .failed("\(error)")
            }
        case let error as WaiterError:
            return .failed("\(error)")
        case is RedisError, is AMQPError, is CancellationError:
            return .retry("\(error)")
        case let error as ActuatorError:
            if case .corruptRecord = error { return .humanNeeded("\(error)") }
            return .retry("\(error)")
        default:
            return .failed("\(error)")
        }
    }

    static func outcome(for request: ActionRequest, result: StepResult, dryRun: Bool, plannedCalls: [String])
        -> ActionOutcome
    {
        switch result {
        case .aborted(let abort, _):
            // An abort is reported as one, dry run or not: the operator asked for it and takes over.
            var outcome = ActionOutcome(
                for: request, status: .humanNeeded, reason: Self.summary(result, dryRun: dryRun))
            outcome.aborted = abort
            return outcome
        case _ where dryRun:
            // Never report a dry run as done: the decision worker would then believe the change was made.
            let calls = plannedCalls.isEmpty ? "none" : plannedCalls.joined(separator: "; ")
            return ActionOutcome(
                for: request, status: .failed,
                reason: "dry run, nothing was changed: \(summary(result, dryRun: true)). Calls it would make: \(calls)")
        case .succeeded(_, let newInstance):
            return ActionOutcome(for: request, status: .succeeded, newInstance: newInstance)
        case .failed(let reason):
            return ActionOutcome(for: request, status: .failed, reason: reason)
        case .humanNeeded(let reason):
            return ActionOutcome(for: request, status: .humanNeeded, reason: reason)
        }
    }

    static func summary(_ result: StepResult, dryRun: Bool) -> String {
        switch result {
        case .succeeded(let summary, _): dryRun ? "the step would run to its end" : summary
        case .failed(let reason): dryRun ? "it would fail: \(reason)" : reason
        case .humanNeeded(let reason): dryRun ? "it would stop for a person: \(reason)" : reason
        case .aborted(_, let summary): dryRun ? "dry run, nothing was changed: \(summary)" : summary
        }
    }
}
