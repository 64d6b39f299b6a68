import RecoveryCore

/// The kinds of identity on the fleet's broker: one RabbitMQ user per worker kind, plus the operators and
/// the console. See docs/security.md for who may do what and why.
public enum FleetRole: String, CaseIterable, Sendable, Hashable {
    case probe, predictor, decision, actuator, notifier, recorder
    case `operator`
    /// The web console (docs/console.md): relays the commands of the people logged in to it, each naming
    /// one of them in `on_behalf_of`. The decision worker accepts such a command only from a console user
    /// and only for a person on `OPERATORS`; the console can act as nobody else, and never on its own.
    case console

    /// The broker user the deployment creates for this kind (`fleet-probe`, …, `fleet-operator`).
    public var defaultUser: String { "fleet-\(rawValue)" }

    /// The variable that lists the broker users of this kind whose messages consumers accept.
    /// Operators keep their historic name, `OPERATORS`.
    public var usersVariable: String {
        switch self {
        case .probe: "PROBE_USERS"
        case .predictor: "PREDICTOR_USERS"
        case .decision: "DECISION_USERS"
        case .actuator: "ACTUATOR_USERS"
        case .notifier: "NOTIFIER_USERS"
        case .recorder: "RECORDER_USERS"
        case .operator: "OPERATORS"
        case .console: "CONSOLE_USERS"
        }
    }

    /// The message types this kind is allowed to send, and the only kind allowed to send them, except
    /// `notification` and `event` (decision and actuator) and the dead letters every consumer writes.
    public var sends: [MessageType] {
        switch self {
        case .probe: [.observation]
        case .predictor: [.prediction]
        case .decision: [.actionRequest, .notification, .event]
        case .actuator: [.actionEvent, .notification, .event]
        case .notifier, .recorder: []
        case .operator: [.command, .predictionRequest]
        case .console: [.command]
        }
    }

    /// The kinds whose messages of `type` a consumer may act on.
    public static func senders(of type: MessageType) -> [FleetRole] {
        allCases.filter { $0.sends.contains(type) }
    }
}

/// Which broker users belong to which kind, as the consumers see it. The broker verifies a message's
/// `user_id` against the login of the connection that published it, so `user_id` names the sender; a
/// consumer acts on a message only when that user belongs to a kind allowed to send its type.
public struct FleetIdentities: Sendable, Equatable {
    public var users: [FleetRole: Set<String>]

    public init(users: [FleetRole: Set<String>]) { self.users = users }

    /// Every worker kind with the deployment's default user; no operators (commands are refused until
    /// `OPERATORS` names some: fail closed).
    public static var deploymentDefaults: FleetIdentities {
        var users: [FleetRole: Set<String>] = [:]
        for role in FleetRole.allCases where role != .operator { users[role] = [role.defaultUser] }
        users[.operator] = []
        return FleetIdentities(users: users)
    }

    /// Every kind, operators included, as the one user `user`: a development broker where everything
    /// logs in as one user (the in-process tests).
    public static func everyone(_ user: String) -> FleetIdentities {
        FleetIdentities(users: Dictionary(uniqueKeysWithValues: FleetRole.allCases.map { ($0, [user]) }))
    }

    /// `<KIND>_USERS` (comma-separated; default the deployment's `fleet-<kind>`) and `OPERATORS` (no
    /// default).
    public static func fromEnvironment(_ values: [String: String]) -> FleetIdentities {
        var identities = deploymentDefaults
        // Spelled out so that scripts/check-static.sh sees every variable read.
        let configured: [(FleetRole, String?)] = [
            (.probe, values["PROBE_USERS"]), (.predictor, values["PREDICTOR_USERS"]),
            (.decision, values["DECISION_USERS"]),
            (.actuator, values["ACTUATOR_USERS"]), (.notifier, values["NOTIFIER_USERS"]),
            (.recorder, values["RECORDER_USERS"]),
            (.operator, values["OPERATORS"]), (.console, values["CONSOLE_USERS"]),
        ]
        for (role, text) in configured {
            guard let text else { continue }
            let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                !$0.isEmpty
            }
            if role == .operator || !names.isEmpty { identities.users[role] = Set(names) }
        }
        return identities
    }

    /// The users whose messages of `type` may be acted on.
    public func allowedSenders(of type: MessageType) -> Set<String> {
        FleetRole.senders(of: type).reduce(into: Set<String>()) { $0.formUnion(users[$1] ?? []) }
    }

    /// The kinds `user` belongs to.
    public func roles(of user: String) -> [FleetRole] {
        FleetRole.allCases.filter { users[$0]?.contains(user) == true }
    }
}
