import Foundation
import Testing
@testable import RedisStore

/// Counts holders inside the critical section; records the most seen at once.
actor Occupancy {
    private(set) var current = 0
    private(set) var maximum = 0
    private(set) var fences: [UInt64] = []

    func enter(fence: UInt64) -> Int {
        current += 1
        maximum = max(maximum, current)
        fences.append(fence)
        return current
    }

    func exit() { current -= 1 }
}

@Suite("RedisLockStore against REDIS_URL", .enabled(if: TestEnvironment.hasRedis))
struct RedisLockStoreTests {
    @Test func acquireStoresTokenAndFenceAndReleaseKeepsFence() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let locks = RedisLockStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            #expect(try await locks.currentFencingToken(name: "i-1") == 0)
            let lease = try #require(try await locks.acquire(name: "i-1", ttl: held))
            #expect(lease.name == "i-1")
            // The first fence is the Redis clock in microseconds (the floor that survives a fail-over).
            let clock = try #require(try await client.command(["TIME"], idempotent: true).array?.compactMap(\.integer))
            #expect(lease.fencingToken > 0 && lease.fencingToken <= UInt64(clock[0] * 1_000_000 + clock[1]))
            #expect(lease.token.count == 32)
            let lockKey = keys.keyspace.lockKey("i-1")
            #expect(lockKey == "\(keys.prefix)lock:{i-1}")
            #expect(
                try await client.command(["GET", lockKey], idempotent: true).string
                    == "\(lease.token):\(lease.fencingToken)")
            let pttl = try #require(try await client.command(["PTTL", lockKey], idempotent: true).integer)
            #expect(pttl > 0 && pttl <= 600_000)
            #expect(try await locks.isHeld(lease))

            #expect(try await locks.acquire(name: "i-1", ttl: held) == nil)

            #expect(try await locks.renew(lease, ttl: .seconds(1200)))
            let renewed = try #require(try await client.command(["PTTL", lockKey], idempotent: true).integer)
            #expect(renewed > 600_000 && renewed <= 1_200_000)

            #expect(try await locks.release(lease))
            #expect(try await client.command(["EXISTS", lockKey], idempotent: true) == .integer(0))
            #expect(try await locks.isHeld(lease) == false)
            #expect(try await locks.release(lease) == false)
            // The fence survives release and keeps counting.
            #expect(try await locks.currentFencingToken(name: "i-1") == lease.fencingToken)
            let next = try #require(try await locks.acquire(name: "i-1", ttl: held))
            #expect(next.fencingToken > lease.fencingToken)
            #expect(try await locks.currentFencingToken(name: "i-1") == next.fencingToken)
            #expect(next.token != lease.token)
        }
    }

    /// What a Sentinel fail-over can do to the counter: the promoted replica missed the last increments (here
    /// the counter is set back, as if the last acquisitions never replicated). The next fence must still be
    /// larger than any handed out: the acquire script never goes below the server clock in microseconds.
    @Test func aFenceCounterThatWentBackStillGivesALargerFence() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let locks = RedisLockStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            let first = try #require(try await locks.acquire(name: "lost", ttl: held))
            #expect(try await locks.release(first))
            let second = try #require(try await locks.acquire(name: "lost", ttl: held))
            #expect(try await locks.release(second))
            // The new primary only knew the first one.
            _ = try await client.command(
                ["SET", keys.keyspace.fenceKey("lost"), String(first.fencingToken)], idempotent: true)
            try await Task.sleep(for: .milliseconds(5))
            let third = try #require(try await locks.acquire(name: "lost", ttl: held))
            #expect(third.fencingToken > second.fencingToken)
        }
    }

    @Test func resentAcquireWithSameTokenReturnsSameLease() async throws {
        // What the client does when an acquire's connection breaks after the server ran it: it sends
        // the same script with the same token again. The token check makes that a no-op.
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let lockKeys = [keys.keyspace.lockKey("x"), keys.keyspace.fenceKey("x")]
            let token = RedisLockStore.makeToken()
            let first = try await client.eval(
                RedisLockStore.acquireScript, keys: lockKeys, args: [token, "600000"],
                idempotent: true)
            let again = try await client.eval(
                RedisLockStore.acquireScript, keys: lockKeys, args: [token, "600000"],
                idempotent: true)
            #expect((first.integer ?? 0) > 0)
            #expect(again == first, "the resend returns the same fence")
            #expect(try await client.command(["GET", lockKeys[1]], idempotent: true).integer == first.integer)
            let other = try await client.eval(
                RedisLockStore.acquireScript, keys: lockKeys,
                args: [RedisLockStore.makeToken(), "600000"], idempotent: true)
            #expect(other == .null)
        }
    }

    @Test func invalidArgumentsAreRejected() async throws {
        let client = RedisClient(url: try TestEnvironment.url())
        let locks = RedisLockStore(client: client, keyspace: TestKeyspace().keyspace)
        for name in ["", "a{b", "c}"] {
            let error = try #require(await redisError { _ = try await locks.acquire(name: name, ttl: .seconds(1)) })
            #expect(error.kind == .invalidArgument)
        }
        let error = try #require(await redisError { _ = try await locks.acquire(name: "ok", ttl: .zero) })
        #expect(error.kind == .invalidArgument)
    }

    @Test func onlyOneOfManyContendersWinsEachRound() async throws {
        let url = try TestEnvironment.url()
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        // One client (connection) per contender, as separate workers would have.
        var clients: [RedisClient] = []
        for _ in 0..<20 { clients.append(try await RedisClient.connect(url: url)) }
        let contenders = clients.map { RedisLockStore(client: $0, keyspace: keys.keyspace) }
        try await keys.run(with: admin) {
            var previousFence: UInt64 = 0
            for round in 1...5 {
                let leases = try await withThrowingTaskGroup(of: LockLease?.self) { group in
                    for locks in contenders {
                        group.addTask { try await locks.acquire(name: "contended", ttl: held) }
                    }
                    var won: [LockLease] = []
                    for try await lease in group { if let lease { won.append(lease) } }
                    return won
                }
                #expect(leases.count == 1, "round \(round): \(leases.count) winners")
                let winner = try #require(leases.first)
                #expect(winner.fencingToken > previousFence)
                previousFence = winner.fencingToken
                // While held, nobody else gets it.
                #expect(try await contenders[0].acquire(name: "contended", ttl: held) == nil)
                #expect(try await contenders[1].isHeld(winner))
                #expect(try await contenders[2].release(winner))
            }
            #expect(try await contenders[3].currentFencingToken(name: "contended") == previousFence)
        }
    }

    @Test func mutualExclusionUnderContention() async throws {
        let url = try TestEnvironment.url()
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        var clients: [RedisClient] = []
        for _ in 0..<20 { clients.append(try await RedisClient.connect(url: url)) }
        let contenders = clients.map { RedisLockStore(client: $0, keyspace: keys.keyspace) }
        let occupancy = Occupancy()
        let sectionsPerTask = 3
        try await keys.run(with: admin) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for locks in contenders {
                    group.addTask {
                        var done = 0
                        while done < sectionsPerTask {
                            guard let lease = try await locks.acquire(name: "mutex", ttl: held) else {
                                try await Task.sleep(for: .milliseconds(1))  // back off, then try again
                                continue
                            }
                            let inside = await occupancy.enter(fence: lease.fencingToken)
                            #expect(inside == 1)
                            #expect(try await locks.isHeld(lease))
                            await Task.yield()
                            await occupancy.exit()
                            #expect(try await locks.release(lease))
                            done += 1
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(await occupancy.maximum == 1)
            let fences = await occupancy.fences
            #expect(fences.count == 20 * sectionsPerTask)
            #expect(Set(fences).count == fences.count, "no fence handed out twice")
            #expect(fences == fences.sorted(), "each section's fence is larger than every earlier section's")
        }
    }

    @Test func staleHolderCannotRenewReleaseOrClaimSuccessorsLock() async throws {
        let url = try TestEnvironment.url()
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        let holderA = RedisLockStore(client: try await RedisClient.connect(url: url), keyspace: keys.keyspace)
        let holderB = RedisLockStore(client: try await RedisClient.connect(url: url), keyspace: keys.keyspace)
        try await keys.run(with: admin) {
            let a = try #require(try await holderA.acquire(name: "i-42", ttl: held))
            let lockKey = keys.keyspace.lockKey("i-42")
            // A's lock expires: make Redis expire it now instead of waiting for the TTL.
            #expect(try await admin.command(["PEXPIRE", lockKey, "0"], idempotent: true) == .integer(1))
            #expect(try await holderA.isHeld(a) == false)

            let b = try #require(try await holderB.acquire(name: "i-42", ttl: held))
            #expect(b.fencingToken > a.fencingToken)

            // A wakes up and tries everything; all fail and B is undisturbed.
            #expect(try await holderA.isHeld(a) == false)
            #expect(try await holderA.renew(a, ttl: .seconds(1200)) == false)
            #expect(try await holderA.release(a) == false)
            #expect(try await holderA.acquire(name: "i-42", ttl: held) == nil)

            #expect(try await holderB.isHeld(b))
            #expect(try await admin.command(["GET", lockKey], idempotent: true).string == b.storedValue)
            let pttl = try #require(try await admin.command(["PTTL", lockKey], idempotent: true).integer)
            #expect(pttl > 0 && pttl <= 600_000, "A's renew must not have extended B's lock")
            #expect(try await holderB.currentFencingToken(name: "i-42") == b.fencingToken)
            #expect(try await holderB.release(b))
        }
    }

    @Test func lockExpiresOnRedisClock() async throws {
        // A real TTL expiry (Redis's clock, not ours): a 200 ms lease is gone shortly after.
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        let locks = RedisLockStore(client: client, keyspace: keys.keyspace)
        try await keys.run(with: client) {
            let a = try #require(try await locks.acquire(name: "short", ttl: .milliseconds(200)))
            #expect(a.validUntil == a.requestedAt + .milliseconds(200))
            let deadline = ContinuousClock.now + .seconds(5)
            while try await locks.isHeld(a), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try await locks.isHeld(a) == false)
            #expect(ContinuousClock.now >= a.requestedAt + .milliseconds(200))
            let b = try #require(try await locks.acquire(name: "short", ttl: .seconds(5)))
            #expect(b.fencingToken > a.fencingToken)
        }
    }
}
