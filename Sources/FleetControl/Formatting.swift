import Foundation
import RecoveryCore

/// A usage or input error recoveryctl reports on stderr (exit 1). Never holds a secret.
public struct ControlError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// The process exit status (see docs/operations.md).
    public var exitCode: Int32
    public init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

/// `--until` and `--timeout` values: an ISO 8601 time, or a duration from now such as `90s`, `15m`, `2h`,
/// `1d`, `1h30m`.
public enum TimeInput {
    /// Seconds in a duration text: one or more `<number><unit>` with units `s`, `m`, `h`, `d` (a bare
    /// number is seconds). Nil when the text is not a duration.
    public static func seconds(_ text: String) -> TimeInterval? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !t.isEmpty else { return nil }
        if let plain = Double(t), plain.isFinite, plain >= 0 { return plain }
        var total: TimeInterval = 0
        var number = ""
        var sawUnit = false
        for ch in t {
            if ch.isNumber || ch == "." {
                number.append(ch)
                continue
            }
            let unit: TimeInterval
            switch ch {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            default: return nil
            }
            guard let value = Double(number), value.isFinite else { return nil }
            total += value * unit
            number = ""
            sawUnit = true
        }
        guard number.isEmpty, sawUnit else { return nil }
        return total
    }

    /// The end of a hold: an ISO 8601 time (`2026-11-22T06:00:00Z`) or a duration from `now` (`2h`).
    public static func until(_ text: String, now: Date) throws -> Date {
        if let date = Timestamp.parse(text) { return date }
        if let s = seconds(text) {
            guard s > 0 else { throw ControlError("--until \(text): the duration must be more than zero") }
            return now.addingTimeInterval(s)
        }
        throw ControlError(
            "--until '\(text)' is neither an ISO 8601 time (2026-11-22T06:00:00Z) nor a duration (90m, 2h, 1d, 1h30m)")
    }

    /// `12s ago`, `5m ago`, `in 2h`: for tables.
    public static func relative(_ date: Date, now: Date) -> String {
        let delta = now.timeIntervalSince(date)
        let text = compact(abs(delta))
        return delta >= 0 ? "\(text) ago" : "in \(text)"
    }

    /// The largest one or two units: `45s`, `12m`, `1h30m`, `3d4h`.
    public static func compact(_ seconds: TimeInterval) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" }
        if s < 86_400 { return s % 3600 / 60 == 0 ? "\(s / 3600)h" : "\(s / 3600)h\(s % 3600 / 60)m" }
        return s % 86_400 / 3600 == 0 ? "\(s / 86_400)d" : "\(s / 86_400)d\(s % 86_400 / 3600)h"
    }

    /// Whole-second UTC ISO time for human output.
    public static func iso(_ date: Date) -> String { date.formatted(Date.ISO8601FormatStyle()) }
}

/// A plain-text table that fits a terminal width: columns get their natural width while the table fits;
/// otherwise the widest shrinkable columns are cut (with `…`) until it does. Two spaces between columns.
public struct TextTable: Sendable {
    public var headers: [String]
    public var rows: [[String]]
    /// Columns that keep their full width (short identifiers); the others may be cut.
    public var fixed: Set<Int>

    public init(headers: [String], rows: [[String]], fixed: Set<Int> = []) {
        self.headers = headers
        self.rows = rows
        self.fixed = fixed
    }

    public func render(width: Int = 80) -> String {
        let columns = headers.count
        var widths = (0..<columns).map { c in
            ([headers[c]] + rows.map { c < $0.count ? $0[c] : "" }).map(\.count).max() ?? 0
        }
        let gap = 2
        func total() -> Int { widths.reduce(0, +) + gap * max(columns - 1, 0) }
        let minimum = 4
        while total() > width {
            let candidates = (0..<columns).filter {
                !fixed.contains($0) && widths[$0] > max(minimum, headers[$0].count)
            }
            guard let widest = candidates.max(by: { widths[$0] < widths[$1] }) else { break }
            widths[widest] -= 1
        }
        func line(_ cells: [String]) -> String {
            var out = ""
            for c in 0..<columns {
                let cell = Self.fit(c < cells.count ? cells[c] : "", widths[c])
                out +=
                    c == columns - 1
                    ? cell
                    : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                        + String(repeating: " ", count: gap)
            }
            return String(out.reversed().drop(while: { $0 == " " }).reversed())
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }

    static func fit(_ text: String, _ width: Int) -> String {
        guard text.count > width else { return text }
        guard width > 1 else { return String(text.prefix(width)) }
        return String(text.prefix(width - 1)) + "…"
    }
}

/// Wraps text at `width` columns on spaces; continuation lines are indented.
func wrap(_ text: String, width: Int = 80, indent: String = "  ") -> String {
    var out: [String] = []
    for paragraph in text.split(separator: "\n", omittingEmptySubsequences: false) {
        // The paragraph's own leading spaces are kept: an indented detail line stays indented.
        var line = String(paragraph.prefix { $0 == " " })
        var atStart = true
        for word in paragraph.split(separator: " ") {
            if atStart {
                line += word
                atStart = false
            } else if line.count + 1 + word.count > width {
                out.append(line)
                line = indent + word
            } else {
                line += " " + word
            }
        }
        out.append(line)
    }
    return out.joined(separator: "\n")
}
