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

    /// Stores the brake if nobody stored another version meanwhile.
    func storeBrake(_ brake: FleetBrake, expectedVersion: Int64) async throws -> Bool {
        let data = String(decoding: try StateCodec.encode(brake), as: UTF8.self)
        guard let version = try await states.compareAndSet(Self.brakeKey, expectedVersion: expectedVersion, data: data)
        else { return false }
        brakeCache.withLock { $0 = (version, brake) }  // what was just stored needs no decoding next time
        FleetMetrics.brakeEngaged.record(brake.isEngaged ? 1 : 0)
        return true
    }
}
