import Dispatch
import Logging
import Synchronization

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
/// **Sentinel.** With `options.sentinel` the client asks the Sentinels for the primary before every
/// (re)connect and checks with `ROLE` that it is one (``RedisSentinelConfiguration``). A `READONLY`
/// reply means the server was demoted under a live connection: the command did not run, so the client
/// drops the connection, asks the Sentinels again and sends it once more. `NOREPLICAS` (the primary's
/// `min-replicas-to-write` refused a write: it may be cut off from its replicas) drops the connection too,
/// so the next command asks the Sentinels, but is thrown: the caller retries it later.
///
/// **Replicated writes.** With `options.replicas` > 0, a command sent with `replicated: true` is followed,
/// on the same connection and before anything else is sent on it, by `WAIT replicas timeout`. If fewer
/// replicas acknowledge in time, the call throws `.notReplicated`: the write happened on the primary but
/// could still be lost in a fail-over, so the caller must not act on it (docs/scaling.md).
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
        /// Ask these Sentinels for the primary instead of connecting to the URL's host.
        public var sentinel: RedisSentinelConfiguration?
        /// Replicas that must acknowledge a `replicated: true` write (`WAIT`); 0 waits for none.
        public var replicas: Int
        /// How long `WAIT` may take before the write counts as not replicated.
        public var replicaTimeout: Duration

        public init(
            connectTimeout: Duration = .seconds(2), commandTimeout: Duration = .seconds(2),
            reconnectAttempts: Int = 3, reconnectInitialDelay: Duration = .milliseconds(50),
            reconnectMaxDelay: Duration = .seconds(1), clientName: String? = nil,
            sentinel: RedisSentinelConfiguration? = nil, replicas: Int = 0,
            replicaTimeout: Duration = .seconds(1)
        ) {
            self.sentinel = sentinel
            self.replicas = max(0, replicas)
            self.replicaTimeout = replicaTimeout
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

    /// Batches drained and commands in them, since the client was made (`pipelining`).
    private let counts = Mutex<(roundTrips: Int, commands: Int)>((0, 0))

    /// How many batches the client sent and how many commands they held: commands ÷ batches is the
    /// pipelining achieved (1 when callers never overlap). For benchmarks and tests.
    public var pipelining: (batches: Int, commands: Int) { counts.withLock { ($0.roundTrips, $0.commands) } }

    /// Commands waiting for the queue right now (tests).
    var waitingCommands: Int { pending.withLock { $0.requests.count } }

    /// Commands not yet taken by `drain`, and whether a drain is scheduled.
    private let pending = Mutex<(requests: [Request], draining: Bool)>(([], false))

    // Confined to `queue`.
    var connection: RedisConnection?
    var isClosed = false
    private let resolver: SentinelResolver?
    /// `host:port` of the server connected to (or last tried): the URL's, or the primary a Sentinel named.
    var connectedEndpoint: String

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
        self.resolver = options.sentinel.map(SentinelResolver.init)
        self.connectedEndpoint = url.endpoint
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
    /// - Parameter replicated: wait for `options.replicas` replicas to acknowledge the write (see the type's
    ///   documentation); ignored when `options.replicas` is 0.
    public func command(_ args: [String], idempotent: Bool, replicated: Bool = false) async throws(RedisError)
        -> RedisValue
    {
        try await command(args.map { Array($0.utf8) }, idempotent: idempotent, replicated: replicated)
    }

    /// Binary variant of ``command(_:idempotent:)-(String)``.
    public func command(_ args: [[UInt8]], idempotent: Bool, replicated: Bool = false) async throws(RedisError)
        -> RedisValue
    {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<RedisValue, RedisError>, Never>) in
            let request = Request(args: args, idempotent: idempotent, replicated: replicated, reply: continuation)
            let startsDrain = pending.withLock { state in
                state.requests.append(request)
                defer { state.draining = true }
                return !state.draining
            }
            if startsDrain { queue.async { self.drain() } }
        }
        return try result.get()
    }

    /// A caller's command waiting for the queue.
    struct Request: Sendable {
        let args: [[UInt8]]
        let idempotent: Bool
        let replicated: Bool
        let reply: CheckedContinuation<Result<RedisValue, RedisError>, Never>
    }

    /// At most this many commands go out in one pipeline.
    private static let maxBatch = 256

    /// Runs the commands waiting now as one pipeline, then schedules itself again while more wait (a new
    /// block each time, so `close` is never starved). While one pipeline is on the wire, the commands of
    /// every other caller gather in `pending`: under load a round trip serves many of them (auto-pipelining).
    private func drain() {
        dispatchPrecondition(condition: .onQueue(queue))
        let batch = pending.withLock { state in
            let taken = Array(state.requests.prefix(Self.maxBatch))
            state.requests.removeFirst(taken.count)
            return taken
        }
        counts.withLock {
            $0.roundTrips += 1
            $0.commands += batch.count
        }
        if batch.count == 1 {
            batch[0].reply.resume(returning: Result { () throws(RedisError) in try self.execute(batch[0]) })
        } else {
            executePipeline(batch)
        }
        let more = pending.withLock { state in
            state.draining = !state.requests.isEmpty
            return state.draining
        }
        if more { queue.async { self.drain() } }
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

    func execute(_ request: Request) throws(RedisError) -> RedisValue {
        dispatchPrecondition(condition: .onQueue(queue))
        let name = RedisConnection.name(request.args)
        guard !isClosed else { throw closedError(name) }
        let first = try healthyConnection(command: name)
        do {
            return try run(request.args, on: first, replicated: request.replicated)
        } catch {
            if error.dropsConnection { connection = nil }  // frees the context; the next command reconnects
            return try resend(request, after: error)
        }
    }

    /// Sends a command whose first attempt failed with `error` once more, when that is safe (the caller has
    /// dropped the connection if `error.dropsConnection`); otherwise throws `error`.
    func resend(_ request: Request, after error: RedisError) throws(RedisError) -> RedisValue {
        let name = RedisConnection.name(request.args)
        if error.isRefusedWrite {
            // Demoted, or cut off from its replicas: whoever is primary now is asked for at the next
            // connect. READONLY also means the command did not run, so it is safe to send again.
            logger.warning(
                "Redis at \(connectedEndpoint) refused a write (\(error.serverErrorCode!)); asking again for the primary"
            )
            guard error.serverErrorCode == "READONLY", resolver != nil else { throw error }
        } else {
            guard error.dropsConnection, error.kind == .connection, request.idempotent else { throw error }
            logger.warning(
                "Redis connection to \(connectedEndpoint) broke during \(name ?? "?"); reconnecting and retrying once (idempotent): \(error.message)"
            )
        }
        let second = try healthyConnection(command: name)
        do {
            return try run(request.args, on: second, replicated: request.replicated)
        } catch {
            if error.dropsConnection { connection = nil }
            throw error
        }
    }

    func closedError(_ name: String?) -> RedisError {
        RedisError(kind: .closed, message: "closed", endpoint: url.endpoint, command: name, user: url.user)
    }

    /// Sends the command and, for a replicated write, `WAIT` on the same connection right after it (WAIT
    /// counts the replicas that have this connection's latest write).
    func run(_ args: [[UInt8]], on connection: RedisConnection, replicated: Bool) throws(RedisError)
        -> RedisValue
    {
        let reply = try connection.run(args)
        guard replicated, options.replicas > 0 else { return reply }
        let acknowledged: Int64
        do {
            acknowledged = try connection.run(waitCommand).integer ?? -1
        } catch {
            if error.kind != .server { self.connection = nil }
            throw waitFailed(error)
        }
        if let shortfall = replicationShortfall(acknowledged) { throw shortfall }
        return reply
    }

    /// The current connection if it is usable, else a new one (bounded attempts with backoff).
    func healthyConnection(command: String?) throws(RedisError) -> RedisConnection {
        if let connection {
            if !connection.isBroken { return connection }
            logger.info(
                "Redis connection to \(connectedEndpoint) was closed by the server or is in error; reconnecting")
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
                let fresh = try open()
                if lastError != nil {
                    logger.info("Redis reconnected to \(connectedEndpoint) after \(attempt) attempts")
                }
                connection = fresh
                return fresh
            } catch {
                lastError = error
                logger.debug(
                    "Redis connect attempt \(attempt)/\(options.reconnectAttempts) to \(connectedEndpoint) failed: \(error.message)"
                )
                // The server answered: wrong credentials or an ACL that forbids the setup commands do not
                // heal by retrying. Say so at once.
                if error.isAuthenticationFailure || error.isPermissionDenied {
                    logger.warning("Redis at \(connectedEndpoint) refused the connection setup: \(error.message)")
                    throw error
                }
            }
        }
        let error = lastError!
        logger.warning(
            "Redis connect to \(connectedEndpoint) failed after \(options.reconnectAttempts) attempts: \(error.message)"
        )
        throw RedisError(
            kind: error.kind,
            message: "\(error.message) (after \(options.reconnectAttempts) connect attempts)",
            endpoint: connectedEndpoint, command: command ?? error.command, user: url.user)
    }

    /// A new connection to the URL, or with Sentinels to the primary they name, checked to be one.
    private func open() throws(RedisError) -> RedisConnection {
        guard let resolver else {
            return try RedisConnection.open(
                url: url, connectTimeout: options.connectTimeout, commandTimeout: options.commandTimeout,
                clientName: options.clientName)
        }
        let primary = try resolver.primary(connectTimeout: options.connectTimeout)
        let target = try RedisURL(
            host: primary.host, port: primary.port, database: url.database, user: url.user, password: url.password)
        if target.endpoint != connectedEndpoint {
            logger.info(
                "Redis primary of '\(resolver.configuration.masterName)' is \(target.endpoint) (Sentinel \(primary.sentinel))"
            )
        }
        connectedEndpoint = target.endpoint
        let fresh = try RedisConnection.open(
            url: target, connectTimeout: options.connectTimeout, commandTimeout: options.commandTimeout,
            clientName: options.clientName)
        let role = try fresh.run([Array("ROLE".utf8)])
        guard role.array?.first?.string == "master" else {
            // Right after a fail-over a Sentinel may still name the demoted primary: never write to it.
            throw RedisError(
                kind: .connection,
                message:
                    "Sentinel \(primary.sentinel) named \(target.endpoint) as primary of '\(resolver.configuration.masterName)' but it is a \(role.array?.first?.string ?? "server of unknown role"); asking again",
                endpoint: target.endpoint, command: "ROLE", user: url.user)
        }
        return fresh
    }

    /// Blocks the client's own queue thread (never a cooperative-pool thread) during backoff.
    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: numericCast(seconds), tv_nsec: numericCast(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}

extension RedisError {
    /// The server refused a write for what it is now: a replica (`READONLY`), or a primary without enough
    /// replicas (`NOREPLICAS`). Either way the command did not run.
    var isRefusedWrite: Bool { serverErrorCode == "READONLY" || serverErrorCode == "NOREPLICAS" }

    /// Whether the connection that saw this error must be dropped: it broke, timed out or went out of step
    /// (a late reply would answer the next command), or its server refuses writes (the next connect asks
    /// the Sentinels again). An ordinary error reply, a refused argument or a failed WAIT leave it usable.
    var dropsConnection: Bool {
        isRefusedWrite || (kind != .server && kind != .invalidArgument && kind != .notReplicated)
    }
}
