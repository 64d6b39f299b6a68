import FleetTestSupport
import Foundation
import Testing

/// A python3 test server from Fixtures/servers, started on a free loopback port and stopped by its own
/// PID. The script prints `PORT=<n>` once it listens.
final class PythonServer: @unchecked Sendable {
    // Invariant: `process` is only touched by start (before sharing) and stop (idempotent, locked).
    private let process: Process
    private let lock = NSLock()
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)" }

    static func scriptPath(_ name: String) -> String {
        guard let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("the Fixtures resource folder is missing from the test bundle")
        }
        return fixtures.appendingPathComponent("servers").appendingPathComponent(name).path
    }

    private init(process: Process, port: Int) {
        self.process = process
        self.port = port
    }

    struct StartError: Error, CustomStringConvertible {
        var description: String
    }

    static func start(_ script: String, arguments: [String] = []) async throws -> PythonServer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: await TestProcesses.python())
        process.arguments = ["-u", scriptPath(script)] + arguments
        let stdout = Pipe()
        let stderrPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("pyserver-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: stderrPath)
        try process.run()
        // Read the PORT line off the cooperative pool: the read blocks.
        let line: String = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var buffer = Data()
                while !buffer.contains(UInt8(ascii: "\n")) {
                    let chunk = stdout.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    buffer.append(chunk)
                }
                continuation.resume(returning: String(decoding: buffer, as: UTF8.self))
            }
        }
        guard let portText = line.split(separator: "\n").first?.split(separator: "=").last,
            line.hasPrefix("PORT="), let port = Int(portText)
        else {
            let server = PythonServer(process: process, port: 0)
            server.stop()
            let log = (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? ""
            throw StartError(description: "\(script) did not start: \(line) \(log)")
        }
        return PythonServer(process: process, port: port)
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        TestProcesses.end(process, grace: 2)
    }

    deinit { stop() }

    /// `GET path` on the server, as JSON.
    func json(_ path: String) async throws -> [String: Any] {
        let response = try await testHTTP.execute(.init(url: baseURL + path))
        let object = try JSONSerialization.jsonObject(with: Data(response.body))
        return object as? [String: Any] ?? [:]
    }

    /// `POST path` with a JSON body.
    func post(_ path: String, json: [String: Any]) async throws {
        let body = try JSONSerialization.data(withJSONObject: json)
        let response = try await testHTTP.execute(
            .init(
                method: "POST", url: baseURL + path, headers: [("Content-Type", "application/json")],
                body: [UInt8](body)))
        #expect(response.status == 200)
    }
}

/// Runs `body` with a fresh server and stops it afterwards, even on failure.
func withPythonServer<T>(
    _ script: String, arguments: [String] = [], _ body: (PythonServer) async throws -> T
) async throws -> T {
    let server = try await PythonServer.start(script, arguments: arguments)
    defer { server.stop() }
    return try await body(server)
}

/// A clock tests move by hand.
final class ManualClock: @unchecked Sendable {
    // Invariant: `current` is only accessed under `lock`.
    private let lock = NSLock()
    private var current: Date

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = start }

    var now: Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    func advance(by seconds: TimeInterval) {
        lock.lock()
        current = current.addingTimeInterval(seconds)
        lock.unlock()
    }

    var closure: @Sendable () -> Date { { self.now } }
}
