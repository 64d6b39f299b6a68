import FleetControl
import FleetRuntime
import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore
import Testing

extension RecoveryctlEndToEndTests {
    // MARK: abort

    /// Issue 14, gap 10, through the binary against the real broker and Redis: `recoveryctl abort` with
    /// nothing running is refused with the reason; while a restart runs, it is accepted, the decision
    /// worker flags the step in Redis, the actuator stops at its next sub-step boundary (no reboot), and
    /// recoveryctl prints the outcome naming who aborted it. A second abort finds nothing to abort.
    @Test(.timeLimit(.minutes(3)))
    func abortStopsTheRunningRestartAtItsNextSubStepAndSaysWho() async throws {
        let world = try World()
        let site = try await FakeSite()
        let name = "\(world.prefix)-shop"
        let instance = try await world.launchTarget(name: name, healthURL: site.url)
        _ = try await world.ec2.waitUntilRunning([instance.instanceId], interval: .milliseconds(100))
        // The actuator holds after `inspect` until the abort flag is in Redis, so the abort lands at a
        // known boundary whatever the machine's speed (the wait is bounded; the check itself is the code's).
        let hookRedis = try await RedisClient.connect(url: world.redisURL)
        let flags = RedisKeyValueStore(client: hookRedis, keyspace: world.keyspace)
        let fleet = try await InProcessFleet(
            world, config: #"{"defaults": {"failure_threshold": 2, "grace_period": 0}}"#
        ) { options in
            options.afterSubStep = { key, sub in
                guard sub == .inspect else { return }
                try await poll("the abort flag of \(key)", timeout: .seconds(90)) {
                    try await flags.get(StepAbort.flagKey(key)) != nil
                }
            }
        }
        let env = ctlEnvironment(world, extra: [:])
        let reader = DecisionStateReader(states: RedisStateStore(client: fleet.redis, keyspace: world.keyspace))
        func abort(_ arguments: [String], expect code: Int32) async throws -> CommandResult {
            let run = try await runCtl(["abort", name] + arguments + ["--json", "--timeout", "60s"], env: env)
            #expect(run.code == code, "\(arguments): \(run.stdout) \(run.stderr)")
            return try JSONDecoder().decode(CommandResult.self, from: Data(run.stdout.utf8))
        }

        do {
            let early = try await abort([], expect: 3)
            #expect(early.status == .rejected && early.detail?.contains("has no open incident") == true, "\(early)")

            try await fleet.observe(name, instance: instance.instanceId, healthy: false, count: 2)
            // The actuator has recorded `inspect` and holds there: the abort comes mid-step.
            let records = StepRecordStore(states: RedisStateStore(client: fleet.redis, keyspace: world.keyspace))
            try await poll("the restart has begun") {
                guard let incident = try await reader.target(name)?.machine.incident else { return false }
                let key = ActionRequest.key(target: name, incidentId: incident.id, step: .restart)
                return try await records.load(key)?.done.contains(.inspect) == true
            }

            let aborted = try await abort(["--reason", "wrong instance"], expect: 0)
            #expect(aborted.status == .accepted && aborted.operator == "guest", "\(aborted)")
            #expect(aborted.detail?.contains("guest aborted restart") == true, "\(aborted)")
            let outcome = try #require(aborted.outcome, "\(aborted)")
            #expect(outcome.step == "restart" && outcome.status == "human_needed" && outcome.abortedBy == "guest")
            #expect(outcome.reason?.contains("(wrong instance); stopped after inspect") == true, "\(outcome)")
            #expect(fleet.log.mutations.isEmpty, "nothing after the boundary: \(fleet.log.all)")

            // recoveryctl hears the actuator's outcome on its own queue, and the decision worker applies the
            // same outcome from its queue, maybe a moment later: wait for the decision's state to catch up.
            let stopped = EscalationMachine.Phase.stopped(.humanNeeded("restart was aborted by guest (wrong instance)"))
            try? await poll("the decision worker applies the outcome") {
                try await reader.target(name)?.machine.incident?.phase == stopped
            }
            let incident = try #require(try await reader.target(name)?.machine.incident)
            #expect(incident.aborted?.by == "guest" && incident.aborted?.reason == "wrong instance")
            #expect(incident.phase == .stopped(.humanNeeded("restart was aborted by guest (wrong instance)")))

            let again = try await abort([], expect: 3)
            #expect(again.detail?.contains("there is nothing to abort") == true, "\(again)")
        } catch {
            Issue.record(error)
        }

        await fleet.stop()
        await hookRedis.close()
        site.stop()
        await world.tearDown(instances: [instance.instanceId])
    }
}
