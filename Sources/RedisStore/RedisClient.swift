import Dispatch
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// One Redis connection (hiredis, blocking) driven from a private serial queue, with timeouts and
/// reconnection.
///
/// **Threading.** hiredis blocks and is not thread-safe. Every use of the connection happens on
/// `queue`, a serial `DispatchQueue` of its own, so blocking calls never run on Swift's cooperative
/// pool; `command` bridges with a continuation. Commands from concurrent tasks are serialised.
///
/// **Timeouts.** `connectTimeout` bounds each connect attempt; `commandTimeout` bounds each socket
/// read/write of a command (hiredis `redisSetTimeout`). A timeout throws `.timeout` and drops the
/// connection, because a late reply would otherwise be read as the answer to the next command.
/// Timed-out commands are never retried: they may have run.
///
/// **Reconnection.** The connection is dropped (its context freed) whenever hiredis reports an I/O
/// error, EOF, a protocol error or a timeout. The next command reconnects, making up to
/// `reconnectAttempts` attempts with exponential backoff (`reconnectInitialDelay`, doubling, capped
/// at `reconnectMaxDelay`), so a command waits at most about
/// `reconnectAttempts × connectTimeout + Σ delays` before throwing `.connection`.
/// Before each command the client also polls the socket (zero timeout): a socket the server has
/// already closed (e.g. a restart while the client was idle) is replaced *before* the command is
/// sent, so the first command after a restart normally succeeds, idempotent or not.
///
/// **Retry.** If the connection breaks while a command is in flight (`.connection`: EOF, reset, I/O
/// error), the client cannot know whether the server ran it. It reconnects and sends it once more
/// only when the caller passed `idempotent: true`; otherwise it throws `.connection`. A server error
/// reply (`.server`) never drops the connection and is never retried.
public final class RedisClient: @unchecked Sendable {
    // @unchecked Sendable invariant: `connection` and `isClosed` are read and written only inside
    // blocks running on `queue` (serial). Every other stored property is an immutable `let` of a
    // Sendable type. `RedisConnection` (which owns the C context) never leaves `queue`.

    public struct Options: Sendable {
        public var connectTimeout: Duration
        public var commandTimeout: Duration
        /// Connect attempts a command makes when it finds no healthy connection (at least 1).
        public var reconnectAttempts: Int
        public var reconnectInitialDelay: Duration
        public var reconnectMaxDelay: Duration
        /// Sent as `CLIENT SETNAME` on every (re)connect, so the connection shows in `CLIENT LIST`.
        /// Must not contain spaces.
        public var clientName: String?

        public init(
            connectTimeout: Duration = .seconds(2), commandTimeout: Duration = .seconds(2),
            reconnectAttempts: Int = 3, reconnectInitialDelay: Duration = .milliseconds(50),
            reconnectMaxDelay: Duration = .seconds(1), clientName: String? = nil
        ) {
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.reconnectAttempts = max(1, reconnectAttempts)
            self.reconnectInitialDelay = reconnectInitialDelay
            self.reconnectMaxDelay = reconnectMaxDelay
            self.clientName = clientName
        }
    }

    public let url: RedisURL
    public let options: Options
    private let logger: Logger
    private let queue: DispatchQueue

    // Confined to `queue`.
    private var connection: RedisConnection?
    private var isClosed = false

    /// Creates a client; it connects lazily on the first command. Use ``connect(url:options:logger:)``
    /// to fail fast at startup.
    public init(
        url: RedisURL, options: Options = Options(),
        logger: Logger = Logger(label: "RedisStore.RedisClient")
    ) {
        self.url = url
        self.options = options
        self.logger = logger
        self.queue = DispatchQueue(label: "RedisStore.RedisClient(\(url.endpoint))")
    }

    /// Creates a client and connects it now (AUTH, SELECT), throwing if that fails.
    public static func connect(
        url: RedisURL, options: Options = Options(),
        logger: Logger = Logger(label: "RedisStore.RedisClient")
    )
        async throws(RedisError) -> RedisClient
    {
        let client = RedisClient(url: url, options: options, logger: logger)
        _ = try await client.command(["PING"], idempotent: true)
        return client
    }

    /// Sends one command (binary-safe: arguments are sent as-is, never formatted) and returns its
    /// reply. A top-level error reply throws `RedisError` of kind `.server`.
    ///
    /// - Parameter idempotent: true if running the command twice has the same effect as once (GET,
    ///   SET without NX, DEL, PEXPIRE, a token-checked script). Only then is it resent after the
    ///   connection broke mid-command.
    public func command(_ args: [String], idempotent: Bool) async throws(RedisError) -> RedisValue {
        try await command(args.map { Array($0.utf8) }, idempotent: idempotent)
    }

    /// Binary variant of ``command(_:idempotent:)-(String)``.
    public func command(_ args: [[UInt8]], idempotent: Bool) async throws(RedisError) -> RedisValue {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<RedisValue, RedisError>, Never>) in
            queue.async {
                continuation.resume(
                    returning: Result { () throws(RedisError) in
                        try self.execute(args, idempotent: idempotent)
                    })
            }
        }
        return try result.get()
    }

    /// Closes the connection; later commands throw `.closed`.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.isClosed = true
                self.connection = nil
                continuation.resume()
            }
        }
    }

    // MARK: On `queue` only

    private func execute(_ args: [[UInt8]], idempotent: Bool) throws(RedisError) -> RedisValue {
        dispatchPrecondition(condition: .onQueue(queue))
        let name = args.first.map { String(decoding: $0, as: UTF8.self).uppercased() }
        guard !isClosed else {
            throw RedisError(kind: .closed, message: "closed", endpoint: url.endpoint, command: name, user: url.user)
        }
        let first = try healthyConnection(command: name)
        do {
            return try first.run(args)
        } catch {
            guard error.kind != .server, error.kind != .invalidArgument else { throw error }
            connection = nil  // frees the context; the next command reconnects
            guard error.kind == .connection, idempotent else { throw error }
            logger.warning(
                "Redis connection to \(url.endpoint) broke during \(name ?? "?"); reconnecting and retrying once (idempotent): \(error.message)"
            )
        }
        let second = try healthyConnection(command: name)
        do {
            return try second.run(args)
        } catch {
            if error.kind != .server, error.kind != .invalidArgument { connection = nil }
            throw error
        }
    }

    /// The current connection if it is usable, else a new one (bounded attempts with backoff).
    private func healthyConnection(command: String?) throws(RedisError) -> RedisConnection {
        if let connection {
            if !connection.isBroken { return connection }
            logger.info("Redis connection to \(url.endpoint) was closed by the server or is in error; reconnecting")
            self.connection = nil
        }
        var delay = options.reconnectInitialDelay
        var lastError: RedisError?
        for attempt in 1...options.reconnectAttempts {
            if attempt > 1 {
                Self.sleep(delay)
                delay = min(delay * 2, options.reconnectMaxDelay)
            }
            do {
                let fresh = try RedisConnection.open(
                    url: url, connectTimeout: options.connectTimeout,
                    commandTimeout: options.commandTimeout, clientName: options.clientName)
                if lastError != nil {
                    logger.info("Redis reconnected to \(url.endpoint) after \(attempt) attempts")
                }
                connection = fresh
                return fresh
            } catch {
                lastError = error
                logger.debug(
                    "Redis connect attempt \(attempt)/\(options.reconnectAttempts) to \(url.endpoint) failed: \(error.message)"
                )
                // The server answered: wrong credentials or an ACL that forbids the setup commands do not
                // heal by retrying. Say so at once.
                if error.isAuthenticationFailure || error.isPermissionDenied {
                    logger.warning("Redis at \(url.endpoint) refused the connection setup: \(error.message)")
                    throw error
                }
            }
        }
        let error = lastError!
        logger.warning(
            "Redis connect to \(url.endpoint) failed after \(options.reconnectAttempts) attempts: \(error.message)")
        throw RedisError(
            kind: error.kind,
            message: "\(error.message) (after \(options.reconnectAttempts) connect attempts)",
            endpoint: url.endpoint, command: command ?? error.command, user: url.user)
    }

    /// Blocks the client's own queue thread (never a cooperative-pool thread) during backoff.
    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: numericCast(seconds), tv_nsec: numericCast(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}
