import AWSClient
import FleetRuntime
import Foundation
import Logging
import RecoveryCore

/// A website the fleet watches: one EC2 instance that opted in with `AutoRecovery=enabled`.
public struct Target: Sendable, Equatable {
    public var identity: TargetIdentity
    /// The instance serving the target now.
    public var instance: InstanceRef
    public var instanceState: String
    /// From the tag `AutoRecovery:HealthUrl`, else the target's config.
    public var healthURL: String?
    public var settings: TargetSettings
    /// Instances this target ran on before a re-provision or fail-over (tagged `AutoRecovery:ReplacedBy`,
    /// kept stopped by the actuator). The probe watches their EC2 status, so the decision worker can say
    /// when the original instance comes back.
    public var displaced: [InstanceRef]

    public var name: String { identity.name }

    public init(
        identity: TargetIdentity, instance: InstanceRef, instanceState: String, healthURL: String?,
        settings: TargetSettings,
        displaced: [InstanceRef] = []
    ) {
        self.identity = identity
        self.instance = instance
        self.instanceState = instanceState
        self.healthURL = healthURL
        self.settings = settings
        self.displaced = displaced
    }
}

/// Per-target configuration from a JSON file (the instance-config table, `TargetConfigTable`, is laid over it):
///
///     {
///       "defaults": {"dr_region": "us-west-2", "grace_period": 300},
///       "targets": {
///         "shop-web": {"health_url": "https://shop.example.com/health", "requires_approval": true,
///                      "elastic_ip_allocation_id": "eipalloc-0abc", "dry_run": false,
///                      "dr": {"subnet_id": "subnet-0dr", "record_name": "shop.example.com"}}
///       }
///     }
///
/// Each target's object is laid over `defaults` key by key (the `dr` and `notify` objects one level deeper, so shared
/// DR settings can sit in `defaults`); settings keys are those of `TargetSettings` (docs/escalation.md),
/// `dry_run` and `dr` are the actuator's (docs/actuator.md), and any key left out keeps its default.
public struct TargetConfigFile: Sendable {
    public struct Entry: Sendable, Equatable {
        public var healthURL: String?
        public var drRegion: String?
        public var elasticIpAllocationId: String?
        public var settings: TargetSettings
        /// The actuator only plans and reports this target's steps (docs/actuator.md).
        public var dryRun: Bool = false
        /// Where a fail-over launches this target in the DR region (docs/actuator.md).
        public var dr: DRLaunchSettings = DRLaunchSettings()
        /// The target's own notification channels over the fleet's (docs/notifications.md); nil: the fleet's.
        public var notify: TargetNotify?
        /// SSM restart and diagnostics (docs/actuator.md, "SSM").
        public var ssm = SSMTargetSettings()
    }

    /// Objects merged one level deeper, so shared DR or notification settings can sit in `defaults` and
    /// a target (or its table item) overrides single keys of them.
    static let nestedKeys = ["dr", "notify"]

    private var defaults: [String: JSONValue]
    private var targets: [String: [String: JSONValue]]

    public static let empty = TargetConfigFile(defaults: [:], targets: [:])

    init(defaults: [String: JSONValue], targets: [String: [String: JSONValue]]) {
        self.defaults = defaults
        self.targets = targets
    }

    public init(data: Data, source: String = "targets file") throws {
        let root: JSONValue
        do { root = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw ConfigurationError("\(source) is not valid JSON: \(error)")
        }
        guard case .object(let object) = root else { throw ConfigurationError("\(source) must hold a JSON object") }
        if let unknown = object.keys.first(where: { $0 != "defaults" && $0 != "targets" }) {
            throw ConfigurationError(
                "\(source): unknown top-level key '\(unknown)' (expected 'defaults' and 'targets')")
        }
        var defaults: [String: JSONValue] = [:]
        if let d = object["defaults"] {
            guard case .object(let o) = d else { throw ConfigurationError("\(source): 'defaults' must be an object") }
            defaults = o
        }
        var targets: [String: [String: JSONValue]] = [:]
        if let t = object["targets"] {
            guard case .object(let o) = t else {
                throw ConfigurationError("\(source): 'targets' must be an object of target name to settings")
            }
            for (name, value) in o {
                guard case .object(let settings) = value else {
                    throw ConfigurationError("\(source): target '\(name)' must be an object")
                }
                targets[name] = settings
            }
        }
        self.init(defaults: defaults, targets: targets)
        // Validate every entry now, so a typo stops the worker at start-up with a clear message.
        for name in targets.keys { _ = try entry(for: name) }
        _ = try entry(for: "(defaults)")
    }

    public static func load(path: String) throws -> TargetConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("cannot read targets file \(path)")
        }
        return try TargetConfigFile(data: data, source: path)
    }

    /// The names configured in the file.
    public var names: [String] { targets.keys.sorted() }

    /// This configuration with `overrides` laid over each named target's object, key by key (the `dr`
    /// and `notify` objects one level deeper); the overrides win. The instance-config table's items arrive this way.
    func overlaid(with overrides: [String: [String: JSONValue]]) -> TargetConfigFile {
        var targets = self.targets
        for (name, own) in overrides {
            let base = targets[name] ?? [:]
            var merged = base.merging(own) { $1 }
            for key in Self.nestedKeys {
                if case .object(let b)? = base[key], case .object(let o)? = own[key] {
                    merged[key] = .object(b.merging(o) { $1 })
                }
            }
            targets[name] = merged
        }
        return TargetConfigFile(defaults: defaults, targets: targets)
    }

    public func entry(for target: String) throws -> Entry {
        var merged = defaults.merging(targets[target] ?? [:]) { $1 }
        for key in Self.nestedKeys {
            if case .object(let base)? = defaults[key], case .object(let own)? = targets[target]?[key] {
                merged[key] = .object(base.merging(own) { $1 })
            }
        }
        let data = try JSONEncoder().encode(JSONValue.object(merged))
        let settings: TargetSettings
        do { settings = try JSONDecoder().decode(TargetSettings.self, from: data) } catch {
            throw ConfigurationError("settings of target '\(target)' are invalid: \(error)")
        }
        do { try settings.validate(target: target) } catch { throw ConfigurationError("\(error)") }
        var dryRun = false
        switch merged["dry_run"] {
        case nil, .null?: break
        case .bool(let b)?: dryRun = b
        default: throw ConfigurationError("dry_run of target '\(target)' must be true or false")
        }
        var dr = DRLaunchSettings()
        if let value = merged["dr"], value != .null {
            guard case .object = value else { throw ConfigurationError("dr of target '\(target)' must be an object") }
            do { dr = try JSONDecoder().decode(DRLaunchSettings.self, from: JSONEncoder().encode(value)) } catch {
                throw ConfigurationError("dr settings of target '\(target)' are invalid: \(error)")
            }
        }
        var notify: TargetNotify?
        if let value = merged["notify"], value != .null { notify = try TargetNotify(value, target: target) }
        let ssm = try SSMTargetSettings.parse(
            restart: merged["ssm_restart"], services: merged["ssm_services"],
            diagnostics: merged["ssm_diagnostics"], target: target)
        return Entry(
            healthURL: merged["health_url"]?.stringValue, drRegion: merged["dr_region"]?.stringValue,
            elasticIpAllocationId: merged["elastic_ip_allocation_id"]?.stringValue, settings: settings,
            dryRun: dryRun, dr: dr, notify: notify, ssm: ssm)
    }
}

/// Finds the targets: instances tagged `AutoRecovery=enabled` in the primary region (and the DR
/// region, where a failed-over target now runs), merged with the config file.
public struct TargetCatalog: Sendable {
    public static let optInTag = "AutoRecovery"
    public static let nameTag = "AutoRecovery:Name"
    public static let healthURLTag = "AutoRecovery:HealthUrl"
    public static let replacedByTag = "AutoRecovery:ReplacedBy"
    /// With a fleet name, only instances tagged `AutoRecovery:Fleet=<name>` belong to this fleet, so
    /// several fleets (or environments) can share an account and region.
    public static let fleetTag = "AutoRecovery:Fleet"
    /// Set by the actuator's quarantine repair (`<time> <reason>`). A target whose instance has it is
    /// quarantined whatever its configuration says: watched and reported, never acted on.
    public static let quarantinedTag = "AutoRecovery:Quarantined"

    let ec2: EC2Client
    let drRegion: String?
    let source: TargetConfigSource
    let fleet: String?
    let logger: Logger

    public init(ec2: EC2Client, drRegion: String?, config: TargetConfigFile, fleet: String? = nil, logger: Logger) {
        self.init(ec2: ec2, drRegion: drRegion, source: .fixed(config), fleet: fleet, logger: logger)
    }

    /// With a source that has an instance-config table, every discovery reads the table again.
    public init(ec2: EC2Client, drRegion: String?, source: TargetConfigSource, fleet: String? = nil, logger: Logger) {
        self.ec2 = ec2
        self.drRegion = drRegion
        self.source = source
        self.fleet = fleet
        self.logger = logger
    }

    public func discover() async throws -> [Target] {
        var found: [(EC2Instance, String)] = []
        let regions = [ec2.region] + (drRegion.flatMap { $0 == ec2.region ? nil : [$0] } ?? [])
        for region in regions {
            let client = region == ec2.region ? ec2 : ec2.withRegion(region)
            var filters: [EC2Filter] = [
                .tag(Self.optInTag, "enabled"),
                .instanceState(.pending, .running, .stopping, .stopped),
            ]
            if let fleet { filters.append(.tag(Self.fleetTag, fleet)) }
            let instances = try await client.describeInstances(filters: filters)
            found += instances.map { ($0, region) }
        }
        return try Self.targets(
            from: found, homeRegion: ec2.region, defaultDR: drRegion, config: try await source.current()
        ) {
            // Said at every discovery until fixed: the target is not watched meanwhile.
            self.logger.error("target refused: \($0)")
            FleetMetrics.targetsRefused.increment()
        }
    }

    /// Groups instances by target name and picks the one serving it: not replaced, running, newest.
    /// An instance whose name cannot be a target's (`TargetIdentity.nameProblem`) is left out and
    /// `refuse` says why.
    static func targets(
        from instances: [(EC2Instance, String)], homeRegion: String, defaultDR: String?,
        config: TargetConfigFile, refuse: (String) -> Void = { _ in }
    ) throws -> [Target] {
        var byName: [String: [(EC2Instance, String)]] = [:]
        for (instance, region) in instances {
            let identity = TargetIdentity(
                nameTag: instance.tags[nameTag], instanceId: instance.instanceId, homeRegion: homeRegion)
            if let problem = TargetIdentity.nameProblem(identity.name) {
                refuse("\(instance.instanceId) in \(region): \(problem)")
                continue
            }
            byName[identity.name, default: []].append((instance, region))
        }
        return try byName.keys.sorted().map { name in
            let candidates = byName[name]!
            let chosen = candidates.max { a, b in rank(a.0) < rank(b.0) }!
            let entry = try config.entry(for: name)
            var settings = entry.settings
            if let tag = chosen.0.tags[quarantinedTag], !tag.isEmpty { settings.quarantined = true }
            let identity = TargetIdentity(
                name: name, homeRegion: homeRegion, drRegion: entry.drRegion ?? defaultDR,
                elasticIpAllocationId: entry.elasticIpAllocationId)
            let displaced =
                candidates
                .filter { $0.0.instanceId != chosen.0.instanceId && $0.0.tags[replacedByTag] != nil }
                .map { InstanceRef(id: $0.0.instanceId, region: $0.1) }
                .sorted { $0.id < $1.id }
            return Target(
                identity: identity, instance: InstanceRef(id: chosen.0.instanceId, region: chosen.1),
                instanceState: chosen.0.state.rawValue,
                healthURL: chosen.0.tags[healthURLTag] ?? entry.healthURL, settings: settings, displaced: displaced)
        }
    }

    private static func rank(_ i: EC2Instance) -> (Int, Int, Double) {
        (i.tags[replacedByTag] == nil ? 1 : 0, i.state == .running ? 1 : 0, i.launchTime?.timeIntervalSince1970 ?? 0)
    }
}

public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
