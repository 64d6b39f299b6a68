import AWSClient
import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import RecoveryCore

/// Tags the actuator reads and writes.
enum RecoveryTags {
    static let optIn = TargetCatalog.optInTag  // AutoRecovery=enabled
    static let name = TargetCatalog.nameTag  // AutoRecovery:Name=<target>
    static let healthURL = TargetCatalog.healthURLTag  // AutoRecovery:HealthUrl
    static let replacedBy = TargetCatalog.replacedByTag  // on the old instance: the new id
    static let replacementOf = "AutoRecovery:ReplacementOf"  // on the new instance: the old id
    static let drFor = "AutoRecovery:DrFor"  // on an Elastic IP the actuator allocated in DR
    static let abandonedBy = "AutoRecovery:AbandonedBy"  // on a launched instance a failed step stopped
    static let step = "AutoRecovery:Step"  // on images, repair volumes/snapshots: the key
    static let quarantined = TargetCatalog.quarantinedTag  // AutoRecovery:Quarantined=<time> <reason>
    static let evidenceFor = "AutoRecovery:EvidenceFor"  // on an EBS repair's snapshot of the old root
    static let rootFor = "AutoRecovery:RootFor"  // on an EBS repair's new root volume
}

/// How a step ended, before it becomes an `ActionOutcome`.
enum StepResult: Sendable {
    /// `summary` says what was done; `newInstance` is set for re-provision and fail-over.
    case succeeded(summary: String, newInstance: InstanceRef?)
    case failed(String)
    case humanNeeded(String)
    /// An operator aborted it; `summary` says where it stopped and what was put back.
    case aborted(StepAbort, summary: String)
}

/// Everything one run of a step needs, and the helpers that make every sub-step safe:
///
/// - `mutate` checks the lease (`isHeld`, fencing) right before every AWS mutation, and in a dry run
///   records the call instead of making it;
/// - `finish` appends the sub-step to the record and stores it (fenced compare-and-set) before the
///   step goes on, publishes a progress event, and calls the test fault hook;
/// - each step is a plan, an ordered list of `PlannedSubStep`s (SubStepPlan.swift), walked by `walk`,
///   which skips the sub-steps already in `record.done`, so a resumed step never repeats finished work.
///
/// Confined to the task that runs the step.
final class StepContext {
    let request: ActionRequest
    var record: StepRecord
    let records: StepRecordStore
    /// The abort flags (`StepAbort.flagKey`), read at every sub-step boundary (ActuatorAbort.swift).
    let aborts: any KeyValueStore
    let keeper: LeaseKeeper
    let envelopes: EnvelopePublisher
    let options: ActuatorWorker.Options
    let config: ActuatorTargetConfig
    let home: any EC2Operations
    let destination: any EC2Operations
    let route53: any Route53Operations
    /// SSM in the request's region; nil when the actuator has no SSM client (then no SSM is used).
    let ssm: (any SSMOperations)?
    /// The instance-config table, for quarantine's flag; nil without INSTANCE_CONFIG_TABLE.
    let table: TargetConfigTable?
    let http: any HTTPExecuting
    let logger: Logger
    let clock: @Sendable () -> Date
    /// Set in this run when SSM proved unusable for the instance (no agent): later SSM use is skipped.
    var ssmUnavailable: String?

    init(
        request: ActionRequest, record: StepRecord, records: StepRecordStore, aborts: any KeyValueStore,
        keeper: LeaseKeeper,
        envelopes: EnvelopePublisher, options: ActuatorWorker.Options, config: ActuatorTargetConfig,
        home: any EC2Operations,
        destination: any EC2Operations, route53: any Route53Operations, ssm: (any SSMOperations)? = nil,
        table: TargetConfigTable? = nil,
        http: any HTTPExecuting, logger: Logger, clock: @escaping @Sendable () -> Date
    ) {
        self.request = request
        self.record = record
        self.records = records
        self.aborts = aborts
        self.keeper = keeper
        self.envelopes = envelopes
        self.options = options
        self.config = config
        self.home = home
        self.destination = destination
        self.route53 = route53
        self.ssm = ssm
        self.table = table
        self.http = http
        self.logger = logger
        self.clock = clock
    }

    var dryRun: Bool { record.dryRun }
    var target: String { request.target }
    var key: String { request.idempotencyKey }

    func isDone(_ sub: SubStep) -> Bool { record.isDone(sub) }

    var pastDeadline: Bool { clock() > request.deadline }

    /// Time left until the request's deadline (zero when it has passed).
    var remaining: Duration {
        let seconds = request.deadline.timeIntervalSince(clock())
        return seconds > 0 ? .milliseconds(Int64(seconds * 1000)) : .zero
    }

    func note(_ text: String) {
        record.notes.append("\(Timestamp.format(clock())) \(text)")
        logger.notice("\(text)")
    }

    /// Records a finished sub-step (and whatever it found or created), then publishes its event.
    func finish(_ sub: SubStep, _ detail: String, _ update: (inout StepResources) -> Void = { _ in }) async throws {
        let detail = dryRun ? "dry run, nothing sent (as if: \(detail))" : detail
        update(&record.resources)
        if !record.done.contains(sub) { record.done.append(sub) }
        record.updatedAt = clock()
        try await records.save(record)
        logger.info("sub-step done: \(sub.rawValue): \(detail)", metadata: ["sub_step": "\(sub.rawValue)"])
        await event(.subStep, id: "\(key):sub:\(sub.rawValue)", subStep: sub, detail: detail)
        if let hook = options.afterSubStep { try await hook(key, sub) }
    }

    /// Runs one AWS mutation: checks the lease first; in a dry run, records the call and returns
    /// `dryRunValue` without calling.
    ///
    /// Inside, every re-send of the client checks the lease again (`AWSCallGuard`), and a call not in
    /// `idempotentActions` is re-sent by the client only when AWS certainly did not act on it. When such a
    /// call ends in an answer that may hide a done call (5xx, timeout, broken connection), `look` tells
    /// whether it took effect: if so its result is used, otherwise the call is sent again (at most
    /// `ambiguousResends` times, the lease checked before each). Without `look` the error ends the attempt,
    /// and the actor that resumes the step looks before it sends (each sub-step looks for what it creates).
    func mutate<T>(
        _ call: PlannedCall, dryRunValue: @autoclosure () -> T, look: (() async throws -> T?)? = nil,
        _ body: () async throws -> T
    ) async throws -> T {
        if dryRun {
            record.plannedCalls.append(call.description)
            return dryRunValue()
        }
        try await keeper.check(before: call.description)
        logger.info("calling \(call)")
        let callGuard = AWSCallGuard(idempotent: Self.idempotentActions.contains(call.action)) {
            [keeper, description = call.description] _ in
            try await keeper.check(before: "re-sending \(description)")
        }
        var resends = 0
        while true {
            do {
                return try await AWSCallGuard.$current.withValue(callGuard) { try await body() }
            } catch let error as AWSError where error.kind.mayHaveActed && !callGuard.idempotent {
                guard let look, resends < Self.ambiguousResends else { throw error }
                resends += 1
                try await keeper.check(before: "looking whether \(call.description) took effect")
                if let found = try await look() {
                    note("\(call.description) answered \(error.kind) but had taken effect; using what it made")
                    return found
                }
                note("\(call.description) answered \(error.kind) and did not take effect; sending it again")
                try await Task.sleep(for: options.retryDelay)
                try await keeper.check(before: call.description)
            }
        }
    }

    func mutate(_ call: PlannedCall, _ body: () async throws -> Void) async throws {
        try await mutate(call, dryRunValue: (), body)
    }

    /// Calls that may be sent twice with the effect of once: RunInstances carries the step's client token,
    /// RegisterImage a name unique to the step (a repeat is refused as a duplicate and the image looked
    /// up), the others set a state. Everything else (RebootInstances, AllocateAddress, CreateSnapshot,
    /// CreateVolume, Attach/DetachVolume, SendCommand …) is not re-sent blindly.
    static let idempotentActions: Set<String> = [
        "RunInstances", "RegisterImage", "StopInstances", "StartInstances", "AssociateAddress", "CreateTags",
        "DeleteTags", "ChangeResourceRecordSets", "UpdateItem",
    ]

    /// How often a non-idempotent call that may not have taken effect is sent again after looking.
    static let ambiguousResends = 2

    /// Publishes a history event; a failure is logged, never fatal (the record is the source of truth).
    func event(_ kind: ActuatorEvent.Kind, id: String, subStep: SubStep? = nil, detail: String? = nil) async {
        let body = ActuatorEvent(
            kind: kind, actor: options.workerId, idempotencyKey: key, incidentId: request.incidentId,
            step: request.step,
            subStep: subStep, fencingToken: keeper.lease.fencingToken, detail: detail, resources: record.resources,
            plannedCalls: record.plannedCalls.isEmpty ? nil : record.plannedCalls)
        do {
            try await envelopes.publish(
                .event, id: id, target: target, instanceId: request.instanceId,
                correlationId: request.incidentId, body: body, now: clock())
        } catch {
            logger.warning("could not publish a progress event", metadata: ["error": "\(error)", "event": "\(id)"])
        }
    }

    /// Publishes a notice; a failure is logged, never fatal.
    func notify(_ notice: Notice) async {
        do {
            try await envelopes.publish(
                .notification, id: notice.id, target: notice.target, instanceId: notice.instanceId,
                correlationId: notice.incidentId, body: notice, now: clock())
        } catch {
            logger.warning("could not publish a notice", metadata: ["error": "\(error)", "notice": "\(notice.id)"])
        }
    }

    func run() async throws -> StepResult {
        // Diagnostics around every destructive action (docs/actuator.md, "SSM"): in place (restart, EBS
        // repair, an SSM repair) before and after on the instance; for a re-provision or fail-over, before
        // on the original (it is about to be stopped) and after on the instance that replaced it.
        let inPlace = request.repair.map { $0.kind == .ebsRepair || $0.kind == .ssm } ?? (request.step == .restart)
        let replacing = request.repair == nil && (request.step == .reprovision || request.step == .failover)
        if (inPlace || replacing) && !record.done.contains(where: Self.changesInstance.contains) {
            await collectDiagnostics("before")
        }
        let result = try await runAction()
        if !dryRun {
            if inPlace {
                await collectDiagnostics("after")
            } else if replacing, case .succeeded(_, let newInstance?) = result {
                await collectDiagnostics("after", on: newInstance)
            }
        }
        return result
    }

    /// Sub-steps after which "before" diagnostics would no longer be "before".
    static let changesInstance: Set<SubStep> = [
        .ssmRestart, .ssmFallback, .reboot, .rebootUnhealthy, .stop, .ssmCommand, .detachOld, .launch, .stopOld,
    ]

    private func runAction() async throws -> StepResult {
        if let repair = request.repair {
            switch repair.action {
            case .ssm(let document, let parameters):
                return try await runSSMRepair(document: document, parameters: parameters)
            case .ebsRepair: return try await runEBSRepair()
            case .quarantine(let detach): return try await runQuarantine(detachElasticIP: detach, reason: repair.reason)
            case .unquarantine: return try await runUnquarantine()
            }
        }
        switch request.step {
        case .restart: return try await runRestart()
        case .reprovision: return try await runReplacement(failover: false)
        case .failover: return try await runReplacement(failover: true)
        case .notifyOnly: return .failed("notify_only is not an actuator step")
        }
    }

    // MARK: Shared look-ups

    func describe(_ ec2: any EC2Operations, _ id: String) async throws -> EC2Instance? {
        do {
            return try await ec2.describeInstances(instanceIds: [id], filters: []).first
        } catch let error as AWSError
            where error.code == "InvalidInstanceID.NotFound" || error.code == "InvalidInstanceID.Malformed"
        {
            return nil
        }
    }

    /// What every step's `inspect` records about the original instance.
    func recordOriginal(_ resources: inout StepResources, allocation: String?, healthURL: String?) {
        resources.originalInstanceId = request.instanceId
        resources.originalRegion = request.region
        resources.allocationId = allocation
        resources.healthURL = healthURL
    }

    /// The Elastic IP allocation of the target: the request's, else the one on the instance.
    func allocation(on instanceId: String, ec2: any EC2Operations) async throws -> String? {
        if let given = request.elasticIpAllocationId { return given }
        return try await ec2.describeAddresses(
            publicIps: [], allocationIds: [], filters: [EC2Filter("instance-id", [instanceId])]
        ).first?.allocationId
    }

    /// The newest completed snapshot tagged `AutoRecovery:Name=<target>` that this account owns.
    static func latestSnapshot(_ ec2: any EC2Operations, target: String) async throws -> EC2Snapshot? {
        try await ec2.describeSnapshots(
            snapshotIds: [], ownerIds: ["self"],
            filters: [.tag(RecoveryTags.name, target), EC2Filter("status", ["completed"])]
        )
        .filter { $0.state == "completed" && $0.tags[RecoveryTags.name] == target }
        .max { ($0.startTime ?? .distantPast, $0.snapshotId) < ($1.startTime ?? .distantPast, $1.snapshotId) }
    }

    // MARK: Health

    /// Both status checks ok and, when the target has a health URL, a healthy answer from it.
    func healthy(_ ec2: any EC2Operations, _ id: String) async -> (ok: Bool, detail: String) {
        do {
            guard let status = try await ec2.describeInstanceStatus(instanceIds: [id], filters: []).first else {
                return (false, "no status for \(id)")
            }
            guard status.state == .running else { return (false, "instance is \(status.state)") }
            guard status.systemStatus.isOK && status.instanceStatus.isOK else {
                return (
                    false,
                    "status checks: system \(status.systemStatus.status), instance \(status.instanceStatus.status)"
                )
            }
        } catch {
            return (false, "DescribeInstanceStatus failed: \(error)")
        }
        guard let url = record.resources.healthURL else { return (true, "status checks ok (no health URL)") }
        let request = HTTPRequest(
            url: url, timeout: options.healthCheckTimeout,
            connectTimeout: min(options.healthCheckTimeout, .seconds(5)), maxBodyBytes: 64 * 1024,
            followRedirects: true, freshConnection: true)
        do {
            let response = try await http.execute(request)
            if config.settings.isHealthy(statusCode: response.status, body: response.bodyString) {
                return (true, "status checks ok, \(url) answered HTTP \(response.status)")
            }
            return (false, "\(url) answered HTTP \(response.status)")
        } catch {
            return (false, "\(url) did not answer: \(error)")
        }
    }

    /// Polls `healthy` until it is, or `timeout` has passed (at least one check).
    func waitHealthy(_ ec2: any EC2Operations, _ id: String, timeout: Duration) async throws -> (
        ok: Bool, detail: String
    ) {
        let end = ContinuousClock.now + timeout
        while true {
            let result = await healthy(ec2, id)
            if result.ok || ContinuousClock.now + options.healthPollInterval > end { return result }
            try await Task.sleep(for: options.healthPollInterval)
            try await AWSWaitGuard.beforePoll?("\(id) healthy")
        }
    }
}

extension StepContext {
    /// StartInstances, then wait until `id` runs: the same two sub-steps in restart's stop/start and the
    /// EBS repair. `condition` is the dry-run plan's words for when the start happens at all.
    func startAndWait(
        _ ec2: any EC2Operations, _ id: String, region: String, if condition: String? = nil, running: String
    ) -> [PlannedSubStep] {
        [
            PlannedSubStep(.start) { [self] in
                try await mutate(
                    PlannedCall("ec2", "StartInstances", region: region, [("InstanceId", id)], if: condition)
                ) {
                    _ = try await ec2.startInstances([id])
                }
                try await finish(.start, "StartInstances sent for \(id)")
                return nil
            },
            PlannedSubStep(.running) { [self] in
                if !dryRun {
                    try await ec2.waitUntilRunning(
                        [id], timeout: options.instanceWaitTimeout, interval: options.waitInterval)
                }
                try await finish(.running, running)
                return nil
            },
        ]
    }
}
