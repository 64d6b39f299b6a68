import FleetRuntime
import Foundation
import Logging
import RecoveryCore

/// Steps outlive their delivery (issue 14, gap 9; docs/actuator.md, "Steps outlive their delivery").
///
/// Every step not completed is in the open-steps index (a `WakeUpSchedule`, in Redis the sorted set
/// `<prefix>schedule:actuator-open-steps`), due one lock TTL after its actor last renewed its lease. So
/// the record and the index, not the open delivery, keep a step alive:
/// - a request whose target is locked by another actor is not held for minutes: if its step is in
///   progress there, the delivery is done at once; if it is another step, it is recorded as accepted and
///   the delivery is done too. Neither holds a slot of the actuator or outlives RabbitMQ's consumer
///   timeout;
/// - every `sweepInterval`, each actuator takes the due entries: a step whose actor died (its lease ran
///   out, its delivery long gone) is resumed from its record, an accepted one starts once the lock is
///   free, a completed one has its outcome published again and leaves the index.
extension ActuatorWorker {
    /// The lock is busy. `settle` with the index: records the request when it is new (accepted), makes sure
    /// the index has it, and says the delivery may be settled (true). `skip`: true. Otherwise, and for a
    /// record of an older actuator that has no request in it, the caller waits for the lock (false).
    func deferWhileBusy(_ request: ActionRequest, stored: StepRecord?, whenBusy: WhenBusy, logger: Logger)
        async throws -> Bool
    {
        guard let openSteps, whenBusy != .wait else { return false }
        if whenBusy == .skip { return true }
        if let stored {
            guard stored.request != nil else { return false }
            // Its actor renews this while alive; if it died before indexing the step, this puts it there. An
            // accepted step is due at once: the sweep starts it as soon as the lock is free.
            let due = stored.isAccepted ? clock() : clock() + options.lockTTL.timeInterval
            try await openSteps.schedule(request.idempotencyKey, at: due)
            logger.info(
                "the step is open under another actor's lock; this delivery is settled, the sweep resumes it if needed")
            return true
        }
        guard try await records.create(.accepted(request, now: clock())) else { return false }
        try await openSteps.schedule(request.idempotencyKey, at: clock())
        logger.info("another step holds the target's lock; this one is accepted and starts when the lock is free")
        return true
    }

    /// Re-marks the step open for one more lock TTL: called when its actor takes or renews the lease.
    func heartbeat(_ key: String) -> (@Sendable () async -> Void)? {
        guard let openSteps else { return nil }
        let (clock, ttl) = (clock, options.lockTTL.timeInterval)
        return { try? await openSteps.schedule(key, at: clock() + ttl) }
    }

    func markOpen(_ key: String, logger: Logger) async {
        do { try await openSteps?.schedule(key, at: clock() + options.lockTTL.timeInterval) } catch {
            // The delivery is still held: if this actor dies, the redelivery resumes the step.
            logger.warning("could not index the open step", metadata: ["error": "\(error)"])
        }
    }

    func markClosed(_ key: String, logger: Logger) async {
        // If this fails, the sweep finds the record completed and removes the entry itself.
        do { try await openSteps?.cancel(key) } catch {
            logger.warning("could not remove the completed step from the index", metadata: ["error": "\(error)"])
        }
    }

    /// One pass of the sweep over the due entries, up to `maxConcurrentSteps` of them at a time (an actor
    /// that died held up to that many); returns how many steps it ran (started or resumed).
    @discardableResult
    public func sweepOpenSteps(limit: Int = 20) async -> Int {
        guard let openSteps else { return 0 }
        let due: [String]
        do { due = try await openSteps.due(at: clock(), limit: limit) } catch {
            logger.warning("open-steps sweep: cannot read the index", metadata: ["error": "\(error)"])
            return 0
        }
        return await withTaskGroup(of: Bool.self) { group in
            var ran = 0
            var running = 0
            for key in due {
                if Task.isCancelled { break }
                if running >= max(1, options.maxConcurrentSteps), let one = await group.next() {
                    running -= 1
                    if one { ran += 1 }
                }
                running += 1
                group.addTask { await self.sweep(key, openSteps) }
            }
            for await one in group where one { ran += 1 }
            return ran
        }
    }

    /// Starts, resumes or closes one open step; true when it ran the step.
    private func sweep(_ key: String, _ openSteps: any WakeUpSchedule) async -> Bool {
        var logger = logger
        logger[metadataKey: "idempotency_key"] = "\(key)"
        do {
            guard let record = try await records.load(key), let request = record.request else {
                try await openSteps.cancel(key)
                logger.warning("open-steps sweep: no record with its request under this key; entry removed")
                return false
            }
            if record.status == .completed {
                // Its actor may have died between storing the outcome and publishing it.
                try await publishResult(record, request: request)
                try await openSteps.cancel(key)
                return false
            }
            // Pushed back first: a step that fails passingly is tried again after a lock TTL, not at once;
            // an accepted step waiting for the lock, at the next pass.
            let later = record.isAccepted ? options.sweepInterval : options.lockTTL
            try await openSteps.schedule(key, at: clock() + later.timeInterval)
            if case .deferred = try await perform(request, whenBusy: .skip) { return false }
            logger.notice("open-steps sweep ran a step whose delivery was gone")
            return true
        } catch let rejection as RejectMessage {
            // Not dropped: a target entry that is wrong now (a typo in the instance-config table) may be fixed,
            // and the record stays in progress. Tried again in an hour, and said loudly each time.
            try? await openSteps.schedule(key, at: clock() + 3600)
            FleetMetrics.errors(worker: "actuator", kind: "open_step_refused").increment()
            logger.error(
                "open-steps sweep: the step cannot run as it is; tried again in an hour, fix it or complete it by hand",
                metadata: ["reason": "\(rejection)"])
        } catch {
            logger.warning("open-steps sweep: step not run now", metadata: ["error": "\(error)"])
            try? await openSteps.schedule(key, at: clock() + options.lockTTL.timeInterval)
        }
        return false
    }

    /// The sweep as a background service: a pass every `sweepInterval` until shutdown (which cancels a
    /// step the sweep runs; like a crash, it is resumed from its record).
    public func sweepService(cleanup: @escaping @Sendable () async -> Void = {}) -> LoopService {
        LoopService(
            run: { [self] in
                while !Task.isCancelled {
                    await sweepOpenSteps()
                    do { try await Task.sleep(for: options.sweepInterval) } catch { return }
                }
            }, cleanup: cleanup)
    }
}
