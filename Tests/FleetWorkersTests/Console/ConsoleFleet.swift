import AMQPTransport
import AWSClient
import FleetConsole
import FleetControl
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Testing

/// The console served on a real port in front of the real workers (decision, actuator, recorder) on the
/// test broker, Redis and moto: one target whose steps need approval, its site down. Everything logs in to
/// the broker as guest, so guest is the console's user (CONSOLE_USERS) and alice, who is on OPERATORS, has
/// no broker user at all: she can act only through the console.
final class ConsoleFleet: Sendable {
    let world: World
    let site: FakeSite
    let name: String
    let instance: EC2Instance
    let fleet: InProcessFleet
    let server: ConsoleServer
    let dynamo: DynamoDBClient
    let eventsTable: String
    /// The instance-config table the console writes maintenance windows to.
    let configTable: TargetConfigTable
    static let slackSecret = "slack-signing-secret-for-tests"
    static let passwords = ["alice": "alice-password-1", "bob": "bob-password-123"]
    static let config = #"{"defaults": {"failure_threshold": 2, "grace_period": 1, "requires_approval": true}}"#

    var log: RequestLog { fleet.log }
    var redis: RedisClient { fleet.redis }

    init() async throws {
        world = try World()
        site = try await FakeSite()
        site.set(healthy: false)
        name = "\(world.prefix)-shop"
        dynamo = DynamoDBClient(world.aws)
        eventsTable = "\(world.prefix)-events"
        _ = try await dynamo.createTable(
            CreateTableInput(
                tableName: eventsTable, partitionKey: DynamoKeyAttribute("instance_id", .string),
                sortKey: DynamoKeyAttribute("timestamp", .string)))
        configTable = TargetConfigTable(dynamo: dynamo, tableName: "\(world.prefix)-config")
        try await configTable.create()
        instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        let logger = Logger(label: "console-fleet")
        var recorder = RecorderWorker.Options(eventsTable: eventsTable, predictionsTable: eventsTable)
        recorder.consoleUsers = ["guest"]
        fleet = try await InProcessFleet(
            world, config: Self.config,
            decision: { options in
                options.operators = ["alice"]
                options.consoleUsers = ["guest"]
            }, recorder: recorder)
        let config = try TargetConfigFile(data: Data(Self.config.utf8))
        let catalog = TargetCatalog(ec2: world.ec2, drRegion: nil, config: config, fleet: world.prefix, logger: logger)
        let topology = world.topology
        let redis = fleet.redis

        // The console, wired as Sources/console/main.swift wires it.
        let accounts = try ConsoleAccounts.parse(
            Self.passwords.sorted { $0.key < $1.key }.map {
                try ConsoleAccounts.line(name: $0.key, password: $0.value, iterations: 1000)
            }.joined(separator: "\n"), minimumIterations: 1000)
        var configuration = ConsoleConfiguration(
            accounts: accounts,
            sessions: try ConsoleSessions(secret: String(repeating: "k", count: 40), secureCookie: false),
            operators: ["alice"])
        let http = world.http
        configuration.slack = try SlackInteractivity(
            signingSecret: Self.slackSecret, people: ["UALICE": "alice"], operators: ["alice"],
            responseURLPrefix: "http://127.0.0.1:", logger: logger,
            post: { url, json in
                _ = try await http.execute(
                    HTTPRequest(method: "POST", url: url, headers: [("Content-Type", "application/json")], body: json))
            })
        let backend = LiveConsoleBackend(
            statusReader: StatusReader(
                redis: redis, keyspace: world.keyspace, discover: { try await catalog.discover() }),
            historyReader: HistoryReader(dynamo: dynamo, table: eventsTable),
            sender: CommandSender(amqp: world.amqp, topology: topology, producer: "console-test", logger: logger),
            configTable: configTable, targetsFile: config)
        server = ConsoleServer(
            app: ConsoleApp(configuration: configuration, backend: backend, logger: logger), host: "127.0.0.1", port: 0,
            logger: logger)
        try await server.start()
    }

    var url: String { "http://127.0.0.1:\(server.port)" }

    /// Two failed checks from a prober: the incident opens, and after 1 s of grace the restart waits for
    /// approval.
    func breakSite() async throws {
        try await fleet.observe(name, instance: instance.instanceId, healthy: false, count: 2)
        let reader = stateReader
        try await poll("the restart awaits approval") {
            if case .awaitingApproval? = try await reader.target(self.name)?.machine.incident?.phase { return true }
            return false
        }
    }

    var stateReader: DecisionStateReader {
        DecisionStateReader(states: RedisStateStore(client: redis, keyspace: world.keyspace))
    }

    func timeline() async throws -> [HistoryEntry] {
        try await HistoryReader(dynamo: dynamo, table: eventsTable).read(target: name, limit: nil).entries
    }

    func tearDown() async {
        await server.stop()
        await fleet.stop()
        _ = try? await dynamo.deleteTable(eventsTable)
        _ = try? await dynamo.deleteTable(configTable.tableName)
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}
