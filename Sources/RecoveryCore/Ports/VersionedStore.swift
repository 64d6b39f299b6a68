import Foundation

/// A value and its version, as a `VersionedStore` keeps it.
public struct VersionedValue: Sendable, Equatable {
    public var data: String
    /// 1 on the first write, one more on each later one.
    public var version: Int64
    public init(data: String, version: Int64) {
        self.data = data
        self.version = version
    }
}

/// One write of `VersionedStore.compareAndSet(all:)`.
public struct VersionedWrite: Sendable, Equatable {
    public var key: String
    public var expectedVersion: Int64
    public var data: String
    public init(_ key: String, expectedVersion: Int64, data: String) {
        self.key = key
        self.expectedVersion = expectedVersion
        self.data = data
    }
}

/// Read-modify-write without a lock (the decision worker's per-target state): load a value with its
/// version, compute, and store only if nobody stored another version meanwhile. The Redis driver is
/// `RedisStateStore`; `MemoryVersionedStore` is the in-memory one. Both pass one contract test
/// (`Tests/FleetWorkersTests/PortContractTests.swift`).
public protocol VersionedStore: Sendable {
    /// The value and its version; nil when the key was never written (or was deleted).
    func load(_ key: String) async throws -> VersionedValue?
    /// The stored version alone (0 when absent): cheaper than `load` for a value the caller has decoded
    /// before (the decision worker's fleet brake).
    func version(_ key: String) async throws -> Int64
    /// Stores `data` if the stored version is still `expectedVersion` (0: absent). Returns the new
    /// version, or nil when another writer got there first.
    func compareAndSet(_ key: String, expectedVersion: Int64, data: String) async throws -> Int64?
    /// Stores every write or none, atomically: each only if its key's version is still the expected one.
    /// Returns the new versions in the writes' order, or nil when any key changed meanwhile (then nothing
    /// is stored). The keys must differ.
    func compareAndSet(all writes: [VersionedWrite]) async throws -> [Int64]?
    func delete(_ key: String) async throws
    /// Every stored key, sorted.
    func keys() async throws -> [String]
}

extension VersionedStore {
    public func version(_ key: String) async throws -> Int64 { try await load(key)?.version ?? 0 }
}

/// Wake-up times, one per member (the decision worker's deadlines). Drivers: `RedisSchedule`,
/// `MemorySchedule`.
public protocol WakeUpSchedule: Sendable {
    /// Sets (or moves) `member`'s wake-up time.
    func schedule(_ member: String, at date: Date) async throws
    func cancel(_ member: String) async throws
    /// Members due at `date`, earliest first, at most `limit`.
    func due(at date: Date, limit: Int) async throws -> [String]
}
