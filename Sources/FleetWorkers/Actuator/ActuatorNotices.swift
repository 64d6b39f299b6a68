import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore

extension ActuatorWorker {
    // MARK: Notices

    func startedNotice(_ request: ActionRequest, _ config: ActuatorTargetConfig) -> Notice {
        Notice(
            id: "\(request.idempotencyKey):actuator:\(NotificationKind.actionStarted.rawValue)", kind: .actionStarted,
            at: clock(),
            target: request.target, instanceId: request.instanceId, region: request.region,
            incidentId: request.incidentId,
            step: request.repair == nil ? request.step : nil, nextStep: request.repair == nil ? request.step : nil,
            commands: [RecoveryCtl.ack(request.target)],
            reason: .actuator(
                .starting(
                    worker: options.workerId, what: Self.what(request),
                    instance: InstanceRef(id: request.instanceId, region: request.region),
                    plan: Self.plan(request, config, options), recordKey: request.idempotencyKey, dryRun: config.dryRun)
            ))
    }

    /// "restart", or "repair ebs_repair".
    static func what(_ request: ActionRequest) -> String {
        request.repair.map { "repair \($0.kind.rawValue)" } ?? request.step.rawValue
    }

    func resultNotice(_ record: StepRecord, outcome: ActionOutcome, request: ActionRequest) -> Notice {
        let summary = record.summary ?? outcome.reason ?? ""
        let kind: NotificationKind =
            switch outcome.status {
            case .succeeded: .actionSucceeded
            case .failed: .actionFailed
            case .humanNeeded: .humanNeeded
            }
        let requested = InstanceRef(id: request.instanceId, region: request.region)
        if let repair = request.repair {
            // Not a ladder step: no next step; the requester (decision worker, operator) decides what follows.
            return Notice(
                id: "\(record.idempotencyKey):actuator:\(kind.rawValue)", kind: kind, at: clock(),
                target: request.target, instanceId: request.instanceId, region: request.region,
                incidentId: request.incidentId, commands: [RecoveryCtl.ack(request.target)],
                reason: .actuator(
                    .repairResult(
                        what: Self.what(request), instance: requested, status: outcome.status, summary: summary,
                        askedFor: repair.reason, notes: record.notes, dryRun: record.dryRun)))
        }
        var commands: [String] = []
        switch outcome.status {
        case .succeeded: break
        case .failed:
            if let command = RecoveryCtl.run(request.step.next, request.target) { commands.append(command) }
            commands.append(RecoveryCtl.ack(request.target))
        case .humanNeeded:
            // After an abort the step cannot be run again in this incident (it ran once); a person decides.
            if outcome.aborted == nil, let command = RecoveryCtl.run(request.step, request.target) {
                commands.append(command)
            }
            commands.append(RecoveryCtl.ack(request.target))
        }
        return Notice(
            id: "\(record.idempotencyKey):actuator:\(kind.rawValue)", kind: kind, at: clock(), target: request.target,
            instanceId: outcome.instanceId ?? request.instanceId, region: outcome.region ?? request.region,
            incidentId: request.incidentId, step: request.step,
            nextStep: outcome.status == .failed ? request.step.next : nil,
            commands: commands,
            reason: .actuator(
                .stepResult(
                    step: request.step, instance: requested, status: outcome.status, summary: summary,
                    next: request.step.next, notes: record.notes, dryRun: record.dryRun,
                    dryRunReason: record.dryRun ? outcome.reason : nil)))
    }

    /// The step's plan in one line, for the started notice.
    static func plan(_ request: ActionRequest, _ config: ActuatorTargetConfig, _ options: Options) -> String {
        if let repair = request.repair {
            switch repair.action {
            case .ssm(let document, _):
                let limit = max(
                    options.ssmCommandTimeout,
                    .seconds(FleetSSMDocument.shipped[document]?.defaultExecutionTimeout ?? 0))
                return
                    "SSM SendCommand \(options.ssmDocumentPrefix)\(document) on \(request.instanceId), waiting up to \(limit.components.seconds)s for it (or until the deadline)"
            case .ebsRepair:
                return
                    "a snapshot of the root volume (evidence), a new root volume from the newest snapshot tagged AutoRecovery:Name=\(request.target), StopInstances, the old root detached (kept, tagged) and the new one attached at the same device, StartInstances"
            case .quarantine(let detach):
                return "tag \(RecoveryTags.quarantined), quarantined=true in the instance-config table"
                    + (detach ? ", the Elastic IP disassociated" : "")
            case .unquarantine:
                return "remove the \(RecoveryTags.quarantined) tag, quarantined=false in the instance-config table"
            }
        }
        let ssmFirst =
            config.ssm.restart
            ? "SSM restart-services (\(config.ssm.services.joined(separator: " "))) and verify-health; if that does not bring the site back, "
            : ""
        return switch request.step {
        case .restart:
            ssmFirst
                + "RebootInstances, then up to \(options.restartHealthTimeout.components.seconds)s for the status checks and the site; if still down, StopInstances and StartInstances (new hardware) and the Elastic IP re-associated if needed"
        case .reprovision:
            "RegisterImage from the newest snapshot tagged AutoRecovery:Name=\(request.target) in \(request.region), RunInstances with the original's settings, the Elastic IP moved to it, the old instance stopped (not terminated) and tagged AutoRecovery:ReplacedBy"
        case .failover:
            "RegisterImage from the newest tagged snapshot in \(request.destinationRegion), RunInstances with the DR settings, the DR Elastic IP attached"
                + (config.dr.recordName.map { ", \($0) pointed at it" } ?? "")
                + ", the old instance stopped (not terminated) if \(request.region) answers"
        case .notifyOnly:
            "nothing"
        }
    }
}
