import Foundation

/// The kinds of message on the fleet's queues. The raw value is the envelope's `type` and the first
/// word of the routing key. See docs/messages.md.
public enum MessageType: String, Codable, Sendable, CaseIterable {
    case observation  // probe -> decision: one health check or EC2 status result
    case prediction  // predictor -> decision and recorder
    case command  // operator (recoveryctl or the management UI) -> decision
    case actionRequest = "action.request"  // decision -> actuator
    case actionEvent = "action.event"  // actuator -> decision, notifier, recorder
    case notification  // anyone -> notifier
    case event  // decision -> recorder: a state change worth keeping in history
    case predictionRequest = "predict"  // operator or anyone -> predictor: predict now (routing predict.<target>)
}

/// Every message body travels inside this envelope, as JSON:
///
///     {"type":"observation","schema_version":1,"id":"…","correlation_id":"…","target":"shop-web",
///      "instance_id":"i-0abc","occurred_at":"2026-11-22T03:00:00.123Z","sent_at":"…",
///      "producer":"probe@host-1","body":{…}}
///
/// `id` is unique per message and is what consumers deduplicate on. `correlation_id` ties together every
/// message of one incident (it is the incident id once there is one). `target` is the target's stable
/// identity (`AutoRecovery:Name`), which survives re-provisioning; `instance_id` is the EC2 instance the
/// message is about at that moment.
public struct Envelope<Body: Codable & Sendable>: Codable, Sendable {
    public var type: MessageType
    public var schemaVersion: Int
    public var id: String
    public var correlationId: String?
    public var target: String?
    public var instanceId: String?
    public var occurredAt: Date
    public var sentAt: Date
    public var producer: String?
    public var body: Body

    public init(
        type: MessageType, schemaVersion: Int = 1, id: String = RandomId.uuid(),
        correlationId: String? = nil, target: String? = nil, instanceId: String? = nil,
        occurredAt: Date, sentAt: Date? = nil, producer: String? = nil, body: Body
    ) {
        self.type = type
        self.schemaVersion = schemaVersion
        self.id = id
        self.correlationId = correlationId
        self.target = target
        self.instanceId = instanceId
        self.occurredAt = occurredAt
        self.sentAt = sentAt ?? occurredAt
        self.producer = producer
        self.body = body
    }

    enum CodingKeys: String, CodingKey {
        case type, id, target, producer, body
        case schemaVersion = "schema_version"
        case correlationId = "correlation_id"
        case instanceId = "instance_id"
        case occurredAt = "occurred_at"
        case sentAt = "sent_at"
    }
}

/// Why a message body was refused. `reason` is short and stable enough to put in a dead-letter header
/// (`x-reject-reason`) and in the history table; `description` adds the detail.
public struct MessageDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case notJSON = "not-json"
        case missingField = "missing-field"
        case invalidField = "invalid-field"
        case unexpectedType = "unexpected-type"
        case unsupportedSchemaVersion = "unsupported-schema-version"
        case invalidBody = "invalid-body"
    }
    public var kind: Kind
    public var detail: String

    public init(kind: Kind, detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var reason: String { "\(kind.rawValue): \(detail)" }
    public var description: String { "message refused (\(kind.rawValue)): \(detail)" }
}

/// Encodes and decodes envelopes. Dates are ISO 8601 with milliseconds, in UTC.
public enum EnvelopeCodec {
    /// The schema version this build writes and the newest it reads, per message type.
    public static let currentSchemaVersion = 1

    public static func encode<Body>(_ envelope: Envelope<Body>) throws -> [UInt8] {
        // The probe's message for every check, written by hand (same JSON, a fraction of the CPU).
        if let observation = envelope as? Envelope<ProbeResult> { return try ObservationJSON.encode(observation) }
        return Array(try Timestamp.jsonEncoder().encode(envelope))
    }

    /// Decodes an envelope of the expected type. Never traps: anything wrong comes back as a
    /// `MessageDecodingError` saying what and where.
    public static func decode<Body>(
        _ bytes: [UInt8], as: Body.Type, expecting expected: MessageType
    ) throws(MessageDecodingError) -> Envelope<Body> {
        // The decision worker's message for every check, read by hand (the header checked as below).
        if Body.self == ProbeResult.self, let observation = ObservationJSON.decode(bytes) {
            try checkHeader(
                type: observation.type, schemaVersion: observation.schemaVersion, id: observation.id, expected: expected
            )
            return observation as! Envelope<Body>
        }
        let data = Data(bytes)
        // The common case in one pass: the whole envelope decodes and its header passes the same checks.
        // Anything else is taken apart step by step below, so that the reason names what is wrong. (Every
        // message was parsed three times, twice into Foundation objects; a fifth of an observation's cost
        // in the decision worker: docs/benchmarks.md.)
        if let envelope = try? decoder.decode(Envelope<Body>.self, from: data) {
            try checkHeader(
                type: envelope.type, schemaVersion: envelope.schemaVersion, id: envelope.id, expected: expected)
            return envelope
        }
        // First the header alone, so that a bad body is reported as such and a newer schema version is
        // refused as a version problem, not as a confusing field error.
        let header: Header
        do {
            guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
                throw MessageDecodingError(kind: .notJSON, detail: "the body is not a JSON object")
            }
            header = try decoder.decode(Header.self, from: data)
        } catch let error as MessageDecodingError {
            throw error
        } catch {
            throw describe(error, in: "envelope")
        }
        guard let type = MessageType(rawValue: header.type) else {
            throw MessageDecodingError(
                kind: .unexpectedType, detail: "unknown type '\(header.type)', expected '\(expected.rawValue)'")
        }
        try checkHeader(type: type, schemaVersion: header.schemaVersion, id: header.id, expected: expected)
        do {
            return try decoder.decode(Envelope<Body>.self, from: data)
        } catch {
            throw describe(error, in: "body")
        }
    }

    private static func checkHeader(type: MessageType, schemaVersion: Int, id: String, expected: MessageType)
        throws(MessageDecodingError)
    {
        guard type == expected else {
            throw MessageDecodingError(
                kind: .unexpectedType, detail: "type '\(type.rawValue)' on a queue for '\(expected.rawValue)'")
        }
        guard schemaVersion >= 1 else {
            throw MessageDecodingError(
                kind: .invalidField, detail: "schema_version must be 1 or more, not \(schemaVersion)")
        }
        guard schemaVersion <= currentSchemaVersion else {
            throw MessageDecodingError(
                kind: .unsupportedSchemaVersion,
                detail:
                    "schema_version \(schemaVersion) is newer than this worker reads (\(currentSchemaVersion)); upgrade the worker"
            )
        }
        guard !id.isEmpty else {
            throw MessageDecodingError(kind: .invalidField, detail: "id must not be empty")
        }
        // Ids become parts of other message ids (`<id>:command_accepted`, `command:<id>`), which AMQP caps at
        // 255 bytes: a longer one could never be answered and would wedge whoever tries.
        guard id.utf8.count <= Self.maxIdBytes else {
            throw MessageDecodingError(
                kind: .invalidField, detail: "id is \(id.utf8.count) bytes, more than \(Self.maxIdBytes)")
        }
    }

    /// The longest envelope id accepted.
    public static let maxIdBytes = 200

    /// The `type` of an envelope, to choose the body type on a queue that carries several. Refuses
    /// non-JSON and unknown types with the same reasons as `decode`.
    public static func messageType(of bytes: [UInt8]) throws(MessageDecodingError) -> MessageType {
        struct TypeOnly: Decodable { var type: String }
        if let text = ObservationJSON.type(of: bytes), let type = MessageType(rawValue: text) { return type }
        // One pass when all is well; the slower checks below only to say what is wrong.
        if let header = try? decoder.decode(TypeOnly.self, from: Data(bytes)),
            let type = MessageType(rawValue: header.type)
        {
            return type
        }
        guard (try? JSONSerialization.jsonObject(with: Data(bytes))) is [String: Any] else {
            throw MessageDecodingError(kind: .notJSON, detail: "the body is not a JSON object")
        }
        guard let header = try? decoder.decode(TypeOnly.self, from: Data(bytes)) else {
            throw MessageDecodingError(kind: .missingField, detail: "missing field 'type'")
        }
        guard let type = MessageType(rawValue: header.type) else {
            throw MessageDecodingError(kind: .unexpectedType, detail: "unknown type '\(header.type)'")
        }
        return type
    }

    private struct Header: Decodable {
        var type: String
        var schemaVersion: Int
        var id: String
        var occurredAt: Date
        var sentAt: Date
        enum CodingKeys: String, CodingKey {
            case type, id
            case schemaVersion = "schema_version"
            case occurredAt = "occurred_at"
            case sentAt = "sent_at"
        }
    }

    private static let decoder = Timestamp.jsonDecoder()

    private static func describe(_ error: Error, in part: String) -> MessageDecodingError {
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? part : p
        }
        let isBody = part == "body"
        switch error {
        case let DecodingError.keyNotFound(key, context):
            let where_ = context.codingPath.isEmpty ? "" : " in \(path(context))"
            return MessageDecodingError(
                kind: isBody ? .invalidBody : .missingField, detail: "missing field '\(key.stringValue)'\(where_)")
        case let DecodingError.typeMismatch(type, context):
            return MessageDecodingError(
                kind: isBody ? .invalidBody : .invalidField, detail: "\(path(context)): expected \(type)")
        case let DecodingError.valueNotFound(type, context):
            return MessageDecodingError(
                kind: isBody ? .invalidBody : .invalidField, detail: "\(path(context)): null where \(type) is required")
        case let DecodingError.dataCorrupted(context):
            return MessageDecodingError(
                kind: isBody ? .invalidBody : .invalidField, detail: "\(path(context)): \(context.debugDescription)")
        default:
            return MessageDecodingError(kind: .notJSON, detail: "\(error)")
        }
    }
}

/// ISO 8601 times with milliseconds in UTC, the one time format on the wire and in history.
public enum Timestamp {
    /// A JSON encoder that writes dates as `Timestamp.format` strings, keys sorted, slashes unescaped:
    /// the one way the fleet writes JSON (messages, stored state, step records).
    public static func jsonEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(format(date))
        }
        return encoder
    }

    /// A JSON decoder that reads dates with `Timestamp.parse` and names a bad one.
    public static func jsonDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parse(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "'\(text)' is not an ISO 8601 time (e.g. 2026-11-22T03:00:00Z)")
            }
            return date
        }
        return decoder
    }

    /// `2026-11-22T03:00:00.123Z`: UTC, milliseconds. The milliseconds are rounded here, not by the
    /// formatter: it truncates, and a parsed `.123` is stored as 0.12299…, so formatting a parsed time
    /// gave `.122` about half the time and every decode/encode cycle (stored state, outboxes) moved a time
    /// back by a millisecond. `format(parse(format(d))) == format(d)` now holds (tested).
    public static func format(_ date: Date) -> String { CivilTime.format(date) ?? formatWithFoundation(date) }

    static func formatWithFoundation(_ date: Date) -> String {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        let seconds = (ms / 1000).rounded(.down)
        let fraction = Int(ms - seconds * 1000)
        let whole = Date(timeIntervalSince1970: seconds).formatted(
            .iso8601.year().month().day().timeZone(separator: .omitted).time(includingFractionalSeconds: false)
                .timeSeparator(.colon).dateSeparator(.dash))
        // `whole` ends in "Z"; the fraction goes before it.
        let digits = String(fraction)
        return String(whole.dropLast()) + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// Accepts times with or without fractional seconds, with `Z` or an offset.
    public static func parse(_ text: String) -> Date? { CivilTime.parse(text) ?? parseWithFoundation(text) }

    static func parseWithFoundation(_ text: String) -> Date? {
        if let date = try? Date(
            text,
            strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)
        ) {
            return date
        }
        if let date = try? Date(text, strategy: .iso8601) { return date }
        if let date = try? Date(
            text,
            strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .colon))
        {
            return date
        }
        return nil
    }
}
