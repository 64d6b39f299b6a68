import AWSClient
import Foundation

/// What the memory Route 53 holds: hosted zones with their records, and submitted changes.
struct Route53World: Sendable {
    struct Zone: Sendable {
        var name: String
        var records: [ResourceRecordSet]
    }
    struct Change: Sendable {
        var info: Route53ChangeInfo
        /// GetChange answers PENDING this many more times, then INSYNC.
        var pendingPolls: Int
    }
    var zones: [String: Zone] = [:]
    var changes: [String: Change] = [:]
}

/// The in-memory `Route53Operations` of a `MemoryAWS` account: hosted zones (made with
/// `createHostedZone`, holding their NS and SOA records as Route 53's do), A-record upserts that replace
/// the record, and changes that stay `PENDING` for `pendingPolls` GetChange calls before `INSYNC`. Names
/// are stored and listed as Route 53 does (lowercase, absolute with the final dot, ordered by their
/// labels reversed). Refusals use Route 53's codes (`NoSuchHostedZone`, `InvalidChangeBatch`, `NoSuchChange`).
public struct MemoryRoute53: Route53Operations {
    public let aws: MemoryAWS
    /// How many GetChange calls answer PENDING before INSYNC.
    public var pendingPolls: Int

    public init(aws: MemoryAWS = MemoryAWS(), pendingPolls: Int = 1) {
        self.aws = aws
        self.pendingPolls = pendingPolls
    }

    public var dependencies: AWSClientDependencies { aws.dependencies }

    private func call<T>(_ operation: String, _ detail: String, _ body: (inout Route53World) throws -> T) throws -> T {
        try aws.call("Route 53", operation, region: "global", detail) {
            try aws.route53State.withLock { try body(&$0) }
        }
    }

    private func refusal(_ operation: String, _ code: String, _ message: String) -> AWSError {
        MemoryAWS.refusal("Route 53", operation, "global", code, message)
    }

    /// A public hosted zone; returns its id (not logged: set-up, like a test's own CreateHostedZone).
    @discardableResult
    public func createHostedZone(name: String) -> String {
        let id = "Z" + aws.newId("zone").dropFirst(5).uppercased()
        let zoneName = Self.absolute(name)
        let servers = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.net"]
        aws.route53State.withLock {
            $0.zones[id] = Route53World.Zone(
                name: zoneName,
                records: [
                    ResourceRecordSet(name: zoneName, type: .ns, ttl: 172_800, values: servers),
                    ResourceRecordSet(
                        name: zoneName, type: .soa, ttl: 900,
                        values: ["ns-1.awsdns-01.org. hostmaster.example.com. 1 7200 900 1209600 86400"]),
                ])
        }
        return id
    }

    /// The record of that name and type, if any (read back by a test; not logged).
    public func record(zone: String, name: String, type: DNSRecordType = .a) -> ResourceRecordSet? {
        aws.route53State.withLock {
            $0.zones[Self.bare(zone)]?.records.first { $0.name == Self.absolute(name) && $0.type == type }
        }
    }

    public func listResourceRecordSets(hostedZoneId: String, startName: String?, startType: DNSRecordType?) async throws
        -> [ResourceRecordSet]
    {
        try call("ListResourceRecordSets", hostedZoneId) { world in
            guard let zone = world.zones[Self.bare(hostedZoneId)] else {
                throw refusal(
                    "ListResourceRecordSets", "NoSuchHostedZone",
                    "No hosted zone found with ID: \(Self.bare(hostedZoneId))")
            }
            let sorted = zone.records.sorted { Self.order($0.name, $0.type) < Self.order($1.name, $1.type) }
            guard let startName else { return sorted }
            let start = Self.order(Self.absolute(startName), startType ?? DNSRecordType(rawValue: ""))
            return sorted.filter { Self.order($0.name, $0.type) >= start }
        }
    }

    public func upsertARecord(hostedZoneId: String, name: String, addresses: [String], ttl: Int, comment: String?)
        async throws
        -> Route53ChangeInfo
    {
        let changeId = "C" + aws.newId("chg").dropFirst(4).uppercased()
        return try call("ChangeResourceRecordSets", "UPSERT \(name) A \(addresses.joined(separator: ","))") { world in
            let zoneId = Self.bare(hostedZoneId)
            guard let zone = world.zones[zoneId] else {
                throw refusal("ChangeResourceRecordSets", "NoSuchHostedZone", "No hosted zone found with ID: \(zoneId)")
            }
            let recordName = Self.absolute(name)
            guard recordName == zone.name || recordName.hasSuffix("." + zone.name) else {
                throw refusal(
                    "ChangeResourceRecordSets", "InvalidChangeBatch",
                    "RRSet with DNS name \(recordName) is not permitted in zone \(zone.name)")
            }
            guard !addresses.isEmpty, addresses.allSatisfy(Self.isIPv4) else {
                throw refusal(
                    "ChangeResourceRecordSets", "InvalidChangeBatch",
                    "an A record needs IPv4 addresses, got \(addresses)")
            }
            world.zones[zoneId]?.records.removeAll { $0.name == recordName && $0.type == .a }
            world.zones[zoneId]?.records.append(
                ResourceRecordSet(name: recordName, type: .a, ttl: ttl, values: addresses))
            let info = Route53ChangeInfo(
                id: changeId, status: pendingPolls > 0 ? .pending : .insync, submittedAt: aws.now(), comment: comment)
            world.changes[changeId] = Route53World.Change(info: info, pendingPolls: pendingPolls)
            return info
        }
    }

    public func getChange(_ changeId: String) async throws -> Route53ChangeInfo {
        try call("GetChange", changeId) { world in
            let id = Self.bare(changeId)
            guard var change = world.changes[id] else {
                throw refusal("GetChange", "NoSuchChange", "A change with the specified change ID does not exist.")
            }
            if change.pendingPolls > 0 {
                change.pendingPolls -= 1
            } else {
                change.info.status = .insync
            }
            world.changes[id] = change
            return change.info
        }
    }

    /// `/hostedzone/Z1` → `Z1`.
    static func bare(_ id: String) -> String { id.split(separator: "/").last.map(String.init) ?? id }

    /// Lowercase, with the final dot.
    static func absolute(_ name: String) -> String { (name.hasSuffix(".") ? name : name + ".").lowercased() }

    /// Route 53's listing order: the name's labels reversed (`com.example.www`), then the type.
    static func order(_ name: String, _ type: DNSRecordType) -> String {
        name.split(separator: ".").reversed().joined(separator: ".") + " " + type.rawValue
    }

    static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
