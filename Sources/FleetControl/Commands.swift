import AMQPTransport
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import Synchronization

/// One operator command as recoveryctl publishes it (docs/operations.md).
public struct CommandRequest: Sendable, Equatable {
    /// The target, or nil for the fleet-wide brake commands (routing key `command.fleet`).
    public var target: String?
    /// One of the names the decision worker accepts.
    public var name: CommandName
    public var until: Date?
    public var reason: String?
    /// For `quarantine`: also take the Elastic IP off the instance.
    public var detachEip: Bool?
    /// Set by the console only: the operator it relays the command for (docs/console.md).
    public var onBehalfOf: String?
    /// The incident the command is meant for; the decision worker refuses it if another one is open.
    public var incidentId: String?

    public init(
        target: String?, name: CommandName, until: Date? = nil, reason: String? = nil, detachEip: Bool? = nil,
        onBehalfOf: String? = nil, incidentId: String? = nil
    ) {
        self.incidentId = incidentId
        self.target = target
        self.name = name
        self.until = until
        self.reason = reason
        self.detachEip = detachEip
        self.onBehalfOf = onBehalfOf
    }

    /// The ladder step the command makes the actuator run: the step commands' own, and for `approve`
    /// whichever step was pending (known from the answer).
    var step: RecoveryStep? {
        if case .machine(let command) = name.route { command.step } else { nil }
    }
    /// The repair an accepted `quarantine`, `unquarantine` or `repair_volume` asks the actuator for; its
    /// key is `<target>/repair/<kind>/<command id>` (docs/messages.md).
    var repairKind: RepairRequest.Kind? {
        if case .repair(let kind) = name.route { kind } else { nil }
    }
    /// Whether an accepted command leads to an actuator outcome worth waiting for (`abort`: the outcome of
    /// the step it stops, named by the answer).
    var runsStep: Bool { step != nil || name == .approve || name == .abort || repairKind != nil }
}

/// What became of a command.
public struct CommandResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        /// Published; not waited for (`--no-wait`).
        case sent
        /// The decision worker accepted it (and, for a step, the actuator reported an outcome: see `outcome`).
        case accepted
        /// Refused: by the decision worker (a `command_rejected` notice) or dead-lettered with a reason.
        case rejected
        /// No answer (or no outcome) within `--timeout`.
        case timedOut = "timed_out"
    }

    public struct Outcome: Codable, Sendable, Equatable {
        public var idempotencyKey: String
        public var step: String
        public var status: String
        public var reason: String?
        public var instanceId: String?
        public var region: String?
        /// Who aborted the step (`recoveryctl abort`), when the actuator stopped it for that.
        public var abortedBy: String?

        public init(
            idempotencyKey: String, step: String, status: String, reason: String? = nil, instanceId: String? = nil,
            region: String? = nil, abortedBy: String? = nil
        ) {
            self.idempotencyKey = idempotencyKey
            self.step = step
            self.status = status
            self.reason = reason
            self.instanceId = instanceId
            self.region = region
            self.abortedBy = abortedBy
        }

        enum CodingKeys: String, CodingKey {
            case step, status, reason, region
            case idempotencyKey = "idempotency_key"
            case instanceId = "instance_id"
            case abortedBy = "aborted_by"
        }
    }

    public var commandId: String
    public var command: String
    public var target: String?
    /// The RabbitMQ user the command was sent as (its verified `user_id`).
    public var `operator`: String
    public var status: Status
    /// The decision worker's answer (accepted: what changed; rejected: why), or the dead-letter reason.
    public var detail: String?
    public var incidentId: String?
    /// For step commands and approve: the actuator's outcome.
    public var outcome: Outcome?
    /// The exact command lines the answer suggests.
    public var suggestions: [String]

    public init(
        commandId: String, command: String, target: String?, operator: String, status: Status, detail: String? = nil,
        incidentId: String? = nil, outcome: Outcome? = nil, suggestions: [String] = []
    ) {
        self.commandId = commandId
        self.command = command
        self.target = target
        self.operator = `operator`
        self.status = status
        self.detail = detail
        self.incidentId = incidentId
        self.outcome = outcome
        self.suggestions = suggestions
    }

    enum CodingKeys: String, CodingKey {
        case command, target, `operator`, status, detail, outcome, suggestions
        case commandId = "command_id"
        case incidentId = "incident_id"
    }

    /// 0 accepted (and a step succeeded, or an abort stopped it), 3 rejected, 4 the step failed or needs a
    /// person, 5 timed out.
    public var exitCode: Int32 {
        switch status {
        case .sent: return 0
        case .rejected: return 3
        case .timedOut: return 5
        case .accepted:
            if command == CommandName.abort.rawValue, outcome?.abortedBy != nil { return 0 }
            if let outcome, outcome.status != ActionOutcome.Status.succeeded.rawValue { return 4 }
            return 0
        }
    }

    public func render(width: Int = 80) -> String {
        let what = "\(command)\(target.map { " \($0)" } ?? "")"
        var lines: [String] = []
        switch status {
        case .sent:
            lines.append("\(what): sent as \(`operator`) (command \(commandId)); not waiting for the answer.")
        case .accepted:
            lines.append("\(what): accepted (command \(commandId), by \(`operator`)).")
        case .rejected:
            lines.append("\(what): REJECTED (command \(commandId), by \(`operator`)).")
        case .timedOut:
            lines.append(
                "\(what): no \(detail == nil ? "answer" : "outcome") within the timeout (command \(commandId), by \(`operator`))."
            )
        }
        if let detail { lines.append(wrap("  " + detail, width: width, indent: "  ")) }
        if let outcome {
            // An aborted step's reason says who, where it stopped and what was put back.
            let status =
                outcome.abortedBy != nil ? "stopped" : outcome.status.replacingOccurrences(of: "_", with: " ")
            var line = "  \(outcome.step) \(status)"
            if let instance = outcome.instanceId { line += ": now \(instance) (\(outcome.region ?? "?"))" }
            if let reason = outcome.reason { line += ": \(reason)" }
            lines.append(wrap(line, width: width, indent: "    "))
        } else if status == .timedOut, incidentId != nil {
            lines.append(
                "  The step may still be running: recoveryctl status \(target.map(RecoveryCtl.quote) ?? ""), recoveryctl history \(target.map(RecoveryCtl.quote) ?? "")."
            )
        }
        for suggestion in suggestions { lines.append("  next: \(suggestion)") }
        return lines.map { wrap($0, width: width, indent: "    ") }.joined(separator: "\n")
    }
}

/// Publishes a command onto the commands queue and follows it to its answer.
///
/// Before publishing, it subscribes a private queue (exclusive, auto-delete, on its own connection) to
/// the fleet exchange for the target's notices (`notification.<target>`) and outcomes
/// (`action.event.<target>`), and to the dead-letter exchange for the commands queue's refusals. So
/// nothing it waits for can be published before it listens. It then correlates:
/// - the decision worker's `command_accepted` / `command_rejected` notice: `body.command.id` = the
///   command's id (the message id);
/// - a dead-lettered command (unknown target, no `user_id`, not an operator…): its `message_id`;
/// - for a step: the actuator's `action.event` whose body names the incident from the accepted notice and
///   the step (its idempotency key is `<target>/<incident>/<step>`, the same key the automatic steps use,
///   so the actuator's lock and run-once record apply unchanged).
public struct CommandSender: Sendable {
    let amqp: AMQPConfiguration
    let topology: FleetTopology
    let logger: Logger
    let producer: String

    public init(amqp: AMQPConfiguration, topology: FleetTopology, producer: String, logger: Logger) {
        self.amqp = amqp
        self.topology = topology
        self.producer = producer
        self.logger = logger
    }

    public func send(_ request: CommandRequest, wait: Bool, timeout: Duration, now: Date = Date()) async throws
        -> CommandResult
    {
        let user = amqp.url.user
        let id = "cmd-\(UUID().uuidString.lowercased())"
        var result = CommandResult(
            commandId: id, command: request.name.rawValue, target: request.target,
            operator: request.onBehalfOf.map { "\($0) via \(user)" } ?? user,
            status: .sent, suggestions: [])
        let deadline = ContinuousClock.now + timeout

        // Fail fast with the broker's own words (login refused, no such queue) before anything else.
        let admin = AMQPAdmin(configuration: amqp)
        do {
            _ = try await admin.messageCount(queue: topology.commandsQueue)
            await admin.close()
        } catch {
            await admin.close()
            if case .brokerClosed(404, _, _) = error {
                throw ControlError(
                    "the commands queue \(topology.commandsQueue) does not exist: is FLEET_PREFIX right, and is the topology declared (recoveryctl topology apply)?"
                )
            }
            throw ControlError("\(error)")
        }

        var consumer: AMQPConsumer?
        if wait {
            // Named by the broker (amq.gen-…): the operator's configure permission covers only such
            // names, which no client can give an exchange.
            let replies = ""
            let routingTarget = request.target
            var bindings = [
                AMQPTopology.Binding(
                    exchange: topology.exchange, queue: replies,
                    routingKey: FleetTopology.routingKey(.notification, target: routingTarget)),
                AMQPTopology.Binding(
                    exchange: topology.deadLetterExchange, queue: replies, routingKey: topology.commandsQueue),
            ]
            if routingTarget != nil {
                bindings.append(
                    .init(
                        exchange: topology.exchange, queue: replies,
                        routingKey: FleetTopology.routingKey(.actionEvent, target: routingTarget)))
            }
            let privateTopology = AMQPTopology(
                queues: [.init(name: replies, durable: false, exclusive: true, autoDelete: true)], bindings: bindings)
            let c = AMQPConsumer(
                configuration: amqp, topology: privateTopology, queue: replies, prefetch: 64, logger: logger)
            consumer = c
            // Subscribed (declared and bound) before the command goes out.
            let subscribeBy = min(deadline, ContinuousClock.now + .seconds(15))
            while !c.isConnected {
                guard ContinuousClock.now < subscribeBy else {
                    await c.shutdown(drainTimeout: .zero)
                    throw ControlError(
                        "could not subscribe a private reply queue on the broker within 15 s (the user needs the operator permissions of recoveryctl topology apply --identities: configure on amq.gen-.*, read on the exchanges \(topology.exchange) and \(topology.deadLetterExchange); docs/security.md); use --no-wait to only send"
                    )
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        let body = CommandBody(
            name: request.name.rawValue, until: request.until, reason: request.reason, detachEip: request.detachEip,
            onBehalfOf: request.onBehalfOf, incidentId: request.incidentId)
        let publisher = AMQPPublisher(configuration: amqp, publishTimeout: min(timeout, .seconds(30)), logger: logger)
        do {
            // user_id: the publisher stamps the connection's user, which the broker verifies.
            try await EnvelopePublisher(
                publisher: publisher, topology: topology, producer: producer, appId: "recoveryctl"
            )
            .publish(
                .command, id: id, target: request.target, instanceId: nil, correlationId: nil, body: body, now: now)
        } catch {
            await publisher.shutdown(drainTimeout: .zero)
            if let consumer { await consumer.shutdown(drainTimeout: .zero) }
            throw ControlError("the command was not sent: \(error)")
        }
        await publisher.shutdown()
        guard let consumer else { return result }

        result.status = .timedOut
        let progress = Progress(result)
        let final = await withTaskGroup(of: CommandResult?.self) { group in
            group.addTask { await follow(consumer, request: request, progress: progress) }
            group.addTask {
                try? await Task.sleep(until: deadline)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        await consumer.shutdown(drainTimeout: .zero)
        // Timed out: report how far it got (an accepted step whose outcome did not come in time).
        return final ?? progress.value.withLock { $0 }
    }

    final class Progress: Sendable {
        let value: Mutex<CommandResult>
        init(_ result: CommandResult) { value = Mutex(result) }
    }

    /// Reads the private queue until the command's answer (and, for a step, its outcome) has come.
    private func follow(_ consumer: AMQPConsumer, request: CommandRequest, progress: Progress) async -> CommandResult? {
        var result = progress.value.withLock { $0 }
        var answered = false
        var expectedStep = request.step
        var earlyOutcomes: [ActionOutcome] = []

        func matches(_ outcome: ActionOutcome) -> Bool {
            if let kind = request.repairKind {
                return outcome.idempotencyKey
                    == RepairRequest.key(target: request.target ?? "", kind: kind, id: result.commandId)
            }
            return outcome.repair == nil && outcome.incidentId == result.incidentId
                && (expectedStep == nil || outcome.step == expectedStep)
        }
        func finish(_ outcome: ActionOutcome) -> CommandResult {
            var r = result
            r.outcome = .init(
                idempotencyKey: outcome.idempotencyKey, step: outcome.repair?.rawValue ?? outcome.step.rawValue,
                status: outcome.status.rawValue,
                reason: outcome.reason, instanceId: outcome.instanceId, region: outcome.region,
                abortedBy: outcome.aborted?.by)
            r.status = .accepted
            return r
        }

        for await delivery in consumer.deliveries {
            if Task.isCancelled { return nil }
            await consumer.ack(delivery)
            if delivery.exchange == topology.deadLetterExchange {
                guard !answered, delivery.properties.messageId == result.commandId else { continue }
                result.status = .rejected
                result.detail =
                    delivery.properties.headers["x-reject-reason"]?.stringValue ?? "dead-lettered without a reason"
                return result
            }
            guard let type = try? EnvelopeCodec.messageType(of: delivery.body) else { continue }
            switch type {
            case .notification:
                guard let notice = try? EnvelopeCodec.decode(delivery.body, as: Notice.self, expecting: .notification)
                else { continue }
                if !answered, notice.body.command?.id == result.commandId {
                    answered = true
                    result.detail = notice.body.detail
                    result.incidentId = notice.body.incidentId
                    result.suggestions = notice.body.commands
                    if notice.body.kind == .commandRejected {
                        result.status = .rejected
                        return result
                    }
                    result.status = .accepted
                    // An abort's answer names the step it stops; its outcome is what to wait for.
                    if request.name == .abort { expectedStep = notice.body.step }
                    guard request.runsStep, result.incidentId != nil else { return result }
                    // Still waiting for the outcome: a timeout now reports the answer that came.
                    result.status = .timedOut
                    progress.value.withLock { [result] in $0 = result }
                    if let early = earlyOutcomes.first(where: matches) { return finish(early) }
                } else if answered, expectedStep == nil, notice.body.kind == .actionStarted,
                    notice.body.incidentId == result.incidentId, let step = notice.body.step
                {
                    expectedStep = step  // approve: the step it ran
                }
            case .actionEvent:
                guard
                    let outcome = try? EnvelopeCodec.decode(
                        delivery.body, as: ActionOutcome.self, expecting: .actionEvent)
                else { continue }
                if answered, request.runsStep {
                    if matches(outcome.body) { return finish(outcome.body) }
                } else {
                    earlyOutcomes.append(outcome.body)
                }
            default:
                continue
            }
        }
        return nil
    }
}
