import Foundation

/// An operator's `recoveryctl abort` of a running step: who, when, why, and the command that asked
/// (docs/operations.md, "Stopping a running step").
///
/// The same value travels three ways: the decision worker records it on the incident
/// (`EscalationMachine.Incident.aborted`) and writes it as the step's abort flag in Redis
/// (`<prefix>kv:abort:<idempotency key>`, read by the actuator at every sub-step boundary); the actuator
/// copies it into the step record and the outcome (`ActionOutcome.aborted`), so the decision, the
/// notices and the history all say who stopped the step.
public struct StepAbort: Codable, Sendable, Equatable {
    /// The operator (the command's broker-verified `user_id`).
    public var by: String
    public var at: Date
    /// The `--reason` given, if any.
    public var reason: String?
    /// The abort command's message id.
    public var commandId: String

    public init(by: String, at: Date, reason: String?, commandId: String) {
        self.by = by
        self.at = at
        self.reason = reason
        self.commandId = commandId
    }

    enum CodingKeys: String, CodingKey {
        case by, at, reason
        case commandId = "command_id"
    }

    /// The flag's key in a `KeyValueStore` (in Redis, `<prefix>kv:abort:<idempotency key>`).
    public static func flagKey(_ idempotencyKey: String) -> String { "abort:\(idempotencyKey)" }

    /// How long a flag is kept: far longer than any actor can still be working on the step (its deadline,
    /// the lock wait and every retry fit in hours), so a redelivered or resumed request still sees it.
    public static let flagLifetime: Duration = .seconds(7 * 86_400)

    /// The flag's value: this abort as JSON.
    public func encoded() throws -> String {
        String(decoding: try Timestamp.jsonEncoder().encode(self), as: UTF8.self)
    }

    public static func decode(_ text: String) throws -> StepAbort {
        try Timestamp.jsonDecoder().decode(StepAbort.self, from: Data(text.utf8))
    }

    /// "restart was aborted by alice (wrong instance)": the words of the stop it causes.
    public func text(_ step: RecoveryStep) -> String {
        "\(step.rawValue) was aborted by \(by)" + (reason.map { " (\($0))" } ?? "")
    }
}
