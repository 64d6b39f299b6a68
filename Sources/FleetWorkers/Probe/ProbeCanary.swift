import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import Synchronization

/// The prober's self-check (docs/configuration.md, `PROBE_CANARY_URL`): URLs that should always answer
/// (the operator's choice: a status page of their own, well-known sites). Several spread the risk: the
/// prober is judged impaired only when none of them answers, so one canary's own outage does not silence
/// every prober. While it is impaired, this prober's own
/// view of the network is suspect, so its HTTP checks do not count: the probe publishes none of them
/// (a failed check from a broken vantage point says nothing about the site, and one published would
/// count towards an outage). It says so once when it stops counting and once when it counts again (a
/// warning log line, `recovery_probe_canary_ok` 0 / 1, and the `canary` readiness check of `/healthz`).
/// EC2 status observations are AWS's view, not this prober's, and are still published.
public final class ProbeCanary: Sendable {
    public struct Options: Sendable {
        /// At least one; the check passes when any of them answers 2xx/3xx.
        public var urls: [String]
        /// Seconds between two canary checks (PROBE_CANARY_INTERVAL, default 15).
        public var interval: Duration = .seconds(15)
        /// Consecutive failed canary checks before the prober's checks stop counting (default 2, so one
        /// lost packet is not a broken network).
        public var failuresToImpair = 2
        public var timeout: Duration = .seconds(5)
        public init(url: String) { urls = [url] }
        public init(urls: [String]) { self.urls = urls }
    }

    let options: Options
    let http: any HTTPExecuting
    let logger: Logger
    private let state = Mutex<(failures: Int, impaired: Bool)>((0, false))

    public init(options: Options, http: any HTTPExecuting, logger: Logger) {
        self.options = options
        self.http = http
        self.logger = logger
        FleetMetrics.probeCanaryOK.record(1)
    }

    /// Whether this prober's checks do not count now.
    public var impaired: Bool { state.withLock { $0.impaired } }

    /// The hosts the canaries name, for log lines (never a path or query, which may carry a token).
    var host: String { options.urls.map { URLComponents(string: $0)?.host ?? "?" }.joined(separator: ",") }

    /// Asks one canary; nil when the task was cancelled.
    func ask(_ url: String) async -> (healthy: Bool, why: String)? {
        let request = HTTPRequest(
            url: url, timeout: options.timeout, connectTimeout: min(options.timeout, .seconds(5)),
            maxBodyBytes: 4096, followRedirects: true, freshConnection: true)
        do {
            let response = try await http.execute(request)
            return ((200...399).contains(response.status), "HTTP \(response.status)")
        } catch is CancellationError {
            return nil
        } catch let error as HTTPClientError {
            return (false, error.description)
        } catch {
            return (false, "\(error)")
        }
    }

    /// Checks the canaries once (together) and updates the state: healthy when any answers.
    public func check() async {
        let answers = await withTaskGroup(of: (healthy: Bool, why: String)?.self) { group in
            for url in options.urls { group.addTask { await self.ask(url) } }
            var all: [(healthy: Bool, why: String)] = []
            for await answer in group { if let answer { all.append(answer) } }
            return all
        }
        guard !answers.isEmpty else { return }  // cancelled: not a failure
        let healthy = answers.contains { $0.healthy }
        let why = answers.map(\.why).joined(separator: "; ")
        let change: Bool? = state.withLock { s in
            if healthy {
                s.failures = 0
                guard s.impaired else { return nil }
                s.impaired = false
                return false
            }
            s.failures += 1
            guard !s.impaired, s.failures >= max(1, options.failuresToImpair) else { return nil }
            s.impaired = true
            return true
        }
        switch change {
        case true?:
            FleetMetrics.probeCanaryOK.record(0)
            logger.warning(
                "canary fails: this prober's checks do not count until it answers again",
                metadata: ["canary": "\(host)", "failures": "\(options.failuresToImpair)", "last": "\(why)"])
        case false?:
            FleetMetrics.probeCanaryOK.record(1)
            logger.notice("canary answers again: this prober's checks count again", metadata: ["canary": "\(host)"])
        case nil:
            break
        }
    }

    /// Checks the canary every `interval` until the task is cancelled.
    func run(while running: @escaping @Sendable () -> Bool) async {
        while !Task.isCancelled, running() {
            await check()
            try? await Task.sleep(for: options.interval)
        }
    }
}

extension WorkerEnvironment {
    /// PROBE_CANARY_URL (one URL or several separated by commas; none: no self-check) and
    /// PROBE_CANARY_INTERVAL (seconds, default 15).
    public func probeCanary() throws -> ProbeCanary.Options? {
        let urls = list("PROBE_CANARY_URL")
        guard !urls.isEmpty else { return nil }
        for url in urls {
            guard let parts = URLComponents(string: url),
                ["http", "https"].contains(parts.scheme?.lowercased() ?? ""), let host = parts.host, !host.isEmpty
            else {
                throw ConfigurationError(
                    "PROBE_CANARY_URL must be http:// or https:// URLs with a host, separated by commas")
            }
        }
        var options = ProbeCanary.Options(urls: urls)
        options.interval = .milliseconds(Int64(try seconds("PROBE_CANARY_INTERVAL", default: 15) * 1000))
        return options
    }
}
