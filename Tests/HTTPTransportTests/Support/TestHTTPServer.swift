import FleetTestSupport
import Foundation

/// A Python HTTP(S) server on a free loopback port, run as a child process for one test.
///
/// The server picks its own port (it binds port 0 and prints the number), so there is no race for a
/// port. It exits when `stop()` terminates it, and on its own when this process dies (its stdin closes or
/// its parent changes), so a crashed test run leaves nothing behind.
final class TestHTTPServer {
    let port: Int
    private let process: Process
    private let stdin: Pipe

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var tlsBaseURL: String { "https://127.0.0.1:\(port)" }

    /// - Parameter tls: the server's certificate chain and key, for HTTPS.
    /// Async: the wait for the `PORT` line runs on a thread of its own, never on the cooperative pool.
    init(tls: (certificate: String, key: String)? = nil) async throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: await TestProcesses.python())
        var arguments = ["-u", "-c", Self.script]
        if let tls { arguments += [tls.certificate, tls.key] }
        process.arguments = arguments
        stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        // The first line is "PORT <n>" once the socket listens.
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
            TestProcesses.end(process)
            throw TestSupportError("test HTTP server did not start: \(text)")
        }
        self.port = port
    }

    deinit { stop() }

    func stop() {
        TestProcesses.end(process)
        try? stdin.fileHandleForWriting.close()
    }

    static let script = #"""
        import http.server, json, os, signal, socketserver, ssl, sys, threading, time

        # The test runner's threads block most signals, and a spawned child inherits that mask: without this,
        # SIGTERM from the test would stay pending forever.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

        lock = threading.Lock()
        current = 0
        highest = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def route(self):
                global current, highest
                path, _, query = self.path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if path == "/hello":
                    self.reply(200, b"hello", [("X-Test", "yes"), ("Content-Type", "text/plain")])
                elif path == "/echo":
                    self.reply(200, body, [("X-Method", self.command), ("X-Body-Length", str(len(body)))])
                elif path == "/headers":
                    lines = "".join("%s: %s\n" % (k.lower(), v) for k, v in self.headers.items())
                    self.reply(200, lines.encode())
                elif path == "/bytes":
                    self.reply(200, b"x" * int(params.get("n", "0")))
                elif path == "/status":
                    self.reply(int(params.get("code", "200")), b"status")
                elif path == "/redirect":
                    self.reply(302, b"redirect body", [("Location", "/hello"), ("X-Redirect", "1")])
                elif path == "/folded":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n  second\r\nX-Plain: p\r\n"
                                     b"Content-Length: 2\r\n\r\nok")
                elif path == "/slow":
                    with lock:
                        current += 1
                        highest = max(highest, current)
                    time.sleep(int(params.get("ms", "20")) / 1000.0)
                    with lock:
                        current -= 1
                    self.reply(200, b"slow")
                elif path == "/stats":
                    with lock:
                        self.reply(200, json.dumps({"highest": highest}).encode())
                else:
                    self.reply(404, b"no such path")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = route

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024
            context = None

            def finish_request(self, request, client_address):
                if self.context is not None:
                    request = self.context.wrap_socket(request, server_side=True)
                self.RequestHandlerClass(request, client_address, self)

            def handle_error(self, request, client_address):
                pass

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
        if len(sys.argv) >= 3:
            server.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.context.load_cert_chain(sys.argv[1], sys.argv[2])
        print("PORT %d" % server.server_address[1], flush=True)
        server.serve_forever()
        """#
}

struct TestSupportError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        try lock.withLock { try body(&value) }
    }
}

/// Runs a command line tool to completion; throws with its output when it fails.
@discardableResult
func runTool(_ path: String, _ arguments: [String], in directory: URL? = nil) throws -> String {
    do {
        return try TestProcesses.run(path, arguments, in: directory)
    } catch let failed as TestProcesses.ToolFailed {
        throw TestSupportError(failed.description)
    }
}
