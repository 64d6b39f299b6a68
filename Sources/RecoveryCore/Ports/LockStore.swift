import Foundation

/// A held lock: what `LockStore.acquire` hands back, and what `renew`, `release` and `isHeld` check.
///
/// The lease proves ownership through `token` (128 random bits, unique per acquisition) and carries
/// the `fencingToken`: a number that strictly increases with every successful acquisition of the same
/// lock name and is never reset. Pass it along with every mutation done under the lock, so a stale
/// holder's late writes can be recognised and refused.
public struct LockLease: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    /// 32 lowercase hex digits (128 bits from `SystemRandomNumberGenerator`).
    public let token: String
    public let fencingToken: UInt64
    /// The TTL asked for at acquisition.
    public let ttl: Duration
    /// Local time just before the acquire request was sent.
    public let requestedAt: ContinuousClock.Instant

    public init(
        name: String, token: String, fencingToken: UInt64, ttl: Duration,
        requestedAt: ContinuousClock.Instant
    ) {
        self.name = name
        self.token = token
        self.fencingToken = fencingToken
        self.ttl = ttl
        self.requestedAt = requestedAt
    }

    /// `requestedAt + ttl`. The store started the TTL after `requestedAt`, so (clock drift aside) the lock
    /// cannot have expired before this instant unless it was released or deleted. Renewals are not
    /// reflected here; use `LockStore.isHeld(_:)` before acting.
    public var validUntil: ContinuousClock.Instant { requestedAt + ttl }

    /// The exact value stored under the lock while this lease holds it.
    public var storedValue: String { "\(token):\(fencingToken)" }

    public var description: String {
        // The token is not secret, but a short form keeps logs readable.
        "LockLease(\(name), fencing \(fencingToken), token \(token.prefix(8))…)"
    }
}

/// Mutual exclusion with fencing tokens (the actuator's one actor per target). Drivers: `RedisLockStore`,
/// and `MemoryLockStore` in FleetTestSupport; both pass one contract test
/// (`Tests/FleetWorkersTests/LockStoreContractTests.swift`).
///
/// A lock is held by one lease at a time until it is released or its TTL runs out. Every successful
/// acquisition of a name gets a larger fencing token than the one before, so a holder that lost its lock
/// (it paused past the TTL) can be recognised: its lease no longer renews, releases or counts as held.
public protocol LockStore: Sendable {
    /// Tries once; nil while another lease holds the name. Throws for a name that cannot be a lock
    /// (empty, or with `{` or `}`) or a TTL that is not positive.
    func acquire(name: String, ttl: Duration) async throws -> LockLease?
    /// Extends the lock to `ttl` from now if `lease` still holds it; false if it does not.
    func renew(_ lease: LockLease, ttl: Duration) async throws -> Bool
    /// Frees the lock if `lease` still holds it; false if it does not (nothing is freed then).
    func release(_ lease: LockLease) async throws -> Bool
    /// Whether `lease` holds its lock right now. Check it right before each mutation done under it.
    func isHeld(_ lease: LockLease) async throws -> Bool
}
