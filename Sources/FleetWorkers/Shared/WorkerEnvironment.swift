import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import RedisStore

/// Reads a worker's settings from the environment (docs/configuration.md lists every variable), with a
/// clear error naming the variable when one is missing or malformed. Secrets in URLs never appear in
/// the errors.
public struct WorkerEnvironment: Sendable {
    public let values: [String: String]
    public let kind: String

    public init(kind: String, values: [String: String] = ProcessInfo.processInfo.environment) {
        self.kind = kind
        self.values = values
    }

    public func string(_ name: String) -> String? {
        guard let v = values[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
        return v
    }

    public func required(_ name: String, hint: String) throws -> String {
        guard let v = string(name) else { throw ConfigurationError("\(name) is not set: \(hint)") }
        return v
    }

    public func seconds(_ name: String, default value: Double) throws -> Double {
        guard let text = string(name) else { return value }
        guard let v = Double(text), v > 0, v.isFinite else {
            throw ConfigurationError("\(name) must be a positive number of seconds, not '\(text)'")
        }
        return v
    }

    public func int(_ name: String, default value: Int) throws -> Int {
        guard let text = string(name) else { return value }
        guard let v = Int(text), v > 0 else {
            throw ConfigurationError("\(name) must be a positive whole number, not '\(text)'")
        }
        return v
    }

    public func double(_ name: String, default value: Double) throws -> Double {
        guard let text = string(name) else { return value }
        guard let v = Double(text), v.isFinite else {
            throw ConfigurationError("\(name) must be a number, not '\(text)'")
        }
        return v
    }

    public func list(_ name: String) -> [String] {
        (string(name) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
    }

    /// `<kind>@<host>-<pid>`, or WORKER_ID.
    public var workerId: String {
        string("WORKER_ID")
            ?? "\(kind)@\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// FLEET_PREFIX (default `recovery`) names the exchange, the queues and the Redis keys, so two fleets
    /// can share a broker and a Redis.
    public var prefix: String { string("FLEET_PREFIX") ?? "recovery" }
    public var topology: FleetTopology { FleetTopology(prefix: prefix) }
    public var keyspace: RedisKeyspace { RedisKeyspace(prefix: "\(prefix):") }

    /// AMQP_URL (one broker, or the nodes of a cluster separated by commas), AMQP_HEARTBEAT, AMQP_CA_FILE,
    /// and AMQP_TOPOLOGY: `verify` (the default: check that the exchanges and queues the deployment created
    /// exist, which needs no configure permission) or `declare` (create them, for a development broker
    /// where the worker's user may).
    public func amqp() throws -> AMQPConfiguration {
        let nodes = try AMQPURL.list(
            required(
                "AMQP_URL",
                hint:
                    "the broker, e.g. amqp://fleet-probe:password@rabbitmq:5672/%2f, or a cluster's nodes separated by commas"
            ))
        let modeText = string("AMQP_TOPOLOGY") ?? AMQPConfiguration.TopologyMode.verify.rawValue
        guard let mode = AMQPConfiguration.TopologyMode(rawValue: modeText.lowercased()) else {
            throw ConfigurationError("AMQP_TOPOLOGY must be verify or declare, not '\(modeText)'")
        }
        return AMQPConfiguration(
            nodes: nodes, heartbeat: try int("AMQP_HEARTBEAT", default: AMQPConfiguration.defaultHeartbeat),
            connectionName: workerId,
            caFile: string("AMQP_CA_FILE"), topologyMode: mode)
    }

    /// Which broker users belong to which kind: PROBE_USERS, PREDICTOR_USERS, DECISION_USERS,
    /// ACTUATOR_USERS, NOTIFIER_USERS, RECORDER_USERS (default `fleet-<kind>`) and OPERATORS (no default).
    public var identities: FleetIdentities { FleetIdentities.fromEnvironment(values) }

    /// Refuses to start a worker whose broker identity defeats the trust boundary (docs/security.md):
    /// logged in as the broker's administrator (RABBITMQ_ADMIN_USER, or `guest`), or as a user the
    /// consumers do not accept for this kind (everything it sends would be refused). A user that also
    /// belongs to another kind is only warned about.
    public func checkIdentity(_ amqp: AMQPConfiguration, role: FleetRole, logger: Logger) throws {
        let user = amqp.url.user
        let admins = Set(["guest"] + list("RABBITMQ_ADMIN_USER"))
        if admins.contains(user) {
            throw ConfigurationError(
                "\(role.rawValue) logs in to the broker as '\(user)', an administrator: give it its own user with only this kind's permissions (\(role.defaultUser), created by recoveryctl topology apply --identities; docs/security.md)"
            )
        }
        let identities = self.identities
        guard identities.users[role]?.contains(user) == true else {
            let accepted = (identities.users[role] ?? []).sorted().joined(separator: ", ")
            throw ConfigurationError(
                "\(role.rawValue) logs in to the broker as '\(user)', but \(role.usersVariable) lists \(accepted.isEmpty ? "nobody" : accepted): consumers would refuse what it sends. Use the kind's own user or add it to \(role.usersVariable) everywhere"
            )
        }
        let others = identities.roles(of: user).filter { $0 != role }
        if !others.isEmpty {
            logger.critical(
                "this worker's broker user also belongs to other kinds: a compromise of one is a compromise of all (docs/security.md)",
                metadata: [
                    "user": "\(user)", "kinds": "\(([role] + others).map(\.rawValue).joined(separator: ","))",
                ])
        }
    }

    /// REDIS_URL, and with REDIS_SENTINELS the Sentinels that name its primary (the URL then gives only the
    /// user, password and database). REDIS_WAIT_REPLICAS > 0 makes lock acquisitions and compare-and-sets
    /// wait for that many replicas (REDIS_WAIT_TIMEOUT seconds) and fail closed (docs/scaling.md).
    public func redis(logger: Logger) throws -> RedisClient {
        let url = try RedisURL(required("REDIS_URL", hint: "e.g. redis://:password@redis:6379/0"))
        var options = RedisClient.Options(clientName: workerId, sentinel: try redisSentinel())
        options.replicas = try wholeNumber("REDIS_WAIT_REPLICAS")
        // WAIT shares the command timeout's socket deadline, and WAIT n 0 would block for ever.
        let wait = try seconds("REDIS_WAIT_TIMEOUT", default: 1)
        let waitTimeout = Duration.milliseconds(Int64(wait * 1000))
        guard wait >= 0.001, waitTimeout < options.commandTimeout else {
            throw ConfigurationError(
                "REDIS_WAIT_TIMEOUT must be at least 0.001 s and less than the Redis command timeout (\(options.commandTimeout)), not \(wait)"
            )
        }
        options.replicaTimeout = waitTimeout
        return RedisClient(url: url, options: options, logger: logger)
    }

    public func redisSentinel() throws -> RedisSentinelConfiguration? {
        guard let list = string("REDIS_SENTINELS") else { return nil }
        do {
            return try RedisSentinelConfiguration(
                list: list, masterName: string("REDIS_SENTINEL_MASTER") ?? "fleet",
                user: string("REDIS_SENTINEL_USER"), password: string("REDIS_SENTINEL_PASSWORD"))
        } catch {
            throw ConfigurationError("\(error.message) (REDIS_SENTINELS, REDIS_SENTINEL_MASTER, docs/configuration.md)")
        }
    }

    /// A whole number ≥ 0 (0 when unset).
    public func wholeNumber(_ name: String) throws -> Int {
        guard let text = string(name) else { return 0 }
        guard let v = Int(text), v >= 0 else {
            throw ConfigurationError("\(name) must be a whole number ≥ 0, not '\(text)'")
        }
        return v
    }

    public func aws(http: any HTTPExecuting, logger: Logger) throws -> AWSClient {
        try AWSClient.fromEnvironment(values, http: http, logger: logger)
    }

    public func targetsFile() throws -> TargetConfigFile {
        guard let path = string("TARGETS_FILE") else { return .empty }
        return try TargetConfigFile.load(path: path)
    }

    /// TARGETS_FILE with the INSTANCE_CONFIG_TABLE laid over it, when that is set.
    public func targetConfigSource(aws: AWSClient, logger: Logger) throws -> TargetConfigSource {
        let table = string("INSTANCE_CONFIG_TABLE").map {
            TargetConfigTable(dynamo: DynamoDBClient(aws), tableName: $0)
        }
        return TargetConfigSource(file: try targetsFile(), table: table, logger: logger)
    }

    public var drRegion: String? { string("DR_REGION") }

    /// FLEET_TAG: only instances tagged `AutoRecovery:Fleet=<value>` are this fleet's targets.
    public var fleetTag: String? { string("FLEET_TAG") }
}
