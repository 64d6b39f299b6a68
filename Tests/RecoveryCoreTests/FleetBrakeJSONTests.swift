import Foundation
import Testing

@testable import RecoveryCore

/// `FleetBrakeJSON` against the Codable coders it replaces on the decision worker's path: the same bytes
/// written, the same brake read, and the Codable decoder left to read whatever it does not expect.
@Suite("Fleet brake written and read by hand")
struct FleetBrakeJSONTests {
    static let t0 = Date(timeIntervalSince1970: 1_796_000_000.25)
    /// Names that need JSON's escapes or the compact rows' (tab, newline, percent), and non-ASCII.
    static let awkward = [
        "a\tb", "line\nbreak", "100%", "%0A", "%E", "", "héllo wörld", "x\t%\n%25", "ends in cr\r", "\r", "e\u{301}",
        "quote \" and \\ backslash", "a\r\nb", "%", "%2", "50%E", "%%0A%09", "bell \u{7}", "ambulance 🚑", "site-1",
        "site-2",
    ]

    /// Every state of a random run of brake events (outages opening and closing, steps, fleet changes,
    /// operators engaging and releasing, time passing), with the pending notices and wake-ups the worker
    /// stores: written by hand and by Codable to the same bytes, and read back by both to the same brake.
    @Test(arguments: [UInt64(1), 2, 3])
    func sameAsCodableOnRandomRuns(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        var settings = FleetBrake.Settings()
        settings.maxOutageShare = [0.3, 0.5, 1.1].randomElement(using: &random)!
        settings.maxDestructiveActions = Int.random(in: 1...40, using: &random)
        var brake = FleetBrake(settings: settings, fleet: Self.awkward + (0..<30).map { "site-\($0)" })
        var now = Self.t0
        var states = 0
        for step in 0..<400 {
            now = now.addingTimeInterval(Double.random(in: 0...400, using: &random).rounded() / 4)
            let target = Bool.random(using: &random) ? Self.awkward.randomElement(using: &random)! : "site-\(step % 30)"
            let event: FleetBrake.Event
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<3: event = .outageOpened(target: target)
            case 3..<5: event = .outageClosed(target: target)
            case 5..<8: event = .destructiveActionRequested(target: target, idempotencyKey: "restart:\(target):\(step)")
            case 8:
                event = .fleetChanged(
                    targets: Self.awkward + (0..<Int.random(in: 20...30, using: &random)).map { "site-\($0)" })
            default:
                event =
                    Bool.random(using: &random)
                    ? .engage(id: "cmd-\(step)", operator: "alice\t\"a\"", reason: "by hand\n100% sure")
                    : .release(id: "cmd-\(step)", operator: "bob")
            }
            let actions = brake.handle(event, now: now)
            let notices = actions.compactMap { action -> Notice? in
                if case .notify(let notice) = action { return notice }
                return nil
            }
            let wake = actions.flatMap { action -> [String] in
                if case .wakeTargets(let targets) = action { return targets }
                return []
            }
            brake.pending = notices.isEmpty && wake.isEmpty ? nil : FleetBrake.Pending(notices: notices, wake: wake)
            try Self.check(brake)
            states += 1
        }
        #expect(states == 400)
    }

    /// The hand writer's bytes are Codable's; both readers read them to the brake written.
    static func check(_ brake: FleetBrake, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fast = try FleetBrakeJSON.encode(brake)
        let codable = try StateCodec.encodeValue(brake)
        #expect(
            fast == codable, "\(String(decoding: fast, as: UTF8.self))\n\(String(decoding: codable, as: UTF8.self))",
            sourceLocation: sourceLocation)
        let read = try #require(FleetBrakeJSON.decode(codable), sourceLocation: sourceLocation)
        #expect(read == brake, sourceLocation: sourceLocation)
        #expect(try StateCodec.decodeBrakeWithCodable(fast) == brake, sourceLocation: sourceLocation)
    }

    @Test func aMassOutageOfTwoThousandFiveHundredTargets() throws {
        var settings = FleetBrake.Settings()
        settings.maxOutageShare = 1.1
        settings.maxDestructiveActions = 1_000_000
        var brake = FleetBrake(settings: settings, fleet: (0..<10_000).map { "target-\($0)" })
        for t in 0..<2_500 {
            _ = brake.handle(.outageOpened(target: "target-\(t * 4)"), now: Self.t0)
            _ = brake.handle(
                .destructiveActionRequested(target: "target-\(t * 4)", idempotencyKey: "k\(t)"), now: Self.t0)
        }
        #expect(brake.targetsInOutage.count == 2_500 && brake.recentActions.count == 2_500)
        try Self.check(brake)
        #expect(try StateCodec.decodeBrake(try StateCodec.encode(brake)) == brake)
    }

    /// What the hand reader was not written for goes to the Codable decoder, which reads it or refuses it
    /// with its own words.
    @Test func givesUpOnWhatItWasNotWrittenFor() throws {
        var brake = FleetBrake(settings: .init(), fleet: ["a", "b", "c"])
        _ = brake.handle(.outageOpened(target: "a"), now: Self.t0)
        let good = String(decoding: try StateCodec.encode(brake), as: UTF8.self)
        #expect(FleetBrakeJSON.decode(Array(good.utf8)) == brake)
        // Read by Codable to the same brake: an unknown key, a null optional, space between the tokens.
        for other in [
            good.replacingOccurrences(of: #""engagements":"#, with: #""later":1,"engagements":"#),
            good.replacingOccurrences(of: #""engagements":"#, with: #""engagement":null,"engagements":"#),
            good.replacingOccurrences(of: ",", with: " ,\n "),
        ] {
            let fast = FleetBrakeJSON.decode(Array(other.utf8))
            #expect(fast == nil || fast == brake)
            #expect(try StateCodec.decodeBrake(Array(other.utf8)) == brake)
        }
        // A key twice: the hand reader refuses it rather than pick one.
        let twice = good.replacingOccurrences(of: #""fleetSize":3"#, with: #""fleetSize":3,"fleetSize":4"#)
        #expect(FleetBrakeJSON.decode(Array(twice.utf8)) == nil)
        // A newer schema: "upgrade the worker", from the Codable path.
        let newer = good.replacingOccurrences(of: #""schemaVersion":2"#, with: #""schemaVersion":3"#)
        #expect(FleetBrakeJSON.decode(Array(newer.utf8)) == nil)
        #expect(throws: StateDecodingError.self) { try StateCodec.decodeBrake(Array(newer.utf8)) }
        // A recent step that is not "time, key, target", and a required key missing: refused by both.
        for broken in [
            good.replacingOccurrences(of: #""recentActions":"""#, with: #""recentActions":"not a time\tk\tt""#),
            good.replacingOccurrences(of: #""fleetSize":3,"#, with: ""),
        ] {
            #expect(broken != good)
            #expect(FleetBrakeJSON.decode(Array(broken.utf8)) == nil)
            #expect(throws: StateDecodingError.self) { try StateCodec.decodeBrake(Array(broken.utf8)) }
        }
    }

    /// A new field of the brake must be written and read by `FleetBrakeJSON` too.
    @Test func everyFieldIsWrittenAndRead() {
        #expect(Mirror(reflecting: FleetBrake()).children.count == 11, "FleetBrake has a new field: write and read it")
    }
}
