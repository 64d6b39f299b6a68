import AWSClient
import FleetWorkers
import Foundation

/// One row of a target's history (docs/history.md), as `recoveryctl history` shows it.
public struct HistoryEntry: Codable, Sendable, Equatable {
    public var occurredAt: String
    public var type: String
    public var messageId: String
    public var who: String
    public var why: String
    /// A short summary from the body: the command name, the notice kind, the step and its status, the
    /// state change.
    public var what: String
    public var correlationId: String?

    enum CodingKeys: String, CodingKey {
        case type, who, why, what
        case occurredAt = "occurred_at"
        case messageId = "message_id"
        case correlationId = "correlation_id"
    }

    public init(
        occurredAt: String, type: String, who: String, what: String, why: String, messageId: String = "",
        correlationId: String? = nil
    ) {
        self.occurredAt = occurredAt
        self.type = type
        self.who = who
        self.what = what
        self.why = why
        self.messageId = messageId
        self.correlationId = correlationId
    }

    init(_ item: DynamoItem) {
        occurredAt =
            item["occurred_at"]?.stringValue
            ?? String(item["timestamp"]?.stringValue?.split(separator: "#").first ?? "")
        type = item["type"]?.stringValue ?? "?"
        messageId = item["message_id"]?.stringValue ?? ""
        who = item["who"]?.stringValue ?? "?"
        why = item["why"]?.stringValue ?? ""
        correlationId = item["correlation_id"]?.stringValue
        let body = item["body"]?.mapValue ?? [:]
        func text(_ key: String) -> String? { body[key]?.stringValue }
        switch type {
        case "command": what = text("name") ?? "command"
        case "notification": what = text("kind") ?? "notification"
        case "action.request": what = "request \(text("step") ?? "?")"
        case "action.event": what = [text("step"), text("status")].compactMap { $0 }.joined(separator: " ")
        case "event": what = text("kind") ?? "event"
        default: what = type
        }
    }
}

public struct HistoryReport: Codable, Sendable, Equatable {
    public var target: String
    public var entries: [HistoryEntry]
    /// True when older rows exist beyond `--limit`.
    public var truncated: Bool

    public init(target: String, entries: [HistoryEntry], truncated: Bool) {
        self.target = target
        self.entries = entries
        self.truncated = truncated
    }

    public func render(width: Int = 80) -> String {
        guard !entries.isEmpty else { return "No history for \(target)." }
        let table = TextTable(
            headers: ["TIME (UTC)", "WHO", "WHAT", "WHY"],
            rows: entries.map { e in
                [
                    String(e.occurredAt.prefix(19)).replacingOccurrences(of: "T", with: " "), e.who, e.what,
                    e.why == e.what ? "" : e.why,
                ]
            },
            fixed: [0])
        return (truncated ? "(older rows left out; --limit or --all)\n" : "") + table.render(width: width)
    }
}

/// Reads a target's rows from RECOVERY_EVENTS_TABLE: a Query on `instance_id` (the target's name).
public struct HistoryReader: Sendable {
    let dynamo: DynamoDBClient
    let table: String

    public init(dynamo: DynamoDBClient, table: String) {
        self.dynamo = dynamo
        self.table = table
    }

    /// The newest `limit` rows in time order, or every row when `limit` is nil.
    public func read(target: String, limit: Int?) async throws -> HistoryReport {
        let values: DynamoItem = [":t": .string(target)]
        if let limit {
            // Newest first, one page of limit + 1 (to know whether more exist), then back in time order.
            let page = try await dynamo.query(
                QueryInput(
                    tableName: table, keyConditionExpression: "instance_id = :t", expressionAttributeValues: values,
                    scanIndexForward: false, limit: limit + 1, consistentRead: true))
            let items = page.items.prefix(limit)
            return HistoryReport(
                target: target, entries: items.reversed().map(HistoryEntry.init),
                truncated: page.items.count > limit)
        }
        let items = try await dynamo.queryAll(
            QueryInput(
                tableName: table, keyConditionExpression: "instance_id = :t", expressionAttributeValues: values,
                consistentRead: true))
        return HistoryReport(target: target, entries: items.map(HistoryEntry.init), truncated: false)
    }
}
