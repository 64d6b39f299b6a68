import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Synchronization

/// What a decision-queue message decoded to.
public enum DecisionInput: Sendable {
    case probe(Envelope<ProbeResult>)
    case outcome(Envelope<ActionOutcome>)
    case command(Envelope<CommandBody>)
    case prediction(Envelope<PredictionBody>)
    case ignored(String)
}

/// A `command` body as operators publish it (recoveryctl, or by hand in the management UI; see
/// docs/operations.md): `{"name": "ack"}`, `{"name": "hold", "until": "2026-11-22T06:00:00Z"}`,
/// `{"name": "brake_release"}`. The target is the envelope's `target`; the operator is the AMQP user_id.
public struct CommandBody: Codable, Sendable, Equatable {
    public var name: String
    public var until: Date?
    public var reason: String?
    /// For `quarantine`: also take the Elastic IP off the instance.
    public var detachEip: Bool?
    public init(name: String, until: Date? = nil, reason: String? = nil, detachEip: Bool? = nil) {
        self.name = name
        self.until = until
        self.reason = reason
        self.detachEip = detachEip
    }

    enum CodingKeys: String, CodingKey {
        case name, until, reason
        case detachEip = "detach_eip"
    }
}

public struct DecisionError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// A target's document in Redis: the machine and the messages it still has to publish.
struct StoredTarget: Codable {
    var machine: EscalationMachine
    var outbox: [OutboxItem]
    /// A repair planned from a high-confidence prediction, and the quiet periods; nil when neither.
    var repair: PredictiveRepair?
    /// The last observation handled (absent in documents written before it was added).
    var lastProbe: LastProbe?

    init(machine: EscalationMachine, outbox: [OutboxItem], repair: PredictiveRepair? = nil, lastProbe: LastProbe? = nil) {
        self.machine = machine
        self.outbox = outbox
        self.repair = repair
        self.lastProbe = lastProbe
    }

    enum CodingKeys: String, CodingKey {
        case machine, outbox, repair
        case lastProbe = "last_probe"
    }

    static let encoder = Timestamp.jsonEncoder()
    static let decoder = Timestamp.jsonDecoder()

    func encoded() throws -> String { String(decoding: try Self.encoder.encode(self), as: UTF8.self) }

    static func decode(_ text: String) throws -> StoredTarget {
        let stored = try decoder.decode(StoredTarget.self, from: Data(text.utf8))
        guard stored.machine.schemaVersion <= EscalationMachine.currentSchemaVersion else {
            throw DecisionError("stored target state has schema version \(stored.machine.schemaVersion); upgrade the decision worker")
        }
        return stored
    }
}

/// A message ready to publish, with a deterministic id.
struct OutboxItem: Codable, Sendable {
    var type: String
    var routingKey: String
    var messageId: String
    var correlationId: String?
    var body: String

    static func message<Body: Codable & Sendable>(
        type: MessageType, id: String, target: String?, instanceId: String?, correlationId: String?, body: Body,
        topology: FleetTopology, producer: String, now: Date
    ) throws -> OutboxItem {
        let envelope = Envelope(type: type, id: id, correlationId: correlationId, target: target, instanceId: instanceId,
                                occurredAt: now, producer: producer, body: body)
        return OutboxItem(type: type.rawValue, routingKey: FleetTopology.routingKey(type, target: target), messageId: id,
                          correlationId: correlationId, body: String(decoding: try EnvelopeCodec.encode(envelope), as: UTF8.self))
    }

    func encoded() throws -> EnvelopePublisher.Encoded {
        guard let messageType = MessageType(rawValue: type) else {
            throw DecisionError("outbox item \(messageId) has unknown type '\(type)'")
        }
        return EnvelopePublisher.Encoded(type: messageType, routingKey: routingKey, id: messageId, correlationId: correlationId,
                                         body: Array(body.utf8))
    }
}

actor KnownTargets {
    private var byName: [String: Target] = [:]
    func set(_ targets: [Target]) { byName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
    func target(_ name: String) -> Target? { byName[name] }
    func contains(_ name: String) -> Bool { byName[name] != nil }
    func names() -> [String] { byName.keys.sorted() }
}
