import AMQPTransport
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Testing

/// Issue 14, gap 2, on the real servers: a private Redis goes away for 6 s while the decision worker
/// consumes a healthy site's observations from RabbitMQ. Measured before the fix: 7 observations in
/// `<prefix>.decision.observations.dead` (x-death `delivery_limit`). Now none, and every one is handled.
@Suite(
    "A Redis outage dead-letters nothing",
    .enabled(if: servicesAvailable, "set the services' variables (scripts/services.sh env)"))
struct RedisOutageTests {
    @Test(.timeLimit(.minutes(2)))
    func sixSecondsWithoutRedisDeadLetterNoObservation() async throws {
        let world = try World()
        let port = try freeTCPPort()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-redis-\(port)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var server = try Self.startRedis(port: port, dir: dir)
        defer {
            kill(server.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let redis = try await Self.connect(port: port)
        let publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        let observations = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
        let decision = try await world.decision("decision-outage", redis: redis, publisher: publisher, discover: false)
        let loop = MessageWorker(
            consumer: observations,
            deadLetters: DeadLetterSink(publisher: publisher, topology: world.topology, workerName: "t"),
            logger: Logger(label: "test"), senders: nil, decode: DecisionWorker.decodeObservationQueue,
            handler: decision.handle)
        let running = Task { await loop.run() }

        let probe = EnvelopePublisher(
            publisher: publisher, topology: world.topology, producer: "probe-test", appId: "probe")
        let sent = 40
        for i in 0..<sent {
            if i == 8 {  // Redis goes away at 1.6 s…
                // SIGKILL: a child of the test process inherits its blocked signals, SIGTERM among them.
                kill(server.processIdentifier, SIGKILL)
                while server.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            }
            if i == 38 { server = try Self.startRedis(port: port, dir: dir) }  // …and is back 6 s later
            try await probe.publish(
                .observation, id: "obs-\(i)", target: "healthy-site", instanceId: "i-0healthy", correlationId: nil,
                body: ProbeResult(prober: "probe-test", healthy: true, statusCode: 200), now: Date())
            try await Task.sleep(for: .milliseconds(200))
        }
        let admin = AMQPAdmin(configuration: world.amqp)
        let dead = FleetTopology.deadLetterQueue(for: world.topology.observationsQueue)
        var handled = false
        for _ in 0..<300 {
            let state = try? await DecisionStateReader(states: RedisStateStore(client: redis, keyspace: world.keyspace))
                .target("healthy-site")
            if try await admin.messageCount(queue: world.topology.observationsQueue) == 0, let state {
                var ladder = state.machine
                if !ladder.remember(eventId: "obs-\(sent - 1)") {
                    handled = true
                    break
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(handled, "the last observation was handled once Redis came back")
        #expect(try await admin.messageCount(queue: dead) == 0, "no observation dead-lettered by the outage")
        await observations.shutdown(drainTimeout: .seconds(2))
        await running.value
        await admin.close()
        await publisher.shutdown()
        await redis.close()
        await world.tearDown(instances: [])
    }

    static func startRedis(port: Int, dir: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        process.arguments = [
            "--bind", "127.0.0.1", "--port", "\(port)", "--save", "", "--appendonly", "no", "--dir", dir,
            "--loglevel", "warning",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    static func connect(port: Int) async throws -> RedisClient {
        for _ in 0..<100 {
            if let client = try? await RedisClient.connect(url: try RedisURL("redis://127.0.0.1:\(port)/0")) {
                return client
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TimeoutFailure()
    }
}
