import FleetTestSupport
import Foundation
import RecoveryCore
import Synchronization
import Testing

@testable import FleetWorkers

/// `BrakeBatcher` alone, with a commit that records its batches: every submitter gets its own outcome,
/// no batch holds one target twice, and a failure is its submitter's alone.
@Suite("Brake batcher")
struct BrakeBatcherTests {
    struct Refused: Error, Equatable { let target: String }

    final class Recorder: Sendable {
        let batches = Mutex<[[String]]>([])
        /// Targets whose submissions fail.
        let failing: Set<String>
        init(failing: Set<String> = []) { self.failing = failing }

        func commit(_ batch: [BrakeBatcher.Submission]) async -> [Result<BrakeBatcher.Committed, any Error>] {
            batches.withLock { $0.append(batch.map(\.target)) }
            try? await Task.sleep(for: .milliseconds(5))  // others queue up meanwhile
            return batch.enumerated().map { position, submission in
                if failing.contains(submission.target) { return .failure(Refused(target: submission.target)) }
                let machine = TargetMachine(
                    ladder: EscalationMachine(
                        identity: TargetIdentity(name: submission.target, homeRegion: "eu-west-1"),
                        instance: InstanceRef(id: "i-1", region: "eu-west-1"), settings: TargetSettings()))
                return .success(BrakeBatcher.Committed(actions: [], machine: machine, version: Int64(position)))
            }
        }
    }

    final class Outcomes: Sendable {
        let all = Mutex<[String: [Result<String, Refused>]]>([:])
    }

    static func submission(_ target: String, _ n: Int) -> BrakeBatcher.Submission {
        BrakeBatcher.Submission(
            event: .ladder(.tick), target: target, instanceHint: nil)
    }

    @Test func everySubmitterGetsItsOwnOutcomeAndNoBatchHoldsATargetTwice() async throws {
        let recorder = Recorder(failing: ["t-7"])
        let batcher = BrakeBatcher()
        // 30 targets, three submissions each, all at once.
        let outcomes = Outcomes()
        await withTaskGroup(of: Void.self) { group in
            for n in 0..<3 {
                for t in 0..<30 {
                    group.addTask {
                        let target = "t-\(t)"
                        do {
                            let done = try await batcher.submit(Self.submission(target, n)) {
                                await recorder.commit($0)
                            }
                            outcomes.all.withLock { $0[target, default: []].append(.success(done.machine.target)) }
                        } catch let refused as Refused {
                            outcomes.all.withLock { $0[target, default: []].append(.failure(refused)) }
                        } catch {
                            Issue.record("\(target): unexpected \(error)")
                        }
                    }
                }
            }
        }
        let results = outcomes.all.withLock { $0 }
        for t in 0..<30 {
            let target = "t-\(t)"
            let expected: Result<String, Refused> =
                target == "t-7" ? .failure(Refused(target: target)) : .success(target)
            #expect(results[target] == [expected, expected, expected], "\(target)")
        }
        let batches = recorder.batches.withLock { $0 }
        #expect(batches.reduce(0) { $0 + $1.count } == 90, "each submission committed once")
        for batch in batches { #expect(Set(batch).count == batch.count, "a target twice in one batch: \(batch)") }
        #expect(
            batches.count < 90 && batches.map(\.count).max()! > 1, "submissions were batched: \(batches.map(\.count))")
    }

    /// The decision worker's commit: a target whose stored state does not decode fails its own event; the
    /// others in the batch are decided and stored, and the brake holds only theirs.
    static let names = ["site-1", "site-2", "site-3"]

    /// A decision worker whose brake lets all three sites be in outage at once, and a batch of one failed
    /// observation per site, each of which opens an outage (so changes the brake).
    static func threeSites(fleet: MemoryFleet, states: (any VersionedStore)? = nil) async throws -> (
        DecisionMemoryTests.World, [BrakeBatcher.Submission]
    ) {
        var brake = FleetBrake.Settings()
        brake.maxOutageShare = 1.0
        brake.maxDestructiveActions = 1000
        let world = try await DecisionMemoryTests.World(
            targets: names.map { DecisionMemoryTests.target($0, grace: 0, failures: 1) }, fleet: fleet, brake: brake,
            states: states)
        let failure = ProbeResult(prober: "probe-1", healthy: false, statusCode: 503, detail: "HTTP 503")
        let batch = names.map {
            BrakeBatcher.Submission(event: .ladder(.probe(id: "obs-\($0)", failure)), target: $0, instanceHint: nil)
        }
        return (world, batch)
    }

    @Test func aTargetThatCannotBeDecidedFailsAloneInItsBatch() async throws {
        let fleet = MemoryFleet()
        let (world, batch) = try await Self.threeSites(fleet: fleet)
        _ = await fleet.states.compareAndSet(DecisionStateKeys.target("site-2"), expectedVersion: 0, data: "{not json")
        let results = await world.decision.commitBrakeBatch(batch)
        #expect(results.count == 3)
        #expect((try? results[0].get())?.machine.target == "site-1")
        #expect((try? results[1].get()) == nil, "site-2's state does not decode")
        #expect((try? results[2].get())?.machine.target == "site-3")
        let stored = try #require(try await DecisionStateReader(states: fleet.states).brake())
        #expect(stored.targetsInOutage == ["site-1", "site-3"])
        #expect(await fleet.states.load(DecisionStateKeys.target("site-2"))?.data == "{not json")
    }

    /// The decision worker's commit: a target that another writer changes before every store of the batch
    /// (a hot target) fails its own event after a few lost races; the others in the batch are stored. Before,
    /// the batch was decided again and again until all three events used up their 20 attempts.
    @Test func aTargetWrittenBeforeEveryStoreFailsAloneInItsBatch() async throws {
        let fleet = MemoryFleet()
        let store = HotTarget(fleet.states, hot: DecisionStateKeys.target("site-2"))
        let (world, batch) = try await Self.threeSites(fleet: fleet, states: store)
        try await world.observe("site-2", healthy: true)  // site-2 has a stored state for the other writer to rewrite
        store.rewriteBeforeEveryStore.withLock { $0 = true }
        let results = await world.decision.commitBrakeBatch(batch)
        #expect(results.count == 3)
        #expect((try? results[0].get())?.machine.target == "site-1")
        #expect((try? results[2].get())?.machine.target == "site-3")
        guard case .failure(let error) = results[1] else {
            Issue.record("site-2 was written before every store and still committed")
            return
        }
        #expect((error as? DecisionError)?.isContention == true, "\(error)")
        #expect(store.batchStores.withLock { $0 } == DecisionWorker.hotTargetConflicts + 1)
        let stored = try #require(try await DecisionStateReader(states: fleet.states).brake())
        #expect(stored.targetsInOutage == ["site-1", "site-3"])
    }
}

/// A versioned store where another writer rewrites one key (same data, a new version) just before each
/// atomic multi-key store, once `rewriteBeforeEveryStore` is set.
final class HotTarget: WrappedMemoryStore {
    let inner: MemoryVersionedStore
    let hot: String
    let rewriteBeforeEveryStore = Mutex(false)
    let batchStores = Mutex(0)
    init(_ inner: MemoryVersionedStore, hot: String) {
        self.inner = inner
        self.hot = hot
    }
    func compareAndSet(all writes: [VersionedWrite]) async throws -> [Int64]? {
        if rewriteBeforeEveryStore.withLock({ $0 }) {
            batchStores.withLock { $0 += 1 }
            if let current = await inner.load(hot) {
                _ = await inner.compareAndSet(hot, expectedVersion: current.version, data: current.data)
            }
        }
        return try await inner.compareAndSet(all: writes)
    }
}
