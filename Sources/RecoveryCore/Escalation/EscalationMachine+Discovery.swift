import Foundation

/// Following discovery (issue 14, gap 4; docs/escalation.md, "Following discovery").
///
/// `currentInstance` moves when a step's outcome says so. If that record is wrong (a replayed or lost
/// outcome, an instance replaced by hand), the machine would watch and act on an instance that no longer
/// serves the site: a restart would start a stopped original next to the healthy replacement. Every
/// probe says which instance discovery finds serving the target; when that differs from the record for
/// `sightingsToFollow` probes in a row:
/// - with no incident open, the machine follows discovery (and says so);
/// - during an incident (not while a step runs: its outcome moves the target), automation stops and a
///   person decides: the next step would act on an instance that may not be the one serving the site.
extension EscalationMachine {
    public struct Sighting: Codable, Sendable, Equatable {
        public var instance: InstanceRef
        /// Probes in a row that named it.
        public var observations: Int
        /// The incident was stopped because of it.
        public var reported: Bool
    }

    /// Probes in a row (at least; also at least the recovery threshold) before the machine acts on a
    /// different discovered instance: one discovery run that picks another instance moves nothing.
    public static let sightingsToFollow = 3

    mutating func followDiscovery(_ discovered: InstanceRef, _ c: inout Context) {
        guard discovered.id != currentInstance.id else {
            servedElsewhere = nil
            return
        }
        if case .inProgress = incident?.phase {
            servedElsewhere = nil
            return
        }
        var sighting =
            servedElsewhere?.instance.id == discovered.id
            ? servedElsewhere! : Sighting(instance: discovered, observations: 0, reported: false)
        sighting.observations += 1
        servedElsewhere = sighting
        guard sighting.observations >= max(Self.sightingsToFollow, settings.recoveryThreshold) else { return }
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
