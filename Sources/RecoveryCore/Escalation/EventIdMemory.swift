import Foundation

/// The ids of a target's recently handled events, oldest first, bounded by `EscalationMachine.eventMemory`
/// (the machine drops an event whose id it remembers: docs/escalation.md, "Idempotency has three layers").
///
/// Since schema 2 it keeps a 64-bit fingerprint of each id (FNV-1a of its UTF-8 bytes), as 16 hex digits,
/// all in one string. A target probed for a few hours remembers 512 UUIDs: as a JSON array of strings they
/// were 21 KB that the decision worker decoded into 512 strings and encoded again with every event (half a
/// millisecond of CPU each time) and Redis held for every target; as fingerprints they are 8 KB read and
/// written as one string, and a lookup is a scan of fixed-width slots (docs/benchmarks.md).
///
/// A fingerprint is not a cryptographic hash, and need not be: two ids of one target sharing one by chance
/// is a 1-in-2^55 event, and making an event look handled would take knowing its id before it is sent (a
/// prober's ids are random UUIDs). Reads the array of ids of schema 1.
public struct EventIdMemory: Codable, Sendable, Equatable {
    static let width = 16
    /// The fingerprints, oldest first, `width` hex digits each.
    private var slots: String

    init() { slots = "" }

    /// The stored form (schema 2), or nil when it is not a string of whole fingerprints.
    init?(slots: String) {
        var slots = slots
        let valid = slots.withUTF8 { utf8 in
            guard utf8.count % Self.width == 0 else { return false }
            for byte in utf8 where !Self.isHexDigit(byte) { return false }
            return true
        }
        guard valid else { return nil }
        self.slots = slots
    }

    init(_ ids: [String]) {
        slots = ""
        for id in ids { slots.append(Self.fingerprint(id)) }
    }

    public var count: Int { slots.utf8.count / Self.width }

    public func contains(_ id: String) -> Bool {
        var needle = Self.fingerprint(id)
        var haystack = slots
        return needle.withUTF8 { needle in
            haystack.withUTF8 { bytes in
                guard let base = bytes.baseAddress, let needle = needle.baseAddress else { return false }
                // Newest first: a redelivery is most likely of a recent event.
                var offset = bytes.count - Self.width
                while offset >= 0 {
                    if memcmp(base + offset, needle, Self.width) == 0 { return true }
                    offset -= Self.width
                }
                return false
            }
        }
    }

    /// Adds `id` unless it is there; false when it was. Keeps the newest `limit`.
    mutating func insert(_ id: String, limit: Int) -> Bool {
        guard !contains(id) else { return false }
        slots.append(Self.fingerprint(id))
        let excess = count - limit
        if excess > 0 { slots = String(slots.utf8.dropFirst(excess * Self.width))! }
        return true
    }

    static func fingerprint(_ id: String) -> String {
        let hex = String(FNV1a.hash(id), radix: 16)
        return String(repeating: "0", count: width - hex.utf8.count) + hex
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let slots = try? c.decode(String.self) {
            guard let memory = Self(slots: slots) else {
                throw DecodingError.dataCorruptedError(
                    in: c, debugDescription: "recentEventIds is not a string of 16-hex-digit fingerprints")
            }
            self = memory
        } else {
            self.init(try c.decode([String].self))  // schema 1: the ids themselves
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(slots)
    }

    /// Slots already known to hold only hex digits (`JSONBytesReader.hexDigits`), or nil when they do not
    /// make whole fingerprints.
    init?(hexDigits: String) {
        guard hexDigits.utf8.count % Self.width == 0 else { return nil }
        slots = hexDigits
    }

    /// The stored form: the fingerprints as one string.
    var stored: String { slots }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte)
    }
}
