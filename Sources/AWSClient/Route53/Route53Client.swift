import Foundation

/// Typed Route 53 calls (REST-XML, API 2013-04-01) on the core ``AWSClient``.
///
/// Route 53 is global: requests go to `route53.amazonaws.com` and are signed for `us-east-1`, whatever
/// the client's region (``AWSService/route53`` says so). Ids are accepted and returned without their
/// `/hostedzone/` and `/change/` prefixes. Calls throw ``AWSError`` (or `CancellationError`); a refused
/// change batch is code `InvalidChangeBatch` with AWS's reasons in the message.
public struct Route53Client: Sendable {
    public let aws: AWSClient

    static let namespace = "https://route53.amazonaws.com/doc/2013-04-01/"

    public init(_ aws: AWSClient) { self.aws = aws }

    // MARK: Records

    /// ChangeResourceRecordSets: all changes succeed or none does. Returns the change, `PENDING` until
    /// every Route 53 server has it (see ``waitUntilChangeInsync(_:timeout:interval:)``).
    public func changeResourceRecordSets(
        hostedZoneId: String, changes: [ResourceRecordSetChange], comment: String? = nil
    ) async throws -> Route53ChangeInfo {
        guard !changes.isEmpty else {
            throw aws.invalidRequest(.route53, "ChangeResourceRecordSets", "no changes")
        }
        let body = Self.changeBatchXML(changes, comment: comment)
        let root = try await call(
            "ChangeResourceRecordSets", method: "POST",
            path: "/2013-04-01/hostedzone/\(Self.bareId(hostedZoneId))/rrset",
            body: Array(body.utf8))
        return try decode("ChangeResourceRecordSets", root) { try Self.changeInfo($0["ChangeInfo"]) }
    }

    /// UPSERT of an A record: `name` answers `addresses` (IPv4, dotted quads) for `ttl` seconds.
    public func upsertARecord(
        hostedZoneId: String, name: String, addresses: [String], ttl: Int = 60, comment: String? = nil
    ) async throws -> Route53ChangeInfo {
        guard !addresses.isEmpty, addresses.allSatisfy(Self.isIPv4) else {
            throw aws.invalidRequest(
                .route53, "ChangeResourceRecordSets", "an A record needs one or more IPv4 addresses, got \(addresses)")
        }
        guard (0...2_147_483_647).contains(ttl) else {
            throw aws.invalidRequest(.route53, "ChangeResourceRecordSets", "TTL \(ttl) is out of range")
        }
        return try await changeResourceRecordSets(
            hostedZoneId: hostedZoneId,
            changes: [
                ResourceRecordSetChange(.upsert, ResourceRecordSet(name: name, type: .a, ttl: ttl, values: addresses))
            ],
            comment: comment)
    }

    /// GetChange: `PENDING` or `INSYNC`.
    public func getChange(_ changeId: String) async throws -> Route53ChangeInfo {
        let root = try await call("GetChange", method: "GET", path: "/2013-04-01/change/\(Self.bareId(changeId))")
        return try decode("GetChange", root) { try Self.changeInfo($0["ChangeInfo"]) }
    }

    /// ListResourceRecordSets, every page, starting at `startName` (and `startType`) in Route 53's
    /// order when given.
    public func listResourceRecordSets(
        hostedZoneId: String, startName: String? = nil, startType: DNSRecordType? = nil
    ) async throws -> [ResourceRecordSet] {
        var records: [ResourceRecordSet] = []
        var next: (name: String?, type: String?, identifier: String?) = (startName, startType?.rawValue, nil)
        var seen: Set<String> = []
        while true {
            var query: [(name: String, value: String)] = []
            if let name = next.name { query.append(("name", name)) }
            if let type = next.type { query.append(("type", type)) }
            if let identifier = next.identifier { query.append(("identifier", identifier)) }
            let root = try await call(
                "ListResourceRecordSets", method: "GET",
                path: "/2013-04-01/hostedzone/\(Self.bareId(hostedZoneId))/rrset", query: query)
            let page = try decode("ListResourceRecordSets", root) { root in
                (
                    records: try root.list("ResourceRecordSets", item: "ResourceRecordSet").map(Self.recordSet),
                    truncated: root.string("IsTruncated") == "true",
                    next: (
                        root.nonEmpty("NextRecordName"), root.nonEmpty("NextRecordType"),
                        root.nonEmpty("NextRecordIdentifier")
                    )
                )
            }
            records += page.records
            guard page.truncated, page.next.0 != nil else { return records }
            let key = [page.next.0, page.next.1, page.next.2].map { $0 ?? "" }.joined(separator: "|")
            guard seen.insert(key).inserted else {
                throw aws.invalidResponse(
                    .route53, "ListResourceRecordSets", "the same next record came back twice; stopping")
            }
            next = page.next
        }
    }

    // MARK: Hosted zones

    /// CreateHostedZone (public). `callerReference` makes a retry safe: the same reference never creates
    /// a second zone.
    public func createHostedZone(
        name: String, callerReference: String = UUID().uuidString, comment: String? = nil
    ) async throws -> HostedZone {
        var body = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        body += #"<CreateHostedZoneRequest xmlns="\#(Self.namespace)">"#
        body += "<Name>\(XML.escape(name))</Name><CallerReference>\(XML.escape(callerReference))</CallerReference>"
        if let comment { body += "<HostedZoneConfig><Comment>\(XML.escape(comment))</Comment></HostedZoneConfig>" }
        body += "</CreateHostedZoneRequest>"
        let root = try await call(
            "CreateHostedZone", method: "POST", path: "/2013-04-01/hostedzone", body: Array(body.utf8))
        return try decode("CreateHostedZone", root) { root in
            guard let zone = root["HostedZone"] else { throw MissingField("HostedZone") }
            return HostedZone(
                id: Self.bareId(try zone.required("Id")), name: try zone.required("Name"),
                callerReference: zone.nonEmpty("CallerReference"),
                nameServers: root["DelegationSet"]?.list("NameServers", item: "NameServer").map(\.text) ?? [],
                change: try root["ChangeInfo"].map { try Self.changeInfo($0) })
        }
    }

    /// DeleteHostedZone; the zone must hold only its NS and SOA records.
    @discardableResult
    public func deleteHostedZone(_ hostedZoneId: String) async throws -> Route53ChangeInfo {
        let root = try await call(
            "DeleteHostedZone", method: "DELETE", path: "/2013-04-01/hostedzone/\(Self.bareId(hostedZoneId))")
        return try decode("DeleteHostedZone", root) { try Self.changeInfo($0["ChangeInfo"]) }
    }

    // MARK: Plumbing

    private func call(
        _ operation: String, method: String, path: String, query: [(name: String, value: String)] = [],
        body: [UInt8] = []
    ) async throws -> XML.Element {
        guard
            let root = try await aws.restXML(
                .route53, operation: operation, method: method, path: path, query: query, body: body)
        else { throw aws.invalidResponse(.route53, operation, "an empty answer") }
        return root
    }

    private func decode<T>(_ operation: String, _ root: XML.Element, _ parse: (XML.Element) throws -> T) throws -> T {
        do {
            return try parse(root)
        } catch {
            throw aws.invalidResponse(.route53, operation, "\(error)")
        }
    }

    /// `/hostedzone/Z1` → `Z1`, `/change/C1` → `C1`; a bare id is returned as it is.
    static func bareId(_ id: String) -> String {
        id.split(separator: "/").last.map(String.init) ?? id
    }

    static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber)
                    && (Int(part).map { $0 <= 255 } ?? false) && !(part.count > 1 && part.hasPrefix("0"))
            }
    }

    static func changeInfo(_ element: XML.Element?) throws -> Route53ChangeInfo {
        guard let element else { throw MissingField("ChangeInfo") }
        return Route53ChangeInfo(
            id: bareId(try element.required("Id")),
            status: Route53ChangeStatus(rawValue: try element.required("Status")),
            submittedAt: element.date("SubmittedAt"), comment: element.nonEmpty("Comment"))
    }

    static func recordSet(_ element: XML.Element) throws -> ResourceRecordSet {
        ResourceRecordSet(
            name: try element.required("Name"), type: DNSRecordType(rawValue: try element.required("Type")),
            ttl: element.int("TTL"),
            values: element.list("ResourceRecords", item: "ResourceRecord").compactMap { $0.string("Value") },
            setIdentifier: element.nonEmpty("SetIdentifier"),
            aliasTarget: element["AliasTarget"].map { alias in
                AliasTarget(
                    hostedZoneId: alias.string("HostedZoneId") ?? "", dnsName: alias.string("DNSName") ?? "",
                    evaluateTargetHealth: alias.bool("EvaluateTargetHealth") ?? false)
            })
    }

    static func changeBatchXML(_ changes: [ResourceRecordSetChange], comment: String?) -> String {
        var xml = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        xml += #"<ChangeResourceRecordSetsRequest xmlns="\#(namespace)"><ChangeBatch>"#
        if let comment { xml += "<Comment>\(XML.escape(comment))</Comment>" }
        xml += "<Changes>"
        for change in changes {
            let set = change.recordSet
            xml += "<Change><Action>\(change.action.rawValue)</Action><ResourceRecordSet>"
            xml += "<Name>\(XML.escape(set.name))</Name><Type>\(XML.escape(set.type.rawValue))</Type>"
            if let identifier = set.setIdentifier { xml += "<SetIdentifier>\(XML.escape(identifier))</SetIdentifier>" }
            if let alias = set.aliasTarget {
                xml += "<AliasTarget><HostedZoneId>\(XML.escape(alias.hostedZoneId))</HostedZoneId>"
                xml += "<DNSName>\(XML.escape(alias.dnsName))</DNSName>"
                xml += "<EvaluateTargetHealth>\(alias.evaluateTargetHealth)</EvaluateTargetHealth></AliasTarget>"
            } else {
                if let ttl = set.ttl { xml += "<TTL>\(ttl)</TTL>" }
                xml += "<ResourceRecords>"
                for value in set.values {
                    xml += "<ResourceRecord><Value>\(XML.escape(value))</Value></ResourceRecord>"
                }
                xml += "</ResourceRecords>"
            }
            xml += "</ResourceRecordSet></Change>"
        }
        xml += "</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        return xml
    }
}

/// A DNS record type. A struct rather than an enum so any type Route 53 supports can be named.
public struct DNSRecordType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let a = DNSRecordType(rawValue: "A")
    public static let aaaa = DNSRecordType(rawValue: "AAAA")
    public static let cname = DNSRecordType(rawValue: "CNAME")
    public static let txt = DNSRecordType(rawValue: "TXT")
    public static let mx = DNSRecordType(rawValue: "MX")
    public static let ns = DNSRecordType(rawValue: "NS")
    public static let soa = DNSRecordType(rawValue: "SOA")
}

/// An alias record's target (a load balancer, a CloudFront distribution, another record).
public struct AliasTarget: Sendable, Hashable {
    public var hostedZoneId: String
    public var dnsName: String
    public var evaluateTargetHealth: Bool
    public init(hostedZoneId: String, dnsName: String, evaluateTargetHealth: Bool = false) {
        self.hostedZoneId = hostedZoneId
        self.dnsName = dnsName
        self.evaluateTargetHealth = evaluateTargetHealth
    }
}

/// A record set. Route 53 returns names fully qualified (`www.example.com.`), with characters outside
/// letters, digits, `-` and `_` escaped as `\ooo` octal.
public struct ResourceRecordSet: Sendable, Hashable {
    public var name: String
    public var type: DNSRecordType
    /// Seconds; nil for alias records.
    public var ttl: Int?
    public var values: [String]
    /// For weighted, latency, failover… routing.
    public var setIdentifier: String?
    public var aliasTarget: AliasTarget?

    public init(
        name: String, type: DNSRecordType, ttl: Int? = nil, values: [String] = [], setIdentifier: String? = nil,
        aliasTarget: AliasTarget? = nil
    ) {
        self.name = name
        self.type = type
        self.ttl = ttl
        self.values = values
        self.setIdentifier = setIdentifier
        self.aliasTarget = aliasTarget
    }
}

public struct ResourceRecordSetChange: Sendable, Hashable {
    public enum Action: String, Sendable {
        case create = "CREATE"
        case delete = "DELETE"
        case upsert = "UPSERT"
    }

    public var action: Action
    public var recordSet: ResourceRecordSet

    public init(_ action: Action, _ recordSet: ResourceRecordSet) {
        self.action = action
        self.recordSet = recordSet
    }
}

public struct Route53ChangeStatus: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let pending = Route53ChangeStatus(rawValue: "PENDING")
    public static let insync = Route53ChangeStatus(rawValue: "INSYNC")
}

/// A submitted change (ChangeResourceRecordSets, GetChange, zone creation and deletion).
public struct Route53ChangeInfo: Sendable, Equatable {
    /// Without the `/change/` prefix.
    public var id: String
    public var status: Route53ChangeStatus
    public var submittedAt: Date?
    public var comment: String?

    public init(id: String, status: Route53ChangeStatus, submittedAt: Date? = nil, comment: String? = nil) {
        (self.id, self.status, self.submittedAt, self.comment) = (id, status, submittedAt, comment)
    }
}

public struct HostedZone: Sendable, Equatable {
    /// Without the `/hostedzone/` prefix.
    public var id: String
    /// Fully qualified, with the trailing dot.
    public var name: String
    public var callerReference: String?
    public var nameServers: [String]
    public var change: Route53ChangeInfo?
}
