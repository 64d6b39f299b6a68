import Foundation
import RecoveryCore

/// A whole second, so that stored times (milliseconds) round-trip exactly.
let t0 = Date(timeIntervalSince1970: 1_795_000_000)

typealias Action = EscalationMachine.Action

/// Drives one target's machine the way the decision worker does: one event at a time, time injected,
/// the brake state passed in. Keeps every action for assertions.
struct Ladder {
    var machine: EscalationMachine
    var now = t0
    var brakeEngaged = false
    var counter = 0
    var log: [Action] = []

    static let home = InstanceRef(id: "i-original", region: "eu-west-1")

    init(settings: TargetSettings = TargetSettings(), name: String = "shop-web", drRegion: String? = "eu-central-1") {
        machine = EscalationMachine(
            identity: TargetIdentity(
                name: name, homeRegion: "eu-west-1", drRegion: drRegion, elasticIpAllocationId: "eipalloc-1"),
            instance: Self.home, settings: settings)
    }

    var target: String { machine.target }
    var incidentId: String? { machine.incident?.id }

    mutating func nextId(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)-\(counter)"
    }

    @discardableResult
    mutating func send(_ event: EscalationMachine.Event) -> [Action] {
        let actions = machine.handle(event, now: now, brakeEngaged: brakeEngaged)
        log += actions
        return actions
    }

    /// `count` failed checks from `prober`, at the current time.
    @discardableResult
    mutating func fail(_ count: Int = 1, prober: String = "p1", instance: String? = nil) -> [Action] {
        var all: [Action] = []
        for _ in 0..<count {
            let id = nextId("obs")
            all += send(
                .probe(
                    id: id,
                    ProbeResult(
                        prober: prober, instanceId: instance, healthy: false, statusCode: 503, detail: "HTTP 503")))
        }
        return all
    }

    @discardableResult
    mutating func ok(_ count: Int = 1, prober: String = "p1", instance: String? = nil) -> [Action] {
        var all: [Action] = []
        for _ in 0..<count {
            let id = nextId("obs")
            all += send(
                .probe(id: id, ProbeResult(prober: prober, instanceId: instance, healthy: true, statusCode: 200)))
        }
        return all
    }

    /// Moves the clock to t0 + `seconds` and delivers a tick.
    @discardableResult
    mutating func tick(at seconds: TimeInterval) -> [Action] {
        now = t0.addingTimeInterval(seconds)
        return send(.tick)
    }

    @discardableResult
    mutating func command(
        _ name: OperatorCommand.Name, by who: String = "alice", until: Date? = nil, reason: String? = nil,
        incident: String? = nil
    ) -> [Action] {
        send(
            .command(
                id: nextId("cmd"), OperatorCommand(name, by: who, until: until, reason: reason, incident: incident)))
    }

    @discardableResult
    mutating func outcome(
        _ request: ActionRequest, _ status: ActionOutcome.Status, reason: String? = nil, newInstance: InstanceRef? = nil
    ) -> [Action] {
        send(
            .actionOutcome(
                id: nextId("evt"), ActionOutcome(for: request, status: status, reason: reason, newInstance: newInstance)
            ))
    }

    /// Declares an outage with N failures at the current time and returns the actions.
    @discardableResult
    mutating func declare() -> [Action] { fail(machine.settings.failureThreshold) }
}

extension Array where Element == Action {
    var requests: [ActionRequest] {
        compactMap { if case .requestAction(let r) = $0 { r } else { nil } }
    }
    var notices: [Notice] {
        compactMap { if case .notify(let n) = $0 { n } else { nil } }
    }
    func notices(_ kind: NotificationKind) -> [Notice] { notices.filter { $0.kind == kind } }
    var rejections: [Notice] {
        compactMap { if case .rejectCommand(let n) = $0 { n } else { nil } }
    }
    var wakeUps: [Date] {
        compactMap { if case .scheduleWakeUp(let at) = $0 { at } else { nil } }
    }
    var aborts: [(key: String, abort: StepAbort)] {
        compactMap { if case .abortStep(let key, let abort) = $0 { (key, abort) } else { nil } }
    }
    var fleetReports: [FleetBrake.Event] {
        compactMap { if case .reportToFleet(let e) = $0 { e } else { nil } }
    }
}

/// Several targets and one brake, wired the way the decision worker wires them: the brake state goes
/// into every `handle`, fleet reports go into the brake, and the brake's wake-ups come back as ticks.
struct Fleet {
    var machines: [String: Ladder] = [:]
    var brake: FleetBrake
    var brakeActions: [FleetBrake.Action] = []
    var now = t0

    init(size: Int, settings: TargetSettings = TargetSettings(), brakeSettings: FleetBrake.Settings = .init()) {
        let names = (1...size).map { "site-\($0)" }
        for name in names { machines[name] = Ladder(settings: settings, name: name) }
        brake = FleetBrake(settings: brakeSettings, fleet: names)
    }

    @discardableResult
    mutating func deliver(_ target: String, _ body: (inout Ladder) -> [Action]) -> [Action] {
        var ladder = machines[target]!
        ladder.now = now
        ladder.brakeEngaged = brake.isEngaged
        let actions = body(&ladder)
        machines[target] = ladder
        for case .reportToFleet(let event) in actions { apply(event) }
        return actions
    }

    mutating func apply(_ event: FleetBrake.Event) {
        let actions = brake.handle(event, now: now)
        brakeActions += actions
        for case .wakeTargets(let targets) in actions {
            for target in targets { deliver(target) { $0.send(.tick) } }
        }
    }

    var allTargetActions: [Action] { machines.values.flatMap(\.log) }
    var brakeNotices: [Notice] {
        brakeActions.compactMap { if case .notify(let n) = $0 { n } else { nil } }
    }
}

/// SplitMix64: a small seeded generator, so a failing random run can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
