import Foundation

/// The Route 53 calls of a fail-over and the DR pre-flight, as a port: ``Route53Client`` talks to AWS,
/// `MemoryRoute53` (FleetTestSupport) is the in-memory driver; both pass one contract test. Ids are
/// taken and returned without their `/hostedzone/` and `/change/` prefixes; names come back absolute
/// (with the final dot). Errors are ``AWSError``s (`NoSuchHostedZone`, `InvalidChangeBatch`, …).
public protocol Route53Operations: Sendable {
    /// The clock and sleep of ``waitUntilChangeInsync(_:timeout:interval:)``.
    var dependencies: AWSClientDependencies { get }
    /// The zone's records, in Route 53's order, from `startName` (and `startType`) when given.
    func listResourceRecordSets(hostedZoneId: String, startName: String?, startType: DNSRecordType?) async throws
        -> [ResourceRecordSet]
    /// UPSERT of an A record; the change is `PENDING` until every Route 53 server has it.
    func upsertARecord(hostedZoneId: String, name: String, addresses: [String], ttl: Int, comment: String?) async throws
        -> Route53ChangeInfo
    /// `PENDING` or `INSYNC`.
    func getChange(_ changeId: String) async throws -> Route53ChangeInfo
}

extension Route53Client: Route53Operations {
    public var dependencies: AWSClientDependencies { aws.dependencies }
}

extension Route53Operations {
    /// Polls GetChange until `INSYNC` (usually within 60 s), bounded by `timeout`, on the client's
    /// clock; task cancellation stops it at once.
    @discardableResult
    public func waitUntilChangeInsync(
        _ changeId: String, timeout: Duration = .seconds(300), interval: Duration = .seconds(10)
    ) async throws -> Route53ChangeInfo {
        try await waitUntil(
            "Route 53 change \(Route53Client.bareId(changeId)) INSYNC", timeout: timeout, interval: interval,
            dependencies: dependencies
        ) { () -> WaiterStep<Route53ChangeInfo> in
            let change = try await getChange(changeId)
            return change.status == .insync ? .done(change) : .pending(state: change.status.rawValue)
        }
    }
}
