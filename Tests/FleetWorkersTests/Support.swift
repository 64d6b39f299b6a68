import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import Prometheus
import RecoveryCore
import RedisStore
import Synchronization
import Testing

let environment = ProcessInfo.processInfo.environment
let servicesAvailable = environment["AMQP_URL"] != nil && environment["REDIS_URL"] != nil && environment["AWS_ENDPOINT_URL"] != nil

/// One isolated world per test: its own exchange, queues, Redis keys and moto resources (names carry a
/// unique prefix), torn down at the end.
struct World {
    let prefix = "it-\(UUID().uuidString.prefix(8).lowercased())"
    var topology: FleetTopology { FleetTopology(prefix: prefix) }
    var keyspace: RedisKeyspace { RedisKeyspace(prefix: "\(prefix):") }
    let amqp: AMQPConfiguration
    let redisURL: RedisURL
    let http = HTTPClient()
    let aws: AWSClient

    init() throws {
        amqp = AMQPConfiguration(url: try AMQPURL(environment["AMQP_URL"]!), connectionName: "workers-test",
                                 reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .milliseconds(500))
        redisURL = try RedisURL(environment["REDIS_URL"]!)
        aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: http, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
    }

    var ec2: EC2Client { EC2Client(aws) }

    /// Launches an instance that opts in, named `name`, with `healthURL`.
    func launchTarget(name: String, healthURL: String) async throws -> EC2Instance {
        let images = try await ec2.describeImages(owners: ["amazon"], filters: [EC2Filter("architecture", ["x86_64"])])
        let image = try #require(images.first { $0.state == "available" })
        return try await ec2.runInstance(RunInstancesInput(
            imageId: image.imageId, instanceType: "t3.micro",
            tags: ["AutoRecovery": "enabled", "AutoRecovery:Name": name, "AutoRecovery:HealthUrl": healthURL, "test-run": prefix, "AutoRecovery:Fleet": prefix]))
    }

    func tearDown(instances: [String]) async {
        _ = try? await ec2.terminateInstances(instances)
        let admin = AMQPAdmin(configuration: amqp)
        for q in topology.amqp.queues { try? await admin.deleteQueue(q.name) }
        for x in topology.amqp.exchanges { try? await admin.deleteExchange(x.name) }
        await admin.close()
        if let redis = try? await RedisClient.connect(url: redisURL) {
            var cursor = "0"
            repeat {
                guard let reply = try? await redis.command(["SCAN", cursor, "MATCH", "\(prefix):*", "COUNT", "1000"], idempotent: true),
                      let parts = reply.array, parts.count == 2, let next = parts[0].string else { break }
                let keys = parts[1].array?.compactMap(\.string) ?? []
                if !keys.isEmpty { _ = try? await redis.command(["DEL"] + keys, idempotent: true) }
                cursor = next
            } while cursor != "0"
            await redis.close()
        }
        http.shutdown()
    }
}

/// A website stand-in whose health the test switches: `/healthz` answers 200 or 503.
final class FakeSite: Sendable {
    final class Flag: Sendable {
        let value = Atomic<Bool>(true)
    }
    let healthy = Flag()
    let server: StatusServer

    init() throws {
        let flag = healthy
        server = StatusServer(host: "127.0.0.1", port: 0, registry: PrometheusCollectorRegistry(),
                              checks: ["site": { flag.value.load(ordering: .relaxed) }], logger: Logger(label: "fake-site"))
        try server.start()
    }

    var url: String { "http://127.0.0.1:\(server.port)/healthz" }
    func set(healthy: Bool) { self.healthy.value.store(healthy, ordering: .relaxed) }
    func stop() { server.stop() }
}

/// Collects decoded messages of one queue in the background.
actor Collector<Body: Codable & Sendable> {
    private(set) var items: [Envelope<Body>] = []

    init(_ consumer: AMQPConsumer, type: MessageType, onItem: (@Sendable (Envelope<Body>) async -> Void)? = nil) {
        let stream = consumer.deliveries
        Task { [weak self] in
            for await delivery in stream {
                if let envelope = try? EnvelopeCodec.decode(delivery.body, as: Body.self, expecting: type) {
                    await self?.append(envelope)
                    await onItem?(envelope)
                }
                await consumer.ack(delivery)
            }
        }
    }

    private func append(_ e: Envelope<Body>) { items.append(e) }

    /// Waits (bounded) for an item matching `predicate`; real I/O, so this polls.
    func wait(timeout: Duration = .seconds(30), for predicate: @Sendable (Envelope<Body>) -> Bool) async -> Envelope<Body>? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let found = items.first(where: predicate) { return found }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return items.first(where: predicate)
    }
}
