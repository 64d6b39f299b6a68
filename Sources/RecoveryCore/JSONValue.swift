/// Any JSON value, the one such type in the project: configuration objects laid over each other before
/// decoding (targets file, instance-config table), definitions files, settings shown by recoveryctl.
/// Whole numbers stay apart from other numbers (`int` vs `double`), so a value encodes back as it was
/// decoded and AMQP arguments keep their type.
public indirect enum JSONValue: Codable, Sendable, Equatable, Hashable {
    case string(String), int(Int64), double(Double), bool(Bool), null
    case array([JSONValue]), object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .bool(let b): try c.encode(b)
        case .null: try c.encodeNil()
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }

    /// A number written as text (a DynamoDB number): whole numbers in Int64's range as `int`, others as a
    /// finite `double`; nil when it is neither.
    public static func number(_ text: String) -> JSONValue? {
        if let i = Int64(text) { return .int(i) }
        if let d = Double(text), d.isFinite { return .double(d) }
        return nil
    }
}
