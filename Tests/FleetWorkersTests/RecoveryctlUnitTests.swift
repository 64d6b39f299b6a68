import AMQPTransport
import ArgumentParser
import FleetRuntime
import FleetWorkers
import Foundation
import RecoveryCore
import Testing

@testable import FleetControl

/// recoveryctl's parsing and formatting, without services.
@Suite("recoveryctl parsing and formatting")
struct RecoveryctlUnitTests {
    @Test func durationsAndHoldTimes() throws {
        #expect(TimeInput.seconds("90s") == 90)
        #expect(TimeInput.seconds("15m") == 900)
        #expect(TimeInput.seconds("2h") == 7200)
        #expect(TimeInput.seconds("1d") == 86_400)
        #expect(TimeInput.seconds("1h30m") == 5400)
        #expect(TimeInput.seconds("45") == 45)
        for bad in ["", "h", "2x", "1h30", "-5m", "soon"] { #expect(TimeInput.seconds(bad) == nil, "\(bad)") }

        let now = Date(timeIntervalSince1970: 1_795_000_000)
        #expect(try TimeInput.until("2h", now: now) == now.addingTimeInterval(7200))
        #expect(try TimeInput.until("2026-11-22T06:00:00Z", now: now) == Date(timeIntervalSince1970: 1_795_327_200))
        #expect(throws: ControlError.self) { try TimeInput.until("tomorrow", now: now) }
        #expect(throws: ControlError.self) { try TimeInput.until("0m", now: now) }
        #expect(TimeInput.relative(now.addingTimeInterval(-75), now: now) == "1m ago")
        #expect(TimeInput.compact(5400) == "1h30m")
    }

    @Test func tablesFitEightyColumnsAndCutOnlyTheLongColumns() {
        let table = TextTable(
            headers: ["TARGET", "STATE", "OUT", "INSTANCE", "HOLD"],
            rows: [
                [
                    "shop-web", "in_progress(reprovision)", "2", "i-0123456789abcdef0",
                    "held by alice until 2026-11-22T06:00:00Z",
                ],
                [
                    "a-very-long-target-name-that-someone-chose-for-the-blog", "monitoring", "0", "i-0fedcba9876543210",
                    "-",
                ],
            ],
            fixed: [2, 3])
        let lines = table.render(width: 80).split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { $0.count <= 80 }, "\(lines.map(\.count))")
        #expect(lines[1].contains("i-0123456789abcdef0"), "fixed columns are never cut")
        #expect(lines[2].contains("…"), "the long name is cut with an ellipsis")
        // A table that fits is not cut.
        let small = TextTable(headers: ["A", "B"], rows: [["x", "y"]]).render(width: 80)
        #expect(small == "A  B\nx  y")
    }

    @Test func argumentsAreParsedAndBadOnesRefused() throws {
        let hold = try RecoveryCtlCommand.parseAsRoot(["hold", "shop-web", "--until", "2h", "--json"])
        #expect(hold is RecoveryCtlCommand.Hold)
        #expect(throws: (any Error).self) {
            try RecoveryCtlCommand.parseAsRoot(["hold", "shop-web", "--until", "later"])
        }
        #expect(throws: (any Error).self, "a step needs --reason") {
            try RecoveryCtlCommand.parseAsRoot(["restart", "shop-web"])
        }
        #expect(
            try RecoveryCtlCommand.parseAsRoot(["restart", "shop-web", "--reason", "r", "--no-wait", "--timeout", "5m"])
                is RecoveryCtlCommand.Restart)
        #expect(throws: (any Error).self) {
            try RecoveryCtlCommand.parseAsRoot(["restart", "shop-web", "--reason", "r", "--timeout", "soon"])
        }
        #expect(try RecoveryCtlCommand.parseAsRoot(["brake", "release"]) is RecoveryCtlCommand.Brake.Release)
        #expect(throws: (any Error).self, "unknown setting") {
            try RecoveryCtlCommand.parseAsRoot(["targets", "set", "x", "probe_intervall=5"])
        }
        #expect(throws: (any Error).self, "not key=value") {
            try RecoveryCtlCommand.parseAsRoot(["targets", "set", "x", "15"])
        }

        let pairs = try parseAssignments(["probe_interval=15", "health_url=https://a.example/h?x=1"])
        #expect(pairs.map(\.key) == ["probe_interval", "health_url"])
        #expect(pairs[1].value == "https://a.example/h?x=1", "only the first = splits")
    }

    @Test func theDefinitionsFileReadsBackAsTheFleetTopology() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let parsed = try DefinitionsFile.load(path: root.appendingPathComponent("topology/definitions.json").path)
        let expected = FleetTopology().amqp
        #expect(parsed.exchanges == expected.exchanges)
        #expect(parsed.queues == expected.queues)
        #expect(parsed.bindings == expected.bindings)
        #expect(parsed.policies == expected.policies)
    }

    @Test func amqpURLListsTheNodesOfACluster() throws {
        let list = "amqp://fleet-probe:s3cret-pw@mq-1:5672/%2f,amqp://fleet-probe:s3cret-pw@mq-2:5672/%2f"
        let amqp = try WorkerEnvironment(kind: "probe", values: ["AMQP_URL": list]).amqp()
        #expect(amqp.nodes.map(\.address) == ["mq-1:5672", "mq-2:5672"])
        #expect(amqp.url.user == "fleet-probe" && amqp.heartbeat == AMQPConfiguration.defaultHeartbeat)
        // recoveryctl masks the password of every node, not a mangled piece of the list.
        #expect(!Secrets(["AMQP_URL": list]).scrub("login as fleet-probe:s3cret-pw").contains("s3cret-pw"))
        do {
            _ = try WorkerEnvironment(
                kind: "probe", values: ["AMQP_URL": "amqp://fleet-probe:s3cret-pw@mq-1,amqp://fleet-decision:x@mq-2"]
            ).amqp()
            Issue.record("nodes with different users must be refused")
        } catch {
            #expect("\(error)".contains("node 2 (mq-2:5672)") && !"\(error)".contains("s3cret-pw"))
        }
    }

    @Test func commandResultsSayWhatHappenedAndMapToExitStatuses() {
        var result = CommandResult(
            commandId: "cmd-1", command: "restart", target: "shop-web", operator: "alice", status: .accepted,
            detail: "alice ran restart for incident inc-shop-web-20261122T030000Z", incidentId: "inc-1",
            outcome: .init(idempotencyKey: "k", step: "restart", status: "succeeded"), suggestions: [])
        #expect(result.exitCode == 0)
        #expect(result.render(width: 80).contains("restart succeeded"))
        // The answer and the outcome are indented under the first line (wrap keeps leading spaces).
        #expect(
            result.render(width: 80).split(separator: "\n").dropFirst().allSatisfy { $0.hasPrefix("  ") },
            "\(result.render(width: 80))")
        #expect(result.render(width: 80).contains("\n  alice ran restart"))
        result.outcome?.status = "human_needed"
        #expect(result.exitCode == 4)
        result.status = .rejected
        result.outcome = nil
        #expect(result.exitCode == 3)
        #expect(result.render(width: 80).contains("REJECTED"))
        result.status = .timedOut
        #expect(result.exitCode == 5)
        #expect(result.render(width: 80).split(separator: "\n").allSatisfy { $0.count <= 80 })
    }

    /// Issue 14, gap 10: `recoveryctl abort <target> [--reason TEXT]`.
    @Test func abortTakesATargetAndAReasonAndReportsWhoStoppedTheStep() throws {
        let parsed = try RecoveryCtlCommand.parseAsRoot([
            "abort", "shop-web", "--reason", "wrong AMI", "--timeout", "5m",
        ])
        let abort = try #require(parsed as? RecoveryCtlCommand.Abort)
        #expect(abort.target == "shop-web" && abort.reason == "wrong AMI")
        #expect(
            try RecoveryCtlCommand.parseAsRoot(["abort", "shop-web"]) is RecoveryCtlCommand.Abort, "reason optional")
        #expect(throws: (any Error).self, "a target is needed") { try RecoveryCtlCommand.parseAsRoot(["abort"]) }
        #expect(throws: (any Error).self, "a blank target") { try RecoveryCtlCommand.parseAsRoot(["abort", " "]) }
        #expect(throws: (any Error).self, "one target") { try RecoveryCtlCommand.parseAsRoot(["abort", "a", "b"]) }

        // The message: the command name the decision worker routes to the target's ladder, with the reason.
        let request = CommandRequest(target: "shop-web", name: .abort, reason: "wrong AMI")
        #expect(request.runsStep, "recoveryctl waits for the outcome of the step it stops")
        let bytes = try EnvelopeCodec.encode(
            Envelope(
                type: .command, id: "cmd-1", target: "shop-web", occurredAt: Date(),
                body: CommandBody(name: request.name.rawValue, reason: request.reason)))
        guard case .command(let envelope) = try DecisionWorker.decodeCommandQueue(bytes) else {
            Issue.record("not a command")
            return
        }
        #expect(envelope.body.name == "abort" && envelope.body.reason == "wrong AMI")
        #expect(CommandName(rawValue: envelope.body.name)?.route == .machine(.abort))

        // Its result: stopped as asked is exit 0 and names who; a step that needed a person anyway is 4.
        var result = CommandResult(
            commandId: "cmd-1", command: "abort", target: "shop-web", operator: "alice", status: .accepted,
            detail: "alice aborted reprovision for incident inc-1", incidentId: "inc-1",
            outcome: .init(
                idempotencyKey: "shop-web/inc-1/reprovision", step: "reprovision", status: "human_needed",
                reason: "aborted by alice; stopped after launch", abortedBy: "alice"))
        #expect(result.exitCode == 0)
        #expect(result.render(width: 80).contains("reprovision stopped: aborted by alice"))
        result.outcome?.abortedBy = nil
        #expect(result.exitCode == 4)
    }
}
