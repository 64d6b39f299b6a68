import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import RedisStore

/// The DR pre-flight: for each target, would a fail-over work now? It only reads (Describe*, List*).
///
/// Per target it checks: the newest completed tagged snapshot in the home and the DR region and its age,
/// the DR launch settings, the DR Elastic IP, and the Route 53 zone and record. A target with a problem
/// would fail over badly (or not at all) and is reported. `recoveryctl preflight` calls `run(targets:)`;
/// the actuator runs it on a schedule (`runScheduled`) and publishes the report as a `dr_preflight`
/// notice.
public struct DRPreflight: Sendable {
    public struct Options: Sendable {
        /// A snapshot older than this is a warning (default 26 h: a daily snapshot plus slack).
        public var maxSnapshotAge: TimeInterval = 26 * 3600
        public init() {}
    }

    let ec2: any EC2Operations
    let route53: any Route53Operations
    let config: ActuatorConfig
    let options: Options
    let logger: Logger
    let clock: @Sendable () -> Date

    public init(
        ec2: any EC2Operations, route53: any Route53Operations, config: ActuatorConfig, options: Options = Options(),
        logger: Logger,
        clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.ec2 = ec2
        self.route53 = route53
        self.config = config
        self.options = options
        self.logger = logger
        self.clock = clock
    }

    /// Checks every target.
    public func run(targets: [Target]) async -> PreflightReport {
        var reports: [TargetPreflight] = []
        for target in targets { reports.append(await check(target)) }
        return PreflightReport(at: clock(), targets: reports)
    }

    /// Checks one target.
    public func check(_ target: Target) async -> TargetPreflight {
        var report = TargetPreflight(
            target: target.name, instanceId: target.instance.id, region: target.instance.region)
        let settings: ActuatorTargetConfig
        do { settings = try await config.refreshed().target(target.name) } catch {
            report.problems.append("configuration: \(error)")
            return report
        }
        let drRegion = target.identity.failoverRegion(from: target.instance.region) ?? settings.drRegion
        report.drRegion = drRegion
        let home = ec2.withRegion(target.instance.region)

        // Snapshots in both regions.
        do {
            report.homeSnapshot = try await snapshotInfo(home, target.name)
            if let s = report.homeSnapshot {
                ageWarning(s, region: home.region, into: &report)
            } else {
                report.problems.append(
                    "no completed snapshot tagged \(RecoveryTags.name)=\(target.name) in \(home.region): a re-provision would stop for a person"
                )
            }
        } catch {
            report.problems.append("cannot list snapshots in \(home.region): \(error)")
        }
        guard let drRegion, drRegion != target.instance.region else {
            report.problems.append("no DR region: a fail-over would stop for a person (set dr_region or DR_REGION)")
            return report
        }
        let dr = ec2.withRegion(drRegion)
        do {
            report.drSnapshot = try await snapshotInfo(dr, target.name)
            if let s = report.drSnapshot {
                ageWarning(s, region: drRegion, into: &report)
            } else {
                report.problems.append(
                    "no completed snapshot tagged \(RecoveryTags.name)=\(target.name) in the DR region \(drRegion): a fail-over would stop for a person"
                )
            }
        } catch {
            report.problems.append("cannot list snapshots in \(drRegion): \(error)")
        }

        // Launch settings.
        let launch = settings.dr
        var missing: [String] = []
        if launch.subnetId == nil { missing.append("subnet_id") }
        if (launch.securityGroupIds ?? []).isEmpty { missing.append("security_group_ids") }
        if !missing.isEmpty {
            report.problems.append(
                "DR settings incomplete: \(missing.joined(separator: ", ")) not set; the DR instance would land in the default VPC with its default security group"
            )
        }
        if launch.instanceType == nil {
            report.warnings.append(
                "dr.instance_type not set: the original's type is used, which needs the original instance to be readable"
            )
        }
        report.drSettingsComplete = missing.isEmpty

        // DR Elastic IP.
        do {
            if let allocation = launch.elasticIpAllocationId {
                if let address = try await dr.describeAddresses(publicIps: [], allocationIds: [allocation], filters: [])
                    .first
                {
                    report.drAddress = "\(address.publicIp) (\(allocation))"
                } else {
                    report.problems.append("the configured DR Elastic IP \(allocation) does not exist in \(drRegion)")
                }
            } else if let tagged = try await dr.describeAddresses(
                publicIps: [], allocationIds: [], filters: [.tag(RecoveryTags.drFor, target.name)]
            ).first {
                report.drAddress = "\(tagged.publicIp) (\(tagged.allocationId ?? "?"), tagged \(RecoveryTags.drFor))"
            } else {
                report.warnings.append(
                    "no DR Elastic IP yet: the fail-over will allocate one (tagged \(RecoveryTags.drFor)=\(target.name)) and its address will be new"
                )
            }
        } catch let error as AWSError where error.code?.hasPrefix("InvalidAllocationID") == true {
            report.problems.append(
                "the configured DR Elastic IP \(launch.elasticIpAllocationId ?? "?") does not exist in \(drRegion)")
        } catch {
            report.problems.append("cannot read the Elastic IPs of \(drRegion): \(error)")
        }

        // DNS.
        if let zone = launch.hostedZoneId, let name = launch.recordName {
            do {
                let records = try await route53.listResourceRecordSets(
                    hostedZoneId: zone, startName: name, startType: .a)
                if let record = records.first(where: { Self.sameName($0.name, name) && $0.type == .a }) {
                    report.dns =
                        "\(record.name) A \(record.values.joined(separator: ",")) TTL \(record.ttl.map(String.init) ?? "alias")"
                } else {
                    report.problems.append(
                        "the A record \(name) does not exist in hosted zone \(zone): check dr.record_name")
                }
            } catch {
                report.problems.append("hosted zone \(zone) cannot be read: \(error)")
            }
        } else {
            report.problems.append(
                "no Route 53 record configured (dr.hosted_zone_id and dr.record_name): after a fail-over, traffic would not reach the DR instance"
            )
        }
        return report
    }

    private func snapshotInfo(_ ec2: any EC2Operations, _ target: String) async throws -> SnapshotInfo? {
        guard let snapshot = try await StepContext.latestSnapshot(ec2, target: target) else { return nil }
        return SnapshotInfo(
            snapshotId: snapshot.snapshotId, startTime: snapshot.startTime,
            ageSeconds: snapshot.startTime.map { clock().timeIntervalSince($0) })
    }

    private func ageWarning(_ snapshot: SnapshotInfo, region: String, into report: inout TargetPreflight) {
        if let age = snapshot.ageSeconds, age > options.maxSnapshotAge {
            report.warnings.append(
                "the newest snapshot in \(region) (\(snapshot.snapshotId)) is \(Int(age / 3600)) h old")
        }
    }

    /// Route 53 names are absolute and lowercase; compare without the final dot, case-insensitively.
    static func sameName(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String { (s.hasSuffix(".") ? String(s.dropLast()) : s).lowercased() }
        return norm(a) == norm(b)
    }

    /// The report as a notice: kind `dr_preflight`, the targets that would fail over badly in `targets`.
    public static func notice(_ report: PreflightReport, id: String) -> Notice {
        let failing = report.targets.filter { !$0.ok }
        var lines = ["DR pre-flight of \(report.targets.count) target(s): \(failing.count) would fail over badly."]
        for t in failing { lines.append("\(t.target): " + t.problems.joined(separator: "; ")) }
        for t in report.targets where !t.warnings.isEmpty {
            lines.append("\(t.target) (warning): " + t.warnings.joined(separator: "; "))
        }
        return Notice(
            id: id, kind: .drPreflight, at: report.at, targets: failing.map(\.target),
            commands: ["recoveryctl preflight"], reason: .actuator(.preflight(lines: lines)))
    }
}

/// What the pre-flight found, for all targets.
public struct PreflightReport: Codable, Sendable, Equatable {
    public var at: Date
    public var targets: [TargetPreflight]
    public var failing: [TargetPreflight] { targets.filter { !$0.ok } }
}

public struct SnapshotInfo: Codable, Sendable, Equatable {
    public var snapshotId: String
    public var startTime: Date?
    public var ageSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case snapshotId = "snapshot_id"
        case startTime = "start_time"
        case ageSeconds = "age_seconds"
    }
}

/// One target's pre-flight: `problems` make a fail-over fail or misroute; `warnings` do not.
public struct TargetPreflight: Codable, Sendable, Equatable {
    public var target: String
    public var instanceId: String
    public var region: String
    public var drRegion: String?
    public var homeSnapshot: SnapshotInfo?
    public var drSnapshot: SnapshotInfo?
    public var drSettingsComplete = false
    public var drAddress: String?
    public var dns: String?
    public var problems: [String] = []
    public var warnings: [String] = []

    public var ok: Bool { problems.isEmpty }

    init(target: String, instanceId: String, region: String) {
        self.target = target
        self.instanceId = instanceId
        self.region = region
    }

    enum CodingKeys: String, CodingKey {
        case target, region, dns, problems, warnings
        case instanceId = "instance_id"
        case drRegion = "dr_region"
        case homeSnapshot = "home_snapshot"
        case drSnapshot = "dr_snapshot"
        case drSettingsComplete = "dr_settings_complete"
        case drAddress = "dr_address"
    }
}

/// Runs the pre-flight on a schedule: one replica per interval (a Redis claim per slot), then the
/// report is published as a notice and a history event.
public struct ScheduledPreflight: Sendable {
    let preflight: DRPreflight
    let catalog: @Sendable () async throws -> [Target]
    let claims: any KeyValueStore
    let envelopes: EnvelopePublisher
    let interval: Duration
    let workerId: String
    let logger: Logger

    public init(
        preflight: DRPreflight, catalog: @escaping @Sendable () async throws -> [Target], claims: any KeyValueStore,
        publisher: any MessagePublishing, topology: FleetTopology, interval: Duration, workerId: String, logger: Logger
    ) {
        self.preflight = preflight
        self.catalog = catalog
        self.claims = claims
        envelopes = EnvelopePublisher(publisher: publisher, topology: topology, producer: workerId, appId: "actuator")
        self.interval = interval
        self.workerId = workerId
        self.logger = logger
    }

    /// Until cancelled: once per interval, by whichever replica claims the slot first.
    public func run() async {
        let seconds = max(1, Double(interval.components.seconds))
        while !Task.isCancelled {
            let slot = Int64(Date().timeIntervalSince1970 / seconds)
            do {
                if try await claims.setIfAbsent("preflight:\(slot)", workerId, expiry: interval * 2) {
                    _ = try await runOnce(id: "preflight:\(slot)")
                }
            } catch {
                logger.warning("DR pre-flight failed", metadata: ["error": "\(error)"])
            }
            let next = Double(slot + 1) * seconds - Date().timeIntervalSince1970
            try? await Task.sleep(for: .milliseconds(Int64(max(1, next) * 1000)))
        }
    }

    /// Runs the pre-flight now and publishes the report (notice id `id`).
    public func runOnce(id: String) async throws -> PreflightReport {
        let report = await preflight.run(targets: try await catalog())
        FleetMetrics.drPreflightFailing.record(report.failing.count)
        let notice = DRPreflight.notice(report, id: id)
        try await envelopes.publish(
            .notification, id: id, target: nil, instanceId: nil, correlationId: nil, body: notice, now: report.at)
        try await envelopes.publish(
            .event, id: "\(id):report", target: nil, instanceId: nil, correlationId: nil,
            body: ActuatorEvent(kind: .preflight, actor: workerId, detail: notice.detail), now: report.at)
        logger.info("DR pre-flight: \(report.failing.count) of \(report.targets.count) targets would fail over badly")
        return report
    }
}
