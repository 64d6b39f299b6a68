import FleetTestSupport
import Foundation
import HTTPTransport

/// A stand-in for Slack and Teams: a small Python HTTP server on a free loopback port, run as a child
/// process for one test, that records every POST it receives.
///
/// Every POST (and every GET but `/_requests`) is answered 200 `ok`, unless
/// `setStatus(_:forPathsStartingWith:answer:http:)` chose another code (and body) for its path (the test
/// switches a channel "down" and back "up"). `GET /_requests` returns what was recorded, as JSON
/// (`[{"method":…,"path":…,"content_type":…,"headers":…,"body":…}]`). The
/// server exits when `stop()` terminates it, when its stdin closes, or when its parent changes, so a
/// crashed test run leaves nothing behind.
final class WebhookReceiver: Sendable {
    let port: Int
    private let process: Process
    private let stdin: Pipe

    var baseURL: String { "http://127.0.0.1:\(port)" }

    struct Request: Sendable {
        var method = "POST"
        var path: String
        var contentType: String
        var body: Data
        /// Every header as the server saw it, `name: value` lines with lower-case names.
        var headers: [String] = []
        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    }

    /// `script` prints `PORT <n>` once it listens; by default the webhook receiver.
    ///
    /// Async because the start blocks for seconds (a private moto imports for a while): the wait for the
    /// `PORT` line runs on a thread of its own. Blocking the cooperative pool here (two threads on this
    /// machine) stalled every other test in the process, long enough to expire Redis locks held by
    /// unrelated tests.
    init(script: String = WebhookReceiver.script) async throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: await TestProcesses.python())
        process.arguments = ["-u", "-c", script]
        stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        let line: Data = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var line = Data()
                while !line.contains(UInt8(ascii: "\n")) {
                    let chunk = stdout.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    line.append(chunk)
                }
                continuation.resume(returning: line)
            }
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5)) else {
            process.terminate()
            throw ReceiverError(message: "test server did not start: \(text)")
        }
        self.port = port
    }

    deinit { stop() }

    func stop() {
        // A bounded wait, then SIGKILL; the server also exits when its stdin closes below.
        TestProcesses.end(process)
        try? stdin.fileHandleForWriting.close()
    }

    /// Answers requests to paths starting with `prefix` with `status` from now on (200: back to normal),
    /// and with `answer` as the body when given (else `ok`, `invalid_payload` for 4xx, `service
    /// unavailable` for other codes).
    func setStatus(_ status: Int, forPathsStartingWith prefix: String, answer: String? = nil, http: HTTPClient)
        async throws
    {
        let path = prefix.hasPrefix("/") ? String(prefix.dropFirst()) : prefix
        let response = try await http.execute(
            HTTPRequest(
                method: "POST", url: baseURL + "/_control/\(status)/\(path)",
                body: Array((answer ?? "").utf8)))
        guard response.status == 200 else { throw ReceiverError(message: "control request failed: \(response.status)") }
    }

    func requests(http: HTTPClient) async throws -> [Request] {
        let response = try await http.execute(HTTPRequest(url: baseURL + "/_requests", maxBodyBytes: 64 << 20))
        let list = try JSONSerialization.jsonObject(with: Data(response.body)) as? [[String: String]] ?? []
        return list.map {
            Request(
                method: $0["method"] ?? "POST", path: $0["path"] ?? "", contentType: $0["content_type"] ?? "",
                body: Data(($0["body"] ?? "").utf8),
                headers: ($0["headers"] ?? "").split(separator: "\n").map(String.init))
        }
    }

    struct ReceiverError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// A private moto server on a free port, for tests that read back what was sent through
    /// `/moto-api/data.json`: the shared server's dump holds every other suite's state and takes minutes.
    static let motoScript = #"""
        import os, signal, sys, threading, time
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from moto.server import ThreadedMotoServer
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        def watch_parent():
            parent = os.getppid()
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch_parent, daemon=True).start()
        print("PORT %d" % server.get_host_and_port()[1], flush=True)
        sys.stdin.buffer.read()
        os._exit(0)
        """#

    static let script = #"""
        import http.server, json, os, signal, socketserver, sys, threading, time

        # A child inherits the test runner's blocked signals; unblock SIGTERM so stop() works.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        lock = threading.Lock()
        recorded = []
        statuses = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def answer(self, code, body):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def do_GET(self):
                if self.path == "/_requests":
                    with lock:
                        data = json.dumps(recorded)
                    self.answer(200, data)
                else:
                    self.do_POST()
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8")
                parts = self.path.split("/")
                if len(parts) > 3 and parts[1] == "_control":
                    with lock:
                        statuses["/" + "/".join(parts[3:])] = (int(parts[2]), body or None)
                    self.answer(200, "ok")
                    return
                headers = "".join("%s: %s\n" % (k.lower(), v) for k, v in self.headers.items())
                with lock:
                    recorded.append({"method": self.command, "path": self.path, "content_type": self.headers.get("Content-Type", ""),
                                     "headers": headers, "body": body})
                    status, text = next((answer for prefix, answer in statuses.items() if self.path.startswith(prefix)), (200, None))
                if text is None:
                    text = "ok" if status == 200 else "invalid_payload" if 400 <= status < 500 else "service unavailable"
                self.answer(status, text)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        def watch_parent():
            parent = os.getppid()
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)

        def watch_stdin():
            sys.stdin.buffer.read()
            os._exit(0)

        threading.Thread(target=watch_parent, daemon=True).start()
        threading.Thread(target=watch_stdin, daemon=True).start()
        server = Server(("127.0.0.1", 0), Handler)
        print("PORT %d" % server.server_address[1], flush=True)
        server.serve_forever()
        """#
}
