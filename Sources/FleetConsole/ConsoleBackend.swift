import FleetControl
import FleetWorkers
import Foundation

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
    /// Writes the target's windows (nil: removes the setting), checked first: a bad value writes nothing.
    func setMaintenance(target: String, windows: String?, by person: String) async throws
}

extension ConsoleBackend {
    public func maintenance(target: String) async throws -> String? { throw ConsoleBackendNoTable() }
    public func setMaintenance(target: String, windows: String?, by person: String) async throws {
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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(windows), as: UTF8.self)
    }

    public func setMaintenance(target: String, windows: String?, by person: String) async throws {
        guard let configTable else { throw ConsoleBackendNoTable() }
        try await configTable.update(
            target: target, set: windows.map { [("maintenance", $0)] } ?? [],
            unset: windows == nil ? ["maintenance"] : [], over: targetsFile, updatedBy: "\(person) (console)")
    }

    public func status(now: Date) async throws -> StatusReport { try await statusReader.report(now: now) }

    public func history(target: String, limit: Int) async throws -> HistoryReport {
        guard let historyReader else {
            throw ConsoleError("no history table (RECOVERY_EVENTS_TABLE is not set)")
        }
        return try await historyReader.read(target: target, limit: limit)
    }

    public func send(_ request: CommandRequest, timeout: Duration) async throws -> CommandResult {
        try await sender.send(request, wait: true, timeout: timeout)
    }
}
