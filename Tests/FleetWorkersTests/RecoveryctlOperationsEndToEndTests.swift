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

/// More of `.build/debug/recoveryctl` run as a subprocess: `topology apply` against the broker and its
/// management API, `preflight` against moto, and the commands that are not steps (brake, hold, resume,
/// ack, approve, reset) against an in-process decision worker. In the same (serialized) suite as the
/// other end-to-end tests, so they never load moto at the same time.
extension RecoveryctlEndToEndTests {
    // MARK: topology apply

    @Test(.timeLimit(.minutes(2)))
    func topologyApplyDeclaresTheFileAndItsPolicyIdempotentlyAndRefusesABadFile() async throws {
        // A definitions file generated for a prefix of its own: the shared broker's `recovery` objects are
        // never touched.
        let prefix = "it-\(UUID().uuidString.prefix(8).lowercased())"
        let topology = FleetTopology(prefix: prefix)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("topology-\(prefix)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("definitions.json").path
        try topology.amqp.definitionsJSON().write(to: URL(fileURLWithPath: file))
        let env: [String: String] = [
            "AMQP_URL": environment["AMQP_URL"]!, "RABBITMQ_MANAGEMENT_URL": managementBase,
            "PATH": environment["PATH"] ?? "/usr/bin:/bin",
        ]
        let policy = "\(prefix)-leaders-balanced"

        do {
            let applied = try await runCtl(["topology", "apply", "--file", file, "--json"], env: env)
            #expect(applied.code == 0, "\(applied.stdout) \(applied.stderr)")
            let result = try JSONDecoder().decode(TopologyApplyResult.self, from: Data(applied.stdout.utf8))
            #expect(result.exchanges == 2 && result.queues == 12 && result.bindings == topology.amqp.bindings.count)
            #expect(result.policiesApplied == [policy])
            #expect(result.policiesSkipped.isEmpty)

            // What the broker now has, read through the management API.
            for exchange in [topology.exchange, topology.deadLetterExchange] {
                let e = try #require(try await managementGet("exchanges/%2F/\(exchange)"), "exchange \(exchange)")
                #expect(e["type"] as? String == "topic")
                #expect(e["durable"] as? Bool == true)
            }
            let commands = try #require(try await managementGet("queues/%2F/\(topology.commandsQueue)"))
            #expect(commands["type"] as? String == "quorum")
            #expect(commands["durable"] as? Bool == true)
            let args = try #require(commands["arguments"] as? [String: Any])
            #expect(args["x-queue-type"] as? String == "quorum")
            #expect((args["x-delivery-limit"] as? NSNumber)?.intValue == 5)
            #expect(args["x-dead-letter-exchange"] as? String == topology.deadLetterExchange)
            #expect(args["x-dead-letter-routing-key"] as? String == topology.commandsQueue)
            #expect(args["x-dead-letter-strategy"] as? String == "at-least-once")
            #expect(args["x-overflow"] as? String == "reject-publish")
            // The policy is set and applies to the fleet's queues.
            let setPolicy = try #require(try await managementGet("policies/%2F/\(policy)"), "policy \(policy)")
            #expect(setPolicy["pattern"] as? String == "^\(prefix)\\.")
            #expect(setPolicy["apply-to"] as? String == "queues")
            #expect((setPolicy["definition"] as? [String: Any])?["queue-leader-locator"] as? String == "balanced")
            try await poll("the policy applies to the commands queue") {
                try await managementGet("queues/%2F/\(topology.commandsQueue)")?["policy"] as? String == policy
            }
            // Every queue of the file, and every binding.
            for queue in topology.amqp.queues {
                let q = try #require(try await managementGet("queues/%2F/\(queue.name)"), "queue \(queue.name)")
                #expect(q["type"] as? String == "quorum", "\(queue.name)")
            }
            for (queue, patterns) in topology.workQueues {
                let bound = try await managementList("bindings/%2F/e/\(topology.exchange)/q/\(queue)").compactMap {
                    $0["routing_key"] as? String
                }
                #expect(Set(bound) == Set(patterns), "\(queue)")
                let dead = FleetTopology.deadLetterQueue(for: queue)
                let deadBound = try await managementList("bindings/%2F/e/\(topology.deadLetterExchange)/q/\(dead)")
                    .compactMap { $0["routing_key"] as? String }
                #expect(deadBound == [queue], "\(dead)")
            }

            // Again: nothing to change, the same answer, still one binding per pattern.
            let again = try await runCtl(["topology", "apply", "--file", file], env: env)
            #expect(again.code == 0, "\(again.stderr)")
            #expect(again.stdout.contains("Declared from \(file): 2 exchanges, 12 queues"), "\(again.stdout)")
            #expect(again.stdout.contains("Policies set: \(policy)."), "\(again.stdout)")
            let commandBindings = try await managementList(
                "bindings/%2F/e/\(topology.exchange)/q/\(topology.commandsQueue)")
            #expect(commandBindings.count == 1)

            // Without RABBITMQ_MANAGEMENT_URL: declared, and the policy listed as not set, with how to set it.
            var amqpOnly = env
            amqpOnly["RABBITMQ_MANAGEMENT_URL"] = nil
            let skipped = try await runCtl(["topology", "apply", "--file", file, "--json"], env: amqpOnly)
            #expect(skipped.code == 0, "\(skipped.stderr)")
            let skippedResult = try JSONDecoder().decode(TopologyApplyResult.self, from: Data(skipped.stdout.utf8))
            #expect(skippedResult.policiesApplied.isEmpty && skippedResult.policiesSkipped == [policy])
            #expect(skippedResult.note?.contains("Set RABBITMQ_MANAGEMENT_URL") == true, "\(skipped.stdout)")

            // Not JSON: a clear error, exit 1, on stderr and as {"error": …} with --json.
            let broken = dir.appendingPathComponent("broken.json").path
            try Data("{\"queues\": [".utf8).write(to: URL(fileURLWithPath: broken))
            let bad = try await runCtl(["topology", "apply", "--file", broken, "--json"], env: env)
            #expect(bad.code == 1, "\(bad.stdout) \(bad.stderr)")
            #expect(bad.stderr.contains("\(broken) is not a JSON object"), "\(bad.stderr)")
            let error = try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any]
            #expect((error?["error"] as? String)?.contains("is not a JSON object") == true, "\(bad.stdout)")
            // JSON of the wrong shape, and a file that does not exist.
            let shape = dir.appendingPathComponent("shape.json").path
            try Data(#"{"queues": {"name": "x"}}"#.utf8).write(to: URL(fileURLWithPath: shape))
            let wrong = try await runCtl(["topology", "apply", "--file", shape], env: env)
            #expect(wrong.code == 1)
            #expect(wrong.stderr.contains("'queues' must be a list of objects"), "\(wrong.stderr)")
            let missing = try await runCtl(
                ["topology", "apply", "--file", dir.appendingPathComponent("nope.json").path], env: env)
            #expect(missing.code == 1)
            #expect(missing.stderr.contains("cannot read"), "\(missing.stderr)")
            // A queue that exists with other arguments: the broker's 406, shown, exit 1, and the queue unchanged.
            var changed = topology.amqp
            changed.queues = [
                .quorum(topology.commandsQueue, deliveryLimit: 9, deadLetterExchange: topology.deadLetterExchange)
            ]
            changed.exchanges = []
            changed.bindings = []
            changed.policies = []
            let conflicting = dir.appendingPathComponent("conflicting.json").path
            try changed.definitionsJSON().write(to: URL(fileURLWithPath: conflicting))
            let refused = try await runCtl(["topology", "apply", "--file", conflicting], env: env)
            #expect(refused.code == 1, "\(refused.stdout)")
            #expect(
                refused.stderr.contains("declaring the topology failed") && refused.stderr.contains("406"),
                "\(refused.stderr)")
            let kept = try await managementGet("queues/%2F/\(topology.commandsQueue)")?["arguments"] as? [String: Any]
            #expect((kept?["x-delivery-limit"] as? NSNumber)?.intValue == 5)
        } catch {
            Issue.record(error)
        }

        try? await management("DELETE", "policies/%2F/\(policy)", nil)
        let admin = AMQPAdmin(configuration: AMQPConfiguration(url: try AMQPURL(environment["AMQP_URL"]!)))
        await admin.deleteAll(of: topology.amqp)
        await admin.close()
        try? FileManager.default.removeItem(at: dir)
        #expect(try await managementGet("queues/%2F/\(topology.commandsQueue)") == nil, "cleaned up")
        #expect(try await managementGet("policies/%2F/\(policy)") == nil, "cleaned up")
    }

    // MARK: preflight

    @Test(.timeLimit(.minutes(3)))
    func preflightExitsFourWithTheFindingsAndZeroWhenAFailOverWouldWork() async throws {
        try await ActuatorHarness.run { h in
            let ready = h.name("pf-ready")
            let broken = h.name("pf-broken")
            let readyInstance = try await h.launchTarget(ready, healthURL: "http://127.0.0.1:9/health")
            let brokenInstance = try await h.launchTarget(broken, healthURL: "http://127.0.0.1:9/health")
            // ready: a snapshot in both regions, complete DR settings, the record; broken: no DR snapshot, no
            // subnet or security groups.
            _ = try await h.snapshot(ready, h.ec2)
            let drSnapshot = try await h.snapshot(ready, h.dr)
            _ = try await h.snapshot(broken, h.ec2)
            let route53 = Route53Client(h.world.aws)
            let zone = try await route53.createHostedZone(name: "\(h.world.prefix).example.com")
            let record = "www.\(h.world.prefix).example.com"
            _ = try await route53.upsertARecord(hostedZoneId: zone.id, name: record, addresses: ["192.0.2.10"])
            await h.cleanup.add {
                for set in try await route53.listResourceRecordSets(hostedZoneId: zone.id) where set.type == .a {
                    _ = try await route53.changeResourceRecordSets(
                        hostedZoneId: zone.id, changes: [.init(.delete, set)])
                }
                try await route53.deleteHostedZone(zone.id)
            }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("preflight-\(h.world.prefix)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            await h.cleanup.add { try FileManager.default.removeItem(at: dir) }
            let targetsFile = dir.appendingPathComponent("targets.json")
            try Data(
                """
                {"defaults": {"dr_region": "us-west-2"},
                 "targets": {
                   "\(ready)": {"dr": {"subnet_id": "subnet-dr1", "security_group_ids": ["sg-dr1"], "instance_type": "t3.micro",
                                       "hosted_zone_id": "\(zone.id)", "record_name": "\(record)"}},
                   "\(broken)": {"dr": {"hosted_zone_id": "\(zone.id)", "record_name": "\(record)"}}}}
                """.utf8
            ).write(to: targetsFile)
            let env = ctlEnvironment(h.world, extra: ["TARGETS_FILE": targetsFile.path])

            // The whole fleet: one target would fail over badly, so exit 4 and the findings.
            let all = try await runCtl(["preflight"], env: env)
            #expect(all.code == 4, "\(all.stdout) \(all.stderr)")
            #expect(all.stdout.contains("DR pre-flight of 2 target(s): 1 would fail over badly."), "\(all.stdout)")
            #expect(
                all.stdout.contains("\(broken)  \(brokenInstance.instanceId) (us-east-1) -> us-west-2  PROBLEMS"),
                "\(all.stdout)")
            #expect(
                all.stdout.contains("\(ready)  \(readyInstance.instanceId) (us-east-1) -> us-west-2  OK"),
                "\(all.stdout)")
            let unwrapped = all.stdout.replacingOccurrences(of: "\n    ", with: " ")
            #expect(
                unwrapped.contains(
                    "\n  problem: no completed snapshot tagged AutoRecovery:Name=\(broken) in the DR region us-west-2"),
                "\(all.stdout)")
            #expect(
                unwrapped.contains("\n  problem: DR settings incomplete: subnet_id, security_group_ids not set"),
                "\(all.stdout)")
            #expect(all.stdout.contains("\n  DR snapshot:   snap-"), "\(all.stdout)")
            #expect(all.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(all.stdout)")

            // --json: the same findings, still exit 4.
            let json = try await runCtl(["preflight", broken, "--json"], env: env)
            #expect(json.code == 4, "\(json.stderr)")
            let report = try Timestamp.jsonDecoder().decode(PreflightReport.self, from: Data(json.stdout.utf8))
            let bad = try #require(report.targets.first, "\(json.stdout)")
            #expect(report.targets.count == 1)
            #expect(bad.target == broken && bad.instanceId == brokenInstance.instanceId && bad.drRegion == "us-west-2")
            #expect(bad.homeSnapshot != nil && bad.drSnapshot == nil)
            #expect(!bad.drSettingsComplete)
            #expect(bad.problems.count == 2, "\(bad.problems)")
            #expect(bad.problems.contains { $0.contains("no completed snapshot") && $0.contains("us-west-2") })
            #expect(bad.problems.contains { $0.contains("DR settings incomplete") })
            #expect(bad.dns?.contains("192.0.2.10") == true)

            // The ready target alone: exit 0.
            let good = try await runCtl(["preflight", ready, "--json"], env: env)
            #expect(good.code == 0, "\(good.stdout) \(good.stderr)")
            let goodReport = try Timestamp.jsonDecoder().decode(PreflightReport.self, from: Data(good.stdout.utf8))
            let ok = try #require(goodReport.targets.first)
            #expect(ok.problems.isEmpty, "\(ok.problems)")
            #expect(ok.drSnapshot?.snapshotId == drSnapshot.snapshotId)
            #expect(ok.drSettingsComplete)
            #expect(goodReport.failing.isEmpty)

            // A target that is not discovered: a clear error, exit 1.
            let unknown = try await runCtl(["preflight", "\(h.world.prefix)-nosuch"], env: env)
            #expect(unknown.code == 1)
            #expect(
                unknown.stderr.contains("no target named '\(h.world.prefix)-nosuch' was discovered"),
                "\(unknown.stderr)")
        }
    }

    // MARK: brake, hold, resume, ack, approve, reset

    @Test(.timeLimit(.minutes(4)))
    func brakeHoldResumeAckApproveAndResetThroughTheBinary() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-shop"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        // A long grace period: nothing runs by itself, every step here is an operator's.
        let fleet = try await InProcessFleet(
            world, config: #"{"defaults": {"failure_threshold": 2, "grace_period": 600}}"#)
        let env = ctlEnvironment(world, extra: [:])
        let reader = DecisionStateReader(states: RedisStateStore(client: fleet.redis, keyspace: world.keyspace))

        func status() async throws -> StatusReport {
            let run = try await runCtl(["status", name, "--json", "--no-discovery"], env: env)
            guard run.code == 0 else { throw ControlError("status: exit \(run.code): \(run.stderr)") }
            return try Timestamp.jsonDecoder().decode(StatusReport.self, from: Data(run.stdout.utf8))
        }
        func command(_ arguments: [String], expect code: Int32) async throws -> CommandResult {
            let run = try await runCtl(arguments + ["--json", "--timeout", "60s"], env: env)
            #expect(run.code == code, "\(arguments): \(run.stdout) \(run.stderr)")
            return try JSONDecoder().decode(CommandResult.self, from: Data(run.stdout.utf8))
        }
        /// The text answer: exit 0, the accepted line and the decision worker's detail printed.
        func accepted(_ arguments: [String], saying detail: String) async throws {
            let run = try await runCtl(arguments + ["--timeout", "60s"], env: env)
            #expect(run.code == 0, "\(arguments): \(run.stdout) \(run.stderr)")
            let unwrapped = run.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            #expect(unwrapped.contains(": accepted (command cmd-"), "\(arguments): \(run.stdout)")
            #expect(unwrapped.contains(", by guest)."), "\(run.stdout)")
            #expect(unwrapped.contains(detail), "\(arguments): \(run.stdout)")
            #expect(run.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(run.stdout)")
        }

        do {
            // Refused before there is anything to act on: exit 3 with the decision worker's reason.
            let early = try await command(["approve", name], expect: 3)
            #expect(early.status == .rejected)
            #expect(early.detail?.contains("has no open incident") == true, "\(early)")
            let notEngaged = try await command(["brake", "release"], expect: 3)
            #expect(notEngaged.detail == "brake release refused: the brake is not engaged")

            // An incident: two failed checks (restart pending, 600 s of grace).
            try await fleet.observe(name, instance: instance.instanceId, healthy: false, count: 2)
            try await poll("the incident opens") { try await reader.target(name)?.machine.incident != nil }
            #expect(try await status().targets.first?.state == "pending(restart)")

            // brake engage: accepted (the alert answers it); status shows who engaged it and why.
            try await accepted(
                ["brake", "engage", "--reason", "provider incident in us-east-1"],
                saying: "fleet brake engaged: engaged by guest: provider incident in us-east-1")
            var brake = try await status().brake
            #expect(brake.engaged)
            #expect(brake.trigger == "manual" && brake.by == "guest")
            #expect(brake.detail?.contains("provider incident in us-east-1") == true)
            #expect(brake.since != nil)
            let twice = try await command(["brake", "engage", "--reason", "again"], expect: 3)
            #expect(twice.detail?.contains("already engaged") == true, "\(twice)")
            // A step waits for the brake: approve is refused, and says how to release it.
            let braked = try await command(["approve", name], expect: 3)
            #expect(braked.detail?.contains("fleet brake is engaged") == true, "\(braked)")
            #expect(braked.suggestions == ["recoveryctl brake release"])

            try await accepted(["brake", "release"], saying: "guest released the fleet brake")
            brake = try await status().brake
            #expect(!brake.engaged)
            #expect(brake.by == nil)

            // hold --until 2h: the hold is stored and shown, about two hours from now.
            let before = Date()
            try await accepted(["hold", name, "--until", "2h"], saying: "guest held incident")
            let after = Date()
            var row = try #require(try await status().targets.first)
            let held = try #require(row.hold, "\(row)")
            #expect(held.hasPrefix("held by guest until "))
            let endText = String(held.dropFirst("held by guest until ".count))
            let end = try #require(try? Date(endText, strategy: .iso8601), "\(held)")
            #expect(end >= before.addingTimeInterval(7200 - 1) && end <= after.addingTimeInterval(7200 + 1), "\(end)")
            #expect(
                try await status().targets.first?.nextStepAt.map { $0 >= before.addingTimeInterval(7200 - 1) } == true,
                "the step waits for the hold")
            // Held: approve is refused, and says to resume first.
            let whileHeld = try await command(["approve", name], expect: 3)
            #expect(whileHeld.detail?.contains("is held by guest until") == true, "\(whileHeld)")
            #expect(whileHeld.suggestions == ["recoveryctl resume \(name)"])

            try await accepted(["resume", name], saying: "guest resumed automation")
            row = try #require(try await status().targets.first)
            #expect(row.hold == nil, "\(row)")
            let nothingToResume = try await command(["resume", name], expect: 3)
            #expect(nothingToResume.detail?.contains("neither acknowledged nor held") == true)

            try await accepted(["ack", name], saying: "guest acknowledged incident")
            row = try #require(try await status().targets.first)
            #expect(row.hold?.hasPrefix("acked by guest") == true, "\(row)")
            #expect(row.nextStepAt == nil, "no automatic step while acknowledged")
            try await accepted(["resume", name], saying: "guest resumed automation")

            // approve: the pending restart runs now, through the actuator; its outcome is printed.
            let approved = try await command(["approve", name], expect: 0)
            #expect(approved.status == .accepted)
            #expect(approved.detail?.contains("guest approved restart") == true, "\(approved)")
            #expect(approved.outcome?.step == "restart" && approved.outcome?.status == "succeeded", "\(approved)")
            #expect(fleet.log.actions("RebootInstances").count == 1, "\(fleet.log.all)")
            row = try #require(try await status().targets.first)
            #expect(row.outageCount == 1)

            // reset: the outage count is forgotten.
            try await accepted(["reset", name], saying: "outage count of \(name) reset by guest (it was 1")
            row = try #require(try await status().targets.first)
            #expect(row.outageCount == 0, "\(row)")
        } catch {
            Issue.record(error)
        }

        await fleet.stop()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}

// MARK: Support

/// In-process decision worker (observations, commands, ticker) and actuator over the real broker, Redis
/// and moto, for a world; the actuator's AWS calls are logged.
extension RecoveryctlEndToEndTests {
    // MARK: quarantine, unquarantine, repair-volume

    @Test(.timeLimit(.minutes(3)))
    func quarantineUnquarantineAndRepairVolumeThroughTheBinary() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-q"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        let fleet = try await InProcessFleet(
            world, config: #"{"defaults": {"failure_threshold": 2, "grace_period": 600}}"#)
        let env = ctlEnvironment(world, extra: [:])
        func command(_ arguments: [String], expect code: Int32) async throws -> CommandResult {
            let run = try await runCtl(arguments + ["--json", "--timeout", "60s"], env: env)
            #expect(run.code == code, "\(arguments): \(run.stdout) \(run.stderr)")
            return try JSONDecoder().decode(CommandResult.self, from: Data(run.stdout.utf8))
        }
        func tags() async throws -> [String: String] {
            try await world.ec2.describeInstances(instanceIds: [instance.instanceId]).first?.tags ?? [:]
        }
        do {
            // quarantine: accepted, then the actuator's outcome (exit 0), and the tag is on the instance.
            let quarantined = try await command(["quarantine", name, "--reason", "disk forensics"], expect: 0)
            #expect(quarantined.status == .accepted)
            #expect(quarantined.outcome?.step == "quarantine")
            #expect(quarantined.outcome?.status == "succeeded")
            #expect(quarantined.outcome?.idempotencyKey == "\(name)/repair/quarantine/\(quarantined.commandId)")
            #expect(try await tags()["AutoRecovery:Quarantined"]?.hasSuffix("disk forensics") == true)

            // unquarantine: the tag goes.
            let lifted = try await command(["unquarantine", name], expect: 0)
            #expect(lifted.outcome?.step == "unquarantine" && lifted.outcome?.status == "succeeded")
            #expect(try await tags()["AutoRecovery:Quarantined"] == nil)

            // repair-volume under the brake: refused with the reason, exit 3, nothing sent to AWS.
            _ = try await command(["brake", "engage", "--reason", "maintenance"], expect: 0)
            let before = fleet.log.mutations.count
            let refused = try await command(["repair-volume", name, "--reason", "impaired"], expect: 3)
            #expect(refused.status == .rejected)
            #expect(refused.detail?.contains("brake") == true, "\(refused)")
            #expect(fleet.log.mutations.count == before)
            _ = try await command(["brake", "release"], expect: 0)
        } catch {
            Issue.record(error)
        }
        await fleet.stop()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}

final class InProcessFleet: Sendable {
    let redis: RedisClient
    let publisher: AMQPPublisher
    let log: RequestLog
    let world: World
    private let consumers: [AMQPConsumer]
    private let running: Task<Void, Never>

    /// `tweak` adjusts the actuator's options (a test hook, say), `decide` the decision worker's (operators
    /// `guest` by default); with `recorder` options a recorder writes the history too.
    init(
        _ world: World, config json: String, actuator tweak: (inout ActuatorWorker.Options) -> Void = { _ in },
        decision decide: (inout DecisionWorker.Options) -> Void = { _ in }, recorder: RecorderWorker.Options? = nil
    ) async throws {
        self.world = world
        let logger = Logger(label: "recoveryctl-e2e")
        log = RequestLog(world.http)
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: log, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
        let redis = try await RedisClient.connect(url: world.redisURL)
        self.redis = redis
        let topology = world.topology
        let publisher = AMQPPublisher(configuration: world.amqp, topology: topology.amqp)
        self.publisher = publisher
        let sink = DeadLetterSink(publisher: publisher, topology: topology, workerName: "e2e")
        let catalog = TargetCatalog(
            ec2: world.ec2, drRegion: nil, config: try TargetConfigFile(data: Data(json.utf8)), fleet: world.prefix,
            logger: logger)
        var decisionOptions = DecisionWorker.Options(workerId: "decision-e2e")
        decisionOptions.operators = ["guest"]
        decisionOptions.tick = .milliseconds(200)
        decide(&decisionOptions)
        let decision = DecisionWorker(
            options: decisionOptions, states: RedisStateStore(client: redis, keyspace: world.keyspace),
            schedule: RedisSchedule(client: redis, keyspace: world.keyspace, name: "decision"), publisher: publisher,
            topology: topology, catalog: { try await catalog.discover() }, defaultRegion: "us-east-1", logger: logger)
        try await decision.refreshCatalog()
        let observations = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.observationsQueue)
        let commands = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.commandsQueue)
        let requests = AMQPConsumer(
            configuration: world.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue)
        let history = AMQPConsumer(configuration: world.amqp, topology: topology.amqp, queue: topology.historyQueue)
        consumers = [observations, commands, requests] + (recorder == nil ? [] : [history])
        var actuatorOptions = ActuatorHarness.fastOptions("actuator-e2e")
        tweak(&actuatorOptions)
        let actuator = ActuatorWorker(
            options: actuatorOptions, ec2: EC2Client(aws), route53: Route53Client(aws),
            http: world.http,
            locks: RedisLockStore(client: redis, keyspace: world.keyspace),
            records: StepRecordStore(states: RedisStateStore(client: redis, keyspace: world.keyspace)),
            aborts: RedisKeyValueStore(client: redis, keyspace: world.keyspace),
            publisher: publisher, topology: topology, config: ActuatorConfig(), logger: logger)
        var loops: [@Sendable () async -> Void] = [
            { await decision.runTicker() }
        ]
        if let recorder {
            let writer = RecorderWorker(options: recorder, dynamo: DynamoDBClient(world.aws), logger: logger)
            loops.append {
                await MessageWorker(
                    consumer: history, deadLetters: sink, logger: logger, senders: nil, decode: RecorderWorker.decode,
                    handler: writer.handle
                ).run()
            }
        }
        loops += [
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
                    consumer: requests, deadLetters: sink, expecting: .actionRequest,
                    logger: logger, senders: nil, handler: actuator.handle
                ).run()
            },
        ]
        running = Task {
            await withTaskGroup(of: Void.self) { group in for loop in loops { group.addTask { await loop() } } }
        }
        // Consumers declare the topology (queues, then bindings) as they connect: a command published
        // before that would match no queue. Ready when every consumer has subscribed.
        let deadline = ContinuousClock.now + .seconds(30)
        while !consumers.allSatisfy(\.isConnected) {
            guard ContinuousClock.now < deadline else {
                throw ControlError("the in-process fleet's consumers did not subscribe within 30 s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Publishes `count` probe results for `target`, as a probe would.
    func observe(_ target: String, instance: String, healthy: Bool, count: Int) async throws {
        for i in 0..<count {
            let observation = Envelope(
                type: .observation, id: "\(world.prefix)-obs-\(UUID().uuidString.prefix(8))-\(i)", target: target,
                instanceId: instance, occurredAt: Date(),
                body: ProbeResult(
                    prober: "probe-e2e", healthy: healthy, statusCode: healthy ? 200 : 503,
                    detail: healthy ? "HTTP 200" : "HTTP 503"))
            try await publisher.publish(
                OutgoingMessage(
                    exchange: world.topology.exchange,
                    routingKey: FleetTopology.routingKey(.observation, target: target),
                    body: try EnvelopeCodec.encode(observation), properties: AMQPProperties(messageId: observation.id)))
        }
    }

    func stop() async {
        running.cancel()
        for consumer in consumers { await consumer.shutdown() }
        await running.value
        await publisher.shutdown()
        await redis.close()
    }
}

let managementBase = environment["RABBITMQ_MANAGEMENT_URL"] ?? "http://127.0.0.1:15672"

/// GET from the management API as guest: the JSON object, or nil for a 404.
func managementGet(_ path: String) async throws -> [String: Any]? {
    guard let body = try await managementBody(path) else { return nil }
    return try JSONSerialization.jsonObject(with: body) as? [String: Any]
}

/// GET a list from the management API as guest (empty for a 404).
func managementList(_ path: String) async throws -> [[String: Any]] {
    guard let body = try await managementBody(path) else { return [] }
    return (try JSONSerialization.jsonObject(with: body) as? [[String: Any]]) ?? []
}

private func managementBody(_ path: String) async throws -> Data? {
    let http = HTTPClient()
    defer { http.shutdown() }
    let response = try await http.execute(
        HTTPRequest(
            method: "GET", url: "\(managementBase)/api/\(path)",
            headers: [("Authorization", "Basic " + Data("guest:guest".utf8).base64EncodedString())], body: []))
    if response.status == 404 { return nil }
    guard (200..<300).contains(response.status) else {
        throw ControlError(
            "management API GET \(path): HTTP \(response.status) \(String(decoding: response.body, as: UTF8.self))")
    }
    return Data(response.body)
}
