import Foundation
import RecoveryCore
import Testing

/// The windowed failure rule and the flapping hold (EscalationMachine+Checks.swift, docs/escalation.md).
@Suite("Escalation: windowed failures and flapping")
struct EscalationFlapTests {
    static func settings(_ change: (inout TargetSettings) -> Void) -> TargetSettings {
        var s = TargetSettings()
        change(&s)
        return s
    }

    // MARK: The windowed rule

    @Test("3 of the last 5: a site failing every other check is declared; consecutive only, it never is")
    func windowedRuleDeclares() throws {
        var windowed = Ladder(settings: Self.settings { $0.failureWindow = 5 })
        var consecutive = Ladder()
        func bounce(_ l: inout Ladder) -> [Action] {
            var all: [Action] = []
            all += l.fail()
            all += l.ok()
            all += l.fail()
            all += l.ok()
            all += l.fail()
            return all
        }
        let actions = bounce(&windowed)
        #expect(bounce(&consecutive).notices.isEmpty)
        #expect(consecutive.machine.state == .monitoring, "never three in a row")

        let incident = try #require(windowed.machine.incident)
        #expect(incident.phase == .pending(step: .restart, notBefore: t0 + 300))
        let notice = try #require(actions.notices(.outageDeclared).first)
        #expect(
            notice.reason
                == .outageDeclared(
                    target: "shop-web", failures: 3, probers: ["p1"], lastCheck: "HTTP 503", outageCount: 1,
                    window: TargetSettings().outageCountWindow, ofLast: 5))
        #expect(notice.detail?.hasPrefix("3 of the last 5 checks failed (from p1)") == true, "\(notice.detail ?? "")")
    }

    @Test("the window forgets: failures spread wider than it never add up")
    func windowSlides() {
        var l = Ladder(settings: Self.settings { $0.failureWindow = 5 })
        for _ in 0..<10 {
            l.fail()
            l.ok(2)  // one failure in every three checks: at most 2 in any 5
        }
        #expect(l.machine.state == .monitoring)
        #expect(l.machine.health.window?.count == 5)
    }

    @Test("the windowed rule needs the quorum too: one prober's failures among another's successes are not enough")
    func windowedRuleKeepsTheQuorum() {
        var l = Ladder(settings: Self.settings { $0.failureWindow = 6 })
        // Two probers check (automatic quorum: 2); only p1 fails.
        for _ in 0..<3 {
            l.ok(prober: "p2")
            l.fail(prober: "p1")
        }
        #expect(l.machine.state == .monitoring, "3 of the last 6 failed, but all from p1")
        l.fail(prober: "p2")
        #expect(l.machine.incident != nil, "4 of the last 6, from p1 and p2")
    }

    @Test("the window forgets the failures of an incident that closed: one failure after it is not another outage")
    func windowClearedByAnIncident() {
        var l = Ladder(settings: Self.settings { $0.failureWindow = 5 })
        l.fail(3)
        #expect(l.machine.incident != nil)
        l.ok(2)
        #expect(l.machine.state == .monitoring)
        l.fail()
        #expect(l.machine.state == .monitoring, "1 of the last 3 checks since the incident")
    }

    // MARK: Flapping

    /// Declares an outage and lets the site come back by itself, `after` seconds later.
    static func bounce(_ l: inout Ladder, at start: TimeInterval, after: TimeInterval = 60) -> [Action] {
        l.now = t0 + start
        var all = l.declare()
        l.now = t0 + start + after
        all += l.ok(2)
        return all
    }

    @Test(
        "the third incident within the hour that the others ended by themselves is held: one notice, no step, no page per bounce"
    )
    func flappingIsHeld() throws {
        // Each outage the first in its count window, so the ladder alone would restart every time.
        var l = Ladder(settings: Self.settings { $0.outageCountWindow = 600 })
        #expect(Self.bounce(&l, at: 0).notices(.recovered).count == 1)
        #expect(Self.bounce(&l, at: 600).notices(.recovered).count == 1)
        #expect(l.machine.selfRecoveries?.count == 2)

        // The third: declared, but held for a person.
        l.now = t0 + 1200
        let declared = l.declare()
        let incident = try #require(l.machine.incident)
        #expect(incident.phase == .stopped(.flapping(incidents: 3, window: 3600)))
        #expect(incident.automationStopped == .flapping(incidents: 3, window: 3600))
        let notice = try #require(declared.notices(.outageDeclared).first)
        #expect(declared.notices.count == 1)
        #expect(notice.nextStep == .notifyOnly && notice.nextStepAt == nil)
        #expect(notice.commands.contains("recoveryctl ack shop-web"))
        #expect(notice.commands.contains { $0.hasPrefix("recoveryctl restart shop-web") }, "\(notice.commands)")
        guard case .outageDeclared(_, _, _, _, _, _, let noStep, _, let flapping, _, _)? = notice.reason else {
            Issue.record("reason \(String(describing: notice.reason))")
            return
        }
        #expect(noStep == .flapping && flapping == NoticeReason.Flapping(incidents: 3, window: 3600))
        #expect(notice.detail?.contains("flaps (3 incidents within 1h") == true, "\(notice.detail ?? "")")

        // Past the grace period nothing runs; bouncing on within the hold sends nothing at all.
        var later: [Action] = l.tick(at: 1200 + 400)
        for minute in stride(from: 1700.0, to: 4000, by: 300) {
            l.now = t0 + minute
            later += l.ok(2)
            l.now = t0 + minute + 120
            later += l.fail(3)
        }
        #expect(later.requests.isEmpty, "no step")
        #expect(later.notices.isEmpty, "no notice per bounce: \(later.notices.map(\.kind))")
        #expect(l.machine.incident?.id == incident.id)

        // Healthy for the flap window (an hour) closes it, with one recovered notice.
        l.now = t0 + 5000
        #expect(l.ok(2).notices.isEmpty, "healthy, but not for an hour yet")
        l.now = t0 + 5000 + 3599
        #expect(l.ok().notices.isEmpty)
        l.now = t0 + 5000 + 3600
        let closed = l.ok()
        #expect(closed.notices(.recovered).count == 1)
        #expect(l.machine.state == .monitoring)
        #expect(l.machine.selfRecoveries == nil, "the flapping is over: the count starts again")

        // The next bounce is an ordinary incident again.
        l.now = t0 + 9000
        let next = l.declare()
        #expect(l.machine.incident?.phase == .pending(step: .restart, notBefore: t0 + 9300))
        #expect(next.notices(.outageDeclared).first?.nextStep == .restart)
    }

    @Test("a step a person runs in a flapping hold is verified as any step: back after M checks is recovered")
    func manualStepEndsTheHold() throws {
        var l = Ladder(settings: Self.settings { $0.outageCountWindow = 600 })
        _ = Self.bounce(&l, at: 0)
        _ = Self.bounce(&l, at: 600)
        l.now = t0 + 1200
        l.declare()
        #expect(l.machine.incident?.automationStopped == .flapping(incidents: 3, window: 3600))
        let request = try #require(l.command(.restart).requests.first)
        l.outcome(request, .succeeded)
        l.now = t0 + 1300
        #expect(l.ok(2).notices(.recovered).count == 1, "not held for the flap window once a step ran")
        #expect(l.machine.state == .monitoring)
    }

    @Test("a flapping hold still down for the flap window is said once more to need a person")
    func holdStillDownIsToldOnce() throws {
        var l = Ladder(settings: Self.settings { $0.outageCountWindow = 600 })
        _ = Self.bounce(&l, at: 0)
        _ = Self.bounce(&l, at: 600)
        l.now = t0 + 1200
        l.declare()
        var told: [Action] = []
        for minute in stride(from: 1230.0, through: 1200 + 3600 + 600, by: 30) {
            l.now = t0 + minute
            told += l.fail()
        }
        let needed = told.notices(.humanNeeded)
        #expect(needed.count == 1, "once: \(told.notices.map(\.id))")
        #expect(told.notices.count == 1 && told.requests.isEmpty)
        let notice = try #require(needed.first)
        #expect(notice.at >= t0 + 1200 + 3600 - 60 && notice.at <= t0 + 1200 + 3600 + 30, "\(notice.at)")
        #expect(notice.commands.contains("recoveryctl ack shop-web"))
    }

    @Test("incidents ended by a step are not flaps: the ladder climbs as before")
    func stepsAreNotFlaps() throws {
        // Each outage the first in its count window, so each is a restart.
        var l = Ladder(settings: Self.settings { $0.outageCountWindow = 600 })
        for round in 0..<3 {
            l.now = t0 + Double(round) * 900
            l.declare()
            let requests = l.tick(at: Double(round) * 900 + 300).requests
            let request = try #require(requests.first, "round \(round): a step after the grace period")
            #expect(request.step == .restart)
            l.outcome(request, .succeeded)
            l.now = t0 + Double(round) * 900 + 400
            l.ok(2)
            #expect(l.machine.state == .monitoring)
        }
        #expect(l.machine.selfRecoveries == nil)
    }

    @Test("bounces further apart than the flap window never add up; flap_incidents 0 turns the rule off")
    func flapWindowAndOff() {
        var spread = Ladder(settings: Self.settings { $0.outageCountWindow = 600 })
        for i in 0..<5 { _ = Self.bounce(&spread, at: Double(i) * 1900) }  // two per hour at most
        #expect(spread.machine.state == .monitoring)
        spread.now = t0 + 5 * 1900
        spread.declare()
        #expect(spread.machine.incident?.automationStopped == nil)

        var off = Ladder(
            settings: Self.settings {
                $0.flapIncidents = 0
                $0.outageCountWindow = 200
            })
        for i in 0..<5 { _ = Self.bounce(&off, at: Double(i) * 300) }
        off.now = t0 + 1500
        off.declare()
        #expect(off.machine.incident?.automationStopped == nil)
    }

    @Test("settings: defaults, decoding, and every bad value named")
    func settingsValidate() throws {
        let d = TargetSettings()
        #expect(d.failureWindow == 0 && d.flapIncidents == 3 && d.flapWindow == 3600)
        let decoded = try JSONDecoder().decode(
            TargetSettings.self, from: Data(#"{"failure_window": 5, "flap_incidents": 4, "flap_window": 1800}"#.utf8))
        #expect(decoded.failureWindow == 5 && decoded.flapIncidents == 4 && decoded.flapWindow == 1800)
        #expect(d.problems.isEmpty && decoded.problems.isEmpty)
        let bad = Self.settings {
            $0.failureWindow = 3  // not more than failure_threshold (3)
            $0.flapIncidents = 1
            $0.flapWindow = -5
        }
        #expect(bad.problems.count == 3, "\(bad.problems)")
        #expect(bad.problems.contains { $0.hasPrefix("failure_window must be 0 (off) or more than failure_threshold") })
        #expect(bad.problems.contains { $0.hasPrefix("flap_incidents must be 0 (off) or from 2 to 1000") })
        #expect(bad.problems.contains { $0.hasPrefix("flap_window must be a positive number of seconds") })
    }

    @Test("a state stored before these rules loads; the new fields round-trip; the reason's wire form too")
    func coding() throws {
        var l = Ladder()
        for i in 0..<2 { _ = Self.bounce(&l, at: Double(i) * 300) }
        l.now = t0 + 900
        let declared = l.declare()
        let data = try JSONEncoder().encode(l.machine)
        #expect(try JSONDecoder().decode(EscalationMachine.self, from: data) == l.machine)

        // Older states have none of the fields.
        var old = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(Ladder().machine)) as? [String: Any])
        old["selfRecoveries"] = nil
        var health = try #require(old["health"] as? [String: Any])
        health["window"] = nil
        health["healthySince"] = nil
        old["health"] = health
        let loaded = try JSONDecoder().decode(
            EscalationMachine.self, from: JSONSerialization.data(withJSONObject: old))
        #expect(loaded.selfRecoveries == nil && loaded.health.window == nil)

        let notice = try #require(declared.notices(.outageDeclared).first)
        let wire = try JSONEncoder().encode(notice.reason)
        let text = String(decoding: wire, as: UTF8.self)
        #expect(text.contains(#""no_step":"flapping""#) && text.contains(#""flap_incidents":3"#), "\(text)")
        #expect(try JSONDecoder().decode(NoticeReason.self, from: wire) == notice.reason)
    }
}
