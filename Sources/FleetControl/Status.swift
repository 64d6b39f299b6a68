import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore

/// One target's line of `recoveryctl status`, read from where the workers keep it: the decision
/// worker's document in Redis (`state:target:<name>`), the actuator's lock (`lock:{<name>}`) and step
/// record (`state:step:<key>`), and discovery (EC2 tags + configuration).
public struct TargetStatus: Codable, Sendable, Equatable {
    public var target: String
    /// `monitoring`, `pending(restart)`, `awaiting_approval(restart)`, `in_progress(reprovision)`,
    /// `stopped(…)`, or `unknown` (discovered, but the decision worker has no state for it yet).
    public var state: String
    public var incidentId: String?
    /// Outages within the count window (24 h by default).
    public var outageCount: Int
    public var instanceId: String?
    public var region: String?
    public var lastProbeAt: Date?
    public var lastProbeHealthy: Bool?
    public var lastProbeDetail: String?
    /// The actuator holding the target's lock (its worker id when its step record says so), else nil.
    public var lockHolder: String?
    public var lockFencingToken: UInt64?
    public var lockExpiresInMs: Int64?
    /// `acknowledged by alice`, `held by bob until …`, `awaiting approval until …`, or nil.
    public var hold: String?
    public var nextStepAt: Date?
    /// Discovered by the catalog now (false: only stored state, e.g. an instance no longer tagged).
    public var discovered: Bool

    public init(
        target: String, state: String, incidentId: String? = nil, outageCount: Int = 0, instanceId: String? = nil,
        region: String? = nil, discovered: Bool = true
    ) {
        self.target = target
        self.state = state
        self.incidentId = incidentId
        self.outageCount = outageCount
        self.instanceId = instanceId
        self.region = region
        self.discovered = discovered
    }

    enum CodingKeys: String, CodingKey {
        case target, state, hold, region, discovered
        case incidentId = "incident_id"
        case outageCount = "outage_count"
        case instanceId = "instance_id"
        case lastProbeAt = "last_probe_at"
        case lastProbeHealthy = "last_probe_healthy"
        case lastProbeDetail = "last_probe_detail"
        case lockHolder = "lock_holder"
        case lockFencingToken = "lock_fencing_token"
        case lockExpiresInMs = "lock_expires_in_ms"
        case nextStepAt = "next_step_at"
    }
}

public struct BrakeStatus: Codable, Sendable, Equatable {
    public var engaged: Bool
    public var since: Date?
    public var trigger: String?
    public var by: String?
    public var detail: String?
    public var targetsInOutage: [String]
    public var fleetSize: Int

    public init(
        engaged: Bool, since: Date? = nil, trigger: String? = nil, by: String? = nil, detail: String? = nil,
        targetsInOutage: [String] = [], fleetSize: Int
    ) {
        self.engaged = engaged
        self.since = since
        self.trigger = trigger
        self.by = by
        self.detail = detail
        self.targetsInOutage = targetsInOutage
        self.fleetSize = fleetSize
    }

    enum CodingKeys: String, CodingKey {
        case engaged, since, trigger, by, detail
        case targetsInOutage = "targets_in_outage"
        case fleetSize = "fleet_size"
    }
}

public struct StatusReport: Codable, Sendable, Equatable {
    public var at: Date
    public var brake: BrakeStatus
    public var targets: [TargetStatus]
    /// Why discovery could not be used, if it failed (the table then shows stored state only).
    public var discoveryError: String?

    public init(at: Date, brake: BrakeStatus, targets: [TargetStatus], discoveryError: String? = nil) {
        self.at = at
        self.brake = brake
        self.targets = targets
        self.discoveryError = discoveryError
    }

    enum CodingKeys: String, CodingKey {
        case at, brake, targets
        case discoveryError = "discovery_error"
    }

    /// The human table (80 columns) and the brake line.
    public func render(width: Int = 80) -> String {
        var lines: [String] = []
        if brake.engaged {
            var line = "FLEET BRAKE ENGAGED"
            if let since = brake.since { line += " since \(TimeInput.iso(since))" }
            if let trigger = brake.trigger { line += " (\(trigger)\(brake.by.map { " by \($0)" } ?? ""))" }
            lines.append(wrap(line + ": no destructive step runs. Release: recoveryctl brake release", width: width))
            if let detail = brake.detail { lines.append(wrap("  " + detail, width: width, indent: "  ")) }
        } else {
            lines.append(
                "Fleet brake: released. \(brake.targetsInOutage.count) of \(brake.fleetSize) targets in outage.")
        }
        if let discoveryError {
            lines.append(wrap("Discovery failed (stored state only): \(discoveryError)", width: width))
        }
        lines.append("")
        if targets.isEmpty {
            lines.append(
                "No targets: nothing tagged AutoRecovery=enabled\(brake.fleetSize == 0 ? "" : " was found") and no stored state."
            )
            return lines.joined(separator: "\n")
        }
        // One row of short facts per target (fits 80 columns with real instance ids), then an indented
        // line with the rest: last probe, lock, hold, next step.
        let table = TextTable(
            headers: ["TARGET", "STATE", "OUT", "INSTANCE", "REGION"],
            rows: targets.map { t in [t.target, t.state, String(t.outageCount), t.instanceId ?? "-", t.region ?? "-"] },
            fixed: [2, 3, 4])
        let rendered = table.render(width: width).split(separator: "\n", omittingEmptySubsequences: false).map(
            String.init)
        lines.append(rendered[0])
        for (t, row) in zip(targets, rendered.dropFirst()) {
            lines.append(row)
            var facts: [String] = []
            if let at = t.lastProbeAt {
                facts.append(
                    "probed \(t.lastProbeHealthy == false ? "DOWN" : "up") \(TimeInput.relative(at, now: self.at))")
            } else {
                facts.append("not probed yet")
            }
            if let holder = t.lockHolder { facts.append("lock: \(holder)") }
            if let hold = t.hold { facts.append(hold) }
            if let next = t.nextStepAt, t.state != "monitoring" {
                facts.append("next \(TimeInput.relative(next, now: self.at))")
            }
            if !t.discovered { facts.append("not discovered (stored state only)") }
            lines.append(wrap("  " + facts.joined(separator: "; "), width: width, indent: "    "))
        }
        return lines.joined(separator: "\n")
    }
}

/// Builds the status report.
public struct StatusReader: Sendable {
    let reader: DecisionStateReader
    let redis: RedisClient
    let keyspace: RedisKeyspace
    let discover: (@Sendable () async throws -> [Target])?

    public init(redis: RedisClient, keyspace: RedisKeyspace, discover: (@Sendable () async throws -> [Target])?) {
        reader = DecisionStateReader(states: RedisStateStore(client: redis, keyspace: keyspace))
        self.redis = redis
        self.keyspace = keyspace
        self.discover = discover
    }

    public func report(now: Date = Date(), only target: String? = nil) async throws -> StatusReport {
        var discovered: [String: Target] = [:]
        var discoveryError: String?
        if let discover {
            do {
                for t in try await discover() { discovered[t.name] = t }
            } catch {
                discoveryError = "\(error)"
            }
        }
        var names = Set(discovered.keys).union(try await reader.targetNames())
        if let target { names = names.filter { $0 == target } }
        var rows: [TargetStatus] = []
        for name in names.sorted() {
            rows.append(try await status(name, discovered: discovered[name], now: now))
        }
        let brake = try await reader.brake()
        let engagement = brake?.engagement
        let brakeStatus = BrakeStatus(
            engaged: brake?.isEngaged ?? false, since: engagement?.at, trigger: engagement?.trigger.rawValue,
            by: engagement?.by,
            detail: engagement?.detail, targetsInOutage: brake?.targetsInOutage ?? [],
            fleetSize: brake?.fleetSize ?? discovered.count)
        return StatusReport(at: now, brake: brakeStatus, targets: rows, discoveryError: discoveryError)
    }

    func status(_ name: String, discovered: Target?, now: Date) async throws -> TargetStatus {
        let stored = try await reader.target(name)
        var row = TargetStatus(
            target: name, state: "unknown", outageCount: 0, instanceId: discovered?.instance.id,
            region: discovered?.instance.region, discovered: discovered != nil)
        var inProgressKey: String?
        if let stored {
            let machine = stored.machine
            row.instanceId = machine.currentInstance.id
            row.region = machine.currentInstance.region
            row.outageCount = machine.outageCount(at: now)
            row.nextStepAt = machine.nextDeadline
            if let probe = stored.lastProbe {
                row.lastProbeAt = probe.at
                row.lastProbeHealthy = probe.healthy
                row.lastProbeDetail = probe.detail
            }
            if let incident = machine.incident {
                row.incidentId = incident.id
                switch incident.phase {
                case .pending(let step, _): row.state = "pending(\(step.rawValue))"
                case .awaitingApproval(let step, let deadline):
                    row.state = "awaiting_approval(\(step.rawValue))"
                    row.hold = "approval by \(TimeInput.iso(deadline))"
                case .inProgress(let attempt):
                    row.state = "in_progress(\(attempt.step.rawValue))"
                    inProgressKey = attempt.idempotencyKey
                case .stopped(let reason): row.state = "stopped(\(reason))"
                }
                switch incident.hold {
                case .acknowledged(let by, let at)?: row.hold = "acked by \(by) \(TimeInput.relative(at, now: now))"
                case .until(let end, let by)?: row.hold = "held by \(by) until \(TimeInput.iso(end))"
                case nil: break
                }
            } else {
                row.state = "monitoring"
            }
        }
        // The actuator's lock: `<token>:<fence>`; its step record names the worker holding it.
        let lockKey = keyspace.lockKey(name)
        if let value = try await redis.command(["GET", lockKey], idempotent: true).string {
            let fence = value.split(separator: ":").last.flatMap { UInt64($0) }
            row.lockFencingToken = fence
            row.lockExpiresInMs = try await redis.command(["PTTL", lockKey], idempotent: true).integer
            row.lockHolder = "held"
            if let fence {
                row.lockHolder = "fence \(fence)"
                if let key = inProgressKey,
                    let record = try? await StepRecordStore(states: RedisStateStore(client: redis, keyspace: keyspace))
                        .load(key),
                    record.fencingToken == fence
                {
                    row.lockHolder = record.owner
                }
            }
        }
        return row
    }
}
