import Foundation

// The wire form of a reason: one flat object, `code` plus the case's parameters in snake_case
// (docs/messages.md). Durations are seconds (`window`, `after`); times are the fleet's timestamps;
// instances are `{"id", "region"}`; a stop reason is `{"code", "reason"?}`; an ack or hold is
// `{"kind": "acknowledged"|"held", "by", "at"|"until"}`.

extension NoticeReason: Codable {
    struct Key: CodingKey, Hashable, ExpressibleByStringLiteral {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        init(stringLiteral value: String) { stringValue = value }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        func put(_ code: String, _ parameters: [Key: (any Encodable)?] = [:]) throws {
            try c.encode(code, forKey: "code")
            for (key, value) in parameters {
                if let value { try c.encode(value, forKey: key) }
            }
        }
        switch self {
        case .actuator(let reason):
            try reason.encode(to: encoder)  // flat, like the others: its own code and parameters
        case .refusedSender(let reason):
            try reason.encode(to: encoder)
        case let .outageDeclared(
            target, failures, probers, lastCheck, count, window, noStep, ofLast, flapping, afterMaintenance, declaredAt):
            try put(
                "outage_declared",
                [
                    "target": target, "failures": failures, "probers": probers, "last_check": lastCheck,
                    "outage_count": count, "window": window, "no_step": noStep, "of_last": ofLast,
                    "flap_incidents": flapping?.incidents, "flap_window": flapping?.window,
                    "after_maintenance": afterMaintenance, "declared_at": declaredAt,
                ])
        case let .approvalRequested(target, step, deadline):
            try put("approval_requested", ["target": target, "step": step, "deadline": deadline])
        case let .stepStarted(target, step, instance, destination, trigger, deadline, next):
            var by: String?
            let how: String
            switch trigger {
            case .automatic: how = "automatic"
            case .approved(let who): (how, by) = ("approved", who)
            case .manual(let who): (how, by) = ("manual", who)
            }
            try put(
                "step_started",
                [
                    "target": target, "step": step, "instance": instance, "destination": destination,
                    "trigger": how, "by": by, "deadline": deadline, "next": next,
                ])
        case let .stepFinished(target, step, movedTo, checks, deadline, next):
            try put(
                "step_finished",
                [
                    "target": target, "step": step, "moved_to": movedTo, "checks": checks,
                    "deadline": deadline, "next": next,
                ])
        case let .stepFailed(step, reason, stillStopped):
            try put("step_failed", ["step": step, "reason": reason, "still_stopped": stillStopped.map(StopWire.init)])
        case let .noOutcome(target, step, window, stillStopped):
            try put(
                "no_outcome",
                ["target": target, "step": step, "window": window, "still_stopped": stillStopped.map(StopWire.init)])
        case let .stillDown(target, step, window, stillStopped):
            try put(
                "still_down",
                ["target": target, "step": step, "window": window, "still_stopped": stillStopped.map(StopWire.init)])
        case let .automationStopped(target, incident, tried, why):
            try put(
                "automation_stopped", ["target": target, "incident": incident, "tried": tried, "why": StopWire(why)])
        case let .approvalTimedOut(target, step):
            try put("approval_timed_out", ["target": target, "step": step])
        case let .recoveredAfterStep(target, step, after):
            try put("recovered_after_step", ["target": target, "step": step, "after": after])
        case let .recoveredAfterSteps(target, steps, after):
            try put("recovered_after_steps", ["target": target, "steps": steps, "after": after])
        case let .recoveredByItself(target, inGrace, after):
            try put("recovered_by_itself", ["target": target, "in_grace": inGrace, "after": after])
        case let .originalInstanceBack(target, original, current):
            try put("original_instance_back", ["target": target, "original": original, "current": current])
        case let .instanceFollowed(target, from, to):
            try put("instance_followed", ["target": target, "from": from, "to": to])
        case let .lateResult(target, step, incident, current):
            try put("late_result", ["target": target, "step": step, "incident": incident, "current": current])
        case let .stepAborted(target, step, incident, by, reason, result):
            try put(
                "step_aborted",
                ["target": target, "step": step, "incident": incident, "by": by, "reason": reason, "result": result])

        case let .outageCountReset(target, by, was, window, incident):
            try put(
                "outage_count_reset", ["target": target, "by": by, "was": was, "window": window, "incident": incident])
        case let .acknowledged(by, incident, replaces):
            try put("acknowledged", ["by": by, "incident": incident, "replaces": replaces.map(HoldWire.init)])
        case let .held(by, incident, until, replaces):
            try put("held", ["by": by, "incident": incident, "until": until, "replaces": replaces.map(HoldWire.init)])
        case let .resumed(by, incident, stillStopped):
            try put("resumed", ["by": by, "incident": incident, "still_stopped": stillStopped.map(StopWire.init)])
        case let .approved(by, step, incident):
            try put("approved", ["by": by, "step": step, "incident": incident])
        case let .ranStep(by, step, incident):
            try put("ran_step", ["by": by, "step": step, "incident": incident])
        case let .abortRequested(by, step, incident, key, reason):
            try put("abort_requested", ["by": by, "step": step, "incident": incident, "key": key, "reason": reason])

        case let .noOpenIncident(command, target, failures, threshold):
            try put(
                "no_open_incident",
                ["command": command, "target": target, "failures": failures, "threshold": threshold])
        case let .alreadyAcknowledged(command, incident, by, since):
            try put("already_acknowledged", ["command": command, "incident": incident, "by": by, "since": since])
        case let .holdNeedsTime(command, target, example):
            try put("hold_needs_time", ["command": command, "target": target, "example": example])
        case let .holdNotInFuture(command, until, now):
            try put("hold_not_in_future", ["command": command, "until": until, "now": now])
        case let .incidentChanged(command, expected, current):
            try put("incident_changed", ["command": command, "expected": expected, "current": current])
        case let .nothingToHold(command, incident, stopped):
            try put("nothing_to_hold", ["command": command, "incident": incident, "stopped": StopWire(stopped)])
        case let .nothingToResume(command, incident):
            try put("nothing_to_resume", ["command": command, "incident": incident])
        case let .incidentHeld(command, target, incident, hold):
            try put(
                "incident_held", ["command": command, "target": target, "incident": incident, "hold": HoldWire(hold)])
        case let .quarantined(command, target):
            try put("quarantined", ["command": command, "target": target])
        case .brakeBlocks(let command):
            try put("brake_blocks", ["command": command])
        case let .stepInProgress(command, step, incident, requestedAt, deadline):
            try put(
                "step_in_progress",
                [
                    "command": command, "step": step, "incident": incident,
                    "requested_at": requestedAt, "deadline": deadline,
                ])
        case let .nothingToApprove(command, incident, stopped):
            try put("nothing_to_approve", ["command": command, "incident": incident, "stopped": StopWire(stopped)])
        case let .awaitingOutcome(command, step, requestedAt, deadline):
            try put(
                "awaiting_outcome",
                ["command": command, "step": step, "requested_at": requestedAt, "deadline": deadline])
        case let .stepAlreadyRequested(command, step, incident, key):
            try put("step_already_requested", ["command": command, "step": step, "incident": incident, "key": key])
        case let .noDRRegion(command, target):
            try put("no_dr_region", ["command": command, "target": target])
        case let .nothingToAbort(command, incident, verifying):
            try put("nothing_to_abort", ["command": command, "incident": incident, "verifying": verifying])
        case let .alreadyAborted(command, step, incident, by, since):
            try put(
                "already_aborted", ["command": command, "step": step, "incident": incident, "by": by, "since": since])

        case .brakeEngaged(let cause):
            switch cause {
            case let .outageShare(inOutage, fleetSize, limitPercent):
                try put(
                    "brake_engaged",
                    [
                        "trigger": cause.trigger, "in_outage": inOutage, "fleet_size": fleetSize,
                        "limit_percent": limitPercent,
                    ])
            case let .actionRate(steps, window, limit):
                try put("brake_engaged", ["trigger": cause.trigger, "steps": steps, "window": window, "limit": limit])
            case let .manual(by, reason):
                try put("brake_engaged", ["trigger": cause.trigger, "by": by, "reason": reason])
            }
        case let .brakeReleased(by, engagedAt, cause, targets):
            try put(
                "brake_released", ["by": by, "engaged_at": engagedAt, "cause": cause, "targets_in_outage": targets])
        case let .brakeAlreadyEngaged(since, cause):
            try put("brake_already_engaged", ["since": since, "cause": cause])
        case .brakeNotEngaged:
            try put("brake_not_engaged")

        case let .troublePredicted(prediction, confidence, from, to, outlook):
            try put(
                "trouble_predicted",
                [
                    "prediction": prediction, "confidence": confidence, "from": from, "to": to,
                    "outlook": outlook,
                ])
        case .repairAwaitsApproval(let prediction):
            try put("repair_awaits_approval", ["prediction": prediction])
        case let .repairStarted(prediction, approvedBy):
            try put("repair_started", ["prediction": prediction, "approved_by": approvedBy])
        case let .repairSucceeded(prediction, document, instanceId):
            try put("repair_succeeded", ["prediction": prediction, "document": document, "instance_id": instanceId])
        case let .repairFailed(prediction, reason):
            try put("repair_failed", ["prediction": prediction, "reason": reason])
        case .repairTimedOut(let prediction):
            try put("repair_timed_out", ["prediction": prediction])
        case let .repairCancelled(prediction, why):
            var by: String?
            let code: String
            switch why {
            case .outageDeclared: code = "outage_declared"
            case .quarantined: code = "quarantined"
            case .noApproval: code = "no_approval"
            case .reset(let who): (code, by) = ("reset", who)
            }
            try put("repair_cancelled", ["prediction": prediction, "why": code, "by": by])

        case .repairRunning(let document):
            try put("repair_running", ["document": document])
        case let .repairDropped(document, kind, quietUntil):
            try put("repair_dropped", ["document": document, "kind": kind, "quiet_until": quietUntil])
        case .repairQuarantined:
            try put("repair_quarantined")
        case .repairBraked:
            try put("repair_braked")
        case .repairRunsNow(let document):
            try put("repair_runs_now", ["document": document])
        case .repairHoldNeedsTime:
            try put("repair_hold_needs_time")
        case let .repairStillAwaitsApproval(document, until):
            try put("repair_still_awaits_approval", ["document": document, "until": until])
        case let .repairHeld(document, until):
            try put("repair_held", ["document": document, "until": until])
        case let .repairNotHeld(document, target):
            try put("repair_not_held", ["document": document, "target": target])
        case .repairResumed(let document):
            try put("repair_resumed", ["document": document])

        case let .repairRequested(command, target, key):
            try put("repair_requested", ["command": command, "target": target, "key": key])
        case .volumeRepairQuarantined(let target):
            try put("volume_repair_quarantined", ["target": target])
        case .volumeRepairBraked:
            try put("volume_repair_braked")
        case let .volumeRepairLadderMayAct(target, incident):
            try put("volume_repair_ladder_may_act", ["target": target, "incident": incident])
        }
    }

    /// Throws for an unknown `code` or a missing parameter; `Notice` then keeps its `detail` without a reason.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        func get<T: Decodable>(_ key: Key) throws -> T { try c.decode(T.self, forKey: key) }
        func opt<T: Decodable>(_ key: Key) throws -> T? { try c.decodeIfPresent(T.self, forKey: key) }
        func stop(_ key: Key) throws -> EscalationMachine.StopReason? {
            guard let wire: StopWire = try opt(key) else { return nil }
            guard let stop = wire.stop else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "unknown stop reason")
            }
            return stop
        }
        func hold(_ key: Key) throws -> EscalationMachine.Hold? {
            guard let wire: HoldWire = try opt(key) else { return nil }
            guard let hold = wire.hold else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "unknown hold")
            }
            return hold
        }
        func required<T>(_ value: T?, _ key: Key) throws -> T {
            guard let value else {
                throw DecodingError.keyNotFound(
                    key, .init(codingPath: c.codingPath, debugDescription: "missing \(key.stringValue)"))
            }
            return value
        }
        let code: String = try get("code")
        if code.hasPrefix("actuator_") {
            self = .actuator(try ActuatorReason(from: decoder))
            return
        }
        if code == "unauthorized_sender" || code == "not_an_operator" {
            self = .refusedSender(try GateReason(from: decoder))
            return
        }
        switch code {
        case "outage_declared":
            self = .outageDeclared(
                target: try get("target"), failures: try get("failures"), probers: try get("probers"),
                lastCheck: try opt("last_check"), outageCount: try get("outage_count"),
                window: try get("window"), noStep: try opt("no_step"), ofLast: try opt("of_last"),
                flapping: try (opt("flap_incidents") as Int?).flatMap { n in
                    try (opt("flap_window") as TimeInterval?).map { NoticeReason.Flapping(incidents: n, window: $0) }
                }, afterMaintenance: try opt("after_maintenance"), declaredAt: try opt("declared_at"))
        case "approval_requested":
            self = .approvalRequested(target: try get("target"), step: try get("step"), deadline: try get("deadline"))
        case "step_started":
            let by: String? = try opt("by")
            let trigger: StepTrigger =
                switch try get("trigger") as String {
                case "automatic": .automatic
                case "approved": .approved(by: try required(by, "by"))
                case "manual": .manual(by: try required(by, "by"))
                case let other:
                    throw DecodingError.dataCorruptedError(
                        forKey: "trigger", in: c, debugDescription: "unknown trigger '\(other)'")
                }
            self = .stepStarted(
                target: try get("target"), step: try get("step"), instance: try get("instance"),
                destination: try get("destination"), trigger: trigger, deadline: try get("deadline"),
                next: try get("next"))
        case "step_finished":
            self = .stepFinished(
                target: try get("target"), step: try get("step"), movedTo: try opt("moved_to"),
                checks: try get("checks"), deadline: try get("deadline"), next: try get("next"))
        case "step_failed":
            self = .stepFailed(
                step: try get("step"), reason: try opt("reason"), stillStopped: try stop("still_stopped"))
        case "no_outcome":
            self = .noOutcome(
                target: try get("target"), step: try get("step"), window: try get("window"),
                stillStopped: try stop("still_stopped"))
        case "still_down":
            self = .stillDown(
                target: try get("target"), step: try get("step"), window: try get("window"),
                stillStopped: try stop("still_stopped"))
        case "automation_stopped":
            self = .automationStopped(
                target: try get("target"), incident: try get("incident"), tried: try get("tried"),
                why: try required(stop("why"), "why"))
        case "approval_timed_out":
            self = .approvalTimedOut(target: try get("target"), step: try get("step"))
        case "recovered_after_step":
            self = .recoveredAfterStep(target: try get("target"), step: try get("step"), after: try get("after"))
        case "recovered_after_steps":
            self = .recoveredAfterSteps(target: try get("target"), steps: try get("steps"), after: try get("after"))
        case "recovered_by_itself":
            self = .recoveredByItself(target: try get("target"), inGrace: try get("in_grace"), after: try get("after"))
        case "original_instance_back":
            self = .originalInstanceBack(
                target: try get("target"), original: try get("original"), current: try get("current"))
        case "instance_followed":
            self = .instanceFollowed(target: try get("target"), from: try get("from"), to: try get("to"))
        case "late_result":
            self = .lateResult(
                target: try get("target"), step: try get("step"), incident: try get("incident"),
                current: try get("current"))
        case "step_aborted":
            self = .stepAborted(
                target: try get("target"), step: try get("step"), incident: try get("incident"), by: try get("by"),
                reason: try opt("reason"), result: try opt("result"))

        case "outage_count_reset":
            self = .outageCountReset(
                target: try get("target"), by: try get("by"), was: try get("was"),
                window: try get("window"), incident: try opt("incident"))
        case "acknowledged":
            self = .acknowledged(by: try get("by"), incident: try get("incident"), replaces: try hold("replaces"))
        case "held":
            self = .held(
                by: try get("by"), incident: try get("incident"), until: try get("until"),
                replaces: try hold("replaces"))
        case "resumed":
            self = .resumed(by: try get("by"), incident: try get("incident"), stillStopped: try stop("still_stopped"))
        case "approved":
            self = .approved(by: try get("by"), step: try get("step"), incident: try get("incident"))
        case "ran_step":
            self = .ranStep(by: try get("by"), step: try get("step"), incident: try get("incident"))
        case "abort_requested":
            self = .abortRequested(
                by: try get("by"), step: try get("step"), incident: try get("incident"), key: try get("key"),
                reason: try opt("reason"))

        case "no_open_incident":
            self = .noOpenIncident(
                command: try get("command"), target: try get("target"), failures: try get("failures"),
                threshold: try get("threshold"))
        case "already_acknowledged":
            self = .alreadyAcknowledged(
                command: try get("command"), incident: try get("incident"), by: try get("by"),
                since: try get("since"))
        case "hold_needs_time":
            self = .holdNeedsTime(command: try get("command"), target: try get("target"), example: try get("example"))
        case "hold_not_in_future":
            self = .holdNotInFuture(command: try get("command"), until: try get("until"), now: try get("now"))
        case "incident_changed":
            self = .incidentChanged(
                command: try get("command"), expected: try get("expected"), current: try get("current"))
        case "nothing_to_hold":
            self = .nothingToHold(
                command: try get("command"), incident: try get("incident"),
                stopped: try required(stop("stopped"), "stopped"))
        case "nothing_to_resume":
            self = .nothingToResume(command: try get("command"), incident: try get("incident"))
        case "incident_held":
            self = .incidentHeld(
                command: try get("command"), target: try get("target"), incident: try get("incident"),
                hold: try required(hold("hold"), "hold"))
        case "quarantined":
            self = .quarantined(command: try get("command"), target: try get("target"))
        case "brake_blocks":
            self = .brakeBlocks(command: try get("command"))
        case "step_in_progress":
            self = .stepInProgress(
                command: try get("command"), step: try get("step"), incident: try get("incident"),
                requestedAt: try get("requested_at"), deadline: try get("deadline"))
        case "nothing_to_approve":
            self = .nothingToApprove(
                command: try get("command"), incident: try get("incident"),
                stopped: try required(stop("stopped"), "stopped"))
        case "awaiting_outcome":
            self = .awaitingOutcome(
                command: try get("command"), step: try get("step"), requestedAt: try get("requested_at"),
                deadline: try get("deadline"))
        case "step_already_requested":
            self = .stepAlreadyRequested(
                command: try get("command"), step: try get("step"), incident: try get("incident"),
                key: try get("key"))
        case "no_dr_region":
            self = .noDRRegion(command: try get("command"), target: try get("target"))
        case "nothing_to_abort":
            self = .nothingToAbort(
                command: try get("command"), incident: try get("incident"), verifying: try opt("verifying"))
        case "already_aborted":
            self = .alreadyAborted(
                command: try get("command"), step: try get("step"), incident: try get("incident"), by: try get("by"),
                since: try get("since"))

        case "brake_engaged":
            switch try get("trigger") as FleetBrake.Trigger {
            case .outageShare:
                self = .brakeEngaged(
                    .outageShare(
                        inOutage: try get("in_outage"), fleetSize: try get("fleet_size"),
                        limitPercent: try get("limit_percent")))
            case .actionRate:
                self = .brakeEngaged(
                    .actionRate(steps: try get("steps"), window: try get("window"), limit: try get("limit")))
            case .manual:
                self = .brakeEngaged(.manual(by: try get("by"), reason: try get("reason")))
            }
        case "brake_released":
            self = .brakeReleased(
                by: try get("by"), engagedAt: try get("engaged_at"), cause: try get("cause"),
                targetsInOutage: try get("targets_in_outage"))
        case "brake_already_engaged":
            self = .brakeAlreadyEngaged(since: try get("since"), cause: try get("cause"))
        case "brake_not_engaged":
            self = .brakeNotEngaged

        case "trouble_predicted":
            self = .troublePredicted(
                prediction: try get("prediction"), confidence: try get("confidence"), from: try get("from"),
                to: try get("to"), outlook: try get("outlook"))
        case "repair_awaits_approval":
            self = .repairAwaitsApproval(prediction: try get("prediction"))
        case "repair_started":
            self = .repairStarted(prediction: try get("prediction"), approvedBy: try opt("approved_by"))
        case "repair_succeeded":
            self = .repairSucceeded(
                prediction: try get("prediction"), document: try get("document"),
                instanceId: try get("instance_id"))
        case "repair_failed":
            self = .repairFailed(prediction: try get("prediction"), reason: try opt("reason"))
        case "repair_timed_out":
            self = .repairTimedOut(prediction: try get("prediction"))
        case "repair_cancelled":
            let why: RepairCancellation =
                switch try get("why") as String {
                case "outage_declared": .outageDeclared
                case "quarantined": .quarantined
                case "no_approval": .noApproval
                case "reset": .reset(by: try get("by"))
                case let other:
                    throw DecodingError.dataCorruptedError(
                        forKey: "why", in: c, debugDescription: "unknown why '\(other)'")
                }
            self = .repairCancelled(prediction: try get("prediction"), why: why)

        case "repair_running": self = .repairRunning(document: try get("document"))
        case "repair_dropped":
            self = .repairDropped(
                document: try get("document"), kind: try get("kind"), quietUntil: try get("quiet_until"))
        case "repair_quarantined": self = .repairQuarantined
        case "repair_braked": self = .repairBraked
        case "repair_runs_now": self = .repairRunsNow(document: try get("document"))
        case "repair_hold_needs_time": self = .repairHoldNeedsTime
        case "repair_still_awaits_approval":
            self = .repairStillAwaitsApproval(document: try get("document"), until: try get("until"))
        case "repair_held": self = .repairHeld(document: try get("document"), until: try get("until"))
        case "repair_not_held": self = .repairNotHeld(document: try get("document"), target: try get("target"))
        case "repair_resumed": self = .repairResumed(document: try get("document"))

        case "repair_requested":
            self = .repairRequested(command: try get("command"), target: try get("target"), key: try get("key"))
        case "volume_repair_quarantined": self = .volumeRepairQuarantined(target: try get("target"))
        case "volume_repair_braked": self = .volumeRepairBraked
        case "volume_repair_ladder_may_act":
            self = .volumeRepairLadderMayAct(target: try get("target"), incident: try get("incident"))

        default:
            throw DecodingError.dataCorruptedError(
                forKey: "code", in: c, debugDescription: "unknown notice reason '\(code)'")
        }
    }
}
