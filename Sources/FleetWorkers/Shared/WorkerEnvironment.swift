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
        guard let v = Int(text), v > 0 else { throw ConfigurationError("\(name) must be a positive whole number, not '\(text)'") }
        return v
    }

    public func double(_ name: String, default value: Double) throws -> Double {
        guard let text = string(name) else { return value }
        guard let v = Double(text), v.isFinite else { throw ConfigurationError("\(name) must be a number, not '\(text)'") }
        return v
    }

    public func list(_ name: String) -> [String] {
        (string(name) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// `<kind>@<host>-<pid>`, or WORKER_ID.
    public var workerId: String {
        string("WORKER_ID") ?? "\(kind)@\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// FLEET_PREFIX (default `recovery`) names the exchange, the queues and the Redis keys, so two fleets
    /// can share a broker and a Redis.
    public var prefix: String { string("FLEET_PREFIX") ?? "recovery" }
    public var topology: FleetTopology { FleetTopology(prefix: prefix) }
    public var keyspace: RedisKeyspace { RedisKeyspace(prefix: "\(prefix):") }

    public func amqp() throws -> AMQPConfiguration {
        let url = try AMQPURL(required("AMQP_URL", hint: "the broker, e.g. amqp://fleet:password@rabbitmq:5672/%2f"))
        return AMQPConfiguration(url: url, heartbeat: try int("AMQP_HEARTBEAT", default: 30), connectionName: workerId,
                                 caFile: string("AMQP_CA_FILE"))
    }

    public func redis(logger: Logger) throws -> RedisClient {
        let url = try RedisURL(required("REDIS_URL", hint: "e.g. redis://:password@redis:6379/0"))
        return RedisClient(url: url, options: .init(clientName: workerId), logger: logger)
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
        let table = string("INSTANCE_CONFIG_TABLE").map { TargetConfigTable(dynamo: DynamoDBClient(aws), tableName: $0) }
        return TargetConfigSource(file: try targetsFile(), table: table, logger: logger)
    }

    public var drRegion: String? { string("DR_REGION") }

    /// FLEET_TAG: only instances tagged `AutoRecovery:Fleet=<value>` are this fleet's targets.
    public var fleetTag: String? { string("FLEET_TAG") }
}
