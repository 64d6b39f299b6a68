import AMQPTransport
import AWSClient
import FleetCrypto
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import RedisStore
import Synchronization

/// Errors of the actuator itself (AWS errors pass through as `AWSError`).
public enum ActuatorError: Error, Sendable, CustomStringConvertible {
    /// Worth trying again later: the request is requeued.
    case retryable(String)
    /// Another actor held the target's lock for longer than the wait limit.
    case lockBusy(String)
    /// A stored record cannot be read; it is left untouched for a person.
    case corruptRecord(String)

    public var description: String {
        switch self {
        case .retryable(let s): "\(s); retrying later"
        case .lockBusy(let s): "\(s); the request goes back to the queue"
        case .corruptRecord(let s):
            "\(s). The record is left as it is; inspect it with redis-cli and delete it to let the step run again"
        }
    }
}

/// Thrown by a test's fault hook to simulate an actor that dies: the actuator neither releases its lock
/// nor publishes anything, exactly as if the process had been killed at that point.
public struct SimulatedCrash: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "simulated crash (test fault hook)" }
}

/// Holds a lease on the target's lock: renews it in the background and checks it before each mutation.
final class LeaseKeeper: Sendable {
    let locks: any LockStore
    let lease: LockLease
    /// When the lease was taken (on this host's monotonic clock).
    let acquiredAt: ContinuousClock.Instant
    /// Called after every successful renewal (the open-steps index learns the step's actor is alive).
    let heartbeat: (@Sendable () async -> Void)?
    private let lost = Mutex<String?>(nil)
    /// When the last renewal that succeeded was sent (first: the acquisition).
    private let renewedAt: Mutex<ContinuousClock.Instant>
    /// Why the last renewal failed, if it did.
    private let renewalError = Mutex<String?>(nil)

    private var expiredReason: String {
        "the lock \(lease.name) (fencing token \(lease.fencingToken)) could not be renewed within five sixths of its \(lease.ttl.components.seconds)s TTL"
            + (renewalError.withLock { $0 }.map { " (\($0))" } ?? " (no answer from Redis)") + "; it may have expired"
    }

    init(
        locks: any LockStore, lease: LockLease, acquiredAt: ContinuousClock.Instant = .now,
        heartbeat: (@Sendable () async -> Void)? = nil
    ) {
        self.locks = locks
        self.lease = lease
        self.acquiredAt = acquiredAt
        self.heartbeat = heartbeat
        renewedAt = Mutex(acquiredAt)
    }

    /// The time after which the lock may have expired unless renewed: five sixths of the TTL after the
    /// last renewal that succeeded (the rest is for the renewal's own travel time).
    var renewalDeadline: ContinuousClock.Instant { renewedAt.withLock { $0 } + lease.ttl - lease.ttl / 6 }

    /// Marks the lease lost when `renewalDeadline` passes without a renewal, whether or not a renewal
    /// call is still waiting for Redis (a call queued behind others on a blocked connection may answer
    /// only after the lock is gone). Returns when the lease is lost, or when cancelled.
    func watchdog() async {
        while !Task.isCancelled, lostReason == nil {
            let deadline = renewalDeadline
            do { try await Task.sleep(until: deadline, clock: .continuous) } catch { return }
            if renewalDeadline <= deadline, lostReason == nil {
                markLost(expiredReason)
                return
            }
        }
    }

    var lostReason: String? { lost.withLock { $0 } }

    private func markLost(_ reason: String) {
        lost.withLock { if $0 == nil { $0 = reason } }
    }

    /// Renews the lease every third of its TTL until cancelled, and returns when the lease is lost: a
    /// renewal found the lock gone, or Redis has not answered a renewal for so long that the lock may have
    /// expired (its TTL, less a sixth for the time a renewal takes to arrive). Failed renewals are tried
    /// again every second meanwhile. The caller stops the step when this returns uncancelled.
    func renew() async {
        let interval = lease.ttl / 3
        var wait = interval
        while !Task.isCancelled {
            do { try await Task.sleep(for: wait) } catch { return }
            let sent = ContinuousClock.now
            do {
                if try await !locks.renew(lease, ttl: lease.ttl) {
                    markLost(
                        "the lock \(lease.name) (fencing token \(lease.fencingToken)) is no longer held: it expired or was taken before it could be renewed"
                    )
                    return
                }
                renewedAt.withLock { $0 = max($0, sent) }
                wait = interval
                await heartbeat?()
            } catch {
                if Task.isCancelled { return }
                renewalError.withLock { $0 = "\(error)" }
                if ContinuousClock.now >= renewalDeadline {
                    markLost(expiredReason)
                    return
                }
                wait = min(interval, .seconds(1))
            }
        }
    }

    /// Throws `LeaseLost` unless the lease still holds the lock right now.
    func check(before action: String) async throws {
        if let reason = lostReason { throw LeaseLost("\(reason); stopped before \(action)") }
        let held: Bool
        do { held = try await locks.isHeld(lease) } catch {
            markLost("cannot verify the lock in Redis (\(error))")
            throw LeaseLost("cannot verify the lock in Redis before \(action): \(error)")
        }
        guard held else {
            markLost("the lock \(lease.name) (fencing token \(lease.fencingToken)) is no longer held")
            throw LeaseLost(
                "the lock \(lease.name) (fencing token \(lease.fencingToken)) is no longer held; stopped before \(action)"
            )
        }
    }
}

/// A history event of the actuator: `event` body, actuator -> recorder. Ids are deterministic
/// (`<key>:started`, `<key>:sub:<sub-step>`, …) so a repeat is dropped downstream.
public struct ActuatorEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case started
        case resumed
        case subStep = "sub_step"
        case leaseLost = "lease_lost"
        case dryRunPlan = "dry_run_plan"
        case completed
        case preflight
        /// SSM diagnostics before or after an in-place action; `detail` holds the (cut) output.
        case diagnostics
        /// An operator aborted the step (`recoveryctl abort`): `detail` says who, why and where it stopped.
        case aborted
    }

    public var kind: Kind
    public var actor: String
    public var idempotencyKey: String?
    public var incidentId: String?
    public var step: RecoveryStep?
    public var subStep: SubStep?
    public var fencingToken: UInt64?
    public var detail: String?
    public var resources: StepResources?
    public var plannedCalls: [String]?
    public var outcome: ActionOutcome?

    public init(
        kind: Kind, actor: String, idempotencyKey: String? = nil, incidentId: String? = nil, step: RecoveryStep? = nil,
        subStep: SubStep? = nil, fencingToken: UInt64? = nil, detail: String? = nil, resources: StepResources? = nil,
        plannedCalls: [String]? = nil, outcome: ActionOutcome? = nil
    ) {
        self.kind = kind
        self.actor = actor
        self.idempotencyKey = idempotencyKey
        self.incidentId = incidentId
        self.step = step
        self.subStep = subStep
        self.fencingToken = fencingToken
        self.detail = detail
        self.resources = resources
        self.plannedCalls = plannedCalls
        self.outcome = outcome
    }

    enum CodingKeys: String, CodingKey {
        case kind, actor, step, detail, resources, outcome
        case idempotencyKey = "idempotency_key"
        case incidentId = "incident_id"
        case subStep = "sub_step"
        case fencingToken = "fencing_token"
        case plannedCalls = "planned_calls"
    }
}

/// A call a step makes (or, in a dry run, would make), written the way docs and notices show it:
/// `ec2:RunInstances [us-east-1] ImageId=ami-1, InstanceType=t3.micro`.
struct PlannedCall: Sendable, CustomStringConvertible {
    var service: String
    var action: String
    var region: String
    var parameters: [(String, String)]
    /// For calls that run only in some cases (restart's stop/start): the condition, in words.
    var condition: String?

    init(
        _ service: String, _ action: String, region: String, _ parameters: [(String, String)] = [],
        if condition: String? = nil
    ) {
        self.service = service
        self.action = action
        self.region = region
        self.parameters = parameters
        self.condition = condition
    }

    var description: String {
        var text = "\(service):\(action) [\(region)]"
        if !parameters.isEmpty { text += " " + parameters.map { "\($0.0)=\($0.1)" }.joined(separator: ", ") }
        if let condition { text = "if \(condition): " + text }
        return text
    }
}

enum ClientToken {
    /// The RunInstances client token of a step: `ar-` and 40 hex digits of SHA-256 over the idempotency
    /// key (43 characters; AWS allows 64), so every actor that runs the step uses the same token.
    static func forKey(_ key: String) throws -> String {
        "ar-" + (try hex(key)).prefix(40)
    }

    /// A short stable suffix for names derived from the key (AMI names).
    static func short(_ key: String) throws -> String { String(try hex(key).prefix(12)) }

    private static func hex(_ key: String) throws -> String { hexEncoded(try sha256(key)) }
}

extension ActuatorWorker {
    /// Releases the lock. A release refused by a passing error (a Redis fail-over takes 5-10 s) is tried
    /// again while the lease is valid (`validUntil`: the keeper's deadline, which counts its renewals), for
    /// up to 20 s: a lock left behind holds the step's next attempt up for a whole TTL, until the open-steps
    /// sweep takes it over.
    func giveBack(_ lease: LockLease, validUntil: ContinuousClock.Instant, logger: Logger) async {
        let start = ContinuousClock.now
        var delay = Duration.milliseconds(250)
        while true {
            do {
                _ = try await locks.release(lease)
                return
            } catch {
                let now = ContinuousClock.now
                guard TransientRetryPolicy.isTransient(error), now + delay < min(validUntil, start + .seconds(20))
                else {
                    logger.warning(
                        "could not release the lock; it expires with its TTL",
                        metadata: ["lock": "\(lease.name)", "error": "\(error)"])
                    return
                }
                do { try await Task.sleep(for: delay) } catch { return }
                delay = min(delay * 2, .seconds(4))
            }
        }
    }
}
