import AMQPTransport
import AWSClient
import FleetRuntime
@testable import FleetWorkers
import HTTPTransport
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// The instance-config table (INSTANCE_CONFIG_TABLE) against moto.
@Suite("Instance-config table", .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct TargetConfigTableTests {
    /// A target whose only health URL and probe interval are in the table: the probe worker checks it at
    /// the table's URL once a second (the default interval is 30 s); a malformed item for another target
    /// is skipped with its reason, and the table's numbers are stored as exact DynamoDB numbers.
    @Test(.timeLimit(.minutes(2)))
    func theConfigTableDrivesAProbesSettings() async throws {
        let world = try World()
        let dynamo = DynamoDBClient(world.aws)
        let table = TargetConfigTable(dynamo: dynamo, tableName: "\(world.prefix)-instance-config")
        try await table.create()
        let site = try await FakeSite()
        let name = "\(world.prefix)-configured"
        // No AutoRecovery:HealthUrl tag: the URL can only come from the table.
        let imageId = try await TestImage.shared.id(world.ec2)
        let instance = try await world.ec2.runInstance(
            RunInstancesInput(
                imageId: imageId, instanceType: "t3.micro",
                tags: [
                    "AutoRecovery": "enabled", "AutoRecovery:Name": name, "AutoRecovery:Fleet": world.prefix,
                    "test-run": world.prefix,
                ]))

        try await table.put(
            target: name,
            settings: Data(
                """
                {"health_url": "\(site.url)", "probe_interval": 1, "probe_timeout": 0.75, "failure_threshold": 4,
                 "requires_approval": true, "dr": {"record_name": "shop.example.com"}}
                """.utf8), updatedBy: "test")
        // Malformed: a text where a number belongs, and an unknown attribute.
        _ = try await dynamo.putItem(
            PutItemInput(
                tableName: table.tableName,
                item: [
                    "instance_id": .string("\(world.prefix)-broken"), "probe_interval": .string("soon"),
                ]))
        _ = try await dynamo.putItem(
            PutItemInput(
                tableName: table.tableName,
                item: [
                    "instance_id": .string("\(world.prefix)-typo"), "grace_periode": .number(5),
                ]))

        let raw = try #require(
            try await dynamo.getItem(
                tableName: table.tableName, key: ["instance_id": .string(name)], consistentRead: true))
        #expect(raw["probe_timeout"] == .number(try DynamoNumber("0.75")))
        #expect(raw["probe_interval"] == .number(1))
        #expect(raw["updated_by"] == .string("test"))

        let file = try TargetConfigFile(
            data: Data(
                """
                {"defaults": {"grace_period": 7}, "targets": {"\(name)": {"probe_interval": 30, "recovery_threshold": 3}}}
                """.utf8))
        let snapshot = try await table.load(over: file)
        #expect(snapshot.targets == [name])
        #expect(snapshot.skipped.map(\.target) == ["\(world.prefix)-broken", "\(world.prefix)-typo"])
        #expect(snapshot.skipped.first?.description.contains("probe_interval") == true, "\(snapshot.skipped)")
        #expect(
            snapshot.skipped.last?.reason.contains("unknown attribute 'grace_periode'") == true, "\(snapshot.skipped)")

        let source = TargetConfigSource(file: file, table: table)
        let catalog = TargetCatalog(
            ec2: world.ec2, drRegion: nil, source: source, fleet: world.prefix, logger: Logger(label: "catalog"))
        let target = try #require(try await catalog.discover().first { $0.name == name })
        #expect(target.healthURL == site.url)
        #expect(target.settings.probeInterval == 1, "the table wins over the file")
        #expect(target.settings.recoveryThreshold == 3, "keys the table leaves out keep the file's value")
        #expect(target.settings.gracePeriod == 7, "and the file's defaults")
        #expect(target.settings.failureThreshold == 4)
        #expect(target.settings.requiresApproval)
        let actuatorConfig = try await ActuatorConfig(file: file, source: source).refreshed().target(name)
        #expect(actuatorConfig.dr.recordName == "shop.example.com")
        #expect(actuatorConfig.healthURL == site.url)

        let redis = try await RedisClient.connect(url: world.redisURL)
        let publisher = AMQPPublisher(configuration: world.amqp, topology: world.topology.amqp)
        let consumer = AMQPConsumer(
            configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.observationsQueue)
        let observations = Collector<ProbeResult>(consumer, type: .observation)
        var options = ProbeWorker.Options(proberId: "probe-config")
        options.tick = .milliseconds(100)
        options.discoveryInterval = .seconds(5)
        let probe = ProbeWorker(
            options: options, discover: { try await catalog.discover() }, http: world.http, ec2: world.ec2,
            claims: RedisKeyValueStore(client: redis, keyspace: world.keyspace), publisher: publisher,
            topology: world.topology, logger: Logger(label: "probe-config"))
        let run = Task { await probe.run() }
        // Three HTTP checks of the table's URL: at the default 30 s interval they would take a minute.
        var checks: [Envelope<ProbeResult>] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            checks = await observations.items.filter { $0.target == name && $0.body.source == .http }
            if checks.count >= 3 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(checks.count >= 3, "got \(checks.count) checks")
        #expect(checks.allSatisfy { $0.body.healthy }, "the site at the table's health URL answered")
        // A site check names no instance in its body (it checks the site wherever it runs); the envelope
        // still says which instance the catalog had, for history.
        #expect(checks.allSatisfy { $0.body.instanceId == nil && $0.instanceId == instance.instanceId })
        if checks.count >= 3 {
            let span = checks[2].occurredAt.timeIntervalSince(checks[0].occurredAt)
            #expect(span < 5, "two probe intervals of 1 s, not 30 s (took \(span) s)")
        }

        run.cancel()
        await run.value
        await consumer.shutdown()
        await publisher.shutdown()
        await redis.close()
        site.stop()
        _ = try? await dynamo.deleteTable(table.tableName)
        await world.tearDown(instances: [instance.instanceId])
    }
}

extension TargetConfigTableTests {
    /// Another operator's update, or a quarantine (the actuator's UpdateItem merge), landing between an
    /// update's read and its write: the conditional put fails, the update reads again, and both changes
    /// are kept. The interloper is put exactly there (a hook), so the race is shown deterministically
    /// (moto's own condition checks are not atomic under concurrent requests).
    @Test(.timeLimit(.minutes(2)))
    func anUpdateRacedBetweenReadAndWriteKeepsBothChanges() async throws {
        let world = try World()
        let dynamo = DynamoDBClient(world.aws)
        let table = TargetConfigTable(dynamo: dynamo, tableName: "\(world.prefix)-instance-config")
        try await table.create()
        let target = "\(world.prefix)-busy"
        try await table.put(target: target, settings: Data(#"{"probe_interval": 5}"#.utf8))
        func item() async throws -> DynamoItem {
            try #require(
                try await dynamo.getItem(
                    tableName: table.tableName, key: ["instance_id": .string(target)], consistentRead: true))
        }

        let interlopers = Mutex(0)
        try await table.update(
            target: target, set: [(key: "grace_period", value: "120")], unset: [], over: .empty, updatedBy: "alice",
            now: Date(),
            betweenReadAndWrite: {
                guard
                    interlopers.withLock({
                        $0 += 1
                        return $0
                    }) == 1
                else { return }
                try await table.update(target: target, set: [(key: "failure_threshold", value: "4")], updatedBy: "bob")
            })
        #expect(interlopers.withLock { $0 } == 2, "the first write was refused and the update read again")
        var now = try await item()
        #expect(
            now["grace_period"] == .number(120) && now["failure_threshold"] == .number(4)
                && now["probe_interval"] == .number(5))
        #expect(now["updated_by"] == .string("alice"))

        let quarantines = Mutex(0)
        try await table.update(
            target: target, set: [(key: "grace_period", value: "60")], unset: [], over: .empty, updatedBy: "carol",
            now: Date(),
            betweenReadAndWrite: {
                guard
                    quarantines.withLock({
                        $0 += 1
                        return $0
                    }) == 1
                else { return }
                try await table.merge(
                    target: target, settings: Data(#"{"quarantined": true}"#.utf8), updatedBy: "actuator")
            })
        now = try await item()
        #expect(now["quarantined"] == .bool(true), "the quarantine is kept")
        #expect(now["grace_period"] == .number(60) && now["failure_threshold"] == .number(4))

        _ = try? await dynamo.deleteTable(table.tableName)
        await world.tearDown(instances: [])
    }
}

@Suite("Instance-config table, offline")
struct TargetConfigTableUnitTests {
    /// A TargetSettings key missing from `settingKeys` would make every item using it "malformed".
    /// Issue 14, gap 6. Old behaviour: one misspelt attribute dropped the whole item and the target fell
    /// back to the file's settings, losing `requires_approval` (or `dry_run`, `quarantined`).
    @Test(.timeLimit(.minutes(2)), .enabled(if: servicesAvailable, "needs moto: set AWS_ENDPOINT_URL"))
    func aMalformedItemNeverDropsATargetsSafetySettings() async throws {
        let world = try World()
        let dynamo = DynamoDBClient(world.aws)
        let table = TargetConfigTable(dynamo: dynamo, tableName: "\(world.prefix)-safety")
        try await table.create()
        let guarded = "\(world.prefix)-guarded"
        let fresh = "\(world.prefix)-fresh"
        try await table.put(target: guarded, settings: Data(#"{"requires_approval": true, "grace_period": 60}"#.utf8))
        let source = TargetConfigSource(file: .empty, table: table)
        #expect(try await source.current().entry(for: guarded).settings.requiresApproval)

        // An operator's typo turns the item malformed; a new target's item is malformed from the start.
        _ = try await dynamo.putItem(
            PutItemInput(
                tableName: table.tableName,
                item: ["instance_id": .string(guarded), "requires_approval": .bool(true), "grace_periode": .number(5)]))
        _ = try await dynamo.putItem(
            PutItemInput(
                tableName: table.tableName, item: ["instance_id": .string(fresh), "dry_runn": .bool(true)]))
        let now = try await source.current()
        let kept = try now.entry(for: guarded).settings
        #expect(kept.requiresApproval && kept.gracePeriod == 60, "the last good item, not the file's defaults")
        #expect(try now.entry(for: fresh).settings.requiresApproval, "never seen good: the safest settings")
        #expect(try !TargetConfigFile.empty.entry(for: fresh).settings.requiresApproval, "which the defaults are not")
    }

    @Test func everySettingsKeyIsKnown() throws {
        var settings = TargetSettings()
        settings.bodyMatch = "ok"
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(settings)) as? [String: Any])
        let missing = Set(object.keys).subtracting(TargetConfigTable.settingKeys)
        #expect(missing.isEmpty, "not in TargetConfigTable.settingKeys: \(missing.sorted())")
    }

    /// `put` checks the settings before any call: a bad value never reaches the table.
    @Test func putRefusesBadSettingsBeforeWriting() async throws {
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "A", secretAccessKey: "s")),
            http: RequestLog(FailingHTTP()), environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:9"])
        let table = TargetConfigTable(dynamo: DynamoDBClient(aws), tableName: "unused")
        for (json, expected) in [
            (#"{"probe_interval": -1}"#, "probe_interval"), (#"{"grace_periode": 5}"#, "grace_periode"),
            (#"[1]"#, "JSON object"), (#"{"dry_run": "yes"}"#, "dry_run"),
        ] {
            let error = await #expect(throws: ConfigurationError.self) {
                try await table.put(target: "shop", settings: Data(json.utf8))
            }
            #expect(error?.description.contains(expected) == true, "\(json): \(String(describing: error))")
        }
    }
}

/// An HTTP client that fails every request (a call would be a bug in the test above).
struct FailingHTTP: HTTPExecuting {
    struct Called: Error {}
    func execute(_ request: HTTPRequest) async throws -> HTTPResponse { throw Called() }
}
