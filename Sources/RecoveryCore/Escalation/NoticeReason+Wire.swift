import Foundation

// The wire forms of the values that reasons carry (NoticeReason+Coding.swift).

/// `EscalationMachine.StopReason` in a reason: `{"code": "ladder_exhausted"}`, `human_needed` with its
/// `reason`, or `flapping` with `incidents` and `window`.
struct StopWire: Codable {
    var code: String
    var reason: String?
    var incidents: Int?
    var window: TimeInterval?

    init(_ stop: EscalationMachine.StopReason) {
        switch stop {
        case .ladderExhausted: code = "ladder_exhausted"
        case .humanNeeded(let why): (code, reason) = ("human_needed", why)
        case .approvalTimedOut: code = "approval_timed_out"
        case .quarantined: code = "quarantined"
        case let .flapping(incidents, window): (code, self.incidents, self.window) = ("flapping", incidents, window)
        }
    }

    var stop: EscalationMachine.StopReason? {
        switch code {
        case "ladder_exhausted": .ladderExhausted
        case "human_needed": reason.map { .humanNeeded($0) }
        case "approval_timed_out": .approvalTimedOut
        case "quarantined": .quarantined
        case "flapping": incidents.flatMap { n in window.map { .flapping(incidents: n, window: $0) } }
        default: nil
        }
    }
}

/// `EscalationMachine.Hold` in a reason: `{"kind": "acknowledged", "by", "at"}` or `{"kind": "held", "by", "until"}`.
struct HoldWire: Codable {
    var kind: String
    var by: String
    var at: Date?
    var until: Date?

    init(_ hold: EscalationMachine.Hold) {
        switch hold {
        case let .acknowledged(by, at): (kind, self.by, self.at) = ("acknowledged", by, at)
        case let .until(end, by): (kind, self.by, until) = ("held", by, end)
        }
    }

    var hold: EscalationMachine.Hold? {
        switch kind {
        case "acknowledged": at.map { .acknowledged(by: by, at: $0) }
        case "held": until.map { .until($0, by: by) }
        default: nil
        }
    }
}
