import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import Prometheus
import Synchronization
import Testing

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
        try server.start()
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
}
