import AWSClient
import Foundation
import Logging
import RecoveryCore

/// Where and how a fail-over launches a target in the DR region. Every field is optional; what the
/// targets file leaves out comes from the fleet-wide `DR_*` environment variables, and what both leave
/// out has the default given below. Keys in the targets file (`"dr": {…}`) are snake_case; an unknown
/// key is refused, so a typo cannot silently drop a DR setting.
public struct DRLaunchSettings: Codable, Sendable, Equatable {
    /// The subnet of the DR instance. None: AWS's default VPC of the DR region (pre-flight reports it).
    public var subnetId: String?
    /// Its security groups. None: the VPC's default group (pre-flight reports it).
    public var securityGroupIds: [String]?
    /// None: the original instance's type.
    public var instanceType: String?
    public var keyName: String?
    /// An instance profile ARN (`arn:…`) or name.
    public var iamInstanceProfile: String?
    /// The Elastic IP the DR instance gets. None: the actuator reuses the address tagged
    /// `AutoRecovery:DrFor=<target>` in the DR region, or allocates one with that tag.
    public var elasticIpAllocationId: String?
    /// With `recordName`: after the launch, this A record is pointed at the DR address.
    public var hostedZoneId: String?
    public var recordName: String?
    /// Default 60 s.
    public var recordTTL: Int?

    public init(
        subnetId: String? = nil, securityGroupIds: [String]? = nil, instanceType: String? = nil, keyName: String? = nil,
        iamInstanceProfile: String? = nil, elasticIpAllocationId: String? = nil, hostedZoneId: String? = nil,
        recordName: String? = nil, recordTTL: Int? = nil
    ) {
        self.subnetId = subnetId
        self.securityGroupIds = securityGroupIds
        self.instanceType = instanceType
        self.keyName = keyName
        self.iamInstanceProfile = iamInstanceProfile
        self.elasticIpAllocationId = elasticIpAllocationId
        self.hostedZoneId = hostedZoneId
        self.recordName = recordName
        self.recordTTL = recordTTL
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case subnetId = "subnet_id"
        case securityGroupIds = "security_group_ids"
        case instanceType = "instance_type"
        case keyName = "key_name"
        case iamInstanceProfile = "iam_instance_profile"
        case elasticIpAllocationId = "elastic_ip_allocation_id"
        case hostedZoneId = "hosted_zone_id"
        case recordName = "record_name"
        case recordTTL = "record_ttl"
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let all = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = all.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw ConfigurationError(
                "unknown DR setting '\(unknown)'; expected one of \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        subnetId = try c.decodeIfPresent(String.self, forKey: .subnetId)
        securityGroupIds = try c.decodeIfPresent([String].self, forKey: .securityGroupIds)
        instanceType = try c.decodeIfPresent(String.self, forKey: .instanceType)
        keyName = try c.decodeIfPresent(String.self, forKey: .keyName)
        iamInstanceProfile = try c.decodeIfPresent(String.self, forKey: .iamInstanceProfile)
        elasticIpAllocationId = try c.decodeIfPresent(String.self, forKey: .elasticIpAllocationId)
        hostedZoneId = try c.decodeIfPresent(String.self, forKey: .hostedZoneId)
        recordName = try c.decodeIfPresent(String.self, forKey: .recordName)
        recordTTL = try c.decodeIfPresent(Int.self, forKey: .recordTTL)
        if let recordTTL, !(0...172_800).contains(recordTTL) {
            throw ConfigurationError("record_ttl must be 0…172800 seconds, not \(recordTTL)")
        }
    }

    /// These settings, with each field left out taken from `fallback`.
    public func over(_ fallback: DRLaunchSettings) -> DRLaunchSettings {
        DRLaunchSettings(
            subnetId: subnetId ?? fallback.subnetId, securityGroupIds: securityGroupIds ?? fallback.securityGroupIds,
            instanceType: instanceType ?? fallback.instanceType, keyName: keyName ?? fallback.keyName,
            iamInstanceProfile: iamInstanceProfile ?? fallback.iamInstanceProfile,
            elasticIpAllocationId: elasticIpAllocationId ?? fallback.elasticIpAllocationId,
            hostedZoneId: hostedZoneId ?? fallback.hostedZoneId, recordName: recordName ?? fallback.recordName,
            recordTTL: recordTTL ?? fallback.recordTTL)
    }

    /// The fleet-wide DR settings from `DR_SUBNET_ID`, `DR_SECURITY_GROUP_IDS` (comma-separated),
    /// `DR_INSTANCE_TYPE`, `DR_KEY_NAME`, `DR_IAM_INSTANCE_PROFILE`, `DR_ELASTIC_IP_ALLOCATION_ID`,
    /// `DR_HOSTED_ZONE_ID` and `DR_RECORD_TTL`. (A record name is per target: targets file only.)
    public static func fromEnvironment(_ env: WorkerEnvironment) throws -> DRLaunchSettings {
        let groups = env.list("DR_SECURITY_GROUP_IDS")
        return DRLaunchSettings(
            subnetId: env.string("DR_SUBNET_ID"), securityGroupIds: groups.isEmpty ? nil : groups,
            instanceType: env.string("DR_INSTANCE_TYPE"), keyName: env.string("DR_KEY_NAME"),
            iamInstanceProfile: env.string("DR_IAM_INSTANCE_PROFILE"),
            elasticIpAllocationId: env.string("DR_ELASTIC_IP_ALLOCATION_ID"),
            hostedZoneId: env.string("DR_HOSTED_ZONE_ID"),
            recordName: nil,
            recordTTL: env.string("DR_RECORD_TTL") == nil ? nil : try env.int("DR_RECORD_TTL", default: 60))
    }

    /// `iamInstanceProfile` as RunInstances takes it.
    var instanceProfile: IAMInstanceProfile? {
        iamInstanceProfile.map { $0.hasPrefix("arn:") ? .arn($0) : .name($0) }
    }
}

/// A target's SSM settings (targets file or instance-config table keys `ssm_restart`, `ssm_services`,
/// `ssm_diagnostics`; docs/actuator.md, "SSM").
public struct SSMTargetSettings: Sendable, Equatable {
    /// Restart step: restart `services` with SSM and verify before rebooting.
    public var restart: Bool = false
    /// The systemd units restart-services restarts.
    public var services: [String] = []
    /// Collect diagnostics before and after destructive actions. Defaults to `restart`.
    public var diagnostics: Bool = false

    public init(restart: Bool = false, services: [String] = [], diagnostics: Bool? = nil) {
        self.restart = restart
        self.services = services
        self.diagnostics = diagnostics ?? restart
    }

    /// The allowed characters of a unit name (restart-services' `allowedPattern` refuses others too).
    static let unitCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._-")

    /// From a target's merged settings object; throws for a wrong type or an unusable unit name.
    static func parse(restart: JSONValue?, services: JSONValue?, diagnostics: JSONValue?, target: String) throws
        -> SSMTargetSettings
    {
        func bool(_ value: JSONValue?, _ key: String) throws -> Bool? {
            switch value {
            case nil, .null?: return nil
            case .bool(let b)?: return b
            default: throw ConfigurationError("\(key) of target '\(target)' must be true or false")
            }
        }
        var units: [String] = []
        switch services {
        case nil, .null?: break
        case .array(let items)?:
            for item in items {
                guard let unit = item.stringValue, !unit.isEmpty, unit.allSatisfy(unitCharacters.contains) else {
                    throw ConfigurationError(
                        "ssm_services of target '\(target)' must be systemd unit names (letters, digits, @._-)")
                }
                units.append(unit)
            }
        default: throw ConfigurationError("ssm_services of target '\(target)' must be a list of unit names")
        }
        let restartOn = try bool(restart, "ssm_restart") ?? false
        if restartOn && units.isEmpty {
            throw ConfigurationError("ssm_restart of target '\(target)' needs ssm_services (the units to restart)")
        }
        return SSMTargetSettings(
            restart: restartOn, services: units, diagnostics: try bool(diagnostics, "ssm_diagnostics"))
    }
}

/// What the actuator knows about one target from configuration.
public struct ActuatorTargetConfig: Sendable, Equatable {
    /// Used when the instance has no `AutoRecovery:HealthUrl` tag.
    public var healthURL: String?
    /// Expected status and body text of a healthy answer.
    public var settings: TargetSettings
    /// Plan and report only; no mutating call.
    public var dryRun: Bool
    /// The target's DR settings laid over the fleet-wide ones.
    public var dr: DRLaunchSettings
    public var drRegion: String?
    public var fleetTag: String?
    /// SSM restart and diagnostics.
    public var ssm = SSMTargetSettings()
}

/// The actuator's configuration source: the targets file plus the fleet-wide environment settings.
public struct ActuatorConfig: Sendable {
    public var file: TargetConfigFile
    /// DRY_RUN=true: every target is dry-run.
    public var fleetDryRun: Bool
    public var drDefaults: DRLaunchSettings
    public var defaultDRRegion: String?
    /// FLEET_TAG: a replacement always carries `AutoRecovery:Fleet=<value>`, even when the original's
    /// tags could not be read, so this fleet keeps finding it.
    public var fleetTag: String?
    /// When set (INSTANCE_CONFIG_TABLE), `refreshed()` reads the table again over `file`.
    public var source: TargetConfigSource?

    public init(
        file: TargetConfigFile = .empty, fleetDryRun: Bool = false, drDefaults: DRLaunchSettings = DRLaunchSettings(),
        defaultDRRegion: String? = nil, fleetTag: String? = nil, source: TargetConfigSource? = nil
    ) {
        self.file = file
        self.source = source
        self.fleetDryRun = fleetDryRun
        self.drDefaults = drDefaults
        self.defaultDRRegion = defaultDRRegion
        self.fleetTag = fleetTag
    }

    /// From TARGETS_FILE, DRY_RUN, DR_REGION and the DR_* variables.
    /// With `aws`, INSTANCE_CONFIG_TABLE (when set) is laid over the targets file and read per request.
    public static func fromEnvironment(
        _ env: WorkerEnvironment, aws: AWSClient? = nil, logger: Logger = Logger(label: "target-config")
    ) throws -> ActuatorConfig {
        let dryRun: Bool
        switch env.string("DRY_RUN")?.lowercased() {
        case nil, "false", "0", "no", "off": dryRun = false
        case "true", "1", "yes", "on": dryRun = true
        case let other?: throw ConfigurationError("DRY_RUN must be true or false, not '\(other)'")
        }
        return ActuatorConfig(
            file: try env.targetsFile(), fleetDryRun: dryRun, drDefaults: try .fromEnvironment(env),
            defaultDRRegion: env.drRegion, fleetTag: env.fleetTag,
            source: try aws.map { try env.targetConfigSource(aws: $0, logger: logger) })
    }

    /// This configuration with the instance-config table read again (itself when there is no table).
    public func refreshed() async throws -> ActuatorConfig {
        guard let source, source.table != nil else { return self }
        var copy = self
        copy.file = try await source.current()
        return copy
    }

    public func target(_ name: String) throws -> ActuatorTargetConfig {
        let entry = try file.entry(for: name)
        return ActuatorTargetConfig(
            healthURL: entry.healthURL, settings: entry.settings, dryRun: fleetDryRun || entry.dryRun,
            dr: entry.dr.over(drDefaults), drRegion: entry.drRegion ?? defaultDRRegion, fleetTag: fleetTag,
            ssm: entry.ssm)
    }
}
