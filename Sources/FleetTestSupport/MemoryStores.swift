import Foundation
import RecoveryCore

/// The in-memory `KeyValueStore`. Time is injected: expiry is judged by `now()`, so a test moves the
/// clock instead of sleeping.
public actor MemoryKeyValueStore: KeyValueStore {
    private var values: [String: (value: String, expires: ContinuousClock.Instant?)] = [:]
    private let now: @Sendable () -> ContinuousClock.Instant

    public init(now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.now = now
    }

    private func live(_ key: String) -> String? {
        guard let entry = values[key] else { return nil }
        if let expires = entry.expires, expires <= now() {
            values[key] = nil
            return nil
        }
        return entry.value
    }

    private func expiryInstant(_ expiry: Duration?) throws -> ContinuousClock.Instant? {
        guard let expiry else { return nil }
        guard expiry > .zero else { throw MemoryStoreError("expiry must be positive, got \(expiry)") }
        return now() + expiry
    }

    public func set(_ key: String, _ value: String, expiry: Duration?) throws {
        values[key] = (value, try expiryInstant(expiry))
    }

    public func get(_ key: String) -> String? { live(key) }

    @discardableResult
    public func delete(_ key: String) -> Bool {
        let existed = live(key) != nil
        values[key] = nil
        return existed
    }

    public func setIfAbsent(_ key: String, _ value: String, expiry: Duration?) throws -> Bool {
        guard live(key) == nil else { return false }
        values[key] = (value, try expiryInstant(expiry))
        return true
    }
}

/// A memory driver refused an argument the Redis driver refuses too.
public struct MemoryStoreError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The in-memory `VersionedStore`: the same semantics, no server.
public actor MemoryVersionedStore: VersionedStore {
    private var values: [String: VersionedValue] = [:]
    /// Deleting keeps the last version, as the Redis driver's DEL then HSET would start again at 1: a
    /// compare-and-set expecting 0 after a delete succeeds in both.
    public init() {}

    public func load(_ key: String) -> VersionedValue? { values[key] }

    public func compareAndSet(_ key: String, expectedVersion: Int64, data: String) -> Int64? {
        let current = values[key]?.version ?? 0
        guard current == expectedVersion else { return nil }
        values[key] = VersionedValue(data: data, version: current + 1)
        return current + 1
    }

    public func compareAndSet(all writes: [VersionedWrite]) throws -> [Int64]? {
        guard Set(writes.map(\.key)).count == writes.count else {
            throw MemoryStoreError("compareAndSet(all:) needs distinct keys")
        }
        guard writes.allSatisfy({ (values[$0.key]?.version ?? 0) == $0.expectedVersion }) else { return nil }
        return writes.map { write in
            let next = write.expectedVersion + 1
            values[write.key] = VersionedValue(data: write.data, version: next)
            return next
        }
    }

    public func delete(_ key: String) { values[key] = nil }

    public func keys() -> [String] { values.keys.sorted() }
}

/// The in-memory `WakeUpSchedule`.
public actor MemorySchedule: WakeUpSchedule {
    private var times: [String: Date] = [:]
    public init() {}

    public func schedule(_ member: String, at date: Date) { times[member] = date }
    public func cancel(_ member: String) { times[member] = nil }
    public func due(at date: Date, limit: Int) -> [String] {
        // Redis keeps scores in whole milliseconds (rounded) and orders equal scores by member: the same
        // here, so both drivers agree at the boundary.
        func ms(_ d: Date) -> Int64 { Int64((d.timeIntervalSince1970 * 1000).rounded()) }
        return times.filter { ms($0.value) <= ms(date) }
            .sorted { (ms($0.value), $0.key) < (ms($1.value), $1.key) }
            .prefix(max(0, limit)).map(\.key)
    }
}
