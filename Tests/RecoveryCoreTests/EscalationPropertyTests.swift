import Foundation
import RecoveryCore
import Testing

/// Random event sequences, replayable from their seed, checked against the machine's promises.
@Suite("Escalation ladder: random event sequences")
struct EscalationPropertyTests {
    static let seeds: [UInt64] = Array(1...60)

    struct Stats {
        var requests = 0
        var blockedByHold = 0
        var blockedByBrake = 0
        var replays = 0
        var commands = 0
        var incidents = 0
        /// Every broken promise, worded; the test asserts on them in its own task.
        var failures: [String] = []
    }

    /// Runs 300 random events for `seed`, recording every broken promise in `Stats.failures` (it runs off
    /// Swift's cooperative pool, `offThePool`, where `#expect` has no test to report to):
    /// - no two action requests share an idempotency key;
    /// - no destructive step is requested while the brake is engaged, while the incident is held or
    ///   acknowledged (unless the event is the `resume` that ends it), on a quarantined target, or
    ///   without a person on a target that requires approval;
    /// - at most one step per event, always for the open incident;
    /// - a redelivered event (same id) does nothing;
    /// - every notice says why as a `reason`, its `detail` is the reason's text, and it reads back from the
    ///   wire unchanged;
    /// - the state survives JSON at every step, and a copy restored from JSON mid-run produces exactly
    ///   the same actions as the original for the rest of the run.
    ///
    /// `inspect` sees the state after every event (`TargetStateJSONTests` checks its codec on it).
    static func run(seed: UInt64, inspect: (EscalationMachine) throws -> Void = { _ in }) throws -> Stats {
        var rng = SeededGenerator(seed: seed)
        func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }

        var settings = TargetSettings()
        settings.requiresApproval = chance(25)
        settings.quorum = chance(30)
        settings.quarantined = chance(10)
        settings.failureThreshold = Int.random(in: 2...3, using: &rng)
        settings.recoveryThreshold = Int.random(in: 1...3, using: &rng)
        settings.gracePeriod = [0, 60, 300].randomElement(using: &rng)!
        var l = Ladder(settings: settings)

        var stats = Stats()
        func check(_ condition: Bool, _ message: @autoclosure () -> String = "") {
            if !condition { stats.failures.append(message()) }
        }
        var keys = Set<String>()
        var history: [EscalationMachine.Event] = []
        var siteUp = true
        var instances = 0
        let forkAt = Int.random(in: 50..<250, using: &rng)
        var restored: EscalationMachine?
        let operators = ["alice", "bob"]

        for step in 0..<300 {
            if step == forkAt {
                restored = try StateCodec.decodeMachine(try StateCodec.encode(l.machine))
                check(restored == l.machine, "seed \(seed): the restored state differs")
            }
            if chance(5) { l.brakeEngaged.toggle() }
            if chance(10) { siteUp.toggle() }

            let event: EscalationMachine.Event
            var isReplay = false
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<40:
                l.now += Double(Int.random(in: 0...30, using: &rng))
                let accurate = chance(90)
                var instance: String?
                if chance(10) { instance = l.machine.displaced?.instance.id ?? "i-stranger" }
                event = .probe(
                    id: l.nextId("obs"),
                    ProbeResult(
                        prober: ["p1", "p2", "p3"].randomElement(using: &rng)!, instanceId: instance,
                        healthy: accurate ? siteUp : !siteUp))
            case 40..<60:
                l.now += Double(Int.random(in: 0...900, using: &rng))
                event = .tick
            case 60..<75:
                let name = OperatorCommand.Name.allCases.randomElement(using: &rng)!
                let until = l.now + Double(Int.random(in: -60...3000, using: &rng))
                event = .command(
                    id: l.nextId("cmd"), OperatorCommand(name, by: operators.randomElement(using: &rng)!, until: until))
                stats.commands += 1
            case 75..<93:
                let requests = l.log.requests
                guard let request = chance(70) ? requests.last : requests.randomElement(using: &rng) else {
                    event = .tick
                    break
                }
                let roll = Int.random(in: 0..<100, using: &rng)
                let status: ActionOutcome.Status = roll < 50 ? .succeeded : roll < 85 ? .failed : .humanNeeded
                var moved: InstanceRef?
                if status == .succeeded && request.step != .restart {
                    instances += 1
                    moved = InstanceRef(id: "i-new-\(instances)", region: request.destinationRegion)
                }
                event = .actionOutcome(
                    id: l.nextId("evt"),
                    ActionOutcome(for: request, status: status, reason: "random", newInstance: moved))
            default:
                if let old = history.filter({ $0.id != nil }).randomElement(using: &rng) {
                    event = old
                    isReplay = true
                    stats.replays += 1
                } else {
                    event = .tick
                }
            }

            let before = l.machine
            var heldBefore = false
            switch before.incident?.hold {
            case .acknowledged?: heldBefore = true
            case .until(let end, _)?: heldBefore = l.now < end
            case nil: break
            }
            var isResume = false
            if case .command(_, let command) = event, command.name == .resume { isResume = true }

            let actions = l.send(event)
            history.append(event)
            try inspect(l.machine)
            if var copy = restored {
                let copied = copy.handle(event, now: l.now, brakeEngaged: l.brakeEngaged)
                check(copied == actions, "seed \(seed) step \(step): the restored copy acted differently")
                restored = copy
            }

            let requests = actions.requests
            stats.requests += requests.count
            if actions.notices(.outageDeclared).count > 0 { stats.incidents += 1 }
            if heldBefore && !isResume && before.incident != nil { stats.blockedByHold += 1 }
            if l.brakeEngaged && before.incident != nil { stats.blockedByBrake += 1 }

            check(requests.count <= 1, "seed \(seed) step \(step): \(requests.count) requests for one event")
            if isReplay { check(actions.isEmpty, "seed \(seed) step \(step): a replayed event acted: \(actions)") }
            for request in requests {
                check(
                    keys.insert(request.idempotencyKey).inserted,
                    "seed \(seed) step \(step): \(request.idempotencyKey) requested twice")
                check(
                    !l.brakeEngaged, "seed \(seed) step \(step): \(request.step) requested while the brake is engaged")
                check(
                    !(heldBefore && !isResume),
                    "seed \(seed) step \(step): \(request.step) requested while held or acknowledged")
                check(
                    !settings.quarantined,
                    "seed \(seed) step \(step): \(request.step) requested on a quarantined target")
                if settings.requiresApproval {
                    check(
                        request.requestedBy != nil,
                        "seed \(seed) step \(step): \(request.step) requested without approval")
                }
                check(
                    request.incidentId == l.machine.incident?.id,
                    "seed \(seed) step \(step): request for a closed incident")
                check(
                    request.step.isDestructive && request.deadline > request.requestedAt,
                    "seed \(seed) step \(step): \(request)")
            }
            for notice in actions.notices + actions.rejections {
                guard let reason = notice.reason else {
                    check(false, "seed \(seed) step \(step): \(notice.id) has no reason")
                    continue
                }
                check(notice.detail == reason.text, "seed \(seed) step \(step): \(notice.id)")
                let bytes = try EnvelopeCodec.encode(Envelope(type: .notification, occurredAt: l.now, body: notice))
                check(
                    try EnvelopeCodec.decode(bytes, as: Notice.self, expecting: .notification).body == notice,
                    "seed \(seed) step \(step): \(notice.id) changed on the wire")
            }
            if step % 25 == 0 {
                check(
                    try StateCodec.decodeMachine(try StateCodec.encode(l.machine)) == l.machine,
                    "seed \(seed) step \(step)")
            }
        }
        return stats
    }

    @Test(arguments: seeds)
    func promisesHold(seed: UInt64) async throws {
        let failures = try await offThePool { try Self.run(seed: seed).failures }
        #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: "\n"))")
    }

    /// The random runs are not vacuous: they request steps, open incidents, replay events and hit
    /// holds and the brake.
    @Test func theRandomRunsExerciseTheMachine() async throws {
        var total = Stats()
        let all = try await offThePool { try Self.seeds.map { try Self.run(seed: $0) } }
        for stats in all {
            total.requests += stats.requests
            total.incidents += stats.incidents
            total.replays += stats.replays
            total.blockedByHold += stats.blockedByHold
            total.blockedByBrake += stats.blockedByBrake
            total.commands += stats.commands
        }
        #expect(total.requests > 100, "\(total)")
        #expect(total.incidents > 100, "\(total)")
        #expect(
            total.replays > 100 && total.blockedByHold > 100 && total.blockedByBrake > 100 && total.commands > 100,
            "\(total)")
    }
}
