import Foundation

/// Per-target settings. Every field has a documented default (docs/escalation.md), and decoding fills in
/// the defaults for missing fields, so a configuration names only what it changes:
///
///     {"grace_period": 600, "requires_approval": true}
///
/// The probe fields (`probe_interval`, `probe_timeout`, `expected_status`, `body_match`) are read by the
/// probe worker; the rest drive `EscalationMachine`. The decision worker sets `EscalationMachine.settings`
/// from configuration before each `handle`, so a changed setting applies from the next event on.
public struct TargetSettings: Codable, Sendable, Equatable {
    /// Seconds between two health checks of the target. Default 30.
    public var probeInterval: TimeInterval = 30
    /// Seconds a health check may take before it counts as a failure. Default 10.
    public var probeTimeout: TimeInterval = 10
    /// HTTP status codes that count as healthy. Default 200...399 (redirects are healthy).
    public var expectedStatus: [ClosedRange<Int>] = [200...399]
    /// Text the response body must contain to count as healthy. Default none.
    public var bodyMatch: String? = nil

    /// Consecutive failed checks that declare an outage (N). Default 3.
    public var failureThreshold: Int = 3
    /// The windowed rule: with W > N, N failed checks among the last W (from enough probers) also declare
    /// an outage, so a site failing every other check is caught. Default 0: consecutive failures only.
    public var failureWindow: Int = 0
    /// A target whose incidents close by themselves this many times within `flapWindow` (this one
    /// included) flaps: the incident is held for a person (one notice, no step) until the site has been
    /// healthy for `flapWindow`. Default 3; 0 turns it off.
    public var flapIncidents: Int = 3
    /// Seconds of the flapping rule's window, and of the stable period that ends a hold. Default 3600.
    public var flapWindow: TimeInterval = 3600
    /// Consecutive healthy checks that end an outage (M). Default 2.
    public var recoveryThreshold: Int = 2
    /// On: the failures that declare an outage must come from at least `quorumSize` distinct probers,
    /// so one prober with a broken network cannot declare an outage alone. Off: one prober's failures
    /// suffice. Unset (the default, nil): automatic, two distinct probers as soon as two have checked the
    /// target recently (`EscalationMachine.proberWindow`), one otherwise, so a fleet with one probe
    /// replica still recovers and one with several never acts on one replica's view.
    public var quorum: Bool? = nil
    /// Distinct probers needed when `quorum` is on. Default 2.
    public var quorumSize: Int = 2

    /// Seconds between declaring an outage and the first automatic step, for admins to ack, hold or
    /// approve. Default 300 (5 min).
    public var gracePeriod: TimeInterval = 300
    /// When on, no step runs without `recoveryctl approve` (or an explicit step command). Default off.
    public var requiresApproval: Bool = false
    /// Seconds an approval request stays open; afterwards nothing is done (fail closed). Default 1800.
    public var approvalTimeout: TimeInterval = 1800

    /// Seconds a restart has to bring the site back, counted from the request. Default 600 (10 min).
    public var restartVerification: TimeInterval = 600
    /// Seconds a re-provision has to bring the site back. Default 1200 (20 min).
    public var reprovisionVerification: TimeInterval = 1200
    /// Seconds a fail-over to the DR region has to bring the site back. Default 1800 (30 min).
    public var failoverVerification: TimeInterval = 1800

    /// Seconds an outage counts towards the ladder after it was declared. Default 86400 (24 h).
    public var outageCountWindow: TimeInterval = 86_400

    /// A quarantined target is watched and reported on, but the machine takes no step on it, and step
    /// commands for it are refused. Default off.
    public var quarantined: Bool = false

    /// Maintenance windows (one-off or recurring, `MaintenanceWindow`): while one is active no automatic
    /// step runs and nothing is paged; still down at its end, one notice and the ladder from there. The
    /// decision worker adds the fleet-wide windows (MAINTENANCE_WINDOWS). Default none.
    public var maintenance: [MaintenanceWindow] = []

    public init() {}

    /// The verification window of a step.
    public func verificationWindow(for step: RecoveryStep) -> TimeInterval {
        switch step {
        case .restart: restartVerification
        case .reprovision: reprovisionVerification
        case .failover: failoverVerification
        case .notifyOnly: 0
        }
    }

    /// After the actuator reports success, the machine keeps verifying at least this long, so a step that
    /// finished just before its deadline still gets M checks: (M + 1) probe intervals.
    public var settleTime: TimeInterval { probeInterval * Double(max(1, recoveryThreshold) + 1) }

    /// Whether one HTTP check result is healthy under these settings (for the probe worker).
    public func isHealthy(statusCode: Int?, body: String?) -> Bool {
        guard let statusCode, expectedStatus.contains(where: { $0.contains(statusCode) }) else { return false }
        guard let bodyMatch, !bodyMatch.isEmpty else { return true }
        return body?.contains(bodyMatch) ?? false
    }

    /// Everything wrong with these settings, as sentences; empty when they are usable.
    public var problems: [String] {
        var problems: [String] = []
        // Upper bounds too: a value that validates must not overflow a conversion later (probe_timeout=1e16
        // once trapped in the probe's Int64 milliseconds), and none of these makes sense beyond them.
        func positive(_ value: TimeInterval, _ key: String, atMost limit: TimeInterval) {
            if !(value > 0) || !value.isFinite || value > limit {
                problems.append("\(key) must be a positive number of seconds (at most \(Int(limit))), not \(value)")
            }
        }
        let day: TimeInterval = 86_400
        positive(probeInterval, "probe_interval", atMost: day)
        positive(probeTimeout, "probe_timeout", atMost: 600)
        positive(approvalTimeout, "approval_timeout", atMost: 30 * day)
        positive(restartVerification, "restart_verification", atMost: 7 * day)
        positive(reprovisionVerification, "reprovision_verification", atMost: 7 * day)
        positive(failoverVerification, "failover_verification", atMost: 7 * day)
        positive(outageCountWindow, "outage_count_window", atMost: 90 * day)
        positive(flapWindow, "flap_window", atMost: 7 * day)
        if failureWindow != 0 && !(failureWindow > failureThreshold && failureWindow <= 1000) {
            problems.append(
                "failure_window must be 0 (off) or more than failure_threshold (\(failureThreshold)) and at most 1000, not \(failureWindow)"
            )
        }
        if flapIncidents != 0 && !(2...1000).contains(flapIncidents) {
            problems.append("flap_incidents must be 0 (off) or from 2 to 1000, not \(flapIncidents)")
        }
        if !(gracePeriod >= 0) || !gracePeriod.isFinite || gracePeriod > 7 * day {
            problems.append("grace_period must be 0 or more seconds (at most \(Int(7 * day))), not \(gracePeriod)")
        }
        func count(_ value: Int, _ key: String) {
            if value < 1 { problems.append("\(key) must be 1 or more, not \(value)") }
            if value > 1000 { problems.append("\(key) must be at most 1000, not \(value)") }
        }
        count(failureThreshold, "failure_threshold")
        count(recoveryThreshold, "recovery_threshold")
        count(quorumSize, "quorum_size")
        if quorum == true && quorumSize > failureThreshold {
            problems.append(
                "quorum_size (\(quorumSize)) cannot exceed failure_threshold (\(failureThreshold)): the failures that declare an outage could never come from that many probers"
            )
        }
        problems += maintenance.flatMap(\.problems)
        if expectedStatus.isEmpty { problems.append("expected_status must name at least one status code range") }
        for range in expectedStatus where range.lowerBound < 100 || range.upperBound > 599 {
            problems.append("expected_status range \(range) is outside 100...599")
        }
        return problems
    }

    /// Throws a `TargetSettingsError` listing every problem, or does nothing when the settings are usable.
    public func validate(target: String) throws(TargetSettingsError) {
        let problems = problems
        if !problems.isEmpty { throw TargetSettingsError(target: target, problems: problems) }
    }

    enum CodingKeys: String, CodingKey {
        case probeInterval = "probe_interval"
        case probeTimeout = "probe_timeout"
        case expectedStatus = "expected_status"
        case bodyMatch = "body_match"
        case failureThreshold = "failure_threshold"
        case failureWindow = "failure_window"
        case flapIncidents = "flap_incidents"
        case flapWindow = "flap_window"
        case recoveryThreshold = "recovery_threshold"
        case quorum
        case quorumSize = "quorum_size"
        case gracePeriod = "grace_period"
        case requiresApproval = "requires_approval"
        case approvalTimeout = "approval_timeout"
        case restartVerification = "restart_verification"
        case reprovisionVerification = "reprovision_verification"
        case failoverVerification = "failover_verification"
        case outageCountWindow = "outage_count_window"
        case quarantined
        case maintenance
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TargetSettings()
        probeInterval = try c.decodeIfPresent(TimeInterval.self, forKey: .probeInterval) ?? d.probeInterval
        probeTimeout = try c.decodeIfPresent(TimeInterval.self, forKey: .probeTimeout) ?? d.probeTimeout
        expectedStatus = try c.decodeIfPresent([ClosedRange<Int>].self, forKey: .expectedStatus) ?? d.expectedStatus
        bodyMatch = try c.decodeIfPresent(String.self, forKey: .bodyMatch)
        failureThreshold = try c.decodeIfPresent(Int.self, forKey: .failureThreshold) ?? d.failureThreshold
        failureWindow = try c.decodeIfPresent(Int.self, forKey: .failureWindow) ?? d.failureWindow
        flapIncidents = try c.decodeIfPresent(Int.self, forKey: .flapIncidents) ?? d.flapIncidents
        flapWindow = try c.decodeIfPresent(TimeInterval.self, forKey: .flapWindow) ?? d.flapWindow
        recoveryThreshold = try c.decodeIfPresent(Int.self, forKey: .recoveryThreshold) ?? d.recoveryThreshold
        quorum = try c.decodeIfPresent(Bool.self, forKey: .quorum)
        quorumSize = try c.decodeIfPresent(Int.self, forKey: .quorumSize) ?? d.quorumSize
        gracePeriod = try c.decodeIfPresent(TimeInterval.self, forKey: .gracePeriod) ?? d.gracePeriod
        requiresApproval = try c.decodeIfPresent(Bool.self, forKey: .requiresApproval) ?? d.requiresApproval
        approvalTimeout = try c.decodeIfPresent(TimeInterval.self, forKey: .approvalTimeout) ?? d.approvalTimeout
        restartVerification =
            try c.decodeIfPresent(TimeInterval.self, forKey: .restartVerification) ?? d.restartVerification
        reprovisionVerification =
            try c.decodeIfPresent(TimeInterval.self, forKey: .reprovisionVerification) ?? d.reprovisionVerification
        failoverVerification =
            try c.decodeIfPresent(TimeInterval.self, forKey: .failoverVerification) ?? d.failoverVerification
        outageCountWindow = try c.decodeIfPresent(TimeInterval.self, forKey: .outageCountWindow) ?? d.outageCountWindow
        quarantined = try c.decodeIfPresent(Bool.self, forKey: .quarantined) ?? d.quarantined
        maintenance = try c.decodeIfPresent([MaintenanceWindow].self, forKey: .maintenance) ?? d.maintenance
    }
}

/// Settings that cannot be used, with every problem named.
public struct TargetSettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public var target: String
    public var problems: [String]
    public var description: String {
        "settings for target '\(target)' are not usable: " + problems.joined(separator: "; ")
            + ". Fix the target's configuration."
    }
}
