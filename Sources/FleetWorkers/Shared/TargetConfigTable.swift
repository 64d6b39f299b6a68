import AWSClient
import FleetRuntime
import Foundation
import Synchronization
import Logging
import RecoveryCore

/// The instance-config table (INSTANCE_CONFIG_TABLE): one DynamoDB item per target, partition key
/// `instance_id` (S) holding the target's stable identity (its name, docs/configuration.md). The other
/// attributes are the keys of a target's object in the targets file — `health_url`, `dr_region`,
/// `elastic_ip_allocation_id`, `dry_run`, a `dr` map and every `TargetSettings` key — numbers stored as
/// DynamoDB numbers. `updated_at` and `updated_by` are bookkeeping and ignored when reading.
public struct TargetConfigTable: Sendable {
    public static let keyAttribute = "instance_id"
    /// Attributes written by `put` for people reading the table; not settings.
    static let bookkeeping: Set<String> = [keyAttribute, "updated_at", "updated_by"]
    /// Every key a target's settings may hold. An item with any other attribute is malformed (a typo
    /// would otherwise be silently ignored).
    public static let settingKeys: Set<String> = [
        "health_url", "dr_region", "elastic_ip_allocation_id", "dry_run", "dr",
        "probe_interval", "probe_timeout", "expected_status", "body_match", "failure_threshold", "failure_window",
        "flap_incidents", "flap_window",
        "recovery_threshold", "quorum", "quorum_size", "grace_period", "requires_approval", "approval_timeout",
        "restart_verification", "reprovision_verification", "failover_verification", "outage_count_window",
        "quarantined", "maintenance", "notify", "ssm_restart", "ssm_services", "ssm_diagnostics",
    ]

    /// An item that was not used, and why.
    public struct Skipped: Sendable, Equatable, CustomStringConvertible {
        public var target: String
        public var reason: String
        public var description: String { "instance-config item for target '\(target)' skipped: \(reason)" }
    }

    /// What one read of the table found: the usable items by target name, and the skipped ones.
    public struct Snapshot: Sendable {
        var items: [String: [String: JSONValue]]
        public var skipped: [Skipped]
        public var targets: [String] { items.keys.sorted() }

        /// A target's item as a JSON object (sorted keys), without the bookkeeping attributes.
        public func json(for target: String) -> Data? {
            guard let item = items[target] else { return nil }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return try? encoder.encode(JSONValue.object(item))
        }
    }

    public let dynamo: DynamoDBClient
    public let tableName: String

    public init(dynamo: DynamoDBClient, tableName: String) {
        self.dynamo = dynamo
        self.tableName = tableName
    }

    /// Scans the table. Each item is checked on its own, laid over `base` (the targets file), so a
    /// malformed item is skipped with its reason instead of failing the whole read.
    public func load(over base: TargetConfigFile = .empty) async throws -> Snapshot {
        let raw = try await dynamo.scanAll(tableName: tableName, consistentRead: true)
        var items: [String: [String: JSONValue]] = [:]
        var skipped: [Skipped] = []
        for item in raw {
            guard let name = item[Self.keyAttribute]?.stringValue, !name.isEmpty else {
                skipped.append(Skipped(target: "?", reason: "no string '\(Self.keyAttribute)' attribute"))
                continue
            }
            do {
                let object = try Self.settingsObject(item)
                _ = try base.overlaid(with: [name: object]).entry(for: name)
                items[name] = object
            } catch {
                skipped.append(Skipped(target: name, reason: "\(error)"))
            }
        }
        return Snapshot(items: items, skipped: skipped.sorted { $0.target < $1.target })
    }

    /// Writes (replaces) one target's item from a JSON object of settings (`{"probe_interval": 15, …}`),
    /// numbers kept digit for digit. The settings are checked first, so a bad value never reaches the
    /// table. For `recoveryctl targets set`.
    public func put(target: String, settings json: Data, updatedBy: String? = nil, now: Date = Date()) async throws {
        guard !target.isEmpty else { throw ConfigurationError("a target name is needed") }
        let value: DynamoValue
        do { value = try JSONToDynamo.parse(Array(json)) } catch {
            throw ConfigurationError("settings for target '\(target)' are not valid JSON: \(error)")
        }
        guard case .map(var item) = value else {
            throw ConfigurationError("settings for target '\(target)' must be a JSON object")
        }
        for key in Self.bookkeeping { item[key] = nil }
        _ = try TargetConfigFile.empty.overlaid(with: [target: try Self.settingsObject(item)]).entry(for: target)
        item[Self.keyAttribute] = .string(target)
        item["updated_at"] = .date(now, as: .iso8601)
        if let updatedBy { item["updated_by"] = .string(updatedBy) }
        _ = try await dynamo.putItem(PutItemInput(tableName: tableName, item: item))
    }

    /// Changes some keys of one target's item and keeps the others (`recoveryctl targets set/unset`).
    /// `set` maps a key to its value as JSON text (`15`, `true`, `"text"`, `[[200, 299]]`); a value that is
    /// not JSON is taken as a string. The result is checked, laid over `base` (the targets file) exactly
    /// as the workers will read it, before anything is written: a bad key or value throws and the table
    /// is left unchanged. Returns the item's settings as written (JSON).
    ///
    /// Read-modify-write with a condition: the put succeeds only if the item is still the one read (same
    /// `updated_at`, or still absent); otherwise it is read again and the same keys applied again (at most
    /// 12 times), so two operators, or an operator and a quarantine, changing one target at the same
    /// instant both keep their change. (An edit made by hand in the console without `updated_at` is not
    /// detected.)
    @discardableResult
    public func update(
        target: String, set: [(key: String, value: String)], unset: [String] = [], over base: TargetConfigFile = .empty,
        updatedBy: String? = nil, now: Date = Date()
    ) async throws -> Data {
        try await update(
            target: target, set: set, unset: unset, over: base, updatedBy: updatedBy, now: now, betweenReadAndWrite: nil
        )
    }

    /// The keys to set (JSON text) and to remove.
    public typealias Change = (set: [(key: String, value: String)], unset: [String])

    /// Like ``update(target:set:unset:over:updatedBy:now:)``, but the change is computed from the item's
    /// settings as read, again on every attempt: a change that depends on the current value (add a window to
    /// the list; replace it only if it is still what the person saw) never overwrites a concurrent one.
    /// `change` throws to refuse.
    @discardableResult
    public func update(
        target: String, over base: TargetConfigFile = .empty, updatedBy: String? = nil, now: Date = Date(),
        change: @escaping @Sendable ([String: JSONValue]) throws -> Change
    ) async throws -> Data {
        try await update(
            target: target, change: change, over: base, updatedBy: updatedBy, now: now, betweenReadAndWrite: nil)
    }

    /// `betweenReadAndWrite` runs after each read and before its conditional write (tests put a
    /// concurrent writer there, deterministically).
    func update(
        target: String, set: [(key: String, value: String)], unset: [String], over base: TargetConfigFile,
        updatedBy: String?, now: Date, betweenReadAndWrite: (@Sendable () async throws -> Void)?
    ) async throws -> Data {
        try await update(
            target: target, change: { _ in (set, unset) }, over: base, updatedBy: updatedBy, now: now,
            betweenReadAndWrite: betweenReadAndWrite)
    }

    func update(
        target: String, change: @escaping @Sendable ([String: JSONValue]) throws -> Change, over base: TargetConfigFile,
        updatedBy: String?, now: Date, betweenReadAndWrite: (@Sendable () async throws -> Void)?
    ) async throws -> Data {
        guard !target.isEmpty else { throw ConfigurationError("a target name is needed") }
        for _ in 0..<12 {
            do {
                return try await updateOnce(
                    target: target, change: change, over: base, updatedBy: updatedBy, now: now,
                    betweenReadAndWrite: betweenReadAndWrite)
            } catch DynamoDBError.conditionalCheckFailed {
                // Changed since it was read: read it again, after a short random pause so that writers
                // racing each other spread out (each round at least one of them wins).
                try await Task.sleep(for: .milliseconds(Int.random(in: 10...60)))
            }
        }
        throw ConfigurationError(
            "not written: the item of '\(target)' kept changing while it was being updated; try again")
    }

    private func updateOnce(
        target: String, change: @Sendable ([String: JSONValue]) throws -> Change, over base: TargetConfigFile,
        updatedBy: String?, now: Date, betweenReadAndWrite: (@Sendable () async throws -> Void)?
    ) async throws -> Data {
        let existing =
            try await dynamo.getItem(
                tableName: tableName, key: [Self.keyAttribute: .string(target)], consistentRead: true) ?? [:]
        var item = existing
        for key in Self.bookkeeping { item[key] = nil }
        // A malformed item still gets the change (that is how one is mended); it is computed over what parses.
        let (set, unset) = try change((try? Self.settingsObject(item)) ?? [:])
        // Any attribute may be unset (a misspelt one is how an item becomes malformed); only known keys are set.
        for key in set.map(\.key) where !Self.settingKeys.contains(key) {
            throw ConfigurationError(
                "unknown setting '\(key)' (expected one of \(Self.settingKeys.sorted().joined(separator: ", ")))")
        }
        for (key, text) in set {
            let parsed: DynamoValue
            if let value = try? JSONToDynamo.parse(Array(text.utf8)) { parsed = value } else { parsed = .string(text) }
            item[key] = parsed
        }
        for key in unset { item[key] = nil }
        let object: [String: JSONValue]
        do {
            object = try Self.settingsObject(item)
            _ = try base.overlaid(with: [target: object]).entry(for: target)
        } catch {
            throw ConfigurationError("not written: \(error)")
        }
        item[Self.keyAttribute] = .string(target)
        // The condition below compares the stamp that was read; a retry writes a fresh one.
        item["updated_at"] = .date(max(now, Date()), as: .iso8601)
        if let updatedBy { item["updated_by"] = .string(updatedBy) }
        var put = PutItemInput(tableName: tableName, item: item)
        if existing.isEmpty {
            put.conditionExpression = "attribute_not_exists(#k)"
            put.expressionAttributeNames = ["#k": Self.keyAttribute]
        } else if let stamp = existing["updated_at"] {
            put.conditionExpression = "#u = :u"
            put.expressionAttributeNames = ["#u": "updated_at"]
            put.expressionAttributeValues = [":u": stamp]
        } else {
            put.conditionExpression = "attribute_exists(#k) AND attribute_not_exists(#u)"
            put.expressionAttributeNames = ["#k": Self.keyAttribute, "#u": "updated_at"]
        }
        try await betweenReadAndWrite?()
        _ = try await dynamo.putItem(put)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(JSONValue.object(object))
    }

    /// Merges settings into a target's item (UpdateItem SET per key), keeping every other attribute; creates
    /// the item when there is none. The merged result is checked first, so a bad value never reaches the
    /// table. For the actuator's quarantine (`quarantined`) and anything else that changes one setting.
    public func merge(target: String, settings json: Data, updatedBy: String? = nil, now: Date = Date()) async throws {
        guard !target.isEmpty else { throw ConfigurationError("a target name is needed") }
        let value: DynamoValue
        do { value = try JSONToDynamo.parse(Array(json)) } catch {
            throw ConfigurationError("settings for target '\(target)' are not valid JSON: \(error)")
        }
        guard case .map(var changes) = value, !changes.isEmpty else {
            throw ConfigurationError("settings to merge for target '\(target)' must be a non-empty JSON object")
        }
        for key in Self.bookkeeping { changes[key] = nil }
        let key: DynamoItem = [Self.keyAttribute: .string(target)]
        let existing = try await dynamo.getItem(tableName: tableName, key: key, consistentRead: true) ?? [:]
        let merged = existing.merging(changes) { $1 }
        _ = try TargetConfigFile.empty.overlaid(with: [target: try Self.settingsObject(merged)]).entry(for: target)
        changes["updated_at"] = .date(now, as: .iso8601)
        if let updatedBy { changes["updated_by"] = .string(updatedBy) }
        var names: [String: String] = [:]
        var values: DynamoItem = [:]
        var sets: [String] = []
        for (index, (name, value)) in changes.sorted(by: { $0.key < $1.key }).enumerated() {
            names["#k\(index)"] = name
            values[":v\(index)"] = value
            sets.append("#k\(index) = :v\(index)")
        }
        _ = try await dynamo.updateItem(
            UpdateItemInput(
                tableName: tableName, key: key, updateExpression: "SET " + sets.joined(separator: ", "),
                expressionAttributeNames: names, expressionAttributeValues: values))
    }

    /// One target's item as settings (nil: no item), read consistently; a malformed item throws.
    public func settings(of target: String) async throws -> [String: JSONValue]? {
        guard
            let item = try await dynamo.getItem(
                tableName: tableName, key: [Self.keyAttribute: .string(target)], consistentRead: true)
        else { return nil }
        return try Self.settingsObject(item)
    }

    /// Removes a target's item; the target falls back to the targets file and the defaults.
    public func delete(target: String) async throws {
        try await dynamo.deleteItem(DeleteItemInput(tableName: tableName, key: [Self.keyAttribute: .string(target)]))
    }

    /// Creates the table (on-demand billing) and waits until it is active.
    public func create() async throws {
        _ = try await dynamo.createTable(
            CreateTableInput(tableName: tableName, partitionKey: DynamoKeyAttribute(Self.keyAttribute, .string)))
        _ = try await dynamo.waitUntilTableActive(tableName)
    }

    /// An item's settings as a JSON object, with unknown attributes and unsupported types refused.
    static func settingsObject(_ item: DynamoItem) throws -> [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        for (key, value) in item where !bookkeeping.contains(key) {
            guard settingKeys.contains(key) else {
                throw ConfigurationError(
                    "unknown attribute '\(key)' (expected one of \(settingKeys.sorted().joined(separator: ", ")))")
            }
            object[key] = try json(value, key)
        }
        return object
    }

    static func json(_ value: DynamoValue, _ key: String) throws -> JSONValue {
        switch value {
        case .string(let s): return .string(s)
        case .number(let n):
            guard let number = JSONValue.number(n.text) else {
                throw ConfigurationError("'\(key)' holds a number out of range: \(n.text)")
            }
            return number
        case .bool(let b): return .bool(b)
        case .null: return .null
        case .list(let l): return .array(try l.map { try json($0, key) })
        case .map(let m): return .object(try m.mapValues { try json($0, key) })
        case .stringSet(let s): return .array(s.sorted().map(JSONValue.string))
        case .numberSet, .binary, .binarySet:
            throw ConfigurationError("'\(key)' has DynamoDB type \(value.typeName), which no setting takes")
        }
    }
}

/// Where the workers read per-target configuration: the targets file, with the instance-config table
/// laid over it (the table wins, key by key) when one is configured. Read on every discovery, so a
/// change in the table applies at the next discovery without a restart.
public struct TargetConfigSource: Sendable {
    public let file: TargetConfigFile
    public let table: TargetConfigTable?
    let logger: Logger

    public init(
        file: TargetConfigFile, table: TargetConfigTable? = nil, logger: Logger = Logger(label: "target-config")
    ) {
        self.file = file
        self.table = table
        self.logger = logger
    }

    public static func fixed(_ file: TargetConfigFile) -> TargetConfigSource { TargetConfigSource(file: file) }

    /// The last good item of each target this source has read, for when its item turns malformed.
    private let lastGood = LastGoodItems()

    /// The configuration now. A skipped (malformed) item must not drop the target's safety settings
    /// (`requires_approval`, `dry_run`, `quarantined`) with it: the target keeps its last good item, or, if
    /// this source never read a good one, gets the safest settings (`requires_approval`: no step runs
    /// without a person). Each is logged as an error and counted (`recovery_target_config_skipped_total`)
    /// at every read until fixed. A table that cannot be read throws.
    public func current() async throws -> TargetConfigFile {
        guard let table else { return file }
        let snapshot = try await table.load(over: file)
        var items = snapshot.items
        lastGood.remember(snapshot.items)
        for skipped in snapshot.skipped {
            var logger = logger
            logger[metadataKey: "instance_id"] = "\(skipped.target)"
            let fallback: String
            if let good = lastGood.item(skipped.target) {
                items[skipped.target] = good
                fallback = "The target keeps its last good settings until the item is fixed."
            } else {
                items[skipped.target] = Self.safest
                fallback =
                    "No good item was read before: the target requires approval for every step until the item is fixed."
            }
            logger.error("\(skipped.description). \(fallback)")
            FleetMetrics.targetConfigSkipped.increment()
        }
        return file.overlaid(with: items)
    }

    /// What a target whose item cannot be read gets when there is no last good one.
    static let safest: [String: JSONValue] = ["requires_approval": .bool(true)]
}

/// The last good instance-config item per target, shared by the copies of one `TargetConfigSource`.
final class LastGoodItems: Sendable {
    private let items = Mutex<[String: [String: JSONValue]]>([:])
    func remember(_ good: [String: [String: JSONValue]]) { items.withLock { $0.merge(good) { $1 } } }
    func item(_ target: String) -> [String: JSONValue]? { items.withLock { $0[target] } }
}
