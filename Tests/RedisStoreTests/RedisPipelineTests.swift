import Foundation
import Testing
@testable import RedisStore

/// Concurrent callers' commands share round trips (RedisClient's auto-pipelining); each keeps the rules of
/// a single command.
@Suite("RedisClient pipelining", .enabled(if: TestEnvironment.hasRedis))
struct RedisPipelineTests {
    @Test func concurrentCallersGetTheirOwnRepliesInFewerRoundTrips() async throws {
        let client = try await RedisClient.connect(url: try TestEnvironment.url())
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            let before = client.pipelining
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<400 {
                    group.addTask {
                        let key = "\(keys.prefix)k\(i)"
                        _ = try await client.command(["SET", key, "value-\(i)"], idempotent: true)
                        let counter = try await client.command(["INCR", "\(keys.prefix)counter"], idempotent: false)
                        #expect((counter.integer ?? 0) >= 1)
                        #expect(try await client.command(["GET", key], idempotent: true).string == "value-\(i)")
                        // An error reply in the middle of a pipeline is that caller's alone.
                        let error = await redisError {
                            _ = try await client.command(["INCR", key], idempotent: false)
                        }
                        #expect(error?.kind == .server)
                    }
                }
                try await group.waitForAll()
            }
            let after = client.pipelining
            #expect(try await client.command(["GET", "\(keys.prefix)counter"], idempotent: true).string == "400")
            let (batches, commands) = (after.batches - before.batches, after.commands - before.commands)
            #expect(commands == 1_600)
            // 400 callers at once: far fewer round trips than commands.
            #expect(batches < commands / 2, "\(batches) batches for \(commands) commands")
        }
    }

    /// A pipeline [INCR a, BLPOP q, SET b, INCR c] whose connection is killed while BLPOP blocks: INCR a
    /// answered; BLPOP (not idempotent) fails; SET b (idempotent) is sent again on a new connection; INCR c
    /// (not idempotent, queued behind BLPOP) fails and did not run, so it is not run twice by a resend.
    @Test func aBrokenPipelineResendsOnlyIdempotentCommands() async throws {
        let url = try TestEnvironment.url()
        let name = "p-\(UUID().uuidString.prefix(8))"
        let client = RedisClient(url: url, options: .init(commandTimeout: .seconds(40), clientName: name))
        let admin = try await RedisClient.connect(url: url)
        let keys = TestKeyspace()
        try await keys.run(with: admin) {
            let (a, b, c, q) = ("\(keys.prefix)a", "\(keys.prefix)b", "\(keys.prefix)c", "\(keys.prefix)q")
            // Occupies the client until the four commands below wait, in this order, to go as one batch.
            let blocker = Task { try await client.command(["BLPOP", "\(keys.prefix)blocker", "30"], idempotent: true) }
            _ = try await RedisInFlightBreakTests().blockedClientID(admin, name: name)
            func submit(_ args: [String], idempotent: Bool) async throws -> Task<RedisValue, any Error> {
                let waiting = client.waitingCommands
                let task = Task { try await client.command(args, idempotent: idempotent) }
                while client.waitingCommands == waiting { try await Task.sleep(for: .milliseconds(1)) }
                return task
            }
            let incrA = try await submit(["INCR", a], idempotent: false)
            let blpop = try await submit(["BLPOP", q, "30"], idempotent: false)
            let setB = try await submit(["SET", b, "x"], idempotent: true)
            let incrC = try await submit(["INCR", c], idempotent: false)
            _ = try await admin.command(["LPUSH", "\(keys.prefix)blocker", "go"], idempotent: false)
            #expect(
                try await blocker.value
                    == .array([.bulkString(Array("\(keys.prefix)blocker".utf8)), .bulkString(Array("go".utf8))]))
            #expect(try await incrA.value == .integer(1))
            // INCR a has run, so the pipeline's connection is now blocked in BLPOP q.
            let id = try await RedisInFlightBreakTests().blockedClientID(admin, name: name)
            _ = try await admin.command(["CLIENT", "KILL", "ID", id], idempotent: true)
            let blpopError = await redisError { _ = try await blpop.value }
            #expect(blpopError?.kind == .connection)
            #expect(try await setB.value == .status("OK"))
            let incrCError = await redisError { _ = try await incrC.value }
            #expect(incrCError?.kind == .connection)
            #expect(incrCError?.command == "INCR")
            #expect(try await admin.command(["GET", b], idempotent: true).string == "x")
            #expect(try await admin.command(["GET", c], idempotent: true) == .null)
            #expect(try await admin.command(["GET", a], idempotent: true).string == "1")
        }
    }

    /// Replicated writes in one pipeline each get their WAIT: with no replica to acknowledge, every one
    /// throws `.notReplicated` (the write happened, unconfirmed); the plain commands among them succeed.
    @Test func replicatedWritesInAPipelineEachWait() async throws {
        let options = RedisClient.Options(replicas: 1, replicaTimeout: .milliseconds(20))
        let client = try await RedisClient.connect(url: try TestEnvironment.url(), options: options)
        let keys = TestKeyspace()
        try await keys.run(with: client) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask { () async throws -> Void in
                        let key = "\(keys.prefix)r\(i)"
                        if i.isMultiple(of: 2) {
                            let error = await redisError {
                                _ = try await client.command(["SET", key, "w"], idempotent: true, replicated: true)
                            }
                            #expect(error?.kind == .notReplicated)
                        } else {
                            #expect(try await client.command(["SET", key, "p"], idempotent: true) == .status("OK"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            for i in 0..<20 {
                let value = try await client.command(["GET", "\(keys.prefix)r\(i)"], idempotent: true).string
                #expect(value == (i.isMultiple(of: 2) ? "w" : "p"))
            }
        }
    }
}
