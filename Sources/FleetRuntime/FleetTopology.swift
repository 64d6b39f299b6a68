import AMQPTransport
import RecoveryCore

/// The fleet's RabbitMQ topology, the single source of truth for both what workers declare at start-up
/// and `topology/definitions.json` (a test checks that the file matches this value).
///
/// One topic exchange carries all work; each worker kind has one quorum queue bound by message type.
/// Every work queue dead-letters to `<prefix>.dlx` with its own name as routing key, which lands in
/// `<queue>.dead`. Names read as `<prefix>.<consumer>.<what>` in the management UI.
public struct FleetTopology: Sendable {
    public let prefix: String
    public let deliveryLimit: Int64

    /// `prefix` is `recovery` in production; tests pass a unique one so runs never collide.
    public init(prefix: String = "recovery", deliveryLimit: Int64 = 5) {
        self.prefix = prefix
        self.deliveryLimit = deliveryLimit
    }

    /// The exchange every worker publishes to.
    public var exchange: String { prefix }
    public var deadLetterExchange: String { "\(prefix).dlx" }

    public var observationsQueue: String { "\(prefix).decision.observations" }
    public var commandsQueue: String { "\(prefix).decision.commands" }
    public var actionRequestsQueue: String { "\(prefix).actuator.requests" }
    public var notificationsQueue: String { "\(prefix).notifier.notifications" }
    public var historyQueue: String { "\(prefix).recorder.history" }
    public var predictionRequestsQueue: String { "\(prefix).predictor.requests" }

    public static func deadLetterQueue(for queue: String) -> String { "\(queue).dead" }

    /// Queue name -> routing-key patterns bound to it.
    public var workQueues: [(queue: String, patterns: [String])] {
        [
            (observationsQueue, ["observation.#", "prediction.#", "action.event.#"]),
            (commandsQueue, ["command.#"]),
            (actionRequestsQueue, ["action.request.#"]),
            (notificationsQueue, ["notification.#"]),
            (historyQueue, ["event.#", "command.#", "action.#", "notification.#", "prediction.#"]),
            (predictionRequestsQueue, ["predict.#"]),
        ]
    }

    /// The routing key for a message: `<type>.<target>` (the target lets an operator bind a debugging
    /// queue to one site with `*.shop-web`).
    public static func routingKey(_ type: MessageType, target: String?) -> String {
        type.routingKey(target: target)
    }

    public var amqp: AMQPTopology {
        var topology = AMQPTopology(
            exchanges: [.init(name: exchange), .init(name: deadLetterExchange)],
            policies: [
                // Spread quorum-queue leaders over the cluster's nodes instead of piling them on the
                // node each worker happened to connect to first.
                .init(
                    name: "\(prefix)-leaders-balanced", pattern: "^\(prefix)\\.",
                    definition: [
                        "queue-leader-locator": "balanced"
                    ])
            ])
        for (queue, patterns) in workQueues {
            let dead = Self.deadLetterQueue(for: queue)
            topology.queues.append(.quorum(queue, deliveryLimit: deliveryLimit, deadLetterExchange: deadLetterExchange))
            topology.queues.append(.deadLetter(dead))
            topology.bindings += patterns.map { .init(exchange: exchange, queue: queue, routingKey: $0) }
            topology.bindings.append(.init(exchange: deadLetterExchange, queue: dead, routingKey: queue))
        }
        return topology
    }
}
