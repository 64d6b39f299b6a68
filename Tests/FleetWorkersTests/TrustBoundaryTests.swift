import AMQPTransport
import AWSClient
import FleetControl
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Testing

/// The broker users of one test world, made the way the deployment makes them
/// (`recoveryctl topology apply --identities`: PlannedIdentity + TopologyApplier), with names unique to
/// the world so that runs on the shared broker never collide.
struct TrustWorld {
    let world: World
    let passwords: [FleetRole: String]

    init(_ world: World) {
        self.world = world
        passwords = Dictionary(
            uniqueKeysWithValues: FleetRole.allCases.map { ($0, "pw-\(UUID().uuidString.prefix(12))") })
    }

    func user(_ role: FleetRole) -> String { "\(world.prefix)-\(role.rawValue)" }

    /// The environment the setup service and the workers read: `<KIND>_USERS`, `OPERATORS` and
    /// `RABBITMQ_<KIND>_PASSWORD`.
    var setupEnvironment: [String: String] {
        var env = [
            "AMQP_URL": environment["AMQP_URL"]!, "RABBITMQ_MANAGEMENT_URL": managementBase,
            "FLEET_PREFIX": world.prefix,
        ]
        for role in FleetRole.allCases {
            env[role.usersVariable] = user(role)
            env["RABBITMQ_\(role.rawValue.uppercased())_PASSWORD"] = passwords[role]
        }
        env["RABBITMQ_OPERATOR_USER"] = user(.operator)
        return env
    }

    var identities: FleetIdentities { FleetIdentities.fromEnvironment(setupEnvironment) }

    func apply() async throws {
        let env = WorkerEnvironment(kind: "recoveryctl", values: setupEnvironment)
        let planned = try PlannedIdentity.plan(env, topology: world.topology)
        let result = try await TopologyApplier(amqp: world.amqp, http: world.http, managementURL: managementBase)
            .apply(world.topology.amqp, file: "test", identities: planned)
        #expect(result.identities?.count == FleetRole.allCases.count)
    }

    /// A worker's connection as the deployment makes it: its own user, topology only verified.
    func configuration(_ role: FleetRole) throws -> AMQPConfiguration {
        try configuration(user: user(role), password: passwords[role]!)
    }

    func configuration(user: String, password: String) throws -> AMQPConfiguration {
        let base = world.amqp.url
        var config = world.amqp
        config.nodes = [try AMQPURL("amqp://\(user):\(password)@\(base.host):\(base.port)/%2f")]
        config.topologyMode = .verify
        return config
    }

    func deleteUsers(_ extra: [String] = []) async {
        for name in FleetRole.allCases.map(user) + extra { try? await management("DELETE", "users/\(name)", nil) }
    }
}

@Suite(
    "Trust boundary: broker permissions and sender checks",
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct TrustBoundaryTests {
    /// Each kind's user publishes what it must; the broker itself refuses every other message type
    /// (ACCESS_REFUSED, by topic permission or by having no write permission on the exchange at all),
    /// refuses a declaration (no configure permission), and lets each consumer subscribe to its own queue
    /// with the topology only verified.
    @Test(.timeLimit(.minutes(3)))
    func eachKindMayPublishWhatItMustAndTheBrokerRefusesTheRest() async throws {
        let world = try World()
        let trust = TrustWorld(world)
        do {
            try await trust.apply()
            let topology = world.topology
            // The kinds are independent: checked side by side (each refusal costs the publisher a reconnect).
            try await withThrowingTaskGroup(of: Void.self) { group in
                for role in FleetRole.allCases {
                    group.addTask { try await checkPublishing(role, trust, topology) }
                }
                try await group.waitForAll()
            }
            // Every consumer subscribes to its own queue, verifying (not declaring) the topology.
            for role in [FleetRole.predictor, .decision, .actuator, .notifier, .recorder] {
                let consumer = AMQPConsumer(
                    configuration: try trust.configuration(role), topology: topology.amqp,
                    queue: consumedQueue(role, topology))
                try await poll("\(role) subscribes to its queue", timeout: .seconds(15)) { consumer.isConnected }
                await consumer.shutdown(drainTimeout: .zero)
            }
        } catch {
            Issue.record(error)
        }
        await trust.deleteUsers()
        await world.tearDown(instances: [])
    }

    func checkPublishing(_ role: FleetRole, _ trust: TrustWorld, _ topology: FleetTopology) async throws {
        let publisher = AMQPPublisher(
            configuration: try trust.configuration(role), topology: topology.amqp, publishTimeout: .seconds(20))
        for type in MessageType.allCases {
            let message = OutgoingMessage(
                exchange: topology.exchange, routingKey: "\(type.rawValue).t1", body: Array("{}".utf8),
                properties: AMQPProperties(messageId: UUID().uuidString))
            let result: Result<Void, AMQPError>
            do {
                try await publisher.publish(message)
                result = .success(())
            } catch { result = .failure(error) }
            if role.sends.contains(type) {
                #expect(throws: Never.self, "\(role) must be able to send \(type)") { try result.get() }
            } else if case .failure(.brokerClosed(let code, let text, _)) = result {
                #expect(code == 403 && text.contains("ACCESS_REFUSED"), "\(role) sending \(type): \(text)")
            } else {
                Issue.record("the broker let \(role) send \(type.rawValue): \(result)")
            }
        }
        // Dead letters: only with the consumer's own queue as routing key.
        let dead = [.probe, .operator, .console].contains(role) ? nil : consumedQueue(role, topology)
        if let dead {
            try await publisher.publish(
                OutgoingMessage(
                    exchange: topology.deadLetterExchange, routingKey: dead, body: Array("{}".utf8),
                    properties: AMQPProperties(messageId: UUID().uuidString)))
            let other = role == .actuator ? topology.observationsQueue : topology.actionRequestsQueue
            do {
                try await publisher.publish(
                    OutgoingMessage(
                        exchange: topology.deadLetterExchange, routingKey: other, body: Array("{}".utf8),
                        properties: AMQPProperties(messageId: UUID().uuidString)))
                Issue.record("\(role) dead-lettered into \(other)")
            } catch {
                if case .brokerClosed(403, _, _) = error {} else { Issue.record("\(role): \(error)") }
            }
        }
        await publisher.shutdown()

        // No configure permission: a worker cannot declare (or delete) anything.
        var declaring = try trust.configuration(role)
        declaring.topologyMode = .declare
        let admin = AMQPAdmin(configuration: declaring)
        do {
            try await admin.declare(AMQPTopology(queues: [.init(name: "\(topology.prefix).sneaky-\(role.rawValue)")]))
            Issue.record("\(role) declared a queue")
        } catch {
            guard case .brokerClosed(403, _, _) = error else {
                Issue.record("\(role): \(error)")
                return
            }
        }
        await admin.close()
    }

    /// recoveryctl as the deployment's operator user (configure only on broker-named queues): its private
    /// reply queue, bindings and command go through, and the answer comes back. Nor may the operator
    /// create an exchange to route around its topic permissions.
    @Test(.timeLimit(.minutes(2)))
    func recoveryctlWorksAsTheLeastPrivilegedOperator() async throws {
        let world = try World()
        let trust = TrustWorld(world)
        do {
            try await trust.apply()
            let redis = try await RedisClient.connect(url: world.redisURL)
            let publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
            let decision = try await world.decision(
                "decision-op", redis: redis, publisher: publisher, operators: [trust.user(.operator)], discover: false)
            let commands = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.commandsQueue)
            let loop = MessageWorker(
                consumer: commands,
                deadLetters: DeadLetterSink(publisher: publisher, topology: world.topology, workerName: "decision-op"),
                logger: Logger(label: "decision"),
                senders: SenderGate(identities: trust.identities, unchecked: [.command], logger: Logger(label: "gate")),
                decode: DecisionWorker.decodeCommandQueue, handler: decision.handle)
            let running = Task { await loop.run() }
            let operatorURL = try trust.configuration(.operator).url
            let env = [
                "AMQP_URL":
                    "amqp://\(operatorURL.user):\(trust.passwords[.operator]!)@\(operatorURL.host):\(operatorURL.port)/%2f",
                "FLEET_PREFIX": world.prefix, "PATH": "/usr/bin:/bin",
            ]
            let run = try await runCtl(
                ["brake", "engage", "--reason", "trust test", "--json", "--timeout", "30s"], env: env)
            #expect(run.code == 0, "\(run.stdout) \(run.stderr)")
            let result = try JSONDecoder().decode(CommandResult.self, from: Data(run.stdout.utf8))
            #expect(result.status == .accepted && result.operator == trust.user(.operator), "\(result)")

            var declaring = try trust.configuration(.operator)
            declaring.topologyMode = .declare
            let sneaky = AMQPAdmin(configuration: declaring)
            for name in ["\(world.prefix).recoveryctl.x", "amq.gen-sneaky"] {
                do {
                    try await sneaky.declare(AMQPTopology(exchanges: [.init(name: name, type: "fanout")]))
                    Issue.record("the operator declared exchange \(name)")
                } catch {
                    if case .brokerClosed(403, _, _) = error {} else { Issue.record("\(name): \(error)") }
                }
            }
            await sneaky.close()
            await commands.shutdown(drainTimeout: .zero)
            await running.value
            await publisher.shutdown()
            await redis.close()
        } catch {
            Issue.record(error)
        }
        await trust.deleteUsers()
        await world.tearDown(instances: [])
    }

    func consumedQueue(_ role: FleetRole, _ topology: FleetTopology) -> String {
        switch role {
        case .predictor: topology.predictionRequestsQueue
        case .decision: topology.observationsQueue
        case .actuator: topology.actionRequestsQueue
        case .notifier: topology.notificationsQueue
        case .recorder: topology.historyQueue
        case .probe, .operator, .console: ""
        }
    }

    /// A broker user with broad write permission (the kind of mistake, or of compromise, the consumers
    /// must survive) forges a restart request, an actuator outcome, failed observations and a
    /// high-confidence prediction. The actuator makes no AWS call at all (its request log is empty), the
    /// decision worker opens no incident and plans nothing, each forgery is dead-lettered with the
    /// reason, and the sender is announced by one notice (the same id from every worker, which the
    /// notifier sends once per channel).
    @Test(.timeLimit(.minutes(3)))
    func forgedMessagesFromABroadlyPermittedUserAreRefusedDeadLetteredAndAnnouncedOnce() async throws {
        try await ActuatorHarness.run { h in
            let world = h.world
            let topology = world.topology
            let trust = TrustWorld(world)
            let intruder = "\(world.prefix)-intruder"
            defer { Task { await trust.deleteUsers([intruder]) } }
            try await trust.apply()
            try await management("PUT", "users/\(intruder)", #"{"password": "intruder-pass", "tags": ""}"#)
            try await management(
                "PUT", "permissions/%2F/\(intruder)", #"{"configure": ".*", "write": ".*", "read": ".*"}"#)

            let site = try await FakeSite()
            let name = h.name("forged")
            let instance = try await world.launchTarget(name: name, healthURL: site.url)
            let config = try TargetConfigFile(
                data: Data(#"{"defaults": {"failure_threshold": 2, "grace_period": 0}}"#.utf8))
            let decision = try await world.decision(
                "decision-tb", redis: h.redis, publisher: h.publisher, config: config,
                operators: [trust.user(.operator)])
            let logger = Logger(label: "trust-boundary")
            func gate(_ worker: String) -> SenderGate {
                SenderGate(
                    identities: trust.identities, unchecked: [.command], logger: logger,
                    announce: EnvelopePublisher(
                        publisher: h.publisher, topology: topology, producer: worker, appId: worker
                    ).announcingRefusals())
            }
            let sink = DeadLetterSink(publisher: h.publisher, topology: topology, workerName: "trust-test")
            let requests = AMQPConsumer(
                configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
            let actuatorLoop = MessageWorker<Envelope<ActionRequest>>(
                consumer: requests, deadLetters: sink, expecting: .actionRequest, logger: logger,
                senders: gate("actuator-tb"),
                handler: h.actuator().handle)
            let observations = AMQPConsumer(
                configuration: world.amqp, topology: topology.amqp, queue: "\(topology.observationsQueue)")
            // The harness collects outcomes from the observations queue; the decision reads a queue of its
            // own bound the same way, so both see every message.
            await h.consumers[0].shutdown()
            let decisionLoop = MessageWorker(
                consumer: observations, deadLetters: sink, logger: logger, senders: gate("decision-tb"),
                decode: DecisionWorker.decodeObservationQueue, handler: decision.handle)
            let running = [Task { await actuatorLoop.run() }, Task { await decisionLoop.run() }]
            let deadRequestsConsumer = AMQPConsumer(
                configuration: world.amqp, topology: topology.amqp,
                queue: FleetTopology.deadLetterQueue(for: topology.actionRequestsQueue))
            let deadObservationsConsumer = AMQPConsumer(
                configuration: world.amqp, topology: topology.amqp,
                queue: FleetTopology.deadLetterQueue(for: topology.observationsQueue))
            let deadRequests = DeliveryLog(deadRequestsConsumer)
            let deadObservations = DeliveryLog(deadObservationsConsumer)

            let forger = AMQPPublisher(
                configuration: try trust.configuration(user: intruder, password: "intruder-pass"),
                topology: topology.amqp)
            func forge<Body: Codable & Sendable>(_ type: MessageType, _ id: String, _ body: Body) async throws {
                let envelope = Envelope(
                    type: type, id: id, target: name, instanceId: instance.instanceId, occurredAt: Date(), body: body)
                try await forger.publish(
                    OutgoingMessage(
                        exchange: topology.exchange, routingKey: FleetTopology.routingKey(type, target: name),
                        body: try EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: id)))
            }
            let request = h.request(.restart, target: name, instance: instance.instanceId)
            try await forge(.actionRequest, "\(world.prefix)-forged-request", request)
            try await forge(
                .actionEvent, "\(world.prefix)-forged-outcome",
                ActionOutcome(
                    idempotencyKey: request.idempotencyKey, incidentId: request.incidentId, step: .reprovision,
                    status: .succeeded,
                    instanceId: "i-0forged0000000000", region: "us-east-1"))
            for n in 1...3 {
                try await forge(
                    .observation, "\(world.prefix)-forged-probe-\(n)",
                    ProbeResult(
                        prober: "probe-forged", instanceId: instance.instanceId,
                        healthy: false, statusCode: 503, detail: "forged"))
            }
            let now = Date()
            let prediction = Prediction(
                kind: .diskExhaustion, confidence: 0.99, metric: .disk, detail: "forged",
                factors: [PredictionFactor("level", 99, "forged")],
                window: PredictionWindow(from: now.addingTimeInterval(3600), to: now.addingTimeInterval(7200)),
                evaluatedAt: now)
            try await forge(
                .prediction, "\(world.prefix)-forged-prediction",
                PredictionBody(prediction, highConfidenceThreshold: 0.8, lookbackHours: 168))

            let refusedRequests = await deadRequests.wait(for: 1)
            let refusedObservations = await deadObservations.wait(for: 5)
            let reason = "unauthorized-sender: broker user '\(intruder)' may not send"
            #expect(refusedRequests.count == 1 && refusedObservations.count == 5)
            for letter in refusedRequests + refusedObservations {
                #expect(
                    letter.properties.headers["x-reject-reason"]?.stringValue?.hasPrefix(reason) == true,
                    "\(letter.properties.headers)")
                #expect(letter.properties.headers["x-original-user-id"]?.stringValue == intruder)
            }
            let notice = try #require(await h.notices.wait { $0.body.kind == .unauthorizedSender })
            #expect(notice.body.detail?.contains(intruder) == true)
            // Both workers announce; give the second one time to arrive, then every announcement is the
            // same notice (one id) and nothing else was said: no outage, no plan, no step.
            try await Task.sleep(for: .seconds(2))
            let said = await h.notices.items.map(\.body)
            #expect(Set(said.filter { $0.kind == .unauthorizedSender }.map(\.id)).count == 1, "\(said.map(\.id))")
            #expect(said.allSatisfy { $0.kind == .unauthorizedSender }, "\(said.map(\.kind))")
            #expect(h.log.all.isEmpty, "the actuator called AWS: \(h.log.all)")
            let state = try await RedisStateStore(client: h.redis, keyspace: world.keyspace).load("target:\(name)")
            #expect(state == nil || !state!.data.contains("i-0forged"), "the forged outcome moved the target")

            await forger.shutdown()
            await requests.shutdown()
            await observations.shutdown()
            for task in running { await task.value }
            await deadRequestsConsumer.shutdown()
            await deadObservationsConsumer.shutdown()
            site.stop()
            await h.cleanup.add { _ = try await world.ec2.terminateInstances([instance.instanceId]) }
        }
    }
}
