import AMQPTransport
import Foundation
import Testing
#if canImport(Glibc)
    import Glibc
#endif

/// The one broker-restart test. It runs a PRIVATE broker (its own ports, node name and data folder,
/// started by scripts/services.sh) so that restarting it cannot disturb the shared broker the other
/// tests use at the same time. It needs FLEET_SERVICES_SCRIPT (scripts/services.sh env sets it).
let servicesScript = ProcessInfo.processInfo.environment["FLEET_SERVICES_SCRIPT"]
/// The private brokers listen on this port and the next two (AMQP), +10000 (UI) and +20000
/// (distribution). Move it to run two checkouts' suites at once on one machine.
let privateBrokerPortBase = Int(ProcessInfo.processInfo.environment["FLEET_TEST_BROKER_PORT"] ?? "") ?? 5690

@Suite("AMQP broker restart", .enabled(if: servicesScript != nil, "set FLEET_SERVICES_SCRIPT"))
struct BrokerRestartTests {
    struct PrivateBroker {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fleet-broker-\(UUID().uuidString.prefix(8))"
        ).path
        /// Each test gets its own ports: the tests of this suite run in parallel.
        let port: Int
        /// An amqps listener with a throwaway CA, when set.
        var tls: TLSFiles?

        struct TLSFiles {
            let port: Int
            let dir: String
            var ca: String { "\(dir)/ca.pem" }
            var cert: String { "\(dir)/server.pem" }
            var key: String { "\(dir)/server.key" }

            /// A CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI.
            static func make(port: Int) async throws -> TLSFiles {
                let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "fleet-tls-\(UUID().uuidString.prefix(8))"
                ).path
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let script = """
                    set -e; cd '\(dir)'
                    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=fleet-test-ca 2>/dev/null
                    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
                    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
                    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
                    """
                let status = try await spawnAndWait(
                    ["/bin/bash", "-c", script], environment: ProcessInfo.processInfo.environment)
                try #require(status == 0, "openssl could not make the test certificates")
                return TLSFiles(port: port, dir: dir)
            }
        }
        var url: String { "amqp://guest:guest@127.0.0.1:\(port)/%2f" }

        func run(_ verb: String) async throws {
            var env = ProcessInfo.processInfo.environment
            env["FLEET_SERVICES_DIR"] = dir
            env["RABBITMQ_PORT"] = "\(port)"
            env["RABBITMQ_MGMT_PORT"] = "\(port + 10000)"
            env["RABBITMQ_DIST_PORT"] = "\(port + 20000)"
            env["RABBITMQ_NODENAME"] = "fleet-test-\(port)@localhost"
            if let tls {
                env["RABBITMQ_TLS_PORT"] = "\(tls.port)"
                env["RABBITMQ_TLS_CERT"] = tls.cert
                env["RABBITMQ_TLS_KEY"] = tls.key
                env["RABBITMQ_TLS_CA"] = tls.ca
            }
            let status = try await spawnAndWait(["/bin/bash", servicesScript!, verb, "rabbitmq"], environment: env)
            try #require(status == 0, "services.sh \(verb) rabbitmq failed")
        }

        /// Starts the node, runs `body`, and always stops the node and removes its folder afterwards.
        static func with(port: Int, tls: TLSFiles? = nil, _ body: (PrivateBroker) async throws -> Void) async throws {
            let broker = PrivateBroker(port: port, tls: tls)
            try await broker.run("start")
            do {
                try await body(broker)
            } catch {
                try? await broker.run("stop")
                try? FileManager.default.removeItem(atPath: broker.dir)
                throw error
            }
            try await broker.run("stop")
            try? FileManager.default.removeItem(atPath: broker.dir)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func confirmedMessagesSurviveABrokerRestartAndAreConsumedExactlyOnce() async throws {
        try await PrivateBroker.with(port: privateBrokerPortBase) { broker in
            let config = try configuration(broker.url, name: "restart-test")
            let scratch = ScratchTopology()
            let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
            let consumer = AMQPConsumer(
                configuration: config, topology: scratch.topology, queue: scratch.queue, prefetch: 50)

            // Confirmed before the restart, and one delivered-but-unacked when the broker goes down.
            for i in 0..<20 { try await publisher.publish(scratch.message("before-\(i)", id: "before-\(i)")) }
            let collector = DeliveryCollector(consumer)
            let early = await collector.wait(for: 20)
            #expect(early.count == 20)
            for delivery in early.dropLast() { #expect(await consumer.ack(delivery)) }
            let unacked = early.last!

            try await broker.run("restart")

            // The ack for a delivery from the dead connection cannot count; the broker redelivers it.
            #expect(await consumer.ack(unacked) == false)
            // Publishing resumes on the reconnected publisher.
            for i in 0..<20 { try await publisher.publish(scratch.message("after-\(i)", id: "after-\(i)")) }

            let all = await collector.wait(for: 41, timeout: .seconds(60))
            let afterRestart = all.dropFirst(20)
            for delivery in afterRestart { await consumer.ack(delivery) }
            let ids = afterRestart.compactMap(\.properties.messageId)
            #expect(ids.filter { $0 == unacked.properties.messageId }.count == 1, "the unacked message comes back once")
            #expect(Set(ids) == Set((0..<20).map { "after-\($0)" } + [unacked.properties.messageId!]))
            #expect(ids.count == Set(ids).count, "nothing is consumed twice after the reconnect")
            #expect(consumer.isConnected && publisher.isConnected)

            // Nothing more is waiting: every confirmed message was consumed exactly once.
            try await Task.sleep(for: .milliseconds(300))
            #expect(await collector.received.count == 41)
            await consumer.shutdown()
            await publisher.shutdown()
            let admin = AMQPAdmin(configuration: config)
            #expect(try await admin.messageCount(queue: scratch.queue) == 0)
            await admin.close()
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func aPublishDuringTheOutageIsConfirmedOnceTheBrokerIsBack() async throws {
        let tls = try await PrivateBroker.TLSFiles.make(port: privateBrokerPortBase + 2)
        defer { try? FileManager.default.removeItem(atPath: tls.dir) }
        try await PrivateBroker.with(port: privateBrokerPortBase + 1, tls: tls) { broker in
            // amqps: verified against the test CA it works; without the CA the handshake is refused.
            let tlsURL = try AMQPURL("amqps://guest:guest@localhost:\(tls.port)/%2f")
            let trusted = AMQPAdmin(configuration: AMQPConfiguration(url: tlsURL, caFile: tls.ca))
            try await trusted.declare(.empty)
            await trusted.close()
            let untrusted = AMQPAdmin(configuration: AMQPConfiguration(url: tlsURL))
            do {
                try await untrusted.declare(.empty)
                Issue.record("amqps without the CA must fail verification")
            } catch let error as AMQPError {
                guard case .connectionFailed = error else {
                    Issue.record("wrong error \(error)")
                    return
                }
            }
            let config = try configuration(broker.url, name: "outage-test")
            let scratch = ScratchTopology()
            let publisher = AMQPPublisher(configuration: config, topology: scratch.topology)
            try await publisher.publish(scratch.message("warm-up", id: "warm-up"))

            try await broker.run("stop")
            // Published while the broker is down: it waits and is retried, not lost.
            async let confirmed: Void = publisher.publish(scratch.message("during-outage", id: "during-outage"))
            try await Task.sleep(for: .milliseconds(300))
            #expect(!publisher.isConnected)
            try await broker.run("start")
            try await confirmed

            let consumer = AMQPConsumer(configuration: config, topology: scratch.topology, queue: scratch.queue)
            let collector = DeliveryCollector(consumer, autoAck: true)
            let got = await collector.wait(for: 2)
            #expect(got.compactMap(\.properties.messageId).sorted() == ["during-outage", "warm-up"])
            await consumer.shutdown()
            await publisher.shutdown()
        }
    }
}

/// Runs a command to completion on a thread of its own and returns its exit status. It takes seconds
/// (a broker start or restart), so it must not block one of the cooperative pool's few threads: that
/// would stall every other test running in parallel. (posix_spawn + waitpid, because Foundation's
/// Process.waitUntilExit never returned here for a script that leaves a daemon running.)
func spawnAndWait(_ argv: [String], environment: [String: String]) async throws -> Int32 {
    let result: Result<Int32, POSIXError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            var pid: pid_t = 0
            // The child must not inherit the test process's sockets (posix_spawn does not close them): a
            // broker that kept a copy of a test's connection would hold it open after the test closed it.
            // So a small bash prologue closes every inherited descriptor above 2, then runs the command.
            let closeInherited =
                #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null; exec "$@""#
            let cArgs = (["/bin/bash", "-c", closeInherited, "spawn"] + argv).map { strdup($0) } + [nil]
            let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { (cArgs + cEnv).forEach { free($0) } }
            let rc = posix_spawn(&pid, "/bin/bash", nil, nil, cArgs, cEnv)
            guard rc == 0 else {
                continuation.resume(returning: .failure(POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO)))
                return
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            continuation.resume(
                returning: .success((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)))
        }
        thread.start()
    }
    return try result.get()
}
