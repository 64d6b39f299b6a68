/// Key names used by the stores in this module; see docs/redis-keys.md.
///
/// Every key starts with `prefix` (default `recovery:`), so one Redis can host several fleets or
/// test runs side by side.
public struct RedisKeyspace: Sendable, Hashable {
    public static let defaultPrefix = "recovery:"
    public let prefix: String

    public init(prefix: String = RedisKeyspace.defaultPrefix) {
        self.prefix = prefix
    }

    /// `<prefix>lock:{<name>}`: holds `<token>:<fencing token>` while the lock is held.
    /// The braces are a Redis Cluster hash tag, keeping the lock and its fence key in one slot.
    public func lockKey(_ name: String) -> String { "\(prefix)lock:{\(name)}" }
    /// `<prefix>lock:{<name>}:fence`: the fencing counter (no TTL, never reset).
    public func fenceKey(_ name: String) -> String { "\(prefix)lock:{\(name)}:fence" }
    /// `<prefix>counter:<key>`
    public func counterKey(_ key: String) -> String { "\(prefix)counter:\(key)" }
    /// `<prefix>kv:<key>`
    public func valueKey(_ key: String) -> String { "\(prefix)kv:\(key)" }
}

extension Duration {
    /// Milliseconds for `PX`/`PEXPIRE`, rejecting durations under 1 ms.
    func positiveMilliseconds(_ what: String) throws(RedisError) -> Int64 {
        guard self > .zero else {
            throw RedisError(kind: .invalidArgument, message: "\(what) must be positive, got \(self)")
        }
        return roundedUpMilliseconds
    }
}
