import Foundation
import RecoveryCore

/// A value with a version, for read-modify-write without a lock: load it, compute the new value, and
/// store it only if nobody stored another version in between (`compareAndSet`). The decision worker
/// keeps each target's escalation state this way, so two replicas handling two observations of one
/// target can never both act on the same stale state: one of them loses the race and recomputes.
///
/// Layout: a hash `<prefix>state:<key>` with fields `v` (version, 1 on first write) and `d` (data).
public struct RedisStateStore: VersionedStore {
    public let client: RedisClient
    public let keyspace: RedisKeyspace

    public init(client: RedisClient, keyspace: RedisKeyspace = RedisKeyspace()) {
        self.client = client
        self.keyspace = keyspace
    }

    public typealias Versioned = VersionedValue

    func stateKey(_ key: String) -> String { "\(keyspace.prefix)state:\(key)" }

    /// The current value and version; nil data with version 0 when absent.
    public func load(_ key: String) async throws(RedisError) -> Versioned? {
        let reply = try await client.command(["HMGET", stateKey(key), "v", "d"], idempotent: true)
        guard case .array(let fields) = reply, fields.count == 2 else {
            throw RedisLockStore.unexpected(reply, "state load", client)
        }
        guard let versionText = fields[0].string, let version = Int64(versionText), let data = fields[1].string else {
            return nil
        }
        return Versioned(data: data, version: version)
    }

    /// The stored version alone (0 when absent): one small HGET.
    public func version(_ key: String) async throws(RedisError) -> Int64 {
        let reply = try await client.command(["HGET", stateKey(key), "v"], idempotent: true)
        if reply == .null { return 0 }
        guard let version = reply.integer else { throw RedisLockStore.unexpected(reply, "state version", client) }
        return version
    }

    // KEYS[1] state hash; ARGV[1] expected version (0 = absent), ARGV[2] new data.
    static let compareAndSetScript = RedisScript(
        """
        local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
        if current ~= tonumber(ARGV[1]) then return 0 end
        redis.call('HSET', KEYS[1], 'v', current + 1, 'd', ARGV[2])
        return current + 1
        """)

    /// Stores `data` if the stored version is still `expectedVersion`. Returns the new version, or nil when
    /// another writer got there first (load again and recompute). Not retried on a broken connection: the
    /// caller reloads and sees whether its write landed.
    public func compareAndSet(_ key: String, expectedVersion: Int64, data: String) async throws(RedisError) -> Int64? {
        let reply = try await client.eval(
            Self.compareAndSetScript, keys: [stateKey(key)],
            args: [String(expectedVersion), data], idempotent: false, replicated: true)
        guard let version = reply.integer else {
            throw RedisLockStore.unexpected(reply, "state compare-and-set", client)
        }
        return version == 0 ? nil : version
    }

    // KEYS: the state hashes; ARGV[1..n] their expected versions, ARGV[n+1..2n] their new data. One
    // script runs atomically, so either every hash is written or none. (On a Redis Cluster the keys would
    // need one hash slot; the fleet runs on one primary with Sentinel, docs/redis-keys.md.)
    static let compareAndSetAllScript = RedisScript(
        """
        local n = #KEYS
        for i = 1, n do
          if tonumber(redis.call('HGET', KEYS[i], 'v') or '0') ~= tonumber(ARGV[i]) then return {} end
        end
        local versions = {}
        for i = 1, n do
          versions[i] = tonumber(ARGV[i]) + 1
          redis.call('HSET', KEYS[i], 'v', versions[i], 'd', ARGV[n + i])
        end
        return versions
        """)

    public func compareAndSet(all writes: [VersionedWrite]) async throws(RedisError) -> [Int64]? {
        guard Set(writes.map(\.key)).count == writes.count else {
            throw RedisError(
                kind: .invalidArgument, message: "compareAndSet(all:) needs distinct keys",
                endpoint: client.url.endpoint)
        }
        let reply = try await client.eval(
            Self.compareAndSetAllScript, keys: writes.map { stateKey($0.key) },
            args: writes.map { String($0.expectedVersion) } + writes.map(\.data), idempotent: false,
            replicated: true)
        guard case .array(let items) = reply else {
            throw RedisLockStore.unexpected(reply, "state compare-and-set", client)
        }
        let versions = items.compactMap(\.integer)
        guard versions.count == items.count else {
            throw RedisLockStore.unexpected(reply, "state compare-and-set", client)
        }
        return versions.isEmpty && !writes.isEmpty ? nil : versions
    }

    public func delete(_ key: String) async throws(RedisError) {
        _ = try await client.command(["DEL", stateKey(key)], idempotent: true)
    }

    /// Keys (without the prefix) of every stored state, for status listings.
    public func keys() async throws(RedisError) -> [String] {
        let prefix = stateKey("")
        return try await client.keys(matching: prefix + "*").map { String($0.dropFirst(prefix.count)) }.sorted()
    }
}

/// Wake-up times, one per member, in a sorted set `<prefix>schedule:<name>` scored by Unix time in ms.
/// The decision worker records each target's next deadline here and polls for the due ones.
public struct RedisSchedule: WakeUpSchedule {
    public let client: RedisClient
    public let key: String

    public init(client: RedisClient, keyspace: RedisKeyspace = RedisKeyspace(), name: String) {
        self.client = client
        key = "\(keyspace.prefix)schedule:\(name)"
    }

    /// Sets (or moves) the member's wake-up time.
    public func schedule(_ member: String, at date: Date) async throws(RedisError) {
        let score = String(Int64((date.timeIntervalSince1970 * 1000).rounded()))
        _ = try await client.command(["ZADD", key, score, member], idempotent: true)
    }

    public func cancel(_ member: String) async throws(RedisError) {
        _ = try await client.command(["ZREM", key, member], idempotent: true)
    }

    /// Members due at or before `date`, earliest first.
    public func due(at date: Date, limit: Int = 500) async throws(RedisError) -> [String] {
        let score = String(Int64((date.timeIntervalSince1970 * 1000).rounded()))
        let reply = try await client.command(
            ["ZRANGEBYSCORE", key, "-inf", score, "LIMIT", "0", String(limit)], idempotent: true)
        guard case .array(let members) = reply else { throw RedisLockStore.unexpected(reply, "schedule due", client) }
        return members.compactMap(\.string)
    }
}

extension RedisClient {
    /// Every key matching `pattern` (a SCAN MATCH glob), walked with SCAN so Redis is never blocked.
    public func keys(matching pattern: String) async throws(RedisError) -> [String] {
        var cursor = "0"
        var result: [String] = []
        repeat {
            let reply = try await command(["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"], idempotent: true)
            guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].string,
                case .array(let names) = parts[1]
            else {
                throw RedisLockStore.unexpected(reply, "scan", self)
            }
            result += names.compactMap(\.string)
            cursor = next
        } while cursor != "0"
        return result
    }

    /// Deletes every key under a keyspace's prefix (tests and benchmarks clean up with it); returns how
    /// many were deleted.
    @discardableResult
    public func deleteAll(in keyspace: RedisKeyspace) async throws(RedisError) -> Int {
        let keys = try await keys(matching: "\(keyspace.prefix)*")
        var deleted = 0
        for start in stride(from: 0, to: keys.count, by: 500) {
            let batch = Array(keys[start..<min(start + 500, keys.count)])
            deleted += Int(try await command(["DEL"] + batch, idempotent: true).integer ?? 0)
        }
        return deleted
    }
}
