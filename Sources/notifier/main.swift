// The notifier worker: wiring only. See FleetWorkers/Notifier/NotifierWorker.swift and
// docs/notifications.md.
import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RedisStore

let registry = WorkerRuntime.bootstrap()
let env = WorkerEnvironment(kind: "notifier")
let logger = Logger(label: "notifier")
do {
    let http = HTTPClient(logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let redis = try env.redis(logger: logger)
    let redisHealth = RedisHealth(client: redis)
    let topology = env.topology
    let amqp = try env.amqp()
    try env.checkIdentity(amqp, role: .notifier, logger: logger)
    let formatter = NoticeFormatter(
        defaultRegion: aws.region, fleetConsoleURL: env.string("FLEET_CONSOLE_URL"),
        slackButtons: env.string("SLACK_BUTTONS")?.lowercased() == "true")
    let defaults = try env.notificationDefaults()
    let channels = try env.notificationChannels(http: http, aws: aws, formatter: formatter)
    // Each target's own channels (`notify` in TARGETS_FILE / INSTANCE_CONFIG_TABLE) over the defaults.
    let router = TargetChannelRouter(
        defaults: defaults, source: try env.targetConfigSource(aws: aws, logger: logger), http: http, aws: aws,
        formatter: formatter, refresh: .seconds(try env.int("NOTIFY_CONFIG_REFRESH", default: 30)), logger: logger)
    var options = NotifierWorker.Options(workerId: env.workerId)
    options.enabled = try env.notificationEnabled()
    options.maxAttempts = try env.int("NOTIFY_MAX_ATTEMPTS", default: 3)
    if options.enabled && channels.isEmpty {
        logger.warning(
            "no fleet-wide notification channel is configured (NOTIFY_EMAIL_*, SLACK_WEBHOOK_URL, TEAMS_WEBHOOK_URL, SNS_TOPIC_ARN): only targets with their own notify settings are told anything"
        )
    }
    logger.info(
        "notifier channels: \(channels.map(\.name).joined(separator: ", "))",
        metadata: ["enabled": "\(options.enabled)"])
    let publisher = AMQPPublisher(configuration: amqp, topology: topology.amqp, logger: logger)
    let notifications = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.notificationsQueue, logger: logger)
    let deadLetters = DeadLetterSink(publisher: publisher, topology: topology, workerName: env.workerId)
    let worker = NotifierWorker(
        options: options, router: router, markers: RedisKeyValueStore(client: redis, keyspace: env.keyspace),
        deadLetters: deadLetters, queue: topology.notificationsQueue, logger: logger)
    try await WorkerRuntime.run(
        worker: "notifier",
        services: worker.services(
            notifications: notifications, identities: env.identities, ownUser: amqp.url.user,
            clients: ClientService.workerClients(redis: redis, http: http, publisher: publisher),
            monitors: [LoopService(run: { await redisHealth.run() })]),
        registry: registry,
        readiness: ["broker": { publisher.isConnected && notifications.isConnected }, "redis": { redisHealth.isReady }])
} catch {
    logger.critical("notifier cannot start: \(error)")
    exit(1)
}
