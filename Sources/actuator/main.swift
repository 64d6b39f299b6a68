// The actuator worker: wiring only. See FleetWorkers/Actuator/ActuatorWorker.swift and docs/actuator.md
// (every environment variable is listed there).
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
let env = WorkerEnvironment(kind: "actuator")
let logger = Logger(label: "actuator")

func duration(_ seconds: Double) -> Duration { .milliseconds(Int64(seconds * 1000)) }

do {
    let http = HTTPClient(logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let redis = try env.redis(logger: logger)
    let redisHealth = RedisHealth(client: redis)
    let topology = env.topology
    let amqp = try env.amqp()
    try env.checkIdentity(amqp, role: .actuator, logger: logger)
    let config = try ActuatorConfig.fromEnvironment(env, aws: aws, logger: logger)

    var options = ActuatorWorker.Options(workerId: env.workerId)
    options.maxConcurrentSteps = try env.int("ACTUATOR_CONCURRENCY", default: 4)
    options.lockTTL = duration(try env.seconds("LOCK_TTL", default: 60))
    options.lockRetryInterval = duration(try env.seconds("LOCK_RETRY_INTERVAL", default: 5))
    options.lockWaitLimit = duration(try env.seconds("LOCK_WAIT_LIMIT", default: 1200))
    options.sweepInterval = duration(try env.seconds("ACTUATOR_SWEEP_INTERVAL", default: 15))
    options.restartHealthTimeout = duration(try env.seconds("RESTART_HEALTH_TIMEOUT", default: 180))
    options.rebootSettle = duration(try env.seconds("REBOOT_SETTLE", default: 30))
    options.healthPollInterval = duration(try env.seconds("HEALTH_POLL_INTERVAL", default: 10))
    options.healthCheckTimeout = duration(try env.seconds("HEALTH_CHECK_TIMEOUT", default: 10))
    options.waitInterval = duration(try env.seconds("WAIT_INTERVAL", default: 15))
    options.instanceWaitTimeout = duration(try env.seconds("INSTANCE_WAIT_TIMEOUT", default: 600))
    options.imageWaitTimeout = duration(try env.seconds("IMAGE_WAIT_TIMEOUT", default: 1800))
    options.dnsWaitTimeout = duration(try env.seconds("DNS_WAIT_TIMEOUT", default: 300))
    options.maxAttempts = try env.int("MAX_ATTEMPTS", default: 4)
    options.retryDelay = duration(try env.seconds("RETRY_DELAY", default: 5))
    options.ssmDocumentPrefix = env.string("SSM_DOCUMENT_PREFIX") ?? options.ssmDocumentPrefix
    options.ssmCommandTimeout = duration(try env.seconds("SSM_COMMAND_TIMEOUT", default: 120))

    let publisher = AMQPPublisher(configuration: amqp, topology: topology.amqp, logger: logger)
    let requests = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.actionRequestsQueue,
        prefetch: UInt16(clamping: options.maxConcurrentSteps), logger: logger)
    let ec2 = EC2Client(aws)
    let route53 = Route53Client(aws)
    let worker = ActuatorWorker(
        options: options, ec2: ec2, route53: route53, ssm: SSMClient(aws), http: http,
        locks: RedisLockStore(client: redis, keyspace: env.keyspace),
        records: StepRecordStore(states: RedisStateStore(client: redis, keyspace: env.keyspace)),
        aborts: RedisKeyValueStore(client: redis, keyspace: env.keyspace), publisher: publisher, topology: topology,
        config: config,
        openSteps: RedisSchedule(client: redis, keyspace: env.keyspace, name: "actuator-open-steps"), logger: logger)
    let deadLetters = DeadLetterSink(publisher: publisher, topology: topology, workerName: env.workerId)
    // Action requests only from decision identities: nothing else may make the actuator act.
    let senders = SenderGate(
        identities: env.identities, ownUser: amqp.url.user, logger: logger,
        announce: EnvelopePublisher(publisher: publisher, topology: topology, producer: env.workerId, appId: "actuator")
            .announcingRefusals())

    var preflightOptions = DRPreflight.Options()
    preflightOptions.maxSnapshotAge = try env.seconds("SNAPSHOT_MAX_AGE", default: 26 * 3600)
    let preflightEnabled = env.string("PREFLIGHT")?.lowercased() != "off"
    let catalog = TargetCatalog(
        ec2: ec2, drRegion: env.drRegion, source: config.source ?? .fixed(config.file), fleet: env.fleetTag,
        logger: logger)
    let preflight = ScheduledPreflight(
        preflight: DRPreflight(ec2: ec2, route53: route53, config: config, options: preflightOptions, logger: logger),
        catalog: { try await catalog.discover() }, claims: RedisKeyValueStore(client: redis, keyspace: env.keyspace),
        publisher: publisher, topology: topology,
        interval: duration(try env.seconds("PREFLIGHT_INTERVAL", default: 86_400)),
        workerId: env.workerId, logger: logger)

    // Graceful shutdown runs in reverse order (ActuatorWorker.services): first the request consumer
    // (in-flight steps finish or are handed back), then the open-steps sweep and the pre-flight, then the
    // clients close.
    try await WorkerRuntime.run(
        worker: "actuator",
        services: worker.services(
            clients: [
                ClientService("redis") { await redis.close() },
                ClientService("http") { http.shutdown() },
                ClientService("broker publisher") { await publisher.shutdown() },
            ],
            background: [
                LoopService(run: { await redisHealth.run() }),
                LoopService(run: {
                    if preflightEnabled { await preflight.run() }
                    while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                }),
                worker.sweepService(),
            ],
            requests: requests, stopRequests: { await requests.shutdown(drainTimeout: .seconds(30)) },
            deadLetters: deadLetters, senders: senders),
        registry: registry,
        readiness: ["broker": { publisher.isConnected && requests.isConnected }, "redis": { redisHealth.isReady }])
} catch {
    logger.critical("actuator cannot start: \(error)")
    exit(1)
}
