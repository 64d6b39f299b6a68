import Foundation

/// `Timestamp`'s one form, `2026-12-07T05:30:00.250Z`, written and read with integer arithmetic on the
/// proleptic Gregorian calendar (the days-from-civil algorithms of H. Hinnant's "chrono-compatible
/// low-level date algorithms") instead of Foundation's ISO 8601 styles: every message and stored document
/// carries several times, and the styles cost microseconds each (docs/benchmarks.md). Times outside
/// 1970–9999, and text in any other form, are left to Foundation (nil here); `TimestampTests` holds the two
/// to the same results.
enum CivilTime {
    private static let limit: Int64 = 253_402_300_800_000  // 10000-01-01T00:00:00Z in milliseconds

    static func format(_ date: Date) -> String? {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        guard ms >= 0, ms < Double(limit) else { return nil }
        let total = Int64(ms)
        let seconds = total / 1000
        let (year, month, day) = civil(days: seconds / 86_400)
        let time = Int(seconds % 86_400)
        return String(unsafeUninitializedCapacity: 24) { out in
            func put(_ value: Int, _ at: Int, _ width: Int) {
                var value = value
                for k in stride(from: at + width - 1, through: at, by: -1) {
                    out[k] = UInt8(0x30 + value % 10)
                    value /= 10
                }
            }
            put(year, 0, 4)
            out[4] = UInt8(ascii: "-")
            put(month, 5, 2)
            out[7] = UInt8(ascii: "-")
            put(day, 8, 2)
            out[10] = UInt8(ascii: "T")
            put(time / 3600, 11, 2)
            out[13] = UInt8(ascii: ":")
            put(time / 60 % 60, 14, 2)
            out[16] = UInt8(ascii: ":")
            put(time % 60, 17, 2)
            out[19] = UInt8(ascii: ".")
            put(Int(total % 1000), 20, 3)
            out[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    /// Exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` with a real date and time, else nil.
    static func parse(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { b -> Date? in
            guard b.count == 24, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
                b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[19] == UInt8(ascii: "."),
                b[23] == UInt8(ascii: "Z")
            else { return nil }
            func number(_ at: Int, _ width: Int) -> Int? {
                var value = 0
                for k in at..<(at + width) {
                    guard (0x30...0x39).contains(b[k]) else { return nil }
                    value = value * 10 + Int(b[k] - 0x30)
                }
                return value
            }
            guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
                let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
                let millis = number(20, 3), year >= 1970, (1...12).contains(month),
                (1...daysIn(month: month, year: year)).contains(day), hour < 24, minute < 60, second < 60
            else { return nil }
            let seconds = days(year: year, month: month, day: day) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
            return Date(timeIntervalSinceReferenceDate: Double(seconds - 978_307_200) + Double(millis) / 1000)
        }
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a date (years from 1970 on).
    private static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = y / 400
        let yearOfEra = y - era * 400
        let dayOfYear = Int64((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1)
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The date of a day counted from 1970-01-01 (not before it).
    private static func civil(days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        return (Int(yearOfEra + era * 400) + (month <= 2 ? 1 : 0), month, day)
    }
}
