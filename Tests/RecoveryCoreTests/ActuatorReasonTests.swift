import Foundation
import RecoveryCore
import Testing

/// The actuator's notices carry structured reasons too: each survives the wire and renders one sentence.
@Suite("Actuator notice reasons")
struct ActuatorReasonTests {
    static let web = InstanceRef(id: "i-0web", region: "eu-west-1")
    static let all: [ActuatorReason] = [
        .starting(
            worker: "actuator@a", what: "restart", instance: web, plan: "RebootInstances", recordKey: "k", dryRun: true),
        .stepResult(
            step: .reprovision, instance: web, status: .failed, summary: "no snapshot", next: .failover,
            notes: ["n1", "n2", "n3", "n4"], dryRun: false),
        .stepResult(
            step: .restart, instance: web, status: .failed, summary: "s", next: .reprovision, notes: [],
            dryRun: true, dryRunReason: "would reboot"),
        .repairResult(
            what: "repair ebs_repair", instance: web, status: .humanNeeded, summary: "no snapshot",
            askedFor: "disk errors", notes: [], dryRun: false),
        .stopStartAfterReboot(instance: web, lastCheck: "HTTP 503", recordKey: "k"),
        .rootSwap(instance: web, oldVolume: "vol-old", newVolume: "vol-new", snapshot: "snap-1", recordKey: "k"),
        .preflight(lines: ["DR pre-flight of 2 target(s): 1 would fail over badly.", "shop: no snapshot"]),
    ]

    @Test(arguments: all)
    func survivesTheWireInsideANotice(_ reason: ActuatorReason) throws {
        var notice = Notice(id: "n", kind: .actionFailed, at: Date(timeIntervalSince1970: 1_800_000_000))
        notice.reason = .actuator(reason)
        let data = try Timestamp.jsonEncoder().encode(notice)
        let back = try Timestamp.jsonDecoder().decode(Notice.self, from: data)
        #expect(back.reason == .actuator(reason))
        #expect(back.detail == reason.text && !reason.text.isEmpty)
        let json = String(decoding: data, as: UTF8.self)
        #expect(json.contains("\"code\":\"actuator_"))
    }

    @Test(arguments: [
        GateReason.unauthorizedSender(
            user: "mallory", type: "command", routingKey: "command.shop", allowed: ["operator"],
            deadLetterQueue: "recovery.decision.commands.dead", worker: "decision@a"),
        .unauthorizedSender(
            user: nil, type: "observation", routingKey: "observation.x", allowed: ["probe"], deadLetterQueue: "q.dead",
            worker: "w"),
        .notAnOperator(user: "bob", command: "restart", noOperators: false),
        .notAnOperator(user: "bob", command: "ack", noOperators: true),
    ])
    func gateReasonsSurviveTheWire(_ reason: GateReason) throws {
        var notice = Notice(id: "n", kind: .unauthorizedSender, at: Date(timeIntervalSince1970: 1_800_000_000))
        notice.reason = .refusedSender(reason)
        let back = try Timestamp.jsonDecoder().decode(Notice.self, from: try Timestamp.jsonEncoder().encode(notice))
        #expect(back.reason == .refusedSender(reason) && back.detail == reason.text)
    }

    @Test func sentences() {
        #expect(
            Self.all[0].text
                == "DRY RUN (nothing will be changed): actuator@a is starting the restart of i-0web in eu-west-1. Next: RebootInstances. Progress is recorded in Redis under step:k."
        )
        #expect(
            Self.all[1].text
                == "The reprovision of i-0web in eu-west-1 failed: no snapshot. Next: the decision worker escalates to failover. Notes: n2 | n3 | n4"
        )
        #expect(Self.all[2].text == "DRY RUN of the restart: would reboot")
        #expect(
            Self.all[3].text
                == "The repair ebs_repair of i-0web in eu-west-1 (asked for: disk errors) needs a person: no snapshot.")
        #expect(Self.all[6].text == "DR pre-flight of 2 target(s): 1 would fail over badly.\nshop: no snapshot")
    }
}
