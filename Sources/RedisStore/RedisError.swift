/// Every failure in this module. Descriptions name what failed and what to do; they carry the endpoint
/// (`host:port`) and the command name, never credentials or command arguments.
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
    }

    public let kind: Kind
    /// The library's or the server's message.
    public let message: String
    /// `host:port` of the server, when known.
    public let endpoint: String?
    /// The command name (first argument only), when the error belongs to a command.
    public let command: String?

    public init(kind: Kind, message: String, endpoint: String? = nil, command: String? = nil) {
        self.kind = kind
        self.message = message
        self.endpoint = endpoint
        self.command = command
    }

    static func invalidURL(_ message: String) -> RedisError { RedisError(kind: .invalidURL, message: message) }

    /// For a server error reply, its code: the first word, e.g. `WRONGTYPE`, `NOSCRIPT`, `ERR`.
    public var serverErrorCode: String? {
        guard kind == .server else { return nil }
        return message.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    public var description: String {
        let at = endpoint.map { " at \($0)" } ?? ""
        let cmd = command.map { " (command \($0))" } ?? ""
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
        }
    }
}
