import Foundation
import Testing

@testable import RecoveryCore

/// A target's document is written and read by hand (`TargetStateJSON`); it must be byte for byte what the
/// Codable encoder writes, read back to the same value, and give up (for the Codable decoder to decide)
/// on anything it was not written for.
@Suite("Target state written and read by hand")
struct TargetStateJSONTests {
    static let t = Date(timeIntervalSince1970: 1_796_600_000.25)

    /// The ladder's state wrapped in a document with the parts the random ladders do not make: the last
    /// probe, messages in the outbox, a repair plan, and settings with every optional part set.
    static func documents(of machine: EscalationMachine, variant: Int) throws -> [TargetMachine] {
        var plain = TargetMachine(ladder: machine)
        var full = machine
        var settings = machine.settings
        settings.bodyMatch = "ok \"quoted\" / ü"
        settings.quorum = variant % 2 == 0
        settings.failureWindow = 5
        settings.expectedStatus = [200...299, 301...302]
        settings.probeInterval = 12.5
        settings.gracePeriod = 1e-3
        settings.maintenance = [
            MaintenanceWindow(start: t, end: t.addingTimeInterval(3600), reason: "patching"),
            MaintenanceWindow(cron: "0 3 * * SUN", timeZone: "Europe/Berlin", duration: 1800),
        ]
        full.settings = settings
        full.identity.drRegion = "eu-west-1"
        full.identity.elasticIpAllocationId = "eipalloc-0123"
        full.health.window = [.init(failed: true, prober: "p1"), .init(failed: false, prober: "p\\2")]
        full.health.seenProbers = ["probe-10": t, "probe-2": t.addingTimeInterval(1), "B": t, "a-b": t]
        full.health.downSince = t
        full.selfRecoveries = [t, t.addingTimeInterval(60)]
        full.leftInstances = ["i-old"]
        full.scheduledWakeUp = t.addingTimeInterval(90)
        full.displaced = .init(instance: InstanceRef(id: "i-was", region: "us-east-1"), successes: 1, reported: false)
        var repair = PredictiveRepair()
        repair.quietUntil = ["disk_full": t]
        let notice = Notice(
            id: "n-1", kind: .outageDeclared, at: t, target: machine.target, detail: "line\nbreak")
        let outbox = try OutboxItem(.notice(notice), producer: "decision@host", now: t)
        plain.lastProbe = LastProbe(at: t, healthy: variant % 3 != 0, prober: "probe@h")
        let rich = TargetMachine(
            ladder: full, repair: repair,
            lastProbe: LastProbe(at: t, healthy: false, prober: "p", instanceId: "i-1", detail: "HTTP 503 \"down\"\t"),
            outbox: [outbox])
        return [plain, rich]
    }

    /// What differs between the hand-written codec and the Codable coders on one document, worded (empty
    /// when nothing does). It returns words rather than asserting, as it runs off the pool (`offThePool`).
    static func problems(_ target: TargetMachine, _ context: String) throws -> [String] {
        var problems: [String] = []
        let codable = try StateCodec.encodeValue(target)
        let fast = try StateCodec.encode(target)
        if fast != codable { problems.append("\(context): written differently\n\(text(fast))\n\(text(codable))") }
        guard let read = TargetStateJSON.decodeTarget(codable) else {
            return problems + ["\(context): not read fast\n\(text(codable))"]
        }
        let reference = try StateCodec.decodeTargetWithCodable(codable)
        if read.ladder != reference.ladder { problems.append("\(context): the ladder read differently") }
        if try StateCodec.encodeValue(read) != StateCodec.encodeValue(reference) {
            problems.append("\(context): read differently")
        }
        let ladder = try StateCodec.encodeValue(target.ladder)
        if try StateCodec.encode(target.ladder) != ladder {
            problems.append("\(context): the ladder alone written differently")
        }
        guard let machine = TargetStateJSON.decodeMachine(ladder) else {
            return problems + ["\(context): the ladder alone not read fast"]
        }
        if machine != (try StateCodec.decodeMachineWithCodable(ladder)) {
            problems.append("\(context): the ladder alone read differently")
        }
        return problems
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Every state of the random ladders (incidents in every phase, holds, approvals, moves, stops),
    /// plain and with every optional part set.
    /// Three seeds: the codec's work in a debug build is heavy, and the suite shares two cores.
    @Test(arguments: [UInt64(1), 13, 34])
    func sameAsCodableOnRandomLadders(seed: UInt64) async throws {
        let (problems, steps, incidents) = try await offThePool {
            var problems: [String] = []
            var step = 0
            var incidents = 0
            _ = try EscalationPropertyTests.run(seed: seed) { machine in
                step += 1
                if machine.incident != nil { incidents += 1 }
                for (n, document) in try Self.documents(of: machine, variant: step).enumerated() {
                    problems += try Self.problems(document, "seed \(seed) event \(step) document \(n)")
                }
            }
            return (problems, step, incidents)
        }
        #expect(problems.isEmpty, "\(problems.prefix(3).joined(separator: "\n"))")
        #expect(steps == 300 && incidents > 0, "the run saw \(incidents) states with an incident")
    }

    /// A healthy target at steady state (what nearly every event loads and stores).
    @Test func aTargetAtSteadyState() throws {
        var target = TargetMachine(
            ladder: EscalationMachine(
                identity: TargetIdentity(name: "shop-web", homeRegion: "us-east-1"),
                instance: InstanceRef(id: "i-0123456789abcdef0", region: "us-east-1")))
        for i in 0..<600 {
            _ = target.handle(
                .ladder(.probe(id: UUID().uuidString, ProbeResult(prober: "probe-\(i % 3)", healthy: true))),
                TargetMachine.Context(
                    now: Self.t.addingTimeInterval(Double(i) * 10), brakeEngaged: false, uniqueId: "u\(i)"))
        }
        #expect(target.ladder.recentEventIds.count == EscalationMachine.eventMemory)
        #expect(try Self.problems(target, "steady state") == [])
    }

    /// What the fast reader was not written for goes to the Codable decoder; it never reads a document
    /// the Codable decoder would refuse, nor reads one differently.
    @Test func givesUpOnWhatItWasNotWrittenFor() throws {
        let target = try Self.documents(
            of: EscalationMachine(
                identity: TargetIdentity(name: "shop-web", homeRegion: "us-east-1"),
                instance: InstanceRef(id: "i-1", region: "us-east-1")), variant: 1)[0]
        let good = Self.text(try StateCodec.encode(target))
        let refusedByBoth: [(String, String)] = [
            ("trailing bytes", good + "x"),
            ("a second document", good + "{}"),
            ("a plus sign", good.replacingOccurrences(of: #""incidentCount":0"#, with: #""incidentCount":+0"#)),
            ("a leading zero", good.replacingOccurrences(of: #""incidentCount":0"#, with: #""incidentCount":00"#)),
            ("a missing comma", good.replacingOccurrences(of: #","incidentCount""#, with: #" "incidentCount""#)),
            (
                "a null required field",
                good.replacingOccurrences(of: #""incidentCount":0"#, with: #""incidentCount":null"#)
            ),
            ("a fraction in an integer", good.replacingOccurrences(of: #""failures":0"#, with: #""failures":0.5"#)),
            (
                "a bad fingerprint",
                good.replacingOccurrences(of: #""recentEventIds":""#, with: #""recentEventIds":"xyz"#)
            ),
            ("a missing field", good.replacingOccurrences(of: #""incidentCount":0,"#, with: "")),
            ("a raw control character", good.replacingOccurrences(of: "probe@h", with: "probe\u{01}h")),
            ("an inverted status range", good.replacingOccurrences(of: "[200,399]", with: "[399,200]")),
            ("a newer schema", good.replacingOccurrences(of: #""schemaVersion":2"#, with: #""schemaVersion":3"#)),
        ]
        for (what, document) in refusedByBoth {
            #expect(document != good, "\(what): the mutation did not apply")
            #expect(TargetStateJSON.decodeTarget(Array(document.utf8)) == nil, "\(what): read fast")
            #expect(throws: StateDecodingError.self, "\(what)") { try StateCodec.decodeTarget(Array(document.utf8)) }
        }
        // Read by the Codable decoder alone, and so by StateCodec (Foundation's reader takes a trailing comma).
        let readByCodable: [(String, String)] = [
            ("a trailing comma", good.replacingOccurrences(of: #"[]}"#, with: #"[],}"#)),
            ("an unknown key", good.replacingOccurrences(of: #""outbox":[]"#, with: #""future":1,"outbox":[]"#)),
            ("a null optional", good.replacingOccurrences(of: #""outbox":[]"#, with: #""outbox":[],"repair":null"#)),
            (
                "a key twice",
                good.replacingOccurrences(of: #""incidentCount":0"#, with: #""incidentCount":0,"incidentCount":0"#)
            ),
        ]
        for (what, document) in readByCodable {
            #expect(document != good, "\(what): the mutation did not apply")
            #expect(TargetStateJSON.decodeTarget(Array(document.utf8)) == nil, "\(what): read fast")
            let read = try StateCodec.decodeTarget(Array(document.utf8))
            #expect(read.ladder == target.ladder, "\(what)")
        }
        // Space between the tokens is JSON too.
        let spaced = good.replacingOccurrences(of: ",\"", with: " ,\n \"").replacingOccurrences(of: "{", with: "{ ")
        let fast = try #require(TargetStateJSON.decodeTarget(Array(spaced.utf8)))
        #expect(try StateCodec.encode(fast) == Array(good.utf8))
        // Escapes in strings are read as JSON defines them.
        let escaped = good.replacingOccurrences(of: "probe@h", with: #"pr\u00f6be\/\ud83d\ude91\n"#)
        let read = try #require(TargetStateJSON.decodeTarget(Array(escaped.utf8)))
        #expect(read.lastProbe?.prober == "pr\u{f6}be/\u{1F691}\n")
        #expect(
            read.lastProbe?.prober == (try StateCodec.decodeTargetWithCodable(Array(escaped.utf8))).lastProbe?.prober)
    }

    /// A field added to these types must be added to the writer and the reader too: this counts them.
    @Test func knowsEveryField() throws {
        let machine = EscalationMachine(
            identity: TargetIdentity(name: "a", homeRegion: "r"), instance: InstanceRef(id: "i", region: "r"))
        let counts: [(String, Any, Int)] = [
            ("TargetMachine", TargetMachine(ladder: machine), 4),
            ("EscalationMachine", machine, 17),
            ("HealthStreaks", machine.health, 7),
            ("TargetSettings", TargetSettings(), 20),
            ("TargetIdentity", machine.identity, 4),
            ("InstanceRef", machine.currentInstance, 2),
            ("LastProbe", LastProbe(at: Self.t, healthy: true, prober: "p"), 5),
            ("WindowCheck", EscalationMachine.WindowCheck(failed: true, prober: "p"), 2),
        ]
        for (name, value, count) in counts {
            #expect(Mirror(reflecting: value).children.count == count, "\(name) has a new field: write and read it")
        }
    }
}
