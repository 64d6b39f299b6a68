import Foundation

/// A target's stored document (`TargetMachine`, and the ladder alone for `StateCodec.decodeMachine`) written
/// and read without Foundation's Codable coders, which were half of the decision worker's CPU per event: a
/// healthy target's 9 KB document took 101–137 µs to encode and about as long to decode through them, for
/// every event (docs/benchmarks.md).
///
/// The writer writes the bytes `Timestamp.jsonEncoder()` writes for the same value (`TargetStateJSONTests`
/// hold the two to the same bytes over random ladders of `EscalationPropertyTests`). The reader reads
/// the shape this build writes; what a healthy target rarely carries (an open incident, a displaced
/// instance, a repair plan, messages in the outbox, maintenance windows) goes through the Codable coders
/// for that part alone. Anything else it does not expect (another schema version, an unknown key, a
/// `null`) makes it give up, and `StateCodec` reads the document with the Codable decoder, which reads it
/// or words the error: so the fast path never decides alone what a document means.
///
/// A field added to one of the types written here must be added here too: `TargetStateJSONTests` counts
/// their fields.
enum TargetStateJSON {
    // MARK: Writing

    static func encode(_ target: TargetMachine) throws -> [UInt8] {
        var w = JSONBytesWriter(capacity: 10_240)
        w.open()
        if let probe = target.lastProbe {
            w.key("last_probe")
            w.open()
            w.field("at", probe.at)
            if let v = probe.detail { w.field("detail", v) }
            w.field("healthy", probe.healthy)
            if let v = probe.instanceId { w.field("instance_id", v) }
            w.field("prober", probe.prober)
            w.close()
        }
        w.key("machine")
        try machine(target.ladder, &w)
        if target.outbox.isEmpty {
            w.key("outbox")
            w.raw("[]")
        } else {
            try w.field("outbox", encoding: target.outbox)
        }
        if let v = target.repair { try w.field("repair", encoding: v) }
        w.close()
        return w.bytes
    }

    static func encode(_ ladder: EscalationMachine) throws -> [UInt8] {
        var w = JSONBytesWriter(capacity: 10_240)
        try machine(ladder, &w)
        return w.bytes
    }

    private static func machine(_ m: EscalationMachine, _ w: inout JSONBytesWriter) throws {
        w.open()
        w.key("currentInstance")
        instance(m.currentInstance, &w)
        if let v = m.displaced { try w.field("displaced", encoding: v) }
        w.key("health")
        try health(m.health, &w)
        w.key("identity")
        w.open()
        if let v = m.identity.drRegion { w.field("dr_region", v) }
        if let v = m.identity.elasticIpAllocationId { w.field("elastic_ip_allocation_id", v) }
        w.field("home_region", m.identity.homeRegion)
        w.field("name", m.identity.name)
        w.close()
        w.field("incidentCount", m.incidentCount)
        if let v = m.lastIncidentId { w.field("lastIncidentId", v) }
        if let v = m.lastMoveKey { w.field("lastMoveKey", v) }
        if let v = m.leftInstances { w.field("leftInstances", v) }
        w.field("outageTimes", m.outageTimes)
        w.field("recentEventIds", hexDigits: m.recentEventIds.stored)
        w.field("requestedKeys", m.requestedKeys)
        if let v = m.scheduledWakeUp { w.field("scheduledWakeUp", v) }
        w.field("schemaVersion", m.schemaVersion)
        if let v = m.selfRecoveries { w.field("selfRecoveries", v) }
        if let v = m.servedElsewhere { try w.field("servedElsewhere", encoding: v) }
        w.key("settings")
        try settings(m.settings, &w)
        if case .monitoring = m.state {
            w.key("state")
            w.raw(#"{"monitoring":{}}"#)
        } else {
            try w.field("state", encoding: m.state)
        }
        w.close()
    }

    private static func instance(_ i: InstanceRef, _ w: inout JSONBytesWriter) {
        w.open()
        w.field("id", i.id)
        w.field("region", i.region)
        w.close()
    }

    private static func health(_ h: EscalationMachine.HealthStreaks, _ w: inout JSONBytesWriter) throws {
        w.open()
        if let v = h.downSince { w.field("downSince", v) }
        w.field("failingProbers", h.failingProbers)
        w.field("failures", h.failures)
        if let v = h.healthySince { w.field("healthySince", v) }
        if let seen = h.seenProbers {
            w.key("seenProbers")
            w.open()
            // The Codable encoder sorts a dictionary's keys by their bytes.
            for (prober, at) in seen.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
                w.field(prober, at)
            }
            w.close()
        }
        w.field("successes", h.successes)
        if let window = h.window {
            w.key("window")
            w.openArray()
            for check in window {
                w.element()
                w.open()
                w.field("failed", check.failed)
                w.field("prober", check.prober)
                w.close()
            }
            w.closeArray()
        }
        w.close()
    }

    private static func settings(_ s: TargetSettings, _ w: inout JSONBytesWriter) throws {
        w.open()
        try w.field("approval_timeout", s.approvalTimeout)
        if let v = s.bodyMatch { w.field("body_match", v) }
        w.key("expected_status")
        w.openArray()
        for range in s.expectedStatus {
            w.element()
            w.raw("[\(range.lowerBound),\(range.upperBound)]")
        }
        w.closeArray()
        try w.field("failover_verification", s.failoverVerification)
        w.field("failure_threshold", s.failureThreshold)
        w.field("failure_window", s.failureWindow)
        w.field("flap_incidents", s.flapIncidents)
        try w.field("flap_window", s.flapWindow)
        try w.field("grace_period", s.gracePeriod)
        if s.maintenance.isEmpty {
            w.key("maintenance")
            w.raw("[]")
        } else {
            try w.field("maintenance", encoding: s.maintenance)
        }
        try w.field("outage_count_window", s.outageCountWindow)
        try w.field("probe_interval", s.probeInterval)
        try w.field("probe_timeout", s.probeTimeout)
        w.field("quarantined", s.quarantined)
        if let v = s.quorum { w.field("quorum", v) }
        w.field("quorum_size", s.quorumSize)
        w.field("recovery_threshold", s.recoveryThreshold)
        try w.field("reprovision_verification", s.reprovisionVerification)
        w.field("requires_approval", s.requiresApproval)
        try w.field("restart_verification", s.restartVerification)
        w.close()
    }

    // MARK: Reading

    /// The document, or nil when it is not of the shape this build writes (then read it with Codable).
    static func decodeTarget(_ bytes: [UInt8]) -> TargetMachine? {
        JSONBytesReader.whole(bytes) { r in
            var ladder: EscalationMachine?
            var outbox: [OutboxItem]?
            var repair: PredictiveRepair?
            var lastProbe: LastProbe?
            try r.beginObject()
            while let key = try r.nextKey() {
                switch key {
                case "machine" where ladder == nil: ladder = try machine(&r)
                case "outbox" where outbox == nil: outbox = try r.emptyArray() ? [] : try r.decode([OutboxItem].self)
                case "repair" where repair == nil: repair = try r.decode(PredictiveRepair.self)
                case "last_probe" where lastProbe == nil: lastProbe = try self.lastProbe(&r)
                default: throw JSONBytesReader.Unexpected()
                }
            }
            guard let ladder, let outbox else { throw JSONBytesReader.Unexpected() }
            return TargetMachine(ladder: ladder, repair: repair, lastProbe: lastProbe, outbox: outbox)
        }
    }

    /// The ladder alone, or nil as above.
    static func decodeMachine(_ bytes: [UInt8]) -> EscalationMachine? {
        JSONBytesReader.whole(bytes) { r in try machine(&r) }
    }

    private static func lastProbe(_ r: inout JSONBytesReader) throws -> LastProbe {
        var at: Date?
        var healthy: Bool?
        var prober: String?
        var instanceId: String?
        var detail: String?
        try r.beginObject()
        while let key = try r.nextKey() {
            switch key {
            case "at" where at == nil: at = try r.date()
            case "healthy" where healthy == nil: healthy = try r.bool()
            case "prober" where prober == nil: prober = try r.string()
            case "instance_id" where instanceId == nil: instanceId = try r.string()
            case "detail" where detail == nil: detail = try r.string()
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard let at, let healthy, let prober else { throw JSONBytesReader.Unexpected() }
        return LastProbe(at: at, healthy: healthy, prober: prober, instanceId: instanceId, detail: detail)
    }

    /// Keys read so far, to refuse one twice and to find a required one missing. `names` are in the
    /// order the writer writes them, so the next key is looked for after the last one first.
    private struct Seen {
        let names: [String]
        private var mask: UInt64 = 0
        private var last = -1

        init(_ names: [String]) { self.names = names }

        mutating func first(_ key: String) throws(JSONBytesReader.Unexpected) {
            let next = last + 1
            let index: Int
            if next < names.count && names[next] == key {
                index = next
            } else {
                guard let found = names.firstIndex(of: key) else { throw JSONBytesReader.Unexpected() }
                index = found
            }
            guard mask & (1 << index) == 0 else { throw JSONBytesReader.Unexpected() }
            mask |= 1 << index
            last = index
        }

        func has(_ required: [String]) -> Bool {
            required.allSatisfy { name in names.firstIndex(of: name).map { mask & (1 << $0) != 0 } ?? false }
        }
    }

    private static let machineKeys = [
        "currentInstance", "displaced", "health", "identity", "incidentCount", "lastIncidentId", "lastMoveKey",
        "leftInstances", "outageTimes", "recentEventIds", "requestedKeys", "scheduledWakeUp", "schemaVersion",
        "selfRecoveries", "servedElsewhere", "settings", "state",
    ]
    private static let healthKeys = [
        "downSince", "failingProbers", "failures", "healthySince", "seenProbers", "successes", "window",
    ]
    private static let settingsKeys = [
        "approval_timeout", "body_match", "expected_status", "failover_verification", "failure_threshold",
        "failure_window", "flap_incidents", "flap_window", "grace_period", "maintenance", "outage_count_window",
        "probe_interval", "probe_timeout", "quarantined", "quorum", "quorum_size", "recovery_threshold",
        "reprovision_verification", "requires_approval", "restart_verification",
    ]

    private static func machine(_ r: inout JSONBytesReader) throws -> EscalationMachine {
        var m = EscalationMachine(
            identity: TargetIdentity(name: "", homeRegion: ""), instance: InstanceRef(id: "", region: ""))
        var seen = Seen(machineKeys)
        try r.beginObject()
        while let key = try r.nextKey() {
            try seen.first(key)
            switch key {
            case "currentInstance": m.currentInstance = try r.instanceRef()
            case "displaced": m.displaced = try r.decode(EscalationMachine.DisplacedInstance.self)
            case "health": m.health = try health(&r)
            case "identity": m.identity = try identity(&r)
            case "incidentCount": m.incidentCount = try r.int()
            case "lastIncidentId": m.lastIncidentId = try r.string()
            case "lastMoveKey": m.lastMoveKey = try r.string()
            case "leftInstances": m.leftInstances = try r.strings()
            case "outageTimes": m.outageTimes = try r.dates()
            case "recentEventIds":
                // Schema 1's array of ids is read by the Codable decoder.
                guard let memory = EventIdMemory(hexDigits: try r.hexDigits()) else {
                    throw JSONBytesReader.Unexpected()
                }
                m.recentEventIds = memory
            case "requestedKeys": m.requestedKeys = try r.strings()
            case "scheduledWakeUp": m.scheduledWakeUp = try r.date()
            case "schemaVersion":
                // Only this build's version: an older one may need its conversions, a newer one its refusal.
                guard try r.int() == EscalationMachine.currentSchemaVersion else { throw JSONBytesReader.Unexpected() }
            case "selfRecoveries": m.selfRecoveries = try r.dates()
            case "servedElsewhere": m.servedElsewhere = try r.decode(EscalationMachine.Sighting.self)
            case "settings": m.settings = try settings(&r)
            case "state":
                m.state =
                    try r.exactly(#"{"monitoring":{}}"#) ? .monitoring : try r.decode(EscalationMachine.State.self)
            default: throw JSONBytesReader.Unexpected()
            }
        }
        let required = [
            "currentInstance", "health", "identity", "incidentCount", "outageTimes", "recentEventIds",
            "requestedKeys", "schemaVersion", "settings", "state",
        ]
        guard seen.has(required) else { throw JSONBytesReader.Unexpected() }
        return m
    }

    private static func identity(_ r: inout JSONBytesReader) throws -> TargetIdentity {
        var name: String?
        var home: String?
        var dr: String?
        var eip: String?
        try r.beginObject()
        while let key = try r.nextKey() {
            switch key {
            case "name" where name == nil: name = try r.string()
            case "home_region" where home == nil: home = try r.string()
            case "dr_region" where dr == nil: dr = try r.string()
            case "elastic_ip_allocation_id" where eip == nil: eip = try r.string()
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard let name, let home else { throw JSONBytesReader.Unexpected() }
        return TargetIdentity(name: name, homeRegion: home, drRegion: dr, elasticIpAllocationId: eip)
    }

    private static func health(_ r: inout JSONBytesReader) throws -> EscalationMachine.HealthStreaks {
        var h = EscalationMachine.HealthStreaks()
        var seen = Seen(healthKeys)
        try r.beginObject()
        while let key = try r.nextKey() {
            try seen.first(key)
            switch key {
            case "downSince": h.downSince = try r.date()
            case "failingProbers": h.failingProbers = try r.strings()
            case "failures": h.failures = try r.int()
            case "healthySince": h.healthySince = try r.date()
            case "seenProbers":
                var probers: [String: Date] = [:]
                try r.beginObject()
                while let prober = try r.nextKey() {
                    guard probers.updateValue(try r.date(), forKey: prober) == nil else {
                        throw JSONBytesReader.Unexpected()
                    }
                }
                h.seenProbers = probers
            case "successes": h.successes = try r.int()
            case "window":
                var window: [EscalationMachine.WindowCheck] = []
                try r.beginArray()
                while try r.nextElement() { window.append(try check(&r)) }
                h.window = window
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard seen.has(["failingProbers", "failures", "successes"]) else { throw JSONBytesReader.Unexpected() }
        return h
    }

    private static func check(_ r: inout JSONBytesReader) throws -> EscalationMachine.WindowCheck {
        var failed: Bool?
        var prober: String?
        try r.beginObject()
        while let key = try r.nextKey() {
            switch key {
            case "failed" where failed == nil: failed = try r.bool()
            case "prober" where prober == nil: prober = try r.string()
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard let failed, let prober else { throw JSONBytesReader.Unexpected() }
        return EscalationMachine.WindowCheck(failed: failed, prober: prober)
    }

    /// `[[200,399]]`: each range's bounds in order, as `ClosedRange`'s decoding requires.
    private static func statusRanges(_ r: inout JSONBytesReader) throws -> [ClosedRange<Int>] {
        var ranges: [ClosedRange<Int>] = []
        try r.beginArray()
        while try r.nextElement() {
            try r.beginArray()
            guard try r.nextElement() else { throw JSONBytesReader.Unexpected() }
            let lower = try r.int()
            guard try r.nextElement() else { throw JSONBytesReader.Unexpected() }
            let upper = try r.int()
            guard try !r.nextElement(), lower <= upper else { throw JSONBytesReader.Unexpected() }
            ranges.append(lower...upper)
        }
        return ranges
    }

    /// Every setting is optional in the document and takes its default when absent, as
    /// `TargetSettings.init(from:)` reads them.
    private static func settings(_ r: inout JSONBytesReader) throws -> TargetSettings {
        var s = TargetSettings()
        var seen = Seen(settingsKeys)
        try r.beginObject()
        while let key = try r.nextKey() {
            try seen.first(key)
            switch key {
            case "approval_timeout": s.approvalTimeout = try r.double()
            case "body_match": s.bodyMatch = try r.string()
            case "expected_status": s.expectedStatus = try statusRanges(&r)
            case "failover_verification": s.failoverVerification = try r.double()
            case "failure_threshold": s.failureThreshold = try r.int()
            case "failure_window": s.failureWindow = try r.int()
            case "flap_incidents": s.flapIncidents = try r.int()
            case "flap_window": s.flapWindow = try r.double()
            case "grace_period": s.gracePeriod = try r.double()
            case "maintenance": s.maintenance = try r.emptyArray() ? [] : try r.decode([MaintenanceWindow].self)
            case "outage_count_window": s.outageCountWindow = try r.double()
            case "probe_interval": s.probeInterval = try r.double()
            case "probe_timeout": s.probeTimeout = try r.double()
            case "quarantined": s.quarantined = try r.bool()
            case "quorum": s.quorum = try r.bool()
            case "quorum_size": s.quorumSize = try r.int()
            case "recovery_threshold": s.recoveryThreshold = try r.int()
            case "reprovision_verification": s.reprovisionVerification = try r.double()
            case "requires_approval": s.requiresApproval = try r.bool()
            case "restart_verification": s.restartVerification = try r.double()
            default: throw JSONBytesReader.Unexpected()
            }
        }
        return s
    }
}

extension JSONBytesReader {
    /// `{"id": …, "region": …}`, as the Codable form of `InstanceRef` reads.
    mutating func instanceRef() throws -> InstanceRef {
        var id: String?
        var region: String?
        try beginObject()
        while let key = try nextKey() {
            switch key {
            case "id" where id == nil: id = try string()
            case "region" where region == nil: region = try string()
            default: throw Unexpected()
            }
        }
        guard let id, let region else { throw Unexpected() }
        return InstanceRef(id: id, region: region)
    }
}
