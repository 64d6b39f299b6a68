import Foundation
import Logging
import RecoveryCore
import Synchronization

/// Writes one JSON object per line: `{"ts":"…","level":"info","logger":"probe","msg":"…", …metadata}`.
/// Workers bootstrap it in `main`; libraries only take a `Logger`.
///
/// A last line of defence against leaking secrets: metadata whose key names a secret (password, secret,
/// token, webhook, authorization, credentials) is written as `***`, and URLs with a password in them have
/// it masked. Code must still never log a secret in the first place.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: Sink

    /// Where lines go. Standard error by default; tests pass a closure.
    public struct Sink: Sendable {
        let write: @Sendable (String) -> Void
        public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }
        public static let standardError = Sink { line in
            lock.withLock { _ in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        private static let lock = Mutex(())
    }

    public init(label: String, level: Logger.Level = .info, sink: Sink = .standardError) {
        self.label = label
        logLevel = level
        self.sink = sink
    }

    /// Installs the handler for the whole process. `LOG_LEVEL` (trace…critical) sets the level.
    public static func bootstrap(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let level = environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var object: [String: Any] = [
            "ts": Timestamp.formatNow(),
            "level": event.level.rawValue,
            "logger": label,
            "msg": Self.redact(value: "\(event.message)"),
        ]
        for (key, value) in merged where object[key] == nil {
            object[key] = Self.redact(key: key, value: value)
        }
        if event.level >= .error { object["source"] = "\(event.file.split(separator: "/").last ?? ""):\(event.line)" }
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        sink.write(String(decoding: data, as: UTF8.self))
    }

    static let secretKeyWords = [
        "password", "secret", "token", "webhook", "authorization", "credential", "apikey", "api_key",
    ]

    static func redact(key: String, value: Logger.Metadata.Value) -> Any {
        let lower = key.lowercased()
        if secretKeyWords.contains(where: lower.contains) && !lower.hasSuffix("_id") && lower != "fencing_token" {
            return "***"
        }
        switch value {
        case let .string(s): return redact(value: s)
        case let .stringConvertible(c): return redact(value: c.description)
        case let .array(items): return items.map { redact(key: key, value: $0) }
        case let .dictionary(dict):
            return dict.reduce(into: [String: Any]()) { $0[$1.key] = redact(key: $1.key, value: $1.value) }
        }
    }

    /// Masks `user:password@` in anything that looks like a URL.
    static func redact(value: String) -> String {
        guard value.contains("://"), value.contains("@") else { return value }
        var result = ""
        var rest = Substring(value)
        while let scheme = rest.range(of: "://") {
            result += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            let authorityEnd = rest.firstIndex { $0 == "/" || $0 == " " || $0 == "\"" } ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                result += authority[..<colon] + ":***" + authority[at...]
            } else {
                result += authority
            }
            rest = rest[authorityEnd...]
        }
        return result + rest
    }
}

extension Timestamp {
    static func formatNow() -> String { format(Date()) }
}
