import Foundation
import RecoveryCore
import Testing

@Suite("Escalation state and bodies as JSON")
struct EscalationCodingTests {
    /// A target mid-incident: restart failed, reprovision succeeded and is being verified, held.
    static func midIncident() throws -> Ladder {
        var l = Ladder()
        l.declare()
        let restart = try #require(l.tick(at: 300).requests.first)
        l.now = t0 + 320
        l.outcome(restart, .failed, reason: "x")
        let reprovision = try #require(l.log.requests.last)
        l.now = t0 + 700
        l.outcome(reprovision, .succeeded, newInstance: InstanceRef(id: "i-new", region: "eu-west-1"))
        l.command(.hold, by: "bob", until: t0 + 3000)
        l.fail()
        return l
    }

    @Test func aRestartedWorkerResumesIdentically() throws {
        var original = try Self.midIncident()
        let bytes = try StateCodec.encode(original.machine)
        var restarted = original
        restarted.machine = try StateCodec.decodeMachine(bytes)
        #expect(restarted.machine == original.machine)
        #expect(try StateCodec.encode(restarted.machine) == bytes)

        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"schemaVersion\":\(EscalationMachine.currentSchemaVersion)"))
        #expect(text.contains("\"2026-11-18T11:18:20.000Z\""))  // the declared-at + grace request time

        // The same events give the same actions: reprovision deadline, then fail-over after the hold.
        for seconds in [1000.0, 2100, 2999, 3000, 3500, 5000] {
            #expect(original.tick(at: seconds) == restarted.tick(at: seconds))
        }
        #expect(original.fail() == restarted.fail())
        #expect(original.ok(2) == restarted.ok(2))
        #expect(original.machine == restarted.machine)
        #expect(original.log.requests.map(\.step) == [.restart, .reprovision, .failover])
    }

    @Test func newerStoredStateIsRefusedNotOverwritten() throws {
        let machine = try Self.midIncident().machine
        var text = String(decoding: try StateCodec.encode(machine), as: UTF8.self)
        let current = EscalationMachine.currentSchemaVersion
        text = text.replacingOccurrences(of: "\"schemaVersion\":\(current)", with: "\"schemaVersion\":\(current + 1)")
        #expect {
            _ = try StateCodec.decodeMachine(Array(text.utf8))
        } throws: { error in
            "\(error)".contains(
                "schemaVersion \(current + 1), newer than this worker reads (\(current)); upgrade the worker")
        }
        #expect(throws: StateDecodingError.self) {
            _ = try StateCodec.decodeMachine(Array("{\"schemaVersion\":1}".utf8))
        }
        #expect(throws: StateDecodingError.self) { _ = try StateCodec.decodeMachine(Array("not json".utf8)) }
    }

    /// Schema 2 keeps fingerprints of the remembered event ids in one string: any id is still recognised
    /// after the round trip through the store, and others are not.
    @Test func theEventMemoryKeepsAnyIdThroughTheStore() throws {
        let odd = [
            "a b", "%", "", "tab\there", "new\nline", "ünï code", "  ", "\"quoted\"",
            String(repeating: "x", count: 500),
        ]
        var l = Ladder()
        for id in odd { _ = l.send(.probe(id: id, ProbeResult(prober: "p", healthy: true))) }
        let bytes = try StateCodec.encode(l.machine)
        var machine = try StateCodec.decodeMachine(bytes)
        #expect(machine == l.machine && machine.recentEventIds.count == odd.count)
        for id in odd {
            let new = machine.remember(eventId: id)
            #expect(!new, "\(id) is remembered")
        }
        for id in ["a", "b", " ", "x", "ab"] { #expect(!machine.recentEventIds.contains(id), "\(id) is not") }
        let new = machine.remember(eventId: "a")
        #expect(new)
        // A damaged memory is refused rather than read as something else.
        let text = String(decoding: bytes, as: UTF8.self)
        let fingerprints = try #require(text.firstRange(of: #/"recentEventIds":"[0-9a-f]+"/#))
        for damaged in [#""recentEventIds":"xyz""#, #""recentEventIds":"0123456789abcdef0""#] {
            let broken = text.replacingCharacters(in: fingerprints, with: damaged)
            #expect(throws: StateDecodingError.self) { try StateCodec.decodeMachine(Array(broken.utf8)) }
        }
    }

    /// A state stored by a schema-1 worker (the ids as a JSON array) is read, and written back as schema 2.
    @Test func aSchemaOneStateIsReadAndWrittenAsTheCurrentOne() throws {
        var l = Ladder()
        l.ok(3)
        let bytes = try StateCodec.encode(l.machine)
        var object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        object["schemaVersion"] = 1
        object["recentEventIds"] = ["obs-1", "obs-2", "obs-3"]
        let schemaOne = try JSONSerialization.data(withJSONObject: object)
        var read = try StateCodec.decodeMachine(Array(schemaOne))
        #expect(read == l.machine)
        #expect(try StateCodec.encode(read) == bytes)
        let again = read.remember(eventId: "obs-2")
        #expect(!again, "an id remembered by the older worker is still remembered")
    }

    @Test func theBrakeRoundTrips() throws {
        var brake = FleetBrake(fleet: ["a", "b", "c"])
        _ = brake.handle(.outageOpened(target: "a"), now: t0)
        _ = brake.handle(.outageOpened(target: "b"), now: t0)
        _ = brake.handle(.destructiveActionRequested(target: "a", idempotencyKey: "k"), now: t0)
        let back = try StateCodec.decodeBrake(try StateCodec.encode(brake))
        #expect(back == brake && back.isEngaged)
    }

    @Test func actionRequestsTravelInAnEnvelopeWithSnakeCaseFields() throws {
        var l = Ladder()
        l.declare()
        let request = try #require(l.tick(at: 300).requests.first)
        let envelope = Envelope(
            type: .actionRequest, correlationId: request.incidentId, target: request.target,
            instanceId: request.instanceId, occurredAt: t0, body: request)
        let bytes = try EnvelopeCodec.encode(envelope)
        let text = String(decoding: bytes, as: UTF8.self)
        for key in ["idempotency_key", "incident_id", "destination_region", "elastic_ip_allocation_id", "requested_at"]
        {
            #expect(text.contains("\"\(key)\""), "\(key)")
        }
        let back = try EnvelopeCodec.decode(bytes, as: ActionRequest.self, expecting: .actionRequest)
        #expect(back.body == request)
    }

    @Test func outcomesCommandsAndNoticesDecodeFromTheWire() throws {
        let outcome =
            #"{"idempotency_key":"shop-web/inc-1/reprovision","incident_id":"inc-1","step":"reprovision","status":"human_needed","reason":"no snapshot"}"#
        let decodedOutcome = try JSONDecoder().decode(ActionOutcome.self, from: Data(outcome.utf8))
        #expect(
            decodedOutcome.status == .humanNeeded && decodedOutcome.step == .reprovision
                && decodedOutcome.instanceId == nil)

        let command = #"{"name":"hold","operator":"alice","until":"2026-11-22T04:00:00Z"}"#
        let envelope =
            #"{"type":"command","schema_version":1,"id":"c1","target":"shop-web","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":"#
            + command + "}"
        let decoded = try EnvelopeCodec.decode(Array(envelope.utf8), as: OperatorCommand.self, expecting: .command)
        #expect(decoded.body.name == .hold && decoded.body.operator == "alice")
        #expect(decoded.body.until == Timestamp.parse("2026-11-22T04:00:00Z"))

        var l = Ladder()
        let notice = try #require(l.declare().notices.first)
        let noticeBytes = try EnvelopeCodec.encode(Envelope(type: .notification, occurredAt: t0, body: notice))
        let noticeText = String(decoding: noticeBytes, as: UTF8.self)
        #expect(noticeText.contains("\"kind\":\"outage_declared\"") && noticeText.contains("\"next_step\":\"restart\""))
        #expect(
            noticeText.contains("\"reason\":{\"code\":\"outage_declared\",")
                && noticeText.contains("\"detail\":\"3 consecutive failed checks"))
        #expect(try EnvelopeCodec.decode(noticeBytes, as: Notice.self, expecting: .notification).body == notice)
    }
}

@Suite("Target settings and recoveryctl lines")
struct TargetSettingsTests {
    @Test func defaults() {
        let s = TargetSettings()
        #expect(s.probeInterval == 30 && s.failureThreshold == 3 && s.recoveryThreshold == 2)
        #expect(s.gracePeriod == 300 && !s.requiresApproval && s.approvalTimeout == 1800)
        #expect(s.verificationWindow(for: .restart) == 600)
        #expect(s.verificationWindow(for: .reprovision) == 1200)
        #expect(s.verificationWindow(for: .failover) == 1800)
        #expect(s.outageCountWindow == 86_400 && s.quorum == nil && s.quorumSize == 2 && !s.quarantined)
        #expect(s.problems.isEmpty)
    }

    @Test func partialConfigurationKeepsTheDefaults() throws {
        let json =
            #"{"grace_period": 600, "requires_approval": true, "expected_status": [[200, 204]], "body_match": "OK"}"#
        let s = try JSONDecoder().decode(TargetSettings.self, from: Data(json.utf8))
        #expect(s.gracePeriod == 600 && s.requiresApproval && s.failureThreshold == 3 && s.restartVerification == 600)
        #expect(s.isHealthy(statusCode: 204, body: "all OK"))
        #expect(!s.isHealthy(statusCode: 204, body: "maintenance"))
        #expect(!s.isHealthy(statusCode: 301, body: "OK"))
        #expect(!s.isHealthy(statusCode: nil, body: nil))
        #expect(TargetSettings().isHealthy(statusCode: 302, body: nil))
        #expect(try JSONDecoder().decode(TargetSettings.self, from: Data("{}".utf8)) == TargetSettings())
    }

    @Test func unusableSettingsNameEveryProblem() {
        var s = TargetSettings()
        s.failureThreshold = 0
        s.gracePeriod = -1
        s.quorum = true
        s.quorumSize = 3
        s.expectedStatus = [0...700]
        var text = ""
        do {
            try s.validate(target: "shop-web")
            Issue.record("accepted")
        } catch {
            text = error.description
        }
        #expect(text.hasPrefix("settings for target 'shop-web' are not usable: "))
        #expect(text.contains("failure_threshold must be 1 or more, not 0"))
        #expect(text.contains("grace_period must be 0 or more seconds"))
        #expect(text.contains("quorum_size (3) cannot exceed failure_threshold (0)"))
        #expect(text.contains("outside 100...599"))
    }

    @Test func identityIsTheNameTagOrTheInstanceId() {
        #expect(TargetIdentity(nameTag: "shop-web", instanceId: "i-1", homeRegion: "r").name == "shop-web")
        #expect(TargetIdentity(nameTag: "  ", instanceId: "i-1", homeRegion: "r").name == "i-1")
        #expect(TargetIdentity(nameTag: nil, instanceId: "i-1", homeRegion: "r").name == "i-1")
    }

    @Test func targetNamesAreShellQuotedWhenNeeded() {
        #expect(RecoveryCtl.ack("shop-web") == "recoveryctl ack shop-web")
        #expect(RecoveryCtl.ack("shop web") == "recoveryctl ack 'shop web'")
        #expect(RecoveryCtl.approve("it's; rm -rf") == #"recoveryctl approve 'it'\''s; rm -rf'"#)
        #expect(RecoveryCtl.hold("a", until: t0) == "recoveryctl hold a --until 2026-11-18T11:06:40Z")
        #expect(RecoveryCtl.run(.notifyOnly, "a") == nil)
    }

    @Test func theLadder() {
        #expect(
            (1...6).map(RecoveryStep.forOutage(number:)) == [
                .restart, .reprovision, .failover, .notifyOnly, .notifyOnly, .notifyOnly,
            ])
        #expect(RecoveryStep.restart.next == .reprovision && RecoveryStep.failover.next == .notifyOnly)
        #expect(
            RecoveryStep.ladder.count == RecoveryStep.allCases.count
                && Set(RecoveryStep.ladder) == Set(RecoveryStep.allCases), "every step is on the ladder once")
        #expect(RecoveryStep.allCases.sorted() == RecoveryStep.ladder, "the order is the ladder's")
        #expect(RecoveryStep.notifyOnly.next == .notifyOnly && RecoveryStep.forOutage(number: 0) == .restart)
        #expect(RecoveryStep.allCases.filter(\.isDestructive) == [.restart, .reprovision, .failover])
    }
}
