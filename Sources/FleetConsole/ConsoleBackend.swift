import FleetControl
import Foundation

/// What the console reads and sends. The live one reads what `recoveryctl status` and `history` read and
/// sends commands as `recoveryctl` does, as the console's broker user relaying for the operator.
public protocol ConsoleBackend: Sendable {
    func status(now: Date) async throws -> StatusReport
    /// The target's newest history rows, oldest first.
    func history(target: String, limit: Int) async throws -> HistoryReport
    /// Publishes the command (its `onBehalfOf` names the person) and follows it for up to `timeout`.
    func send(_ request: CommandRequest, timeout: Duration) async throws -> CommandResult
}

public struct LiveConsoleBackend: ConsoleBackend {
    let statusReader: StatusReader
    let historyReader: HistoryReader?
    let sender: CommandSender

    public init(statusReader: StatusReader, historyReader: HistoryReader?, sender: CommandSender) {
        self.statusReader = statusReader
        self.historyReader = historyReader
        self.sender = sender
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
