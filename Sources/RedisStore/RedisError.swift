/// Every failure in this module. Descriptions name what failed and what to do; they carry the endpoint
/// (`host:port`), the ACL user name and the command name, never passwords or command arguments.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A `redis://` URL (or its parts) could not be parsed.
        case invalidURL
        /// Could not connect, or the connection broke (refused, reset, EOF, I/O error, AUTH/SELECT refused).
        case connection
        /// Connecting or waiting for a reply took longer than the configured timeout. The connection is
        /// dropped (a late reply would desynchronise it) and the command is not retried: it may have run.
        case timeout
        /// The server sent something hiredis or this module could not make sense of.
        case protocolViolation
        /// The server answered with an error reply (`message` is its text, e.g. `WRONGTYPE ...`).
        /// The connection stays usable.
        case server
        /// A caller passed a value this module refuses (empty command, bad lock name, non-positive TTL).
        case invalidArgument
        /// The client was closed with `close()`.
        case closed
        /// A write was made on the primary, but fewer replicas than required acknowledged it (`WAIT`):
        /// a fail-over could still lose it, so it must not be acted on. Transient.
        case notReplicated
    }

    public let kind: Kind
    /// The library's or the server's message.
    public let message: String
    /// `host:port` of the server, when known.
    public let endpoint: String?
    /// The command name (first argument only), when the error belongs to a command.
    public let command: String?
    /// The ACL user the connection authenticates as (`redis://user:password@…`); nil for the default
    /// user. Never the password.
    public let user: String?

    public init(
        kind: Kind, message: String, endpoint: String? = nil, command: String? = nil,
        user: String? = nil
    ) {
        self.kind = kind
        self.message = message
        self.endpoint = endpoint
        self.command = command
        self.user = user
    }

    static func invalidURL(_ message: String) -> RedisError { RedisError(kind: .invalidURL, message: message) }

    /// For a server error reply, its code: the first word, e.g. `WRONGTYPE`, `NOSCRIPT`, `ERR`.
    public var serverErrorCode: String? {
        guard kind == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    /// The server's ACL refused the command or one of its keys: a `NOPERM` reply, or a script whose
    /// `redis.call` touched a key the user may not (Redis answers that one with `ERR`). Not retryable:
    /// the user's rules must change (docs/redis-keys.md, "Access control").
    public var isPermissionDenied: Bool {
        guard kind == .server || kind == .connection else { return false }
        return message.hasPrefix("NOPERM") || message.contains(": NOPERM ")
            || message.contains("can't access at least one of the keys")
    }

    /// The server refused the credentials (`WRONGPASS`: unknown user, wrong password, or a user that is
    /// off), or wants some (`NOAUTH`: the URL has none and the default user is off).
    public var isAuthenticationFailure: Bool {
        guard kind == .server || kind == .connection else { return false }
        return message.contains("WRONGPASS") || message.contains("NOAUTH") || message.contains("invalid password")
    }

    private var who: String { user.map { "user '\($0)'" } ?? "the default user" }

    public var description: String {
        let at = endpoint.map { " at \($0)" } ?? ""
        let cmd = command.map { " (command \($0))" } ?? ""
        if isAuthenticationFailure {
            return "Redis\(at) refused to authenticate \(who)\(cmd): \(message). Check the user name and password "
                + "in the Redis URL (redis://user:password@host) against the server's ACL users."
        }
        if isPermissionDenied {
            return "Redis\(at) refused\(cmd) for \(who): \(message). The user's ACL does not allow this command "
                + "or key; see docs/redis-keys.md, \"Access control\"."
        }
        switch kind {
        case .invalidURL:
            return "Invalid Redis URL: \(message). Expected redis://[[user]:password@]host[:port][/db]."
        case .connection:
            return "Redis connection\(at) failed\(cmd): \(message). Check that the server is running and "
                + "reachable and the credentials are right; the client reconnects on the next command."
        case .timeout:
            return "Redis\(at) timed out\(cmd): \(message). The server may be overloaded or the network slow; "
                + "the connection was dropped and the command may or may not have run."
        case .protocolViolation:
            return "Unexpected reply from Redis\(at)\(cmd): \(message). Check the server version and the "
                + "key's contents."
        case .server:
            return "Redis\(at) returned an error\(cmd): \(message)"
        case .invalidArgument:
            return "Invalid Redis request\(cmd): \(message)."
        case .closed:
            return "Redis client\(at) is closed\(cmd); create a new client."
        case .notReplicated:
            return "Redis\(at) did not replicate a write in time\(cmd): \(message). It is not acted on; retry later."
        }
    }
}
