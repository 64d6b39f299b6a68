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
    let log: RequestLog
    let redis: RedisClient
    let publisher: AMQPPublisher
    let consumers: [AMQPConsumer]
    let running: Task<Void, Never>
    let server: ConsoleServer
    let dynamo: DynamoDBClient
    let eventsTable: String
    /// The instance-config table the console writes maintenance windows to.
    let configTable: TargetConfigTable
    static let slackSecret = "slack-signing-secret-for-tests"
    static let passwords = ["alice": "alice-password-1", "bob": "bob-password-123"]

    init() async throws {
        world = try World()
        site = try await FakeSite()
        site.set(healthy: false)
        name = "\(world.prefix)-shop"
        log = RequestLog(world.http)
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: log, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
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
        redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let sink = DeadLetterSink(publisher: publisher, topology: topology, workerName: "console-fleet")
        let config = try TargetConfigFile(
            data: Data(#"{"defaults": {"failure_threshold": 2, "grace_period": 1, "requires_approval": true}}"#.utf8))
        let catalog = TargetCatalog(ec2: world.ec2, drRegion: nil, config: config, fleet: world.prefix, logger: logger)
        var options = DecisionWorker.Options(workerId: "decision-console")
        options.operators = ["alice"]
        options.consoleUsers = ["guest"]
        options.tick = .milliseconds(200)
        let decision = DecisionWorker(
            options: options, states: RedisStateStore(client: redis, keyspace: world.keyspace),
            schedule: RedisSchedule(client: redis, keyspace: world.keyspace, name: "decision"), publisher: publisher,
            topology: topology, catalog: { try await catalog.discover() }, defaultRegion: "us-east-1", logger: logger)
        try await decision.refreshCatalog()
        let observations = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.observationsQueue)
        let commands = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.commandsQueue)
        let requests = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let history = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.historyQueue)
        consumers = [observations, commands, requests, history]
        let redis = redis
        let publisher = publisher
        let actuator = ActuatorWorker(
            options: ActuatorHarness.fastOptions("actuator-console"), ec2: EC2Client(aws), route53: Route53Client(aws),
            http: world.http, locks: RedisLockStore(client: redis, keyspace: world.keyspace),
            records: StepRecordStore(states: RedisStateStore(client: redis, keyspace: world.keyspace)),
            aborts: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
            publisher: publisher, topology: topology, config: ActuatorConfig(), logger: logger)
        var recorderOptions = RecorderWorker.Options(eventsTable: eventsTable, predictionsTable: eventsTable)
        recorderOptions.consoleUsers = ["guest"]
        let recorder = RecorderWorker(options: recorderOptions, dynamo: dynamo, logger: logger)
        running = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await MessageWorker(
                        consumer: observations, deadLetters: sink, logger: logger, senders: nil,
                        decode: DecisionWorker.decodeObservationQueue, handler: decision.handle
                    ).run()
                }
                group.addTask {
                    await MessageWorker(
                        consumer: commands, deadLetters: sink, logger: logger, senders: nil,
                        decode: DecisionWorker.decodeCommandQueue, handler: decision.handle
                    ).run()
                }
                group.addTask {
                    await MessageWorker<Envelope<ActionRequest>>(
                        consumer: requests, deadLetters: sink, expecting: .actionRequest, logger: logger, senders: nil,
                        handler: actuator.handle
                    ).run()
                }
                group.addTask {
                    await MessageWorker(
                        consumer: history, deadLetters: sink, logger: logger, senders: nil,
                        decode: RecorderWorker.decode, handler: recorder.handle
                    ).run()
                }
                group.addTask { await decision.runTicker() }
            }
        }

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
        try await poll("the fleet's consumers subscribe") { [consumers] in consumers.allSatisfy(\.isConnected) }
    }

    var url: String { "http://127.0.0.1:\(server.port)" }

    /// Two failed checks from a prober: the incident opens, and after 1 s of grace the restart waits for
    /// approval.
    func breakSite() async throws {
        for i in 0..<2 {
            let observation = Envelope(
                type: .observation, id: "\(world.prefix)-obs-\(i)", target: name, instanceId: instance.instanceId,
                occurredAt: Date(),
                body: ProbeResult(prober: "probe-console", healthy: false, statusCode: 503, detail: "HTTP 503"))
            try await publisher.publish(
                OutgoingMessage(
                    exchange: world.topology.exchange,
                    routingKey: FleetTopology.routingKey(.observation, target: name),
                    body: try EnvelopeCodec.encode(observation), properties: AMQPProperties(messageId: observation.id)))
        }
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
        running.cancel()
        for consumer in consumers { await consumer.shutdown() }
        await running.value
        _ = try? await dynamo.deleteTable(eventsTable)
        _ = try? await dynamo.deleteTable(configTable.tableName)
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}
