import RecoveryCore

/// Atomic integer counters under `<prefix>counter:<key>`.
public struct RedisCounterStore: Sendable {
    public let client: RedisClient
    public let keyspace: RedisKeyspace

    public init(client: RedisClient, keyspace: RedisKeyspace = RedisKeyspace()) {
        self.client = client
        self.keyspace = keyspace
    }

    // KEYS[1] counter; ARGV[1] increment, ARGV[2] expiry in ms.
    // The result passes through a Lua number, so it is exact up to 2^53.
    static let incrementWithExpiryScript = RedisScript(
        """
        local value = redis.call('INCRBY', KEYS[1], ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return value
        """)

    /// Adds `amount` (may be negative) and returns the new value; a missing counter starts at 0.
    /// With `expiry`, the counter's TTL is (re)set to `expiry` in the same atomic step, so it
    /// disappears `expiry` after its last increment. Never retried after a broken connection
    /// (not idempotent).
    @discardableResult
    public func increment(
        _ key: String, by amount: Int64 = 1,
        expiry: Duration? = nil
    ) async throws(RedisError) -> Int64 {
        let redisKey = keyspace.counterKey(key)
        let reply: RedisValue
        if let expiry {
            let ms = try expiry.positiveMilliseconds("counter expiry")
            reply = try await client.eval(
                Self.incrementWithExpiryScript, keys: [redisKey],
                args: [String(amount), String(ms)], idempotent: false)
        } else {
            reply = try await client.command(["INCRBY", redisKey, String(amount)], idempotent: false)
        }
        guard case .integer(let value) = reply else {
            throw RedisLockStore.unexpected(reply, "increment", client)
        }
        return value
    }

    /// The counter's value, 0 when it does not exist.
    public func get(_ key: String) async throws(RedisError) -> Int64 {
        let reply = try await client.command(["GET", keyspace.counterKey(key)], idempotent: true)
        if reply == .null { return 0 }
        guard let value = reply.integer else { throw RedisLockStore.unexpected(reply, "counter get", client) }
        return value
    }

    /// Deletes the counter (it reads as 0 afterwards).
    public func reset(_ key: String) async throws(RedisError) {
        _ = try await client.command(["DEL", keyspace.counterKey(key)], idempotent: true)
    }
}

/// Small string values under `<prefix>kv:<key>`, including `setIfAbsent` for idempotency keys.
public struct RedisKeyValueStore: KeyValueStore {
    public let client: RedisClient
    public let keyspace: RedisKeyspace

    public init(client: RedisClient, keyspace: RedisKeyspace = RedisKeyspace()) {
        self.client = client
        self.keyspace = keyspace
    }

    /// Stores `value`, replacing any previous one; with `expiry` it disappears after that long.
    public func set(_ key: String, _ value: String, expiry: Duration? = nil) async throws(RedisError) {
        var args = ["SET", keyspace.valueKey(key), value]
        if let expiry { args += ["PX", String(try expiry.positiveMilliseconds("expiry"))] }
        let reply = try await client.command(args, idempotent: true)
        guard reply == .status("OK") else { throw RedisLockStore.unexpected(reply, "set", client) }
    }

    /// The value, or nil when absent (or expired).
    public func get(_ key: String) async throws(RedisError) -> String? {
        let reply = try await client.command(["GET", keyspace.valueKey(key)], idempotent: true)
        switch reply {
        case .null: return nil
        case .bulkString: return reply.string
        default: throw RedisLockStore.unexpected(reply, "get", client)
        }
    }

    /// Deletes the key; true if it existed.
    @discardableResult
    public func delete(_ key: String) async throws(RedisError) -> Bool {
        let reply = try await client.command(["DEL", keyspace.valueKey(key)], idempotent: true)
        return reply == .integer(1)
    }

    /// `SET key value NX [PX expiry]`: true if this call stored it, false if the key already existed.
    ///
    /// Not retried after a broken connection: a resend of a first attempt that did store the value
    /// would report `false`, and an idempotency-key check would then wrongly drop the original
    /// request. A `.connection` error here means "unknown": the caller decides (usually: treat as
    /// not stored and let the message be redelivered).
    public func setIfAbsent(_ key: String, _ value: String, expiry: Duration? = nil) async throws(RedisError) -> Bool {
        var args = ["SET", keyspace.valueKey(key), value, "NX"]
        if let expiry { args += ["PX", String(try expiry.positiveMilliseconds("expiry"))] }
        let reply = try await client.command(args, idempotent: false)
        switch reply {
        case .status("OK"): return true
        case .null: return false
        default: throw RedisLockStore.unexpected(reply, "setIfAbsent", client)
        }
    }
}
