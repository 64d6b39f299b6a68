import Foundation
import RecoveryCore
import Testing

extension Array where Element == FleetBrake.Action {
    var notices: [Notice] { compactMap { if case .notify(let n) = $0 { n } else { nil } } }
    var rejections: [Notice] { compactMap { if case .rejectCommand(let n) = $0 { n } else { nil } } }
    var woken: [String] { flatMap { action -> [String] in if case .wakeTargets(let t) = action { t } else { [] } } }
}

@Suite("Fleet brake")
struct FleetBrakeTests {
    static let ten = (1...10).map { "site-\($0)" }

    @Test func moreThanTheShareInOutageEngagesOnceWithOneAlert() throws {
        var brake = FleetBrake(fleet: Self.ten)
        var actions: [FleetBrake.Action] = []
        for target in Self.ten.prefix(3) { actions += brake.handle(.outageOpened(target: target), now: t0) }
        #expect(!brake.isEngaged && actions.isEmpty)  // 30% is not more than 30%
        actions += brake.handle(.outageOpened(target: "site-4"), now: t0)
        #expect(brake.isEngaged && brake.engagement?.trigger == .outageShare)
        for target in Self.ten.suffix(4) { actions += brake.handle(.outageOpened(target: target), now: t0) }
        let alerts = actions.notices
        #expect(alerts.count == 1)
        let alert = try #require(alerts.first)
        #expect(alert.kind == .brakeEngaged && alert.target == nil && alert.id == "fleet:brake_engaged:1")
        #expect(alert.targets == ["site-1", "site-2", "site-3", "site-4"])
        #expect(alert.commands == ["recoveryctl brake release"])
        #expect(alert.reason == .brakeEngaged(.outageShare(inOutage: 4, fleetSize: 10, limitPercent: 30)))
        #expect(
            brake.engagement?.detail
                == NoticeReason.BrakeCause.outageShare(inOutage: 4, fleetSize: 10, limitPercent: 30).text)
        // It does not release itself when the outages end.
        for target in Self.ten { _ = brake.handle(.outageClosed(target: target), now: t0) }
        #expect(brake.isEngaged)
    }

    /// Scale benchmark finding: the stored brake held every target's name, and the decision worker decodes
    /// it with every event (130 KB for 10,000 targets). It keeps the count; a brake stored with the list
    /// still loads, with the list's count.
    @Test func theStoredBrakeKeepsTheFleetsSizeNotItsNamesAndOldOnesStillLoad() throws {
        let names = (0..<10_000).map { "site-\($0)" }
        var brake = FleetBrake(fleet: names)
        _ = brake.handle(.outageOpened(target: "site-1"), now: t0)
        let stored = try StateCodec.encode(brake)
        #expect(stored.count < 2_000, "\(stored.count) bytes")
        #expect(!String(decoding: stored, as: UTF8.self).contains("site-9999"))
        #expect(try StateCodec.decodeBrake(stored) == brake)

        var old = try #require(
            try JSONSerialization.jsonObject(with: Data(stored)) as? [String: Any])
        old["fleet"] = ["site-1", "site-2", "site-3", "site-2"]
        old["fleetSize"] = nil
        let legacy = try StateCodec.decodeBrake(Array(try JSONSerialization.data(withJSONObject: old)))
        #expect(legacy.fleetSize == 3 && legacy.targetsInOutage == ["site-1"])
    }

    /// Schema 2 stores the lists that grow with an outage as one string each; any name survives the round
    /// trip (tabs, newlines, a carriage return before the row separator, percent signs, an empty name,
    /// non-ASCII, a combining mark), and a brake of schema 1 (JSON arrays)
    /// still loads and is written back as 2.
    @Test func theGrowingListsAreCompactAndEveryNameSurvives() throws {
        let awkward = [
            "a\tb", "line\nbreak", "100%", "%0A", "%E", "", "héllo wörld", "x\t%\n%25", "ends in cr\r", "\r",
            "e\u{301}",
        ]
        var brake = FleetBrake(settings: .init(), fleet: awkward + (0..<20).map { "site-\($0)" })
        for (i, name) in awkward.enumerated() {
            _ = brake.handle(.outageOpened(target: name), now: t0)
            _ = brake.handle(.destructiveActionRequested(target: name, idempotencyKey: "key\t\(i)\n%"), now: t0)
        }
        #expect(brake.isEngaged)
        let stored = try StateCodec.encode(brake)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(stored)) as? [String: Any])
        #expect(json["schemaVersion"] as? Int == 2)
        #expect(json["targetsInOutage"] is String && json["recentActions"] is String)
        let decoded = try StateCodec.decodeBrake(stored)
        #expect(decoded == brake)
        #expect(Set(decoded.targetsInOutage) == Set(awkward))

        // The same brake as schema 1 wrote it.
        var old = json
        old["schemaVersion"] = 1
        old["targetsInOutage"] = brake.targetsInOutage
        old["acceptedTargets"] = brake.acceptedTargets
        old["recentActions"] = try brake.recentActions.map { stamp in
            try JSONSerialization.jsonObject(
                with: Data(try JSONEncoder().encode(["idempotencyKey": stamp.idempotencyKey, "target": stamp.target])))
                as! [String: Any]
        }
        for i in 0..<brake.recentActions.count {
            var stamps = old["recentActions"] as! [[String: Any]]
            stamps[i]["at"] = Timestamp.format(brake.recentActions[i].at)
            old["recentActions"] = stamps
        }
        let legacy = try StateCodec.decodeBrake(Array(try JSONSerialization.data(withJSONObject: old)))
        #expect(legacy.targetsInOutage == brake.targetsInOutage)
        #expect(legacy.recentActions.map(\.idempotencyKey) == brake.recentActions.map(\.idempotencyKey))
        #expect(legacy.schemaVersion == 2)
        #expect(try StateCodec.decodeBrake(try StateCodec.encode(legacy)) == legacy)
    }

    /// A target discovered after the last fleet update counts in the outage only: the share can only be
    /// larger than with the full list, so the brake engages sooner, never later.
    @Test func anOutageOfATargetNotYetInTheFleetCountsOnTheSafeSide() {
        var brake = FleetBrake(fleet: ["a", "b", "c"])
        for target in ["new-1", "new-2"] { _ = brake.handle(.outageOpened(target: target), now: t0) }
        #expect(brake.outageShare >= 2.0 / 5.0)
        #expect(brake.isEngaged)
        _ = brake.handle(.fleetChanged(targets: ["a", "b", "c"]), now: t0)
        #expect(brake.targetsInOutage.isEmpty, "pruned to the fleet's members at the update")
    }

    @Test func aSmallFleetNeedsTheMinimumNumberOfOutages() {
        var brake = FleetBrake(fleet: ["a", "b", "c"])
        #expect(brake.handle(.outageOpened(target: "a"), now: t0).isEmpty)
        #expect(!brake.isEngaged)  // 33% but only one outage
        _ = brake.handle(.outageOpened(target: "b"), now: t0)
        #expect(brake.isEngaged)
    }

    @Test func reportsAreIdempotent() {
        var brake = FleetBrake(fleet: Self.ten)
        for _ in 0..<5 { _ = brake.handle(.outageOpened(target: "site-1"), now: t0) }
        #expect(brake.targetsInOutage == ["site-1"])
        for _ in 0..<9 { _ = brake.handle(.destructiveActionRequested(target: "site-1", idempotencyKey: "k"), now: t0) }
        #expect(brake.countedActions(at: t0) == 1 && !brake.isEngaged)
    }

    @Test func theActionLimitWithinTheWindowEngages() throws {
        var brake = FleetBrake(fleet: Self.ten)
        var actions: [FleetBrake.Action] = []
        for i in 1...4 {
            actions += brake.handle(
                .destructiveActionRequested(target: "site-\(i)", idempotencyKey: "k\(i)"), now: t0 + Double(i) * 60)
        }
        #expect(!brake.isEngaged && actions.isEmpty)
        actions += brake.handle(.destructiveActionRequested(target: "site-5", idempotencyKey: "k5"), now: t0 + 600)
        #expect(brake.isEngaged && brake.engagement?.trigger == .actionRate)
        actions += brake.handle(.destructiveActionRequested(target: "site-6", idempotencyKey: "k6"), now: t0 + 700)
        #expect(actions.notices.count == 1)
        #expect(actions.notices.first?.reason == .brakeEngaged(.actionRate(steps: 5, window: 3600, limit: 5)))
        #expect(actions.notices.first?.targets == ["site-1", "site-2", "site-3", "site-4", "site-5"])
    }

    @Test func actionsOlderThanTheWindowDoNotCount() {
        var brake = FleetBrake(fleet: Self.ten)
        for i in 1...4 { _ = brake.handle(.destructiveActionRequested(target: "s", idempotencyKey: "k\(i)"), now: t0) }
        _ = brake.handle(.destructiveActionRequested(target: "s", idempotencyKey: "k5"), now: t0 + 3600)
        #expect(!brake.isEngaged)
        #expect(brake.countedActions(at: t0 + 3600) == 1)
    }

    @Test func anOperatorReleasesItAndTheTargetsInOutageAreWoken() throws {
        var brake = FleetBrake(fleet: Self.ten)
        for target in Self.ten.prefix(4) { _ = brake.handle(.outageOpened(target: target), now: t0) }
        let release = brake.handle(.release(id: "cmd-1", operator: "alice"), now: t0 + 60)
        #expect(!brake.isEngaged)
        let notice = try #require(release.notices.first)
        #expect(
            notice.kind == .brakeReleased
                && notice.command == CommandRef(id: "cmd-1", name: "brake release", operator: "alice"))
        #expect(release.woken == ["site-1", "site-2", "site-3", "site-4"])
        // The outages the operator saw do not engage it again, nor does a closed-and-reopened one…
        #expect(brake.handle(.outageClosed(target: "site-1"), now: t0 + 70).isEmpty)
        #expect(brake.handle(.outageOpened(target: "site-1"), now: t0 + 80).isEmpty)
        #expect(!brake.isEngaged)
        // …but a worse situation does, with a new alert.
        let worse = brake.handle(.outageOpened(target: "site-9"), now: t0 + 90)
        #expect(brake.isEngaged && worse.notices.first?.id == "fleet:brake_engaged:2")
    }

    @Test func aNewEpisodeAfterTheOutagesEndedEngagesAgain() {
        var brake = FleetBrake(fleet: Self.ten)
        for target in Self.ten.prefix(4) { _ = brake.handle(.outageOpened(target: target), now: t0) }
        _ = brake.handle(.release(id: "r", operator: "alice"), now: t0)
        for target in Self.ten.prefix(4) { _ = brake.handle(.outageClosed(target: target), now: t0 + 100) }
        #expect(brake.acceptedTargets.isEmpty)
        for target in Self.ten.prefix(3) { _ = brake.handle(.outageOpened(target: target), now: t0 + 9000) }
        #expect(!brake.isEngaged)
        _ = brake.handle(.outageOpened(target: "site-4"), now: t0 + 9000)
        #expect(brake.isEngaged)
    }

    @Test func theRateCountsFromTheRelease() {
        var brake = FleetBrake(fleet: Self.ten)
        for i in 1...5 { _ = brake.handle(.destructiveActionRequested(target: "s", idempotencyKey: "k\(i)"), now: t0) }
        #expect(brake.isEngaged)
        _ = brake.handle(.release(id: "r", operator: "alice"), now: t0 + 10)
        #expect(brake.countedActions(at: t0 + 10) == 0)
        for i in 6...9 {
            _ = brake.handle(.destructiveActionRequested(target: "s", idempotencyKey: "k\(i)"), now: t0 + 20)
        }
        #expect(!brake.isEngaged)
        _ = brake.handle(.destructiveActionRequested(target: "s", idempotencyKey: "k10"), now: t0 + 30)
        #expect(brake.isEngaged)
    }

    @Test func brakeCommandsInTheWrongStateAreRefused() throws {
        var brake = FleetBrake(fleet: Self.ten)
        let release = brake.handle(.release(id: "c1", operator: "bob"), now: t0)
        #expect(release.rejections.first?.reason == .brakeNotEngaged)
        #expect(release.rejections.first?.detail == "brake release refused: the brake is not engaged")
        let engage = brake.handle(.engage(id: "c2", operator: "bob", reason: "AWS incident in eu-west-1"), now: t0)
        #expect(brake.engagement?.trigger == .manual && brake.engagement?.by == "bob")
        #expect(engage.notices.first?.reason == .brakeEngaged(.manual(by: "bob", reason: "AWS incident in eu-west-1")))
        // The alert answers the command (recoveryctl waits for a notice naming its id).
        #expect(engage.notices.first?.command == CommandRef(id: "c2", name: "brake engage", operator: "bob"))
        let again = brake.handle(.engage(id: "c3", operator: "carol", reason: "x"), now: t0)
        #expect(
            again.rejections.first?.reason
                == .brakeAlreadyEngaged(since: t0, cause: "engaged by bob: AWS incident in eu-west-1"))
        // A redelivered command is a no-op.
        #expect(brake.handle(.engage(id: "c3", operator: "carol", reason: "x"), now: t0).isEmpty)
        #expect(brake.handle(.release(id: "c4", operator: "bob"), now: t0).notices.count == 1)
        #expect(brake.handle(.release(id: "c4", operator: "bob"), now: t0).isEmpty)
    }

    @Test func targetsLeavingTheFleetLeaveTheOutageSet() {
        var brake = FleetBrake(fleet: Self.ten)
        _ = brake.handle(.outageOpened(target: "site-1"), now: t0)
        _ = brake.handle(.outageOpened(target: "site-2"), now: t0)
        _ = brake.handle(.fleetChanged(targets: Array(Self.ten.dropFirst())), now: t0)
        #expect(brake.targetsInOutage == ["site-2"])
        // Shrinking the fleet raises the share.
        _ = brake.handle(.outageOpened(target: "site-3"), now: t0)
        _ = brake.handle(.fleetChanged(targets: ["site-2", "site-3", "site-4", "site-5"]), now: t0)
        #expect(brake.isEngaged)
    }
}

@Suite("Fleet brake with target machines")
struct FleetBrakeIntegrationTests {
    @Test func aWidespreadOutageBrakesTheFleetWithOneAlertAndNoSteps() {
        var fleet = Fleet(size: 10)
        for i in 1...4 {
            fleet.now = t0 + Double(i)
            fleet.deliver("site-\(i)") { $0.declare() }
        }
        #expect(fleet.brake.isEngaged)
        fleet.now = t0 + 400
        for i in 1...4 { fleet.deliver("site-\(i)") { $0.send(.tick) } }
        #expect(fleet.allTargetActions.requests.isEmpty)
        #expect(fleet.brakeNotices.filter { $0.kind == .brakeEngaged }.count == 1)
        #expect(fleet.allTargetActions.notices.allSatisfy { $0.kind == .outageDeclared })

        fleet.now = t0 + 500
        fleet.apply(.release(id: "cmd-r", operator: "alice"))
        let requests = fleet.allTargetActions.requests
        #expect(requests.count == 4 && requests.allSatisfy { $0.step == .restart && $0.requestedAt == t0 + 500 })
        #expect(!fleet.brake.isEngaged)  // 4 steps, limit 5
    }

    @Test func tooManyStepsInAnHourBrakeTheFleet() {
        var fleet = Fleet(size: 20)
        for i in 1...6 {
            let target = "site-\(i)"
            fleet.now = t0 + Double(i) * 600
            fleet.deliver(target) { $0.declare() }
            fleet.now += 300
            fleet.deliver(target) { $0.send(.tick) }
            fleet.deliver(target) { $0.ok(2) }  // fixed: the outage closes
        }
        let requests = fleet.allTargetActions.requests
        #expect(requests.count == 5)
        #expect(!requests.contains { $0.target == "site-6" })
        #expect(fleet.brake.engagement?.trigger == .actionRate)
        #expect(fleet.brakeNotices.filter { $0.kind == .brakeEngaged }.count == 1)
    }
}
