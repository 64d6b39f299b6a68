import Foundation
import RecoveryCore

/// The in-memory `LockStore`: the semantics of `RedisLockStore` (one lease per name until released or
/// expired, a fencing token per name that only grows, stale leases that no longer renew, release or
/// count as held), with time injected so a test moves the clock instead of waiting out a TTL. `expire`
/// ends a lock at once (as a holder's long pause would), for tests of a lost lease.
public actor MemoryLockStore: LockStore {
    private var held: [String: (value: String, expires: ContinuousClock.Instant)] = [:]
    private var fences: [String: UInt64] = [:]
    private let now: @Sendable () -> ContinuousClock.Instant

    public init(now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.now = now
    }

    /// The value a live lock holds, dropping an expired one.
    private func live(_ name: String) -> String? {
        guard let lock = held[name] else { return nil }
        if lock.expires <= now() {
            held[name] = nil
            return nil
        }
        return lock.value
    }

    public func acquire(name: String, ttl: Duration) throws -> LockLease? {
        guard !name.isEmpty, !name.contains("{"), !name.contains("}") else {
            throw MemoryStoreError("lock name '\(name)' must be non-empty and contain no '{' or '}'")
        }
        guard ttl > .zero else { throw MemoryStoreError("lock TTL must be positive, got \(ttl)") }
        guard live(name) == nil else { return nil }
        let requestedAt = now()
        let fence = (fences[name] ?? 0) + 1
        fences[name] = fence
        let lease = LockLease(name: name, token: Self.token(), fencingToken: fence, ttl: ttl, requestedAt: requestedAt)
        held[name] = (lease.storedValue, requestedAt + ttl)
        return lease
    }

    /// Test fault: the next `times` renewals (all, by default) throw `error` (Redis not answering); nil
    /// ends it. The lock still expires on its own.
    private var renewalFault: (error: any Error, left: Int)?
    public func failRenewals(with error: (any Error)?, times: Int = .max) {
        renewalFault = error.map { ($0, times) }
    }
    /// How many renewals have failed because of the fault.
    public private(set) var failedRenewals = 0

    public func renew(_ lease: LockLease, ttl: Duration) throws -> Bool {
        guard ttl > .zero else { throw MemoryStoreError("lock TTL must be positive, got \(ttl)") }
        if let fault = renewalFault, fault.left > 0 {
            renewalFault?.left -= 1
            failedRenewals += 1
            throw fault.error
        }
        guard live(lease.name) == lease.storedValue else { return false }
        held[lease.name] = (lease.storedValue, now() + ttl)
        return true
    }

    public func release(_ lease: LockLease) -> Bool {
        guard live(lease.name) == lease.storedValue else { return false }
        held[lease.name] = nil
        return true
    }

    public func isHeld(_ lease: LockLease) -> Bool { live(lease.name) == lease.storedValue }

    /// Ends the lock of `name` now, whoever holds it (its fencing token stays).
    public func expire(_ name: String) { held[name] = nil }

    /// The last fencing token handed out for `name` (0 if never acquired).
    public func currentFencingToken(name: String) -> UInt64 { fences[name] ?? 0 }

    /// 32 lowercase hex digits.
    private static func token() -> String {
        var rng = SystemRandomNumberGenerator()
        return [rng.next() as UInt64, rng.next() as UInt64].map {
            let digits = String($0, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }.joined()
    }
}
