import Foundation
import RecoveryCore
import Testing

/// The parent of the ladder and the repair plan: one event in, one list of actions out, no I/O.
@Suite("Target machine: routing, messages, repair commands, stored form")
struct TargetMachineTests {
    static let home = InstanceRef(id: "i-original", region: "eu-west-1")

    static func machine(_ settings: TargetSettings = TargetSettings()) -> TargetMachine {
        TargetMachine(
            ladder: EscalationMachine(
                identity: TargetIdentity(name: "shop-web", homeRegion: "eu-west-1", drRegion: "eu-central-1"),
                instance: home, settings: settings))
    }

    static func context(_ now: Date = t0, brake: Bool = false, settings: TargetSettings? = nil) -> TargetMachine.Context
    {
        TargetMachine.Context(
            now: now, brakeEngaged: brake, settings: settings, uniqueId: "u-\(now.timeIntervalSince1970)")
    }

    static func fail(_ m: inout TargetMachine, _ n: Int, at now: Date = t0) -> [TargetMachine.Action] {
        (0..<n).flatMap { i in
            m.handle(
                .ladder(
                    .probe(
                        id: "obs-\(now.timeIntervalSince1970)-\(i)",
                        ProbeResult(
                            prober: "p1", healthy: false, statusCode: 503, detail: "HTTP 503"))), context(now))
        }
    }

    static func messages(_ actions: [TargetMachine.Action]) -> [FleetMessage] {
        actions.compactMap { if case .publish(let m) = $0 { m } else { nil } }
    }

    @Test func anOutageOpensWithItsNoticeItsHistoryAndExactlyOneWakeUp() throws {
        var m = Self.machine()
        let actions = Self.fail(&m, 3)
        let messages = Self.messages(actions)
        // History first, then the ladder's notice: the order they are published in.
        guard case .stateChange(let change, let id, let target)? = messages.first else {
            Issue.record("expected the state change first, got \(messages)")
            return
        }
        #expect(change.kind == "incident_opened" && change.from == "monitoring" && change.to == "pending(restart)")
        #expect(target == "shop-web" && id.hasPrefix("shop-web:state:"))
        guard case .notice(let notice)? = messages.last else {
            Issue.record("no notice")
            return
        }
        #expect(notice.kind == .outageDeclared && notice.target == "shop-web")
        #expect(actions.contains(.reportToFleet(.outageOpened(target: "shop-web"))))
        // Every handle ends with the one wake-up: none before the outage, the grace period's end after.
        let schedules = actions.compactMap { if case .schedule(let at) = $0 { Optional(at) } else { nil } }
        #expect(schedules == [nil, nil, t0 + 300])
        #expect(m.lastProbe?.healthy == false && m.lastProbe?.at == t0)
    }

    @Test func discoverySettingsReplaceTheStoredOnesButNotTheName() {
        var m = Self.machine()
        var settings = TargetSettings()
        settings.failureThreshold = 1
        var identity = TargetIdentity(name: "renamed", homeRegion: "eu-west-1", drRegion: "us-west-2")
        identity.elasticIpAllocationId = "eipalloc-9"
        var c = Self.context(settings: settings)
        c.identity = identity
        let actions = m.handle(.ladder(.probe(id: "o1", ProbeResult(prober: "p1", healthy: false))), c)
        #expect(m.ladder.incident != nil, "one failure opens an outage with the discovered threshold")
        #expect(m.ladder.identity.name == "shop-web" && m.ladder.identity.drRegion == "us-west-2")
        #expect(actions.contains(.reportToFleet(.outageOpened(target: "shop-web"))))
    }

    @Test func aQuarantineCommandAsksTheActuatorAndAnswersTheOperator() throws {
        var m = Self.machine()
        let actions = m.handle(
            .repairCommand(
                .init(
                    id: "c1", action: .quarantine(detachElasticIP: true), name: "quarantine",
                    operator: "alice", reason: "forensics")), Self.context())
        let messages = Self.messages(actions)
        guard case .actionRequest(let request)? = messages.first else {
            Issue.record("no request in \(messages)")
            return
        }
        #expect(request.repair?.action == .quarantine(detachElasticIP: true))
        #expect(request.instanceId == "i-original" && request.requestedBy == "alice")
        #expect(request.deadline == t0 + TargetMachine.repairCommandDeadline)
        guard case .notice(let answer)? = messages.last else {
            Issue.record("no answer")
            return
        }
        #expect(
            answer.kind == .commandAccepted && answer.command?.operator == "alice" && answer.id == "c1:command_accepted"
        )
        #expect(
            answer.reason == .repairRequested(command: "quarantine", target: "shop-web", key: request.idempotencyKey))
        #expect(!actions.contains { if case .refuse = $0 { true } else { false } })
        // The same command delivered again is answered already: nothing more.
        let again = m.handle(
            .repairCommand(
                .init(
                    id: "c1", action: .quarantine(detachElasticIP: true), name: "quarantine",
                    operator: "alice")), Self.context(t0 + 5))
        #expect(Self.messages(again).isEmpty)
    }

    @Test(
        "repair_volume is refused while the brake is engaged, the target quarantined, or a live ladder may act",
        arguments: ["brake", "quarantined", "live incident"])
    func volumeRepairRefused(_ why: String) throws {
        var settings = TargetSettings()
        if why == "quarantined" { settings.quarantined = true }
        var m = Self.machine(settings)
        if why == "live incident" { _ = Self.fail(&m, 3) }
        let actions = m.handle(
            .repairCommand(.init(id: "c2", action: .ebsRepair, name: "repair_volume", operator: "bob")),
            Self.context(t0 + 1, brake: why == "brake"))
        let refusals = actions.compactMap { if case .refuse(let r) = $0 { r } else { nil } }
        try #require(refusals.count == 1)
        let expected: NoticeReason =
            switch why {
            case "brake": .volumeRepairBraked
            case "quarantined": .volumeRepairQuarantined(target: "shop-web")
            default: .volumeRepairLadderMayAct(target: "shop-web", incident: try #require(m.ladder.incident?.id))
            }
        #expect(refusals[0] == expected.text)
        #expect(!Self.messages(actions).contains { if case .actionRequest = $0 { true } else { false } })
        guard case .notice(let n)? = Self.messages(actions).last else {
            Issue.record("no rejection notice")
            return
        }
        #expect(n.kind == .commandRejected && n.reason == expected && n.detail == refusals[0])
    }

    @Test func repairVolumeRunsOnceTheIncidentIsAcknowledged() throws {
        var m = Self.machine()
        _ = Self.fail(&m, 3)
        _ = m.handle(.ladder(.command(id: "ack-1", OperatorCommand(.ack, by: "bob"))), Self.context(t0 + 1))
        #expect(!m.ladder.mayAct(at: t0 + 2))
        let actions = m.handle(
            .repairCommand(.init(id: "c3", action: .ebsRepair, name: "repair_volume", operator: "bob")),
            Self.context(t0 + 2))
        guard case .actionRequest(let r)? = Self.messages(actions).first else {
            Issue.record("no request")
            return
        }
        #expect(r.repair?.action == .ebsRepair && r.incidentId == m.ladder.incident?.id)
    }

    @Test func aHighConfidencePredictionPlansARepairAndItsCommandsGoToThePlan() throws {
        var m = Self.machine()
        let trouble = PredictiveRepair.Trouble(
            id: "pred-1", kind: "disk_full", confidence: 0.95, repair: "ssm:disk-cleanup",
            detail: "disk 97%", window: t0...(t0 + 3600))
        let planned = m.handle(.trouble(trouble), Self.context())
        #expect(m.repair?.plan?.document == "disk-cleanup")
        #expect(planned.last == .schedule(at: m.repair?.nextDeadline))
        // ack while no outage is open cancels the plan, and is remembered like any ladder event.
        _ = m.handle(.ladder(.command(id: "ack-2", OperatorCommand(.ack, by: "carol"))), Self.context(t0 + 10))
        #expect(m.repair?.plan == nil)
        #expect(m.ladder.incident == nil)
        let remembered = m.ladder.remember(eventId: "ack-2")
        #expect(!remembered, "the ladder remembers the id the plan took")
    }

    @Test func theStoredFormRoundTripsAndANewerSchemaIsRefused() throws {
        var m = Self.machine()
        _ = Self.fail(&m, 3)
        m.outbox = [
            OutboxItem(
                type: "notification", routingKey: "notification.shop-web", messageId: "n1", correlationId: nil,
                body: "{}")
        ]
        let bytes = try StateCodec.encode(m)
        let back = try StateCodec.decodeTarget(bytes)
        #expect(back.ladder == m.ladder && back.outbox == m.outbox && back.lastProbe == m.lastProbe)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(
            text.contains("\"machine\"") && text.contains("\"last_probe\""), "the keys of documents already in Redis")
        let newer = text.replacingOccurrences(
            of: "\"schemaVersion\":\(EscalationMachine.currentSchemaVersion)",
            with: "\"schemaVersion\":\(EscalationMachine.currentSchemaVersion + 1)")
        #expect(newer != text)
        #expect(throws: StateDecodingError.self) { try StateCodec.decodeTarget(Array(newer.utf8)) }
    }

    @Test func routingKeysNameTheTargetWithoutTopicWildcards() {
        #expect(MessageType.notification.routingKey(target: "shop.web#1*") == "notification.shop_web_1_")
        #expect(MessageType.event.routingKey(target: nil) == "event.fleet")
    }
}
