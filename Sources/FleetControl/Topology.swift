import AMQPTransport
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import RecoveryCore

/// A RabbitMQ definitions file (`topology/definitions.json`, the format of `rabbitmqctl
/// export_definitions`) read back into an `AMQPTopology`, for `recoveryctl topology apply`.
public enum DefinitionsFile {
    public static func load(path: String) throws -> AMQPTopology {
        guard let data = FileManager.default.contents(atPath: path) else { throw ControlError("cannot read \(path)") }
        return try parse(data, source: path)
    }

    public static func parse(_ data: Data, source: String = "definitions") throws -> AMQPTopology {
        guard case .object(let root)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw ControlError("\(source) is not a JSON object")
        }
        func list(_ key: String) throws -> [[String: JSONValue]] {
            guard let value = root[key] else { return [] }
            guard case .array(let items) = value else {
                throw ControlError("\(source): '\(key)' must be a list of objects")
            }
            return try items.map {
                guard case .object(let o) = $0 else {
                    throw ControlError("\(source): '\(key)' must be a list of objects")
                }
                return o
            }
        }
        func text(_ item: [String: JSONValue], _ key: String) -> String? {
            if case .string(let s)? = item[key] { s } else { nil }
        }
        func flag(_ item: [String: JSONValue], _ key: String, _ fallback: Bool) -> Bool {
            if case .bool(let b)? = item[key] { b } else { fallback }
        }
        func name(_ item: [String: JSONValue], _ key: String, _ what: String) throws -> String {
            guard let v = text(item, key), !v.isEmpty else {
                throw ControlError("\(source): a \(what) has no '\(key)'")
            }
            return v
        }
        func fields(_ value: JSONValue?) throws -> [String: AMQPFieldValue] {
            guard let value else { return [:] }
            guard case .object(let o) = value else { throw ControlError("\(source): arguments must be an object") }
            return o.mapValues(\.field)
        }
        var topology = AMQPTopology()
        for e in try list("exchanges") {
            topology.exchanges.append(
                .init(
                    name: try name(e, "name", "exchange"), type: text(e, "type") ?? "topic",
                    durable: flag(e, "durable", true),
                    isInternal: flag(e, "internal", false), arguments: try fields(e["arguments"])))
        }
        for q in try list("queues") {
            topology.queues.append(
                .init(
                    name: try name(q, "name", "queue"), durable: flag(q, "durable", true), exclusive: false,
                    autoDelete: flag(q, "auto_delete", false), arguments: try fields(q["arguments"])))
        }
        for b in try list("bindings") {
            if let type = text(b, "destination_type"), type != "queue" {
                throw ControlError(
                    "\(source): a binding to \(type) '\(text(b, "destination") ?? "?")' is not supported (queues only)")
            }
            topology.bindings.append(
                .init(
                    exchange: try name(b, "source", "binding"), queue: try name(b, "destination", "binding"),
                    routingKey: text(b, "routing_key") ?? ""))
        }
        for p in try list("policies") {
            var priority = 0
            if case .int(let i)? = p["priority"] { priority = Int(i) }
            topology.policies.append(
                .init(
                    name: try name(p, "name", "policy"), pattern: try name(p, "pattern", "policy"),
                    applyTo: text(p, "apply-to") ?? "queues",
                    priority: priority, definition: try fields(p["definition"])))
        }
        return topology
    }
}

extension JSONValue {
    /// The AMQP argument a definitions file's JSON value stands for (integers stay integers).
    var field: AMQPFieldValue {
        switch self {
        case .string(let s): .string(s)
        case .int(let i): .int(i)
        case .double(let d): .double(d)
        case .bool(let b): .bool(b)
        case .null: .void
        case .array(let a): .array(a.map(\.field))
        case .object(let o): .table(o.mapValues(\.field))
        }
    }
}

/// What `topology apply` did.
public struct TopologyApplyResult: Codable, Sendable, Equatable {
    public var file: String
    public var exchanges: Int
    public var queues: Int
    public var bindings: Int
    /// Policies applied through the management API; policies cannot be declared over AMQP.
    public var policiesApplied: [String]
    /// Policies not applied, and why (no RABBITMQ_MANAGEMENT_URL).
    public var policiesSkipped: [String]
    /// With `--identities`: the broker users created or updated, as `kind=user`.
    public var identities: [String]?
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case file, exchanges, queues, bindings, note, identities
        case policiesApplied = "policies_applied"
        case policiesSkipped = "policies_skipped"
    }

    public func render(width: Int = 80) -> String {
        var lines = ["Declared from \(file): \(exchanges) exchanges, \(queues) queues, \(bindings) bindings."]
        if !policiesApplied.isEmpty { lines.append("Policies set: \(policiesApplied.joined(separator: ", ")).") }
        if let identities, !identities.isEmpty {
            lines.append(
                wrap("Broker users with their permissions: \(identities.joined(separator: ", ")).", width: width))
        }
        if let note { lines.append(wrap(note, width: width)) }
        return lines.joined(separator: "\n")
    }
}

/// One broker user the deployment creates: a worker kind's, or the operators'.
public struct PlannedIdentity: Sendable, CustomStringConvertible {
    public var role: FleetRole
    public var user: String
    let password: String
    public var permissions: BrokerPermissions

    /// Never the password.
    public var description: String { "\(role.rawValue)=\(user)" }

    /// One user per kind: the first of the kind's `<KIND>_USERS` (default `fleet-<kind>`); for the
    /// operators `RABBITMQ_OPERATOR_USER` (default `fleet-operator`), never someone else on `OPERATORS`; the password comes from `RABBITMQ_<KIND>_PASSWORD`, which must be set: the
    /// deployment never makes a user with a made-up or empty password.
    public static func plan(_ env: WorkerEnvironment, topology: FleetTopology) throws -> [PlannedIdentity] {
        let identities = env.identities
        var missing: [String] = []
        let planned: [PlannedIdentity] = FleetRole.allCases.compactMap { role in
            let (variable, value) = password(role, env)
            guard let password = value else {
                missing.append(variable)
                return nil
            }
            // OPERATORS lists people too, whose accounts this must never reset: the operator user made
            // here is RABBITMQ_OPERATOR_USER (default fleet-operator), whatever OPERATORS lists.
            let user =
                role == .operator
                ? env.string("RABBITMQ_OPERATOR_USER") ?? role.defaultUser
                : (identities.users[role] ?? []).sorted().first ?? role.defaultUser
            return PlannedIdentity(
                role: role, user: user, password: password, permissions: topology.permissions(for: role))
        }
        guard missing.isEmpty else {
            throw ControlError(
                "--identities needs a password for every kind's broker user: set \(missing.joined(separator: ", ")) (compose/.env.example)"
            )
        }
        let users = planned.map(\.user)
        if let shared = users.first(where: { u in users.filter { $0 == u }.count > 1 }) {
            throw ControlError(
                "broker user '\(shared)' is named for more than one kind; every kind needs its own user (docs/security.md)"
            )
        }
        if let admin = planned.first(where: { $0.user == (try? env.amqp().url.user) }) {
            throw ControlError(
                "the \(admin.role.rawValue) kind's user '\(admin.user)' is the administrator that runs this command; give the kind its own user"
            )
        }
        return planned
    }

    /// The variable holding the kind's password and its value. Spelled out so that
    /// scripts/check-static.sh sees every variable read.
    static func password(_ role: FleetRole, _ env: WorkerEnvironment) -> (variable: String, value: String?) {
        switch role {
        case .probe: ("RABBITMQ_PROBE_PASSWORD", env.string("RABBITMQ_PROBE_PASSWORD"))
        case .predictor: ("RABBITMQ_PREDICTOR_PASSWORD", env.string("RABBITMQ_PREDICTOR_PASSWORD"))
        case .decision: ("RABBITMQ_DECISION_PASSWORD", env.string("RABBITMQ_DECISION_PASSWORD"))
        case .actuator: ("RABBITMQ_ACTUATOR_PASSWORD", env.string("RABBITMQ_ACTUATOR_PASSWORD"))
        case .notifier: ("RABBITMQ_NOTIFIER_PASSWORD", env.string("RABBITMQ_NOTIFIER_PASSWORD"))
        case .recorder: ("RABBITMQ_RECORDER_PASSWORD", env.string("RABBITMQ_RECORDER_PASSWORD"))
        case .operator: ("RABBITMQ_OPERATOR_PASSWORD", env.string("RABBITMQ_OPERATOR_PASSWORD"))
        case .console: ("RABBITMQ_CONSOLE_PASSWORD", env.string("RABBITMQ_CONSOLE_PASSWORD"))
        }
    }
}

/// Declares a topology (idempotent: a queue or exchange that exists with the same arguments is left as
/// it is; different arguments are a 406 from the broker, reported as is), sets its policies through the
/// management HTTP API when `managementURL` is given, and with `identities` creates or updates each
/// kind's broker user with its permissions and topic permissions (management API, as an administrator).
public struct TopologyApplier: Sendable {
    let amqp: AMQPConfiguration
    let http: any HTTPExecuting
    let managementURL: String?

    public init(amqp: AMQPConfiguration, http: any HTTPExecuting, managementURL: String?) {
        var amqp = amqp
        amqp.topologyMode = .declare  // this is the one place that creates the shared topology
        self.amqp = amqp
        self.http = http
        self.managementURL = managementURL
    }

    public func apply(_ topology: AMQPTopology, file: String, identities: [PlannedIdentity]? = nil) async throws
        -> TopologyApplyResult
    {
        var declared = topology
        declared.policies = []
        let admin = AMQPAdmin(configuration: amqp)
        do {
            try await admin.declare(declared)
            await admin.close()
        } catch {
            await admin.close()
            throw ControlError("declaring the topology failed: \(error)")
        }
        var result = TopologyApplyResult(
            file: file, exchanges: topology.exchanges.count, queues: topology.queues.count,
            bindings: topology.bindings.count, policiesApplied: [], policiesSkipped: [])
        if let identities {
            guard managementURL != nil else {
                throw ControlError(
                    "--identities needs RABBITMQ_MANAGEMENT_URL: users and permissions are made through the management API"
                )
            }
            for identity in identities { try await put(identity) }
            result.identities = identities.map(\.description)
        }
        guard !topology.policies.isEmpty else { return result }
        guard managementURL != nil else {
            result.policiesSkipped = topology.policies.map(\.name)
            result.note =
                "Policies (\(result.policiesSkipped.joined(separator: ", "))) were not set: AMQP cannot declare them. Set RABBITMQ_MANAGEMENT_URL (e.g. http://127.0.0.1:15672) or import the file with rabbitmqctl import_definitions."
            return result
        }
        for policy in topology.policies {
            try await management(
                "PUT", "policies/\(vhostPath)/\(Self.component(policy.name))",
                [
                    "pattern": policy.pattern, "apply-to": policy.applyTo, "priority": policy.priority,
                    "definition": policy.definition.mapValues(\.jsonValue),
                ], what: "policy \(policy.name)")
            result.policiesApplied.append(policy.name)
        }
        return result
    }

    /// The user (password set again, so a changed `.env` takes effect), its permissions on the vhost,
    /// and one topic permission per exchange.
    func put(_ identity: PlannedIdentity) async throws {
        let user = Self.component(identity.user)
        let permissions = identity.permissions
        try await management(
            "PUT", "users/\(user)", ["password": identity.password, "tags": permissions.tags.joined(separator: ",")],
            what: "user \(identity.user)")
        try await management(
            "PUT", "permissions/\(vhostPath)/\(user)",
            [
                "configure": permissions.configure, "write": permissions.write, "read": permissions.read,
            ], what: "permissions of \(identity.user)")
        for topic in permissions.topics {
            try await management(
                "PUT", "topic-permissions/\(vhostPath)/\(user)",
                [
                    "exchange": topic.exchange, "write": topic.write, "read": topic.read,
                ], what: "topic permissions of \(identity.user) on \(topic.exchange)")
        }
    }

    private var vhostPath: String { Self.component(amqp.url.vhost) }

    private static func component(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.")))
            ?? text
    }

    /// One management API call, with the AMQP_URL user's credentials (or those in the URL). The body
    /// (which may hold a password) never appears in an error.
    private func management(_ method: String, _ path: String, _ body: [String: Any], what: String) async throws {
        guard let base = managementURL else { throw ControlError("RABBITMQ_MANAGEMENT_URL is not set") }
        var root = base.hasSuffix("/") ? String(base.dropLast()) : base
        var user = amqp.url.user
        var password = amqp.url.password
        if let components = URLComponents(string: root), let u = components.user {
            user = u.removingPercentEncoding ?? u
            password = components.password?.removingPercentEncoding ?? ""
            var bare = components
            bare.user = nil
            bare.password = nil
            root = bare.string ?? root
        }
        let credentials = Data("\(user):\(password)".utf8).base64EncodedString()
        let response = try await http.execute(
            HTTPRequest(
                method: method, url: "\(root)/api/\(path)",
                headers: [("Authorization", "Basic \(credentials)"), ("Content-Type", "application/json")],
                body: Array(try JSONSerialization.data(withJSONObject: body))))
        guard (200..<300).contains(response.status) else {
            let text = String(decoding: response.body.prefix(300), as: UTF8.self)
            throw ControlError("the management API refused \(what): HTTP \(response.status) \(text)")
        }
    }
}
