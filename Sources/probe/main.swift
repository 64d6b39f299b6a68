// The probe worker: wiring only. See FleetWorkers/Probe/ProbeWorker.swift and docs/configuration.md.
import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RedisStore

let registry = WorkerRuntime.bootstrap()
let env = WorkerEnvironment(kind: "probe")
let logger = Logger(label: "probe")
do {
    let http = HTTPClient(maxConcurrentRequests: try env.int("PROBE_MAX_IN_FLIGHT", default: 500), logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let redis = try env.redis(logger: logger)
    let redisHealth = RedisHealth(client: redis)
    let topology = env.topology
    let amqp = try env.amqp()
    try env.checkIdentity(amqp, role: .probe, logger: logger)
    let publisher = AMQPPublisher(configuration: amqp, topology: topology.amqp, logger: logger)
    // The prober is a vantage point: WORKER_ID, else this host (no pid), so a restarted replica is the same
    // prober to the decision's automatic quorum, and replicas on one host count as one.
    var options = ProbeWorker.Options(proberId: env.string("WORKER_ID") ?? "probe@\(ProcessInfo.processInfo.hostName)")
    options.discoveryInterval = .milliseconds(Int64(try env.seconds("DISCOVERY_INTERVAL", default: 60) * 1000))
    options.statusInterval = .milliseconds(Int64(try env.seconds("STATUS_INTERVAL", default: 60) * 1000))
    options.maxInFlight = try env.int("PROBE_MAX_IN_FLIGHT", default: 500)
    options.maxUnconfirmed = try env.int("PROBE_MAX_UNCONFIRMED", default: 500)
    options.canary = try env.probeCanary()
    let ec2 = EC2Client(aws)
    let catalog = TargetCatalog(
        ec2: ec2, drRegion: env.drRegion, source: try env.targetConfigSource(aws: aws, logger: logger),
        fleet: env.fleetTag, logger: logger)
    let worker = ProbeWorker(
        options: options, discover: { try await catalog.discover() }, http: http, ec2: ec2,
        claims: RedisKeyValueStore(client: redis, keyspace: env.keyspace), publisher: publisher,
        topology: topology, logger: logger)
    try await WorkerRuntime.run(
        worker: "probe",
        services: worker.services(
            clients: ClientService.workerClients(redis: redis, http: http, publisher: publisher),
            monitors: [LoopService(run: { await redisHealth.run() })]),
        registry: registry,
        readiness: [
            "broker": { publisher.isConnected }, "redis": { redisHealth.isReady },
            "canary": { !(worker.canary?.impaired ?? false) },
        ])
} catch {
    logger.critical("probe cannot start: \(error)")
    exit(1)
}
