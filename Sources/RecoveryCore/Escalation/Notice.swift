import Foundation

/// What a notice is about. The notifier picks the wording and the channel from this.
public enum NotificationKind: String, Codable, Sendable, CaseIterable {
    /// N failures: an incident is open; says the step, when it runs and how to respond.
    case outageDeclared = "outage_declared"
    /// A step waits for `recoveryctl approve` (the target requires approval).
    case approvalRequested = "approval_requested"
    /// No approval came in time: nothing was done (fail closed).
    case approvalTimedOut = "approval_timed_out"
    /// A step was requested from the actuator.
    case actionStarted = "action_started"
    /// The actuator reports that the step ran; the machine now verifies that the site is back.
    case actionSucceeded = "action_succeeded"
    /// The actuator reports that the step failed; says the next step.
    case actionFailed = "action_failed"
    /// The step's verification window passed with the site still down; says the next step.
    case verificationFailed = "verification_failed"
    /// Automation has stopped for this incident and a person must act (no snapshot, ladder used up…).
    case humanNeeded = "human_needed"
    /// M healthy checks: the incident is closed.
    case recovered
    /// The instance the target ran on before it was re-provisioned answers again.
    case originalInstanceBack = "original_instance_back"
    /// Discovery finds the target on another instance than the one recorded; the machine follows it.
    case instanceFollowed = "instance_followed"
    /// Fleet-wide: the brake stopped all destructive steps.
    case brakeEngaged = "brake_engaged"
    case brakeReleased = "brake_released"
    /// An operator command was carried out; `detail` says what it changed.
    case commandAccepted = "command_accepted"
    /// An operator command was refused; `detail` says why and what to do instead.
    case commandRejected = "command_rejected"
    /// Fleet-wide: the actuator's DR pre-flight report; `targets` are those that would fail over badly.
    case drPreflight = "dr_preflight"
    /// A high-confidence prediction: what is expected and when (`detail`, `respondBy`), and the repair
    /// planned for `nextStepAt` unless someone acks, holds or (with approval) does not approve it.
    case troublePredicted = "trouble_predicted"
    /// A predicted-trouble repair (`repair`) was requested from the actuator.
    case repairStarted = "repair_started"
    case repairSucceeded = "repair_succeeded"
    case repairFailed = "repair_failed"
    /// A planned repair will not run (acked, no approval in time, an outage came first, quarantine).
    case repairCancelled = "repair_cancelled"
    /// Fleet-wide: a consumer refused messages from a broker user that may not send them (a forgery, or
    /// a misconfigured permission); `detail` names the user, the message type and the queue. Sent once
    /// per sender (docs/security.md).
    case unauthorizedSender = "unauthorized_sender"
}

/// Why the next step will not run by itself at `nextStepAt`.
public enum StepBlocker: String, Codable, Sendable {
    /// An admin acknowledged the incident; `recoveryctl resume` hands it back.
    case acknowledged
    /// Held until `nextStepAt`.
    case held
    /// The fleet brake is engaged; `recoveryctl brake release`.
    case brake
    /// Waits for `recoveryctl approve` until `respondBy`.
    case approval
    /// The target is quarantined: notify only.
    case quarantine
}

/// The operator command a notice answers.
public struct CommandRef: Codable, Sendable, Equatable {
    /// The command message's id: the notifier replies to the sender with it.
    public var id: String
    public var name: String
    public var `operator`: String

    public init(id: String, name: String, operator: String) {
        self.id = id
        self.name = name
        self.operator = `operator`
    }

    enum CodingKeys: String, CodingKey { case id, name, `operator` }
}

/// Everything a notice must say: `notification` body, decision -> notifier. The notifier formats it; the
/// machines write no prose: they set `reason`, whose text becomes `detail`.
public struct Notice: Codable, Sendable, Equatable {
    /// Stable for the same decision (e.g. `inc-…:action_started:restart`), so a notifier can drop a
    /// duplicate that a restarted worker sends again.
    public var id: String
    public var kind: NotificationKind
    public var at: Date
    /// The target, or nil for a fleet-wide notice.
    public var target: String?
    public var instanceId: String?
    public var region: String?
    public var incidentId: String?
    /// Outages of this target within the count window, this one included.
    public var outageCount: Int?
    /// The step the notice is about (started, succeeded, failed).
    public var step: RecoveryStep?
    /// What happens next: the step the machine will take, or `notifyOnly` when it will take none.
    public var nextStep: RecoveryStep?
    /// When `nextStep` runs by itself (the grace deadline, a hold's end, a verification deadline); nil
    /// when it will not run by itself (see `blockedBy`).
    public var nextStepAt: Date?
    /// Why `nextStep` will not run by itself at `nextStepAt`.
    public var blockedBy: StepBlocker?
    /// The deadline for a response (the approval deadline).
    public var respondBy: Date?
    /// For `recovered`: the step that was in progress when the site came back; nil when it came back by
    /// itself (during the grace period, or after automation stopped).
    public var fixedBy: RecoveryStep?
    /// For `recovered`: every step requested during the incident, in order.
    public var stepsTaken: [RecoveryStep]?
    /// Fleet-wide notices: the targets concerned.
    public var targets: [String]?
    /// The reason in words, or for an accepted command what it changed: `reason.text` when there is a
    /// `reason`, else free text (the actuator's notices, older producers). Kept on the wire for the
    /// recorder, recoveryctl and consumers that do not read `reason`.
    public var detail: String?
    /// Why, as facts (`NoticeReason`): what the machines set and tests assert on. Setting it also sets
    /// `detail` to its text (`NoticeReason.text`), once, where the notice is made, so every path that
    /// publishes the notice carries both and a notice reads back from the wire equal to the one sent.
    /// Decoding keeps a reason it does not know out (nil) and the notice with its `detail`.
    public var reason: NoticeReason? {
        didSet { if let reason { detail = reason.text } }
    }
    /// The exact recoveryctl command lines an admin can run in response, most useful first.
    public var commands: [String]
    /// For command answers: the command this answers.
    public var command: CommandRef?
    /// For predicted trouble and its repair: the repair, e.g. `ssm disk-cleanup`.
    public var repair: String?

    public init(
        id: String, kind: NotificationKind, at: Date, target: String? = nil, instanceId: String? = nil,
        region: String? = nil, incidentId: String? = nil, outageCount: Int? = nil, step: RecoveryStep? = nil,
        nextStep: RecoveryStep? = nil, nextStepAt: Date? = nil, blockedBy: StepBlocker? = nil,
        respondBy: Date? = nil, fixedBy: RecoveryStep? = nil, stepsTaken: [RecoveryStep]? = nil,
        targets: [String]? = nil, detail: String? = nil, commands: [String] = [], command: CommandRef? = nil,
        reason: NoticeReason? = nil
    ) {
        self.id = id
        self.kind = kind
        self.at = at
        self.target = target
        self.instanceId = instanceId
        self.region = region
        self.incidentId = incidentId
        self.outageCount = outageCount
        self.step = step
        self.nextStep = nextStep
        self.nextStepAt = nextStepAt
        self.blockedBy = blockedBy
        self.respondBy = respondBy
        self.fixedBy = fixedBy
        self.stepsTaken = stepsTaken
        self.targets = targets
        self.detail = reason?.text ?? detail
        self.reason = reason
        self.commands = commands
        self.command = command
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, at, target, region, step, detail, reason, commands, command, targets, repair
        case instanceId = "instance_id"
        case incidentId = "incident_id"
        case outageCount = "outage_count"
        case nextStep = "next_step"
        case nextStepAt = "next_step_at"
        case blockedBy = "blocked_by"
        case respondBy = "respond_by"
        case fixedBy = "fixed_by"
        case stepsTaken = "steps_taken"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        kind = try c.decode(NotificationKind.self, forKey: .kind)
        at = try c.decode(Date.self, forKey: .at)
        target = try c.decodeIfPresent(String.self, forKey: .target)
        instanceId = try c.decodeIfPresent(String.self, forKey: .instanceId)
        region = try c.decodeIfPresent(String.self, forKey: .region)
        incidentId = try c.decodeIfPresent(String.self, forKey: .incidentId)
        outageCount = try c.decodeIfPresent(Int.self, forKey: .outageCount)
        step = try c.decodeIfPresent(RecoveryStep.self, forKey: .step)
        nextStep = try c.decodeIfPresent(RecoveryStep.self, forKey: .nextStep)
        nextStepAt = try c.decodeIfPresent(Date.self, forKey: .nextStepAt)
        blockedBy = try c.decodeIfPresent(StepBlocker.self, forKey: .blockedBy)
        respondBy = try c.decodeIfPresent(Date.self, forKey: .respondBy)
        fixedBy = try c.decodeIfPresent(RecoveryStep.self, forKey: .fixedBy)
        stepsTaken = try c.decodeIfPresent([RecoveryStep].self, forKey: .stepsTaken)
        targets = try c.decodeIfPresent([String].self, forKey: .targets)
        detail = try c.decodeIfPresent(String.self, forKey: .detail)
        // A newer producer's reason, or a malformed one, must not cost the notice: `detail` says it.
        reason = try? c.decodeIfPresent(NoticeReason.self, forKey: .reason)
        commands = try c.decode([String].self, forKey: .commands)
        command = try c.decodeIfPresent(CommandRef.self, forKey: .command)
        repair = try c.decodeIfPresent(String.self, forKey: .repair)
    }
}

/// The exact recoveryctl command lines that notices quote. Target names come from an instance tag and
/// can hold anything, so they are shell-quoted when they need it.
public enum RecoveryCtl {
    public static func ack(_ target: String) -> String { "recoveryctl ack \(quote(target))" }
    public static func approve(_ target: String) -> String { "recoveryctl approve \(quote(target))" }
    public static func resume(_ target: String) -> String { "recoveryctl resume \(quote(target))" }
    public static func reset(_ target: String) -> String { "recoveryctl reset \(quote(target))" }
    public static func hold(_ target: String, until: Date) -> String {
        "recoveryctl hold \(quote(target)) --until \(TimeText.iso(until))"
    }
    public static func run(_ step: RecoveryStep, _ target: String) -> String? {
        step.commandName.map { "recoveryctl \($0.rawValue) \(quote(target))" }
    }
    public static let brakeRelease = "recoveryctl brake release"

    /// POSIX shell quoting: bare when the name is made of safe characters, else in single quotes.
    public static func quote(_ word: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-")
        if !word.isEmpty, word.allSatisfy({ safe.contains($0) }) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// Times and durations as the machine writes them into ids and `detail`.
enum TimeText {
    /// `2026-11-22T03:05:00Z`: whole seconds, UTC.
    static func iso(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }

    /// `20261122T030500Z`, for ids.
    static func compact(_ date: Date) -> String {
        iso(date).filter { $0 != "-" && $0 != ":" }
    }

    /// `45s`, `10m`, `1h30m`, `2d`.
    static func duration(_ seconds: TimeInterval) -> String {
        var s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        var parts: [String] = []
        let days = s / 86_400
        s %= 86_400
        let hours = s / 3600
        s %= 3600
        let minutes = s / 60
        s %= 60
        if days > 0 { parts.append("\(days)d") }
        if hours > 0 { parts.append("\(hours)h") }
        if minutes > 0 { parts.append("\(minutes)m") }
        if s > 0 { parts.append("\(s)s") }
        return parts.joined()
    }
}
