import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore

/// The actuator: carries out `action.request`s (restart, re-provision, fail-over) on EC2, one actor per
/// target at a time, each request at most once, resumable after a crash. See docs/actuator.md.
///
/// For each request:
/// 1. A completed record under `step:<idempotency key>` means the step ran: its outcome is published
///    again (same message id) and nothing else happens.
/// 2. The target's lock (`LockStore`, name = target) is taken; while another actor holds it, the request
///    is recorded (accepted, if new) and its delivery settled: the open-steps sweep starts or resumes it
///    (OpenSteps.swift). The lease is renewed in the background and checked (`isHeld`, fencing token)
///    before every AWS mutation and every re-send.
/// 3. The record is created, or taken over from an actor that died (its finished sub-steps are
///    skipped). Every sub-step is recorded, under the fencing token, before the next begins.
/// 4. The outcome is stored in the record (completed), then published as `action.event`
///    (`<key>:outcome`), with a notice and a history event.
///
/// An actor whose lease is lost stops before its next mutation, records why and hands the request back.
public final class ActuatorWorker: Sendable {
    public struct Options: Sendable {
        public var workerId: String
        /// The target lock's TTL; renewed every third of it.
        public var lockTTL: Duration = .seconds(60)
        /// How often a request whose target is locked checks the lock and the record again.
        public var lockRetryInterval: Duration = .seconds(5)
        /// After this long waiting for a target's lock, the request goes back to the queue. (With the
        /// open-steps index a request never waits: see `openSteps`.)
        public var lockWaitLimit: Duration = .seconds(1200)
        /// How often the open-steps sweep looks for steps to start or resume (ACTUATOR_SWEEP_INTERVAL).
        public var sweepInterval: Duration = .seconds(15)
        /// Restart: how long the status checks and the site have to be healthy after the reboot (and
        /// after the stop/start) before the step escalates (or fails). Also bounded by the deadline.
        public var restartHealthTimeout: Duration = .seconds(180)
        /// Restart: the first check after the reboot waits this long (a reboot takes a moment to begin).
        public var rebootSettle: Duration = .seconds(30)
        public var healthPollInterval: Duration = .seconds(10)
        /// One HTTP check of the health URL.
        public var healthCheckTimeout: Duration = .seconds(10)
        /// Poll interval of the EC2 and Route 53 waiters.
        public var waitInterval: Duration = .seconds(15)
        public var instanceWaitTimeout: Duration = .seconds(600)
        public var imageWaitTimeout: Duration = .seconds(1800)
        public var dnsWaitTimeout: Duration = .seconds(300)
        /// A step that keeps failing for a passing reason (throttling, AWS 5xx, no answer) is tried by this
        /// many actors; then it is reported failed.
        public var maxAttempts: Int = 4
        /// Pause before a request is handed back to the queue (lock busy, lease lost, passing error).
        public var retryDelay: Duration = .seconds(5)
        /// Steps of different targets run in parallel, up to this many per worker.
        public var maxConcurrentSteps: Int = 4
        /// The fleet's SSM documents are named `<prefix><short name>` (SSM_DOCUMENT_PREFIX).
        public var ssmDocumentPrefix: String = "AutoRecovery-"
        /// How long one SSM document may take (restart-services, verify-health, an `ssm` repair), bounded by
        /// the deadline too; a command still running then counts as failed (SSM_COMMAND_TIMEOUT).
        public var ssmCommandTimeout: Duration = .seconds(120)
        public var ssmPollInterval: Duration = .seconds(3)
        /// Diagnostics: how long to wait for them, and how much of their output goes into the event.
        public var diagnosticsTimeout: Duration = .seconds(60)
        public var diagnosticsMaxCharacters: Int = 4000
        /// TEST ONLY. Called after each sub-step is recorded, with the idempotency key. Throwing
        /// `SimulatedCrash` makes the actor behave as if killed at that point (no lock release, no
        /// outcome); a hook can also tamper with the world (expire the lock, move an address).
        public var afterSubStep: (@Sendable (String, SubStep) async throws -> Void)?

        public init(workerId: String) { self.workerId = workerId }
    }

    let options: Options
    let ec2: any EC2Operations
    let route53: any Route53Operations
    let ssm: (any SSMOperations)?
    let http: any HTTPExecuting
    let locks: any LockStore
    let records: StepRecordStore
    /// The abort flags the decision worker sets (`recoveryctl abort`), in Redis `kv:abort:<key>`.
    let aborts: any KeyValueStore
    let envelopes: EnvelopePublisher
    let config: ActuatorConfig
    /// The open-steps index (docs/actuator.md, "Steps outlive their delivery"): every step not completed,
    /// due when its actor has not renewed its lease for a TTL. Nil: requests wait for a busy lock instead.
    let openSteps: (any WakeUpSchedule)?
    let logger: Logger
    let clock: @Sendable () -> Date

    /// `ec2` is a client of the home region (others are derived with `withRegion`); `http` makes the
    /// site checks. Without `ssm`, no SSM is used (restart reboots, `ssm` repairs fail, no diagnostics).
    public init(
        options: Options, ec2: any EC2Operations, route53: any Route53Operations, ssm: (any SSMOperations)? = nil,
        http: any HTTPExecuting, locks: any LockStore, records: StepRecordStore, aborts: any KeyValueStore,
        publisher: any MessagePublishing, topology: FleetTopology, config: ActuatorConfig,
        openSteps: (any WakeUpSchedule)? = nil, logger: Logger, clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.options = options
        self.ec2 = ec2
        self.route53 = route53
        self.ssm = ssm
        self.http = http
        self.locks = locks
        self.records = records
        self.aborts = aborts
        envelopes = EnvelopePublisher(
            publisher: publisher, topology: topology, producer: options.workerId, appId: "actuator")
        self.config = config
        self.openSteps = openSteps
        self.logger = logger
        self.clock = clock
    }

    /// What `perform` did.
    public enum Result: Sendable, Equatable {
        /// The step ran (or was finished) by this actor; its outcome is published.
        case completed(ActionOutcome)
        /// The step had already completed; its recorded outcome was published again.
        case republished(ActionOutcome)
        /// The lease was lost mid-step: this actor stopped before its next mutation (the reason is in
        /// the record, the log and a `lease_lost` event). Another actor finishes the step.
        case leaseLost(String)
        /// The target's lock is held by another actor, and the step is recorded and in the open-steps
        /// index: in progress under that actor, or accepted to start when the lock frees. This delivery is
        /// not needed; the sweep starts or resumes the step if its actor dies.
        case deferred
    }

    // MARK: Queue entry point

    /// The `MessageWorker` handler of the action-requests queue.
    public func handle(_ envelope: Envelope<ActionRequest>, delivery: AMQPDelivery) async throws {
        if let target = envelope.target, target != envelope.body.target {
            throw RejectMessage(
                "envelope target '\(target)' differs from the request's target '\(envelope.body.target)'")
        }
        do {
            switch try await perform(envelope.body, whenBusy: .settle) {
            case .leaseLost(let reason): throw ActuatorError.retryable("lease lost: \(reason)")
            case .completed, .republished, .deferred: break
            }
        } catch let rejection as RejectMessage {
            throw rejection
        } catch is SimulatedCrash {
            throw SimulatedCrash()
        } catch {
            FleetMetrics.actuatorRequeued.increment()
            logger.warning(
                "request handed back to the queue",
                metadata: [
                    "error": "\(error)", "step": "\(envelope.body.step.rawValue)",
                    "incident_id": "\(envelope.body.incidentId)",
                ])
            try? await Task.sleep(for: options.retryDelay)
            throw error
        }
    }

    // MARK: One request

    /// How a request meets its target's lock held by another actor.
    public enum WhenBusy: Sendable {
        /// Wait for it (polling, bounded by `lockWaitLimit`), re-reading the record.
        case wait
        /// The queue's way: with the open-steps index, record the step (accepted, if new) and settle the
        /// delivery (`deferred`); the sweep starts or resumes it. Without the index, wait.
        case settle
        /// The sweep's way: leave it for a later pass (`deferred`).
        case skip
    }

    /// Runs (or resumes, or reports again) the requested step. Throws for a passing problem (the request
    /// should be tried again later) and `RejectMessage` for a request that can never run.
    public func perform(_ request: ActionRequest, whenBusy: WhenBusy = .wait) async throws -> Result {
        guard !request.target.isEmpty, !request.target.contains("{"), !request.target.contains("}") else {
            throw RejectMessage("target name '\(request.target)' cannot name a lock (empty, or contains '{' or '}')")
        }
        if request.repair != nil {
            guard request.step == .notifyOnly else {
                throw RejectMessage("a repair request must have step notify_only, not \(request.step.rawValue)")
            }
        } else {
            guard request.step != .notifyOnly else { throw RejectMessage("notify_only needs no actuator") }
        }
        guard !request.idempotencyKey.isEmpty, !request.instanceId.isEmpty else {
            throw RejectMessage("the request has no idempotency key or no instance id")
        }
        let targetConfig: ActuatorTargetConfig
        // A table that cannot be read now is a transient failure (requeue); a bad entry is permanent.
        let config = try await self.config.refreshed()
        do { targetConfig = try config.target(request.target) } catch { throw RejectMessage("\(error)") }
        var logger = logger
        logger[metadataKey: "instance_id"] = "\(request.instanceId)"
        logger[metadataKey: "incident_id"] = "\(request.incidentId)"
        logger[metadataKey: "step"] = "\(request.repair.map { "repair/\($0.kind.rawValue)" } ?? request.step.rawValue)"

        // One actor per target: wait (bounded) for the lock, re-reading the record meanwhile.
        let waitStart = ContinuousClock.now
        var waiting = false
        let lease: LockLease
        var acquiredAt = ContinuousClock.now
        while true {
            let stored: StepRecord?
            do { stored = try await records.load(request.idempotencyKey) } catch let error as ActuatorError {
                // A record this worker cannot read is left for a person; the request goes to the dead-letter
                // queue with the reason instead of running the step blind.
                throw RejectMessage("\(error)")
            }
            if let done = stored, done.status == .completed, let outcome = done.outcome {
                try await publishResult(done, request: request)
                logger.info("step already completed; outcome published again")
                FleetMetrics.actuatorRepublished.increment()
                return .republished(outcome)
            }
            // The lease's time counts from before the request was sent, not from its answer.
            let asked = ContinuousClock.now
            if let acquired = try await locks.acquire(name: request.target, ttl: options.lockTTL) {
                lease = acquired
                acquiredAt = asked
                break
            }
            if try await deferWhileBusy(request, stored: stored, whenBusy: whenBusy, logger: logger) {
                return .deferred
            }
            if ContinuousClock.now - waitStart >= options.lockWaitLimit {
                throw ActuatorError.lockBusy(
                    "another actor has held the lock of \(request.target) for \(options.lockWaitLimit.components.seconds)s"
                )
            }
            if !waiting {
                waiting = true
                logger.info("another actor holds the target's lock; waiting for it")
            }
            try await Task.sleep(for: options.lockRetryInterval)
        }

        let keeper = LeaseKeeper(
            locks: locks, lease: lease, acquiredAt: acquiredAt, heartbeat: heartbeat(request.idempotencyKey))
        logger[metadataKey: "fencing_token"] = "\(lease.fencingToken)"
        let stepLogger = logger
        let result: Result
        do {
            // The step and the lease's renewal run side by side; when the renewal finds the lease lost, the
            // step is cancelled wherever it waits (an AWS waiter, a health poll) and ends as `leaseLost`.
            result = try await withThrowingTaskGroup(of: Result?.self) { group in
                group.addTask {
                    await keeper.renew()
                    return nil
                }
                group.addTask {
                    await keeper.watchdog()
                    return nil
                }
                group.addTask {
                    try await self.runLocked(request, config: targetConfig, keeper: keeper, logger: stepLogger)
                }
                while let next = try await group.next() {
                    if let result = next {
                        group.cancelAll()
                        return result
                    }
                    if let reason = keeper.lostReason {
                        logger.error("lease lost while the step runs; stopping it", metadata: ["reason": "\(reason)"])
                    }
                    group.cancelAll()
                }
                throw ActuatorError.retryable("the step ended without a result")
            }
        } catch is SimulatedCrash {
            // A killed actor releases nothing: its lock expires by itself.
            throw SimulatedCrash()
        } catch {
            await giveBack(lease, validUntil: keeper.renewalDeadline, logger: logger)
            throw error
        }
        await giveBack(lease, validUntil: keeper.renewalDeadline, logger: logger)
        return result
    }

    private func runLocked(
        _ request: ActionRequest, config targetConfig: ActuatorTargetConfig, keeper: LeaseKeeper,
        logger: Logger
    ) async throws -> Result {
        let now = clock()
        let lease = keeper.lease
        var record: StepRecord
        var resumed = false
        let stored = try await records.load(request.idempotencyKey)
        if let existing = stored, existing.isAccepted {
            // Accepted while another step held the lock: it starts now, as a fresh step.
            record = existing
            record.attempts = 1
            record.owner = options.workerId
            record.fencingToken = lease.fencingToken
            record.dryRun = targetConfig.dryRun
            record.startedAt = now
            record.updatedAt = now
            do { try await records.save(record) } catch let lost as LeaseLost { return .leaseLost(lost.reason) }
        } else if let existing = stored {
            if existing.status == .completed, let outcome = existing.outcome {
                try await publishResult(existing, request: request)
                return .republished(outcome)
            }
            record = existing
            record.attempts += 1
            record.request = record.request ?? request  // an older actuator's record: now the sweep can resume it
            record.owner = options.workerId
            record.fencingToken = lease.fencingToken
            record.updatedAt = now
            record.notes.append(
                "\(Timestamp.format(now)) resumed by \(options.workerId) (attempt \(record.attempts), fencing token \(lease.fencingToken)) after \(existing.owner); done: \(existing.done.map(\.rawValue).joined(separator: ", "))"
            )
            do { try await records.save(record) } catch let lost as LeaseLost { return .leaseLost(lost.reason) }
            resumed = true
            logger.notice("resuming a step another actor began", metadata: ["done": "\(existing.done.map(\.rawValue))"])
        } else {
            record = StepRecord(
                request: request, owner: options.workerId, fencingToken: lease.fencingToken,
                dryRun: targetConfig.dryRun, now: now)
            guard try await records.create(record) else {
                throw ActuatorError.retryable(
                    "the step record of \(request.idempotencyKey) appeared while this actor held the lock")
            }
        }
        await markOpen(request.idempotencyKey, logger: logger)

        let context = StepContext(
            request: request, record: record, records: records, aborts: aborts, keeper: keeper, envelopes: envelopes,
            options: options,
            config: targetConfig, home: ec2.withRegion(request.region),
            destination: ec2.withRegion(request.destinationRegion),
            route53: route53, ssm: ssm?.withRegion(request.region), table: config.source?.table, http: http,
            logger: logger,
            clock: clock)

        let result: StepResult
        if !resumed && now > request.deadline {
            result = .failed(
                "the request reached the actuator after its deadline \(Timestamp.format(request.deadline)); nothing was done"
            )
        } else {
            if resumed {
                await context.event(
                    .resumed, id: "\(request.idempotencyKey):resumed:\(lease.fencingToken)",
                    detail: record.notes.last)
            } else {
                logger.info("step started")
                await context.event(
                    .started, id: "\(request.idempotencyKey):started", detail: Self.plan(request, targetConfig, options)
                )
            }
            await context.notify(startedNotice(request, targetConfig))
            FleetMetrics.stepsStarted(step: request.step.rawValue).increment()
            switch try await runStep(context) {
            case .left(let lost): return lost
            case .done(let r): result = r
            }
        }

        // Never complete a step this actor was stopped in (a lost lease cancels it): its successor does.
        if let reason = keeper.lostReason { return .leaseLost(reason) }
        try Task.checkCancellation()
        // Store the outcome first: a crash before the publish is repaired by the redelivery (or the sweep).
        var finished = context.record
        var outcome = Self.outcome(
            for: request, result: result, dryRun: finished.dryRun, plannedCalls: finished.plannedCalls)
        if request.repair != nil { outcome.resources = StepContext.repairResources(finished.resources) }
        finished.status = .completed
        finished.outcome = outcome
        finished.summary = Self.summary(result, dryRun: finished.dryRun)
        finished.updatedAt = clock()
        do { try await records.save(finished) } catch let lost as LeaseLost {
            await leaseLost(context, lost)
            return .leaseLost(lost.reason)
        }
        await markClosed(request.idempotencyKey, logger: logger)
        try await publishResult(finished, request: request)
        FleetMetrics.steps(step: request.step.rawValue, status: outcome.status.rawValue).increment()
        logger.info("step completed: \(outcome.status.rawValue)", metadata: ["reason": "\(outcome.reason ?? "-")"])
        return .completed(outcome)
    }

    enum StepEnd {
        case done(StepResult)
        case left(Result)
    }

    /// Runs the step and turns its errors into a result: a passing error is retried (thrown) until
    /// `maxAttempts`; other errors end the step as failed or human needed, after compensation.
    private func runStep(_ context: StepContext) async throws -> StepEnd {
        let failure: Failure
        do {
            // Waits check the lease and the abort flag at every poll; compensation (below) waits unguarded.
            return .done(try await AWSWaitGuard.$beforePoll.withValue(context.waitGuard) { try await context.run() })
        } catch is SimulatedCrash {
            throw SimulatedCrash()
        } catch let lost as LeaseLost {
            await leaseLost(context, lost)
            return .left(.leaseLost(lost.reason))
        } catch let aborted as StepAborted {
            return try await stopAborted(context, aborted.abort)
        } catch {
            // Cancelled because the renewal lost the lease: that is the reason, not the cancellation.
            if let reason = context.keeper.lostReason {
                await leaseLost(context, LeaseLost("\(reason); the step was stopped"))
                return .left(.leaseLost(reason))
            }
            // Cancelled by a shutdown (the sweep's steps): handed back as is, no attempt used, nothing undone.
            if error is CancellationError || Task.isCancelled { throw CancellationError() }
            failure = Self.classify(error)
        }
        let result: StepResult
        switch failure {
        case .retry(let reason) where context.record.attempts < options.maxAttempts:
            context.note(
                "attempt \(context.record.attempts) of \(options.maxAttempts) stopped by a passing error: \(reason)")
            _ = try? await records.save(context.record)
            throw ActuatorError.retryable(reason)
        case .retry(let reason):
            result = .failed("\(reason) (gave up after \(context.record.attempts) attempts)")
        case .failed(let reason):
            result = .failed(reason)
        case .humanNeeded(let reason):
            result = .humanNeeded(reason)
        }
        do {
            try await context.compensate()
        } catch let lost as LeaseLost {
            await leaseLost(context, lost)
            return .left(.leaseLost(lost.reason))
        } catch {
            _ = try? await records.save(context.record)  // its notes say why it was handed back
            throw error
        }
        return .done(result)
    }

    /// The stale actor's record of why it stopped: a log line, a note in the record (refused if a newer
    /// actor has written it meanwhile), and a `lease_lost` event.
    func leaseLost(_ context: StepContext, _ lost: LeaseLost) async {
        FleetMetrics.leasesLost.increment()
        context.logger.error("lease lost; stopping before the next mutation", metadata: ["reason": "\(lost.reason)"])
        context.note("\(options.workerId) stopped (fencing token \(context.keeper.lease.fencingToken)): \(lost.reason)")
        _ = try? await records.save(context.record)
        await context.event(
            .leaseLost, id: "\(context.key):lease_lost:\(context.keeper.lease.fencingToken)", detail: lost.reason)
    }

    // MARK: Outcome

    enum Failure {
        case retry(String)
        case failed(String)
        case humanNeeded(String)
    }

    /// Publishes a completed record's outcome, notice and history event (all with deterministic ids).
    func publishResult(_ record: StepRecord, request: ActionRequest) async throws {
        guard let outcome = record.outcome else { return }
        let now = clock()
        try await envelopes.publish(
            .actionEvent, id: "\(record.idempotencyKey):outcome", target: request.target,
            instanceId: outcome.instanceId ?? request.instanceId, correlationId: request.incidentId, body: outcome,
            now: now)
        let notice = resultNotice(record, outcome: outcome, request: request)
        do {
            try await envelopes.publish(
                .notification, id: notice.id, target: request.target, instanceId: notice.instanceId,
                correlationId: request.incidentId, body: notice, now: now)
            try await envelopes.publish(
                .event, id: "\(record.idempotencyKey):completed", target: request.target,
                instanceId: request.instanceId,
                correlationId: request.incidentId,
                body: ActuatorEvent(
                    kind: record.dryRun ? .dryRunPlan : .completed, actor: record.owner,
                    idempotencyKey: record.idempotencyKey, incidentId: request.incidentId, step: request.step,
                    fencingToken: record.fencingToken, detail: record.summary, resources: record.resources,
                    plannedCalls: record.plannedCalls.isEmpty ? nil : record.plannedCalls, outcome: outcome),
                now: now)
        } catch {
            logger.warning("could not publish the step's notice or history event", metadata: ["error": "\(error)"])
        }
    }
}
