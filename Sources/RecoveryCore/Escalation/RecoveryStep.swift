import Foundation

/// One rung of the escalation ladder. The raw value is what travels in messages and idempotency keys.
///
///     restart -> reprovision -> failover -> notifyOnly
///
/// `restart` reboots the instance in place; `reprovision` launches a new instance in the same region from
/// the latest tagged snapshot and moves the Elastic IP to it; `failover` does the same in the disaster
/// recovery region; `notifyOnly` tells the admins and does nothing to the infrastructure.
public enum RecoveryStep: String, Codable, Sendable, CaseIterable, Comparable {
    case restart
    case reprovision
    case failover
    case notifyOnly = "notify_only"

    /// The ladder, in order: the one place that says which rung follows which. `forOutage`, `next` and
    /// the ordering are derived from it; a new rung goes here (and gets its actuator step).
    public static let ladder: [RecoveryStep] = [.restart, .reprovision, .failover, .notifyOnly]

    /// The step for the n-th outage (1-based) within the outage-count window: 1 restart, 2 reprovision,
    /// 3 failover, 4 and later notify only.
    public static func forOutage(number: Int) -> RecoveryStep {
        ladder[min(max(number, 1), ladder.count) - 1]
    }

    /// The step to try when this one did not bring the site back (the last rung stays).
    public var next: RecoveryStep { Self.ladder[min(rank + 1, Self.ladder.count - 1)] }

    /// Whether the step changes infrastructure (and so is subject to the brake, holds and approval).
    public var isDestructive: Bool { self != .notifyOnly }

    /// The recoveryctl verb that runs this step by hand, if there is one.
    public var commandName: OperatorCommand.Name? {
        switch self {
        case .restart: .restart
        case .reprovision: .reprovision
        case .failover: .failover
        case .notifyOnly: nil
        }
    }

    private var rank: Int { Self.ladder.firstIndex(of: self)! }

    public static func < (lhs: RecoveryStep, rhs: RecoveryStep) -> Bool { lhs.rank < rhs.rank }
}

/// An EC2 instance and the region it runs in.
public struct InstanceRef: Codable, Sendable, Hashable, CustomStringConvertible {
    public var id: String
    public var region: String

    public init(id: String, region: String) {
        self.id = id
        self.region = region
    }

    public var description: String { "\(id) (\(region))" }
}

/// Who a target is, independent of the instance that serves it at the moment.
///
/// `name` is the stable identity: the instance's `AutoRecovery:Name` tag, or, when the tag is missing,
/// the id of the original instance. It survives re-provisioning and fail-over, and it is the key of the
/// target's state in Redis and the `target` of every message about it.
public struct TargetIdentity: Codable, Sendable, Equatable {
    public var name: String
    /// The region the target normally runs in.
    public var homeRegion: String
    /// The disaster-recovery region for `failover`. Without one, a fail-over is a "human needed" stop.
    public var drRegion: String?
    /// The Elastic IP allocation to move to a re-provisioned instance (the actuator can also find it on
    /// the old instance; this is what it falls back to when the old instance is gone).
    public var elasticIpAllocationId: String?

    public init(name: String, homeRegion: String, drRegion: String? = nil, elasticIpAllocationId: String? = nil) {
        self.name = name
        self.homeRegion = homeRegion
        self.drRegion = drRegion
        self.elasticIpAllocationId = elasticIpAllocationId
    }

    /// The identity for an instance: its `AutoRecovery:Name` tag when it has a non-empty one, else its id.
    public init(
        nameTag: String?, instanceId: String, homeRegion: String, drRegion: String? = nil,
        elasticIpAllocationId: String? = nil
    ) {
        let tag = nameTag?.trimmingCharacters(in: .whitespacesAndNewlines)
        self.init(
            name: (tag?.isEmpty ?? true) ? instanceId : tag!, homeRegion: homeRegion, drRegion: drRegion,
            elasticIpAllocationId: elasticIpAllocationId)
    }

    /// The longest target name: the name appears twice in a step's idempotency key, which travels as an
    /// AMQP `message_id` (at most 255 bytes).
    public static let maxNameBytes = 64

    /// Why `name` cannot be a target's name, or nil when it can.
    public static func nameProblem(_ name: String) -> String? {
        let bytes = name.utf8.count
        guard bytes <= maxNameBytes else {
            return
                "the target name '\(name.prefix(40))…' is \(bytes) bytes long, more than \(maxNameBytes); shorten its AutoRecovery:Name tag"
        }
        guard !name.contains("{"), !name.contains("}") else {
            return
                "the target name '\(name)' holds '{' or '}', which the target's lock refuses; fix its AutoRecovery:Name tag"
        }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            return "the target name \(name.debugDescription) holds a control character; fix its AutoRecovery:Name tag"
        }
        return nil
    }

    /// Where a fail-over from `region` goes: the DR region, or home when the target already runs in the
    /// DR region. Nil when no DR region is configured.
    public func failoverRegion(from region: String) -> String? {
        guard let drRegion, drRegion != homeRegion else { return nil }
        return region == drRegion ? homeRegion : drRegion
    }

    enum CodingKeys: String, CodingKey {
        case name
        case homeRegion = "home_region"
        case drRegion = "dr_region"
        case elasticIpAllocationId = "elastic_ip_allocation_id"
    }
}
