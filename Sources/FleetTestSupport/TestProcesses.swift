import Foundation
import Synchronization

/// Child processes for tests (fake servers, openssl), handled without `Process.waitUntilExit()`, which on
/// Linux spins on a run loop, and forever when Foundation misses the child's exit, and never waited for
/// on the cooperative pool: with 2 cores the pool has 2 threads, and one blocking wait on each stalled
/// every test of the process in CI for 20 s.
public enum TestProcesses {
    /// The real python3 (under pyenv, `python3` on PATH is a shell shim whose PID is not the server's, so
    /// a signal to it would miss the server), resolved once on a thread of its own.
    public static func python() async -> String {
        if let cached = pythonPath.withLock({ $0 }) { return cached }
        let path: String = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let found = try? run("/usr/bin/env", ["python3", "-c", "import sys; print(sys.executable)"])
                let path = (found ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                continuation.resume(returning: path.isEmpty ? "/usr/bin/python3" : path)
            }
        }
        pythonPath.withLock { $0 = path }
        return path
    }

    private static let pythonPath = Mutex<String?>(nil)

    /// Runs a tool to its end and returns its output (stdout and stderr); throws with the output when it
    /// fails. It blocks: call it off the pool, or for tools that end at once.
    public static func run(_ path: String, _ arguments: [String], in directory: URL? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // The output ends when the tool exits; then a bounded wait for Foundation to see the exit.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let text = String(decoding: data, as: UTF8.self)
        end(process, grace: 10, signal: false)
        guard !process.isRunning, process.terminationStatus == 0 else {
            throw ToolFailed(description: "\(path) \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text
    }

    /// Ends `process`: SIGTERM (unless `signal` is false), at most `grace` seconds for it to exit, then
    /// SIGKILL.
    public static func end(_ process: Process, grace: TimeInterval = 5, signal: Bool = true) {
        guard process.isRunning else { return }
        if signal { process.terminate() }
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    public struct ToolFailed: Error, CustomStringConvertible {
        public var description: String
    }
}
