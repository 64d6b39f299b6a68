import AWSClient
import FleetWorkers
import RecoveryCore
import Testing

/// Expectations the actuator must meet on every driver (moto and Redis, or the memory drivers), shared by
/// `ActuatorIntegrationTests` and the `ActuatorMemory…` tests.
enum ActuatorExpectations {
    /// A re-provision whose `call` failed after its replacement was launched: reported failed, naming the
    /// call; the replacement is not the target's instance, it is stopped (never terminated) and tagged
    /// abandoned by the step, and the record says so; the old instance is left alone.
    static func abandonedReplacement(
        _ result: ActuatorWorker.Result, status: ActionOutcome.Status = .failed, failedAt call: String,
        record: StepRecord, replacement: EC2Instance?,
        old: EC2Instance,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard case .completed(let outcome) = result else {
            Issue.record("unexpected \(result)", sourceLocation: sourceLocation)
            return
        }
        #expect(outcome.status == status, sourceLocation: sourceLocation)
        #expect(outcome.reason?.contains(call) == true, "\(outcome.reason ?? "")", sourceLocation: sourceLocation)
        #expect(
            outcome.instanceId == nil, "the failed replacement does not become the target's instance",
            sourceLocation: sourceLocation)
        #expect(record.done.contains(.compensated), sourceLocation: sourceLocation)
        #expect(replacement?.state == .stopped, "stopped, not terminated", sourceLocation: sourceLocation)
        #expect(
            replacement?.tags["AutoRecovery"] == "abandoned", "discovery ignores it", sourceLocation: sourceLocation)
        #expect(replacement?.tags["AutoRecovery:AbandonedBy"] == record.idempotencyKey, sourceLocation: sourceLocation)
        #expect(old.state == .running, "the old instance is left alone", sourceLocation: sourceLocation)
        #expect(old.tags["AutoRecovery:ReplacedBy"] == nil, sourceLocation: sourceLocation)
    }
}
