internal import CHiredis

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Owns one hiredis `redisContext` (blocking mode) and frees it in `deinit`.
///
/// Not thread-safe and not Sendable: a `RedisConnection` is created, used and released only on its
/// ``RedisClient``'s serial queue. Every hiredis result goes through ``check(_:errno:command:)``.
final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    let endpoint: String
    /// The ACL user from the URL (nil: the default user), named in errors. Never the password.
    let user: String?

    private init(context: UnsafeMutablePointer<redisContext>, endpoint: String, user: String?) {
        self.context = context
        self.endpoint = endpoint
        self.user = user
    }

    deinit { redisFree(context) }

    /// Connects with `connectTimeout`, sets `commandTimeout` on the socket, then AUTH, SELECT and
    /// CLIENT SETNAME as configured. If a step fails the connection is released (and its context freed).
    static func open(
        url: RedisURL, connectTimeout: Duration, commandTimeout: Duration,
        clientName: String?
    ) throws(RedisError) -> RedisConnection {
        let endpoint = url.endpoint
        guard let raw = redisConnectWithTimeout(url.host, Int32(url.port), connectTimeout.cTimeval) else {
            throw RedisError(
                kind: .connection, message: "hiredis could not allocate a context",
                endpoint: endpoint, user: url.user)
        }
        let savedErrno = errno
        if raw.pointee.err != 0 {
            let error = contextError(raw, errno: savedErrno, endpoint: endpoint, command: nil, user: url.user)
            redisFree(raw)
            throw error
        }
        let connection = RedisConnection(context: raw, endpoint: endpoint, user: url.user)
        try connection.check(
            status: redisSetTimeout(raw, commandTimeout.cTimeval), errno: errno,
            command: nil)

        do {
            if let password = url.password {
                var auth = ["AUTH"]
                if let user = url.user { auth.append(user) }
                auth.append(password)
                _ = try connection.run(auth.map { Array($0.utf8) })
            }
            if url.database != 0 {
                _ = try connection.run([Array("SELECT".utf8), Array(String(url.database).utf8)])
            }
            if let clientName {
                _ = try connection.run([Array("CLIENT".utf8), Array("SETNAME".utf8), Array(clientName.utf8)])
            }
        } catch  where error.kind == .server {
            // A refused AUTH/SELECT/SETNAME makes the connection useless: report it as a connection failure.
            // The message is the server's (WRONGPASS, NOPERM …): it never repeats the password.
            throw RedisError(
                kind: .connection, message: "connection setup was refused: \(error.message)",
                endpoint: endpoint, command: error.command, user: url.user)
        }
        return connection
    }

    /// Sends one command (binary-safe argv) and waits for its reply.
    func run(_ args: [[UInt8]]) throws(RedisError) -> RedisValue {
        try append(args)
        return try readReply(command: Self.name(args))
    }

    /// The command's name as errors give it (upper case).
    static func name(_ args: [[UInt8]]) -> String? {
        args.first.map { String(decoding: $0, as: UTF8.self).uppercased() }
    }

    /// Queues one command in hiredis's output buffer without sending it; `readReply` sends everything
    /// queued and reads the oldest reply. Several appends then as many reads are a pipeline: one write,
    /// the replies in order (RedisClient batches concurrent callers' commands this way).
    func append(_ args: [[UInt8]]) throws(RedisError) {
        guard !args.isEmpty else {
            throw RedisError(kind: .invalidArgument, message: "a command needs at least one argument", user: user)
        }
        // One flat buffer holds every argument; argv points into it for the duration of the call (hiredis
        // copies the formatted command into its own buffer). A trailing byte keeps the buffer non-empty so
        // even empty arguments get a valid pointer.
        var flat: [UInt8] = []
        flat.reserveCapacity(args.reduce(1) { $0 + $1.count })
        var offsets: [Int] = []
        var lengths: [Int] = []
        offsets.reserveCapacity(args.count)
        lengths.reserveCapacity(args.count)
        for arg in args {
            offsets.append(flat.count)
            lengths.append(arg.count)
            flat.append(contentsOf: arg)
        }
        flat.append(0)

        let (status, savedErrno) = flat.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    let status = redisAppendCommandArgv(
                        context, Int32(args.count), argvBuffer.baseAddress!, lengthBuffer.baseAddress!)
                    return (status, errno)
                }
            }
        }
        try check(status: status, errno: savedErrno, command: Self.name(args))
    }

    /// Flushes what `append` queued (if not yet sent) and reads the next reply.
    func readReply(command: String?) throws(RedisError) -> RedisValue {
        var reply: UnsafeMutableRawPointer?
        let status = redisGetReply(context, &reply)
        let savedErrno = errno
        if status != REDIS_OK { reply = nil }
        return try check(reply, errno: savedErrno, command: command)
    }

    /// True when the connection cannot carry another command: hiredis flagged an error, or the socket is
    /// readable while no reply is outstanding (the server closed it, e.g. after a restart, or sent
    /// something unsolicited). Checked with a zero-timeout `poll` before each command.
    var isBroken: Bool {
        if context.pointee.err != 0 { return true }
        let fd = context.pointee.fd
        guard fd >= 0 else { return true }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, 0)
        if ready < 0 { return errno != EINTR }
        return ready > 0
    }

    // MARK: Checking

    /// The one place that turns a hiredis reply pointer into a value or a typed error.
    /// A nil reply means the context's error flags say what went wrong; the reply is freed before
    /// returning; a top-level error reply is thrown as `.server`.
    private func check(
        _ reply: UnsafeMutableRawPointer?, errno savedErrno: Int32,
        command: String?
    ) throws(RedisError) -> RedisValue {
        guard let reply else {
            throw Self.contextError(context, errno: savedErrno, endpoint: endpoint, command: command, user: user)
        }
        defer { freeReplyObject(reply) }
        let node = reply.assumingMemoryBound(to: redisReply.self)
        if node.pointee.type == REDIS_REPLY_ERROR {
            throw RedisError(kind: .server, message: Self.text(node), endpoint: endpoint, command: command, user: user)
        }
        do {
            return try Self.copy(node)
        } catch {
            throw RedisError(
                kind: .protocolViolation, message: error.message, endpoint: endpoint,
                command: command, user: user)
        }
    }

    /// Same check for calls that return `REDIS_OK`/`REDIS_ERR`.
    private func check(status: Int32, errno savedErrno: Int32, command: String?) throws(RedisError) {
        if status != REDIS_OK {
            throw Self.contextError(context, errno: savedErrno, endpoint: endpoint, command: command, user: user)
        }
    }

    private static func contextError(
        _ c: UnsafeMutablePointer<redisContext>, errno savedErrno: Int32,
        endpoint: String, command: String?, user: String?
    ) -> RedisError {
        let message = withUnsafeBytes(of: c.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        let kind: RedisError.Kind
        switch c.pointee.err {
        case REDIS_ERR_IO:
            let timedOut =
                savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || savedErrno == ETIMEDOUT
                || message.contains("timed out") || message.contains("temporarily unavailable")
            kind = timedOut ? .timeout : .connection
        case REDIS_ERR_PROTOCOL:
            kind = .protocolViolation
        default:  // EOF, OOM, OTHER (e.g. name resolution, connection refused)
            kind = .connection
        }
        return RedisError(
            kind: kind, message: message.isEmpty ? "unknown hiredis error" : message,
            endpoint: endpoint, command: command, user: user)
    }

    private struct CopyError: Error { let message: String }

    private static func text(_ node: UnsafeMutablePointer<redisReply>) -> String {
        String(decoding: bytes(node), as: UTF8.self)
    }

    private static func bytes(_ node: UnsafeMutablePointer<redisReply>) -> [UInt8] {
        guard let str = node.pointee.str, node.pointee.len > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: str, count: Int(node.pointee.len)))
    }

    private static func copy(_ node: UnsafeMutablePointer<redisReply>) throws(CopyError) -> RedisValue {
        switch node.pointee.type {
        case REDIS_REPLY_STRING:
            return .bulkString(bytes(node))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(node.pointee.integer))
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_STATUS:
            return .status(text(node))
        case REDIS_REPLY_ERROR:
            return .error(text(node))
        case REDIS_REPLY_ARRAY:
            var values: [RedisValue] = []
            let count = Int(node.pointee.elements)
            values.reserveCapacity(count)
            for i in 0..<count {
                guard let child = node.pointee.element[i] else {
                    throw CopyError(message: "array element \(i) is missing")
                }
                values.append(try copy(child))
            }
            return .array(values)
        default:
            throw CopyError(message: "unknown reply type \(node.pointee.type)")
        }
    }
}

extension Duration {
    /// Whole milliseconds, rounded up (so a positive duration is never 0 ms).
    var roundedUpMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let perMillisecond: Int64 = 1_000_000_000_000_000
        var ms = seconds * 1000 + attoseconds / perMillisecond
        if attoseconds % perMillisecond > 0 { ms += 1 }
        return ms
    }

    var cTimeval: timeval {
        let (seconds, attoseconds) = components
        return timeval(
            tv_sec: numericCast(max(seconds, 0)),
            tv_usec: numericCast(max(attoseconds / 1_000_000_000_000, 0)))
    }
}
