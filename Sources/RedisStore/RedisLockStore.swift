import RecoveryCore

/// The lease type lives with the `LockStore` port in RecoveryCore; the name stays visible to importers
/// of RedisStore.
public typealias LockLease = RecoveryCore.LockLease

/// Distributed mutual-exclusion locks with fencing tokens, in Redis.
///
/// - `acquire` runs one Lua script: if the lock key is absent it takes the next fence and sets
///   the lock key to `<token>:<fence>` with `PX ttl` (equivalent to `SET NX PX` followed by `INCR`,
///   but atomic and with the fence stored in the value). The next fence is the stored one plus one, but
///   never less than the server's clock in microseconds (`TIME`): a primary promoted by Sentinel that
///   missed the last increments (replication is asynchronous) still hands out larger fences than any its
///   predecessor gave, because its clock has moved on by the fail-over time (seconds) since. This holds
///   while the Redis hosts' clocks agree to well within that time (NTP); docs/scaling.md.
///   With `replicas` > 0 on the client the acquire is a replicated write (`WAIT`): a lock and fence that
///   no replica acknowledged are released again and the acquire throws `.notReplicated` (fail closed). If the key already holds this lease's
///   token (a retry of an acquire whose reply was lost) it refreshes the TTL and returns the same
///   fence; any other value means someone else holds it: `nil`.
/// - `renew` and `release` are compare-and-`PEXPIRE` / compare-and-`DEL` Lua scripts: they act only
///   if the key still holds exactly this lease's value, so a stale holder can never extend or delete
///   a successor's lock.
/// - `isHeld` is a single `GET` compared with the lease's value; with replicas to wait for, the renew
///   script followed by `WAIT` (see ``isHeld(_:)``).
///
/// Retry safety (see ``RedisClient`` — a command whose connection broke is resent once only when
/// marked idempotent):
/// - acquire: idempotent thanks to the token check above (a resend finds its own token and returns
///   the same lease instead of `nil`).
/// - renew, isHeld, currentFencingToken: idempotent.
/// - release: idempotent in effect (a resend never deletes someone else's lock), but if the first
///   attempt did delete, the resend reports `false`. Callers must treat `false` from release as
///   "not held any more", not as an error.
public struct RedisLockStore: LockStore {
    public let client: RedisClient
    public let keyspace: RedisKeyspace

    public init(client: RedisClient, keyspace: RedisKeyspace = RedisKeyspace()) {
        self.client = client
        self.keyspace = keyspace
    }

    // KEYS[1] lock key, KEYS[2] fence key; ARGV[1] token, ARGV[2] ttl in ms.
    static let acquireScript = RedisScript(
        """
        local current = redis.call('GET', KEYS[1])
        if current then
          local sep = string.find(current, ':', 1, true)
          if sep and string.sub(current, 1, sep - 1) == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return tonumber(string.sub(current, sep + 1))
          end
          return false
        end
        local fence = redis.call('INCR', KEYS[2])
        local now = redis.call('TIME')
        local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
        if fence < floor then
          fence = floor
          redis.call('SET', KEYS[2], string.format('%d', fence))
        end
        redis.call('SET', KEYS[1], ARGV[1] .. ':' .. string.format('%d', fence), 'PX', ARGV[2])
        return fence
        """)

    // KEYS[1] lock key; ARGV[1] stored value, ARGV[2] ttl in ms.
    static let renewScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          return redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 0
        """)

    // KEYS[1] lock key; ARGV[1] stored value.
    static let releaseScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          return redis.call('DEL', KEYS[1])
        end
        return 0
        """)

    // KEYS[1] lock key; ARGV[1] token (the fence is not known when the acquire's reply was not trusted).
    static let releaseByTokenScript = RedisScript(
        """
        local current = redis.call('GET', KEYS[1])
        if current and string.sub(current, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
          return redis.call('DEL', KEYS[1])
        end
        return 0
        """)

    /// Tries once to take the lock; `nil` if someone else holds it. Never waits for it to free up.
    public func acquire(name: String, ttl: Duration) async throws(RedisError) -> LockLease? {
        try Self.validate(name: name)
        let ms = try ttl.positiveMilliseconds("lock TTL")
        let token = Self.makeToken()
        let requestedAt = ContinuousClock.now
        let reply: RedisValue
        do {
            reply = try await client.eval(
                Self.acquireScript, keys: [keyspace.lockKey(name), keyspace.fenceKey(name)],
                args: [token, String(ms)], idempotent: true, replicated: true)
        } catch  where error.kind == .notReplicated {
            // Taken on the primary only: a fail-over could hand the same lock (and fence) to someone else.
            // Give it back (best effort: it expires with its TTL otherwise) and say so.
            _ = try? await client.eval(
                Self.releaseByTokenScript, keys: [keyspace.lockKey(name)], args: [token], idempotent: true)
            throw error
        }
        switch reply {
        case .null:
            return nil
        case .integer(let fence) where fence > 0:
            return LockLease(
                name: name, token: token, fencingToken: UInt64(fence), ttl: ttl,
                requestedAt: requestedAt)
        default:
            throw Self.unexpected(reply, "acquire", client)
        }
    }

    /// Extends the lock to `ttl` from now if `lease` still holds it; `false` if it does not (expired,
    /// released, or taken by someone else — whose lock is left untouched).
    public func renew(_ lease: LockLease, ttl: Duration) async throws(RedisError) -> Bool {
        let ms = try ttl.positiveMilliseconds("lock TTL")
        // Replicated: a renewal that only a primary cut off from its replicas took is not one (the promoted
        // replica's copy of the lock runs out on the last replicated expiry), so it throws and the keeper's
        // watchdog counts from the last replicated renewal.
        let reply = try await client.eval(
            Self.renewScript, keys: [keyspace.lockKey(lease.name)], args: [lease.storedValue, String(ms)],
            idempotent: true, replicated: true)
        return try Self.flag(reply, "renew", client)
    }

    /// Deletes the lock if `lease` still holds it; `false` if it does not (nothing is deleted).
    public func release(_ lease: LockLease) async throws(RedisError) -> Bool {
        let reply = try await client.eval(
            Self.releaseScript, keys: [keyspace.lockKey(lease.name)], args: [lease.storedValue],
            idempotent: true)
        return try Self.flag(reply, "release", client)
    }

    /// Whether `lease` still holds its lock. Check this right before every mutation done under the
    /// lock: a holder whose lock expired (e.g. after a long pause) sees `false` and must stop.
    ///
    /// With replicas to wait for (Sentinel), a read is not enough: a primary cut off from its replicas still
    /// answers reads while a promoted replica may already have given the lock to someone else. The check is
    /// then the renewal script, replicated: held means held here *and* acknowledged by a replica. (It also
    /// extends the lock to its TTL, as the keeper's next renewal would.)
    public func isHeld(_ lease: LockLease) async throws(RedisError) -> Bool {
        if client.options.replicas > 0 { return try await renew(lease, ttl: lease.ttl) }
        let reply = try await client.command(["GET", keyspace.lockKey(lease.name)], idempotent: true)
        switch reply {
        case .null: return false
        case .bulkString(let bytes): return bytes.elementsEqual(lease.storedValue.utf8)
        default: throw Self.unexpected(reply, "isHeld", client)
        }
    }

    /// The last fencing token handed out for `name` (0 if the lock was never acquired).
    public func currentFencingToken(name: String) async throws(RedisError) -> UInt64 {
        try Self.validate(name: name)
        let reply = try await client.command(["GET", keyspace.fenceKey(name)], idempotent: true)
        if reply == .null { return 0 }
        guard let value = reply.integer, value >= 0 else { throw Self.unexpected(reply, "currentFencingToken", client) }
        return UInt64(value)
    }

    // MARK: Helpers

    static func makeToken() -> String {
        var rng = SystemRandomNumberGenerator()
        let high = rng.next() as UInt64
        let low = rng.next() as UInt64
        return hex16(high) + hex16(low)
    }

    private static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Lock names become part of a hash-tagged key, so braces are refused.
    static func validate(name: String) throws(RedisError) {
        guard !name.isEmpty, !name.contains("{"), !name.contains("}") else {
            throw RedisError(
                kind: .invalidArgument,
                message: "lock name '\(name)' must be non-empty and contain no '{' or '}'")
        }
    }

    static func flag(_ reply: RedisValue, _ operation: String, _ client: RedisClient) throws(RedisError) -> Bool {
        switch reply {
        case .integer(1): return true
        case .integer(0): return false
        default: throw unexpected(reply, operation, client)
        }
    }

    static func unexpected(_ reply: RedisValue, _ operation: String, _ client: RedisClient) -> RedisError {
        RedisError(
            kind: .protocolViolation, message: "unexpected reply to \(operation): \(reply)",
            endpoint: client.url.endpoint)
    }
}
