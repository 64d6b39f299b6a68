import AWSClient
import FleetRuntime
import FleetTestSupport
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import Synchronization
import Testing

@testable import FleetWorkers

/// The prober's self-check (ProbeCanary, docs/configuration.md `PROBE_CANARY_URL`) on the memory drivers.
@Suite("Probe canary")
struct ProbeCanaryTests {
    /// Log lines at warning and above, kept.
    final class Lines: Sendable {
        let kept = Mutex<[String]>([])
        var all: [String] { kept.withLock { $0 } }
        var logger: Logger {
            Logger(label: "probe-test") { _ in Handler(lines: self) }
        }
        struct Handler: LogHandler {
            let lines: Lines
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .info
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                let meta = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                lines.kept.withLock { $0.append("\(event.level) \(event.message) \(meta.joined(separator: " "))") }
            }
        }
    }

    static let canaryURL = "https://status.example.net/ping?token=s3cret"
    static let siteURL = "https://shop.example.com/health"

    struct Rig {
        let base = ProbeMemoryTests.Rig()
        let lines = Lines()
        let worker: ProbeWorker

        init(failuresToImpair: Int = 2) {
            var options = ProbeWorker.Options(proberId: "probe-a")
            var canary = ProbeCanary.Options(url: ProbeCanaryTests.canaryURL)
            canary.failuresToImpair = failuresToImpair
            options.canary = canary
            worker = ProbeWorker(
                options: options, discover: { [] }, http: base.http, ec2: base.statuses, claims: base.claims,
                publisher: base.publisher, topology: base.topology, logger: lines.logger, clock: base.clock.now)
        }

        var site: Target { ProbeMemoryTests.target("shop", url: ProbeCanaryTests.siteURL) }
        func published() throws -> Int { try base.observations().count }
    }

    @Test(
        "while the canary fails, this prober's checks are not published; said once each way; one failure is not enough")
    func canaryGatesObservations() async throws {
        let rig = Rig()
        let canary = try #require(rig.worker.canary)
        rig.base.http.script(Self.canaryURL, .fail(.couldNotConnect))
        rig.base.http.script(Self.siteURL, .fail(.couldNotConnect))

        // One failed canary check: the prober's checks still count.
        await canary.check()
        #expect(!canary.impaired)
        await rig.worker.checkAll([rig.site])
        #expect(try rig.published() == 1)

        // The second in a row: they stop counting. Further failures say nothing more.
        for _ in 0..<5 { await canary.check() }
        #expect(canary.impaired)
        for _ in 0..<3 { await rig.worker.checkAll([rig.site]) }
        #expect(try rig.published() == 1, "nothing from an impaired prober")
        let warnings = rig.lines.all.filter { $0.contains("canary fails") }
        #expect(warnings.count == 1, "said once: \(rig.lines.all)")
        #expect(warnings.first?.contains("canary=status.example.net") == true)
        #expect(!rig.lines.all.joined().contains("s3cret") && !rig.lines.all.joined().contains("/ping"))

        // The canary answers: checks count again, said once.
        rig.base.http.script(Self.canaryURL, .status(204))
        for _ in 0..<3 { await canary.check() }
        #expect(!canary.impaired)
        await rig.worker.checkAll([rig.site])
        #expect(try rig.published() == 2)
        #expect(rig.lines.all.filter { $0.contains("canary answers again") }.count == 1)
    }

    @Test("an impaired prober still publishes the EC2 status sweep (AWS's view, not its own)")
    func statusSweepStillGoesOut() async throws {
        let rig = Rig(failuresToImpair: 1)
        rig.base.http.script(Self.canaryURL, .status(503))
        rig.base.statuses.set(
            InstanceStatus(
                instanceId: "i-0shop", state: .stopped, systemStatus: StatusCheck("ok"),
                instanceStatus: StatusCheck("ok")))
        let worker = ProbeWorker(
            options: {
                var o = ProbeWorker.Options(proberId: "probe-a")
                o.canary = ProbeCanary.Options(url: Self.canaryURL)
                o.canary?.failuresToImpair = 1
                return o
            }(), discover: { [rig.site] }, http: rig.base.http, ec2: rig.base.statuses, claims: rig.base.claims,
            publisher: rig.base.publisher, topology: rig.base.topology, logger: rig.lines.logger,
            clock: rig.base.clock.now)
        await worker.canary?.check()
        #expect(worker.canary?.impaired == true, "a 503 is a failed canary")
        await worker.refreshTargets()
        await worker.checkInstanceStatus()
        await worker.checkAll([rig.site])
        let observations = try rig.base.observations().map(\.envelope.body)
        #expect(observations.count == 1 && observations.first?.source == .ec2Status, "\(observations)")
    }

    @Test("several canaries: one of them down is not the prober's network; all of them down is")
    func severalCanaries() async throws {
        let http = MemoryHTTP()
        var options = ProbeCanary.Options(urls: ["https://a.example.net/", "https://b.example.org/"])
        options.failuresToImpair = 2
        let canary = ProbeCanary(options: options, http: http, logger: Lines().logger)
        http.script("https://a.example.net/", .fail(.couldNotConnect))
        http.script("https://b.example.org/", .status(200))
        for _ in 0..<3 { await canary.check() }
        #expect(!canary.impaired, "b answers")
        http.script("https://b.example.org/", .status(502))
        for _ in 0..<2 { await canary.check() }
        #expect(canary.impaired, "none answers")
        #expect(canary.host == "a.example.net,b.example.org")
    }

    @Test("PROBE_CANARY_URL: none, http(s) URLs separated by commas, or a clear error")
    func configuration() throws {
        func canary(_ values: [String: String]) throws -> ProbeCanary.Options? {
            try WorkerEnvironment(kind: "probe", values: values).probeCanary()
        }
        #expect(try canary([:]) == nil)
        let set = try #require(try canary(["PROBE_CANARY_URL": "https://example.org/", "PROBE_CANARY_INTERVAL": "5"]))
        #expect(set.urls == ["https://example.org/"] && set.interval == .seconds(5))
        let two = try #require(try canary(["PROBE_CANARY_URL": "https://a.example.net/, http://b.example.org/ok"]))
        #expect(two.urls == ["https://a.example.net/", "http://b.example.org/ok"])
        #expect(throws: ConfigurationError.self) {
            try canary(["PROBE_CANARY_URL": "https://a.example.net/,example.org"])
        }
        #expect(throws: ConfigurationError.self) { try canary(["PROBE_CANARY_URL": "example.org"]) }
        #expect(throws: ConfigurationError.self) { try canary(["PROBE_CANARY_URL": "ftp://example.org/"]) }
    }
}
