import Foundation

/// A DynamoDB number (`N`), held as its exact decimal text.
///
/// DynamoDB numbers are decimals with up to 38 significant digits, from 1E-130 to
/// 9.9999999999999999999999999999999999999E+125 in magnitude (and zero). A `Double` cannot hold most of
/// them (`0.1` is not a binary fraction), so this type never goes through one: it is built from integers,
/// from `Decimal`, or from validated text, and it keeps the text it was given or received, digit for
/// digit. There is deliberately no initializer from `Double`.
///
/// Equality, hashing and ordering are numeric (`"1.50"` equals `"1.5"`, as in DynamoDB, which trims
/// leading and trailing zeros); ``text`` stays as written.
public struct DynamoNumber: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The decimal text, exactly as given or as received from DynamoDB.
    public let text: String
    // Normalized value: (negative ? -1 : 1) × digits × 10^exponent, `digits` without leading or trailing
    // zeros (ASCII). Zero is `digits == []`, `exponent == 0`, `negative == false`.
    private let negative: Bool
    private let digits: [UInt8]
    private let exponent: Int

    /// DynamoDB's precision: significant digits.
    public static let maxSignificantDigits = 38
    /// Smallest and largest decimal exponent of the leading digit (1E-130 … 9.99…E+125).
    public static let exponentRange = -130...125

    /// Why a text is not a DynamoDB number.
    public struct FormatError: Error, Sendable, Equatable, CustomStringConvertible {
        public var text: String
        public var reason: String
        public var description: String {
            "\"\(text.prefix(60))\" is not a DynamoDB number: \(reason)"
        }
    }

    /// Validates `text`: an optional `-`, digits, optionally `.` and more digits, optionally an exponent
    /// (`e`/`E`, optional sign, digits); at most 38 significant digits; magnitude within DynamoDB's range.
    public init(_ text: String) throws(FormatError) {
        let parsed = try Self.parse(text)
        self.text = text
        negative = parsed.negative
        digits = parsed.digits
        exponent = parsed.exponent
    }

    public init(_ value: Int64) {
        // At most 19 digits: always valid.
        self = try! DynamoNumber(String(value))
    }

    public init(_ value: Int) { self.init(Int64(value)) }

    public init(_ value: Int32) { self.init(Int64(value)) }

    public init(_ value: UInt64) {
        self = try! DynamoNumber(String(value))
    }

    public init(integerLiteral value: Int64) { self.init(value) }

    /// The exact value of `decimal`. Throws for NaN and for values outside DynamoDB's precision or range.
    public init(_ decimal: Decimal) throws(FormatError) {
        guard !decimal.isNaN else { throw FormatError(text: "NaN", reason: "not a number") }
        try self.init(decimal.description)
    }

    public var description: String { text }

    public var isZero: Bool { digits.isEmpty }
    public var isNegative: Bool { negative }

    /// The value as an `Int64`, if it is a whole number in range (never rounded).
    public var int64Value: Int64? {
        if digits.isEmpty { return 0 }
        guard exponent >= 0, digits.count + exponent <= 19 else { return nil }
        var magnitude: UInt64 = 0
        for digit in digits {
            magnitude = magnitude * 10 + UInt64(digit - 48)
        }
        for _ in 0..<exponent {
            let (product, overflow) = magnitude.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            magnitude = product
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    public var intValue: Int? { int64Value.flatMap { Int(exactly: $0) } }

    /// The value as a `Decimal`, if `Decimal` holds it exactly (its exponent range is -128…127, so the
    /// very smallest DynamoDB numbers do not fit).
    public var decimalValue: Decimal? {
        if digits.isEmpty { return 0 }
        guard (-128...127).contains(exponent),
            let significand = Decimal(string: String(decoding: digits, as: UTF8.self))
        else { return nil }
        let value = Decimal(sign: negative ? .minus : .plus, exponent: exponent, significand: significand)
        guard !value.isNaN, (try? DynamoNumber(value.description)) == self else { return nil }
        return value
    }

    /// Normalized text: no leading or trailing zeros, plain notation when the exponent is small,
    /// otherwise `d.dddE±n`. Equal numbers have equal normalized text.
    public var normalized: String {
        if digits.isEmpty { return "0" }
        let sign = negative ? "-" : ""
        let body = String(decoding: digits, as: UTF8.self)
        let pointPosition = digits.count + exponent  // digits before the decimal point
        if exponent >= 0 && pointPosition <= 40 {
            return sign + body + String(repeating: "0", count: exponent)
        }
        if exponent < 0 && pointPosition > 0 {
            return sign + String(body.prefix(pointPosition)) + "." + String(body.dropFirst(pointPosition))
        }
        if exponent < 0 && pointPosition > -6 {
            return sign + "0." + String(repeating: "0", count: -pointPosition) + body
        }
        let scientific = pointPosition - 1
        let mantissa = digits.count == 1 ? body : String(body.prefix(1)) + "." + String(body.dropFirst())
        return sign + mantissa + "E" + (scientific >= 0 ? "+" : "") + String(scientific)
    }

    public static func == (lhs: DynamoNumber, rhs: DynamoNumber) -> Bool {
        lhs.negative == rhs.negative && lhs.digits == rhs.digits && lhs.exponent == rhs.exponent
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(negative)
        hasher.combine(digits)
        hasher.combine(exponent)
    }

    public static func < (lhs: DynamoNumber, rhs: DynamoNumber) -> Bool {
        if lhs.negative != rhs.negative { return lhs.negative }
        let magnitudeLess = Self.magnitudeLess(lhs, rhs)
        let magnitudeGreater = Self.magnitudeLess(rhs, lhs)
        return lhs.negative ? magnitudeGreater : magnitudeLess
    }

    private static func magnitudeLess(_ a: DynamoNumber, _ b: DynamoNumber) -> Bool {
        if a.digits.isEmpty || b.digits.isEmpty { return a.digits.isEmpty && !b.digits.isEmpty }
        let aLead = a.digits.count + a.exponent
        let bLead = b.digits.count + b.exponent
        if aLead != bLead { return aLead < bLead }
        // Same magnitude order: compare digit strings, the shorter padded with zeros.
        for i in 0..<max(a.digits.count, b.digits.count) {
            let x = i < a.digits.count ? a.digits[i] : 48
            let y = i < b.digits.count ? b.digits[i] : 48
            if x != y { return x < y }
        }
        return false
    }

    private static func parse(_ text: String) throws(FormatError) -> (negative: Bool, digits: [UInt8], exponent: Int) {
        func fail(_ reason: String) -> FormatError { FormatError(text: text, reason: reason) }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw fail("empty") }
        guard bytes.count <= 400 else { throw fail("longer than 400 characters") }
        var i = 0
        var negative = false
        if bytes[i] == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        var mantissa: [UInt8] = []
        var fractionDigits = 0
        let integerStart = i
        while i < bytes.count, isDigit(bytes[i]) {
            mantissa.append(bytes[i])
            i += 1
        }
        guard i > integerStart else { throw fail("expected a digit at offset \(i)") }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            let fractionStart = i
            while i < bytes.count, isDigit(bytes[i]) {
                mantissa.append(bytes[i])
                i += 1
            }
            fractionDigits = i - fractionStart
            guard fractionDigits > 0 else { throw fail("expected a digit after the decimal point") }
        }
        var written = 0
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            var exponentNegative = false
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
                exponentNegative = bytes[i] == UInt8(ascii: "-")
                i += 1
            }
            let exponentStart = i
            while i < bytes.count, isDigit(bytes[i]) {
                // Bounded: anything past 6 digits is out of range anyway.
                if i - exponentStart < 6 { written = written * 10 + Int(bytes[i] - 48) }
                i += 1
            }
            guard i > exponentStart else { throw fail("expected a digit in the exponent") }
            if i - exponentStart > 6 { written = 1_000_000 }
            if exponentNegative { written = -written }
        }
        guard i == bytes.count else { throw fail("unexpected character at offset \(i)") }

        // Normalize: strip leading zeros, then move trailing zeros into the exponent.
        var start = 0
        while start < mantissa.count, mantissa[start] == 48 { start += 1 }
        var end = mantissa.count
        while end > start, mantissa[end - 1] == 48 { end -= 1 }
        if start == end { return (false, [], 0) }
        let digits = Array(mantissa[start..<end])
        let exponent = written - fractionDigits + (mantissa.count - end)
        guard digits.count <= maxSignificantDigits else {
            throw fail("\(digits.count) significant digits; DynamoDB keeps at most \(maxSignificantDigits)")
        }
        let leading = exponent + digits.count - 1
        guard exponentRange.contains(leading) else {
            throw fail("magnitude out of DynamoDB's range (1E-130 to 9.99…E+125)")
        }
        return (negative, digits, exponent)
    }
}

extension DynamoNumber: Codable {
    /// The wire form: a JSON string holding the decimal text.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
