import AMQPTransport
import AWSClient
import FleetControl
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Testing

/// The built `.build/debug/recoveryctl` binary, run as a subprocess against in-process decision, actuator
/// and recorder workers over the real broker, Redis and moto.
@Suite(
    "recoveryctl end to end", .serialized, .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct RecoveryctlEndToEndTests {
    @Test(.timeLimit(.minutes(3)))
    func restartStatusHistoryAndARefusedNonOperator() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-shop"
        let log = RequestLog(world.http)
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: log, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
        let dynamo = DynamoDBClient(world.aws)
        let eventsTable = "\(world.prefix)-events"
        _ = try await dynamo.createTable(
            CreateTableInput(
                tableName: eventsTable, partitionKey: DynamoKeyAttribute("instance_id", .string),
                sortKey: DynamoKeyAttribute("timestamp", .string)))
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        let logger = Logger(label: "recoveryctl-e2e")
        let redis = try await RedisClient.connect(url: world.redisURL)
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        let sink = DeadLetterSink(publisher: publisher, topology: topology, workerName: "e2e")
        // A long grace period: the restart below is the operator's, not the automatic one.
        let config = try TargetConfigFile(
            data: Data(#"{"defaults": {"failure_threshold": 2, "grace_period": 600}}"#.utf8))
        let catalog = TargetCatalog(ec2: world.ec2, drRegion: nil, config: config, fleet: world.prefix, logger: logger)

        var decisionOptions = DecisionWorker.Options(workerId: "decision-e2e")
        decisionOptions.operators = ["guest"]
        decisionOptions.tick = .milliseconds(200)
        let decision = DecisionWorker(
            options: decisionOptions, states: RedisStateStore(client: redis, keyspace: world.keyspace),
            schedule: RedisSchedule(client: redis, keyspace: world.keyspace, name: "decision"), publisher: publisher,
            topology: topology, catalog: { try await catalog.discover() }, defaultRegion: "us-east-1", logger: logger)
        try await decision.refreshCatalog()
        let observations = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.observationsQueue)
        let commands = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.commandsQueue)
        let actuatorRequests = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let history = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.historyQueue)
        let actuator = ActuatorWorker(
            options: ActuatorHarness.fastOptions("actuator-e2e"), ec2: EC2Client(aws), route53: Route53Client(aws),
            http: world.http,
            locks: RedisLockStore(client: redis, keyspace: world.keyspace),
            records: StepRecordStore(states: RedisStateStore(client: redis, keyspace: world.keyspace)),
            aborts: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
            publisher: publisher, topology: topology, config: ActuatorConfig(), logger: logger)
        let recorder = RecorderWorker(
            options: .init(eventsTable: eventsTable, predictionsTable: eventsTable), dynamo: dynamo, logger: logger)
        let loops: [@Sendable () async -> Void] = [
            {
                await MessageWorker(
                    consumer: observations, deadLetters: sink, logger: logger, senders: nil,
                    decode: DecisionWorker.decodeObservationQueue,
                    handler: decision.handle
                ).run()
            },
            {
                await MessageWorker(
                    consumer: commands, deadLetters: sink, logger: logger, senders: nil,
                    decode: DecisionWorker.decodeCommandQueue,
                    handler: decision.handle
                ).run()
            },
            {
                await MessageWorker<Envelope<ActionRequest>>(
                    consumer: actuatorRequests, deadLetters: sink, expecting: .actionRequest,
                    logger: logger, senders: nil, handler: actuator.handle
                ).run()
            },
            {
                await MessageWorker(
                    consumer: history, deadLetters: sink, logger: logger, senders: nil, decode: RecorderWorker.decode,
                    handler: recorder.handle
                ).run()
            },
            { await decision.runTicker() },
        ]
        let running = Task {
            await withTaskGroup(of: Void.self) { group in for loop in loops { group.addTask { await loop() } } }
        }
        // recoveryctl publishes without declaring anything: wait until the consumers declared the topology.
        try await poll("the fleet's consumers subscribe") {
            [observations, commands, actuatorRequests, history].allSatisfy(\.isConnected)
        }
        let deadConsumer = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp,
            queue: FleetTopology.deadLetterQueue(for: topology.commandsQueue))
        let deadLetters = DeliveryLog(deadConsumer)
        let env = ctlEnvironment(world, extra: ["RECOVERY_EVENTS_TABLE": eventsTable])
        let intruder = "\(world.prefix)-intruder"

        do {
            // Two failed checks open an incident (the restart waits 600 s of grace).
            for i in 0..<2 {
                let observation = Envelope(
                    type: .observation, id: "\(world.prefix)-obs-\(i)", target: name, instanceId: instance.instanceId,
                    occurredAt: Date(),
                    body: ProbeResult(prober: "probe-e2e", healthy: false, statusCode: 503, detail: "HTTP 503"))
                try await publisher.publish(
                    OutgoingMessage(
                        exchange: topology.exchange, routingKey: FleetTopology.routingKey(.observation, target: name),
                        body: try EnvelopeCodec.encode(observation),
                        properties: AMQPProperties(messageId: observation.id)))
            }
            let reader = DecisionStateReader(states: RedisStateStore(client: redis, keyspace: world.keyspace))
            try await poll("the incident opens") { try await reader.target(name)?.machine.incident != nil }

            // status --json: the target's row.
            let status = try await runCtl(["status", name, "--json"], env: env)
            #expect(status.code == 0, "\(status.stderr)")
            let report = try Timestamp.jsonDecoder().decode(StatusReport.self, from: Data(status.stdout.utf8))
            let row = try #require(report.targets.first { $0.target == name }, "\(status.stdout)")
            #expect(row.state == "pending(restart)")
            #expect(row.outageCount == 1)
            #expect(row.instanceId == instance.instanceId)
            #expect(row.region == "us-east-1")
            #expect(row.lastProbeHealthy == false)
            #expect(row.lastProbeAt != nil)
            #expect(row.lockHolder == nil)
            #expect(row.discovered)
            #expect(report.brake.engaged == false)
            let text = try await runCtl(["status"], env: env)
            #expect(text.code == 0)
            #expect(text.stdout.contains(name) && text.stdout.contains("pending(restart)"), "\(text.stdout)")
            #expect(text.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(text.stdout)")

            // restart: sent as guest, accepted by the decision worker, run by the actuator, outcome printed.
            let restart = try await runCtl(
                ["restart", name, "--reason", "e2e test", "--json", "--timeout", "90s"], env: env)
            #expect(restart.code == 0, "\(restart.stdout) \(restart.stderr)")
            let result = try JSONDecoder().decode(CommandResult.self, from: Data(restart.stdout.utf8))
            #expect(result.status == .accepted)
            #expect(result.operator == "guest")
            #expect(result.outcome?.status == "succeeded")
            #expect(result.outcome?.step == "restart")
            let incident = try #require(result.incidentId)
            #expect(
                result.outcome?.idempotencyKey == ActionRequest.key(target: name, incidentId: incident, step: .restart))
            let reboots = log.actions("RebootInstances")
            #expect(reboots.count == 1, "\(log.all)")
            #expect(reboots.first?.body.contains("InstanceId.1=\(instance.instanceId)") == true)

            // The same step again is refused by the decision worker (run once per incident), and exits 3.
            let again = try await runCtl(
                ["restart", name, "--reason", "twice", "--json", "--timeout", "30s"], env: env)
            #expect(again.code == 3, "\(again.stdout)")
            #expect(log.actions("RebootInstances").count == 1, "no second reboot")

            // history: the rows the in-process recorder wrote.
            try await poll("the recorder writes the outcome") {
                let rows = try await HistoryReader(dynamo: dynamo, table: eventsTable).read(target: name, limit: nil)
                    .entries
                return rows.contains { $0.type == "action.event" }
                    && rows.contains { $0.type == "command" && $0.why == "twice" }
            }
            let shown = try await runCtl(["history", name, "--json", "--all"], env: env)
            #expect(shown.code == 0, "\(shown.stderr)")
            let timeline = try JSONDecoder().decode(HistoryReport.self, from: Data(shown.stdout.utf8)).entries
            let command = try #require(timeline.first { $0.type == "command" && $0.why == "e2e test" })
            #expect(command.who == "guest")
            #expect(command.what == "restart")
            #expect(timeline.contains { $0.type == "action.event" && $0.what == "restart succeeded" })
            #expect(timeline.contains { $0.what == "command_accepted" })
            #expect(timeline.map(\.occurredAt) == timeline.map(\.occurredAt).sorted(), "in time order")
            let human = try await runCtl(["history", name], env: env)
            #expect(human.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(human.stdout)")

            // A RabbitMQ user who is not on OPERATORS: refused, recorded with the reason, exit 3.
            try await management("PUT", "users/\(intruder)", #"{"password": "intruder-pass", "tags": ""}"#)
            try await management(
                "PUT", "permissions/%2F/\(intruder)", #"{"configure": ".*", "write": ".*", "read": ".*"}"#)
            var intruderEnv = env
            intruderEnv["AMQP_URL"] =
                "amqp://\(intruder):intruder-pass@127.0.0.1:\(try AMQPURL(environment["AMQP_URL"]!).port)/%2f"
            let refused = try await runCtl(["ack", name, "--json", "--timeout", "30s"], env: intruderEnv)
            #expect(refused.code == 3, "\(refused.stdout) \(refused.stderr)")
            let refusal = try JSONDecoder().decode(CommandResult.self, from: Data(refused.stdout.utf8))
            #expect(refusal.status == .rejected)
            #expect(refusal.operator == intruder)
            #expect(refusal.detail?.contains("not on the operator list") == true, "\(refusal)")
            #expect(!refused.stdout.contains("intruder-pass") && !refused.stderr.contains("intruder-pass"))
            let letters = await deadLetters.wait(for: 2)
            let letter = try #require(letters.first { $0.properties.messageId == refusal.commandId })
            #expect(
                letter.properties.headers["x-reject-reason"]?.stringValue == "user '\(intruder)' is not an operator")
            try await poll("the refusal is in the history") {
                try await HistoryReader(dynamo: dynamo, table: eventsTable).read(target: name, limit: nil).entries
                    .contains { $0.what == "command_rejected" && $0.why.contains(intruder) }
            }
            // An abort from the same user is refused the same way (by the verified user_id), before any flag.
            let refusedAbort = try await runCtl(["abort", name, "--json", "--timeout", "30s"], env: intruderEnv)
            #expect(refusedAbort.code == 3, "\(refusedAbort.stdout) \(refusedAbort.stderr)")
            let abortRefusal = try JSONDecoder().decode(CommandResult.self, from: Data(refusedAbort.stdout.utf8))
            #expect(abortRefusal.status == .rejected && abortRefusal.operator == intruder)
            #expect(abortRefusal.detail?.contains("is not an operator") == true, "\(abortRefusal)")
            let state = try await reader.target(name)
            #expect(state?.machine.incident?.hold == nil, "the intruder's ack changed nothing")
            #expect(state?.machine.incident?.aborted == nil, "nor did the abort")
        } catch {
            Issue.record(error)
        }

        try? await management("DELETE", "users/\(intruder)", nil)
        running.cancel()
        for consumer in [observations, commands, actuatorRequests, history, deadConsumer] { await consumer.shutdown() }
        await running.value
        _ = try? await dynamo.deleteTable(eventsTable)
        await publisher.shutdown()
        await redis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }

    @Test(.timeLimit(.minutes(2)))
    func targetsSetAndListRoundTripAndABadValueWritesNothing() async throws {
        let world = try World()
        let tableName = "\(world.prefix)-config"
        let table = TargetConfigTable(dynamo: DynamoDBClient(world.aws), tableName: tableName)
        try await table.create()
        let env = ctlEnvironment(world, extra: ["INSTANCE_CONFIG_TABLE": tableName])
        do {
            let set = try await runCtl(
                [
                    "targets", "set", "shop-web", "probe_interval=15", "requires_approval=true",
                    "health_url=https://shop.example.com/health", "expected_status=[[200, 299]]", "--json",
                ], env: env)
            #expect(set.code == 0, "\(set.stderr)")
            let listed = try await runCtl(["targets", "list", "--json"], env: env)
            #expect(listed.code == 0, "\(listed.stderr)")
            let listing = try JSONDecoder().decode(TargetsListing.self, from: Data(listed.stdout.utf8))
            let item = try #require(listing.targets.first { $0.target == "shop-web" }, "\(listed.stdout)")
            #expect(item.settings["probe_interval"]?.text == "15")
            #expect(item.settings["requires_approval"]?.text == "true")
            #expect(item.settings["health_url"]?.text == #""https://shop.example.com/health""#)
            #expect(item.settings["expected_status"]?.text == "[[200,299]]")
            // What the workers read: the table laid over the (empty) targets file.
            let snapshot = try await table.load()
            #expect(snapshot.skipped.isEmpty)

            // A bad value: a clear error, exit 1, and the stored item unchanged.
            let bad = try await runCtl(["targets", "set", "shop-web", "probe_interval=-5", "--json"], env: env)
            #expect(bad.code == 1)
            #expect(bad.stderr.contains("probe_interval") && bad.stderr.contains("not written"), "\(bad.stderr)")
            let badType = try await runCtl(["targets", "set", "shop-web", "requires_approval=maybe"], env: env)
            #expect(badType.code == 1, "\(badType.stderr)")
            let unknown = try await runCtl(["targets", "set", "shop-web", "probe_intervall=5"], env: env)
            #expect(unknown.code == 64)
            #expect(unknown.stderr.contains("unknown setting 'probe_intervall'"), "\(unknown.stderr)")
            let after = try JSONDecoder().decode(
                TargetsListing.self, from: Data(try await runCtl(["targets", "list", "--json"], env: env).stdout.utf8))
            #expect(
                after.targets.first { $0.target == "shop-web" }?.settings["probe_interval"]?.text == "15",
                "nothing written")

            // unset keeps the rest.
            let unset = try await runCtl(["targets", "unset", "shop-web", "requires_approval", "--json"], env: env)
            #expect(unset.code == 0, "\(unset.stderr)")
            let final = try JSONDecoder().decode(
                TargetsListing.self, from: Data(try await runCtl(["targets", "list", "--json"], env: env).stdout.utf8))
            let finalItem = try #require(final.targets.first { $0.target == "shop-web" })
            #expect(finalItem.settings["requires_approval"] == nil)
            #expect(finalItem.settings["probe_interval"]?.text == "15")

            // A target's own Slack webhook is stored, and never printed (text or JSON).
            let hook = "https://hooks.slack.com/services/T1/B1/WEBHOOKSECRET42"
            let withHook = try await runCtl(
                [
                    "targets", "set", "shop-web",
                    ##"notify={"slack_webhook_url": "\##(hook)", "slack_channel": "#shop"}"##,
                ], env: env)
            #expect(withHook.code == 0, "\(withHook.stderr)")
            let shownText = try await runCtl(["targets", "list"], env: env)
            let shownJSON = try await runCtl(["targets", "list", "--json"], env: env)
            for run in [withHook, shownText, shownJSON] {
                #expect(!(run.stdout + run.stderr).contains("WEBHOOKSECRET42"), "\(run.stdout)")
            }
            #expect(shownJSON.stdout.contains("#shop") && shownJSON.stdout.contains("***"), "\(shownJSON.stdout)")
            let stored = try await DynamoDBClient(world.aws).getItem(
                tableName: tableName, key: ["instance_id": "shop-web"], consistentRead: true)
            #expect(
                stored?["notify"]?.mapValue?["slack_webhook_url"]?.stringValue == hook, "the table holds the real URL")
        } catch {
            Issue.record(error)
        }
        _ = try? await DynamoDBClient(world.aws).deleteTable(tableName)
        await world.tearDown(instances: [])
    }
}

// MARK: Support

/// The environment recoveryctl gets: the services, this world's prefix, moto credentials.
func ctlEnvironment(_ world: World, extra: [String: String]) -> [String: String] {
    var env: [String: String] = [
        "AMQP_URL": environment["AMQP_URL"]!, "REDIS_URL": environment["REDIS_URL"]!,
        "AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!, "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDFLEETTEST", "AWS_SECRET_ACCESS_KEY": "fleet-test-secret",
        "FLEET_PREFIX": world.prefix, "FLEET_TAG": world.prefix, "PATH": environment["PATH"] ?? "/usr/bin:/bin",
    ]
    env.merge(extra) { $1 }
    return env
}

struct CtlRun: Sendable {
    var code: Int32
    var stdout: String
    var stderr: String
}

/// Runs the built binary on a thread of its own (posix_spawn + waitpid never block the cooperative pool),
/// with only `env`, inherited descriptors above 2 closed, stdout and stderr captured in files.
func runCtl(_ arguments: [String], env: [String: String]) async throws -> CtlRun {
    let binary = repositoryRoot.appendingPathComponent(".build/debug/recoveryctl").path
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        throw ControlError("\(binary) is missing: swift build --build-tests builds it")
    }
    return try await runProgram(binary, arguments, env: env)
}

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Runs `program` (a path) the way `runCtl` runs recoveryctl.
func runProgram(_ binary: String, _ arguments: [String], env: [String: String]) async throws -> CtlRun {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("recoveryctl-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("out").path
    let err = dir.appendingPathComponent("err").path
    let result: Result<Int32, POSIXError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            var pid: pid_t = 0
            let closeInherited =
                #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null; exec "$@" >"$CTL_OUT" 2>"$CTL_ERR""#
            let argv =
                (["/bin/bash", "-c", closeInherited, "recoveryctl", binary] + arguments).map { strdup($0) } + [nil]
            let envp =
                (env.merging(["CTL_OUT": out, "CTL_ERR": err]) { $1 }).map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { (argv + envp).forEach { free($0) } }
            let rc = posix_spawn(&pid, "/bin/bash", nil, nil, argv, envp)
            guard rc == 0 else {
                continuation.resume(returning: .failure(POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO)))
                return
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            continuation.resume(
                returning: .success((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)))
        }
        thread.start()
    }
    let code = try result.get()
    let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
    return CtlRun(code: code, stdout: stdout, stderr: stderr)
}

/// Polls a condition with real I/O (bounded).
func poll(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    guard try await condition() else { throw ControlError("timed out waiting for: \(what)") }
}

/// The RabbitMQ management API as guest (test users are created and deleted with it).
func management(_ method: String, _ path: String, _ body: String?) async throws {
    let http = HTTPClient()
    defer { http.shutdown() }
    let response = try await http.execute(
        HTTPRequest(
            method: method, url: "\(managementBase)/api/\(path)",
            headers: [
                ("Authorization", "Basic " + Data("guest:guest".utf8).base64EncodedString()),
                ("Content-Type", "application/json"),
            ],
            body: Array((body ?? "").utf8)))
    guard (200..<300).contains(response.status) else {
        throw ControlError(
            "management API \(method) \(path): HTTP \(response.status) \(String(decoding: response.body, as: UTF8.self))"
        )
    }
}
