import Foundation
import InMemoryLogging
import Logging

/// Waits (bounded) until `condition` holds; true if it did. The memory drivers answer at once, so this is
/// short; the bound is generous because the whole suite on two loaded cores can stall every task for
/// tens of seconds.
func eventually(_ timeout: Duration = .seconds(60), _ condition: @Sendable () async throws -> Bool) async rethrows
    -> Bool
{
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// A logger that keeps every entry, at every level, and the text of each (message and metadata).
struct CapturedLogs {
    let handler: InMemoryLogHandler
    let logger: Logger

    init(label: String) {
        var handler = InMemoryLogHandler()
        handler.logLevel = .trace
        self.handler = handler
        logger = Logger(label: label, factory: { [handler] _ in handler })
    }

    /// Each entry as one line: level, message, metadata.
    var lines: [String] { handler.entries.map { "\($0.level) \($0.message) \($0.metadata)" } }
}
