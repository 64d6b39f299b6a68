import Foundation

/// The body of an `event` message the decision worker publishes (routing `event.<target>`, to the
/// recorder's history) when a target's state changes: an incident opened or closed, or its phase moved
/// (pending → awaiting approval → in progress → stopped), or the target moved to another instance.
public struct TargetStateChange: Codable, Sendable, Equatable {
    /// `incident_opened`, `incident_closed`, `phase_changed` or `instance_changed`.
    public var kind: String
    /// `monitoring`, `pending(restart)`, `awaiting_approval(restart)`, `in_progress(reprovision)`, `stopped(…)`.
    public var from: String
    public var to: String
    /// e.g. `pending(restart) → in_progress(restart)`; the recorder's `why`.
    public var detail: String
    public var incidentId: String?
    /// The instance serving the target after the change.
    public var instanceId: String
    public var region: String

    enum CodingKeys: String, CodingKey {
        case kind, from, to, detail
        case incidentId = "incident_id"
        case instanceId = "instance_id"
        case region
    }

    /// What a machine's state looks like for history.
    public struct Summary: Equatable, Sendable {
        var incidentId: String?
        var phase: String
        var instance: InstanceRef

        public init(_ machine: EscalationMachine) {
            incidentId = machine.incident?.id
            instance = machine.currentInstance
            switch machine.incident?.phase {
            case nil: phase = "monitoring"
            case .pending(let step, _)?: phase = "pending(\(step.rawValue))"
            case .awaitingApproval(let step, _)?: phase = "awaiting_approval(\(step.rawValue))"
            case .inProgress(let attempt)?: phase = "in_progress(\(attempt.step.rawValue))"
            case .stopped(let reason)?: phase = "stopped(\(reason))"
            }
        }
    }

    /// The change between two summaries, or nil when nothing worth keeping changed.
    public static func between(_ before: Summary, _ after: Summary) -> TargetStateChange? {
        guard before != after else { return nil }
        let kind: String
        if before.incidentId != after.incidentId {
            kind = after.incidentId == nil ? "incident_closed" : "incident_opened"
        } else if before.phase != after.phase {
            kind = "phase_changed"
        } else {
            kind = "instance_changed"
        }
        var detail = "\(before.phase) → \(after.phase)"
        if before.instance != after.instance { detail += "; instance \(before.instance.id) → \(after.instance.id)" }
        return TargetStateChange(
            kind: kind, from: before.phase, to: after.phase, detail: detail,
            incidentId: after.incidentId ?? before.incidentId, instanceId: after.instance.id,
            region: after.instance.region)
    }
}
