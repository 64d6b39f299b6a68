/// A Redis reply, copied out of hiredis's `redisReply` (which is freed before a command returns).
///
/// A top-level error reply is thrown as ``RedisError`` (kind `.server`) rather than returned;
/// ``error(_:)`` only appears nested inside an array (e.g. a Lua table or `EXEC` result).
public enum RedisValue: Sendable, Hashable {
    /// A bulk string: binary-safe bytes.
    case bulkString([UInt8])
    case integer(Int64)
    case array([RedisValue])
    /// A nil bulk string or nil array.
    case null
    /// A status reply such as `OK` or `PONG`.
    case status(String)
    /// An error reply nested in an array.
    case error(String)

    /// The text of a bulk string (UTF-8, lossy) or status; nil otherwise.
    public var string: String? {
        switch self {
        case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let text): text
        default: nil
        }
    }

    /// The bytes of a bulk string; nil otherwise.
    public var bytes: [UInt8]? {
        if case .bulkString(let bytes) = self { bytes } else { nil }
    }

    /// An integer reply, or a bulk string holding a decimal integer (as `GET` returns counters).
    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .bulkString(let bytes): Int64(String(decoding: bytes, as: UTF8.self))
        default: nil
        }
    }

    public var array: [RedisValue]? {
        if case .array(let values) = self { values } else { nil }
    }

    public var isNull: Bool { self == .null }
}
