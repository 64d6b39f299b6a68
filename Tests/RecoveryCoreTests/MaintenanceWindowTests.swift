import Foundation
import RecoveryCore
import Testing

/// Maintenance windows: the schedule (time zones, DST, overlaps) and what the ladder does during one
/// (MaintenanceWindow.swift, EscalationMachine+Maintenance.swift, docs/escalation.md).
@Suite("Maintenance windows")
struct MaintenanceWindowTests {
    static func at(_ text: String) -> Date { Timestamp.parse(text)! }

    // MARK: Schedule

    @Test("one-off: from start (included) to end (excluded)")
    func oneOff() {
        let w = MaintenanceWindow(start: Self.at("2027-01-10T10:00:00Z"), end: Self.at("2027-01-10T11:00:00Z"))
        #expect(w.activeEnd(at: Self.at("2027-01-10T09:59:59Z")) == nil)
        #expect(w.activeEnd(at: Self.at("2027-01-10T10:00:00Z")) == Self.at("2027-01-10T11:00:00Z"))
        #expect(w.activeEnd(at: Self.at("2027-01-10T10:59:59Z")) == Self.at("2027-01-10T11:00:00Z"))
        #expect(w.activeEnd(at: Self.at("2027-01-10T11:00:00Z")) == nil)
    }

    @Test("recurring, read in its time zone: Saturdays 02:00 Berlin for 2 h; the same cron in New York is another hour")
    func recurringInATimeZone() {
        let berlin = MaintenanceWindow(cron: "0 2 * * 6", timeZone: "Europe/Berlin", duration: 7200)
        // 2027-01-16 is a Saturday; Berlin is UTC+1 in January: 02:00 local = 01:00Z.
        #expect(berlin.activeEnd(at: Self.at("2027-01-16T00:59:00Z")) == nil)
        #expect(berlin.activeEnd(at: Self.at("2027-01-16T01:30:00Z")) == Self.at("2027-01-16T03:00:00Z"))
        #expect(berlin.activeEnd(at: Self.at("2027-01-16T03:00:00Z")) == nil)
        #expect(berlin.activeEnd(at: Self.at("2027-01-15T01:30:00Z")) == nil, "a Friday")
        let newYork = MaintenanceWindow(cron: "0 2 * * 6", timeZone: "America/New_York", duration: 7200)
        #expect(newYork.activeEnd(at: Self.at("2027-01-16T01:30:00Z")) == nil)
        #expect(newYork.activeEnd(at: Self.at("2027-01-16T07:30:00Z")) == Self.at("2027-01-16T09:00:00Z"))
        // Across midnight: 23:00 UTC for 3 h is still on at 01:00 the next day.
        let late = MaintenanceWindow(cron: "0 23 * * *", duration: 3 * 3600)
        #expect(late.activeEnd(at: Self.at("2027-01-17T01:00:00Z")) == Self.at("2027-01-17T02:00:00Z"))
    }

    @Test(
        "DST: a start the spring-forward skips begins when the clock reads again; a repeated one at its first occurrence"
    )
    func daylightSaving() {
        let nightly = MaintenanceWindow(cron: "30 2 * * *", timeZone: "Europe/Berlin", duration: 3600)
        // 2027-03-28: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist: the window runs 03:30–04:30 CEST.
        #expect(nightly.activeEnd(at: Self.at("2027-03-28T01:15:00Z")) == nil)
        #expect(nightly.activeEnd(at: Self.at("2027-03-28T01:45:00Z")) == Self.at("2027-03-28T02:30:00Z"))
        // The day before, an ordinary CET night: 02:30 CET = 01:30Z.
        #expect(nightly.activeEnd(at: Self.at("2027-03-27T01:45:00Z")) == Self.at("2027-03-27T02:30:00Z"))
        // 2027-10-31: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice: the first (00:30Z) counts,
        // and the hour is elapsed time.
        #expect(nightly.activeEnd(at: Self.at("2027-10-31T00:45:00Z")) == Self.at("2027-10-31T01:30:00Z"))
        #expect(nightly.activeEnd(at: Self.at("2027-10-31T01:45:00Z")) == nil, "the second 02:30 starts nothing")
    }

    @Test("overlapping and back-to-back windows are one; a gap ends it")
    func overlaps() {
        func w(_ from: String, _ to: String) -> MaintenanceWindow {
            MaintenanceWindow(start: Self.at("2027-01-10T\(from):00Z"), end: Self.at("2027-01-10T\(to):00Z"))
        }
        let now = Self.at("2027-01-10T10:15:00Z")
        #expect(
            MaintenanceWindow.activeEnd(of: [w("10:00", "11:00"), w("10:30", "12:00")], at: now)
                == Self.at("2027-01-10T12:00:00Z"))
        #expect(
            MaintenanceWindow.activeEnd(of: [w("10:00", "11:00"), w("11:00", "12:00")], at: now)
                == Self.at("2027-01-10T12:00:00Z"))
        #expect(
            MaintenanceWindow.activeEnd(of: [w("10:00", "11:00"), w("11:05", "12:00")], at: now)
                == Self.at("2027-01-10T11:00:00Z"))
        #expect(MaintenanceWindow.activeEnd(of: [w("11:00", "12:00")], at: now) == nil)
        #expect(MaintenanceWindow.activeEnd(of: [], at: now) == nil)
    }

    @Test("cron fields: lists, ranges, steps, Sunday as 0 or 7, either day field when both are set")
    func cronFields() {
        func on(_ cron: String, _ text: String) -> Bool {
            MaintenanceWindow(cron: cron, duration: 60).activeEnd(at: Self.at(text)) != nil
        }
        #expect(on("*/15 * * * *", "2027-01-10T10:45:30Z") && !on("*/15 * * * *", "2027-01-10T10:46:30Z"))
        #expect(on("0-10/5 9,10 * * *", "2027-01-10T10:05:10Z") && !on("0-10/5 9,10 * * *", "2027-01-10T11:05:10Z"))
        // 2027-01-10 is a Sunday.
        #expect(on("0 10 * * 0", "2027-01-10T10:00:30Z") && on("0 10 * * 7", "2027-01-10T10:00:30Z"))
        #expect(!on("0 10 * * 1-5", "2027-01-10T10:00:30Z"))
        #expect(on("0 10 15 * 0", "2027-01-10T10:00:30Z"), "day 15 or a Sunday: a Sunday")
        #expect(on("0 10 10 1 *", "2027-01-10T10:00:30Z") && !on("0 10 10 2 *", "2027-01-10T10:00:30Z"))
    }

    @Test("every bad window is named; times are ISO 8601 text whatever the decoder")
    func validationAndCoding() throws {
        func problems(_ json: String) throws -> [String] {
            try JSONDecoder().decode(MaintenanceWindow.self, from: Data(json.utf8)).problems
        }
        #expect(try problems(#"{"start": "2027-01-10T10:00:00Z", "end": "2027-01-10T11:00:00+01:00"}"#).count == 1)
        #expect(try problems(#"{"cron": "0 2 * *", "duration": 60}"#).first?.contains("needs 5 fields") == true)
        #expect(
            try problems(#"{"cron": "0 24 * * *", "duration": 60}"#).first?.contains("hour '24': outside 0-23") == true)
        #expect(try problems(#"{"cron": "*/0 * * * *", "duration": 60}"#).first?.contains("step") == true)
        #expect(try problems(#"{"cron": "0 2 * * *", "time_zone": "Mars/Olympus", "duration": 60}"#).count == 1)
        #expect(try problems(#"{"cron": "0 2 * * *"}"#).first?.contains("needs a duration") == true)
        #expect(try problems(#"{"cron": "0 2 * * *", "duration": 700000}"#).count == 1)
        #expect(try problems(#"{"start": "2027-01-10T10:00:00Z"}"#).first?.contains("either start and end") == true)
        #expect(try problems(#"{"cron": "0 2 * * 6", "time_zone": "Europe/Berlin", "duration": 7200}"#).isEmpty)
        #expect(throws: DecodingError.self) { try problems(#"{"start": "tomorrow", "end": "later"}"#) }
        let w = MaintenanceWindow(
            start: Self.at("2027-01-10T10:00:00Z"), end: Self.at("2027-01-10T11:00:00Z"), reason: "db")
        let text = String(decoding: try JSONEncoder().encode(w), as: UTF8.self)
        #expect(text.contains(#""start":"2027-01-10T10:00:00"#), "\(text)")
        #expect(try JSONDecoder().decode(MaintenanceWindow.self, from: Data(text.utf8)) == w)
        var settings = TargetSettings()
        settings.maintenance = [MaintenanceWindow(cron: "61 * * * *", duration: 60)]
        #expect(settings.problems.count == 1)
    }

    // MARK: The ladder during a window

    /// A ladder whose window runs from t0 + 100 s to t0 + 3700 s.
    static func ladder() -> Ladder {
        var s = TargetSettings()
        s.maintenance = [MaintenanceWindow(start: t0 + 100, end: t0 + 3700, reason: "patching")]
        return Ladder(settings: s)
    }

    @Test(
        "declared during a window: nothing paged, no step; still down at its end: one notice, the step after the grace period"
    )
    func windowSuppressesStepAndSummarisesAtItsEnd() throws {
        var l = Self.ladder()
        l.now = t0 + 200
        let declared = l.declare()
        let incident = try #require(l.machine.incident, "the incident opens (history records it)")
        #expect(declared.fleetReports.isEmpty, "the brake counts it once it is paged")
        #expect(declared.notices.isEmpty, "nothing paged during the window")
        #expect(incident.maintenanceUntil == t0 + 3700 && incident.deferredNotice != nil)
        #expect(l.machine.nextDeadline == t0 + 3700)

        // The grace period ends inside the window: nothing runs.
        var during = l.tick(at: 200 + 300)
        l.now = t0 + 2000
        during += l.fail(3)
        #expect(during.requests.isEmpty && during.notices.isEmpty)

        // The window ends, still down: one notice saying so, and the step after the grace period.
        let end = l.tick(at: 3700)
        #expect(end.requests.isEmpty)
        #expect(end.fleetReports == [.outageOpened(target: "shop-web")], "counted by the brake from the page on")
        let notice = try #require(end.notices(.outageDeclared).first)
        #expect(end.notices.count == 1)
        #expect(notice.id == "\(incident.id):outage_declared:after_maintenance")
        #expect(notice.nextStep == .restart && notice.nextStepAt == t0 + 3700 + 300)
        guard case .outageDeclared(_, _, _, _, _, _, _, _, _, let after, let since)? = notice.reason else {
            Issue.record("\(String(describing: notice.reason))")
            return
        }
        #expect(after == t0 + 3700 && since == t0 + 200)
        #expect(notice.detail?.hasPrefix("Still down at the end of the maintenance window") == true)
        let step = l.tick(at: 3700 + 300)
        #expect(step.requests.map(\.step) == [.restart])
    }

    @Test("declared and back within the window: the incident closes and nobody is paged at all")
    func windowSwallowsAnOutageThatEndsInIt() {
        var l = Self.ladder()
        l.now = t0 + 200
        var all = l.declare()
        l.now = t0 + 1000
        all += l.ok(2)
        #expect(l.machine.state == .monitoring)
        all += l.tick(at: 3700)
        #expect(all.notices.isEmpty && all.requests.isEmpty)
        #expect(all.fleetReports.isEmpty, "never counted by the brake: nobody was paged")
    }

    @Test("declared before a window: paged as usual, but its step waits for the window's end")
    func windowHoldsTheStepOfAnEarlierOutage() {
        var l = Self.ladder()
        l.now = t0
        #expect(l.declare().notices(.outageDeclared).count == 1)
        #expect(l.tick(at: 300).requests.isEmpty, "grace over, but the window began at t0 + 100")
        #expect(l.machine.nextDeadline == t0 + 3700)
        let end = l.tick(at: 3700)
        #expect(end.requests.map(\.step) == [.restart], "at the window's end, the step that was due")
        #expect(end.notices(.outageDeclared).isEmpty)
    }

    @Test("a window removed from the configuration while it holds an incident lets go at the next event")
    func removedWindowLetsGo() {
        var l = Self.ladder()
        l.now = t0 + 200
        #expect(l.declare().notices.isEmpty)
        l.machine.settings.maintenance = []
        let next = l.tick(at: 600)
        #expect(next.notices(.outageDeclared).count == 1, "the kept notice goes out at once")
        #expect(l.machine.incident?.maintenanceUntil == nil)
        #expect(l.tick(at: 600 + 300).requests.map(\.step) == [.restart], "the step after the grace period from then")
    }

    @Test("answering again when the window ends: not paged; it pages at its next failure, or closes silently")
    func windowEndsWhileTheSiteAnswers() {
        var l = Self.ladder()
        l.now = t0 + 200
        l.declare()
        l.now = t0 + 3650
        #expect(l.ok().notices.isEmpty, "one healthy check, M is 2")
        #expect(l.tick(at: 3700).notices.isEmpty, "the window ends while it answers: nobody paged")
        l.now = t0 + 3710
        let again = l.fail()
        #expect(again.notices(.outageDeclared).count == 1, "down again: the kept notice goes out now")

        var quiet = Self.ladder()
        quiet.now = t0 + 200
        quiet.declare()
        quiet.now = t0 + 3650
        quiet.ok()
        var all = quiet.tick(at: 3700)
        quiet.now = t0 + 3710
        all += quiet.ok()
        #expect(quiet.machine.state == .monitoring)
        #expect(all.notices.isEmpty, "back for good: the incident closes without a word")
    }

    @Test("a fleet-wide window with most targets down does not engage the brake; still down at its end, it does")
    func brakeDuringAFleetWideWindow() {
        var settings = TargetSettings()
        settings.maintenance = [MaintenanceWindow(start: t0, end: t0 + 3600, reason: "patching")]
        var fleet = Fleet(size: 4, settings: settings)
        fleet.now = t0 + 60
        for target in ["site-1", "site-2", "site-3"] { fleet.deliver(target) { $0.declare() } }
        #expect(!fleet.brake.isEngaged && fleet.brakeNotices.isEmpty, "three of four down in the window: no brake")
        fleet.now = t0 + 3600
        for target in ["site-1", "site-2", "site-3"] { fleet.deliver(target) { $0.send(.tick) } }
        #expect(fleet.brake.isEngaged, "still down after it: the brake sees a mass outage")
        #expect(fleet.brakeNotices.count == 1)
    }

    @Test("an operator's explicit step runs during a window")
    func operatorStepDuringAWindow() {
        var l = Self.ladder()
        l.now = t0 + 200
        l.declare()
        #expect(l.command(.restart).requests.map(\.step) == [.restart])
    }
}
