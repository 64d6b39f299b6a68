// The pipelined path of RedisClient (RedisClient.swift, "auto-pipelining"). Runs on the client's queue only.
extension RedisClient {
    /// Several callers' commands as one pipeline: all are written, then the replies read in order. Each
    /// command keeps the rules of a single one (`execute`): its own error reply is its own; a replicated
    /// write is followed by its `WAIT`; when the connection breaks while replies are outstanding, those
    /// commands may or may not have run, so only the idempotent ones are sent again (and a `READONLY`
    /// one, which did not run), each on its own after a reconnect.
    /// Each caller is answered as soon as its reply is read (a blocking command further down the pipeline
    /// does not hold up the replies before it).
    func executePipeline(_ batch: [Request]) {
        guard !isClosed else {
            for request in batch {
                request.reply.resume(returning: .failure(closedError(RedisConnection.name(request.args))))
            }
            return
        }
        let link: RedisConnection
        do { link = try healthyConnection(command: nil) } catch {
            for request in batch {
                let name = RedisConnection.name(request.args)
                request.reply.resume(
                    returning: .failure(
                        RedisError(
                            kind: error.kind, message: error.message, endpoint: error.endpoint, command: name,
                            user: error.user)))
            }
            return
        }
        var sent = 0
        var waitNotQueued: RedisError?
        for request in batch {
            do {
                try link.append(request.args)
            } catch { break }  // not queued; it and the ones after it are sent on their own below
            sent += 1
            guard request.replicated && options.replicas > 0 else { continue }
            do { try link.append(waitCommand) } catch {
                // The command is queued without its WAIT: its reply is read below (unchecked replication), and
                // nothing more goes on this connection (a resend on it would be answered out of step).
                waitNotQueued = error
                break
            }
        }
        // Commands to send again once every reply is read, with the error of their first attempt (nil: never
        // sent).
        var later: [(Request, RedisError?)] = batch.dropFirst(sent).map { ($0, nil) }
        var broken: RedisError?
        var refused = false
        for (index, request) in batch.prefix(sent).enumerated() {
            if let broken {
                // Its reply never came because the connection was dropped for an earlier command (which may
                // have timed out or been garbled): it may or may not have run, as after any broken
                // connection, so it is resent only if idempotent. The error names this command.
                let name = RedisConnection.name(request.args)
                later.append(
                    (
                        request,
                        RedisError(
                            kind: .connection,
                            message:
                                "the connection was dropped when an earlier command in its pipeline failed (\(broken.message))",
                            endpoint: broken.endpoint, command: name, user: broken.user)
                    ))
                continue
            }
            var result: Result<RedisValue, RedisError>
            do {
                result = .success(try link.readReply(command: RedisConnection.name(request.args)))
            } catch  where error.dropsConnection && !error.isRefusedWrite {
                broken = error
                later.append((request, error))
                continue
            } catch {
                result = .failure(error)
            }
            if let waitNotQueued, index == sent - 1 {
                if case .success = result { result = .failure(waitFailed(waitNotQueued)) }
            } else if request.replicated && options.replicas > 0 {
                do {
                    let acknowledged = try link.readReply(command: "WAIT").integer ?? -1
                    if case .success = result, let shortfall = replicationShortfall(acknowledged) {
                        result = .failure(shortfall)
                    }
                } catch {
                    if error.kind != .server { broken = error }
                    if case .success = result { result = .failure(waitFailed(error)) }
                }
            }
            if case .failure(let error) = result, error.isRefusedWrite {
                refused = true
                later.append((request, error))
            } else {
                request.reply.resume(returning: result)
            }
        }
        if broken != nil || refused || waitNotQueued != nil { connection = nil }
        for (request, error) in later {
            request.reply.resume(
                returning: Result { () throws(RedisError) in
                    guard let error else { return try execute(request) }
                    return try resend(request, after: error)
                })
        }
    }

    var waitCommand: [[UInt8]] {
        ["WAIT", String(options.replicas), String(options.replicaTimeout.roundedUpMilliseconds)].map {
            Array($0.utf8)
        }
    }

    /// `.notReplicated` when fewer than `options.replicas` acknowledged.
    func replicationShortfall(_ acknowledged: Int64) -> RedisError? {
        guard acknowledged < options.replicas else { return nil }
        let timeout = options.replicaTimeout.roundedUpMilliseconds
        return RedisError(
            kind: .notReplicated,
            message:
                "\(max(acknowledged, 0)) of \(options.replicas) replicas acknowledged the write within \(timeout) ms: a fail-over now could lose it",
            endpoint: connectedEndpoint, command: "WAIT", user: url.user)
    }

    /// What a failed `WAIT` makes of the write before it: a server refusal (NOPERM: an ACL without +wait) is a
    /// setting to fix and passes through; anything else means the replication could not be checked.
    func waitFailed(_ error: RedisError) -> RedisError {
        if error.kind == .server { return error }
        return RedisError(
            kind: .notReplicated,
            message: "the write was made but its replication could not be checked: \(error.message)",
            endpoint: connectedEndpoint, command: "WAIT", user: url.user)
    }
}
