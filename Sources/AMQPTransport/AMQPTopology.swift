import Foundation

/// Exchanges, queues and bindings that a publisher or consumer declares on every (re)connect, so that a
/// worker never depends on someone having run a setup step first. Declaration is idempotent as long as
/// the arguments match; a mismatch is a 406 PRECONDITION_FAILED, reported as a permanent error.
public struct AMQPTopology: Sendable, Equatable {
    public struct Exchange: Sendable, Equatable {
        public var name: String
        public var type: String
        public var durable: Bool
        public var isInternal: Bool
        public var arguments: [String: AMQPFieldValue]
        public init(
            name: String, type: String = "topic", durable: Bool = true, isInternal: Bool = false,
            arguments: [String: AMQPFieldValue] = [:]
        ) {
            self.name = name
            self.type = type
            self.durable = durable
            self.isInternal = isInternal
            self.arguments = arguments
        }
    }

    public struct Queue: Sendable, Equatable {
        public var name: String
        public var durable: Bool
        public var exclusive: Bool
        public var autoDelete: Bool
        public var arguments: [String: AMQPFieldValue]
        public init(
            name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
            arguments: [String: AMQPFieldValue] = [:]
        ) {
            self.name = name
            self.durable = durable
            self.exclusive = exclusive
            self.autoDelete = autoDelete
            self.arguments = arguments
        }

        /// A replicated quorum queue whose poison messages are dead-lettered after `deliveryLimit`
        /// redeliveries, at least once, to `deadLetterExchange` with the queue's own name as routing key.
        public static func quorum(_ name: String, deliveryLimit: Int64, deadLetterExchange: String) -> Queue {
            Queue(
                name: name,
                arguments: [
                    "x-queue-type": "quorum",
                    "x-delivery-limit": .int(deliveryLimit),
                    "x-dead-letter-exchange": .string(deadLetterExchange),
                    "x-dead-letter-routing-key": .string(name),
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                ])
        }

        /// A quorum queue that holds dead letters for a person to read. It dead-letters nothing further.
        public static func deadLetter(_ name: String) -> Queue {
            Queue(name: name, arguments: ["x-queue-type": "quorum"])
        }
    }

    public struct Binding: Sendable, Equatable {
        public var exchange: String
        public var queue: String
        public var routingKey: String
        public init(exchange: String, queue: String, routingKey: String) {
            self.exchange = exchange
            self.queue = queue
            self.routingKey = routingKey
        }
    }

    /// A RabbitMQ policy. Policies cannot be declared over AMQP; they live in the definitions file that an
    /// operator imports (`rabbitmqctl import_definitions` or the management UI).
    public struct Policy: Sendable, Equatable {
        public var name: String
        public var pattern: String
        public var applyTo: String
        public var priority: Int
        public var definition: [String: AMQPFieldValue]
        public init(
            name: String, pattern: String, applyTo: String = "queues", priority: Int = 0,
            definition: [String: AMQPFieldValue]
        ) {
            self.name = name
            self.pattern = pattern
            self.applyTo = applyTo
            self.priority = priority
            self.definition = definition
        }
    }

    public var exchanges: [Exchange]
    public var queues: [Queue]
    public var bindings: [Binding]
    public var policies: [Policy]

    public init(exchanges: [Exchange] = [], queues: [Queue] = [], bindings: [Binding] = [], policies: [Policy] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
        self.policies = policies
    }

    public static let empty = AMQPTopology()

    /// The topology in RabbitMQ's definitions format (what `rabbitmqctl import_definitions` and the
    /// management UI's "Import definitions" read), as pretty, key-sorted JSON.
    public func definitionsJSON(vhost: String = "/") throws -> Data {
        func json(_ args: [String: AMQPFieldValue]) -> [String: Any] { args.mapValues { $0.jsonValue } }
        let object: [String: Any] = [
            "exchanges": exchanges.map {
                [
                    "name": $0.name, "vhost": vhost, "type": $0.type, "durable": $0.durable, "auto_delete": false,
                    "internal": $0.isInternal, "arguments": json($0.arguments),
                ] as [String: Any]
            },
            "queues": queues.map {
                [
                    "name": $0.name, "vhost": vhost, "durable": $0.durable, "auto_delete": $0.autoDelete,
                    "arguments": json($0.arguments),
                ] as [String: Any]
            },
            "bindings": bindings.map {
                [
                    "source": $0.exchange, "vhost": vhost, "destination": $0.queue, "destination_type": "queue",
                    "routing_key": $0.routingKey, "arguments": [String: Any](),
                ] as [String: Any]
            },
            "policies": policies.map {
                [
                    "name": $0.name, "vhost": vhost, "pattern": $0.pattern, "apply-to": $0.applyTo,
                    "priority": $0.priority, "definition": json($0.definition),
                ] as [String: Any]
            },
        ]
        return try JSONSerialization.data(
            withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}

extension AMQPFieldValue {
    /// The value as a JSONSerialization object (definitions files, the management API).
    public var jsonValue: Any {
        switch self {
        case let .string(s): return s
        case let .int(i): return i
        case let .bool(b): return b
        case let .double(d): return d
        case let .timestamp(t): return t
        case let .bytes(b): return String(decoding: b, as: UTF8.self)
        case let .array(a): return a.map(\.jsonValue)
        case let .table(t): return t.mapValues(\.jsonValue)
        case .void: return NSNull()
        }
    }
}
