import AMQPTransport
import Foundation
import HTTPTransport

/// A RabbitMQ definitions file (`topology/definitions.json`, the format of `rabbitmqctl
/// export_definitions`) read back into an `AMQPTopology`, for `recoveryctl topology apply`.
public enum DefinitionsFile {
    public static func load(path: String) throws -> AMQPTopology {
        guard let data = FileManager.default.contents(atPath: path) else { throw ControlError("cannot read \(path)") }
        return try parse(data, source: path)
    }

    public static func parse(_ data: Data, source: String = "definitions") throws -> AMQPTopology {
        guard case .object(let root)? = try? JSONDecoder().decode(AnyJSON.self, from: data) else {
            throw ControlError("\(source) is not a JSON object")
        }
        func list(_ key: String) throws -> [[String: AnyJSON]] {
            guard let value = root[key] else { return [] }
            guard case .array(let items) = value else { throw ControlError("\(source): '\(key)' must be a list of objects") }
            return try items.map {
                guard case .object(let o) = $0 else { throw ControlError("\(source): '\(key)' must be a list of objects") }
                return o
            }
        }
        func text(_ item: [String: AnyJSON], _ key: String) -> String? {
            if case .string(let s)? = item[key] { s } else { nil }
        }
        func flag(_ item: [String: AnyJSON], _ key: String, _ fallback: Bool) -> Bool {
            if case .bool(let b)? = item[key] { b } else { fallback }
        }
        func name(_ item: [String: AnyJSON], _ key: String, _ what: String) throws -> String {
            guard let v = text(item, key), !v.isEmpty else { throw ControlError("\(source): a \(what) has no '\(key)'") }
            return v
        }
        func fields(_ value: AnyJSON?) throws -> [String: AMQPFieldValue] {
            guard let value else { return [:] }
            guard case .object(let o) = value else { throw ControlError("\(source): arguments must be an object") }
            return o.mapValues(\.field)
        }
        var topology = AMQPTopology()
        for e in try list("exchanges") {
            topology.exchanges.append(.init(
                name: try name(e, "name", "exchange"), type: text(e, "type") ?? "topic", durable: flag(e, "durable", true),
                isInternal: flag(e, "internal", false), arguments: try fields(e["arguments"])))
        }
        for q in try list("queues") {
            topology.queues.append(.init(
                name: try name(q, "name", "queue"), durable: flag(q, "durable", true), exclusive: false,
                autoDelete: flag(q, "auto_delete", false), arguments: try fields(q["arguments"])))
        }
        for b in try list("bindings") {
            if let type = text(b, "destination_type"), type != "queue" {
                throw ControlError("\(source): a binding to \(type) '\(text(b, "destination") ?? "?")' is not supported (queues only)")
            }
            topology.bindings.append(.init(exchange: try name(b, "source", "binding"), queue: try name(b, "destination", "binding"),
                                           routingKey: text(b, "routing_key") ?? ""))
        }
        for p in try list("policies") {
            var priority = 0
            if case .int(let i)? = p["priority"] { priority = Int(i) }
            topology.policies.append(.init(
                name: try name(p, "name", "policy"), pattern: try name(p, "pattern", "policy"), applyTo: text(p, "apply-to") ?? "queues",
                priority: priority, definition: try fields(p["definition"])))
        }
        return topology
    }
}

/// Any JSON value, integers kept apart from other numbers (AMQP arguments are typed).
enum AnyJSON: Decodable, Equatable {
    case string(String), int(Int64), double(Double), bool(Bool), null
    case array([AnyJSON]), object([String: AnyJSON])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([AnyJSON].self) { self = .array(a) }
        else { self = .object(try c.decode([String: AnyJSON].self)) }
    }

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
    public var note: String?

    enum CodingKeys: String, CodingKey {
        case file, exchanges, queues, bindings, note
        case policiesApplied = "policies_applied"
        case policiesSkipped = "policies_skipped"
    }

    public func render(width: Int = 80) -> String {
        var lines = ["Declared from \(file): \(exchanges) exchanges, \(queues) queues, \(bindings) bindings."]
        if !policiesApplied.isEmpty { lines.append("Policies set: \(policiesApplied.joined(separator: ", ")).") }
        if let note { lines.append(wrap(note, width: width)) }
        return lines.joined(separator: "\n")
    }
}

/// Declares a topology (idempotent: a queue or exchange that exists with the same arguments is left as
/// it is; different arguments are a 406 from the broker, reported as is) and sets its policies through
/// the management HTTP API when `managementURL` is given.
public struct TopologyApplier: Sendable {
    let amqp: AMQPConfiguration
    let http: any HTTPExecuting
    let managementURL: String?

    public init(amqp: AMQPConfiguration, http: any HTTPExecuting, managementURL: String?) {
        self.amqp = amqp
        self.http = http
        self.managementURL = managementURL
    }

    public func apply(_ topology: AMQPTopology, file: String) async throws -> TopologyApplyResult {
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
        var result = TopologyApplyResult(file: file, exchanges: topology.exchanges.count, queues: topology.queues.count,
                                         bindings: topology.bindings.count, policiesApplied: [], policiesSkipped: [])
        guard !topology.policies.isEmpty else { return result }
        guard let managementURL else {
            result.policiesSkipped = topology.policies.map(\.name)
            result.note = "Policies (\(result.policiesSkipped.joined(separator: ", "))) were not set: AMQP cannot declare them. Set RABBITMQ_MANAGEMENT_URL (e.g. http://127.0.0.1:15672) or import the file with rabbitmqctl import_definitions."
            return result
        }
        for policy in topology.policies {
            try await put(policy, base: managementURL)
            result.policiesApplied.append(policy.name)
        }
        return result
    }

    /// PUT /api/policies/<vhost>/<name>, with the AMQP_URL user's credentials (or those in the URL).
    func put(_ policy: AMQPTopology.Policy, base: String) async throws {
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
        let vhost = amqp.url.vhost.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? amqp.url.vhost
        let name = policy.name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? policy.name
        let body: [String: Any] = [
            "pattern": policy.pattern, "apply-to": policy.applyTo, "priority": policy.priority,
            "definition": policy.definition.mapValues(\.jsonValue),
        ]
        let credentials = Data("\(user):\(password)".utf8).base64EncodedString()
        let response = try await http.execute(HTTPRequest(
            method: "PUT", url: "\(root)/api/policies/\(vhost)/\(name)",
            headers: [("Authorization", "Basic \(credentials)"), ("Content-Type", "application/json")],
            body: Array(try JSONSerialization.data(withJSONObject: body))))
        guard (200..<300).contains(response.status) else {
            let text = String(decoding: response.body.prefix(300), as: UTF8.self)
            throw ControlError("the management API refused policy \(policy.name): HTTP \(response.status) \(text)")
        }
    }
}
