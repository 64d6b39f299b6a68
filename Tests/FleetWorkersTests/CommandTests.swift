import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Testing

/// Operator commands through the real broker: identity from the broker-verified user_id, refusals
/// dead-lettered with a reason and announced.
@Suite("Decision worker commands", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct CommandTests {
    @Test(.timeLimit(.minutes(2)))
    func unknownTargetsMalformedCommandsAndNonOperatorsAreRefusedWithAReason() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-cmd"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        let redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let decision = try await world.decision(
            "decision-cmd", redis: redis, publisher: publisher, operators: ["guest"])
        let commands = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.commandsQueue)
        let loop = MessageWorker(
            consumer: commands,
            deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "decision-cmd"),
            logger: Logger(label: "decision"), senders: nil, decode: DecisionWorker.decodeCommandQueue,
            handler: decision.handle)
        let running = Task { await loop.run() }
        let deadConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp,
            queue: FleetTopology.deadLetterQueue(for: topology.commandsQueue))
        let deadLetters = DeliveryLog(deadConsumer)
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)

        func send(_ body: CommandBody, target: String?, id: String, userId: String? = "guest") async throws {
            let envelope = Envelope(type: .command, id: id, target: target, occurredAt: Date(), body: body)
            let routingKey = FleetTopology.routingKey(.command, target: target)
            guard userId == nil else {
                try await publisher.publish(
                    OutgoingMessage(
                        exchange: topology.exchange, routingKey: routingKey,
                        body: try EnvelopeCodec.encode(envelope),
                        properties: AMQPProperties(messageId: id, userId: userId)))
                return
            }
            // The fleet's publisher always stamps its user_id; a person publishing in the management UI
            // may leave it out.
            let payload = String(decoding: try EnvelopeCodec.encode(envelope), as: UTF8.self)
            let request = try JSONSerialization.data(
                withJSONObject: [
                    "properties": ["message_id": id, "delivery_mode": 2], "routing_key": routingKey,
                    "payload": payload, "payload_encoding": "string",
                ] as [String: Any])
            try await management(
                "POST", "exchanges/%2F/\(topology.exchange)/publish", String(decoding: request, as: UTF8.self))
        }
        try await send(CommandBody(name: "ack"), target: "\(world.prefix)-nobody", id: "c-unknown")
        try await send(CommandBody(name: "reboot-please"), target: name, id: "c-bad-name")
        try await send(CommandBody(name: "hold"), target: name, id: "c-hold-no-until")
        try await send(CommandBody(name: "ack"), target: name, id: "c-no-user", userId: nil)
        try await send(CommandBody(name: "reset"), target: name, id: "c-ok")

        let letters = await deadLetters.wait(for: 4)
        let reasons = Dictionary(
            letters.map {
                ($0.properties.messageId ?? "", $0.properties.headers["x-reject-reason"]?.stringValue ?? "")
            },
            uniquingKeysWith: { a, _ in a })
        #expect(reasons["c-unknown"]?.contains("unknown target") == true, "\(reasons)")
        #expect(reasons["c-bad-name"]?.contains("unknown command 'reboot-please'") == true)
        #expect(reasons["c-hold-no-until"]?.contains("until") == true)
        #expect(reasons["c-no-user"]?.contains("user_id") == true)
        #expect(reasons["c-ok"] == nil, "a valid command from an operator is accepted")
        // The accepted reset is answered with a notice naming the command.
        let answered = await notices.wait { $0.body.command?.id == "c-ok" }
        #expect(answered?.body.kind == .commandAccepted)
        #expect(answered?.body.command?.operator == "guest")

        await commands.shutdown()
        await running.value
        await deadConsumer.shutdown()
        await noticesConsumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}

extension CommandTests {
    @Test(.timeLimit(.minutes(2)))
    func aUserWhoIsNotAnOperatorIsRefusedAndTheRefusalAnnounced() async throws {
        let world = try World()
        let redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        // The broker user of this test is guest.
        let decision = try await world.decision(
            "decision-ops", redis: redis, publisher: publisher, operators: ["alice", "bob"], discover: false)
        let commands = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.commandsQueue)
        let loop = MessageWorker(
            consumer: commands,
            deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "decision-ops"),
            logger: Logger(label: "decision"), senders: nil, decode: DecisionWorker.decodeCommandQueue,
            handler: decision.handle)
        let running = Task { await loop.run() }
        let deadConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp,
            queue: FleetTopology.deadLetterQueue(for: topology.commandsQueue))
        let deadLetters = DeliveryLog(deadConsumer)
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)

        let envelope = Envelope(
            type: .command, id: "c-intruder", target: "any", occurredAt: Date(),
            body: CommandBody(name: "brake_release"))
        try await publisher.publish(
            OutgoingMessage(
                exchange: topology.exchange, routingKey: "command.fleet", body: try EnvelopeCodec.encode(envelope),
                properties: AMQPProperties(messageId: envelope.id, userId: "guest")))

        let letter = await deadLetters.wait(for: 1).first
        #expect(letter?.properties.headers["x-reject-reason"]?.stringValue == "user 'guest' is not an operator")
        let notice = await notices.wait { $0.body.kind == .commandRejected }
        #expect(notice?.body.command?.operator == "guest")
        #expect(notice?.body.detail?.contains("not on the operator list") == true)

        await commands.shutdown()
        await running.value
        await deadConsumer.shutdown()
        await noticesConsumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        await world.tearDown(instances: [])
    }
}

extension CommandTests {
    /// `repair_volume` asks the actuator for the EBS root-volume swap; with the brake engaged it is refused
    /// with a notice and a dead letter saying why, and nothing is requested.
    @Test(.timeLimit(.minutes(2)))
    func repairVolumeIsRequestedAndRefusedUnderTheBrake() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-vol"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        let redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let decision = try await world.decision(
            "decision-vol", redis: redis, publisher: publisher, operators: ["guest"])
        let commands = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.commandsQueue)
        let loop = MessageWorker(
            consumer: commands,
            deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "decision-vol"),
            logger: Logger(label: "decision"), senders: nil, decode: DecisionWorker.decodeCommandQueue,
            handler: decision.handle)
        let running = Task { await loop.run() }
        let deadConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp,
            queue: FleetTopology.deadLetterQueue(for: topology.commandsQueue))
        let deadLetters = DeliveryLog(deadConsumer)
        let noticesConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.notificationsQueue)
        let notices = Collector<Notice>(noticesConsumer, type: .notification)
        let requestsConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let requests = Collector<ActionRequest>(requestsConsumer, type: .actionRequest)

        func send(_ body: CommandBody, target: String?, id: String) async throws {
            let envelope = Envelope(type: .command, id: id, target: target, occurredAt: Date(), body: body)
            try await publisher.publish(
                OutgoingMessage(
                    exchange: topology.exchange, routingKey: FleetTopology.routingKey(.command, target: target),
                    body: try EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: id, userId: "guest")
                ))
        }
        try await send(CommandBody(name: "repair_volume", reason: "root volume impaired"), target: name, id: "c-vol")
        let request = await requests.wait { $0.body.target == name }
        #expect(request?.body.repair == RepairRequest(.ebsRepair, id: "c-vol", reason: "root volume impaired"))
        #expect(request?.body.instanceId == instance.instanceId)
        #expect(request?.body.requestedBy == "guest")
        let accepted = await notices.wait { $0.body.command?.id == "c-vol" }
        #expect(accepted?.body.kind == .commandAccepted)

        // An outage opens (restart pending in its grace period): the ladder may act, so a volume repair
        // is refused until the incident is acknowledged.
        for i in 0..<3 {
            try await decision.handle(
                .probe(
                    Envelope(
                        type: .observation, id: "\(world.prefix)-o\(i)", target: name, instanceId: instance.instanceId,
                        occurredAt: Date(), body: ProbeResult(prober: "p", healthy: false, statusCode: 503))),
                verifiedUser: nil)
        }
        _ = await notices.wait { $0.body.kind == .outageDeclared }
        try await send(CommandBody(name: "repair_volume"), target: name, id: "c-vol-incident")
        let busy = await notices.wait { $0.body.command?.id == "c-vol-incident" }
        #expect(busy?.body.kind == .commandRejected)
        #expect(busy?.body.detail?.contains("recoveryctl ack") == true, "\(busy?.body.detail ?? "")")
        try await send(CommandBody(name: "ack"), target: name, id: "c-ack")
        _ = await notices.wait { $0.body.command?.id == "c-ack" }
        try await send(CommandBody(name: "repair_volume"), target: name, id: "c-vol-acked")
        #expect(await notices.wait { $0.body.command?.id == "c-vol-acked" }?.body.kind == .commandAccepted)
        #expect(await requests.wait { $0.body.repair?.id == "c-vol-acked" } != nil, "acknowledged: the repair goes out")

        try await send(CommandBody(name: "brake_engage", reason: "test"), target: nil, id: "c-brake")
        _ = await notices.wait { $0.body.kind == .brakeEngaged }
        try await send(CommandBody(name: "repair_volume"), target: name, id: "c-vol-braked")
        let refused = await notices.wait { $0.body.command?.id == "c-vol-braked" }
        #expect(refused?.body.kind == .commandRejected)
        #expect(refused?.body.detail?.contains("brake") == true)
        let letters = await deadLetters.wait(for: 2)
        let braked = letters.first { $0.properties.messageId == "c-vol-braked" }
        #expect(braked?.properties.headers["x-reject-reason"]?.stringValue?.contains("brake") == true)
        #expect(letters.contains { $0.properties.messageId == "c-vol-incident" })
        try await Task.sleep(for: .milliseconds(300))
        #expect(await requests.items.count == 2, "nothing requested during the live incident or under the brake")

        await commands.shutdown()
        await running.value
        await deadConsumer.shutdown()
        await noticesConsumer.shutdown()
        await requestsConsumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}

/// Raw deliveries of a queue, acked as they come.
actor DeliveryLog {
    private(set) var items: [AMQPDelivery] = []
    init(_ consumer: AMQPConsumer) {
        let stream = consumer.deliveries
        Task { [weak self] in
            for await d in stream {
                await self?.append(d)
                await consumer.ack(d)
            }
        }
    }
    private func append(_ d: AMQPDelivery) { items.append(d) }
    func wait(for count: Int, timeout: Duration = .seconds(20)) async -> [AMQPDelivery] {
        let deadline = ContinuousClock.now + timeout
        while items.count < count, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return items
    }
}
