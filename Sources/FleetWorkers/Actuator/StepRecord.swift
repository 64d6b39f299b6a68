import Foundation
import RecoveryCore
import RedisStore

/// The sub-steps of the actuator's steps, in the order they run. A sub-step is appended to
/// `StepRecord.done` once it has finished, so an actor that resumes a step skips it.
public enum SubStep: String, Codable, Sendable, CaseIterable {
    // All steps
    /// The original instance was read: launch settings, Elastic IP, health URL.
    case inspect
    // Restart
    case reboot
    /// The site and the status checks were healthy after the reboot: the step is done.
    case rebootHealthy = "reboot_healthy"
    /// They were not, within the restart timeout: stop/start follows.
    case rebootUnhealthy = "reboot_unhealthy"
    case stop
    case stopped
    case start
    case running
    /// The target's Elastic IP is on the (new) instance.
    case eip
    /// Restart: the checks after stop/start were made (healthy or not).
    case finalCheck = "final_check"
    // Re-provision and fail-over
    case snapshot
    case image
    case imageAvailable = "image_available"
    case launch
    /// Fail-over: the DR Elastic IP is known (configured, found by tag, or allocated).
    case drAddress = "dr_address"
    case dns
    case dnsInsync = "dns_insync"
    case tagOld = "tag_old"
    case stopOld = "stop_old"
    /// A failed step stopped and un-tagged the instance it had launched.
    case compensated
    // Restart through SSM (targets with `ssm_restart`), before the reboot
    /// restart-services finished with exit 0.
    case ssmRestart = "ssm_restart"
    /// verify-health passed and the actuator's own check found the site healthy: the restart is done.
    case ssmVerify = "ssm_verify"
    /// SSM did not fix it (agent absent, a document failed or timed out, the site still down): the
    /// reboot path follows. The detail says why.
    case ssmFallback = "ssm_fallback"
    // Repairs (docs/actuator.md, "Repairs")
    /// `ssm` repair: the document ran (whatever its exit code; the outcome says).
    case ssmCommand = "ssm_command"
    /// `ebs_repair`: a snapshot of the impaired root volume, kept as evidence.
    case evidenceSnapshot = "evidence_snapshot"
    /// `ebs_repair`: the new root volume was created from the newest tagged snapshot.
    case volume
    case volumeAvailable = "volume_available"
    /// `ebs_repair`: the old root volume is tagged `AutoRecovery:ReplacedBy=<new volume>` (kept).
    case tagOldVolume = "tag_old_volume"
    case detachOld = "detach_old"
    case oldDetached = "old_detached"
    case attachNew = "attach_new"
    case newAttached = "new_attached"
    /// `quarantine` / `unquarantine`: the tag set or removed.
    case quarantineTag = "quarantine_tag"
    /// `quarantine` / `unquarantine`: `quarantined` merged into the instance-config table item.
    case quarantineTable = "quarantine_table"
    /// `quarantine` with `detach_eip`: the Elastic IP was disassociated.
    case eipDetached = "eip_detached"
}

/// What a step found and created, kept in its record so that a resumed step uses the same resources.
public struct StepResources: Codable, Sendable, Equatable {
    public var originalInstanceId: String?
    public var originalRegion: String?
    /// The Elastic IP allocation moved to (or kept on) the instance. For a fail-over, the primary one.
    public var allocationId: String?
    public var healthURL: String?
    /// The launch settings read from the original instance (re-provision, fail-over).
    public var launch: LaunchSpec?
    public var snapshotId: String?
    public var imageId: String?
    public var newInstanceId: String?
    public var newRegion: String?
    public var publicIp: String?
    public var associationId: String?
    /// Fail-over: the Elastic IP in the DR region.
    public var drAllocationId: String?
    public var drPublicIp: String?
    /// Fail-over: the Route 53 change.
    public var changeId: String?
    /// SSM command ids by document short name (restart-services, verify-health, an `ssm` repair's).
    public var commandIds: [String: String]?
    /// `ssm` repair: whether the document exited 0.
    public var commandSucceeded: Bool?
    /// `ebs_repair`: the instance's AZ, its root device, the old and new root volumes, the evidence snapshot.
    public var availabilityZone: String?
    public var rootDeviceName: String?
    public var oldVolumeId: String?
    public var newVolumeId: String?
    public var evidenceSnapshotId: String?
    /// Restart: when RebootInstances was about to be sent (written before it: a reboot cannot be looked
    /// up, so an actor that resumes the step after a crash must know one may have gone out).
    public var rebootSentAt: Date?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case launch
        case originalInstanceId = "original_instance_id"
        case originalRegion = "original_region"
        case allocationId = "allocation_id"
        case healthURL = "health_url"
        case snapshotId = "snapshot_id"
        case imageId = "image_id"
        case newInstanceId = "new_instance_id"
        case newRegion = "new_region"
        case publicIp = "public_ip"
        case associationId = "association_id"
        case drAllocationId = "dr_allocation_id"
        case drPublicIp = "dr_public_ip"
        case changeId = "change_id"
        case commandIds = "command_ids"
        case commandSucceeded = "command_succeeded"
        case availabilityZone = "availability_zone"
        case rootDeviceName = "root_device_name"
        case oldVolumeId = "old_volume_id"
        case newVolumeId = "new_volume_id"
        case evidenceSnapshotId = "evidence_snapshot_id"
        case rebootSentAt = "reboot_sent_at"
    }
}

/// The launch settings of an instance, as a replacement copies them.
public struct LaunchSpec: Codable, Sendable, Equatable {
    public var instanceType: String?
    public var subnetId: String?
    public var securityGroupIds: [String]
    public var keyName: String?
    public var iamInstanceProfileArn: String?
    /// The tags to copy (without `aws:*` tags, the client-token tag and earlier replacement tags).
    public var tags: [String: String]
    public var rootDeviceName: String
    public var rootVolumeType: String?
    public var rootVolumeSize: Int?
    public var architecture: String

    enum CodingKeys: String, CodingKey {
        case tags, architecture
        case instanceType = "instance_type"
        case subnetId = "subnet_id"
        case securityGroupIds = "security_group_ids"
        case keyName = "key_name"
        case iamInstanceProfileArn = "iam_instance_profile_arn"
        case rootDeviceName = "root_device_name"
        case rootVolumeType = "root_volume_type"
        case rootVolumeSize = "root_volume_size"
    }
}

/// One step's progress, stored under `step:<idempotency key>` (in Redis, a `RedisStateStore` key), written after
/// every sub-step under the actor's fencing token. See docs/actuator.md.
public struct StepRecord: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case inProgress = "in_progress"
        case completed
    }

    public static let currentSchemaVersion = 1

    public var schemaVersion: Int = StepRecord.currentSchemaVersion
    public var idempotencyKey: String
    public var target: String
    public var incidentId: String
    public var step: RecoveryStep
    /// Set for a repair request (then `step` is `notify_only`).
    public var repair: RepairRequest.Kind?
    public var status: Status
    /// The worker id of the actor that last wrote the record.
    public var owner: String
    /// That actor's fencing token. A write from an actor with a smaller token is refused.
    public var fencingToken: UInt64
    /// How many actors started or resumed the step.
    public var attempts: Int
    public var dryRun: Bool
    public var startedAt: Date
    public var updatedAt: Date
    /// Finished sub-steps, in order.
    public var done: [SubStep]
    public var resources: StepResources
    /// What happened along the way that a person should know (resumes, a lost lease, a region that
    /// did not answer).
    public var notes: [String]
    /// Dry run: the calls the step would have made.
    public var plannedCalls: [String]
    /// Set when the step is completed; a repeated request publishes it again.
    public var outcome: ActionOutcome?
    /// Set when the step is completed: what was done, in a sentence, for the notice.
    public var summary: String?
    /// The request, so the open-steps sweep can start or resume the step without its delivery (nil in
    /// records of actuators older than the sweep).
    public var request: ActionRequest?

    /// Not started yet: accepted while another step held the target's lock (`attempts` 0, no owner).
    public var isAccepted: Bool { status == .inProgress && attempts == 0 }

    /// A record for a request accepted while the target is busy: the open-steps sweep starts it.
    public static func accepted(_ request: ActionRequest, now: Date) -> StepRecord {
        var record = StepRecord(request: request, owner: "-", fencingToken: 0, dryRun: false, now: now)
        record.attempts = 0
        record.notes = ["\(Timestamp.format(now)) accepted while another step held the target's lock"]
        return record
    }

    /// Set when an operator aborted the step (`recoveryctl abort`): who, when, why. Absent in records
    /// of steps nobody aborted (and in records written before aborts existed).
    public var aborted: StepAbort?

    public init(request: ActionRequest, owner: String, fencingToken: UInt64, dryRun: Bool, now: Date) {
        idempotencyKey = request.idempotencyKey
        target = request.target
        incidentId = request.incidentId
        step = request.step
        repair = request.repair?.kind
        status = .inProgress
        self.owner = owner
        self.fencingToken = fencingToken
        attempts = 1
        self.dryRun = dryRun
        startedAt = now
        updatedAt = now
        done = []
        resources = StepResources()
        notes = []
        plannedCalls = []
        self.request = request
    }

    public func isDone(_ sub: SubStep) -> Bool { done.contains(sub) }

    enum CodingKeys: String, CodingKey {
        case target, step, repair, status, owner, attempts, done, resources, notes, outcome, summary, request, aborted
        case schemaVersion = "schema_version"
        case idempotencyKey = "idempotency_key"
        case incidentId = "incident_id"
        case fencingToken = "fencing_token"
        case dryRun = "dry_run"
        case startedAt = "started_at"
        case updatedAt = "updated_at"
        case plannedCalls = "planned_calls"
    }

    static let encoder = Timestamp.jsonEncoder()
    static let decoder = Timestamp.jsonDecoder()

    func encoded() throws -> String { String(decoding: try Self.encoder.encode(self), as: UTF8.self) }

    static func decode(_ text: String) throws -> StepRecord {
        let record: StepRecord
        do { record = try decoder.decode(StepRecord.self, from: Data(text.utf8)) } catch {
            throw ActuatorError.corruptRecord("step record is not readable: \(error)")
        }
        guard record.schemaVersion <= currentSchemaVersion else {
            throw ActuatorError.corruptRecord(
                "step record has schema version \(record.schemaVersion); upgrade the actuator")
        }
        return record
    }
}

/// The lease is gone: another actor may own the step now. The holder must stop before its next mutation.
public struct LeaseLost: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "lease lost: \(reason)" }
}

/// Step records on a `VersionedStore` (Redis: `RedisStateStore`; tests: `MemoryVersionedStore`), written
/// with compare-and-set and a fencing check: a record written by an actor with a larger fencing token is
/// never overwritten by one with a smaller token, so a stale actor's late write cannot undo a successor's
/// progress.
public struct StepRecordStore: Sendable {
    public let states: any VersionedStore
    /// Makes a stored key expire after a while; nil keeps completed records (a store without expiry).
    let expire: (@Sendable (_ key: String, _ after: Duration) async throws -> Void)?
    /// A completed record is kept this long (a redelivered request within it republishes the outcome).
    public var completedRetention: Duration = .seconds(30 * 86_400)

    /// Records on any versioned store; `expire` (if given) is called for a completed record's key.
    public init(
        states: any VersionedStore, expire: (@Sendable (_ key: String, _ after: Duration) async throws -> Void)? = nil
    ) {
        self.states = states
        self.expire = expire
    }

    /// Records in Redis; a completed one expires after `completedRetention`.
    public init(states: RedisStateStore) {
        self.init(
            states: states,
            expire: { key, after in
                _ = try await states.client.command(
                    ["EXPIRE", "\(states.keyspace.prefix)state:\(key)", String(max(1, after.components.seconds))],
                    idempotent: true)
            })
    }

    static func key(_ idempotencyKey: String) -> String { "step:\(idempotencyKey)" }

    public func load(_ idempotencyKey: String) async throws -> StepRecord? {
        guard let stored = try await states.load(Self.key(idempotencyKey)) else { return nil }
        return try StepRecord.decode(stored.data)
    }

    /// Stores a new record; false when one exists already.
    func create(_ record: StepRecord) async throws -> Bool {
        try await states.compareAndSet(Self.key(record.idempotencyKey), expectedVersion: 0, data: record.encoded())
            != nil
    }

    /// Stores `record` unless the stored one was written under a larger fencing token or is already
    /// completed by another write (then `LeaseLost`).
    func save(_ record: StepRecord) async throws {
        let key = Self.key(record.idempotencyKey)
        for _ in 0..<20 {
            let stored = try await states.load(key)
            if let stored {
                let current = try StepRecord.decode(stored.data)
                if current.fencingToken > record.fencingToken {
                    throw LeaseLost(
                        "the step record was written by \(current.owner) under fencing token \(current.fencingToken), newer than \(record.fencingToken)"
                    )
                }
                if current.status == .completed && record.status != .completed {
                    throw LeaseLost("the step was completed by \(current.owner) meanwhile")
                }
            }
            if try await states.compareAndSet(key, expectedVersion: stored?.version ?? 0, data: record.encoded()) != nil
            {
                if record.status == .completed, let expire {
                    try? await expire(key, completedRetention)
                }
                return
            }
        }
        throw ActuatorError.retryable("the step record of \(record.idempotencyKey) changed 20 times during one write")
    }
}
