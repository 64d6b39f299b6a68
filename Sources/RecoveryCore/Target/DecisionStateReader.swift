import Foundation

/// Where the decision worker keeps its state in a `VersionedStore`: one `TargetMachine` document per
/// target under `target:<name>` and the fleet brake under `fleet:brake` (in Redis: `state:target:<name>`,
/// `state:fleet:brake`; docs/redis-keys.md).
public enum DecisionStateKeys {
    public static let brake = "fleet:brake"
    public static func target(_ name: String) -> String { "target:\(name)" }
}

/// Read-only access to what the decision worker keeps, for `recoveryctl status`. Never writes.
public struct DecisionStateReader: Sendable {
    /// A target's stored document.
    public struct TargetState: Sendable {
        public var machine: EscalationMachine
        public var lastProbe: LastProbe?
        /// Messages stored but not yet published (normally empty).
        public var pendingMessages: Int
        public var version: Int64
    }

    public let states: any VersionedStore

    public init(states: any VersionedStore) { self.states = states }

    /// Names of every target the decision worker has a document for.
    public func targetNames() async throws -> [String] {
        let prefix = DecisionStateKeys.target("")
        return try await states.keys().filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    public func target(_ name: String) async throws -> TargetState? {
        guard let loaded = try await states.load(DecisionStateKeys.target(name)) else { return nil }
        let stored = try StateCodec.decodeTarget(Array(loaded.data.utf8))
        return TargetState(
            machine: stored.ladder, lastProbe: stored.lastProbe, pendingMessages: stored.outbox.count,
            version: loaded.version)
    }

    /// The fleet brake, or nil when the decision worker has not stored one yet (not engaged).
    public func brake() async throws -> FleetBrake? {
        guard let loaded = try await states.load(DecisionStateKeys.brake) else { return nil }
        return try StateCodec.decodeBrake(Array(loaded.data.utf8))
    }
}
