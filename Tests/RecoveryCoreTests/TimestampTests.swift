import Foundation
import Testing

@testable import RecoveryCore

/// `Timestamp` writes and reads its one form by arithmetic (`CivilTime`); Foundation's ISO 8601 styles are
/// the reference.
@Suite("Timestamps by arithmetic")
struct TimestampTests {
    /// Every day boundary and leap rule from 1970 to 9999, and random instants with milliseconds.
    static var dates: [Date] {
        var rng = SeededGenerator(seed: 2026)
        var all: [Date] = [
            Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 951_782_400),  // 2000-02-29
            Date(timeIntervalSince1970: 4_107_542_400),  // 2100-03-01 (2100 is no leap year)
            Date(timeIntervalSince1970: 253_402_300_799.999),  // the last millisecond of 9999
            Date(timeIntervalSince1970: 1_796_600_000.9995),  // rounds up into the next second
        ]
        for _ in 0..<20_000 {
            all.append(Date(timeIntervalSince1970: Double.random(in: 0..<253_402_300_800, using: &rng)))
        }
        for _ in 0..<5_000 {
            all.append(Date(timeIntervalSince1970: Double.random(in: 1.7e9..<1.9e9, using: &rng)))
        }
        return all
    }

    @Test func writesWhatFoundationWrites() {
        // One assertion over all of them: 25,000 `#expect`s cost seconds of the shared pool in a debug build.
        let differ = Self.dates.filter { CivilTime.format($0) != Timestamp.formatWithFoundation($0) }
        #expect(differ.isEmpty, "\(differ.prefix(5).map(\.timeIntervalSince1970))")
        // Outside the years it writes, Foundation does.
        #expect(CivilTime.format(Date(timeIntervalSince1970: -1)) == nil)
        #expect(CivilTime.format(Date(timeIntervalSince1970: 253_402_300_800)) == nil)
        #expect(Timestamp.format(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59.000Z")
    }

    @Test func readsWhatFoundationReads() throws {
        // The very same Date (the sum is made in the order Foundation makes it), and it writes back the same.
        let differ = Self.dates.map(Timestamp.format).filter { text in
            guard let fast = CivilTime.parse(text), let reference = Timestamp.parseWithFoundation(text) else {
                return true
            }
            return fast != reference || Timestamp.format(fast) != text
        }
        #expect(differ.isEmpty, "\(differ.prefix(5))")
    }

    @Test func leavesOtherFormsToFoundation() {
        let others = [
            "2026-11-22T03:00:00Z", "2026-11-22T03:00:00.5Z", "2026-11-22T03:00:00.000+01:00",
            "2026-11-22T03:00:00.000+0100", "2026-11-22 03:00:00.000Z",
        ]
        for text in others {
            #expect(CivilTime.parse(text) == nil, "\(text)")
            #expect(Timestamp.parse(text) == Timestamp.parseWithFoundation(text), "\(text)")
        }
        #expect(Timestamp.parse("2026-11-22T04:00:00.000+01:00") == Timestamp.parse("2026-11-22T03:00:00.000Z"))
        let impossible = [
            "2026-02-29T00:00:00.000Z", "2100-02-29T00:00:00.000Z", "2026-13-01T00:00:00.000Z",
            "2026-00-10T00:00:00.000Z", "2026-04-31T00:00:00.000Z", "2026-01-01T24:00:00.000Z",
            "2026-01-01T23:60:00.000Z", "2026-01-01T23:00:60.000Z", "2026-01-01T23:00:0a.000Z",
            "1969-12-31T23:59:59.000Z",
        ]
        for text in impossible {
            #expect(CivilTime.parse(text) == nil, "\(text)")
        }
        #expect(CivilTime.parse("2024-02-29T12:00:00.000Z") != nil)
        #expect(CivilTime.parse("2000-02-29T12:00:00.000Z") != nil)
    }
}
