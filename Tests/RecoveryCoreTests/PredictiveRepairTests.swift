import Foundation
import RecoveryCore
import Testing

/// The decision's policy for high-confidence predictions, with injected time.
@Suite("Predictive repair")
struct PredictiveRepairTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let instance = InstanceRef(id: "i-0123456789abcdef0", region: "us-east-1")

    func context(
        _ offset: TimeInterval, settings: TargetSettings = TargetSettings(), incident: Bool = false,
        brake: Bool = false
    ) -> PredictiveRepair.Context {
        PredictiveRepair.Context(
            now: t0.addingTimeInterval(offset), target: "shop", instance: instance, settings: settings,
            incidentOpen: incident, brakeEngaged: brake)
    }

    func disk(_ id: String = "pred-1", repair: String = "ssm:disk-cleanup") -> PredictiveRepair.Trouble {
        PredictiveRepair.Trouble(
            id: id, kind: "disk_exhaustion", confidence: 0.93, repair: repair,
            detail: "disk_used_percent reaches 100% in about 14h",
            window: t0.addingTimeInterval(12 * 3600)...t0.addingTimeInterval(16 * 3600))
    }

    func notices(_ actions: [PredictiveRepair.Action]) -> [Notice] {
        actions.compactMap { if case .notify(let n) = $0 { n } else { nil } }
    }

    func requests(_ actions: [PredictiveRepair.Action]) -> [(key: String, document: String, by: String?)] {
        actions.compactMap {
            if case let .requestRepair(key, _, document, _, _, _, by) = $0 { (key, document, by) } else { nil }
        }
    }

    @Test("a disk about to fill: told at once, repaired after the grace period, then quiet")
    func graceThenRepair() {
        var r = PredictiveRepair()
        let told = r.handle(.trouble(disk()), context(0))
        #expect(requests(told).isEmpty)
        let notice = try! #require(notices(told).first)
        #expect(notice.kind == .troublePredicted)
        #expect(notice.repair == "ssm disk-cleanup")
        #expect(notice.nextStepAt == t0.addingTimeInterval(300))
        #expect(notice.commands.first == "recoveryctl ack shop")
        #expect(
            notice.reason
                == .troublePredicted(
                    prediction: "disk_used_percent reaches 100% in about 14h", confidence: 0.93,
                    from: t0.addingTimeInterval(12 * 3600), to: t0.addingTimeInterval(16 * 3600), outlook: .planned))
        #expect(r.nextDeadline == t0.addingTimeInterval(300))

        #expect(r.handle(.tick, context(299)).isEmpty, "nothing before the grace period ends")
        // The same prediction redelivered, or the next hour's, plans nothing new.
        #expect(r.handle(.trouble(disk()), context(100)).isEmpty)
        #expect(r.handle(.trouble(disk("pred-2")), context(200)).isEmpty)

        let started = r.handle(.tick, context(300))
        #expect(requests(started).map(\.key) == ["shop/repair/ssm/pred-1"])
        #expect(requests(started).first?.document == "disk-cleanup")
        #expect(requests(started).first?.by == nil)
        #expect(notices(started).map(\.kind) == [.repairStarted])
        #expect(r.handle(.tick, context(301)).isEmpty, "a running repair is not requested twice")

        // An unrelated outcome changes nothing; the plan's own closes it.
        let other = ActionOutcome(
            idempotencyKey: "shop/inc-1/restart", incidentId: "inc-1", step: .restart, status: .succeeded)
        #expect(r.handle(.outcome(other), context(400)).isEmpty)
        let outcome = ActionOutcome(
            idempotencyKey: "shop/repair/ssm/pred-1", incidentId: "pred-1", step: .notifyOnly, status: .succeeded)
        let done = r.handle(.outcome(outcome), context(500))
        #expect(notices(done).map(\.kind) == [.repairSucceeded])
        #expect(r.plan == nil)
        // Quiet for the same kind for six hours, then a new prediction plans again.
        #expect(r.handle(.trouble(disk("pred-3")), context(500 + 3600)).isEmpty)
        #expect(
            notices(r.handle(.trouble(disk("pred-4")), context(500 + 6 * 3600 + 1))).map(\.kind) == [.troublePredicted])
    }

    @Test("a maintenance window holds a planned repair until it ends")
    func maintenanceHoldsTheRepair() {
        var settings = TargetSettings()
        settings.maintenance = [
            MaintenanceWindow(start: t0.addingTimeInterval(200), end: t0.addingTimeInterval(900), reason: "patching")
        ]
        var r = PredictiveRepair()
        _ = r.handle(.trouble(disk()), context(0, settings: settings))
        #expect(requests(r.handle(.tick, context(300, settings: settings))).isEmpty, "grace over, window on")
        #expect(r.nextDeadline == t0.addingTimeInterval(900))
        #expect(requests(r.handle(.tick, context(899, settings: settings))).isEmpty)
        #expect(requests(r.handle(.tick, context(900, settings: settings))).map(\.key) == ["shop/repair/ssm/pred-1"])
    }

    @Test("ack cancels, hold delays, a failed repair is told")
    func commands() {
        var r = PredictiveRepair()
        _ = r.handle(.trouble(disk()), context(0))
        #expect(r.takes(OperatorCommand(.ack, by: "alice"), incidentOpen: false))
        #expect(
            !r.takes(OperatorCommand(.ack, by: "alice"), incidentOpen: true),
            "during an outage commands are the ladder's")
        let held = r.handle(
            .command(id: "c1", OperatorCommand(.hold, by: "alice", until: t0.addingTimeInterval(3600))), context(10))
        #expect(notices(held).map(\.kind) == [.commandAccepted])
        #expect(r.handle(.tick, context(300)).isEmpty, "held past the grace period")
        #expect(requests(r.handle(.tick, context(3600))).count == 1)
        let failed = r.handle(
            .outcome(
                ActionOutcome(
                    idempotencyKey: "shop/repair/ssm/pred-1", incidentId: "pred-1", step: .notifyOnly,
                    status: .failed, reason: "SSM agent not registered")), context(3700))
        #expect(notices(failed).first?.kind == .repairFailed)
        #expect(
            notices(failed).first?.reason
                == .repairFailed(
                    prediction: "disk_used_percent reaches 100% in about 14h", reason: "SSM agent not registered"))

        var cancelled = PredictiveRepair()
        _ = cancelled.handle(.trouble(disk()), context(0))
        let acked = cancelled.handle(.command(id: "c2", OperatorCommand(.ack, by: "bob")), context(10))
        #expect(notices(acked).first?.command?.operator == "bob")
        #expect(cancelled.plan == nil)
        #expect(cancelled.handle(.tick, context(300)).isEmpty)
    }

    @Test("approval: nothing runs without it, approve runs it at once")
    func approval() {
        var settings = TargetSettings()
        settings.requiresApproval = true
        var r = PredictiveRepair()
        let told = notices(r.handle(.trouble(disk()), context(0, settings: settings)))
        #expect(told.first?.blockedBy == .approval)
        #expect(told.first?.respondBy == t0.addingTimeInterval(1800))
        #expect(r.handle(.tick, context(300, settings: settings)).isEmpty)
        let approved = r.handle(
            .command(id: "c1", OperatorCommand(.approve, by: "carol")), context(400, settings: settings))
        #expect(requests(approved).map(\.by) == ["carol"])

        var timedOut = PredictiveRepair()
        _ = timedOut.handle(.trouble(disk()), context(0, settings: settings))
        let expired = timedOut.handle(.tick, context(1800, settings: settings))
        #expect(requests(expired).isEmpty)
        #expect(notices(expired).map(\.kind) == [.repairCancelled])
    }

    @Test("hold and resume never stand in for an approval; approval required later is honoured")
    func holdResumeAndApproval() {
        var settings = TargetSettings()
        settings.requiresApproval = true
        var r = PredictiveRepair()
        _ = r.handle(.trouble(disk()), context(0, settings: settings))
        let held = r.handle(
            .command(id: "h1", OperatorCommand(.hold, by: "dave", until: t0.addingTimeInterval(7200))),
            context(10, settings: settings))
        #expect(notices(held).first?.kind == .commandAccepted)
        #expect(
            r.plan?.phase == .awaitingApproval(deadline: t0.addingTimeInterval(7200)),
            "still waits for approval, until the hold's end")
        #expect(requests(r.handle(.tick, context(7000, settings: settings))).isEmpty)
        let resumed = r.handle(
            .command(id: "r1", OperatorCommand(.resume, by: "dave")), context(20, settings: settings))
        #expect(notices(resumed).first?.kind == .commandRejected)
        #expect(requests(r.handle(.tick, context(100, settings: settings))).isEmpty, "resume did not start it")

        // Approval switched on after the plan was made: at the end of the grace it waits instead of running.
        var later = PredictiveRepair()
        _ = later.handle(.trouble(disk()), context(0))
        let due = later.handle(.tick, context(300, settings: settings))
        #expect(requests(due).isEmpty)
        #expect(notices(due).first?.blockedBy == .approval)
        #expect(later.plan?.phase == .awaitingApproval(deadline: t0.addingTimeInterval(300 + 1800)))
    }

    @Test("reset is the machine's; it cancels a planned repair, never a running one")
    func reset() {
        var r = PredictiveRepair()
        _ = r.handle(.trouble(disk()), context(0))
        #expect(!r.takes(OperatorCommand(.reset, by: "erin"), incidentOpen: false))
        let cancelled = r.cancel(because: .reset(by: "erin"), context(10))
        #expect(cancelled?.kind == .repairCancelled)
        #expect(
            cancelled?.reason
                == .repairCancelled(prediction: "disk_used_percent reaches 100% in about 14h", why: .reset(by: "erin")))
        #expect(r.plan == nil)
        var running = PredictiveRepair()
        _ = running.handle(.trouble(disk()), context(0))
        _ = running.handle(.tick, context(300))
        #expect(running.cancel(because: .reset(by: "erin"), context(310)) == nil)
        #expect(running.plan?.isRunning == true)
    }

    @Test("no repair during an outage, under quarantine or the brake, or for a suggestion that is not SSM")
    func guards() {
        var r = PredictiveRepair()
        #expect(r.handle(.trouble(disk()), context(0, incident: true)).isEmpty, "the ladder owns an open incident")

        var quarantined = TargetSettings()
        quarantined.quarantined = true
        let q = notices(r.handle(.trouble(disk()), context(0, settings: quarantined)))
        #expect(q.first?.blockedBy == .quarantine)
        #expect(r.plan == nil)

        var braked = PredictiveRepair()
        _ = braked.handle(.trouble(disk()), context(0, brake: true))
        #expect(braked.handle(.tick, context(300, brake: true)).isEmpty)
        #expect(braked.nextDeadline == t0.addingTimeInterval(360), "re-checked a minute later")
        #expect(requests(braked.handle(.tick, context(360))).count == 1, "runs once the brake is released")

        var outage = PredictiveRepair()
        _ = outage.handle(.trouble(disk()), context(0))
        let cancelled = outage.handle(.tick, context(100, incident: true))
        #expect(notices(cancelled).map(\.kind) == [.repairCancelled])

        var restart = PredictiveRepair()
        let told = notices(restart.handle(.trouble(disk(repair: "restart")), context(0)))
        #expect(told.first?.commands == ["recoveryctl restart shop"])
        #expect(restart.plan == nil)
    }

    @Test("the plan survives the state store's JSON")
    func coding() throws {
        var r = PredictiveRepair()
        _ = r.handle(.trouble(disk()), context(0))
        let data = try JSONEncoder().encode(r)
        #expect(try JSONDecoder().decode(PredictiveRepair.self, from: data) == r)
    }
}
