// The recorder worker: wiring only. See FleetWorkers/Recorder/RecorderWorker.swift and
// docs/notifications.md (history).
import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging

let registry = WorkerRuntime.bootstrap()
let env = WorkerEnvironment(kind: "recorder")
let logger = Logger(label: "recorder")
do {
    let http = HTTPClient(logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let topology = env.topology
    let amqp = try env.amqp()
    try env.checkIdentity(amqp, role: .recorder, logger: logger)
    let metrics = RecoveryMetrics(
        options: try env.recoveryMetricsOptions(),
        cloudWatch: env.cloudWatchMetricsEnabled ? CloudWatchClient(aws) : nil, logger: logger)
    let recorder = RecorderWorker(
        options: try env.recorderOptions(), dynamo: DynamoDBClient(aws), logger: logger, metrics: metrics)
    let publisher = AMQPPublisher(configuration: amqp, topology: topology.amqp, logger: logger)
    let history = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.historyQueue, logger: logger)
    let deadLetters = DeadLetterSink(publisher: publisher, topology: topology, workerName: env.workerId)
    // History only from the kinds that may send each type; commands from anyone, with the verified user
    // (an audit trail of attempts, refused ones included).
    try await WorkerRuntime.run(
        worker: "recorder",
        services: recorder.services(
            history: history, deadLetters: deadLetters, identities: env.identities, ownUser: amqp.url.user,
            clients: ClientService.workerClients(http: http, publisher: publisher)),
        registry: registry,
        readiness: ["broker": { publisher.isConnected && history.isConnected }])
} catch {
    logger.critical("recorder cannot start: \(error)")
    exit(1)
}
