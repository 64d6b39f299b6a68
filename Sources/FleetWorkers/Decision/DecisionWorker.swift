import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import RedisStore
import ServiceLifecycle
import Synchronization

/// The decision worker: feeds observations, actuator outcomes, operator commands and timer ticks into
/// each target's `EscalationMachine`, and carries out what it returns.
///
/// Per event: load the target's state (with its version) from Redis, apply the event, and store the new
/// state only if nobody stored another version meanwhile (compare-and-set); on a lost race, reload and
/// apply again. Replicas therefore never decide one target concurrently on stale state, and a worker
/// that restarts mid-incident resumes from Redis.
///
/// The messages an event produces are written into the state's outbox in the same compare-and-set, then
/// published (confirmed), then cleared. A worker that dies in between leaves the outbox behind, and
/// whoever next loads the target publishes it first; per-message claims in Redis make sure only one
/// worker publishes each item. Every message has a deterministic id (the action's idempotency key, the
/// notice's id), so even the one remaining duplicate (a worker dying between its publish and its marker)
/// is deduplicated downstream; the machine itself drops redelivered events by id. Together: no step is
/// requested twice and none is lost.
public final class DecisionWorker: Sendable {
    public struct Options: Sendable {
        public var workerId: String
        /// Users allowed to send commands (the AMQP user_id the broker verified). Empty: every command is
        /// refused (fail closed; the decision executable says so at start-up).
        public var operators: Set<String> = []
        /// Broker users of the console (`CONSOLE_USERS`), whose commands act for the operator named in
        /// `on_behalf_of` (docs/console.md).
        public var consoleUsers: Set<String> = []
        public var brakeSettings = FleetBrake.Settings()
        public var tick: Duration = .seconds(1)
        public var catalogRefresh: Duration = .seconds(60)
        /// Observations decided at once, in per-target lanes (`MessageWorker.run(lanes:laneKey:)`): one
        /// target's events in order, the fleet's in parallel. DECISION_LANES; default 16.
        public var lanes = 16
        /// Fleet-wide maintenance windows (MAINTENANCE_WINDOWS), added to every target's own.
        public var fleetMaintenance: [MaintenanceWindow] = []
        public init(workerId: String) { self.workerId = workerId }
    }

    let options: Options
    let states: any VersionedStore
    let schedule: any WakeUpSchedule
    /// Publication claims and markers of outbox items, and the abort flags of running steps.
    let markers: any KeyValueStore
    let envelopes: EnvelopePublisher
    let catalog: (@Sendable () async throws -> [Target])?
    let defaultRegion: String
    let logger: Logger
    let clock: @Sendable () -> Date
    let known = KnownTargets()
    /// The last brake decoded, with its version (DecisionWorker+Brake.swift).
    let brakeCache = Mutex<(version: Int64, brake: FleetBrake)?>(nil)
    /// Decides and stores the events that change the brake together (see `apply`).
    private let brakeBatcher = BrakeBatcher()
    private let refusedOperators = Mutex<Set<String>>([])

    /// The worker on its ports: production passes the Redis and AMQP drivers, unit tests the memory ones
    /// (FleetTestSupport).
    public init(
        options: Options, states: any VersionedStore, schedule: any WakeUpSchedule, markers: any KeyValueStore,
        publisher: any MessagePublishing, topology: FleetTopology, catalog: (@Sendable () async throws -> [Target])?,
        defaultRegion: String, logger: Logger, clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.options = options
        self.states = states
        self.schedule = schedule
        self.markers = markers
        envelopes = EnvelopePublisher(
            publisher: publisher, topology: topology, producer: options.workerId, appId: "decision")
        self.catalog = catalog
        self.defaultRegion = defaultRegion
        self.logger = logger
        self.clock = clock
    }

    /// The worker on Redis: states, schedule and markers in one keyspace.
    public convenience init(
        options: Options, states: RedisStateStore, schedule: RedisSchedule, publisher: any MessagePublishing,
        topology: FleetTopology, catalog: (@Sendable () async throws -> [Target])?, defaultRegion: String,
        logger: Logger, clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.init(
            options: options, states: states, schedule: schedule,
            markers: RedisKeyValueStore(client: states.client, keyspace: states.keyspace), publisher: publisher,
            topology: topology, catalog: catalog, defaultRegion: defaultRegion, logger: logger, clock: clock)
    }

    static let brakeKey = DecisionStateKeys.brake
    public static func stateKey(_ target: String) -> String { DecisionStateKeys.target(target) }

    // MARK: Inputs

    /// Decodes a message of the observations queue (observations, predictions, actuator outcomes).
    public static func decodeObservationQueue(_ bytes: [UInt8]) throws(MessageDecodingError) -> DecisionInput {
        switch try EnvelopeCodec.messageType(of: bytes) {
        case .observation:
            return .probe(try EnvelopeCodec.decode(bytes, as: ProbeResult.self, expecting: .observation))
        case .actionEvent:
            return .outcome(try EnvelopeCodec.decode(bytes, as: ActionOutcome.self, expecting: .actionEvent))
        case .prediction:
            return .prediction(try EnvelopeCodec.decode(bytes, as: PredictionBody.self, expecting: .prediction))
        case let other:
            throw MessageDecodingError(
                kind: .unexpectedType, detail: "type '\(other.rawValue)' on the observations queue")
        }
    }

    /// Decodes a message of the commands queue.
    public static func decodeCommandQueue(_ bytes: [UInt8]) throws(MessageDecodingError) -> DecisionInput {
        let envelope = try EnvelopeCodec.decode(bytes, as: CommandBody.self, expecting: .command)
        return .command(envelope)
    }

    public func handle(_ input: DecisionInput, delivery: AMQPDelivery) async throws {
        try await handle(input, verifiedUser: delivery.properties.userId)
    }

    /// Handles one decoded message. `verifiedUser` is the AMQP user_id the broker checked (commands).
    public func handle(_ input: DecisionInput, verifiedUser: String?) async throws {
        switch input {
        case .probe(let envelope):
            guard let target = envelope.target else { throw RejectMessage("observation without a target") }
            try await apply(.probe(id: envelope.id, envelope.body), to: target, instanceHint: envelope.instanceId)
        case .outcome(let envelope):
            guard let target = envelope.target else { throw RejectMessage("action event without a target") }
            try await apply(.actionOutcome(id: envelope.id, envelope.body), to: target, instanceHint: nil)
        case .command(let envelope):
            try await command(envelope, verifiedUser: verifiedUser)
        case .prediction(let envelope):
            // Medium predictions are the recorder's (history) only; high-confidence ones may plan a repair.
            guard envelope.body.highConfidence else { return }
            guard let target = envelope.target else { throw RejectMessage("prediction without a target") }
            let p = envelope.body
            let window = min(p.window.from, p.window.to)...max(p.window.from, p.window.to)
            try await apply(
                .trouble(
                    PredictiveRepair.Trouble(
                        id: envelope.id, kind: p.kind.rawValue, confidence: p.confidence, repair: p.repair,
                        detail: p.detail,
                        window: window)), to: target, instanceHint: envelope.instanceId)
        case .ignored:
            break
        }
    }

    private func command(_ envelope: Envelope<CommandBody>, verifiedUser: String?) async throws {
        // The broker checks user_id against the connection's login, so it is the sender's identity. A
        // command without one cannot be attributed to anybody and is refused.
        guard let sender = verifiedUser, !sender.isEmpty else {
            throw RejectMessage(
                "command has no user_id property; publish it with recoveryctl or set user_id to your RabbitMQ user")
        }
        let user: String
        do {
            user = try operatorOf(envelope.body, sentBy: sender)
        } catch let refusal as RejectMessage {
            await announceRefusal(envelope, who: sender, once: sender)
            throw refusal
        }
        if !options.operators.contains(user) {
            FleetMetrics.commands(result: "unauthorized").increment()
            // A relayed command names both: the person and the console that relayed it.
            let who = user == sender ? user : "\(user) via \(sender)"
            await announceRefusal(envelope, who: who, once: "\(sender)|\(user)")
            throw RejectMessage("user '\(who)' is not an operator")
        }
        let body = envelope.body
        guard let command = CommandName(rawValue: body.name) else {
            throw RejectMessage("unknown command '\(body.name)'; expected one of \(CommandName.list)")
        }
        if case .brake(let release) = command.route {
            let event: FleetBrake.Event =
                release
                ? .release(id: envelope.id, operator: user)
                : .engage(id: envelope.id, operator: user, reason: body.reason ?? "engaged by hand")
            return try await applyToBrake([event])
        }
        guard let target = envelope.target, !target.isEmpty else {
            throw RejectMessage("command \(body.name) names no target")
        }
        let event: TargetMachine.Event
        switch command.route {
        case .brake:
            return  // handled above
        case .repair(let kind):
            let action: RepairRequest.Action
            switch kind {
            case .quarantine: action = .quarantine(detachElasticIP: body.detachEip ?? false)
            case .unquarantine: action = .unquarantine
            case .ebsRepair: action = .ebsRepair
            case .ssm: throw RejectMessage("ssm repairs come from predictions, not from a command")
            }
            event = .repairCommand(
                .init(id: envelope.id, action: action, name: body.name, operator: user, reason: body.reason))
        case .machine(let name):
            if name == .hold && body.until == nil { throw RejectMessage("hold needs an 'until' time") }
            event = .ladder(
                .command(
                    id: envelope.id,
                    OperatorCommand(name, by: user, until: body.until, reason: body.reason, incident: body.incidentId)))
        }
        do {
            try await apply(event, to: target, instanceHint: nil)
        } catch let refused as RejectMessage {
            FleetMetrics.commands(result: "rejected").increment()
            throw refused
        }
        FleetMetrics.commands(result: "accepted").increment()
        logger.notice("\(body.name) of \(target) accepted from \(user)")
    }

    /// Announces a refused command once per `once` key and process: a flood of commands from someone who
    /// may not send them must not become a flood of pages. Every one is dead-lettered with the reason, which
    /// is also how recoveryctl learns of the refusal. At most 1,000 keys are remembered; past that, refusals
    /// are still dead-lettered and counted, but no longer announced (a console inventing names cannot page
    /// without end).
    private func announceRefusal(_ envelope: Envelope<CommandBody>, who: String, once key: String) async {
        let first = refusedOperators.withLock { refused in
            guard refused.count < 1_000 else { return false }
            return refused.insert(key).inserted
        }
        guard first else { return }
        await publishNotice(
            Notice(
                id: "\(envelope.id):unauthorized", kind: .commandRejected, at: clock(), target: envelope.target,
                command: CommandRef(id: envelope.id, name: envelope.body.name, operator: who),
                reason: .refusedSender(
                    .notAnOperator(user: who, command: envelope.body.name, noOperators: options.operators.isEmpty))))
    }

    // MARK: The read-apply-compare-and-set loop

    func apply(_ event: EscalationMachine.Event, to target: String, instanceHint: String?) async throws {
        try await apply(.ladder(event), to: target, instanceHint: instanceHint)
    }

    /// Load the target's machine and the fleet brake, decide the event over both, and store the two in one
    /// atomic compare-and-set (only if nobody stored another version of either meanwhile); then carry out
    /// the actions. A lost race decides the event again on the state that won. The brake's check and its
    /// count are one decision: a step the brake no longer admits (`FleetBrake.admit`) is decided again with
    /// the brake engaged, and two replicas can never both pass it at its last free slot.
    func apply(_ event: TargetMachine.Event, to target: String, instanceHint: String?) async throws {
        let key = Self.stateKey(target)
        for _ in 0..<20 {
            let now = clock()
            // The target and the brake's version in one round trip (the client pipelines concurrent calls).
            async let loadedBrake = loadBrake()
            let loaded = try await states.load(key)
            let brake = try await loadedBrake
            let stored = try await machine(loaded, target, instanceHint: instanceHint)
            var (machine, actions, decided) = try decide(
                event, on: stored, brake: brake.brake, configured: await known.target(target), now: now)
            if decided != brake.brake {
                // An event that changes the brake (an outage opening or closing, a step counted) is decided
                // again and stored with the others this replica has waiting (`BrakeBatcher`): one at a time,
                // they all wrote the one brake in a line, or lost the compare-and-set to each other over and
                // over, in a mass outage. Only other replicas' writes can still make a batch decide again.
                let committed = try await brakeBatcher.submit(
                    BrakeBatcher.Submission(event: event, target: target, instanceHint: instanceHint)
                ) { batch in await self.commitBrakeBatch(batch) }
                return try await carryOut(committed.actions, of: committed.machine, storedAs: committed.version)
            }
            try await stage(actions, into: &machine, now: now)
            let write = VersionedWrite(
                key, expectedVersion: loaded?.version ?? 0,
                data: String(decoding: try StateCodec.encode(machine), as: UTF8.self))
            guard let version = try await states.compareAndSet(all: [write])?.first else {
                FleetMetrics.decisionConflicts.increment()
                continue
            }
            return try await carryOut(actions, of: machine, storedAs: version)
        }
        throw DecisionError(
            "target \(target) changed 20 times while one event was applied; retrying later", contention: true)
    }

    /// One event decided over a target's machine and the brake. The brake's check and its count are one
    /// decision: a step the brake no longer admits (`FleetBrake.admit`) is decided again with the brake
    /// engaged.
    func decide(
        _ event: TargetMachine.Event, on stored: TargetMachine, brake: FleetBrake, configured: Target?, now: Date
    ) throws -> (machine: TargetMachine, actions: [TargetMachine.Action], brake: FleetBrake) {
        for brakeEngaged in [brake.isEngaged, true] {
            var (machine, decided) = (stored, brake)
            let actions = machine.handle(
                event,
                TargetMachine.Context(
                    now: now, brakeEngaged: brakeEngaged, settings: configured.map(settings(of:)),
                    identity: configured?.identity,
                    uniqueId: RandomId.uuid()))
            if decided.admit(actions.compactMap { if case .reportToFleet(let e) = $0 { e } else { nil } }, now: now) {
                return (machine, actions, decided)
            }
            guard !brakeEngaged else { break }
        }
        throw DecisionError("the fleet brake refused a step decided with it engaged")
    }

    /// What goes ahead of the state's compare-and-set: the messages into its outbox, and the abort flags.
    /// Abort flags go ahead of the state that records them, so no crash loses one (docs/actuator.md,
    /// "Abort"); a flag whose state write loses is harmless: decided again, or the step completed.
    func stage(_ actions: [TargetMachine.Action], into machine: inout TargetMachine, now: Date) async throws {
        for case .publish(let message) in actions {
            machine.outbox.append(try OutboxItem(message, producer: options.workerId, now: now))
        }
        for case .abortStep(let stepKey, let abort) in actions {
            try await markers.set(StepAbort.flagKey(stepKey), try abort.encoded(), expiry: StepAbort.flagLifetime)
        }
    }

    /// The stored machine (its leftover outbox published first), or a new one for a known target.
    func machine(_ loaded: VersionedValue?, _ target: String, instanceHint: String?) async throws
        -> TargetMachine
    {
        guard let loaded else { return TargetMachine(ladder: try await newMachine(target, instanceHint: instanceHint)) }
        var machine = try StateCodec.decodeTarget(Array(loaded.data.utf8))
        // A previous worker stored these but may not have published them yet.
        machine.outbox = try await flush(machine.outbox)
        return machine
    }

    /// After the compare-and-set won: publish the outbox (and clear it), the brake's notices, schedule the
    /// next tick. Counted only here, so a lost race counts nothing twice.
    func carryOut(_ actions: [TargetMachine.Action], of machine: TargetMachine, storedAs version: Int64)
        async throws
    {
        let key = Self.stateKey(machine.target)
        let remaining = try await flush(machine.outbox)
        if remaining.count != machine.outbox.count {
            var cleared = machine
            cleared.outbox = remaining
            _ = try? await states.compareAndSet(
                key, expectedVersion: version, data: String(decoding: try StateCodec.encode(cleared), as: UTF8.self))
        }
        var refusal: String?
        for action in actions {
            switch action {
            case .publish(.stateChange(let change, _, _)) where change.kind == "incident_opened":
                FleetMetrics.outages.increment()
            case .publish, .reportToFleet, .abortStep: break  // outbox published above; brake and flags written first
            case .schedule(let at?): try await schedule.schedule(machine.target, at: at)
            case .schedule(nil): try await schedule.cancel(machine.target)
            case .refuse(let reason): refusal = reason
            }
        }
        // What the brake decided with this event (its alert, targets to wake) is carried out by loading it.
        if actions.contains(where: { if case .reportToFleet = $0 { true } else { false } }) {
            _ = try await loadBrake()
        }
        FleetMetrics.decisions.increment()
        if let refusal { throw RejectMessage(refusal) }
    }

    /// A configured target's settings with the fleet-wide maintenance windows added.
    func settings(of target: Target) -> TargetSettings {
        var settings = target.settings
        settings.maintenance += options.fleetMaintenance
        return settings
    }

    private func newMachine(_ target: String, instanceHint: String?) async throws -> EscalationMachine {
        if let configured = await known.target(target) {
            return EscalationMachine(
                identity: configured.identity, instance: configured.instance, settings: settings(of: configured))
        }
        guard let instanceHint else {
            throw RejectMessage("unknown target '\(target)': no instance tagged AutoRecovery=enabled has that name")
        }
        var settings = TargetSettings()
        settings.maintenance = options.fleetMaintenance
        return EscalationMachine(
            identity: TargetIdentity(name: target, homeRegion: defaultRegion),
            instance: InstanceRef(id: instanceHint, region: defaultRegion), settings: settings)
    }

    // MARK: Fleet brake

    /// Fleet events that come from no target (discovery, the brake commands).
    func applyToBrake(_ events: [FleetBrake.Event]) async throws {
        for _ in 0..<20 {
            var (brake, version) = try await loadBrake()
            let now = clock()
            for event in events { brake.keep(brake.handle(event, now: now)) }
            guard try await storeBrake(brake, expectedVersion: version) else { continue }
            _ = try await loadBrake()  // carries out what it decided
            return
        }
        throw DecisionError(
            "the fleet brake changed 20 times while one event was applied; retrying later", contention: true)
    }

    // MARK: Publishing

    private func publishNotice(_ notice: Notice) async {
        do {
            try await publish(try OutboxItem(.notice(notice), producer: options.workerId, now: clock()))
        } catch {
            logger.error("could not publish a notice", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Timers and catalog

    /// Delivers `.tick` to every target whose deadline has come, until cancelled.
    public func runTicker() async {
        while !Task.isCancelled {
            do {
                try await tickDue()
            } catch {
                logger.warning("cannot read the schedule", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: options.tick)
        }
    }

    /// Delivers `.tick` once to every target whose deadline has come (by the injected clock).
    /// A tick that fails is not dropped: its wake-up moves a little later (5 s after transient trouble such
    /// as Redis down, 60 s otherwise) so the target's deadlines are not lost. Only a target nobody knows
    /// any more (refused) loses its wake-up.
    public func tickDue() async throws {
        for target in try await schedule.due(at: clock(), limit: 500) {
            do { try await apply(.tick, to: target, instanceHint: nil) } catch let refused as RejectMessage {
                logger.warning(
                    "tick refused; wake-up dropped", metadata: ["instance_id": "\(target)", "error": "\(refused)"])
                try? await schedule.cancel(target)
            } catch {
                let later: TimeInterval = TransientRetryPolicy.isTransient(error) ? 5 : 60
                logger.warning(
                    "tick failed; tried again in \(Int(later)) s",
                    metadata: ["instance_id": "\(target)", "error": "\(error)"])
                try? await schedule.schedule(target, at: clock().addingTimeInterval(later))
            }
        }
    }

    /// Refreshes the known targets (settings, identity) from discovery, until cancelled.
    public func runCatalog() async {
        guard let catalog else { return }
        while !Task.isCancelled {
            do {
                let targets = try await catalog()
                await known.set(targets)
                try await applyToBrake([.fleetChanged(targets: targets.map(\.name))])
                FleetMetrics.targets.record(targets.count)
            } catch {
                logger.warning("target discovery failed; keeping the previous list", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: options.catalogRefresh)
        }
    }

    /// The decision executable's services, in the order that makes shutdown safe by construction:
    /// `clients` first (closed last), then discovery and the ticker, then the two consumers (stopped
    /// first; their deliveries in flight finish while every client is still open).
    public func services(
        clients: [any Service], observations: MessageWorker<DecisionInput>,
        commands: MessageWorker<DecisionInput>
    ) -> [any Service] {
        clients + [
            LoopService(run: { await self.runCatalog() }), LoopService(run: { await self.runTicker() }),
            observations.service(lanes: options.lanes, laneKey: MessageWorker<DecisionInput>.targetOfRoutingKey),
            commands.service(),
        ]
    }

    /// For tests and the first start: load the catalog once.
    public func refreshCatalog() async throws {
        guard let catalog else { return }
        let targets = try await catalog()
        await known.set(targets)
        try await applyToBrake([.fleetChanged(targets: targets.map(\.name))])
    }
}
