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
