import Foundation

/// The fleet brake's stored document written and read without Foundation's Codable coders. In a mass
/// outage the brake holds a name per target in outage and a stamp per step in the hour (150 KB with 2,500
/// of each), and the decision worker decides and stores it with every outage that opens and every step
/// requested (in batches since `BrakeBatcher`): through the Codable coders that was 2.7 ms to encode and 4.5 ms to
/// decode each time (`fleet-bench codec`; docs/benchmarks.md, "Scale").
///
/// As `TargetStateJSON` does for a target: the writer writes the bytes `Timestamp.jsonEncoder()` writes
/// (`FleetBrakeJSONTests` hold the two to the same bytes); the small or rare parts (settings, an
/// engagement, pending notices) go through Codable for that part alone; the reader reads only the shape
/// this build writes (schema version 2, no unknown, repeated or missing key, no `null`) and otherwise gives
/// up, and `StateCodec` reads the document with the Codable decoder, which reads it or words the error.
///
/// A field added to `FleetBrake` must be added here too: `FleetBrakeJSONTests` counts its fields.
enum FleetBrakeJSON {
    static func encode(_ brake: FleetBrake) throws -> [UInt8] {
        let targets = FleetBrake.rows(targets: brake.targetsInOutage)
        let actions = FleetBrake.rows(actions: brake.recentActions)
        var w = JSONBytesWriter(capacity: targets.utf8.count + actions.utf8.count + 4_096)
        w.open()
        w.field("acceptedTargets", FleetBrake.rows(targets: brake.acceptedTargets))
        if let v = brake.countActionsSince { w.field("countActionsSince", v) }
        if let v = brake.engagement { try w.field("engagement", encoding: v) }
        w.field("engagements", brake.engagements)
        w.field("fleetSize", brake.fleetSize)
        if let v = brake.pending { try w.field("pending", encoding: v) }
        w.field("recentActions", actions)
        w.field("recentCommandIds", brake.recentCommandIds)
        w.field("schemaVersion", FleetBrake.currentSchemaVersion)
        try w.field("settings", encoding: brake.settings)
        w.field("targetsInOutage", targets)
        w.close()
        return w.bytes
    }

    /// The brake, or nil when the document is not of the shape this build writes (then read it with
    /// Codable).
    static func decode(_ bytes: [UInt8]) -> FleetBrake? {
        JSONBytesReader.whole(bytes) { r in try read(&r) }
    }

    private static func read(_ r: inout JSONBytesReader) throws -> FleetBrake {
        var accepted: String?
        var countSince: Date?
        var engagement: FleetBrake.Engagement?
        var engagements: Int?
        var fleetSize: Int?
        var pending: FleetBrake.Pending?
        var actions: String?
        var commandIds: [String]?
        var version: Int?
        var settings: FleetBrake.Settings?
        var targets: String?
        try r.beginObject()
        while let key = try r.nextKey() {
            switch key {
            case "acceptedTargets" where accepted == nil: accepted = try r.string()
            case "countActionsSince" where countSince == nil: countSince = try r.date()
            case "engagement" where engagement == nil: engagement = try r.decode(FleetBrake.Engagement.self)
            case "engagements" where engagements == nil: engagements = try r.int()
            case "fleetSize" where fleetSize == nil: fleetSize = try r.int()
            case "pending" where pending == nil: pending = try r.decode(FleetBrake.Pending.self)
            case "recentActions" where actions == nil: actions = try r.string()
            case "recentCommandIds" where commandIds == nil: commandIds = try r.strings()
            case "schemaVersion" where version == nil: version = try r.int()
            case "settings" where settings == nil: settings = try r.decode(FleetBrake.Settings.self)
            case "targetsInOutage" where targets == nil: targets = try r.string()
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard version == FleetBrake.currentSchemaVersion, let accepted, let engagements, let fleetSize, let actions,
            let commandIds, let settings, let targets, let recentActions = FleetBrake.actions(fromRows: actions)
        else { throw JSONBytesReader.Unexpected() }
        var brake = FleetBrake(settings: settings)
        brake.fleetSize = fleetSize
        brake.targetsInOutage = FleetBrake.targets(fromRows: targets)
        brake.recentActions = recentActions
        brake.engagement = engagement
        brake.engagements = engagements
        brake.acceptedTargets = FleetBrake.targets(fromRows: accepted)
        brake.countActionsSince = countSince
        brake.recentCommandIds = commandIds
        brake.pending = pending
        return brake
    }
}
