import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import Logging
import RecoveryCore

/// One message of the history queue, decoded: its envelope's header, the whole envelope as a DynamoDB
/// value (numbers kept digit for digit) and its raw text.
public struct HistoryMessage: Sendable {
    public var type: MessageType
    public var id: String
    public var correlationId: String?
    public var target: String?
    public var instanceId: String?
    public var occurredAt: Date
    public var sentAt: Date
    public var producer: String?
    public var body: DynamoValue
    public var raw: String
}

/// The recorder: writes every message of `<prefix>.recorder.history` (events, commands, action requests
/// and outcomes, notifications) as one row of the events table, and predictions into the predictions
/// table with a `ttl` 30 days out.
///
/// - Key: `instance_id` = the target's stable identity (the envelope's `target`; else its EC2 instance;
///   else `fleet`), `timestamp` = the ISO time it happened + `#` + the message id, so rows never collide
///   and a target's history reads in time order.
/// - Idempotent: PutItem with `attribute_not_exists`; a redelivered message finds its row and counts as
///   written. Exactly one row per message, however often it is delivered.
/// - Never drops: when DynamoDB fails, the handler waits `failureDelay` and throws, so the message is
///   requeued (after the queue's delivery limit RabbitMQ moves it to `<queue>.dead`, whence it can be
///   shovelled back). A message DynamoDB refuses as invalid is dead-lettered with the reason.
///
/// It runs on ports (docs/architecture.md): rows through `ConditionalItemWriting`, the custom metrics
/// through `RecoveryMetrics` on `MetricDataPutting`; `services` lists what the executable runs, in shutdown
/// order.
public final class RecorderWorker: Sendable {
    public struct Options: Sendable {
        public var eventsTable: String
        public var predictionsTable: String
        public var predictionTTL: TimeInterval = 30 * 86_400
        /// Pause before requeueing a message DynamoDB did not take, so an outage is not a hot loop.
        public var failureDelay: Duration = .seconds(5)
        /// CONSOLE_USERS: only their commands' `on_behalf_of` names the person in `who`.
        public var consoleUsers: Set<String> = []
        public init(eventsTable: String, predictionsTable: String) {
            self.eventsTable = eventsTable
            self.predictionsTable = predictionsTable
        }
    }

    let options: Options
    let dynamo: any ConditionalItemWriting
    let logger: Logger
    let clock: @Sendable () -> Date
    let sleep: @Sendable (Duration) async throws -> Void
    /// Counts what was newly written (CloudWatch custom metrics and Prometheus); nil counts nothing.
    public let metrics: RecoveryMetrics?

    public init(
        options: Options, dynamo: any ConditionalItemWriting, logger: Logger,
        clock: @escaping @Sendable () -> Date = Date.init,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        metrics: RecoveryMetrics? = nil
    ) {
        self.options = options
        self.metrics = metrics
        self.dynamo = dynamo
        self.logger = logger
        self.clock = clock
        self.sleep = sleep
    }

    public static let partitionKey = "instance_id"
    public static let sortKey = "timestamp"

    /// Decodes any message type of the history queue; refuses what is not a valid envelope.
    public static func decode(_ bytes: [UInt8]) throws(MessageDecodingError) -> HistoryMessage {
        let type = try EnvelopeCodec.messageType(of: bytes)
        let envelope = try EnvelopeCodec.decode(bytes, as: OpaqueBody.self, expecting: type)
        let whole: DynamoValue
        do {
            whole = try JSONToDynamo.parse(bytes)
        } catch {
            throw MessageDecodingError(kind: .notJSON, detail: "\(error)")
        }
        return HistoryMessage(
            type: type, id: envelope.id, correlationId: envelope.correlationId, target: envelope.target,
            instanceId: envelope.instanceId, occurredAt: envelope.occurredAt, sentAt: envelope.sentAt,
            producer: envelope.producer, body: whole.mapValue?["body"] ?? .map([:]),
            raw: String(decoding: bytes, as: UTF8.self))
    }

    public func handle(_ message: HistoryMessage, delivery: AMQPDelivery) async throws {
        try await record(message, verifiedUser: delivery.properties.userId)
    }

    /// The table and the row for a message.
    public func row(_ m: HistoryMessage, verifiedUser: String?) -> (table: String, item: DynamoItem) {
        let body = m.body.mapValue ?? [:]
        func text(_ keys: String...) -> String? {
            for key in keys { if let v = body[key]?.stringValue, !v.isEmpty { return v } }
            return nil
        }
        var item: DynamoItem = [
            Self.partitionKey: .string(m.target ?? m.instanceId ?? "fleet"),
            Self.sortKey: .string(Timestamp.format(m.occurredAt) + "#" + m.id),
            "message_id": .string(m.id),
            "type": .string(m.type.rawValue),
            "occurred_at": .string(Timestamp.format(m.occurredAt)),
            "sent_at": .string(Timestamp.format(m.sentAt)),
            "recorded_at": .string(Timestamp.format(clock())),
            // Who: for a command, the broker-verified user who sent it (never what its body claims); for
            // anything else the person or actor the body names (the operator who approved, the actuator
            // that ran the step), else the producer. Every message is sent by a fleet identity now, so
            // its user_id is kept apart, in `sender`.
            "who": .string(m.type == .command ? commandSender(body, verifiedUser: verifiedUser) : actor(m, body)),
            // Why: the reason or detail the message gives, else what kind of thing it is.
            "why": .string(text("reason", "detail", "error", "kind", "status", "name") ?? m.type.rawValue),
            "body": m.body,
            "envelope": .string(m.raw),
        ]
        if let v = verifiedUser { item["sender"] = .string(v) }
        if let v = m.target { item["target"] = .string(v) }
        if let v = m.instanceId { item["ec2_instance_id"] = .string(v) }
        if let v = m.correlationId { item["correlation_id"] = .string(v) }
        if let v = m.producer { item["producer"] = .string(v) }
        if m.type == .prediction {
            let expires = Int64(m.occurredAt.timeIntervalSince1970.rounded(.down)) + Int64(options.predictionTTL)
            item["ttl"] = .number(DynamoNumber(expires))
            return (options.predictionsTable, item)
        }
        return (options.eventsTable, item)
    }

    /// Who sent a command: the broker-verified user, never what the body claims. A console user's command
    /// names the person who pressed the button: `alice via fleet-console`. Anyone else naming another person
    /// is recorded as the claim it is (the decision worker refuses it).
    func commandSender(_ body: [String: DynamoValue], verifiedUser: String?) -> String {
        let sender = verifiedUser ?? "unknown"
        guard let person = body["on_behalf_of"]?.stringValue, !person.isEmpty, person != sender else { return sender }
        if let verifiedUser, options.consoleUsers.contains(verifiedUser) { return "\(person) via \(verifiedUser)" }
        return "\(sender) (claimed on_behalf_of \(person))"
    }

    /// Who a message other than a command is about: the person or actor the body names (the operator who
    /// approved, the actuator that ran the step), else the producer. Every message is sent by a fleet
    /// identity now, so its user_id is kept apart, in `sender`.
    func actor(_ m: HistoryMessage, _ body: [String: DynamoValue]) -> String {
        for key in ["operator", "by"] { if let v = body[key]?.stringValue, !v.isEmpty { return v } }
        return body["command"]?.mapValue?["operator"]?.stringValue ?? m.producer ?? "unknown"
    }

    public enum Written: Sendable, Equatable { case written, alreadyWritten }

    @discardableResult
    public func record(_ message: HistoryMessage, verifiedUser: String?) async throws -> Written {
        let (table, item) = row(message, verifiedUser: verifiedUser)
        do {
            let result = try await dynamo.putItemIfAbsent(tableName: table, item: item, partitionKey: Self.partitionKey)
            switch result {
            case .written:
                FleetMetrics.historyRows(type: message.type.rawValue, result: "written").increment()
                metrics?.observe(message)
                return .written
            case .alreadyExists:
                FleetMetrics.historyRows(type: message.type.rawValue, result: "duplicate").increment()
                return .alreadyWritten
            }
        } catch let error as AWSError where error.kind == .clientError && error.code == "ValidationException" {
            throw RejectMessage("DynamoDB refused the row for table \(table): \(error.message)")
        } catch {
            FleetMetrics.historyRows(type: message.type.rawValue, result: "failed").increment()
            logger.warning(
                "history row not written; message will be requeued",
                metadata: [
                    "message_id": "\(message.id)", "table": "\(table)", "error": "\(error)",
                ])
            try await sleep(options.failureDelay)
            throw error
        }
    }
}

/// Accepts any JSON object as a body: the recorder keeps bodies as they are.
struct OpaqueBody: Codable, Sendable {
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    init(from decoder: any Decoder) throws { _ = try decoder.container(keyedBy: AnyKey.self) }
    func encode(to encoder: any Encoder) throws { _ = encoder.container(keyedBy: AnyKey.self) }
}

extension WorkerEnvironment {
    /// CLOUDWATCH_NAMESPACE (default `EC2/AutoRecovery`), HIGH_CONFIDENCE_THRESHOLD (default 0.8); the
    /// dimension `Fleet` is FLEET_TAG, else FLEET_PREFIX.
    public func recoveryMetricsOptions() throws -> RecoveryMetrics.Options {
        var options = RecoveryMetrics.Options()
        if let namespace = string("CLOUDWATCH_NAMESPACE") { options.namespace = namespace }
        options.highConfidence = try double("HIGH_CONFIDENCE_THRESHOLD", default: 0.8)
        options.dimensions = [MetricDimension("Fleet", fleetTag ?? prefix)]
        return options
    }

    /// CLOUDWATCH_METRICS=off sends no CloudWatch metrics (the Prometheus ones stay).
    public var cloudWatchMetricsEnabled: Bool { string("CLOUDWATCH_METRICS")?.lowercased() != "off" }

    /// RECOVERY_EVENTS_TABLE and PREDICTION_EVENTS_TABLE.
    public func recorderOptions() throws -> RecorderWorker.Options {
        var options = RecorderWorker.Options(
            eventsTable: try required(
                "RECOVERY_EVENTS_TABLE", hint: "the DynamoDB table of recovery history (keys instance_id, timestamp)"),
            predictionsTable: try required(
                "PREDICTION_EVENTS_TABLE",
                hint: "the DynamoDB table of predictions (keys instance_id, timestamp; TTL attribute ttl)"))
        options.consoleUsers = identities.users[.console] ?? []
        return options
    }
}
