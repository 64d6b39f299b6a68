import Foundation

/// The fleet-wide brake, as a small pure value next to the per-target machines. One copy exists for the
/// fleet (stored as JSON in Redis, changed only under the fleet lock).
///
/// It engages when too many targets are in outage at once (more than `maxOutageShare` of the fleet, and
/// at least `minimumOutages` targets), when destructive steps run too often (the `maxDestructiveActions`-th
/// step within `actionWindow` engages it, so no more than that many start per window), or by hand. While
/// engaged, no destructive step runs anywhere: the decision worker passes `isEngaged` into every
/// `EscalationMachine.handle`, and step commands are refused. One alert goes out per engagement, not one
/// per target. Only an operator releases it (`recoveryctl brake release`); the release wakes every target
/// in outage so their pending steps run.
///
/// The per-target machines feed it through their `.reportToFleet(_)` actions.
public struct FleetBrake: Codable, Sendable, Equatable {
    /// 2: the lists of targets and of recent steps are stored as one string each (`CompactRows`); a worker
    /// that reads only 1 refuses a brake of 2 with "upgrade the worker" rather than misreading it, so the
    /// decision tier is upgraded all at once (docs/operations.md, "Upgrading").
    public static let currentSchemaVersion = 2
    static let commandMemory = 64

    public struct Settings: Codable, Sendable, Equatable {
        /// Engage when more than this share of the fleet is in outage at once. Default 0.30.
        public var maxOutageShare: Double = 0.30
        /// …and at least this many targets are (so one outage in a fleet of three does not brake the
        /// fleet). Default 2.
        public var minimumOutages: Int = 2
        /// At most this many destructive steps start within `actionWindow`; the one that reaches it
        /// engages the brake. Default 5.
        public var maxDestructiveActions: Int = 5
        /// Seconds. Default 3600 (1 h).
        public var actionWindow: TimeInterval = 3600

        public init() {}

        enum CodingKeys: String, CodingKey {
            case maxOutageShare = "max_outage_share"
            case minimumOutages = "minimum_outages"
            case maxDestructiveActions = "max_destructive_actions"
            case actionWindow = "action_window"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Settings()
            maxOutageShare = try c.decodeIfPresent(Double.self, forKey: .maxOutageShare) ?? d.maxOutageShare
            minimumOutages = try c.decodeIfPresent(Int.self, forKey: .minimumOutages) ?? d.minimumOutages
            maxDestructiveActions =
                try c.decodeIfPresent(Int.self, forKey: .maxDestructiveActions) ?? d.maxDestructiveActions
            actionWindow = try c.decodeIfPresent(TimeInterval.self, forKey: .actionWindow) ?? d.actionWindow
        }
    }

    public enum Trigger: String, Codable, Sendable {
        case outageShare = "outage_share"
        case actionRate = "action_rate"
        case manual
    }

    public struct Engagement: Codable, Sendable, Equatable {
        /// 1 for the first engagement ever, and so on (it names the alert).
        public var number: Int
        public var at: Date
        public var trigger: Trigger
        public var detail: String
        /// The operator who engaged it by hand.
        public var by: String?
        public var targets: [String]
    }

    public struct ActionStamp: Codable, Sendable, Equatable {
        public var idempotencyKey: String
        public var target: String
        public var at: Date
    }

    public enum Event: Sendable, Equatable {
        /// From a target machine: an outage was declared.
        case outageOpened(target: String)
        /// From a target machine: the incident closed.
        case outageClosed(target: String)
        /// From a target machine: a destructive step was requested (counted once per key).
        case destructiveActionRequested(target: String, idempotencyKey: String)
        /// From configuration: the targets of the fleet (the denominator of the outage share).
        case fleetChanged(targets: [String])
        /// `recoveryctl brake engage --reason …`: stop all destructive steps now.
        case engage(id: String, operator: String, reason: String)
        /// `recoveryctl brake release`.
        case release(id: String, operator: String)
    }

    public enum Action: Sendable, Equatable {
        /// Publish a notification (the one alert of an engagement, the release, or a command answer).
        case notify(Notice)
        /// A brake command was refused: answer its sender and publish the notice.
        case rejectCommand(Notice)
        /// Send a `.tick` to each of these targets (their steps may run now).
        case wakeTargets([String])
    }

    public internal(set) var schemaVersion: Int
    public var settings: Settings
    /// How many targets the fleet has (the denominator of the outage share). Only the count is kept: the
    /// brake is loaded with every event the decision worker handles, and a list of 10,000 names made each
    /// event cost a 130 KB decode (docs/benchmarks.md, "Scale"). Stored brakes that hold the old `fleet`
    /// list are read as its count.
    public internal(set) var fleetSize: Int
    /// Targets with an open incident, sorted.
    public internal(set) var targetsInOutage: [String]
    /// Destructive steps requested within the action window.
    public internal(set) var recentActions: [ActionStamp]
    public internal(set) var engagement: Engagement?
    public internal(set) var engagements: Int
    /// The targets in outage when the operator released the brake: the share rule engages again only
    /// when a target outside this set is in outage (a worse situation), not when one of these flaps. It is
    /// cleared when fewer than `minimumOutages` targets are in outage (the episode is over).
    public internal(set) var acceptedTargets: [String]
    /// The rate rule counts steps from here on (the last release).
    public internal(set) var countActionsSince: Date?
    public internal(set) var recentCommandIds: [String]
    /// What the brake decided but nobody has carried out yet (see `admit`); nil when nothing.
    public var pending: Pending?

    /// Notices to publish and targets to wake, stored with the brake in the compare-and-set that decided
    /// them: a worker that dies right after cannot lose the one alert of an engagement. Whoever loads the
    /// brake next carries them out (the notices' ids are deterministic, so a repeat is deduplicated).
    public struct Pending: Codable, Sendable, Equatable {
        public var notices: [Notice] = []
        public var wake: [String] = []
    }

    public init(settings: Settings = Settings(), fleet: [String] = []) {
        self.schemaVersion = Self.currentSchemaVersion
        self.settings = settings
        self.fleetSize = Set(fleet).count
        self.targetsInOutage = []
        self.recentActions = []
        self.engagement = nil
        self.engagements = 0
        self.acceptedTargets = []
        self.countActionsSince = nil
        self.recentCommandIds = []
    }

    public var isEngaged: Bool { engagement != nil }

    /// The share of the fleet in outage. Targets in outage are pruned to the fleet's members at every fleet
    /// update, so between two updates only a target discovered since can be in outage and not counted in
    /// `fleetSize`: it then counts in the outage only (a slightly larger share: the brake engages sooner,
    /// never later).
    public var outageShare: Double {
        let size = Self.size(fleetSize, targetsInOutage)
        return size == 0 ? 0 : Double(targetsInOutage.count) / Double(size)
    }

    private static func size(_ fleetSize: Int, _ inOutage: [String]) -> Int { max(fleetSize, inOutage.count) }

    /// Destructive steps that count against the rate limit at `now`.
    public func countedActions(at now: Date) -> Int {
        recentActions.filter { stamp in
            now.timeIntervalSince(stamp.at) < settings.actionWindow && countActionsSince.map { stamp.at >= $0 } ?? true
        }.count
    }

    public mutating func handle(_ event: Event, now: Date) -> [Action] {
        var actions: [Action] = []
        recentActions.removeAll { now.timeIntervalSince($0.at) >= settings.actionWindow }
        switch event {
        case .outageOpened(let target):
            if !targetsInOutage.contains(target) {
                targetsInOutage.append(target)
                targetsInOutage.sort()
            }
            checkShare(now, &actions)
        case .outageClosed(let target):
            targetsInOutage.removeAll { $0 == target }
            endEpisodeIfOver()
        case .destructiveActionRequested(let target, let key):
            guard !recentActions.contains(where: { $0.idempotencyKey == key }) else { break }
            recentActions.append(ActionStamp(idempotencyKey: key, target: target, at: now))
            checkRate(now, &actions)
        case .fleetChanged(let targets):
            let members = Set(targets)
            fleetSize = members.count
            if !members.isEmpty { targetsInOutage.removeAll { !members.contains($0) } }
            endEpisodeIfOver()
            checkShare(now, &actions)
        case .engage(let id, let who, let reason):
            guard remember(id) else { break }
            if let engagement {
                actions.append(
                    .rejectCommand(
                        commandNotice(
                            .commandRejected, id: id, name: "brake engage", who: who, now,
                            reason: .brakeAlreadyEngaged(since: engagement.at, cause: engagement.detail))))
                break
            }
            // The alert is also the command's answer: it names the command, so its sender (recoveryctl
            // waits for a notice with the command's id) sees it accepted.
            engage(
                .manual(by: who, reason: reason), by: who, targets: targetsInOutage, now, &actions,
                answering: CommandRef(id: id, name: "brake engage", operator: who))
        case .release(let id, let who):
            guard remember(id) else { break }
            guard let engagement else {
                actions.append(
                    .rejectCommand(
                        commandNotice(
                            .commandRejected, id: id, name: "brake release", who: who, now,
                            reason: .brakeNotEngaged)))
                break
            }
            self.engagement = nil
            acceptedTargets = targetsInOutage
            countActionsSince = now
            var notice = commandNotice(
                .brakeReleased, id: id, name: "brake release", who: who, now,
                reason: .brakeReleased(
                    by: who, engagedAt: engagement.at, cause: engagement.detail, targetsInOutage: targetsInOutage))
            notice.targets = targetsInOutage
            actions.append(.notify(notice))
            if !targetsInOutage.isEmpty { actions.append(.wakeTargets(targetsInOutage)) }
        }
        return actions
    }

    private mutating func checkShare(_ now: Date, _ actions: inout [Action]) {
        let count = targetsInOutage.count
        guard !isEngaged, count >= max(1, settings.minimumOutages),
            targetsInOutage.contains(where: { !acceptedTargets.contains($0) }),
            outageShare > settings.maxOutageShare
        else { return }
        let size = Self.size(fleetSize, targetsInOutage)
        let limit = Int((settings.maxOutageShare * 100).rounded())
        engage(
            .outageShare(inOutage: count, fleetSize: size, limitPercent: limit), by: nil, targets: targetsInOutage, now,
            &actions)
    }

    private mutating func endEpisodeIfOver() {
        if targetsInOutage.count < max(1, settings.minimumOutages) { acceptedTargets = [] }
    }

    private mutating func checkRate(_ now: Date, _ actions: inout [Action]) {
        let counted = countedActions(at: now)
        guard !isEngaged, counted >= max(1, settings.maxDestructiveActions) else { return }
        let counting = recentActions.filter { stamp in countActionsSince.map { stamp.at >= $0 } ?? true }
        let targets = Array(Set(counting.map(\.target))).sorted()
        engage(
            .actionRate(steps: counted, window: settings.actionWindow, limit: settings.maxDestructiveActions),
            by: nil, targets: targets, now, &actions)
    }

    /// Engages the brake because of `cause`; the engagement keeps the cause's words (`detail`).
    private mutating func engage(
        _ cause: NoticeReason.BrakeCause, by: String?, targets: [String], _ now: Date, _ actions: inout [Action],
        answering command: CommandRef? = nil
    ) {
        engagements += 1
        engagement = Engagement(
            number: engagements, at: now, trigger: cause.trigger, detail: cause.text, by: by, targets: targets)
        let notice = Notice(
            id: "fleet:brake_engaged:\(engagements)", kind: .brakeEngaged, at: now, targets: targets,
            commands: [RecoveryCtl.brakeRelease], command: command, reason: .brakeEngaged(cause))
        actions.append(.notify(notice))
    }

    private func commandNotice(
        _ kind: NotificationKind, id: String, name: String, who: String, _ now: Date,
        reason: NoticeReason
    ) -> Notice {
        Notice(
            id: "command:\(id)", kind: kind, at: now, command: CommandRef(id: id, name: name, operator: who),
            reason: reason)
    }

    /// Records a command id; false when it was seen before (a redelivery).
    private mutating func remember(_ id: String) -> Bool {
        guard !recentCommandIds.contains(id) else { return false }
        recentCommandIds.append(id)
        if recentCommandIds.count > Self.commandMemory { recentCommandIds.removeFirst() }
        return true
    }
}

extension FleetBrake {
    private enum CodingKeys: String, CodingKey {
        case schemaVersion, settings, fleetSize, targetsInOutage, recentActions, engagement, engagements
        case acceptedTargets, countActionsSince, recentCommandIds, pending
    }

    /// Brakes stored before `fleetSize` held the list of the fleet's targets.
    private enum LegacyKeys: String, CodingKey { case fleet }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        schemaVersion = Self.currentSchemaVersion  // what this value is written as from now on
        settings = try c.decode(Settings.self, forKey: .settings)
        if let size = try c.decodeIfPresent(Int.self, forKey: .fleetSize) {
            fleetSize = size
        } else {
            fleetSize = Set(try decoder.container(keyedBy: LegacyKeys.self).decode([String].self, forKey: .fleet)).count
        }
        if try c.decode(Int.self, forKey: .schemaVersion) >= 2 {
            targetsInOutage = Self.targets(fromRows: try c.decode(String.self, forKey: .targetsInOutage))
            acceptedTargets = Self.targets(fromRows: try c.decode(String.self, forKey: .acceptedTargets))
            guard let actions = Self.actions(fromRows: try c.decode(String.self, forKey: .recentActions)) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .recentActions, in: c, debugDescription: "a recent step is not 'time, key, target'")
            }
            recentActions = actions
        } else {
            targetsInOutage = try c.decode([String].self, forKey: .targetsInOutage)
            acceptedTargets = try c.decode([String].self, forKey: .acceptedTargets)
            recentActions = try c.decode([ActionStamp].self, forKey: .recentActions)
        }
        engagement = try c.decodeIfPresent(Engagement.self, forKey: .engagement)
        engagements = try c.decode(Int.self, forKey: .engagements)
        countActionsSince = try c.decodeIfPresent(Date.self, forKey: .countActionsSince)
        recentCommandIds = try c.decode([String].self, forKey: .recentCommandIds)
        pending = try c.decodeIfPresent(Pending.self, forKey: .pending)
    }

    /// The three lists that grow with the fleet (one name per target in outage, one stamp per step in the
    /// hour) are one string each: the brake is written with every outage that opens or closes, and as JSON
    /// arrays a mass outage made each of those writes cost milliseconds (docs/benchmarks.md).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.currentSchemaVersion, forKey: .schemaVersion)
        try c.encode(settings, forKey: .settings)
        try c.encode(fleetSize, forKey: .fleetSize)
        try c.encode(Self.rows(targets: targetsInOutage), forKey: .targetsInOutage)
        try c.encode(Self.rows(actions: recentActions), forKey: .recentActions)
        try c.encodeIfPresent(engagement, forKey: .engagement)
        try c.encode(engagements, forKey: .engagements)
        try c.encode(Self.rows(targets: acceptedTargets), forKey: .acceptedTargets)
        try c.encodeIfPresent(countActionsSince, forKey: .countActionsSince)
        try c.encode(recentCommandIds, forKey: .recentCommandIds)
        try c.encodeIfPresent(pending, forKey: .pending)
    }
}

/// Rows of strings as one string: fields joined by a tab, rows by a newline; `%`, tab and newline inside a
/// field are percent-escaped and an empty field is `%E`, so any rows survive the round trip.
extension FleetBrake {
    // The stored form of the lists that grow with the fleet, for the Codable coders and `FleetBrakeJSON`.
    static func rows(targets: [String]) -> String {
        CompactRows.join(targets) { target, row in row.field(target) }
    }

    static func targets(fromRows text: String) -> [String] {
        var targets: [String] = []
        CompactRows.forEachRow(text) { fields in targets.append(fields[0]) }
        return targets
    }

    static func rows(actions: [ActionStamp]) -> String {
        CompactRows.join(actions) { stamp, row in
            row.field(stamp.at.timeIntervalSince1970.description)
            row.field(stamp.idempotencyKey)
            row.field(stamp.target)
        }
    }

    /// Nil when a row is not "time, key, target".
    static func actions(fromRows text: String) -> [ActionStamp]? {
        var actions: [ActionStamp] = []
        var valid = true
        CompactRows.forEachRow(text) { fields in
            guard valid, fields.count == 3, let seconds = Double(fields[0]) else {
                valid = false
                return
            }
            actions.append(
                ActionStamp(idempotencyKey: fields[1], target: fields[2], at: Date(timeIntervalSince1970: seconds)))
        }
        return valid ? actions : nil
    }
}

/// Rows of fields in one string: rows end at a newline, fields at a tab; in a field `%` is written `%25`, a
/// tab `%09`, a newline `%0A`, and the empty field `%E`. Written and read byte by byte: the brake's lists
/// hold thousands of rows in a mass outage, and arrays of strings per row made them cost milliseconds
/// (docs/benchmarks.md, "Scale").
enum CompactRows {
    struct Row {
        var bytes: [UInt8] = []
        fileprivate var first = true

        mutating func field(_ text: String) {
            if !first { bytes.append(0x09) }
            first = false
            if text.isEmpty {
                bytes.append(contentsOf: [0x25, 0x45])  // %E
                return
            }
            let plain = text.utf8.allSatisfy { $0 != 0x25 && $0 != 0x09 && $0 != 0x0A }
            if plain {
                bytes.append(contentsOf: text.utf8)
                return
            }
            for byte in text.utf8 {
                switch byte {
                case 0x25: bytes.append(contentsOf: [0x25, 0x32, 0x35])  // %25
                case 0x09: bytes.append(contentsOf: [0x25, 0x30, 0x39])  // %09
                case 0x0A: bytes.append(contentsOf: [0x25, 0x30, 0x41])  // %0A
                default: bytes.append(byte)
                }
            }
        }
    }

    /// One row per item, its fields written by `write`.
    static func join<T>(_ items: [T], _ write: (T, inout Row) -> Void) -> String {
        var row = Row()
        row.bytes.reserveCapacity(items.count * 48)
        for (n, item) in items.enumerated() {
            if n > 0 { row.bytes.append(0x0A) }
            row.first = true
            write(item, &row)
        }
        return String(decoding: row.bytes, as: UTF8.self)
    }

    /// The rows of `text`, each as its fields, unescaped. Splits on the separator bytes, not on
    /// `Character`s: "\r\n" is one Character in Swift, so a field ending in "\r" would otherwise hide the
    /// row separator after it.
    static func forEachRow(_ text: String, _ body: ([String]) -> Void) {
        guard !text.isEmpty else { return }
        var text = text
        text.withUTF8 { utf8 in
            var fields: [String] = []
            var start = 0
            for k in 0...utf8.count {
                let end = k == utf8.count
                guard end || utf8[k] == 0x09 || utf8[k] == 0x0A else { continue }
                fields.append(unescape(UnsafeBufferPointer(rebasing: utf8[start..<k])))
                start = k + 1
                if end || utf8[k] == 0x0A {
                    body(fields)
                    fields.removeAll(keepingCapacity: true)
                }
            }
        }
    }

    private static func unescape(_ field: UnsafeBufferPointer<UInt8>) -> String {
        guard field.contains(0x25) else { return String(decoding: field, as: UTF8.self) }
        if field.count == 2 && field[1] == 0x45 { return "" }  // %E
        var out: [UInt8] = []
        out.reserveCapacity(field.count)
        var k = 0
        while k < field.count {
            if field[k] == 0x25, k + 2 < field.count {
                switch (field[k + 1], field[k + 2]) {
                case (0x32, 0x35): out.append(0x25)
                case (0x30, 0x39): out.append(0x09)
                case (0x30, 0x41): out.append(0x0A)
                default:
                    out.append(field[k])
                    k += 1
                    continue
                }
                k += 3
            } else {
                out.append(field[k])
                k += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
