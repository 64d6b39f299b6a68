import Foundation
import RecoveryCore
import Testing

/// Issue 14, gap 8: values that validate must not crash later, and names must fit what carries them.
@Suite("Bounded settings and names")
struct BoundedValuesTests {
    @Test(
        "a setting beyond its bound is refused with its name",
        arguments: [
            ("probe_timeout", #"{"probe_timeout": 1e16}"#),
            ("probe_interval", #"{"probe_interval": 1e300}"#),
            ("grace_period", #"{"grace_period": 1e12}"#),
            ("restart_verification", #"{"restart_verification": 9e18}"#),
            ("outage_count_window", #"{"outage_count_window": 1e10}"#),
            ("failure_threshold", #"{"failure_threshold": 1000000000}"#),
            ("quorum_size", #"{"quorum_size": 0}"#),
        ])
    func outOfBounds(_ key: String, _ json: String) throws {
        // Old behaviour: probe_timeout=1e16 passed and trapped in the probe's Int64(… * 1000).
        let settings = try JSONDecoder().decode(TargetSettings.self, from: Data(json.utf8))
        #expect(settings.problems.contains { $0.hasPrefix(key) }, "\(settings.problems)")
        #expect(throws: TargetSettingsError.self) { try settings.validate(target: "shop-web") }
    }

    @Test func theLargestAcceptedValuesStillConvertToMilliseconds() throws {
        let json =
            #"{"probe_interval": 86400, "probe_timeout": 600, "grace_period": 604800, "approval_timeout": 2592000, "outage_count_window": 7776000}"#
        let settings = try JSONDecoder().decode(TargetSettings.self, from: Data(json.utf8))
        #expect(settings.problems.isEmpty)
        let farthest = Date().addingTimeInterval(
            settings.outageCountWindow + settings.gracePeriod + settings.approvalTimeout)
        #expect(Int64(exactly: (farthest.timeIntervalSince1970 * 1000).rounded()) != nil)
        #expect(Int64(exactly: (settings.probeTimeout * 1000).rounded()) != nil)
    }

    @Test func aTargetNameFitsEveryKeyItAppearsIn() throws {
        let longest = String(repeating: "n", count: TargetIdentity.maxNameBytes)
        #expect(TargetIdentity.nameProblem(longest) == nil)
        #expect(TargetIdentity.nameProblem(longest + "x")?.contains("65 bytes long") == true)
        #expect(TargetIdentity.nameProblem("shop\u{7}web")?.contains("control character") == true)
        #expect(TargetIdentity.nameProblem("shop{web}")?.contains("'{' or '}'") == true)
        // The step key names the target twice (itself and in the incident id, numbered on a repeat).
        let incident = "inc-\(longest)-20261206T075500Z-99"
        for step in RecoveryStep.allCases {
            let key = ActionRequest.key(target: longest, incidentId: incident, step: step)
            #expect(key.utf8.count <= 255, "\(key.utf8.count) bytes for \(step)")
        }
        // Multi-byte characters count in bytes.
        #expect(TargetIdentity.nameProblem(String(repeating: "é", count: 33)) != nil)
    }
}

@Suite("Bounded envelope ids")
struct BoundedEnvelopeIdTests {
    /// An id that ends up inside other message ids (`<id>:command_accepted`, `command:<id>`) must leave
    /// them under AMQP's 255 bytes; a brake command with a 250-byte id once wedged the brake's notices.
    @Test func anEnvelopeIdOverTheLimitIsRefusedAtDecode() throws {
        func envelope(id: String) -> [UInt8] {
            Array(
                #"{"type":"command","schema_version":1,"id":"\#(id)","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"n":1}}"#
                    .utf8)
        }
        struct Body: Codable, Sendable { var n: Int }
        let longest = String(repeating: "i", count: EnvelopeCodec.maxIdBytes)
        #expect(try EnvelopeCodec.decode(envelope(id: longest), as: Body.self, expecting: .command).id == longest)
        #expect("command:\(longest):command_accepted".utf8.count <= 255)
        do {
            _ = try EnvelopeCodec.decode(envelope(id: longest + "i"), as: Body.self, expecting: .command)
            Issue.record("a 201-byte id was accepted")
        } catch {
            #expect(error.detail.contains("id is 201 bytes"))
        }
    }
}
