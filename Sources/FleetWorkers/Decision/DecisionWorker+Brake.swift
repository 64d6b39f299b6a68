import FleetRuntime
import Foundation
import RecoveryCore

extension DecisionWorker {
    /// The brake and its version; what an earlier writer left in `pending` is carried out first.
    func loadBrake() async throws -> (brake: FleetBrake, version: Int64) {
        for _ in 0..<20 {
            // Every event reads the brake; it changes far less often. Its version alone is read first, and
            // the brake decoded last time is used while the version is the same.
            let version = try await states.version(Self.brakeKey)
            if version > 0, let cached = brakeCache.withLock({ $0 }), cached.version == version,
                cached.brake.pending == nil
            {
                var brake = cached.brake
                brake.settings = options.brakeSettings
                return (brake, version)
            }
            guard let loaded = try await states.load(Self.brakeKey) else {
                return (FleetBrake(settings: options.brakeSettings, fleet: await known.names()), 0)
            }
            var brake = try StateCodec.decodeBrake(Array(loaded.data.utf8))
            brakeCache.withLock { $0 = (loaded.version, brake) }
            brake.settings = options.brakeSettings
            guard let pending = brake.pending else { return (brake, loaded.version) }
            let unpublished = try await flush(
                try pending.notices.map { try OutboxItem(.notice($0), producer: options.workerId, now: clock()) })
            for target in pending.wake { try await schedule.schedule(target, at: clock()) }
            // Cleared only when every notice is out; one claimed by another worker keeps it pending.
            if unpublished.isEmpty {
                brake.pending = nil
                _ = try await storeBrake(brake, expectedVersion: loaded.version)
            } else {
                return (brake, loaded.version)
            }
        }
        throw DecisionError("the fleet brake changed 20 times while it was read; retrying later", contention: true)
    }

    /// Lost compare-and-sets of a brake batch caused by one target after which its event fails alone.
    static let hotTargetConflicts = 3

    /// Stores the brake if nobody stored another version meanwhile.
    func storeBrake(_ brake: FleetBrake, expectedVersion: Int64) async throws -> Bool {
        let data = String(decoding: try StateCodec.encode(brake), as: UTF8.self)
        guard let version = try await states.compareAndSet(Self.brakeKey, expectedVersion: expectedVersion, data: data)
        else { return false }
        brakeCache.withLock { $0 = (version, brake) }  // what was just stored needs no decoding next time
        FleetMetrics.brakeEngaged.record(brake.isEngaged ? 1 : 0)
        return true
    }

    /// Decides a batch of brake-changing events (`BrakeBatcher`) one after the other on the brake as each
    /// leaves it, and stores their targets and the brake in one atomic compare-and-set; a lost race decides
    /// the whole batch again on the state that won. An event that cannot be decided (its state does not
    /// decode, the brake refused its step) fails alone, and the others go on without it.
    func commitBrakeBatch(_ batch: [BrakeBatcher.Submission]) async -> [Result<BrakeBatcher.Committed, any Error>] {
        let keys = batch.map { Self.stateKey($0.target) }
        var failed: [Int: any Error] = [:]
        /// Lost compare-and-sets each event's own target was found to have caused.
        var conflicts: [Int: Int] = [:]
        for _ in 0..<20 {
            let now = clock()
            // Each target's load is its own: one that fails fails its event alone. The brake's fails them all.
            async let loadedBrake = loadBrake()
            let loaded = await concurrently(keys) { key -> Result<VersionedValue?, any Error> in
                do { return .success(try await self.states.load(key)) } catch { return .failure(error) }
            }
            let brake: (brake: FleetBrake, version: Int64)
            do { brake = try await loadedBrake } catch {
                return batch.indices.map { .failure(failed[$0] ?? error) }
            }
            var current = brake.brake
            var writes: [VersionedWrite] = []
            var decided: [(index: Int, machine: TargetMachine, actions: [TargetMachine.Action])] = []
            for (index, submission) in batch.enumerated() where failed[index] == nil {
                do {
                    let value = try loaded[index].get()
                    let stored = try await machine(value, submission.target, instanceHint: submission.instanceHint)
                    var (machine, actions, next) = try decide(
                        submission.event, on: stored, brake: current,
                        configured: await known.target(submission.target), now: now)
                    try await stage(actions, into: &machine, now: now)
                    writes.append(
                        VersionedWrite(
                            keys[index], expectedVersion: value?.version ?? 0,
                            data: String(decoding: try StateCodec.encode(machine), as: UTF8.self)))
                    decided.append((index, machine, actions))
                    current = next
                } catch {
                    failed[index] = error
                }
            }
            guard !decided.isEmpty else { break }
            let brakeChanged = current != brake.brake
            if brakeChanged {
                do {
                    writes.append(
                        VersionedWrite(
                            Self.brakeKey, expectedVersion: brake.version,
                            data: String(decoding: try StateCodec.encode(current), as: UTF8.self)))
                } catch {
                    return batch.indices.map { .failure(failed[$0] ?? error) }
                }
            }
            let versions: [Int64]?
            do { versions = try await states.compareAndSet(all: writes) } catch {
                return batch.indices.map { .failure(failed[$0] ?? error) }
            }
            guard let versions else {
                FleetMetrics.decisionConflicts.increment()
                // Which of the batch's targets moved meanwhile? Their versions are read at once (the Redis
                // client pipelines them) after the lost store, so a target written just then counts too.
                // Each is decided again from its new state with the rest. One that moves again and again
                // (another replica writing it as fast as this batch is decided) fails alone after a few
                // lost races, instead of making every event of the batch use up its attempts; its own
                // event is retried later. The brake moving fails nobody: that is the race the batch
                // exists to win.
                let attempted = writes
                let moved = await concurrently(Array(decided.indices)) { position -> Bool in
                    let write = attempted[position]
                    return ((try? await self.states.version(write.key)) ?? write.expectedVersion)
                        != write.expectedVersion
                }
                for (position, one) in decided.enumerated() where moved[position] {
                    let lost = conflicts[one.index, default: 0] + 1
                    conflicts[one.index] = lost
                    if lost >= Self.hotTargetConflicts {
                        failed[one.index] = DecisionError(
                            "target \(batch[one.index].target) changed \(lost) times while its batch of events was stored; retrying later",
                            contention: true)
                    }
                }
                continue
            }
            if brakeChanged, let stored = versions.last { brakeCache.withLock { $0 = (stored, current) } }
            var results: [Result<BrakeBatcher.Committed, any Error>] = batch.indices.map {
                .failure(failed[$0] ?? DecisionError("not decided"))
            }
            for (position, one) in decided.enumerated() {
                results[one.index] = .success(
                    BrakeBatcher.Committed(actions: one.actions, machine: one.machine, version: versions[position]))
            }
            return results
        }
        let contention = DecisionError(
            "the fleet brake or a target changed 20 times while a batch of events was applied; retrying later",
            contention: true)
        return batch.indices.map { .failure(failed[$0] ?? contention) }
    }
}
