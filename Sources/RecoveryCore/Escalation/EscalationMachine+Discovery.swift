import Foundation

/// Where the target runs: moves, the displaced original, and following discovery (issue 14, gap 4;
/// docs/escalation.md, "Following discovery").
///
/// `currentInstance` moves when a step's outcome says so. If that record is wrong (a replayed or lost
/// outcome, an instance replaced by hand), the machine would watch and act on an instance that no longer
/// serves the site: a restart would start a stopped original next to the healthy replacement. Every
/// probe from a fresh discovery says which instance serves the target; when that differs from the record
/// in `sightingsToFollow` probes in a row spread over at least `sightingSpan`:
/// - with no incident open, the machine follows discovery (and says so);
/// - during an incident (not while a step runs: its outcome moves the target), automation stops and a
///   person decides: the next step would act on an instance that may not be the one serving the site.
/// It never follows back to an instance the target moved away from (`leftInstances`): a prober's stale
/// list naming the replaced original must not undo a re-provision.
extension EscalationMachine {
    /// The instance the target ran on before a re-provision or fail-over moved it.
    public struct DisplacedInstance: Codable, Sendable, Equatable {
        public var instance: InstanceRef
        public var successes: Int
        public var reported: Bool
    }

    public struct Sighting: Codable, Sendable, Equatable {
        public var instance: InstanceRef
        /// Probes in a row that named it.
        public var observations: Int
        /// The incident was stopped because of it.
        public var reported: Bool
        /// When the first of them came (absent in sightings stored before it: counted from the next one).
        public var firstSeen: Date?
    }

    /// Probes in a row (at least; also at least the recovery threshold) before the machine acts on a
    /// different discovered instance.
    public static let sightingsToFollow = 3
    /// ...and over at least this long, so that more than one discovery run (every minute by default) and
    /// more than one prober's view stand behind it.
    public static let sightingSpan: TimeInterval = 600
    /// How many left instances are remembered.
    static let leftMemory = 10

    mutating func move(to instance: InstanceRef) {
        let from = incident?.startInstance ?? currentInstance
        if displaced == nil || displaced!.reported {
            displaced = DisplacedInstance(instance: from, successes: 0, reported: false)
        }
        if displaced?.instance.id == instance.id { displaced = nil }
        var left = (leftInstances ?? []).filter { $0 != instance.id && $0 != currentInstance.id }
        left.append(currentInstance.id)
        leftInstances = Array(left.suffix(Self.leftMemory))
        currentInstance = instance
        health = HealthStreaks()
    }

    mutating func followDiscovery(_ discovered: InstanceRef, _ c: inout Context) {
        let ignored =
            discovered.id == currentInstance.id || leftInstances?.contains(discovered.id) == true
            || { if case .inProgress = incident?.phase { true } else { false } }()
        guard !ignored else {
            servedElsewhere = nil
            return
        }
        var sighting =
            servedElsewhere?.instance.id == discovered.id
            ? servedElsewhere! : Sighting(instance: discovered, observations: 0, reported: false, firstSeen: c.now)
        sighting.observations += 1
        if sighting.firstSeen == nil { sighting.firstSeen = c.now }
        servedElsewhere = sighting
        guard sighting.observations >= max(Self.sightingsToFollow, settings.recoveryThreshold),
            let first = sighting.firstSeen, c.now.timeIntervalSince(first) >= Self.sightingSpan
        else { return }
        guard let incident else {
            let from = currentInstance
            move(to: discovered)
            servedElsewhere = nil
            var notice = baseNotice(.instanceFollowed, id: "\(target):instance_followed:\(discovered.id)", c)
            notice.reason = .instanceFollowed(target: target, from: from, to: discovered)
            c.actions.append(.notify(notice))
            return
        }
        guard !sighting.reported else { return }
        servedElsewhere?.reported = true
        if case .stopped = incident.phase { return }
        stop(.humanNeeded(NoticeReason.servedElsewhere(discovered, recorded: currentInstance)), &c)
    }
}
