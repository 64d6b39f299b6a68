import Foundation

/// One labelled series of the Numenta Anomaly Benchmark (Benchmarks/nab/README.md): its rows and the
/// row ranges of its anomaly windows.
public struct NABSeries: Sendable {
    /// The path under `data/`, e.g. `realKnownCause/nyc_taxi.csv` (NAB's file key).
    public var name: String
    /// Row timestamps in seconds since 1970 (UTC), ascending.
    public var times: [Double]
    public var values: [Double]
    /// Each labelled window as the range of its rows (both ends inclusive, as NAB scores them).
    public var windows: [ClosedRange<Int>]

    public init(name: String, times: [Double], values: [Double], windows: [ClosedRange<Int>]) {
        self.name = name
        self.times = times
        self.values = values
        self.windows = windows
    }

    /// The usual spacing of the rows (median step), in seconds.
    public var step: Double {
        let steps = zip(times.dropFirst(), times).map { $0 - $1 }
        guard !steps.isEmpty else { return 300 }
        return steps.sorted()[steps.count / 2]
    }

    /// Hours from the first to the last row, plus one step.
    public var hours: Double { ((times.last ?? 0) - (times.first ?? 0) + step) / 3600 }

    /// The row at or before `time` (nil before the first row).
    public func row(atOrBefore time: Double) -> Int? {
        var low = 0
        var high = times.count
        while low < high {
            let mid = (low + high) / 2
            if times[mid] <= time { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : low - 1
    }
}

/// A published per-file standard-profile result (`published/<detector>_standard_scores.csv`).
public struct NABPublishedScore: Sendable, Equatable {
    public var detector: String
    public var file: String
    public var score: Double
    /// Rows flagged inside windows and outside them, after the probation period.
    public var tpRows: Int
    public var fpRows: Int
}

/// The copied NAB set: series, windows and published scores, read from a folder laid out as
/// Benchmarks/nab (data/<category>/<file>.csv, combined_windows.json, published/*.csv).
public struct NABCorpus: Sendable {
    public var series: [NABSeries]
    /// Published results by detector name, then file.
    public var published: [String: [String: NABPublishedScore]]

    public struct LoadError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Loads every file named in `combined_windows.json` (sorted by name), or only those whose name
    /// contains one of `only`.
    public static func load(from folder: URL, only: [String] = []) throws -> NABCorpus {
        let windowsData = try Data(contentsOf: folder.appendingPathComponent("combined_windows.json"))
        let windows = try JSONDecoder().decode([String: [[String]]].self, from: windowsData)
        var series: [NABSeries] = []
        for name in windows.keys.sorted() where only.isEmpty || only.contains(where: { name.contains($0) }) {
            let text = try String(contentsOf: folder.appendingPathComponent("data/\(name)"), encoding: .utf8)
            var times: [Double] = []
            var values: [Double] = []
            for line in text.split(whereSeparator: \.isNewline).dropFirst() {
                let fields = line.split(separator: ",")
                guard fields.count >= 2, let t = parseTimestamp(fields[0]), let v = Double(fields[1]) else {
                    throw LoadError(description: "\(name): cannot read the row '\(line)'")
                }
                times.append(t)
                values.append(v)
            }
            var ranges: [ClosedRange<Int>] = []
            for pair in windows[name] ?? [] {
                guard pair.count == 2, let a = parseTimestamp(Substring(pair[0])),
                    let b = parseTimestamp(Substring(pair[1])),
                    let first = times.firstIndex(of: a), let last = times.firstIndex(of: b), first <= last
                else { throw LoadError(description: "\(name): window \(pair) does not fall on rows") }
                ranges.append(first...last)
            }
            series.append(NABSeries(name: name, times: times, values: values, windows: ranges))
        }
        var published: [String: [String: NABPublishedScore]] = [:]
        let publishedFolder = folder.appendingPathComponent("published")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: publishedFolder.path)) ?? []
        for file in files.sorted() where file.hasSuffix("_standard_scores.csv") {
            let text = try String(contentsOf: publishedFolder.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(whereSeparator: \.isNewline).dropFirst() {
                // Detector,Profile,File,Threshold,Score,TP,TN,FP,FN,Total_Count
                let f = line.split(separator: ",").map(String.init)
                guard f.count >= 10, let score = Double(f[4]), let tp = Int(f[5]), let fp = Int(f[7]) else { continue }
                published[f[0], default: [:]][f[2]] = NABPublishedScore(
                    detector: f[0], file: f[2], score: score, tpRows: tp, fpRows: fp)
            }
        }
        return NABCorpus(series: series, published: published)
    }

    /// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) to seconds since 1970.
    static func parseTimestamp(_ text: Substring) -> Double? {
        let digits = text.utf8.map { Int($0) - 48 }
        guard digits.count >= 19 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            var n = 0
            for d in digits[from..<(from + count)] {
                guard (0...9).contains(d) else { return nil }
                n = n * 10 + d
            }
            return n
        }
        guard let y = number(0, 4), let m = number(5, 2), let d = number(8, 2), let hh = number(11, 2),
            let mm = number(14, 2), let ss = number(17, 2)
        else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return Double(days * 86_400 + hh * 3600 + mm * 60 + ss)
    }
}
