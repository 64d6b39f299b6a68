// The decision worker: wiring only. See FleetWorkers/Decision/DecisionWorker.swift and
// docs/configuration.md.
import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore

let registry = WorkerRuntime.bootstrap()
let env = WorkerEnvironment(kind: "decision")
let logger = Logger(label: "decision")
do {
    let http = HTTPClient(logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let redis = try env.redis(logger: logger)
    let redisHealth = RedisHealth(client: redis)
    let topology = env.topology
    let amqp = try env.amqp()
    try env.checkIdentity(amqp, role: .decision, logger: logger)
    let publisher = AMQPPublisher(configuration: amqp, topology: topology.amqp, logger: logger)
    let lanes = try env.int("DECISION_LANES", default: 16)
    guard (1...256).contains(lanes) else { throw ConfigurationError("DECISION_LANES must be 1 to 256, not \(lanes)") }
    // A few deliveries waiting per lane, so a lane that finishes finds its next one already here.
    let observations = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.observationsQueue,
        prefetch: UInt16(lanes * 4), logger: logger)
    let commands = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.commandsQueue, logger: logger)
    var options = DecisionWorker.Options(workerId: env.workerId)
    options.lanes = lanes
    options.fleetMaintenance = try env.fleetMaintenance()
    options.operators = env.identities.users[.operator] ?? []
    options.consoleUsers = env.identities.users[.console] ?? []
    if options.operators.isEmpty {
        logger.warning(
            "OPERATORS is empty: every operator command (recoveryctl restart, ack, approve, brake, ...) is refused until it names the broker users allowed to send them"
        )
    } else {
        logger.info("operators: \(options.operators.sorted().joined(separator: ", "))")
    }
    options.brakeSettings.maxOutageShare = try env.double("BRAKE_MAX_OUTAGE_SHARE", default: 0.30)
    options.brakeSettings.maxDestructiveActions = try env.int("BRAKE_MAX_ACTIONS_PER_HOUR", default: 5)
    options.catalogRefresh = .milliseconds(Int64(try env.seconds("DISCOVERY_INTERVAL", default: 60) * 1000))
    let catalog = TargetCatalog(
        ec2: EC2Client(aws), drRegion: env.drRegion, source: try env.targetConfigSource(aws: aws, logger: logger),
        fleet: env.fleetTag, logger: logger)
    let worker = DecisionWorker(
        options: options, states: RedisStateStore(client: redis, keyspace: env.keyspace),
        schedule: RedisSchedule(client: redis, keyspace: env.keyspace, name: "decision"), publisher: publisher,
        topology: topology, catalog: { try await catalog.discover() }, defaultRegion: aws.region, logger: logger)
    let deadLetters = DeadLetterSink(publisher: publisher, topology: topology, workerName: env.workerId)
    // Observations only from probes, predictions from predictors, outcomes from actuators. Commands are
    // checked against OPERATORS by the worker itself, which answers the sender.
    let announce = EnvelopePublisher(
        publisher: publisher, topology: topology, producer: env.workerId, appId: "decision"
    ).announcingRefusals()
    let observationWorker = MessageWorker(
        consumer: observations, deadLetters: deadLetters, logger: logger,
        senders: SenderGate(identities: env.identities, ownUser: amqp.url.user, logger: logger, announce: announce),
        decode: DecisionWorker.decodeObservationQueue, sentAt: { $0.sentAt }, handler: worker.handle)
    let commandWorker = MessageWorker(
        consumer: commands, deadLetters: deadLetters, logger: logger,
        senders: SenderGate(
            identities: env.identities, unchecked: [.command], ownUser: amqp.url.user, logger: logger,
            announce: announce),
        decode: DecisionWorker.decodeCommandQueue, sentAt: { $0.sentAt }, handler: worker.handle)
    try await WorkerRuntime.run(
        worker: "decision",
        services: worker.services(
            clients: ClientService.workerClients(redis: redis, http: http, publisher: publisher)
                + [LoopService(run: { await redisHealth.run() })],
            observations: observationWorker, commands: commandWorker),
        registry: registry,
        readiness: [
            "broker": { publisher.isConnected && observations.isConnected && commands.isConnected },
            "redis": { redisHealth.isReady },
        ])
} catch {
    logger.critical("decision cannot start: \(error)")
    exit(1)
}
