import RecoveryCore

/// One broker user's RabbitMQ permissions on the fleet's vhost: the configure/write/read regular
/// expressions over exchange and queue names, and topic permissions, which limit by routing key what the
/// user may publish to (write) or bind from (read) a topic exchange. The broker itself then refuses
/// (ACCESS_REFUSED) what a kind may not do. See docs/security.md.
public struct BrokerPermissions: Sendable, Equatable {
    public struct Topic: Sendable, Equatable {
        public var exchange: String
        public var write: String
        public var read: String
    }

    public var configure: String
    public var write: String
    public var read: String
    public var topics: [Topic]
    /// RabbitMQ user tags: `management` lets operators use the management UI; workers have none.
    public var tags: [String]
}

extension FleetTopology {
    /// Least privilege for each kind, derived from the topology so that a test prefix gets the same
    /// shape. Workers need no configure permission at all: they only check, by passive declares, that
    /// the deployment created their exchanges and queues (AMQP_TOPOLOGY=verify). Every consumer may write
    /// to the dead-letter exchange, only with its own queue's name as routing key.
    public func permissions(for role: FleetRole) -> BrokerPermissions {
        let p = Self.regexEscaped(prefix)
        let dlx = deadLetterExchange
        func only(_ names: [String]) -> String {
            names.isEmpty ? "^$" : "^(" + names.map(Self.regexEscaped).joined(separator: "|") + ")$"
        }
        func keys(_ types: [MessageType]) -> String {
            types.isEmpty ? "^$" : "^(" + types.map { Self.regexEscaped($0.rawValue) }.joined(separator: "|") + ")\\."
        }
        let consumes: [String] =
            switch role {
            case .probe: []
            case .predictor: [predictionRequestsQueue]
            case .decision: [observationsQueue, commandsQueue]
            case .actuator: [actionRequestsQueue]
            case .notifier: [notificationsQueue]
            case .recorder: [historyQueue]
            case .operator, .console: []
            }
        if role == .operator || role == .console {
            // recoveryctl: publishes commands and prediction requests, and follows a command's answer on
            // a private queue bound to notices, outcomes and the commands' dead letters. That queue is
            // named by the broker (`amq.gen-…`): configure on a name of the operator's choosing would also
            // let it create an exchange of that name, bind it to the fleet exchange and publish through
            // it with no topic permission at all. No client may declare an `amq.` exchange. It may read
            // the dead-letter queues (runbooks); it cannot touch work queues. The console follows its commands
            // the same way, but reads no dead-letter queue and has no management UI.
            let replies = "amq\\.gen-.+"
            let deadLetters = role == .operator ? "|\(p)\\..+\\.dead" : ""
            return BrokerPermissions(
                configure: "^\(replies)$",
                write: "^(\(p)|\(replies))$",
                read: "^(\(p)|\(Self.regexEscaped(dlx))|\(replies)\(deadLetters))$",
                topics: [
                    .init(exchange: exchange, write: keys(role.sends), read: keys([.notification, .actionEvent])),
                    .init(exchange: dlx, write: "^$", read: only([commandsQueue])),
                ],
                tags: role == .operator ? ["management"] : [])
        }
        let publishes = !role.sends.isEmpty
        let writes = (publishes ? [exchange] : []) + (consumes.isEmpty ? [] : [dlx])
        return BrokerPermissions(
            configure: "^$",
            write: only(writes),
            read: only(consumes),
            topics: [
                .init(exchange: exchange, write: keys(role.sends), read: "^$"),
                .init(exchange: dlx, write: only(consumes), read: "^$"),
            ],
            tags: [])
    }

    static func regexEscaped(_ text: String) -> String {
        var out = ""
        for c in text {
            if "\\^$.|?*+()[]{}".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
