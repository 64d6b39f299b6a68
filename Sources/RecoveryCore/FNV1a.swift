/// FNV-1a, 64 bits, of a string's UTF-8 bytes: a hash that is the same in every process and on every
/// machine (Swift's `Hasher` is seeded per process). Used where replicas or stored data must agree: a
/// probe target's phase, the fingerprints of remembered event ids. Not cryptographic.
public enum FNV1a {
    public static func hash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }
}
