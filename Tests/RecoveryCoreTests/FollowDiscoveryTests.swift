import Foundation
import Testing

@testable import RecoveryCore

/// Issue 14, gap 4: `currentInstance` followed outcomes only and was never reconciled with discovery. A
/// target whose record pointed at a stopped original (a replayed outcome, an instance replaced by hand)
/// kept being watched and acted on there: the next restart started the original next to the healthy
/// replacement. Before, every probe below was ignored (no move, no notice, no stop).
@Suite("Escalation: following the instance discovery finds")
struct FollowDiscoveryTests {
    static let replacement = InstanceRef(id: "i-replacement", region: "eu-west-1")

    /// A healthy HTTP check (of the site, wherever it runs) that says where discovery found the target.
    @discardableResult
    func check(_ l: inout Ladder, healthy: Bool = true, discovered: InstanceRef?, count: Int = 1) -> [Action] {
        var all: [Action] = []
        for _ in 0..<count {
            var probe = ProbeResult(prober: "p1", healthy: healthy, statusCode: healthy ? 200 : 503)
            probe.discovered = discovered
            all += l.send(.probe(id: l.nextId("obs"), probe))
        }
        return all
    }

    @Test func withNoIncidentTheMachineFollowsDiscoveryAfterThreeProbesInARow() throws {
        var l = Ladder()
        #expect(check(&l, discovered: Self.replacement, count: 2).isEmpty)
        // A probe that finds the recorded instance again starts the count over.
        check(&l, discovered: Ladder.home)
        #expect(check(&l, discovered: Self.replacement, count: 2).isEmpty)
        #expect(l.machine.currentInstance == Ladder.home)

        let followed = check(&l, discovered: Self.replacement)

        #expect(l.machine.currentInstance == Self.replacement)
        let notice = try #require(followed.notices(.instanceFollowed).first)
        #expect(notice.reason == .instanceFollowed(target: "shop-web", from: Ladder.home, to: Self.replacement))
        #expect(l.machine.displaced?.instance == Ladder.home, "the old one is watched for coming back")
        #expect(check(&l, discovered: Self.replacement, count: 5).notices(.instanceFollowed).isEmpty, "said once")
        // An outage now acts on the instance that serves the site.
        l.fail(3)
        let restart = try #require(l.tick(at: 300).requests.first)
        #expect(restart.instanceId == Self.replacement.id)
    }

    @Test func duringAnIncidentAutomationStopsInsteadOfActingOnAnInstanceThatMayNotServeTheSite() throws {
        var l = Ladder()
        l.declare()
        let stopped = check(&l, healthy: false, discovered: Self.replacement, count: 3)

        let notice = try #require(stopped.notices(.humanNeeded).first)
        guard case .automationStopped(_, _, _, .humanNeeded(let why)) = notice.reason else {
            Issue.record("unexpected \(String(describing: notice.reason))")
            return
        }
        #expect(why.contains(Self.replacement.id) && why.contains(Ladder.home.id))
        #expect(l.tick(at: 3600).requests.isEmpty, "no step after the grace period")
        #expect(check(&l, healthy: false, discovered: Self.replacement, count: 3).notices(.humanNeeded).isEmpty)
        #expect(l.machine.currentInstance == Ladder.home, "a person decides; the record is not moved mid-incident")
    }

    @Test func whileAStepRunsItsOutcomeMovesTheTargetNotDiscovery() throws {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        // The replacement may be found before the outcome arrives: not a reason to stop.
        #expect(check(&l, healthy: false, discovered: Self.replacement, count: 5).notices(.humanNeeded).isEmpty)
        #expect(l.machine.servedElsewhere == nil)
        l.outcome(restart, .succeeded)
        #expect(l.machine.incident?.automationStopped == nil)
    }

    @Test func probesOfOlderProbersWithoutDiscoveryChangeNothing() {
        var l = Ladder()
        #expect(check(&l, discovered: nil, count: 10).isEmpty)
        #expect(l.machine.currentInstance == Ladder.home && l.machine.servedElsewhere == nil)
    }

    @Test func theSightingSurvivesTheStateCodec() throws {
        var l = Ladder()
        check(&l, discovered: Self.replacement, count: 2)
        let stored = try StateCodec.encode(l.machine)
        let loaded = try StateCodec.decodeMachine(stored)
        #expect(loaded.servedElsewhere == Sighting(instance: Self.replacement, observations: 2, reported: false))
    }
}

typealias Sighting = EscalationMachine.Sighting
