import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RedisStore

/// What recoveryctl connects to, from the same environment variables the workers read
/// (docs/configuration.md): AMQP_URL, REDIS_URL, FLEET_PREFIX, FLEET_TAG, AWS_*, TARGETS_FILE,
/// INSTANCE_CONFIG_TABLE, RECOVERY_EVENTS_TABLE, DR_*. Each connection is made on first use, so a
/// command needs only the variables it uses.
public final class ControlContext: Sendable {
    public let env: WorkerEnvironment
    public let logger: Logger
    let http: HTTPClient
    private let redisClient = LazyBox<RedisClient>()

    public init(values: [String: String] = ProcessInfo.processInfo.environment) {
        env = WorkerEnvironment(kind: "recoveryctl", values: values)
        var logger = Logger(label: "recoveryctl")
        logger.logLevel = Logger.Level(rawValue: env.string("LOG_LEVEL")?.lowercased() ?? "") ?? .error
        self.logger = logger
        http = HTTPClient(logger: logger)
    }

    public var topology: FleetTopology { env.topology }

    /// The broker configuration. Connection name `recoveryctl@<host>-<pid>` unless WORKER_ID is set.
    public func amqp() throws -> AMQPConfiguration {
        var configuration = try env.amqp()
        // A CLI should fail fast: a few quick reconnects, not a worker's patient backoff.
        configuration.reconnectInitialDelay = .milliseconds(200)
        configuration.reconnectMaxDelay = .seconds(2)
        configuration.connectTimeout = .seconds(5)
        return configuration
    }

    /// The RabbitMQ user of AMQP_URL: the identity the broker stamps on (and checks in) `user_id`.
    public func amqpUser() throws -> String { try amqp().url.user }

    public func redis() async throws -> RedisClient {
        try await redisClient.get { try env.redis(logger: logger) }
    }

    public func aws() throws -> AWSClient { try env.aws(http: http, logger: logger) }

    public func configTable() throws -> TargetConfigTable {
        let name = try env.required(
            "INSTANCE_CONFIG_TABLE", hint: "the DynamoDB table of per-target settings (docs/configuration.md)")
        return TargetConfigTable(dynamo: DynamoDBClient(try aws()), tableName: name)
    }

    public func eventsTable() throws -> String {
        try env.required("RECOVERY_EVENTS_TABLE", hint: "the DynamoDB table of recovery history (docs/history.md)")
    }

    /// Discovers the fleet's targets as the workers do (EC2 tags + TARGETS_FILE + INSTANCE_CONFIG_TABLE).
    public func catalog() throws -> TargetCatalog {
        let aws = try aws()
        return TargetCatalog(
            ec2: EC2Client(aws), drRegion: env.drRegion, source: try env.targetConfigSource(aws: aws, logger: logger),
            fleet: env.fleetTag, logger: logger)
    }

    public func close() async {
        if let redis = redisClient.current { await redis.close() }
        http.shutdown()
    }
}

/// A value made once, on first use.
final class LazyBox<Value: Sendable>: @unchecked Sendable {
    // Invariant: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value: Value?

    var current: Value? { lock.withLock { value } }

    func get(_ make: () throws -> Value) async throws -> Value {
        try lock.withLock {
            if let value { return value }
            let made = try make()
            value = made
            return made
        }
    }
}
