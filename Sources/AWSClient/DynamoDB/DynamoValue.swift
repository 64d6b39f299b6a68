import Foundation

/// A DynamoDB item: attribute names to values.
public typealias DynamoItem = [String: DynamoValue]

/// A DynamoDB attribute value. Its `Codable` form is DynamoDB's wire form, a one-member object named
/// by the type: `{"S": "web"}`, `{"N": "0.1"}`, `{"B": "<base64>"}`, `{"BOOL": true}`, `{"NULL": true}`,
/// `{"L": [...]}`, `{"M": {...}}`, `{"SS": [...]}`, `{"NS": [...]}`, `{"BS": [...]}`.
///
/// Numbers are ``DynamoNumber``s: exact decimal text both ways, never a `Double`.
/// Sets keep their order as given or received. DynamoDB refuses empty sets and sets with duplicates;
/// encoding such a value throws.
public enum DynamoValue: Sendable, Hashable {
    /// `S`
    case string(String)
    /// `N`
    case number(DynamoNumber)
    /// `B`
    case binary(Data)
    /// `BOOL`
    case bool(Bool)
    /// `NULL`
    case null
    /// `L`
    case list([DynamoValue])
    /// `M`
    case map([String: DynamoValue])
    /// `SS`
    case stringSet([String])
    /// `NS`
    case numberSet([DynamoNumber])
    /// `BS`
    case binarySet([Data])

    /// The wire name of the type (`S`, `N`, …).
    public var typeName: String {
        switch self {
        case .string: "S"
        case .number: "N"
        case .binary: "B"
        case .bool: "BOOL"
        case .null: "NULL"
        case .list: "L"
        case .map: "M"
        case .stringSet: "SS"
        case .numberSet: "NS"
        case .binarySet: "BS"
        }
    }
}

// MARK: Building from Swift values

/// How a `Date` is stored.
public enum DynamoDateEncoding: Sendable {
    /// `S`, `2026-01-02T03:04:05.678Z`: UTC, always three fraction digits, so the strings sort in time
    /// order (a good sort key).
    case iso8601
    /// `N`, whole seconds since 1970 (rounded down): the form DynamoDB's time to live reads.
    case epochSeconds
}

extension DynamoValue {
    public static func number(_ value: Int) -> DynamoValue { .number(DynamoNumber(value)) }
    public static func number(_ value: Int64) -> DynamoValue { .number(DynamoNumber(value)) }

    /// The exact value of `decimal`; throws for NaN or a value outside DynamoDB's range or precision.
    public static func number(_ decimal: Decimal) throws(DynamoNumber.FormatError) -> DynamoValue {
        .number(try DynamoNumber(decimal))
    }

    /// A number from its decimal text, validated (see ``DynamoNumber/init(_:)-(String)``).
    public static func number(_ text: String) throws(DynamoNumber.FormatError) -> DynamoValue {
        .number(try DynamoNumber(text))
    }

    public static func date(_ date: Date, as encoding: DynamoDateEncoding) -> DynamoValue {
        switch encoding {
        case .iso8601:
            return .string(UTCTime.iso8601Milliseconds(date))
        case .epochSeconds:
            return .number(DynamoNumber(Int64(date.timeIntervalSince1970.rounded(.down))))
        }
    }

    // MARK: Reading back

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var numberValue: DynamoNumber? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// A number that is a whole `Int64` (never rounded).
    public var int64Value: Int64? { numberValue?.int64Value }
    public var intValue: Int? { numberValue?.intValue }
    /// A number that `Decimal` holds exactly.
    public var decimalValue: Decimal? { numberValue?.decimalValue }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var binaryValue: Data? {
        if case .binary(let value) = self { return value }
        return nil
    }

    public var listValue: [DynamoValue]? {
        if case .list(let value) = self { return value }
        return nil
    }

    public var mapValue: [String: DynamoValue]? {
        if case .map(let value) = self { return value }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A date stored with `encoding` (ISO strings with or without a fraction and offset are read;
    /// epoch seconds must be whole).
    public func dateValue(_ encoding: DynamoDateEncoding) -> Date? {
        switch (encoding, self) {
        case (.iso8601, .string(let text)): UTCTime.parseISO8601(text)
        case (.epochSeconds, .number(let number)): number.int64Value.map { Date(timeIntervalSince1970: Double($0)) }
        default: nil
        }
    }
}

extension DynamoValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .number(DynamoNumber(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: DynamoValue...) { self = .list(elements) }
    public init(dictionaryLiteral elements: (String, DynamoValue)...) {
        self = .map(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

// MARK: Wire form

extension DynamoValue: Codable {
    private struct TypeKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: TypeKey.self)
        let key = TypeKey(typeName)
        func checkSet<T: Hashable>(_ members: [T]) throws {
            guard !members.isEmpty else {
                throw EncodingError.invalidValue(
                    self,
                    .init(
                        codingPath: container.codingPath, debugDescription: "DynamoDB refuses an empty \(typeName) set")
                )
            }
            guard Set(members).count == members.count else {
                throw EncodingError.invalidValue(
                    self,
                    .init(
                        codingPath: container.codingPath,
                        debugDescription: "DynamoDB refuses a \(typeName) set with duplicates"))
            }
        }
        switch self {
        case .string(let value): try container.encode(value, forKey: key)
        case .number(let value): try container.encode(value, forKey: key)
        case .binary(let value): try container.encode(value.base64EncodedString(), forKey: key)
        case .bool(let value): try container.encode(value, forKey: key)
        case .null: try container.encode(true, forKey: key)
        case .list(let values): try container.encode(values, forKey: key)
        case .map(let values): try container.encode(values, forKey: key)
        case .stringSet(let values):
            try checkSet(values)
            try container.encode(values, forKey: key)
        case .numberSet(let values):
            try checkSet(values)
            try container.encode(values, forKey: key)
        case .binarySet(let values):
            try checkSet(values)
            try container.encode(values.map { $0.base64EncodedString() }, forKey: key)
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: TypeKey.self)
        guard container.allKeys.count == 1, let key = container.allKeys.first else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: container.codingPath,
                    debugDescription:
                        "an attribute value has exactly one type member, found \(container.allKeys.map(\.stringValue))")
            )
        }
        func base64(_ text: String) throws -> Data {
            guard let data = Data(base64Encoded: text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not base64")
            }
            return data
        }
        switch key.stringValue {
        case "S": self = .string(try container.decode(String.self, forKey: key))
        case "N": self = .number(try container.decode(DynamoNumber.self, forKey: key))
        case "B": self = .binary(try base64(container.decode(String.self, forKey: key)))
        case "BOOL": self = .bool(try container.decode(Bool.self, forKey: key))
        case "NULL":
            guard try container.decode(Bool.self, forKey: key) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container, debugDescription: "NULL must be true")
            }
            self = .null
        case "L": self = .list(try container.decode([DynamoValue].self, forKey: key))
        case "M": self = .map(try container.decode([String: DynamoValue].self, forKey: key))
        case "SS": self = .stringSet(try container.decode([String].self, forKey: key))
        case "NS": self = .numberSet(try container.decode([DynamoNumber].self, forKey: key))
        case "BS": self = .binarySet(try container.decode([String].self, forKey: key).map(base64))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: key, in: container, debugDescription: "unknown attribute type \(key.stringValue)")
        }
    }
}
