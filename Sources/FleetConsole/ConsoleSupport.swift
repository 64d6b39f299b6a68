import Foundation

/// Failed logins per key (name and address): after 5 within 15 minutes, that key is refused for 15
/// minutes (per replica). An attempt counts from its start, so parallel guesses cannot slip past the limit
/// while their hashes run.
actor LoginThrottle {
    private var failures: [String: [Date]] = [:]
    private var running: [String: Int] = [:]
    static let limit = 5
    static let window: TimeInterval = 900
    static let maxKeys = 10_000

    func begin(_ key: String, now: Date) -> Bool {
        if failures[key] == nil, failures.count >= Self.maxKeys {
            // Forget what has expired; if the table is still full, refuse new keys (fail closed) rather than
            // forget live lockouts.
            failures = failures.filter { $0.value.contains { now.timeIntervalSince($0) < Self.window } }
            guard failures.count < Self.maxKeys else { return false }
        }
        let recent = (failures[key] ?? []).filter { now.timeIntervalSince($0) < Self.window }
        failures[key] = recent.isEmpty ? nil : recent
        guard recent.count + running[key, default: 0] < Self.limit else { return false }
        running[key, default: 0] += 1
        return true
    }

    func end(_ key: String, failed: Bool, now: Date) {
        running[key] = running[key].flatMap { $0 > 1 ? $0 - 1 : nil }
        if failed { failures[key, default: []].append(now) } else { failures[key] = nil }
    }
}

/// Runs at most `slots` jobs at once, each on a thread of its own (not the cooperative pool), with at most
/// `queue` waiting; beyond that it answers nil at once (the caller says "busy").
actor HashGate {
    private let slots: Int
    private let queueLimit: Int
    private var busy = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(slots: Int, queue: Int) {
        self.slots = slots
        queueLimit = queue
    }

    func run<T: Sendable>(_ job: @escaping @Sendable () -> T) async -> T? {
        if busy >= slots {
            guard waiting.count < queueLimit else { return nil }
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy += 1
        }
        // On a thread of its own: a PBKDF2 of 600,000 rounds takes a good part of a second, and on the
        // cooperative pool (two threads on a two-core host) it would stall every other task meanwhile.
        let result: T = await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: job()) }
        }
        if waiting.isEmpty { busy -= 1 } else { waiting.removeFirst().resume() }  // the slot passes on
        return .some(result)
    }
}

enum FormEncoding {
    static func decode(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func unescape(_ s: Substring) -> String {
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            let key = unescape(kv[0])
            if fields[key] == nil { fields[key] = kv.count > 1 ? unescape(kv[1]) : "" }
        }
        return fields
    }

    static func encode(_ fields: [(String, String)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.map {
            "\($0.0.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }.joined(separator: "&")
    }
}
