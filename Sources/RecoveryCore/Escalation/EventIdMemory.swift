import Foundation

/// The ids of a target's recently handled events, oldest first, bounded by `EscalationMachine.eventMemory`
/// (the machine drops an event whose id it remembers: docs/escalation.md, "Idempotency has three layers").
///
/// Held and stored as one string, the ids joined by a space, since schema 2: a target probed for a few
/// hours remembers 512 UUIDs, and as a JSON array of strings they were 20 KB that the decision worker
/// decoded into 512 strings and encoded again with every event, half a millisecond of CPU each time; one
/// string is read and written whole, and an id is looked up by scanning its bytes (docs/benchmarks.md).
/// A space or `%` inside an id is percent-escaped and an empty id is `%E`, so any id survives. Reads the
/// array of schema 1 too.
public struct EventIdMemory: Codable, Sendable, Equatable {
    private var joined: String
    public private(set) var count: Int

    init() {
        joined = ""
        count = 0
    }

    private init(joined: String) {
        var joined = joined
        count = joined.isEmpty ? 0 : joined.withUTF8 { $0.reduce(1) { $1 == 0x20 ? $0 + 1 : $0 } }
        self.joined = joined
    }

    init(_ ids: [String]) {
        joined = ids.map(Self.escape).joined(separator: " ")
        count = ids.count
    }

    /// The ids, oldest first.
    public var ids: [String] { joined.isEmpty ? [] : joined.split(separator: " ").map(Self.unescape) }
    public var last: String? { ids.last }

    public func contains(_ id: String) -> Bool {
        var token = Self.escape(id)
        var haystack = joined
        return token.withUTF8 { token in
            haystack.withUTF8 { bytes in
                guard let base = bytes.baseAddress, let needle = token.baseAddress else { return false }
                // Token by token: memchr finds the end of each, memcmp compares those of the needle's length.
                var start = 0
                while start <= bytes.count {
                    let rest = bytes.count - start
                    let end = memchr(base + start, 0x20, rest).map { UnsafeRawPointer($0) - UnsafeRawPointer(base) }
                    let length = (end ?? bytes.count) - start
                    if length == token.count && memcmp(base + start, needle, length) == 0 { return true }
                    guard let end else { return false }
                    start = end + 1
                }
                return false
            }
        }
    }

    /// Adds `id` unless it is there; false when it was. Keeps the newest `limit`.
    mutating func insert(_ id: String, limit: Int) -> Bool {
        guard !contains(id) else { return false }
        if !joined.isEmpty { joined.append(" ") }
        joined.append(Self.escape(id))
        count += 1
        while count > limit, let space = joined.utf8.firstIndex(of: 0x20) {
            joined = String(joined[joined.index(after: space)...])
            count -= 1
        }
        return true
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let joined = try? c.decode(String.self) {
            self.init(joined: joined)
        } else {
            self.init(try c.decode([String].self))  // schema 1
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(joined)
    }

    private static func escape(_ id: String) -> String {
        if id.isEmpty { return "%E" }
        guard id.utf8.contains(where: { $0 == 0x20 || $0 == 0x25 }) else { return id }
        return id.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: " ", with: "%20")
    }

    private static func unescape(_ field: Substring) -> String {
        guard field.utf8.contains(0x25) else { return String(field) }
        if field == "%E" { return "" }
        return field.replacingOccurrences(of: "%20", with: " ").replacingOccurrences(of: "%25", with: "%")
    }
}
