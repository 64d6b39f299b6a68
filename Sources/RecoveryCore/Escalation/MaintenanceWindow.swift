import Foundation

/// A maintenance window (docs/escalation.md, "Maintenance windows"): one-off (`start`, `end`) or
/// recurring (`cron`, five fields `minute hour day-of-month month day-of-week` read in `time_zone`, each
/// occurrence lasting `duration` seconds). While one is active, the target is probed and recorded and an
/// outage opens an incident, but no automatic step runs and nothing is paged; if the target is still
/// down when the window ends, one notice says so and the ladder starts (with its grace period) from there.
///
/// Cron fields: `*`, `5`, `1-5`, `*/15`, `0-30/10` and lists of these (`1,15,30`); day of week 0–7
/// (0 and 7 are Sunday); when both day fields are restricted a day matching either counts (as cron).
/// Times are wall-clock times in `time_zone` (IANA name, default UTC): a start that a spring-forward
/// skips begins when the clock reads again (02:30 on a night that jumps from 02:00 to 03:00 starts at
/// 03:00 + 30 min, as Foundation's calendar places it), and one a fall-back repeats starts at its first
/// occurrence. The duration is elapsed time, not wall-clock time.
public struct MaintenanceWindow: Codable, Sendable, Equatable {
    public var start: Date?
    public var end: Date?
    public var cron: String?
    public var timeZone: String?
    public var duration: TimeInterval?
    /// Why (shown in notices and `recoveryctl status`).
    public var reason: String?

    public init(start: Date, end: Date, reason: String? = nil) {
        self.start = start
        self.end = end
        self.reason = reason
    }

    public init(cron: String, timeZone: String? = nil, duration: TimeInterval, reason: String? = nil) {
        self.cron = cron
        self.timeZone = timeZone
        self.duration = duration
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case start, end, cron, duration, reason
        case timeZone = "time_zone"
    }

    // Times as ISO 8601 text whatever the coder's date strategy (the targets file and the stored state
    // use different ones): `2026-12-24T18:00:00Z`, or with an offset.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func time(_ key: CodingKeys) throws -> Date? {
            guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
            guard let date = Timestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: c,
                    debugDescription: "'\(text)' is not an ISO 8601 time (e.g. 2026-12-24T18:00:00Z)")
            }
            return date
        }
        start = try time(.start)
        end = try time(.end)
        cron = try c.decodeIfPresent(String.self, forKey: .cron)
        timeZone = try c.decodeIfPresent(String.self, forKey: .timeZone)
        duration = try c.decodeIfPresent(TimeInterval.self, forKey: .duration)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(start.map(Timestamp.format), forKey: .start)
        try c.encodeIfPresent(end.map(Timestamp.format), forKey: .end)
        try c.encodeIfPresent(cron, forKey: .cron)
        try c.encodeIfPresent(timeZone, forKey: .timeZone)
        try c.encodeIfPresent(duration, forKey: .duration)
        try c.encodeIfPresent(reason, forKey: .reason)
    }

    public static let longest: TimeInterval = 7 * 86_400

    /// Everything wrong with the window, as sentences; empty when it is usable.
    public var problems: [String] {
        var problems: [String] = []
        switch (start, end, cron) {
        case (let start?, let end?, nil):
            if end <= start { problems.append("maintenance window: end must be after start") }
            if timeZone != nil || duration != nil {
                problems.append("maintenance window: a one-off window (start, end) takes no time_zone or duration")
            }
        case (nil, nil, let cron?):
            if let error = CronSchedule.parse(cron).error {
                problems.append("maintenance window: cron '\(cron)': \(error)")
            }
            if let zone = timeZone, TimeZone(identifier: zone) == nil {
                problems.append("maintenance window: unknown time_zone '\(zone)' (an IANA name such as Europe/Berlin)")
            }
            if let duration, !(duration > 0 && duration <= Self.longest) {
                problems.append(
                    "maintenance window: duration must be 1 to \(Int(Self.longest)) seconds, not \(duration)")
            } else if duration == nil {
                problems.append("maintenance window: a recurring window needs a duration (seconds)")
            }
        default:
            problems.append("maintenance window: give either start and end, or cron and duration (with time_zone)")
        }
        return problems
    }

    /// The end of this window's occurrence that covers `now`, if any.
    public func activeEnd(at now: Date) -> Date? {
        if let start, let end { return start <= now && now < end ? end : nil }
        guard let cron, let duration, case .schedule(let schedule) = CronSchedule.parse(cron),
            let zone = TimeZone(identifier: timeZone ?? "UTC")
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        var best: Date?
        // Occurrences that started within `duration` before now: walk the local days back that far, from
        // noon to noon (a day's start can be 01:00 where the clock changes at midnight; noon always exists).
        guard let first = calendar.date(bySettingHour: 12, minute: 0, second: 0, of: now.addingTimeInterval(-duration)),
            let last = calendar.date(bySettingHour: 12, minute: 0, second: 0, of: now)
        else { return nil }
        var day = first
        while day <= last {
            let parts = calendar.dateComponents([.year, .month, .day, .weekday], from: day)
            if let month = parts.month, let dom = parts.day, let weekday = parts.weekday,
                schedule.matchesDay(dom: dom, month: month, weekday: weekday - 1)
            {
                for hour in schedule.hours {
                    for minute in schedule.minutes {
                        var at = parts
                        at.weekday = nil
                        (at.hour, at.minute) = (hour, minute)
                        guard let begin = calendar.date(from: at), begin <= now else { continue }
                        let finish = begin.addingTimeInterval(duration)
                        if finish > now, finish > (best ?? .distantPast) { best = finish }
                    }
                }
            }
            guard let next = calendar.date(byAdding: .day, value: 1, to: day) else { break }
            day = next
        }
        return best
    }

    /// The end of the maintenance covering `now` among `windows`: windows that overlap or follow on
    /// without a gap count as one.
    public static func activeEnd(of windows: [MaintenanceWindow], at now: Date) -> Date? {
        guard var end = windows.compactMap({ $0.activeEnd(at: now) }).max() else { return nil }
        for _ in 0..<64 {
            guard let later = windows.compactMap({ $0.activeEnd(at: end) }).max(), later > end else { break }
            end = later
        }
        return end
    }
}

/// A parsed five-field cron expression.
struct CronSchedule: Equatable {
    var minutes: [Int]
    var hours: [Int]
    var days: Set<Int>
    var months: Set<Int>
    var weekdays: Set<Int>
    var dayRestricted: Bool
    var weekdayRestricted: Bool

    enum Parsed {
        case schedule(CronSchedule)
        case error(String)
        var error: String? { if case .error(let e) = self { e } else { nil } }
    }

    static func parse(_ text: String) -> Parsed {
        let fields = text.split(whereSeparator: \.isWhitespace).map(String.init)
        guard fields.count == 5 else {
            return .error("needs 5 fields (minute hour day month weekday), has \(fields.count)")
        }
        let ranges = [
            (0, 59, "minute"), (0, 23, "hour"), (1, 31, "day of month"), (1, 12, "month"), (0, 7, "day of week"),
        ]
        var sets: [Set<Int>] = []
        for (field, (low, high, name)) in zip(fields, ranges) {
            switch values(field, low, high) {
            case .success(let set): sets.append(set)
            case .failure(let problem): return .error("\(name) '\(field)': \(problem.text)")
            }
        }
        var weekdays = sets[4]
        if weekdays.remove(7) != nil { weekdays.insert(0) }
        return .schedule(
            CronSchedule(
                minutes: sets[0].sorted(), hours: sets[1].sorted(), days: sets[2], months: sets[3],
                weekdays: weekdays, dayRestricted: fields[2] != "*", weekdayRestricted: fields[4] != "*"))
    }

    struct Problem: Error {
        var text: String
    }

    static func values(_ field: String, _ low: Int, _ high: Int) -> Result<Set<Int>, Problem> {
        var out: Set<Int> = []
        for part in field.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { return .failure(Problem(text: "more than one '/'")) }
            var step = 1
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s >= 1 else { return .failure(Problem(text: "a step must be 1 or more")) }
                step = s
            }
            var from = low
            var to = high
            if pieces[0] != "*" {
                let bounds = pieces[0].split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
                guard (1...2).contains(bounds.count), let a = bounds.first ?? nil, let b = bounds.last ?? nil else {
                    return .failure(Problem(text: "not a number, a range or *"))
                }
                (from, to) = (a, pieces.count == 2 && bounds.count == 1 ? high : b)
            }
            guard low <= from, from <= to, to <= high else { return .failure(Problem(text: "outside \(low)-\(high)")) }
            out.formUnion(stride(from: from, through: to, by: step))
        }
        return .success(out)
    }

    /// Whether a day (its day of month, month, and weekday 0 = Sunday) is one the schedule runs on.
    func matchesDay(dom: Int, month: Int, weekday: Int) -> Bool {
        guard months.contains(month) else { return false }
        switch (dayRestricted, weekdayRestricted) {
        case (true, true): return days.contains(dom) || weekdays.contains(weekday)
        case (true, false): return days.contains(dom)
        case (false, true): return weekdays.contains(weekday)
        case (false, false): return true
        }
    }
}
