import FleetControl
import FleetWorkers
import Foundation
import RecoveryCore

/// What the console reads and sends. The live one reads what `recoveryctl status` and `history` read and
/// sends commands as `recoveryctl` does, as the console's broker user relaying for the operator.
public protocol ConsoleBackend: Sendable {
    func status(now: Date) async throws -> StatusReport
    /// The target's newest history rows, oldest first.
    func history(target: String, limit: Int) async throws -> HistoryReport
    /// Publishes the command (its `onBehalfOf` names the person) and follows it for up to `timeout`.
    func send(_ request: CommandRequest, timeout: Duration) async throws -> CommandResult
    /// The target's own maintenance windows (its `maintenance` setting in the instance-config table), as
    /// JSON text; nil when it has none.
    func maintenance(target: String) async throws -> String?
    /// Changes the target's windows: `change` gets them as read (JSON text, nil: none) and returns the new
    /// ones (nil: remove the setting); it runs again if the item changed meanwhile, so a concurrent change is
    /// never overwritten. Checked before writing: a bad value writes nothing. Returns what was written.
    func updateMaintenance(target: String, by person: String, change: @escaping @Sendable (String?) throws -> String?)
        async throws -> String?
}

extension ConsoleBackend {
    public func maintenance(target: String) async throws -> String? { throw ConsoleBackendNoTable() }
    public func updateMaintenance(
        target: String, by person: String, change: @escaping @Sendable (String?) throws -> String?
    ) async throws -> String? {
        throw ConsoleBackendNoTable()
    }
}

/// The console was started without INSTANCE_CONFIG_TABLE: windows are set with the targets file only.
public struct ConsoleBackendNoTable: Error, CustomStringConvertible {
    public var description: String {
        "no instance-config table (INSTANCE_CONFIG_TABLE): a target's windows are set in the targets file"
    }
}

public struct LiveConsoleBackend: ConsoleBackend {
    let statusReader: StatusReader
    let historyReader: HistoryReader?
    let sender: CommandSender
    let configTable: TargetConfigTable?
    /// The targets file the table is laid over (a written value is checked against the two together).
    let targetsFile: TargetConfigFile
    let inFlight = CommandsInFlight()

    public init(
        statusReader: StatusReader, historyReader: HistoryReader?, sender: CommandSender,
        configTable: TargetConfigTable? = nil, targetsFile: TargetConfigFile = .empty
    ) {
        self.statusReader = statusReader
        self.historyReader = historyReader
        self.sender = sender
        self.configTable = configTable
        self.targetsFile = targetsFile
    }

    public func maintenance(target: String) async throws -> String? {
        guard let configTable else { throw ConsoleBackendNoTable() }
        guard let windows = try await configTable.settings(of: target)?["maintenance"] else { return nil }
        return try Self.text(windows)
    }

    public func updateMaintenance(
        target: String, by person: String, change: @escaping @Sendable (String?) throws -> String?
    ) async throws -> String? {
        guard let configTable else { throw ConsoleBackendNoTable() }
        let written = try await configTable.update(target: target, over: targetsFile, updatedBy: "\(person) (console)")
        {
            settings in
            let windows = try change(try settings["maintenance"].map(Self.text))
            return (windows.map { [("maintenance", $0)] } ?? [], windows == nil ? ["maintenance"] : [])
        }
        guard case .object(let settings) = try JSONDecoder().decode(JSONValue.self, from: written),
            let windows = settings["maintenance"]
        else { return nil }
        return try Self.text(windows)
    }

    static func text(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public func status(now: Date) async throws -> StatusReport { try await statusReader.report(now: now) }

    public func history(target: String, limit: Int) async throws -> HistoryReport {
        guard let historyReader else {
            throw ConsoleError("no history table (RECOVERY_EVENTS_TABLE is not set)")
        }
        return try await historyReader.read(target: target, limit: limit)
    }

    public func send(_ request: CommandRequest, timeout: Duration) async throws -> CommandResult {
        // Each command opens its own connections to follow its answer (as recoveryctl does): at most 16 at
        // once, from the buttons and Slack together, so a flood cannot exhaust the broker's connections.
        guard await inFlight.enter() else {
            throw ConsoleError("\(CommandsInFlight.limit) commands are in flight already; try again in a moment")
        }
        defer { Task { await inFlight.leave() } }
        return try await sender.send(request, wait: true, timeout: timeout)
    }
}

actor CommandsInFlight {
    static let limit = 16
    private var count = 0
    func enter() -> Bool {
        guard count < Self.limit else { return false }
        count += 1
        return true
    }
    func leave() { count -= 1 }
}
