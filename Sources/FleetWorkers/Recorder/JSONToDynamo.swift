import AWSClient
import RecoveryCore

/// Parses JSON text into a ``DynamoValue`` and keeps every number's text exactly as written (never through
/// a `Double`), so `0.30000000000000004` or a 30-digit integer is stored digit for digit. A number that
/// DynamoDB cannot hold (more than 38 significant digits, out of range) is kept as a string.
enum JSONToDynamo {
    struct SyntaxError: Error, CustomStringConvertible {
        var offset: Int
        var description: String { "invalid JSON at byte \(offset)" }
    }

    static func parse(_ bytes: [UInt8]) throws -> DynamoValue {
        var parser = Parser(bytes: bytes)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.index == bytes.count else { throw SyntaxError(offset: parser.index) }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func value(depth: Int) throws -> DynamoValue {
            guard depth < 64, index < bytes.count else { throw SyntaxError(offset: index) }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var map: [String: DynamoValue] = [:]
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    index += 1
                    return .map(map)
                }
                while true {
                    skipSpace()
                    let key = try string()
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    map[key] = try value(depth: depth + 1)
                    skipSpace()
                    if try separator(close: "}") { return .map(map) }
                }
            case UInt8(ascii: "["):
                index += 1
                var list: [DynamoValue] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .list(list)
                }
                while true {
                    skipSpace()
                    list.append(try value(depth: depth + 1))
                    skipSpace()
                    if try separator(close: "]") { return .list(list) }
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            default:
                let start = index
                while index < bytes.count, "-+.eE0123456789".utf8.contains(bytes[index]) { index += 1 }
                guard index > start else { throw SyntaxError(offset: index) }
                let text = String(decoding: bytes[start..<index], as: UTF8.self)
                if let number = try? DynamoNumber(text) { return .number(number) }
                guard Double(text) != nil else { throw SyntaxError(offset: start) }
                return .string(text)
            }
        }

        /// After an element: `,` (more follow) or the closing bracket (done).
        mutating func separator(close: Character) throws -> Bool {
            guard index < bytes.count else { throw SyntaxError(offset: index) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                return false
            }
            if bytes[index] == close.asciiValue! {
                index += 1
                return true
            }
            throw SyntaxError(offset: index)
        }

        mutating func expect(_ c: Character) throws {
            guard index < bytes.count, bytes[index] == c.asciiValue! else { throw SyntaxError(offset: index) }
            index += 1
        }

        mutating func literal(_ word: String) throws {
            let w = Array(word.utf8)
            guard index + w.count <= bytes.count, Array(bytes[index..<index + w.count]) == w else {
                throw SyntaxError(offset: index)
            }
            index += w.count
        }

        /// A string as every hand-written reader of the fleet reads one (`JSONString`, strict as Foundation).
        mutating func string() throws -> String {
            var at = index
            let text = bytes.withUnsafeBufferPointer { JSONString.read($0, at: &at) }
            index = at
            guard let text else { throw SyntaxError(offset: index) }
            return text
        }
    }
}
