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

    /// When its sender sent it (the envelope's `sent_at`), for `recovery_queue_lag_seconds`; without it
    /// the lag falls back to the AMQP timestamp, which has whole seconds only.
    public var sentAt: Date? {
        switch self {
        case .probe(let envelope): envelope.sentAt
        case .outcome(let envelope): envelope.sentAt
        case .command(let envelope): envelope.sentAt
        case .prediction(let envelope): envelope.sentAt
        case .ignored: nil
        }
    }
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
    /// Set only by the console (a `CONSOLE_USERS` sender): the operator who pressed the button. The decision
    /// worker acts on it only from a console user and only for someone on `OPERATORS`.
    public var onBehalfOf: String?
    /// The incident the command is for (Slack buttons and the console send it); refused if another is open.
    public var incidentId: String?
    public init(
        name: String, until: Date? = nil, reason: String? = nil, detachEip: Bool? = nil, onBehalfOf: String? = nil,
        incidentId: String? = nil
    ) {
        self.name = name
        self.until = until
        self.reason = reason
        self.detachEip = detachEip
        self.onBehalfOf = onBehalfOf
        self.incidentId = incidentId
    }

    enum CodingKeys: String, CodingKey {
        case name, until, reason
        case detachEip = "detach_eip"
        case onBehalfOf = "on_behalf_of"
        case incidentId = "incident_id"
    }
}

public struct DecisionError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// Contention (state that kept changing while one event was decided): worth retrying soon.
    public var isContention: Bool
    init(_ description: String, contention: Bool = false) {
        self.description = description
        isContention = contention
    }
}

extension OutboxItem {
    /// The stored item as the envelope publisher sends it.
    func encoded() throws -> EnvelopePublisher.Encoded {
        guard let messageType = MessageType(rawValue: type) else {
            throw DecisionError("outbox item \(messageId) has unknown type '\(type)'")
        }
        return EnvelopePublisher.Encoded(
            type: messageType, routingKey: routingKey, id: messageId, correlationId: correlationId,
            body: Array(body.utf8))
    }
}

actor KnownTargets {
    private var byName: [String: Target] = [:]
    func set(_ targets: [Target]) {
        byName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }
    func target(_ name: String) -> Target? { byName[name] }
    func contains(_ name: String) -> Bool { byName[name] != nil }
    func names() -> [String] { byName.keys.sorted() }
}

extension WorkerEnvironment {
    /// MAINTENANCE_WINDOWS: the fleet-wide maintenance windows, a JSON list of `MaintenanceWindow`s
    /// (docs/escalation.md), e.g. `[{"cron": "0 2 * * 6", "time_zone": "Europe/Berlin", "duration": 7200}]`.
    public func fleetMaintenance() throws -> [MaintenanceWindow] {
        guard let text = string("MAINTENANCE_WINDOWS") else { return [] }
        let windows: [MaintenanceWindow]
        do { windows = try JSONDecoder().decode([MaintenanceWindow].self, from: Data(text.utf8)) } catch {
            throw ConfigurationError(
                "MAINTENANCE_WINDOWS must be a JSON list of windows ({start, end} or {cron, time_zone, duration}): \(error)"
            )
        }
        let problems = windows.flatMap(\.problems)
        guard problems.isEmpty else {
            throw ConfigurationError("MAINTENANCE_WINDOWS: " + problems.joined(separator: "; "))
        }
        return windows
    }
}
