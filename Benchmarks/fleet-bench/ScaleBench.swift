import AMQPTransport
import FleetRuntime
import Foundation
import RecoveryCore

/// The observer of the scale benchmark (scripts/bench-scale.sh), which runs the real probe and decision
/// executables over `--targets` targets on the real broker and Redis. This process only watches:
///
/// - a tap queue bound to every `observation.#` message of the fleet's exchange (a copy: the decision
///   worker consumes its own queue) gives each observation's arrival time;
/// - the actuator's request queue (no actuator runs) gives each action request's arrival time;
/// - the site's access log (`--access-log`, nginx `$msec $uri`) gives each check's start time, for the
///   probe's scheduling jitter;
/// - `/proc/<pid>/status` gives the workers' memory (`--pids name=pid,…`).
///
/// After a warm-up in which every target is observed, it creates `--fail-flag` (the site then answers 503
/// for a quarter of the targets) and waits until each of them has an action request: the figure is the
/// time from a target's `--threshold`th failed observation to its request.
func runScaleBenchmark(_ options: BenchOptions) async {
    guard let prefix = options.string("prefix"), let failFlag = options.string("fail-flag"),
        let accessLog = options.string("access-log")
    else {
        emit("scale: pass --prefix, --fail-flag and --access-log (scripts/bench-scale.sh does)")
        exit(2)
    }
    let targets = options.int("targets", default: 10_000)
    let failing = Set((0..<targets).filter { $0 % 4 == 0 }.map { "scale-\($0)" })
    let threshold = options.int("threshold", default: 3)
    let warmup = Duration.seconds(options.int("warmup", default: 120))
    let pids = (options.string("pids") ?? "").split(separator: ",").compactMap { pair -> (String, Int32)? in
        let parts = pair.split(separator: "=")
        guard parts.count == 2, let pid = Int32(parts[1]) else { return nil }
        return (String(parts[0]), pid)
    }
    let amqp = BenchServices(options).amqp
    let topology = FleetTopology(prefix: prefix)
    let tap = AMQPTopology(
        queues: [.init(name: "\(prefix).bench.tap", durable: false, exclusive: false, autoDelete: true)],
        bindings: [.init(exchange: topology.exchange, queue: "\(prefix).bench.tap", routingKey: "observation.#")])
    let admin = AMQPAdmin(configuration: amqp)
    do { try await admin.declare(tap) } catch {
        emit("scale: cannot declare the tap queue: \(error)")
        exit(1)
    }
    let log = ScaleLog()
    let observations = AMQPConsumer(configuration: amqp, topology: tap, queue: "\(prefix).bench.tap", prefetch: 500)
    let requests = AMQPConsumer(
        configuration: amqp, topology: topology.amqp, queue: topology.actionRequestsQueue, prefetch: 500)
    let watching = Task {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await delivery in observations.deliveries {
                    if let envelope = try? EnvelopeCodec.decode(
                        delivery.body, as: ProbeResult.self, expecting: .observation)
                    {
                        await log.observed(
                            envelope.target ?? "", healthy: envelope.body.healthy, at: .now, sentAt: envelope.sentAt)
                    }
                    await observations.ack(delivery)
                }
            }
            group.addTask {
                for await delivery in requests.deliveries {
                    if let envelope = try? EnvelopeCodec.decode(
                        delivery.body, as: ActionRequest.self, expecting: .actionRequest)
                    {
                        await log.requested(envelope.body.target, at: .now, sentAt: envelope.sentAt)
                    }
                    await requests.ack(delivery)
                }
            }
        }
    }

    // Warm-up: every target observed twice (the probes have discovered them all and run on schedule).
    let began = ContinuousClock.now
    while await log.coverage(atLeast: 2) < targets, ContinuousClock.now - began < warmup {
        try? await Task.sleep(for: .seconds(1))
    }
    let covered = await log.coverage(atLeast: 2)
    emit("scale: \(covered) of \(targets) targets observed at least twice after \(format(ContinuousClock.now - began))")
    let steady = pids.map { ($0.0, memory($0.1)) }
    let steadyStart = Date().timeIntervalSince1970
    let cpuBefore = pids.map { cpuSeconds($0.1) }
    // A steady window for the jitter, then the failure.
    try? await Task.sleep(for: .seconds(options.int("steady", default: 90)))
    let failedAt = ContinuousClock.now
    let failedAtWall = Date().timeIntervalSince1970
    let cpuSteady = zip(pids, cpuBefore).map { (cpuSeconds($0.0.1) - $0.1) / (failedAtWall - steadyStart) }
    _ = FileManager.default.createFile(atPath: failFlag, contents: Data())
    await log.markFailure()
    emit(
        String(
            format: "scale: %d targets (a quarter) fail from now (%.3f s since the epoch)", failing.count, failedAtWall)
    )
    let deadline = ContinuousClock.now + .seconds(options.int("timeout", default: 300))
    while await log.requestCount(failing) < failing.count, ContinuousClock.now < deadline {
        try? await Task.sleep(for: .seconds(1))
    }
    let afterFailure = pids.map { ($0.0, memory($0.1)) }

    // When each request came (seconds after the failure, by its Nth failure's arrival) and how long it took.
    let byTime = await log.latenciesByTime(failing, threshold: threshold, since: failedAt)
    let latencies = byTime.map(\.ms)
    let sentToSent = await log.sentToSent(failing, threshold: threshold)
    let tapLag = await log.tapLag
    let requested = await log.requestCount(failing)
    let stray = await log.requestCount(nil) - requested
    emit(
        String(
            format:
                "scale: %d of %d failing targets got an action request within %@ of the failure (%d requests for healthy targets); Nth (%d) failed observation -> action request: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
            requested, failing.count, format(ContinuousClock.now - failedAt), stray, threshold,
            percentile(latencies, 0.5), percentile(latencies, 0.9), percentile(latencies, 0.99),
            latencies.max() ?? .nan))
    // When the slow ones happen (seconds after the failure, by their Nth failure's arrival): 5 s buckets,
    // and the slowest 1% one by one, to set beside the workers' and fake EC2's periodic work.
    let buckets = Dictionary(grouping: byTime, by: { Int($0.at / 5) * 5 }).sorted { $0.key < $1.key }
    emit(
        "scale: by 5 s after the failure (from s: requests, p50 / max ms): "
            + buckets.map { from, items in
                String(
                    format: "%d: %d, %.0f / %.0f", from, items.count, percentile(items.map(\.ms), 0.5),
                    items.map(\.ms).max() ?? .nan)
            }.joined(separator: "; "))
    let slowest = byTime.sorted { $0.ms > $1.ms }.prefix(max(1, byTime.count / 100)).sorted { $0.at < $1.at }
    emit(
        "scale: the slowest 1% (s after the failure, ms): "
            + slowest.map { String(format: "%.1f s %.0f", $0.at, $0.ms) }.joined(separator: ", "))
    // Where that time goes: an observation's wait from the probe's sent_at to the tap (the probe's publish and
    // the broker), and the probe's sent_at of the Nth failure to the decision's sent_at of the request.
    emit(
        String(
            format:
                "scale: observation sent_at -> tap arrival: p50 %.1f ms, p99 %.1f ms; Nth failure's sent_at -> request's sent_at: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms",
            percentile(tapLag, 0.5), percentile(tapLag, 0.99), percentile(sentToSent, 0.5), percentile(sentToSent, 0.9),
            percentile(sentToSent, 0.99)))
    for (((name, before), (_, after)), cpu) in zip(zip(steady, afterFailure), cpuSteady) {
        emit(
            String(
                format:
                    "scale: %@: RSS %.1f MiB with %d targets, %.1f MiB after the failure, peak %.1f MiB; CPU %.0f%% of one core in the steady window",
                name, before.rss, targets, after.rss, after.peak, cpu * 100))
    }
    printJitter(
        accessLog: accessLog, from: steadyStart, to: failedAtWall,
        interval: Double(options.int("interval", default: 30)))

    watching.cancel()
    await observations.shutdown(drainTimeout: .zero)
    await requests.shutdown(drainTimeout: .zero)
    await watching.value
    try? await admin.deleteQueue("\(prefix).bench.tap")
    await admin.close()
    if requested < failing.count {
        emit("scale: FAILED: \(failing.count - requested) failing targets got no action request")
        exit(1)
    }
}

/// Intervals between successive checks of each target in the steady window, from the site's access log
/// (`<msec> /t/<group>/<n>` lines): how far they stray from the probe interval.
func printJitter(accessLog: String, from start: Double, to end: Double, interval: Double) {
    guard let text = try? String(contentsOfFile: accessLog, encoding: .utf8) else {
        emit("scale: cannot read \(accessLog)")
        return
    }
    var last: [Substring: Double] = [:]
    var deviations: [Double] = []
    var perSecond: [Int: Int] = [:]
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ")
        guard parts.count >= 2, let time = Double(parts[0]), time >= start, time < end else { continue }
        let target = parts[1]
        perSecond[Int(time), default: 0] += 1
        if let previous = last[target] { deviations.append(abs(time - previous - interval) * 1000) }
        last[target] = time
    }
    let counts = perSecond.values.sorted()
    emit(
        String(
            format:
                "scale: probe schedule over %.0f s: %d intervals between checks of one target; |interval - %.0f s|: p50 %.1f ms, p99 %.1f ms, max %.1f ms; checks per second min %d, median %d, max %d",
            end - start, deviations.count, interval, percentile(deviations, 0.5), percentile(deviations, 0.99),
            deviations.max() ?? .nan, counts.first ?? 0, counts.isEmpty ? 0 : counts[counts.count / 2], counts.last ?? 0
        ))
}

/// VmRSS and VmHWM (peak) of a process, in MiB.
func memory(_ pid: Int32) -> (rss: Double, peak: Double) {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (.nan, .nan) }
    func field(_ name: String) -> Double {
        let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
        let kb = line?.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        return (kb ?? .nan) / 1024
    }
    return (field("VmRSS"), field("VmHWM"))
}

/// User + system CPU seconds a process has used (/proc/<pid>/stat, clock ticks of 1/100 s).
func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return .nan }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command: state is field 3, utime 14 and stime 15 (1-based over the whole line).
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

func format(_ d: Duration) -> String { String(format: "%.1f s", seconds(d)) }

actor ScaleLog {
    private var seen: [String: Int] = [:]
    /// Failed observations of each target after the failure began, in arrival order.
    private var failures: [String: [ContinuousClock.Instant]] = [:]
    private var requests: [String: ContinuousClock.Instant] = [:]
    /// The envelopes' `sent_at` of the same (the probe's and the decision's wall clock, one host).
    private var failuresSent: [String: [Date]] = [:]
    private var requestsSent: [String: Date] = [:]
    /// Milliseconds from an observation's `sent_at` to its arrival on the tap.
    private(set) var tapLag: [Double] = []
    private var failing = false

    func observed(_ target: String, healthy: Bool, at time: ContinuousClock.Instant, sentAt: Date?) {
        seen[target, default: 0] += 1
        if let sentAt { tapLag.append(Date().timeIntervalSince(sentAt) * 1000) }
        if failing, !healthy {
            failures[target, default: []].append(time)
            if let sentAt { failuresSent[target, default: []].append(sentAt) }
        }
    }

    func requested(_ target: String, at time: ContinuousClock.Instant, sentAt: Date?) {
        if requests[target] == nil { requests[target] = time }
        if requestsSent[target] == nil, let sentAt { requestsSent[target] = sentAt }
    }

    /// Each failing target's `threshold`th failed observation, as seconds after `start`, with the
    /// milliseconds from it to the target's action request, in the order they were seen.
    func latenciesByTime(_ targets: Set<String>, threshold: Int, since start: ContinuousClock.Instant)
        -> [(at: Double, ms: Double)]
    {
        targets.compactMap { target in
            guard let requested = requests[target], let failed = failures[target], failed.count >= threshold else {
                return nil
            }
            let seen = failed[threshold - 1]
            return (seconds(seen - start), seconds(requested - seen) * 1000)
        }.sorted { $0.at < $1.at }
    }

    /// Milliseconds from the probe's sending of the `threshold`th failed observation to the decision's
    /// sending of the request (both `sent_at`): the time inside the broker's queue and the decision.
    func sentToSent(_ targets: Set<String>, threshold: Int) -> [Double] {
        targets.compactMap { target in
            guard let requested = requestsSent[target], let failed = failuresSent[target], failed.count >= threshold
            else { return nil }
            return requested.timeIntervalSince(failed[threshold - 1]) * 1000
        }
    }

    func markFailure() { failing = true }

    func coverage(atLeast count: Int) -> Int { seen.values.filter { $0 >= count }.count }

    /// Requests for `targets` (all when nil).
    func requestCount(_ targets: Set<String>?) -> Int {
        guard let targets else { return requests.count }
        return requests.keys.filter { targets.contains($0) }.count
    }

}

/// A line on standard output, written at once (print buffers when the output is a file; the run takes
/// minutes).
func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
