import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

@testable import FleetWorkers

/// SSM restart, SSM/EBS/quarantine repairs against moto, RabbitMQ and Redis (docs/actuator.md, "SSM" and
/// "Repairs"). moto 5.2 runs no agent: every SendCommand "succeeds" with exit 0 and empty output, for any
/// instance id, and DescribeInstanceInformation is not implemented. So these tests show the SSM calls
/// that are made and how the actuator judges the site itself. Agent absence (InvalidInstanceId) cannot be
/// produced by moto; one test puts AWS's answer for it in front of moto for SendCommand only, and says so.
@Suite(
    "Repairs against moto, RabbitMQ and Redis", .serialized,
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct RepairIntegrationTests {
    static let documents = ["diagnostics", "disk-cleanup", "restart-services", "verify-health"]

    /// Installs the shipped documents under `<world prefix>-` in moto (removed at clean-up).
    static func installDocuments(_ h: ActuatorHarness) async throws -> String {
        let prefix = "\(h.world.prefix)-"
        let ssm = SSMClient(h.world.aws)
        for name in documents {
            let content = try String(
                contentsOf: SSMDocumentTests.directory.appendingPathComponent("\(name).json"), encoding: .utf8)
            try await ssm.createDocument(name: prefix + name, content: content)
            await h.cleanup.add { try await ssm.deleteDocument(name: prefix + name) }
        }
        return prefix
    }

    static func ssmConfig(_ target: String) throws -> ActuatorConfig {
        ActuatorConfig(
            file: try TargetConfigFile(
                data: Data(
                    """
                    {"targets": {"\(target)": {"ssm_restart": true, "ssm_services": ["nginx", "php-fpm"]}}}
                    """.utf8)))
    }

    static func sendCommands(_ h: ActuatorHarness) -> [String] {
        h.log.actions("SendCommand").map(\.body)
    }

    /// The value of one document parameter in a SendCommand body.
    static func parameter(_ body: String, _ name: String) -> String? {
        let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return ((json?["Parameters"] as? [String: [String]])?[name])?.joined(separator: " ")
    }

    @Test(.timeLimit(.minutes(2)))
    func ssmRestartFixesTheSiteWithoutAReboot() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let target = h.name("ssm-ok")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let request = h.request(.restart, target: target, instance: instance.instanceId)

            let actuator = h.actuator(config: try Self.ssmConfig(target), ssm: true) { options in
                options.ssmDocumentPrefix = prefix
                options.ssmCommandTimeout = .seconds(45)
                options.diagnosticsTimeout = .seconds(20)
            }
            let result = try await actuator.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            #expect(
                h.log.actions("RebootInstances").isEmpty && h.log.actions("StopInstances").isEmpty,
                "fixed by SSM: no reboot")
            let sent = Self.sendCommands(h)
            #expect(sent.count == 4, "diagnostics before, restart-services, verify-health, diagnostics after: \(sent)")
            #expect(sent.allSatisfy { $0.contains(instance.instanceId) })
            #expect(sent.first?.contains("\"\(prefix)diagnostics\"") == true)
            let restart = try #require(sent.first { $0.contains("\"\(prefix)restart-services\"") })
            #expect(restart.contains("nginx php-fpm"), "the target's units are the services parameter")
            let verify = try #require(sent.first { $0.contains("\"\(prefix)verify-health\"") })
            #expect(verify.contains("127.0.0.1"), "verify-health checks the target's health URL")
            // No command may outlive the actuator's wait for it: executionTimeout is that wait.
            #expect(
                Self.parameter(restart, "executionTimeout") == "45"
                    && Self.parameter(verify, "executionTimeout") == "45")
            #expect(
                sent.filter { $0.contains("\"\(prefix)diagnostics\"") }.allSatisfy {
                    Self.parameter($0, "executionTimeout") == "20"
                })
            #expect(h.log.mutations.map(\.action).allSatisfy { $0 == "SendCommand" }, "\(h.log.mutations)")
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.done == [.inspect, .ssmRestart, .ssmVerify])
            #expect(
                record.resources.commandIds?["restart-services"] != nil
                    && record.resources.commandIds?["verify-health"] != nil)
            let notice = try #require(
                await h.notices.wait { $0.body.kind == .actionSucceeded && $0.body.target == target })
            #expect(notice.body.detail?.contains("no reboot") == true)
            // Diagnostics before and after, kept with the incident (correlation id).
            for phase in ["before", "after"] {
                let event = try #require(
                    await h.history.wait { $0.id == "\(request.idempotencyKey):diagnostics:\(phase)" }, "\(phase)")
                #expect(event.body.kind == .diagnostics)
                #expect(event.correlationId == request.incidentId)
                #expect(event.body.detail?.hasPrefix("diagnostics \(phase) (") == true, "\(event.body.detail ?? "")")
            }
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func ssmThatDoesNotBringTheSiteBackFallsBackToTheReboot() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let target = h.name("ssm-fallback")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            site.set(healthy: false)
            let request = h.request(.restart, target: target, instance: instance.instanceId)
            // moto reports both documents as exit 0; the site stays down until the reboot.
            let actuator = h.actuator(config: try Self.ssmConfig(target), ssm: true) { options in
                options.ssmDocumentPrefix = prefix
                options.afterSubStep = { _, sub in if sub == .ssmFallback { site.set(healthy: true) } }
            }

            let result = try await actuator.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.done == [.inspect, .ssmRestart, .ssmFallback, .reboot, .rebootHealthy])
            #expect(
                record.notes.contains {
                    $0.contains("verify-health passed") && $0.contains("still down") && $0.contains("Falling back")
                },
                "the fallback and its reason are recorded: \(record.notes)")
            let fallback = try #require(await h.history.wait { $0.id == "\(request.idempotencyKey):sub:ssm_fallback" })
            #expect(fallback.body.detail?.contains("still down") == true)
            #expect(h.log.mutations.map(\.action).filter { $0 != "SendCommand" } == ["RebootInstances"])
        }
    }

    /// moto cannot report an instance as unknown to SSM (see the suite's note), so this one test puts
    /// AWS's documented answer for that case (HTTP 400 `InvalidInstanceId` to SendCommand) in front of
    /// moto for SendCommand only; EC2, the site, RabbitMQ and Redis are real. It checks the actuator's
    /// reaction: no SSM step counts, the reason is recorded, the reboot runs.
    @Test(.timeLimit(.minutes(2)))
    func anInstanceWithoutAnSSMAgentFallsBackToTheReboot() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("ssm-no-agent")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            site.set(healthy: false)
            let request = h.request(.restart, target: target, instance: instance.instanceId)
            let noAgent = AWSClient(
                region: "us-east-1",
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
                http: NoSSMAgent(h.log), environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
            var options = ActuatorHarness.fastOptions("actuator-no-agent")
            options.afterSubStep = { _, sub in if sub == .ssmFallback { site.set(healthy: true) } }
            let actuator = ActuatorWorker(
                options: options, ec2: EC2Client(h.aws), route53: Route53Client(h.aws), ssm: SSMClient(noAgent),
                http: h.world.http,
                locks: h.locks, records: h.records, aborts: h.aborts, publisher: h.publisher,
                topology: h.world.topology,
                config: try Self.ssmConfig(target), logger: Logger(label: "actuator-no-agent"))

            let result = try await actuator.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.done == [.inspect, .ssmFallback, .reboot, .rebootHealthy], "\(record.done)")
            #expect(
                record.notes.contains { $0.contains("InvalidInstanceId") && $0.contains("no registered agent") },
                "\(record.notes)")
            #expect(h.log.mutations.map(\.action).filter { $0 != "SendCommand" } == ["RebootInstances"])
        }
    }

    /// The SSM attempt ran, its actor died before the reboot, and the request is resumed after its
    /// deadline: the refusal says what did run (restart-services, its command) instead of "nothing".
    @Test(.timeLimit(.minutes(2)))
    func aRestartResumedAfterItsDeadlineSaysTheSSMAttemptRan() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let target = h.name("ssm-late")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            site.set(healthy: false)
            let request = h.request(.restart, target: target, instance: instance.instanceId)
            let dying = h.actuator("actuator-dies", config: try Self.ssmConfig(target), ssm: true) { options in
                options.ssmDocumentPrefix = prefix
                options.lockTTL = .seconds(2)
                options.afterSubStep = { _, sub in if sub == .ssmFallback { throw SimulatedCrash() } }
            }
            await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }

            let late = h.actuator("actuator-late", config: try Self.ssmConfig(target), ssm: true, clockAhead: 3600) {
                $0.ssmDocumentPrefix = prefix
            }
            let result = try await late.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .failed)
            #expect(outcome.reason?.contains("SSM ran restart-services (command ") == true, "\(outcome.reason ?? "")")
            #expect(outcome.reason?.contains("not rebooted") == true)
            #expect(h.log.actions("RebootInstances").isEmpty)
        }
    }

    /// A re-provision of a target with SSM diagnostics: before on the original (about to be stopped),
    /// after on the replacement, both kept with the incident.
    @Test(.timeLimit(.minutes(2)))
    func aReprovisionCollectsDiagnosticsFromTheOriginalAndTheReplacement() async throws {
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let target = h.name("reprov-diag")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            _ = try await h.snapshot(target, h.ec2)
            let request = h.request(.reprovision, target: target, instance: old.instanceId)
            let config = ActuatorConfig(
                file: try TargetConfigFile(
                    data: Data(
                        """
                        {"targets": {"\(target)": {"ssm_diagnostics": true}}}
                        """.utf8)))

            let result = try await h.actuator(config: config, ssm: true) { $0.ssmDocumentPrefix = prefix }.perform(
                request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let newId = try #require(outcome.instanceId)
            let sent = Self.sendCommands(h)
            #expect(sent.count == 2, "\(sent)")
            #expect(
                sent.first?.contains(old.instanceId) == true && sent.first?.contains("\(prefix)diagnostics") == true)
            #expect(sent.last?.contains(newId) == true && sent.last?.contains("\(prefix)diagnostics") == true)
            // The original's diagnostics were taken before anything was launched or stopped.
            let actions = h.log.all.map(\.action)
            let firstSend = try #require(actions.firstIndex(of: "SendCommand"))
            #expect(
                actions[..<firstSend].allSatisfy { !["RunInstances", "StopInstances", "RegisterImage"].contains($0) },
                "\(actions)")
            let before = try #require(await h.history.wait { $0.id == "\(request.idempotencyKey):diagnostics:before" })
            let after = try #require(await h.history.wait { $0.id == "\(request.idempotencyKey):diagnostics:after" })
            #expect(before.correlationId == request.incidentId && after.correlationId == request.incidentId)
            #expect(after.body.detail?.contains("on \(newId)") == true, "\(after.body.detail ?? "")")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func anSSMRepairRunsThePrefixedDocumentOnce() async throws {
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let target = h.name("ssm-repair")
            let instance = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let request = ActionRequest.repair(
                RepairRequest(
                    .ssm(document: "disk-cleanup", parameters: ["maxAgeDays": ["3"]]), id: "pred-disk",
                    reason: "disk 93% full"),
                target: target, instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date(),
                deadline: Date() + 300)
            let actuator = h.actuator(ssm: true) { $0.ssmDocumentPrefix = prefix }

            let result = try await actuator.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            #expect(outcome.repair == .ssm && outcome.step == .notifyOnly)
            #expect(outcome.idempotencyKey == "\(target)/repair/ssm/pred-disk")
            let commandId = try #require(outcome.resources?["command_id.disk-cleanup"])
            let sent = try #require(Self.sendCommands(h).first)
            #expect(Self.sendCommands(h).count == 1, "no diagnostics for a target without ssm settings")
            #expect(sent.contains("\"\(prefix)disk-cleanup\"") && sent.contains("\"maxAgeDays\":[\"3\"]"), "\(sent)")
            // An `ssm` repair waits up to the request's remaining time (here under 300 s, more than
            // SSM_COMMAND_TIMEOUT's 120 s, less than the document's 900 s), and the command is told so.
            let limit = try #require(Self.parameter(sent, "executionTimeout").flatMap { Int($0) }, "\(sent)")
            #expect(limit > 250 && limit <= 300, "\(limit)")
            let invocation = try await SSMClient(h.world.aws).getCommandInvocation(
                commandId: commandId, instanceId: instance.instanceId)
            #expect(invocation.status == .success)

            let before = h.log.mutations.count
            #expect(try await actuator.perform(request) == .republished(outcome))
            #expect(h.log.mutations.count == before, "a redelivered repair sends nothing")
        }
    }

    /// The decision's predicted memory/CPU repair is restart-services with no parameters; the document has
    /// no default for `services`, so the actuator fills in the target's ssm_services, and refuses before
    /// sending anything when the target has none.
    @Test(.timeLimit(.minutes(2)))
    func aRestartServicesRepairUsesTheTargetsUnitsOrIsRefusedBeforeSending() async throws {
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let withUnits = h.name("ssm-units")
            let without = h.name("ssm-no-units")
            let a = try await h.launchTarget(withUnits, healthURL: "http://127.0.0.1:9/health")
            let b = try await h.launchTarget(without, healthURL: "http://127.0.0.1:9/health")
            let config = ActuatorConfig(
                file: try TargetConfigFile(
                    data: Data(
                        """
                        {"targets": {"\(withUnits)": {"ssm_services": ["nginx", "php-fpm"], "ssm_diagnostics": false}}}
                        """.utf8)))
            func request(_ target: String, _ instance: String) -> ActionRequest {
                ActionRequest.repair(
                    RepairRequest(
                        .ssm(document: "restart-services", parameters: [:]), id: "pred-mem", reason: "memory leak"),
                    target: target, instanceId: instance, region: "us-east-1", requestedAt: Date(),
                    deadline: Date() + 300)
            }
            let actuator = h.actuator(config: config, ssm: true) { $0.ssmDocumentPrefix = prefix }

            guard case .completed(let ok) = try await actuator.perform(request(withUnits, a.instanceId)) else {
                Issue.record("not completed")
                return
            }
            #expect(ok.status == .succeeded, "\(ok.reason ?? "")")
            let sent = try #require(Self.sendCommands(h).first)
            #expect(Self.sendCommands(h).count == 1)
            #expect(
                sent.contains("\"\(prefix)restart-services\"") && sent.contains("\"services\":[\"nginx php-fpm\"]"),
                "\(sent)")

            guard case .completed(let refused) = try await actuator.perform(request(without, b.instanceId)) else {
                Issue.record("not completed")
                return
            }
            #expect(refused.status == .failed)
            #expect(refused.reason?.contains("set ssm_services for \(without)") == true, "\(refused.reason ?? "")")
            #expect(Self.sendCommands(h).count == 1, "nothing sent for a target without units")
        }
    }

    /// The actor that sent the command died before recording its result; the next one finds the deadline
    /// passed. The command was sent, so its result is fetched and reported (not "nothing was done").
    @Test(.timeLimit(.minutes(2)))
    func anSSMRepairResumedAfterTheDeadlineReportsTheSentCommand() async throws {
        try await ActuatorHarness.run { h in
            let prefix = try await Self.installDocuments(h)
            let target = h.name("ssm-late")
            let instance = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            let request = ActionRequest.repair(
                RepairRequest(
                    .ssm(document: "disk-cleanup", parameters: [:]), id: "pred-late", reason: "disk 95% full"),
                target: target, instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date() - 600,
                deadline: Date() - 60)
            // The dead actor's state: the command sent (by the test's unlogged client) and its id recorded.
            let command = try await SSMClient(h.world.aws).sendCommand(
                SendCommandInput(
                    documentName: "\(prefix)disk-cleanup", instanceIds: [instance.instanceId]))
            var record = StepRecord(
                request: request, owner: "actuator-died", fencingToken: 0, dryRun: false, now: Date() - 500)
            record.resources.commandIds = ["disk-cleanup": command.commandId]
            #expect(try await h.records.create(record))

            let result = try await h.actuator(ssm: true) { $0.ssmDocumentPrefix = prefix }.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            #expect(outcome.resources?["command_id.disk-cleanup"] == command.commandId)
            #expect(Self.sendCommands(h).isEmpty, "nothing sent again")
            #expect(!h.log.actions("GetCommandInvocation").isEmpty, "the result was fetched")
            let stored = try #require(try await h.records.load(request.idempotencyKey))
            #expect(stored.summary?.contains(command.commandId) == true, "\(stored.summary ?? "")")
        }
    }

    // MARK: EBS

    @Test(.timeLimit(.minutes(3)))
    func ebsRepairSwapsTheRootVolumeForOneFromTheSnapshotAndKeepsTheOldOne() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("ebs")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let root = try #require(instance.rootDeviceName)
            let oldVolume = try #require(instance.blockDevices.first { $0.deviceName == root }?.volumeId)
            let good = try await h.snapshot(target, h.ec2)
            let request = ActionRequest.repair(
                RepairRequest(.ebsRepair, id: "pred-ebs", reason: "root volume impaired"), target: target,
                instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date(), deadline: Date() + 300)
            // The first actor dies right after detaching the old root; the second resumes from the record.
            let dying = h.actuator("actuator-dies") { options in
                options.lockTTL = .seconds(2)
                options.afterSubStep = { _, sub in if sub == .detachOld { throw SimulatedCrash() } }
            }
            await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }

            let result = try await h.actuator("actuator-b").perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let resources = try #require(outcome.resources)
            let newVolume = try #require(resources["new_volume_id"])
            #expect(resources["old_volume_id"] == oldVolume)
            #expect(resources["source_snapshot_id"] == good.snapshotId)
            let evidence = try #require(resources["evidence_snapshot_id"])
            await h.cleanup.add { [ec2 = h.ec2] in
                _ = try? await ec2.terminateInstances([instance.instanceId])
                _ = try? await ec2.waitUntilTerminated([instance.instanceId], interval: .milliseconds(200))
                try? await ec2.deleteVolume(newVolume)
                try? await ec2.deleteVolume(oldVolume)
                try? await ec2.deleteSnapshot(evidence)
            }
            // The instance now boots from a volume made from the good snapshot, at the same device.
            let now = try await h.instance(instance.instanceId, h.ec2)
            #expect(now.state == .running)
            #expect(now.blockDevices.first { $0.deviceName == root }?.volumeId == newVolume)
            let created = try #require(try await h.ec2.describeVolumes(volumeIds: [newVolume]).first)
            #expect(created.snapshotId == good.snapshotId)
            #expect(created.availabilityZone == instance.availabilityZone)
            // The old root is kept, detached and tagged; the evidence snapshot is of it and not a "good" one.
            let old = try #require(try await h.ec2.describeVolumes(volumeIds: [oldVolume]).first)
            #expect(old.state == "available")
            #expect(old.tags["AutoRecovery:ReplacedBy"] == newVolume)
            let evidenceSnapshot = try #require(try await h.ec2.describeSnapshots(snapshotIds: [evidence]).first)
            #expect(evidenceSnapshot.volumeId == oldVolume)
            #expect(
                evidenceSnapshot.tags["AutoRecovery:Name"] == nil
                    && evidenceSnapshot.tags["AutoRecovery:EvidenceFor"] == target)
            // Resumed, not repeated: one of each creation, one stop, one detach, one attach.
            for action in [
                "CreateSnapshot", "CreateVolume", "StopInstances", "DetachVolume", "AttachVolume", "StartInstances",
            ] {
                #expect(h.log.actions(action).count == 1, "\(action): \(h.log.actions(action).count)")
            }
            #expect(!h.log.actions("CreateSnapshot").contains { $0.body.contains(good.snapshotId) })
            #expect(h.log.actions("DeleteVolume").isEmpty, "the old volume is never deleted")
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.attempts == 2)
            #expect(record.done.suffix(5) == [.newAttached, .start, .running, .eip, .finalCheck])

            let before = h.log.mutations.count
            #expect(try await h.actuator("actuator-c").perform(request) == .republished(outcome))
            #expect(h.log.mutations.count == before, "a redelivered repair changes nothing")
        }
    }

    /// An actor stopped the instance and died before recording the stop; the next one resumes after the
    /// deadline. The instance is stopped, so the swap goes on and it is started, instead of a "nothing was
    /// changed" failure that would leave it stopped.
    @Test(.timeLimit(.minutes(3)))
    func ebsRepairResumedAfterTheDeadlineFinishesASwapTheDeadActorBegan() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("ebs-late")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let root = try #require(instance.rootDeviceName)
            let oldVolume = try #require(instance.blockDevices.first { $0.deviceName == root }?.volumeId)
            _ = try await h.snapshot(target, h.ec2)
            let request = ActionRequest.repair(
                RepairRequest(.ebsRepair, id: "pred-ebs-late", reason: "root volume impaired"), target: target,
                instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date(), deadline: Date() + 300)
            let ec2 = h.ec2
            let dying = h.actuator("actuator-dies") { options in
                options.lockTTL = .seconds(2)
                options.afterSubStep = { _, sub in
                    guard sub == .volumeAvailable else { return }
                    _ = try await ec2.stopInstances([instance.instanceId])  // sent, then the actor dies unrecorded
                    throw SimulatedCrash()
                }
            }
            await #expect(throws: SimulatedCrash.self) { try await dying.perform(request) }

            let result = try await h.actuator("actuator-late", clockAhead: 3600).perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            let newVolume = try #require(outcome.resources?["new_volume_id"])
            await h.cleanup.add { [ec2] in
                _ = try? await ec2.terminateInstances([instance.instanceId])
                _ = try? await ec2.waitUntilTerminated([instance.instanceId], interval: .milliseconds(200))
                try? await ec2.deleteVolume(newVolume)
                try? await ec2.deleteVolume(oldVolume)
                if let evidence = outcome.resources?["evidence_snapshot_id"] { try? await ec2.deleteSnapshot(evidence) }
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            let now = try await h.instance(instance.instanceId, h.ec2)
            #expect(now.state == .running, "not left stopped")
            #expect(now.blockDevices.first { $0.deviceName == root }?.volumeId == newVolume)
            #expect(h.log.actions("StopInstances").isEmpty, "the resumer saw it stopped and sent no second stop")
            #expect(h.log.actions("StartInstances").count == 1)
        }
    }

    /// The new root was attached, then the step failed before the attachment was confirmed (moto attaches at
    /// once and cannot leave one stuck, so the failure is injected after the `attach_new` record). The
    /// compensation must put the old root back at the device before starting the instance.
    @Test(.timeLimit(.minutes(3)))
    func aFailedEBSRepairAfterAttachingTheNewRootPutsTheOldOneBack() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("ebs-comp")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let root = try #require(instance.rootDeviceName)
            let oldVolume = try #require(instance.blockDevices.first { $0.deviceName == root }?.volumeId)
            _ = try await h.snapshot(target, h.ec2)
            let request = ActionRequest.repair(
                RepairRequest(.ebsRepair, id: "pred-ebs-comp", reason: "root volume impaired"), target: target,
                instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date(), deadline: Date() + 300)
            let actuator = h.actuator { options in
                options.afterSubStep = { _, sub in if sub == .attachNew { throw InjectedFailure() } }
            }

            let result = try await actuator.perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            let newVolume = try #require(outcome.resources?["new_volume_id"])
            await h.cleanup.add { [ec2 = h.ec2] in
                _ = try? await ec2.terminateInstances([instance.instanceId])
                _ = try? await ec2.waitUntilTerminated([instance.instanceId], interval: .milliseconds(200))
                try? await ec2.deleteVolume(newVolume)
                try? await ec2.deleteVolume(oldVolume)
                if let evidence = outcome.resources?["evidence_snapshot_id"] { try? await ec2.deleteSnapshot(evidence) }
            }
            #expect(outcome.status == .failed)
            let now = try await h.instance(instance.instanceId, h.ec2)
            #expect(
                now.blockDevices.first { $0.deviceName == root }?.volumeId == oldVolume,
                "the old root is back: \(now.blockDevices)")
            #expect(
                try await h.ec2.describeVolumes(volumeIds: [newVolume]).first?.state == "available",
                "the new volume is detached")
            #expect(
                try await h.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(200)).first?.state
                    == .running)
            #expect(
                h.log.actions("DetachVolume").count == 2 && h.log.actions("AttachVolume").count == 2,
                "\(h.log.mutations)")
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.done.contains(.compensated))
            #expect(
                record.notes.contains {
                    $0.contains(newVolume) && $0.contains(oldVolume) && $0.contains("attached again")
                }, "\(record.notes)")
        }
    }

    // MARK: Quarantine

    @Test(.timeLimit(.minutes(3)))
    func aQuarantinedTargetGetsANoticeButNoActionAndUnquarantineLiftsIt() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let world = h.world
            let target = h.name("quar")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let address = try await h.elasticIP(on: instance.instanceId, h.ec2)
            // The actuator's instance-config table, with an item that must survive the merge.
            let table = TargetConfigTable(dynamo: DynamoDBClient(h.aws), tableName: "\(world.prefix)-config")
            try await table.create()
            await h.cleanup.add { _ = try await DynamoDBClient(world.aws).deleteTable(table.tableName) }
            try await table.put(
                target: target, settings: Data(#"{"grace_period": 1, "health_url": "http://example.invalid/h"}"#.utf8))
            let actuatorConfig = ActuatorConfig(source: TargetConfigSource(file: .empty, table: table))
            // Discovery for the decision worker does not read the table: the tag alone must quarantine.
            let config = try TargetConfigFile(
                data: Data(#"{"defaults": {"failure_threshold": 2, "grace_period": 1}}"#.utf8))
            let catalog = TargetCatalog(
                ec2: world.ec2, drRegion: nil, config: config, fleet: world.prefix, logger: Logger(label: "catalog"))
            let redis = h.redis
            var decisionOptions = DecisionWorker.Options(workerId: "decision-quar")
            decisionOptions.tick = .milliseconds(100)
            decisionOptions.operators = ["ops"]  // the commands below come from "ops"; empty OPERATORS refuses all
            let decision = DecisionWorker(
                options: decisionOptions, states: RedisStateStore(client: redis, keyspace: world.keyspace),
                schedule: RedisSchedule(client: redis, keyspace: world.keyspace, name: "decision"),
                publisher: h.publisher,
                topology: world.topology, catalog: { try await catalog.discover() }, defaultRegion: "us-east-1",
                logger: Logger(label: "decision"))
            try await decision.refreshCatalog()

            // The real actuator consumes the requests queue; every request it receives is remembered.
            let received = Mutex<[ActionRequest]>([])
            let actuator = h.actuator(config: actuatorConfig)
            let requests = AMQPConsumer(
                configuration: world.amqp, topology: world.topology.amqp, queue: world.topology.actionRequestsQueue)
            let loop = MessageWorker<Envelope<ActionRequest>>(
                consumer: requests,
                deadLetters: DeadLetterSink(
                    publisher: h.publisher, topology: world.topology, workerName: "actuator-quar"),
                expecting: .actionRequest, logger: Logger(label: "actuator-quar"), senders: nil
            ) { envelope, delivery in
                received.withLock { $0.append(envelope.body) }
                try await actuator.handle(envelope, delivery: delivery)
            }
            let running = Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await loop.run() }
                    group.addTask { await decision.runTicker() }
                }
            }
            func command(_ name: String, id: String, detach: Bool? = nil) async throws {
                try await decision.handle(
                    .command(
                        Envelope(
                            type: .command, id: id, target: target, occurredAt: Date(),
                            body: CommandBody(name: name, reason: "under investigation", detachEip: detach))),
                    verifiedUser: "ops")
            }

            try await command("quarantine", id: "\(world.prefix)-q1", detach: true)
            let key = RepairRequest.key(target: target, kind: .quarantine, id: "\(world.prefix)-q1")
            let done = try #require(await h.outcome(key))
            #expect(done.body.status == .succeeded, "\(done.body.reason ?? "")")
            let tagged = try await h.instance(instance.instanceId, h.ec2)
            #expect(tagged.tags["AutoRecovery:Quarantined"]?.contains("under investigation") == true)
            #expect(
                try await h.ec2.describeAddresses(allocationIds: [address.allocationId!]).first?.instanceId == nil,
                "detach_eip took the address off")
            let item = try #require(
                try await table.dynamo.getItem(
                    tableName: table.tableName, key: ["instance_id": .string(target)], consistentRead: true))
            #expect(item["quarantined"] == .bool(true))
            #expect(item["health_url"] == .string("http://example.invalid/h"), "the item was merged, not replaced")
            #expect(received.withLock { $0.map(\.idempotencyKey) } == [key])

            // An outage now: the decision worker (after discovery saw the tag) says so and does nothing.
            try await decision.refreshCatalog()
            let mutationsBefore = h.log.mutations.count
            site.set(healthy: false)
            for i in 1...3 {
                try await decision.handle(
                    .probe(
                        Envelope(
                            type: .observation, id: "\(world.prefix)-p\(i)", target: target,
                            instanceId: instance.instanceId, occurredAt: Date(),
                            body: ProbeResult(prober: "probe-a", healthy: false, statusCode: 503))), verifiedUser: nil)
            }
            let declared = try #require(
                await h.notices.wait { $0.body.kind == .outageDeclared && $0.body.target == target })
            #expect(declared.body.blockedBy == .quarantine)
            #expect(declared.body.nextStep == .notifyOnly)
            // Grace (1 s) has passed twice over: a step would have been requested by now.
            try await Task.sleep(for: .seconds(3))
            #expect(received.withLock { $0.count } == 1, "no action request for a quarantined target")
            #expect(
                h.log.mutations.count == mutationsBefore,
                "no AWS mutation: \(h.log.mutations.dropFirst(mutationsBefore))")

            // unquarantine: tag removed, flag false; discovery no longer quarantines it.
            try await command("unquarantine", id: "\(world.prefix)-u1")
            let lifted = try #require(
                await h.outcome(RepairRequest.key(target: target, kind: .unquarantine, id: "\(world.prefix)-u1")))
            #expect(lifted.body.status == .succeeded, "\(lifted.body.reason ?? "")")
            #expect(try await h.instance(instance.instanceId, h.ec2).tags["AutoRecovery:Quarantined"] == nil)
            let after = try #require(
                try await table.dynamo.getItem(
                    tableName: table.tableName, key: ["instance_id": .string(target)], consistentRead: true))
            #expect(after["quarantined"] == .bool(false))
            #expect(try await catalog.discover().first { $0.name == target }?.settings.quarantined == false)

            running.cancel()
            await requests.shutdown()
            await running.value
        }
    }
}

/// Answers SendCommand as SSM does for an instance without a registered agent; everything else goes on
/// to the wrapped client (moto).
final class NoSSMAgent: HTTPExecuting, Sendable {
    let inner: any HTTPExecuting
    init(_ inner: any HTTPExecuting) { self.inner = inner }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let target = request.headers.first { $0.name.lowercased() == "x-amz-target" }?.value
        guard target == "AmazonSSM.SendCommand" else { return try await inner.execute(request) }
        let body =
            #"{"__type":"InvalidInstanceId","message":"Instances [[i-0]] not in a valid state for account 123456789012"}"#
        return HTTPResponse(
            status: 400, headers: [("Content-Type", "application/x-amz-json-1.1")], body: Array(body.utf8),
            timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
    }
}

/// A failure injected by a test hook (not a crash: the step fails and is compensated).
struct InjectedFailure: Error, CustomStringConvertible {
    var description: String { "injected failure" }
}
