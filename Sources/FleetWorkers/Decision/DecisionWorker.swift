import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import RedisStore
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
        public var brakeSettings = FleetBrake.Settings()
        public var tick: Duration = .seconds(1)
        public var catalogRefresh: Duration = .seconds(60)
        public init(workerId: String) { self.workerId = workerId }
    }

    let options: Options
    let states: RedisStateStore
    let schedule: RedisSchedule
    let publisher: AMQPPublisher
    let topology: FleetTopology
    let catalog: (@Sendable () async throws -> [Target])?
    let defaultRegion: String
    let logger: Logger
    let clock: @Sendable () -> Date
    private let known = KnownTargets()
    private let refusedOperators = Mutex<Set<String>>([])
    private var markers: RedisKeyValueStore { RedisKeyValueStore(client: states.client, keyspace: states.keyspace) }

    public init(options: Options, states: RedisStateStore, schedule: RedisSchedule, publisher: AMQPPublisher,
                topology: FleetTopology, catalog: (@Sendable () async throws -> [Target])?, defaultRegion: String,
                logger: Logger, clock: @escaping @Sendable () -> Date = Date.init) {
        self.options = options
        self.states = states
        self.schedule = schedule
        self.publisher = publisher
        self.topology = topology
        self.catalog = catalog
        self.defaultRegion = defaultRegion
        self.logger = logger
        self.clock = clock
    }

    static let brakeKey = "fleet:brake"
    static func stateKey(_ target: String) -> String { "target:\(target)" }

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
            throw MessageDecodingError(kind: .unexpectedType, detail: "type '\(other.rawValue)' on the observations queue")
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
            try await apply(.trouble(PredictiveRepair.Trouble(
                id: envelope.id, kind: p.kind.rawValue, confidence: p.confidence, repair: p.repair, detail: p.detail,
                window: window)), to: target, instanceHint: envelope.instanceId)
        case .ignored:
            break
        }
    }

    private func command(_ envelope: Envelope<CommandBody>, verifiedUser: String?) async throws {
        // The broker checks user_id against the connection's login, so it is the sender's identity. A
        // command without one cannot be attributed to anybody and is refused.
        guard let user = verifiedUser, !user.isEmpty else {
            throw RejectMessage("command has no user_id property; publish it with recoveryctl or set user_id to your RabbitMQ user")
        }
        if !options.operators.contains(user) {
            FleetMetrics.commands(result: "unauthorized").increment()
            // Announced once per sender and process: a flood of commands from someone who may not send
            // them must not become a flood of pages. Every one is dead-lettered with the reason, which is
            // also how recoveryctl learns of the refusal.
            guard refusedOperators.withLock({ $0.insert(user).inserted }) else {
                throw RejectMessage("user '\(user)' is not an operator")
            }
            await publishNotice(Notice(
                id: "\(envelope.id):unauthorized", kind: .commandRejected, at: clock(), target: envelope.target,
                detail: options.operators.isEmpty
                    ? "no operators are configured (OPERATORS is empty), so every command is refused; command \(envelope.body.name) from '\(user)' refused"
                    : "user '\(user)' is not on the operator list (OPERATORS); command \(envelope.body.name) refused",
                command: CommandRef(id: envelope.id, name: envelope.body.name, operator: user)), target: envelope.target)
            throw RejectMessage("user '\(user)' is not an operator")
        }
        let body = envelope.body
        guard let command = CommandName(rawValue: body.name) else {
            throw RejectMessage("unknown command '\(body.name)'; expected one of \(CommandName.list)")
        }
        switch command.route {
        case .brake(let release):
            let event: FleetBrake.Event = release
                ? .release(id: envelope.id, operator: user)
                : .engage(id: envelope.id, operator: user, reason: body.reason ?? "engaged by hand")
            try await applyToBrake([event])
        case .repair(let kind):
            try await repairCommand(envelope, kind: kind, user: user)
        case .machine(let name):
            guard let target = envelope.target, !target.isEmpty else { throw RejectMessage("command \(body.name) names no target") }
            if name == .hold && body.until == nil { throw RejectMessage("hold needs an 'until' time") }
            let isKnown = await known.contains(target)
            let hasState = isKnown ? true : (try await states.load(Self.stateKey(target))) != nil
            guard hasState else { throw RejectMessage("unknown target '\(target)'") }
            FleetMetrics.commands(result: "accepted").increment()
            try await apply(.command(id: envelope.id, OperatorCommand(name, by: user, until: body.until)), to: target, instanceHint: nil)
        }
    }

    /// `quarantine` / `unquarantine` / `repair_volume`: publishes the repair request (docs/messages.md) for
    /// the target's current instance, and a `command_accepted` notice answering the command.
    /// - quarantine: the actuator tags the instance and sets the table flag. Discovery then reports the
    ///   target quarantined (tag or flag) and the machine takes no step on it (docs/escalation.md,
    ///   "Quarantine"). Not a machine event: a quarantine must also work while an incident is stopped or held.
    /// - repair_volume: the EBS root-volume swap (docs/actuator.md, "Repairs"). Destructive, so refused —
    ///   with a `command_rejected` notice and a dead letter saying why — while the fleet brake is engaged or
    ///   the target is quarantined, like the ladder's manual steps.
    private func repairCommand(_ envelope: Envelope<CommandBody>, kind: RepairRequest.Kind, user: String) async throws {
        let body = envelope.body
        guard let target = envelope.target, !target.isEmpty else { throw RejectMessage("command \(body.name) names no target") }
        let stored = try await states.load(Self.stateKey(target)).map { try StoredTarget.decode($0.data) }
        let known = await known.target(target)
        guard let instance = stored?.machine.currentInstance ?? known?.instance else {
            throw RejectMessage("unknown target '\(target)'")
        }
        let ref = CommandRef(id: envelope.id, name: body.name, operator: user)
        let action: RepairRequest.Action
        switch kind {
        case .quarantine: action = .quarantine(detachElasticIP: body.detachEip ?? false)
        case .unquarantine: action = .unquarantine
        case .ssm: throw RejectMessage("ssm repairs come from predictions, not from a command")
        case .ebsRepair:
            action = .ebsRepair
            let quarantined = known?.settings.quarantined ?? stored?.machine.settings.quarantined ?? false
            let braked = try await loadBrake().brake.isEngaged
            // An open incident whose ladder may still act: the swap would hold the target's lock for
            // minutes and the ladder's next step would land on (or after) it. Pause the ladder first.
            var ladderLive = false
            if let incident = stored?.machine.incident {
                var paused = incident.automationStopped != nil
                if case .stopped = incident.phase { paused = true }
                switch incident.hold {
                case .acknowledged?: paused = true
                case .until(let end, _)?: paused = paused || end > clock()
                case nil: break
                }
                ladderLive = !paused
            }
            if quarantined || braked || ladderLive {
                let why = quarantined ? "\(target) is quarantined: no automatic or manual repair runs until `recoveryctl unquarantine \(target)`"
                    : braked ? "the fleet brake is engaged: no destructive step runs until it is released (`\(RecoveryCtl.brakeRelease)`)"
                    : "incident \(stored!.machine.incident!.id) is open and its ladder may act: `\(RecoveryCtl.ack(target))` (or hold it) first, then repair the volume"
                FleetMetrics.commands(result: "rejected").increment()
                await publishNotice(Notice(id: "\(envelope.id):command_rejected", kind: .commandRejected, at: clock(), target: target,
                                           instanceId: instance.id, region: instance.region, detail: why, command: ref), target: target)
                throw RejectMessage(why)
            }
        }
        let repair = RepairRequest(action, id: envelope.id, reason: body.reason)
        let now = clock()
        let request = ActionRequest.repair(
            repair, target: target, incidentId: stored?.machine.incident?.id, instanceId: instance.id, region: instance.region,
            requestedAt: now, deadline: now.addingTimeInterval(Self.quarantineDeadline), requestedBy: user)
        try await publishAll([try OutboxItem.message(
            type: .actionRequest, id: request.idempotencyKey, target: target, instanceId: instance.id,
            correlationId: request.incidentId, body: request, topology: topology, producer: options.workerId, now: now)])
        FleetMetrics.commands(result: "accepted").increment()
        logger.notice("\(body.name) of \(target) requested by \(user)", metadata: ["instance_id": "\(instance.id)"])
        await publishNotice(Notice(
            id: "\(envelope.id):command_accepted", kind: .commandAccepted, at: now, target: target, instanceId: instance.id,
            region: instance.region, incidentId: request.incidentId,
            detail: "\(body.name) of \(target) requested from the actuator (\(request.idempotencyKey))", command: ref), target: target)
    }

    /// How long the actuator has to carry out a quarantine or volume repair: longer than it may wait for
    /// the target's lock (the actuator's lock wait limit, 20 minutes by default) plus the work itself.
    static let quarantineDeadline: TimeInterval = 3600

    // MARK: The read-apply-compare-and-set loop

    func apply(_ event: EscalationMachine.Event, to target: String, instanceHint: String?) async throws {
        try await apply(.machine(event), to: target, instanceHint: instanceHint)
    }

    /// What changes a target's state: an event for its escalation machine, or predicted trouble for its
    /// repair plan (`PredictiveRepair`, docs/prediction.md). Both live in the same stored document.
    enum TargetEvent {
        case machine(EscalationMachine.Event)
        case trouble(PredictiveRepair.Trouble)
    }

    func apply(_ event: TargetEvent, to target: String, instanceHint: String?) async throws {
        let key = Self.stateKey(target)
        for _ in 0..<20 {
            let now = clock()
            let loaded = try await states.load(key)
            var document: StoredTarget
            if let loaded {
                document = try StoredTarget.decode(loaded.data)
                if !document.outbox.isEmpty {
                    // A previous worker stored these but may not have published them yet.
                    document.outbox = try await flush(document.outbox)
                }
            } else {
                document = StoredTarget(machine: try await newMachine(target, instanceHint: instanceHint), outbox: [])
            }
            if let configured = await known.target(target) {
                document.machine.settings = configured.settings
                var identity = configured.identity
                identity.name = document.machine.identity.name
                document.machine.identity = identity
            }
            let brake = try await loadBrake()
            let before = TargetStateChange.Summary(document.machine)
            if case .machine(.probe(_, let result)) = event {
                // For `recoveryctl status`: the machine keeps streaks, not times.
                document.lastProbe = LastProbe(at: now, healthy: result.healthy, prober: result.prober,
                                               instanceId: result.instanceId, detail: result.detail)
            }
            var actions: [EscalationMachine.Action] = []
            var repair = document.repair ?? PredictiveRepair()
            func repairContext() -> PredictiveRepair.Context {
                PredictiveRepair.Context(
                    now: now, target: target, instance: document.machine.currentInstance, settings: document.machine.settings,
                    incidentOpen: document.machine.incident != nil, brakeEngaged: brake.brake.isEngaged)
            }
            var repairActions: [PredictiveRepair.Action] = []
            switch event {
            case .trouble(let trouble):
                repairActions = repair.handle(.trouble(trouble), repairContext())
            case .machine(.command(let id, let command)) where repair.takes(command, incidentOpen: document.machine.incident != nil):
                // ack / approve / hold / resume while a repair is planned and no outage is open. The
                // machine's memory of handled ids drops a redelivery, whoever handles it then.
                if document.machine.remember(eventId: id) { repairActions = repair.handle(.command(id: id, command), repairContext()) }
            case .machine(.actionOutcome(_, let outcome)) where outcome.repair != nil:
                repairActions = repair.handle(.outcome(outcome), repairContext())
            case .machine(let machineEvent):
                actions = document.machine.handle(machineEvent, now: now, brakeEngaged: brake.brake.isEngaged)
                if case .command(_, let command) = machineEvent, command.name == .reset,
                   let notice = repair.cancel(because: "reset by \(command.operator)", repairContext()) {
                    repairActions.append(.notify(notice))
                }
                // After the machine: an outage that just opened cancels a planned repair.
                repairActions += repair.handle(.tick, repairContext())
            }
            document.repair = repair.plan == nil && repair.quietUntil.isEmpty ? nil : repair
            for action in repairActions {
                switch action {
                case let .requestRepair(key, id, document: ssmDocument, reason, instance, deadline, requestedBy):
                    let request = ActionRequest.repair(
                        RepairRequest(.ssm(document: ssmDocument, parameters: [:]), id: id, reason: reason), target: target,
                        instanceId: instance.id, region: instance.region, requestedAt: now, deadline: deadline,
                        requestedBy: requestedBy)
                    assert(request.idempotencyKey == key)
                    document.outbox.append(try OutboxItem.message(
                        type: .actionRequest, id: request.idempotencyKey, target: target, instanceId: request.instanceId,
                        correlationId: request.incidentId, body: request, topology: topology, producer: options.workerId, now: now))
                case .notify(let notice):
                    document.outbox.append(try OutboxItem.message(
                        type: .notification, id: notice.id, target: notice.target, instanceId: notice.instanceId,
                        correlationId: notice.incidentId, body: notice, topology: topology, producer: options.workerId, now: now))
                }
            }
            var outageOpened = false
            if let change = TargetStateChange.between(before, TargetStateChange.Summary(document.machine)) {
                outageOpened = change.kind == "incident_opened"
                // History of state changes (docs/history.md); published through the outbox like the rest.
                document.outbox.append(try OutboxItem.message(
                    type: .event, id: "\(target):state:\(UUID().uuidString.lowercased())", target: target,
                    instanceId: change.instanceId, correlationId: change.incidentId, body: change, topology: topology,
                    producer: options.workerId, now: now))
            }
            var fleetEvents: [FleetBrake.Event] = []
            for action in actions {
                switch action {
                case .requestAction(let request):
                    document.outbox.append(try OutboxItem.message(
                        type: .actionRequest, id: request.idempotencyKey, target: target, instanceId: request.instanceId,
                        correlationId: request.incidentId, body: request, topology: topology, producer: options.workerId, now: now))
                case .notify(let notice), .rejectCommand(let notice):
                    document.outbox.append(try OutboxItem.message(
                        type: .notification, id: notice.id, target: notice.target, instanceId: notice.instanceId,
                        correlationId: notice.incidentId, body: notice, topology: topology, producer: options.workerId, now: now))
                case .reportToFleet(let fleetEvent):
                    fleetEvents.append(fleetEvent)
                case .scheduleWakeUp:
                    break  // the schedule below follows nextDeadline
                }
            }
            guard let version = try await states.compareAndSet(key, expectedVersion: loaded?.version ?? 0, data: try document.encoded())
            else {
                FleetMetrics.decisionConflicts.increment()
                continue  // another replica changed the target: apply the event to its state instead
            }
            let remaining = try await flush(document.outbox)
            if remaining.count != document.outbox.count {
                var cleared = document
                cleared.outbox = remaining
                _ = try? await states.compareAndSet(key, expectedVersion: version, data: try cleared.encoded())
            }
            if let deadline = [document.machine.nextDeadline, document.repair?.nextDeadline].compactMap({ $0 }).min() {
                try await schedule.schedule(target, at: deadline)
            } else {
                try await schedule.cancel(target)
            }
            if !fleetEvents.isEmpty { try await applyToBrake(fleetEvents) }
            FleetMetrics.decisions.increment()
            // Counted after the compare-and-set won, so a lost race does not count an outage twice.
            if outageOpened { FleetMetrics.outages.increment() }
            return
        }
        throw DecisionError("target \(target) changed 20 times while one event was applied; retrying later")
    }

    private func newMachine(_ target: String, instanceHint: String?) async throws -> EscalationMachine {
        if let configured = await known.target(target) {
            return EscalationMachine(identity: configured.identity, instance: configured.instance, settings: configured.settings)
        }
        guard let instanceHint else {
            throw RejectMessage("unknown target '\(target)': no instance tagged AutoRecovery=enabled has that name")
        }
        return EscalationMachine(
            identity: TargetIdentity(name: target, homeRegion: defaultRegion),
            instance: InstanceRef(id: instanceHint, region: defaultRegion))
    }

    // MARK: Fleet brake

    private func loadBrake() async throws -> (brake: FleetBrake, version: Int64) {
        guard let loaded = try await states.load(Self.brakeKey) else {
            return (FleetBrake(settings: options.brakeSettings, fleet: await known.names()), 0)
        }
        var brake = try StateCodec.decodeBrake(Array(loaded.data.utf8))
        brake.settings = options.brakeSettings
        return (brake, loaded.version)
    }

    func applyToBrake(_ events: [FleetBrake.Event]) async throws {
        for _ in 0..<20 {
            var (brake, version) = try await loadBrake()
            let now = clock()
            var actions: [FleetBrake.Action] = []
            for event in events { actions += brake.handle(event, now: now) }
            let data = String(decoding: try StateCodec.encode(brake), as: UTF8.self)
            guard try await states.compareAndSet(Self.brakeKey, expectedVersion: version, data: data) != nil else { continue }
            FleetMetrics.brakeEngaged.record(brake.isEngaged ? 1 : 0)
            for action in actions {
                switch action {
                case .notify(let notice), .rejectCommand(let notice):
                    await publishNotice(notice, target: notice.target)
                case .wakeTargets(let targets):
                    for target in targets { try await schedule.schedule(target, at: now) }
                }
            }
            return
        }
        throw DecisionError("the fleet brake changed 20 times while one event was applied; retrying later")
    }

    // MARK: Publishing

    private func publishAll(_ items: [OutboxItem]) async throws {
        for item in items {
            try await EnvelopePublisher(publisher: publisher, topology: topology, producer: options.workerId, appId: "decision")
                .publish(encoded: try item.encoded(), now: clock())
            FleetMetrics.messagesPublished(type: item.type).increment()
        }
    }

    /// Publishes outbox items that nobody has published yet; returns those still to be published (claimed
    /// by another worker right now). Two replicas can load the same outbox (the writer and the next
    /// reader); a short claim per message id (`publishing:<id>`) lets only one of them publish it, and a
    /// marker (`published:<id>`, kept a week) tells later readers it is done. A worker that dies after
    /// its claim leaves the item in the outbox; the claim expires and the next reader publishes it.
    private func flush(_ items: [OutboxItem]) async throws -> [OutboxItem] {
        var remaining: [OutboxItem] = []
        for item in items {
            if try await markers.get("published:\(item.messageId)") != nil { continue }
            guard try await markers.setIfAbsent("publishing:\(item.messageId)", options.workerId, expiry: .seconds(30)) else {
                remaining.append(item)
                continue
            }
            try await publishAll([item])
            try await markers.set("published:\(item.messageId)", "1", expiry: .seconds(7 * 86_400))
        }
        return remaining
    }

    private func publishNotice(_ notice: Notice, target: String?) async {
        do {
            let item = try OutboxItem.message(type: .notification, id: notice.id, target: target, instanceId: notice.instanceId,
                                              correlationId: notice.incidentId, body: notice, topology: topology,
                                              producer: options.workerId, now: clock())
            try await publishAll([item])
        } catch {
            logger.error("could not publish a notice", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Timers and catalog

    /// Delivers `.tick` to every target whose deadline has come, until cancelled.
    public func runTicker() async {
        while !Task.isCancelled {
            do {
                for target in try await schedule.due(at: clock()) {
                    do { try await apply(.tick, to: target, instanceHint: nil) } catch {
                        logger.warning("tick failed", metadata: ["instance_id": "\(target)", "error": "\(error)"])
                        try? await schedule.cancel(target)
                    }
                }
            } catch {
                logger.warning("cannot read the schedule", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: options.tick)
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

    /// For tests and the first start: load the catalog once.
    public func refreshCatalog() async throws {
        guard let catalog else { return }
        let targets = try await catalog()
        await known.set(targets)
        try await applyToBrake([.fleetChanged(targets: targets.map(\.name))])
    }
}
