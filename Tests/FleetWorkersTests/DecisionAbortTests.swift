import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import RecoveryCore
import Synchronization
import Testing

/// `recoveryctl abort` at the decision worker, on memory drivers: the running step's abort flag is written
/// to the key-value store (Redis `kv:abort:<key>` in production) with who, when and why, only for an
/// operator, and ahead of the state that records it, so a worker that dies in between loses nothing.
@Suite("Decision worker on memory drivers: abort")
struct DecisionAbortTests {
    typealias World = DecisionMemoryTests.World

    /// Runs the restart of `shop-web` (grace 0: requested with the outage) and returns its request.
    static func restarting(_ w: World) async throws -> ActionRequest {
        for _ in 0..<3 { try await w.observe("shop-web", healthy: false) }
        return try #require(w.requests.first).body
    }

    static func abort(_ w: World, by user: String, id: String, reason: String? = nil) async throws {
        let bytes = w.world.envelope(
            .command, id: id, target: "shop-web", body: CommandBody(name: "abort", reason: reason))
        try await w.decision.handle(try DecisionWorker.decodeCommandQueue(bytes), verifiedUser: user)
    }

    @Test func anOperatorsAbortFlagsTheRunningStepWithWhoAndWhy() async throws {
        let w = try await World()
        let request = try await Self.restarting(w)
        let flagKey = StepAbort.flagKey(request.idempotencyKey)

        // Not an operator: refused like every other command, and nothing is flagged.
        await #expect(throws: RejectMessage.self) { try await Self.abort(w, by: "mallory", id: "cmd-forged") }
        #expect(try await w.world.markers.get(flagKey) == nil)

        try await Self.abort(w, by: "alice", id: "cmd-abort", reason: "wrong instance")

        let flag = try #require(try await w.world.markers.get(flagKey), "the actuator's flag")
        let abort = try StepAbort.decode(flag)
        #expect(abort.by == "alice" && abort.reason == "wrong instance" && abort.commandId == "cmd-abort")
        let answer = try #require(w.notices.first { $0.body.command?.id == "cmd-abort" })
        #expect(answer.body.kind == .commandAccepted && answer.body.step == .restart)
        #expect(answer.body.detail?.contains("alice aborted restart") == true, "\(answer.body.detail ?? "")")
        let stored = try #require(try await DecisionStateReader(states: w.world.states).target("shop-web"))
        #expect(stored.machine.incident?.aborted == abort)
        #expect(w.requests.count == 1, "nothing else is requested")
    }

    @Test func theFlagIsWrittenBeforeTheStateSoADyingWorkerCannotLoseIt() async throws {
        let states = FailingOnce(MemoryVersionedStore())
        let fleet = MemoryFleet()
        let w = try await World(fleet: fleet, states: states)
        let request = try await Self.restarting(w)

        // The worker "dies" at the state's write: the command is not acked and comes back.
        states.armed.store(true, ordering: .relaxed)
        await #expect(throws: SimulatedStoreCrash.self) {
            try await Self.abort(w, by: "alice", id: "cmd-abort", reason: "wrong instance")
        }
        #expect(try await fleet.markers.get(StepAbort.flagKey(request.idempotencyKey)) != nil, "already flagged")
        let before = try #require(try await DecisionStateReader(states: states).target("shop-web"))
        #expect(before.machine.incident?.aborted == nil, "the state was not stored")

        try await Self.abort(w, by: "alice", id: "cmd-abort", reason: "wrong instance")
        let after = try #require(try await DecisionStateReader(states: states).target("shop-web"))
        #expect(after.machine.incident?.aborted?.by == "alice")
        #expect(w.notices.filter { $0.body.command?.id == "cmd-abort" }.count == 1)
    }

    @Test func anAbortWithNothingRunningIsRefusedWithAnAnswer() async throws {
        let w = try await World(targets: [DecisionMemoryTests.target(grace: 300)])
        for _ in 0..<3 { try await w.observe("shop-web", healthy: false) }
        try await Self.abort(w, by: "alice", id: "cmd-early")  // answered, then acked like every refusal
        let answer = try #require(w.notices.first { $0.body.command?.id == "cmd-early" })
        #expect(answer.body.kind == .commandRejected)
        #expect(answer.body.detail?.contains("there is nothing to abort") == true, "\(answer.body.detail ?? "")")
        #expect(try await w.world.markers.get("abort:shop-web/\(answer.body.incidentId ?? "")/restart") == nil)
    }
}

struct SimulatedStoreCrash: Error {}

/// A versioned store whose next multi-key compare-and-set throws once armed (a decision worker that dies
/// before its state write lands).
final class FailingOnce: VersionedStore {
    let inner: MemoryVersionedStore
    let armed = Atomic<Bool>(false)
    init(_ inner: MemoryVersionedStore) { self.inner = inner }

    func load(_ key: String) async throws -> VersionedValue? { try await inner.load(key) }
    func compareAndSet(_ key: String, expectedVersion: Int64, data: String) async throws -> Int64? {
        try await inner.compareAndSet(key, expectedVersion: expectedVersion, data: data)
    }
    func compareAndSet(all writes: [VersionedWrite]) async throws -> [Int64]? {
        if armed.exchange(false, ordering: .relaxed) { throw SimulatedStoreCrash() }
        return try await inner.compareAndSet(all: writes)
    }
    func delete(_ key: String) async throws { try await inner.delete(key) }
    func keys() async throws -> [String] { try await inner.keys() }
}
