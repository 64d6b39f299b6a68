import Foundation

/// An action outside the ladder, carried by an `action.request` in its optional `repair` field (see
/// docs/messages.md). On the wire, snake_case, one object whose `kind` says which other fields apply:
///
///     {"kind": "ssm", "id": "pred-42", "reason": "disk 93% full", "document": "disk-cleanup",
///      "parameters": {"maxAgeDays": ["7"]}}
///     {"kind": "ebs_repair", "id": "pred-43", "reason": "root volume impaired"}
///     {"kind": "quarantine", "id": "cmd-7", "reason": "compromised?", "detach_eip": true}
///     {"kind": "unquarantine", "id": "cmd-8"}
///
/// A request with a repair has `step` `notify_only`: it is not a ladder step. (An actuator that predates
/// repairs refuses `notify_only` requests, so it dead-letters a repair instead of running a ladder step.)
public struct RepairRequest: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Run one of the fleet's SSM documents on the instance.
        case ssm
        /// Replace the root volume with one made from the newest tagged snapshot (the old one is kept).
        case ebsRepair = "ebs_repair"
        /// Tag the instance quarantined, record it in the instance-config table, optionally take the
        /// Elastic IP off. The decision worker then takes no step on the target.
        case quarantine
        /// Remove the quarantine tag and the table flag (the Elastic IP is not put back).
        case unquarantine
    }

    public enum Action: Sendable, Equatable {
        /// `document` is the short name (`restart-services`); the actuator adds the fleet's prefix.
        case ssm(document: String, parameters: [String: [String]])
        case ebsRepair
        case quarantine(detachElasticIP: Bool)
        case unquarantine

        public var kind: Kind {
            switch self {
            case .ssm: .ssm
            case .ebsRepair: .ebsRepair
            case .quarantine: .quarantine
            case .unquarantine: .unquarantine
            }
        }
    }

    public var action: Action
    /// The requester's id for this repair (a prediction's or a command's message id). With the target and
    /// the kind it makes the idempotency key, so the same repair asked for twice runs once.
    public var id: String
    /// Why, in words, for notices and history.
    public var reason: String?

    public init(_ action: Action, id: String, reason: String? = nil) {
        self.action = action
        self.id = id
        self.reason = reason
    }

    public var kind: Kind { action.kind }

    /// The idempotency key of a repair: `<target>/repair/<kind>/<id>`.
    public static func key(target: String, kind: Kind, id: String) -> String {
        "\(target)/repair/\(kind.rawValue)/\(id)"
    }

    enum CodingKeys: String, CodingKey {
        case kind, id, reason, document, parameters
        case detachElasticIP = "detach_eip"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        guard !id.isEmpty else {
            throw DecodingError.dataCorruptedError(
                forKey: .id, in: c, debugDescription: "a repair needs a non-empty id")
        }
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        switch try c.decode(Kind.self, forKey: .kind) {
        case .ssm:
            let document = try c.decode(String.self, forKey: .document)
            guard !document.isEmpty else {
                throw DecodingError.dataCorruptedError(
                    forKey: .document, in: c, debugDescription: "an ssm repair needs a document name")
            }
            action = .ssm(
                document: document,
                parameters: try c.decodeIfPresent([String: [String]].self, forKey: .parameters) ?? [:])
        case .ebsRepair:
            action = .ebsRepair
        case .quarantine:
            action = .quarantine(detachElasticIP: try c.decodeIfPresent(Bool.self, forKey: .detachElasticIP) ?? false)
        case .unquarantine:
            action = .unquarantine
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encode(id, forKey: .id)
        try c.encodeIfPresent(reason, forKey: .reason)
        switch action {
        case .ssm(let document, let parameters):
            try c.encode(document, forKey: .document)
            if !parameters.isEmpty { try c.encode(parameters, forKey: .parameters) }
        case .quarantine(let detach):
            try c.encode(detach, forKey: .detachElasticIP)
        case .ebsRepair, .unquarantine:
            break
        }
    }
}
