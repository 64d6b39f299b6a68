import Foundation
import HTTPTransport

/// `fleet-bench http --url URL [--requests N] [--concurrency C] [--fresh 1]`
///
/// Sends N GET requests through one `HTTPClient`, C at a time (C workers, each sending its share one after
/// the other), and prints throughput and latency percentiles. `--fresh 1` opens a new connection for every
/// request, as the website probes do. A warm-up of C requests (not measured) comes first.
func runHTTPBenchmark(_ options: BenchOptions) async {
    guard let url = options.string("url") else {
        FileHandle.standardError.write(
            Data("usage: fleet-bench http --url URL [--requests N] [--concurrency C] [--fresh 1]\n".utf8))
        exit(2)
    }
    let total = max(1, options.int("requests", default: 20_000))
    let concurrency = max(1, min(options.int("concurrency", default: 200), total))
    let fresh = options.int("fresh", default: 0) == 1
    let request = HTTPRequest(url: url, timeout: .seconds(30), freshConnection: fresh)
    let client = HTTPClient(maxConcurrentRequests: concurrency)
    defer { client.shutdown() }

    struct WorkerResult: Sendable {
        var latencies: [Duration] = []
        var failures = 0
        var firstFailure: String?
    }

    func run(_ count: Int) async -> (results: [WorkerResult], elapsed: Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        let results = await withTaskGroup(of: WorkerResult.self) { group in
            for worker in 0..<concurrency {
                let share = count / concurrency + (worker < count % concurrency ? 1 : 0)
                group.addTask {
                    var result = WorkerResult()
                    result.latencies.reserveCapacity(share)
                    for _ in 0..<share {
                        let sent = clock.now
                        do {
                            let response = try await client.execute(request)
                            if response.status == 200 {
                                result.latencies.append(clock.now - sent)
                                continue
                            }
                            result.firstFailure = result.firstFailure ?? "status \(response.status)"
                        } catch {
                            result.firstFailure = result.firstFailure ?? "\(error)"
                        }
                        result.failures += 1
                    }
                    return result
                }
            }
            var all: [WorkerResult] = []
            for await result in group { all.append(result) }
            return all
        }
        return (results, clock.now - start)
    }

    _ = await run(concurrency)  // warm-up: connections, DNS cache, TLS sessions
    let cpuBefore = processCPUSeconds()
    let (results, elapsed) = await run(total)
    let cpuPerRequest = (processCPUSeconds() - cpuBefore) / Double(total) * 1e6

    let latencies = results.flatMap(\.latencies).sorted()
    let failures = results.reduce(0) { $0 + $1.failures }
    func percentile(_ p: Double) -> String {
        guard !latencies.isEmpty else { return "n/a" }
        let index = min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.up)) - 1)
        return String(format: "%.2f ms", milliseconds(latencies[max(0, index)]))
    }
    let seconds = milliseconds(elapsed) / 1000
    let rate = Double(latencies.count) / seconds
    let mode = fresh ? "fresh connection per request" : "keep-alive"
    print(
        "http: \(total) requests, concurrency \(concurrency), \(mode): \(Int(rate.rounded())) req/s, "
            + "p50 \(percentile(0.50)), p99 \(percentile(0.99)), max \(percentile(1.0)), "
            + String(format: "%.2f s, %.0f µs of CPU per request", seconds, cpuPerRequest))
    if failures > 0 {
        let first = results.compactMap(\.firstFailure).first ?? "?"
        print("http: \(failures) of \(total) requests failed; first: \(first)")
    }
}

private func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}
