// The predictor worker: wiring only. See FleetWorkers/Predictor/PredictorWorker.swift and docs/prediction.md.
import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RedisStore

let registry = WorkerRuntime.bootstrap()
let env = WorkerEnvironment(kind: "predictor")
let logger = Logger(label: "predictor")
do {
    let http = HTTPClient(logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let redis = try env.redis(logger: logger)
    let redisHealth = RedisHealth(client: redis)
    let topology = env.topology
    let amqp = try env.amqp()
    try env.checkIdentity(amqp, role: .predictor, logger: logger)
    let publisher = AMQPPublisher(configuration: amqp, topology: topology.amqp, logger: logger)
    let requests = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.predictionRequestsQueue, logger: logger)
    let ec2 = EC2Client(aws)
    let catalog = TargetCatalog(
        ec2: ec2, drRegion: env.drRegion, source: try env.targetConfigSource(aws: aws, logger: logger),
        fleet: env.fleetTag, logger: logger)
    let worker = PredictorWorker(
        options: try env.predictorOptions(), discover: { try await catalog.discover() },
        cloudWatch: CloudWatchClient(aws),
        claims: RedisKeyValueStore(client: redis, keyspace: env.keyspace), publisher: publisher, topology: topology,
        logger: logger)
    // Prediction requests only from operators.
    try await WorkerRuntime.run(
        worker: "predictor",
        services: worker.services(
            requests: requests, identities: env.identities, ownUser: amqp.url.user,
            clients: ClientService.workerClients(redis: redis, http: http, publisher: publisher),
            monitors: [LoopService(run: { await redisHealth.run() })]),
        registry: registry,
        readiness: ["broker": { publisher.isConnected && requests.isConnected }, "redis": { redisHealth.isReady }])
} catch {
    logger.critical("predictor cannot start: \(error)")
    exit(1)
}
