import Foundation

/// Writes JSON byte by byte as `Timestamp.jsonEncoder()` does: the caller writes keys in sorted order and
/// leaves absent optionals out; strings get JSON's escapes and nothing else (slashes and non-ASCII as they
/// are); numbers as Swift's shortest round-tripping form, a whole-number Double without its `.0`; times as
/// `Timestamp.format`. For the messages and documents written with every event (`ObservationJSON`,
/// `TargetStateJSON`), where Foundation's Codable encoder was most of the cost (docs/benchmarks.md).
struct JSONBytesWriter {
    var bytes: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func open() { bytes.append(UInt8(ascii: "{")) }
    mutating func close() { bytes.append(UInt8(ascii: "}")) }
    mutating func openArray() { bytes.append(UInt8(ascii: "[")) }
    mutating func closeArray() { bytes.append(UInt8(ascii: "]")) }
    mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

    /// Before an array's element: a comma unless it is the first.
    mutating func element() {
        if bytes.last != UInt8(ascii: "[") { bytes.append(UInt8(ascii: ",")) }
    }

    /// A key, after a comma unless it is the object's first.
    mutating func key(_ name: String) {
        if bytes.last != UInt8(ascii: "{") { bytes.append(UInt8(ascii: ",")) }
        string(name)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func field(_ name: String, _ value: String) {
        key(name)
        string(value)
    }

    /// A string of lowercase hex digits, which needs no escape: copied as it is (a target's 8 KB of event
    /// fingerprints).
    mutating func field(_ name: String, hexDigits value: String) {
        key(name)
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: value.utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func field(_ name: String, _ value: Int) {
        key(name)
        raw(String(value))
    }

    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        raw(value ? "true" : "false")
    }

    mutating func field(_ name: String, _ value: Date) {
        key(name)
        string(Timestamp.format(value))
    }

    mutating func field(_ name: String, _ value: Double) throws {
        key(name)
        try number(value, at: name)
    }

    mutating func field(_ name: String, _ values: [String]) {
        key(name)
        openArray()
        for value in values {
            element()
            string(value)
        }
        closeArray()
    }

    mutating func field(_ name: String, _ values: [Date]) {
        key(name)
        openArray()
        for value in values {
            element()
            string(Timestamp.format(value))
        }
        closeArray()
    }

    /// A value written by the Codable encoder, for the parts of a document that are rare or intricate: the
    /// same bytes it would write there.
    mutating func field<T: Encodable>(_ name: String, encoding value: T) throws {
        key(name)
        bytes.append(contentsOf: try Timestamp.jsonEncoder().encode(value))
    }

    /// JSON's escapes: the quote, the backslash and the control characters; the rest as UTF-8, copied in
    /// runs (a target's 8 KB of event fingerprints is one string).
    mutating func string(_ s: String) {
        var s = s
        bytes.append(UInt8(ascii: "\""))
        s.withUTF8 { utf8 in
            var run = 0
            for k in 0..<utf8.count {
                let byte = utf8[k]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run..<k]))
                escape(byte)
                run = k + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[run...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
        case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
        case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
        case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
        case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
        case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
        case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
        default:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
        }
    }

    /// Swift's shortest form that reads back as the same Double, without a whole number's `.0` (as the
    /// Codable encoder writes it); JSON has no infinity or NaN, so those are refused as that encoder does.
    mutating func number(_ value: Double, at key: String) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value, EncodingError.Context(codingPath: [], debugDescription: "\(key) is \(value), not a JSON number"))
        }
        let text = value.description
        if text.hasSuffix(".0") { raw(String(text.dropLast(2))) } else { raw(text) }
    }
}

/// Reads JSON the fast way for documents of a known shape (`TargetStateJSON`): a cursor over the bytes
/// that reads exactly the types asked for. It accepts less than JSON allows on purpose: anything it does
/// not expect (a `null`, a number where a string was expected, a key twice, an unknown key as the reader
/// decides) throws `Unexpected`, and the caller reads the document with the Codable decoder instead, which
/// either reads it or words the error. So this reader never decides what a document means by itself.
struct JSONBytesReader {
    struct Unexpected: Error {}

    private let bytes: UnsafeBufferPointer<UInt8>
    private var i = 0
    /// Just after a `{` or `[`: its first member comes without a comma.
    private var afterOpen = false

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// `body` over the whole of `bytes`, or nil when it throws or leaves anything but space after it.
    static func whole<T>(_ bytes: [UInt8], _ body: (inout JSONBytesReader) throws -> T) -> T? {
        bytes.withUnsafeBufferPointer { buffer in
            var r = JSONBytesReader(buffer)
            guard let value = try? body(&r), (try? r.end()) != nil else { return nil }
            return value
        }
    }

    private mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    private mutating func peek() throws(Unexpected) -> UInt8 {
        skipSpace()
        guard i < bytes.count else { throw Unexpected() }
        return bytes[i]
    }

    private mutating func expect(_ byte: UInt8) throws(Unexpected) {
        guard try peek() == byte else { throw Unexpected() }
        i += 1
    }

    /// Nothing but space after the document.
    mutating func end() throws(Unexpected) {
        skipSpace()
        guard i == bytes.count else { throw Unexpected() }
    }

    mutating func beginObject() throws(Unexpected) {
        try expect(UInt8(ascii: "{"))
        afterOpen = true
    }

    /// The next key of the object begun, or nil at its end.
    mutating func nextKey() throws(Unexpected) -> String? {
        guard try more(closing: UInt8(ascii: "}")) else { return nil }
        let key = try string()
        try expect(UInt8(ascii: ":"))
        return key
    }

    mutating func beginArray() throws(Unexpected) {
        try expect(UInt8(ascii: "["))
        afterOpen = true
    }

    /// Whether the array begun has another element (the comma before it read).
    mutating func nextElement() throws(Unexpected) -> Bool { try more(closing: UInt8(ascii: "]")) }

    /// Reads the end of an object or array (false), or the comma before its next member unless it is the
    /// first (true).
    private mutating func more(closing: UInt8) throws(Unexpected) -> Bool {
        let next = try peek()
        let first = afterOpen
        afterOpen = false
        if next == closing {
            i += 1
            return false
        }
        if !first { try expect(UInt8(ascii: ",")) }
        return true
    }

    /// A string of lowercase hex digits only (a target's 8 KB of event fingerprints): the closing quote
    /// found by `memchr`, the digits checked in a loop without branches (which the compiler vectorises).
    mutating func hexDigits() throws(Unexpected) -> String {
        try expect(UInt8(ascii: "\""))
        guard let base = bytes.baseAddress, i < bytes.count,
            let quote = memchr(base + i, Int32(UInt8(ascii: "\"")), bytes.count - i)
        else { throw Unexpected() }
        let start = i
        let end = start + (UnsafeRawPointer(quote) - UnsafeRawPointer(base + start))
        var bad: UInt8 = 0
        for k in start..<end {
            let byte = base[k]
            bad |= ((byte &- 0x30) >= 10 ? 1 : 0) & ((byte &- 0x61) >= 6 ? 1 : 0)
        }
        guard bad == 0 else { throw Unexpected() }
        i = end + 1
        return String(decoding: UnsafeBufferPointer(start: base + start, count: end - start), as: UTF8.self)
    }

    /// A string; escapes as JSON defines them, UTF-8 validated (`JSONString.read`).
    mutating func string() throws(Unexpected) -> String {
        skipSpace()
        guard let s = JSONString.read(bytes, at: &i) else { throw Unexpected() }
        return s
    }

    /// An integer written without fraction or exponent.
    mutating func int() throws(Unexpected) -> Int {
        let text = try numberText()
        guard let value = Int(text) else { throw Unexpected() }
        return value
    }

    mutating func double() throws(Unexpected) -> Double {
        let text = try numberText()
        guard let value = Double(text), value.isFinite else { throw Unexpected() }
        return value
    }

    /// A number's text, checked against JSON's grammar (no `+`, no leading zero, digits after a point).
    private mutating func numberText() throws(Unexpected) -> Substring {
        _ = try peek()
        let start = i
        func digits() -> Int {
            let from = i
            while i < bytes.count, (0x30...0x39).contains(bytes[i]) { i += 1 }
            return i - from
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        let first = i
        guard digits() > 0, bytes[first] != 0x30 || i == first + 1 else { throw Unexpected() }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw Unexpected() }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw Unexpected() }
        }
        return try text(start)
    }

    private func text(_ start: Int) throws(Unexpected) -> Substring {
        guard i > start else { throw Unexpected() }
        return Substring(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    mutating func bool() throws(Unexpected) -> Bool {
        if try literal("true") { return true }
        if try literal("false") { return false }
        throw Unexpected()
    }

    private mutating func literal(_ word: StaticString) throws(Unexpected) -> Bool {
        _ = try peek()
        let count = word.utf8CodeUnitCount
        guard i + count <= bytes.count else { return false }
        for k in 0..<count where bytes[i + k] != word.utf8Start[k] { return false }
        i += count
        return true
    }

    /// A time as `Timestamp.parse` reads it.
    mutating func date() throws(Unexpected) -> Date {
        guard let date = Timestamp.parse(try string()) else { throw Unexpected() }
        return date
    }

    mutating func strings() throws(Unexpected) -> [String] {
        var values: [String] = []
        try beginArray()
        while try nextElement() { values.append(try string()) }
        return values
    }

    mutating func dates() throws(Unexpected) -> [Date] {
        var values: [Date] = []
        try beginArray()
        while try nextElement() { values.append(try date()) }
        return values
    }

    /// Whether the next value is exactly these bytes (read when it is).
    mutating func exactly(_ value: StaticString) throws(Unexpected) -> Bool {
        _ = try peek()
        guard try literal(value) else { return false }
        afterOpen = false
        return true
    }

    /// Whether the next value is exactly `[]` (read when it is).
    mutating func emptyArray() throws(Unexpected) -> Bool { try empty(UInt8(ascii: "["), UInt8(ascii: "]")) }

    private mutating func empty(_ open: UInt8, _ close: UInt8) throws(Unexpected) -> Bool {
        guard try peek() == open else { return false }
        var k = i + 1
        while k < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[k]) { k += 1 }
        guard k < bytes.count, bytes[k] == close else { return false }
        i = k + 1
        return true
    }

    /// The next value read by the Codable decoder: for the rare or intricate parts of a document.
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let start = i
        try skipValue()
        return try Timestamp.jsonDecoder().decode(T.self, from: Data(UnsafeBufferPointer(rebasing: bytes[start..<i])))
    }

    /// How deep `skipValue` goes: Foundation's reader refuses JSON nested deeper than 512, and a cursor
    /// that recursed without a bound would let one message of a million `[` overflow the stack.
    static let maxDepth = 512

    /// Steps over one value of any kind.
    mutating func skipValue(depth: Int = 0) throws(Unexpected) {
        guard depth < Self.maxDepth else { throw Unexpected() }
        switch try peek() {
        case UInt8(ascii: "{"):
            try beginObject()
            while try nextKey() != nil { try skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            try beginArray()
            while try nextElement() { try skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try bool()
        case UInt8(ascii: "n"):
            guard try literal("null") else { throw Unexpected() }
        default: _ = try numberText()
        }
    }
}
