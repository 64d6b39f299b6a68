import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import Prometheus
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("JSON logs")
struct JSONLogTests {
    func capture(_ body: (Logger) -> Void) -> [[String: Any]] {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "probe") { label in
            JSONLogHandler(label: label, level: .debug, sink: .init { line in lines.withLock { $0.append(line) } })
        }
        logger[metadataKey: "instance_id"] = "i-0abc"
        body(logger)
        return lines.withLock { $0 }.map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    @Test func oneJSONObjectPerLineWithFixedKeys() {
        let records = capture { $0.info("probe failed", metadata: ["incident_id": "inc-1", "step": "restart"]) }
        #expect(records.count == 1)
        let r = records[0]
        #expect(r["msg"] as? String == "probe failed")
        #expect(r["level"] as? String == "info")
        #expect(r["logger"] as? String == "probe")
        #expect(r["instance_id"] as? String == "i-0abc")
        #expect(r["incident_id"] as? String == "inc-1")
        #expect(r["step"] as? String == "restart")
        #expect((r["ts"] as? String)?.hasSuffix("Z") == true)
    }

    @Test func secretsAreMaskedEvenWhenCodeLogsThem() {
        let records = capture {
            $0.warning(
                "connecting to amqp://fleet:hunter2@mq:5672/ failed",
                metadata: [
                    "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
                    "aws_secret_access_key": "wJalrXUtnFEMI",
                    "broker": "amqps://u:p4ss@host/vhost",
                    "access_key_id": "AKIDEXAMPLE",
                ])
        }
        let text = records.map { "\($0)" }.joined()
        for secret in ["hunter2", "hooks.slack.com/services/T000", "wJalrXUtnFEMI", "p4ss"] {
            #expect(!text.contains(secret), "\(secret) leaked")
        }
        #expect(records[0]["access_key_id"] as? String == "AKIDEXAMPLE", "ids are not secrets")
        #expect((records[0]["msg"] as? String)?.contains("amqp://fleet:***@mq:5672/") == true)
    }
}

@Suite("Status server")
struct StatusServerTests {
    @Test func servesMetricsAndReadiness() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "recovery_probes_total", labels: [("result", "ok")]).increment(by: Int64(3))
        let broker = Atomic<Bool>(false)
        let server = StatusServer(
            host: "127.0.0.1", port: 0, registry: registry,
            checks: ["broker": { broker.load(ordering: .relaxed) }, "redis": { true }],
            logger: Logger(label: "test"))
        try await server.start()
        defer { server.stop() }
        let http = HTTPClient()
        defer { http.shutdown() }
        let base = "http://127.0.0.1:\(server.port)"

        let metrics = try await http.execute(HTTPRequest(url: "\(base)/metrics"))
        #expect(metrics.status == 200)
        #expect(metrics.bodyString.contains(#"recovery_probes_total{result="ok"} 3"#))

        let notReady = try await http.execute(HTTPRequest(url: "\(base)/healthz"))
        #expect(notReady.status == 503)
        #expect(notReady.bodyString.contains(#""broker":false"#))
        broker.store(true, ordering: .relaxed)
        let ready = try await http.execute(HTTPRequest(url: "\(base)/healthz"))
        #expect(ready.status == 200)
        #expect(try await http.execute(HTTPRequest(url: "\(base)/nope")).status == 404)
    }

    struct ConnectFailed: Error { var errno: Int32 }

    /// A TCP connection to the server on loopback, as a raw socket.
    static func connectRaw(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard fd >= 0, connected == 0 else { throw ConnectFailed(errno: errno) }
        return fd
    }

    @Test(
        "clients that send nothing, or ask and never read, neither stall the others nor stay open past the idle timeout"
    )
    func slowClientsStallNobody() async throws {
        let registry = PrometheusCollectorRegistry()
        for i in 0..<3000 {  // about 150 KB of /metrics, more than a socket's buffers hold
            registry.makeGauge(name: "recovery_test_gauge_\(i)", labels: [("n", "\(i)")]).set(Double(i))
        }
        let server = StatusServer(
            host: "127.0.0.1", port: 0, registry: registry, checks: ["broker": { true }],
            logger: Logger(label: "test"), idleTimeout: .seconds(1))
        try await server.start()
        defer { server.stop() }

        // Five connections that never send a request.
        let silent = try (0..<5).map { _ in try Self.connectRaw(server.port) }
        defer { for fd in silent { close(fd) } }
        // One that asks for /metrics twenty times over and never reads an answer.
        let greedy = try Self.connectRaw(server.port)
        defer { close(greedy) }
        let ask = Array(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 20).utf8)
        #expect(ask.withUnsafeBytes { send(greedy, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == ask.count)

        // Everyone else is answered, each within a 3 s timeout (the old one-at-a-time server spent 2 s on
        // each silent client and then blocked for good writing to the greedy one).
        let http = HTTPClient()
        defer { http.shutdown() }
        let base = "http://127.0.0.1:\(server.port)"
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<20 {
                group.addTask {
                    let path = i % 2 == 0 ? "/healthz" : "/metrics"
                    return try await http.execute(HTTPRequest(url: base + path, timeout: .seconds(3))).status
                }
            }
            for try await status in group { #expect(status == 200) }
        }

        // The silent connections are closed by the server after the idle timeout: a read sees the end.
        for fd in silent {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pfd, 1, 10_000) == 1, "closed within 10 s")
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, 0) <= 0, "end of stream, nothing sent")
        }
    }
}
