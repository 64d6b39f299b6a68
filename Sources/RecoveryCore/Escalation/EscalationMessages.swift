import Foundation

// The message bodies the escalation machine reads and writes. Each is the `body` of an `Envelope`; the
// envelope's `id` is the event id the machine deduplicates on, and its `target` routes the message to
// the target's state. Field names on the wire are snake_case, like the envelope's.

/// One health check of a target: `observation` body, probe -> decision.
public struct ProbeResult: Codable, Sendable, Equatable {
    /// Where a result comes from: an HTTP check of the health URL, or EC2's view of the instance (a
    /// stopped or impaired instance is a failed observation too).
    public enum Source: String, Codable, Sendable {
        case http
        case ec2Status = "ec2_status"
    }

    /// Which prober made the check (for quorum), e.g. `probe@eu-west-1a`.
    public var prober: String
    /// The instance that was checked. Nil means the target's current instance. Checks of the original
    /// instance after a re-provision feed the "original instance is back" notice; checks of any other
    /// instance are ignored.
    public var instanceId: String?
    public var healthy: Bool
    public var statusCode: Int?
    /// Why the check failed (timeout, status, body mismatch), for notices and history.
    public var detail: String?
    public var source: Source?
    /// Where the time went (HTTP checks).
    public var timing: ProbeTiming?
    /// The `notAfter` of the site's TLS certificate (HTTPS checks).
    public var certificateExpiry: Date?
    /// The EC2 state (`stopped`, …) for EC2 status observations.
    public var ec2State: String?
    /// The instance discovery found serving the target when the check was made (tags: not replaced,
    /// running, newest). The decision worker follows it when it differs from its own record for long
    /// enough (docs/escalation.md, "Following discovery"). Absent from older probes.
    public var discovered: InstanceRef?

    public init(prober: String, instanceId: String? = nil, healthy: Bool, statusCode: Int? = nil, detail: String? = nil)
    {
        self.prober = prober
        self.instanceId = instanceId
        self.healthy = healthy
        self.statusCode = statusCode
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case prober, healthy, detail, source, timing
        case instanceId = "instance_id"
        case statusCode = "status_code"
        case certificateExpiry = "certificate_expiry"
        case ec2State = "ec2_state"
        case discovered
    }
}

/// The latency breakdown of one HTTP check, in milliseconds from the start of the request.
public struct ProbeTiming: Codable, Sendable, Equatable {
    public var dnsMs: Double
    public var connectMs: Double
    public var tlsMs: Double
    public var firstByteMs: Double
    public var totalMs: Double

    public init(dnsMs: Double, connectMs: Double, tlsMs: Double, firstByteMs: Double, totalMs: Double) {
        self.dnsMs = dnsMs
        self.connectMs = connectMs
        self.tlsMs = tlsMs
        self.firstByteMs = firstByteMs
        self.totalMs = totalMs
    }

    enum CodingKeys: String, CodingKey {
        case dnsMs = "dns_ms"
        case connectMs = "connect_ms"
        case tlsMs = "tls_ms"
        case firstByteMs = "first_byte_ms"
        case totalMs = "total_ms"
    }
}

/// What the actuator is asked to do: `action.request` body, decision -> actuator. It carries everything
/// the actuator needs; the actuator must not look anything up in the decision worker's state.
public struct ActionRequest: Codable, Sendable, Equatable {
    /// `<target>/<incident>/<step>`. The actuator runs each key at most once, and reports the outcome of
    /// the first run again for a repeated key.
    public var idempotencyKey: String
    public var target: String
    public var incidentId: String
    public var step: RecoveryStep
    /// The instance the target runs on now (the one to restart, or to replace).
    public var instanceId: String
    public var region: String
    /// Where the new instance goes: `region` for restart and re-provision, the DR region (or home, when
    /// already in DR) for fail-over.
    public var destinationRegion: String
    public var elasticIpAllocationId: String?
    public var requestedAt: Date
    /// After this, the machine stops waiting for this step and escalates; the actuator should give up too.
    public var deadline: Date
    /// The operator who ran the step by hand or approved it; nil for an automatic step.
    public var requestedBy: String?
    /// An action outside the ladder (SSM document, EBS repair, quarantine). When set, `step` is
    /// `notify_only` and the key is `RepairRequest.key` (docs/messages.md). Absent in ladder requests.
    public var repair: RepairRequest?

    public init(
        idempotencyKey: String, target: String, incidentId: String, step: RecoveryStep, instanceId: String,
        region: String, destinationRegion: String, elasticIpAllocationId: String?, requestedAt: Date,
        deadline: Date, requestedBy: String?, repair: RepairRequest? = nil
    ) {
        self.idempotencyKey = idempotencyKey
        self.target = target
        self.incidentId = incidentId
        self.step = step
        self.instanceId = instanceId
        self.region = region
        self.destinationRegion = destinationRegion
        self.elasticIpAllocationId = elasticIpAllocationId
        self.requestedAt = requestedAt
        self.deadline = deadline
        self.requestedBy = requestedBy
        self.repair = repair
    }

    /// A repair request: key `<target>/repair/<kind>/<id>`, step `notify_only`, destination = `region`.
    /// `incidentId` is the open incident, if any, else the repair's id (it becomes the correlation id).
    public static func repair(
        _ repair: RepairRequest, target: String, incidentId: String? = nil, instanceId: String, region: String,
        elasticIpAllocationId: String? = nil, requestedAt: Date, deadline: Date, requestedBy: String? = nil
    ) -> ActionRequest {
        ActionRequest(
            idempotencyKey: RepairRequest.key(target: target, kind: repair.kind, id: repair.id), target: target,
            incidentId: incidentId ?? repair.id, step: .notifyOnly, instanceId: instanceId, region: region,
            destinationRegion: region, elasticIpAllocationId: elasticIpAllocationId, requestedAt: requestedAt,
            deadline: deadline, requestedBy: requestedBy, repair: repair)
    }

    /// The idempotency key of a step: one per (target, incident, step).
    public static func key(target: String, incidentId: String, step: RecoveryStep) -> String {
        "\(target)/\(incidentId)/\(step.rawValue)"
    }

    enum CodingKeys: String, CodingKey {
        case target, step, region, deadline, repair
        case idempotencyKey = "idempotency_key"
        case incidentId = "incident_id"
        case instanceId = "instance_id"
        case destinationRegion = "destination_region"
        case elasticIpAllocationId = "elastic_ip_allocation_id"
        case requestedAt = "requested_at"
        case requestedBy = "requested_by"
    }
}

/// How a requested step ended: `action.event` body, actuator -> decision.
public struct ActionOutcome: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        /// The step ran (the instance restarted, the new instance is running with the Elastic IP).
        case succeeded
        /// The step failed in a way the next step may fix; the machine escalates at once.
        case failed
        /// The step cannot run without a person (no snapshot, no permission, quota): automation stops
        /// for the incident.
        case humanNeeded = "human_needed"
    }

    public var idempotencyKey: String
    public var incidentId: String
    public var step: RecoveryStep
    public var status: Status
    public var reason: String?
    /// For a successful re-provision or fail-over: the instance that serves the target now.
    public var instanceId: String?
    public var region: String?
    /// For a repair: its kind (absent for ladder steps).
    public var repair: RepairRequest.Kind?
    /// For a repair: what it created or changed, e.g. `new_volume_id`, `old_volume_id`, `command_id`.
    public var resources: [String: String]?
    /// Set when an operator aborted the step (`recoveryctl abort`); `status` is then `human_needed`, which
    /// a decision worker that predates aborts reads as "automation stops", never as a reason to escalate.
    public var aborted: StepAbort?

    public init(
        idempotencyKey: String, incidentId: String, step: RecoveryStep, status: Status, reason: String? = nil,
        instanceId: String? = nil, region: String? = nil, repair: RepairRequest.Kind? = nil,
        resources: [String: String]? = nil
    ) {
        self.idempotencyKey = idempotencyKey
        self.incidentId = incidentId
        self.step = step
        self.status = status
        self.reason = reason
        self.instanceId = instanceId
        self.region = region
        self.repair = repair
        self.resources = resources
    }

    /// The outcome for a request.
    public init(
        for request: ActionRequest, status: Status, reason: String? = nil, newInstance: InstanceRef? = nil,
        resources: [String: String]? = nil
    ) {
        self.init(
            idempotencyKey: request.idempotencyKey, incidentId: request.incidentId, step: request.step,
            status: status, reason: reason, instanceId: newInstance?.id, region: newInstance?.region,
            repair: request.repair?.kind, resources: resources)
    }

    enum CodingKeys: String, CodingKey {
        case step, status, reason, region, repair, resources, aborted
        case idempotencyKey = "idempotency_key"
        case incidentId = "incident_id"
        case instanceId = "instance_id"
    }
}

/// An operator's command about one target: `command` body, recoveryctl -> decision. The target is the
/// envelope's `target`; `operator` comes from the AMQP `user_id`, which the broker has verified.
/// (`recoveryctl brake release` is fleet-wide and goes to `FleetBrake`, not here.)
public struct OperatorCommand: Codable, Sendable, Equatable {
    public enum Name: String, Codable, Sendable, CaseIterable {
        /// Someone is on it: no automatic step for this incident until `resume`.
        case ack
        /// Take the pending step now (and the only way to act on a target that requires approval).
        case approve
        /// No step before `until`; then the normal flow continues.
        case hold
        /// Undo an ack or a hold.
        case resume
        /// Forget the outage count: the next outage starts the ladder at restart again.
        case reset
        /// Run a step now, by hand.
        case restart, reprovision, failover
        /// Stop the step in progress at its next sub-step boundary and undo what it did; automation stops
        /// for the incident (the operator takes over).
        case abort

        /// The ladder step a step command runs.
        public var step: RecoveryStep? {
            switch self {
            case .restart: .restart
            case .reprovision: .reprovision
            case .failover: .failover
            default: nil
            }
        }
    }

    public var name: Name
    public var `operator`: String
    /// For `hold`: the end of the hold.
    public var until: Date?
    /// Why (the `--reason`); kept by `abort`, which records it on the incident and the step.
    public var reason: String?
    /// The incident the command was meant for (a Slack button, a console page); nil: whatever is open.
    public var incident: String?

    public init(_ name: Name, by operator: String, until: Date? = nil, reason: String? = nil, incident: String? = nil) {
        self.name = name
        self.operator = `operator`
        self.until = until
        self.reason = reason
        self.incident = incident
    }

    enum CodingKeys: String, CodingKey {
        case name, `operator`, until, reason, incident
    }
}

/// Every command name on the wire (`command` bodies' `name`): one list shared by the decision worker,
/// recoveryctl and the docs. Each goes to one place: a target's escalation machine, the fleet brake, or a
/// repair request for the actuator.
public enum CommandName: String, Codable, Sendable, CaseIterable {
    case ack, approve, hold, resume, reset, restart, reprovision, failover, abort
    case brakeRelease = "brake_release"
    case brakeEngage = "brake_engage"
    case quarantine, unquarantine
    case repairVolume = "repair_volume"

    /// Where the command goes.
    public enum Route: Sendable, Equatable {
        case machine(OperatorCommand.Name)
        case brake(release: Bool)
        case repair(RepairRequest.Kind)
    }

    public var route: Route {
        switch self {
        case .brakeRelease: .brake(release: true)
        case .brakeEngage: .brake(release: false)
        case .quarantine: .repair(.quarantine)
        case .unquarantine: .repair(.unquarantine)
        case .repairVolume: .repair(.ebsRepair)
        case .ack, .approve, .hold, .resume, .reset, .restart, .reprovision, .failover, .abort:
            .machine(OperatorCommand.Name(rawValue: rawValue)!)
        }
    }

    /// For error messages: every accepted name.
    public static var list: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
