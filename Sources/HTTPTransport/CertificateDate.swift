import Foundation

/// Parses the dates libcurl reports in CURLINFO_CERTINFO with the OpenSSL backend, as printed by
/// `ASN1_TIME_print`: `"Jan  1 00:00:00 2027 GMT"` (day padded with a space, optional fractional
/// seconds, always GMT).
enum CertificateDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func parse(_ text: some StringProtocol) -> Date? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard fields.count == 5, fields[4] == "GMT",
            let month = months.firstIndex(of: String(fields[0])).map({ $0 + 1 }),
            let day = Int(fields[1]), (1...31).contains(day),
            let year = Int(fields[3]), (1...9999).contains(year)
        else { return nil }
        let clock = fields[2].split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 3, let hour = Int(clock[0]), let minute = Int(clock[1]),
            let second = Double(clock[2]), (0...23).contains(hour), (0...59).contains(minute),
            second >= 0, second < 61
        else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Double(days) * 86_400 + Double(hour * 3600 + minute * 60) + second
        return Date(timeIntervalSince1970: seconds)
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
