/// Random ids for messages: a version-4 UUID in lowercase, the form `UUID().uuidString.lowercased()`
/// gives, from the standard library's system generator (Linux's `getrandom`, one system call). Foundation's
/// `UUID()` on Linux opens, reads and closes `/dev/urandom` for every id: a profile of the decision worker
/// put a seventh of its CPU per event there, and the probe makes one per check (docs/benchmarks.md).
public enum RandomId {
    public static func uuid() -> String {
        var generator = SystemRandomNumberGenerator()
        // Bytes 0–7 and 8–15, big-endian: the version (4) in byte 6's high nibble, the variant (10) in
        // byte 8's two high bits (RFC 9562).
        let high = (generator.next() as UInt64) & ~0xF000 | 0x4000
        let low = (generator.next() as UInt64) & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000
        return String(unsafeUninitializedCapacity: 36) { out in
            let digits: StaticString = "0123456789abcdef"
            var at = 0
            func put(_ value: UInt64, nibbles: ClosedRange<Int>) {
                for nibble in nibbles.reversed() {
                    if at == 8 || at == 13 || at == 18 || at == 23 {
                        out[at] = UInt8(ascii: "-")
                        at += 1
                    }
                    out[at] = digits.utf8Start[Int((value >> UInt64(nibble * 4)) & 0xF)]
                    at += 1
                }
            }
            put(high, nibbles: 0...15)
            put(low, nibbles: 0...15)
            return at
        }
    }
}
