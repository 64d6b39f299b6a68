import Foundation

/// Small values with an optional expiry: claims (`setIfAbsent`), idempotency markers, the notifier's
/// sent-markers. Drivers: `RedisKeyValueStore`, `MemoryKeyValueStore`; one contract test for both.
public protocol KeyValueStore: Sendable {
    /// Stores `value`, replacing any previous one; with `expiry` it disappears after that long.
    func set(_ key: String, _ value: String, expiry: Duration?) async throws
    /// The value, or nil when absent or expired.
    func get(_ key: String) async throws -> String?
    /// Deletes the key; true if it existed.
    @discardableResult func delete(_ key: String) async throws -> Bool
    /// Stores `value` only if the key is absent (or expired); true if this call stored it.
    func setIfAbsent(_ key: String, _ value: String, expiry: Duration?) async throws -> Bool
}

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
