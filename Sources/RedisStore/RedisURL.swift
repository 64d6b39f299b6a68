/// Where and how to connect to Redis: `redis://[[user]:password@]host[:port][/db]`.
///
/// - `host` is a name, an IPv4 address, or a bracketed IPv6 address (`[::1]`).
/// - `port` defaults to 6379, `db` to 0.
/// - `user` and `password` may be percent-encoded. A user needs a password (`user:password@`);
///   `:password@` authenticates as the default user.
/// - TLS (`rediss://`), Unix sockets, query strings and fragments are not supported and are rejected.
///   hiredis 0.14.1 has no TLS: traffic that leaves a host goes through a TLS tunnel (stunnel), and
///   the URL names the tunnel's local end (docs/deployment.md, "Redis users and TLS").
///
/// The password is never part of `description`, `debugDescription` or the mirror (`dump`):
/// they show `redacted` in its place.
public struct RedisURL: Sendable, Hashable {
    public static let defaultPort = 6379

    public let host: String
    public let port: Int
    public let database: Int
    public let user: String?
    public let password: String?

    public init(
        host: String, port: Int = RedisURL.defaultPort, database: Int = 0,
        user: String? = nil, password: String? = nil
    ) throws(RedisError) {
        guard !host.isEmpty else { throw .invalidURL("the host is empty") }
        guard (1...65_535).contains(port) else {
            throw .invalidURL("port \(port) is out of range (1-65535)")
        }
        guard database >= 0 else { throw .invalidURL("database \(database) is negative") }
        if user != nil, password == nil {
            throw .invalidURL("a user name needs a password (redis://user:password@host)")
        }
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`.
    public init(_ string: String) throws(RedisError) {
        let schemePrefix = "redis://"
        guard string.lowercased().hasPrefix(schemePrefix) else {
            if string.lowercased().hasPrefix("rediss://") {
                throw .invalidURL(
                    "TLS (rediss://) is not supported (hiredis 0.14.1); use redis:// to a local TLS tunnel (stunnel, docs/deployment.md) or on a trusted network"
                )
            }
            throw .invalidURL("the URL must start with redis:// (redis://[[user]:password@]host[:port][/db])")
        }
        var rest = Substring(string.dropFirst(schemePrefix.count))
        if rest.contains("?") || rest.contains("#") {
            throw .invalidURL("query strings and fragments are not supported")
        }

        // userinfo: everything before the last '@' (a password may itself contain '@' only when encoded,
        // but taking the last one is the lenient reading).
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let colon = userinfo.firstIndex(of: ":") else {
                throw .invalidURL("credentials must be written user:password@ or :password@ (a user needs a password)")
            }
            let rawUser = userinfo[..<colon]
            let rawPassword = userinfo[userinfo.index(after: colon)...]
            guard let decodedPassword = Self.percentDecode(rawPassword) else {
                throw .invalidURL("the password has an invalid percent-encoding")
            }
            guard !decodedPassword.isEmpty else { throw .invalidURL("the password after ':' is empty") }
            guard let decodedUser = Self.percentDecode(rawUser) else {
                throw .invalidURL("the user name has an invalid percent-encoding")
            }
            user = decodedUser.isEmpty ? nil : decodedUser
            password = decodedPassword
        }

        // host[:port][/db]
        var hostPort = rest
        var dbPart: Substring?
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            dbPart = rest[rest.index(after: slash)...]
        }

        let host: Substring
        var portPart: Substring?
        if hostPort.first == "[" {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw .invalidURL("an IPv6 host needs a closing ']'")
            }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else {
                    throw .invalidURL("unexpected characters after the IPv6 host")
                }
                portPart = after.dropFirst()
            }
        } else {
            if let colon = hostPort.firstIndex(of: ":") {
                host = hostPort[..<colon]
                portPart = hostPort[hostPort.index(after: colon)...]
            } else {
                host = hostPort
            }
        }
        guard !host.isEmpty else { throw .invalidURL("the host is missing") }
        if host.contains(where: { $0 == " " || $0 == "[" || $0 == "]" }) {
            throw .invalidURL("the host contains invalid characters")
        }

        var port = Self.defaultPort
        if let portPart {
            guard !portPart.isEmpty, portPart.allSatisfy(\.isASCIIDigit), let value = Int(portPart),
                (1...65_535).contains(value)
            else { throw .invalidURL("the port '\(portPart)' is not a number in 1-65535") }
            port = value
        }

        var database = 0
        if let dbPart, !dbPart.isEmpty {
            guard dbPart.allSatisfy(\.isASCIIDigit), let value = Int(dbPart) else {
                throw .invalidURL("the database '\(dbPart)' is not a non-negative number")
            }
            database = value
        }

        try self.init(host: String(host), port: port, database: database, user: user, password: password)
    }

    /// `host:port`, for logs and errors (never credentials).
    public var endpoint: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func percentDecode(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = s.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let hi = iterator.next().flatMap(Self.hexValue),
                    let lo = iterator.next().flatMap(Self.hexValue)
                else { return nil }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension RedisURL: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The URL with the password replaced by `redacted`.
    public var description: String {
        var s = "redis://"
        if password != nil {
            s += "\(user ?? ""):redacted@"
        }
        s += "\(endpoint)/\(database)"
        return s
    }

    public var debugDescription: String { "RedisURL(\(description))" }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "host": host, "port": port, "database": database, "user": user as Any,
                "password": password == nil ? "nil" : "redacted",
            ])
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
