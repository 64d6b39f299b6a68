import AMQPTransport
import AWSClient
import ArgumentParser
import FleetRuntime
import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore

// MARK: targets

/// `targets list` output.
public struct TargetsListing: ControlOutput, Codable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public var target: String
        /// The item's settings (JSON object), as stored in the table.
        public var settings: [String: JSONText]
    }
    public struct Skipped: Codable, Sendable, Equatable {
        public var target: String
        public var reason: String
    }
    public var table: String
    public var targets: [Item]
    public var skipped: [Skipped]

    public func render(width: Int) -> String {
        var lines: [String] = []
        if targets.isEmpty { lines.append("No items in \(table).") }
        for item in targets {
            lines.append(item.target)
            for key in item.settings.keys.sorted() {
                lines.append(wrap("  \(key) = \(item.settings[key]!.text)", width: width, indent: "      "))
            }
        }
        for s in skipped { lines.append(wrap("SKIPPED \(s.target): \(s.reason)", width: width)) }
        return lines.joined(separator: "\n")
    }
}

/// A JSON value kept as its text, encoded back as JSON.
public struct JSONText: Codable, Sendable, Equatable {
    public var text: String
    public init(_ text: String) { self.text = text }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))
    }
    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(JSONValue.self)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        text = String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// `targets set` / `unset` output.
public struct TargetWritten: ControlOutput, Equatable {
    public var table: String
    public var target: String
    public var settings: [String: JSONText]

    public func render(width: Int) -> String {
        var lines = ["\(target): written to \(table). The workers apply it at their next discovery."]
        for key in settings.keys.sorted() {
            lines.append(wrap("  \(key) = \(settings[key]!.text)", width: width, indent: "      "))
        }
        return lines.joined(separator: "\n")
    }
}

/// Settings whose values are credentials: shown as `***` (a Slack or Teams webhook URL is the secret).
let secretSettings: Set<String> = ChannelKind.allSecretKeys

func settingsMap(_ json: Data) throws -> [String: JSONText] {
    guard case .object(var object) = try JSONDecoder().decode(JSONValue.self, from: json) else { return [:] }
    if case .object(var notify)? = object["notify"] {
        for key in secretSettings where notify[key] != nil { notify[key] = .string("***") }
        object["notify"] = .object(notify)
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try object.mapValues { JSONText(String(decoding: try encoder.encode($0), as: UTF8.self)) }
}

/// Splits `key=value` arguments; the value is JSON text, or a plain string when it is not JSON.
public func parseAssignments(_ words: [String]) throws -> [(key: String, value: String)] {
    try words.map { word in
        guard let eq = word.firstIndex(of: "="), eq != word.startIndex else {
            throw ValidationError(
                "'\(word)' is not key=value (e.g. probe_interval=15, requires_approval=true, health_url=https://shop.example.com/health)"
            )
        }
        let key = String(word[..<eq])
        guard TargetConfigTable.settingKeys.contains(key) else {
            throw ValidationError(
                "unknown setting '\(key)' (expected one of \(TargetConfigTable.settingKeys.sorted().joined(separator: ", ")))"
            )
        }
        return (key, String(word[word.index(after: eq)...]))
    }
}

extension RecoveryCtlCommand {
    public struct Targets: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Per-target settings in the instance-config table (INSTANCE_CONFIG_TABLE).",
            subcommands: [List.self, Set.self, Unset.self])
        public init() {}

        public struct List: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract: "Every item of the table, and the malformed ones with why.")
            @OptionGroup var output: OutputOptions
            public init() {}
            public func run() async throws {
                try await Runner.run(json: output.json) { context in
                    let table = try context.configTable()
                    let snapshot = try await table.load(over: try context.env.targetsFile())
                    return TargetsListing(
                        table: table.tableName,
                        targets: try snapshot.targets.map {
                            .init(target: $0, settings: try settingsMap(snapshot.json(for: $0) ?? Data("{}".utf8)))
                        },
                        skipped: snapshot.skipped.map { .init(target: $0.target, reason: $0.reason) })
                }
            }
        }

        public struct Set: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract:
                    "Change some settings of a target (others kept). Checked before writing: a bad value writes nothing.",
                discussion:
                    "Values are JSON (15, true, [[200, 299]], {\"record_name\": \"shop.example.com\"}) or plain text (https://…)."
            )
            @Argument var target: String
            @Argument(help: "key=value pairs.") var assignments: [String]
            @OptionGroup var output: OutputOptions
            public init() {}

            public func validate() throws {
                guard !assignments.isEmpty else { throw ValidationError("give at least one key=value") }
                _ = try parseAssignments(assignments)
            }

            public func run() async throws {
                try await Runner.run(json: output.json) { context in
                    let table = try context.configTable()
                    let written = try await table.update(
                        target: target, set: try parseAssignments(assignments), over: try context.env.targetsFile(),
                        updatedBy: try? context.amqpUser())
                    return TargetWritten(table: table.tableName, target: target, settings: try settingsMap(written))
                }
            }
        }

        public struct Unset: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract: "Remove settings from a target's item (back to the targets file and defaults).")
            @Argument var target: String
            @Argument(help: "Keys to remove.") var keys: [String]
            @OptionGroup var output: OutputOptions
            public init() {}
            public func run() async throws {
                try await Runner.run(json: output.json) { context in
                    let table = try context.configTable()
                    let written = try await table.update(
                        target: target, set: [], unset: keys, over: try context.env.targetsFile(),
                        updatedBy: try? context.amqpUser())
                    return TargetWritten(table: table.tableName, target: target, settings: try settingsMap(written))
                }
            }
        }
    }
}
