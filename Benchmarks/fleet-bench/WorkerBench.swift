import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Synchronization

// Worker benchmarks (issue 4). See docs/benchmarks.md.

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

/// Resident set size of this process, in MiB (from /proc/self/status).
func rssMiB() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return .nan }
    return kb / 1024
}

/// This process's CPU time (user and system) so far, in seconds: per-event CPU is steadier than a rate
/// when the broker and Redis share the machine's cores.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

func syntheticTargets(_ count: Int, url: String, settings: TargetSettings = TargetSettings()) -> [Target] {
    (0..<count).map { i in
        Target(
            identity: TargetIdentity(name: "bench-\(i)", homeRegion: "us-east-1", drRegion: "us-west-2"),
            instance: InstanceRef(id: String(format: "i-%017x", i), region: "us-east-1"), instanceState: "running",
            healthURL: url, settings: settings)
    }
}

struct BenchServices {
    let amqp: AMQPConfiguration
    let redisURL: RedisURL
    let prefix = "bench-\(UUID().uuidString.prefix(8).lowercased())"
    var topology: FleetTopology { FleetTopology(prefix: prefix) }
    var keyspace: RedisKeyspace { RedisKeyspace(prefix: "\(prefix):") }

    init(_ options: BenchOptions) {
        let env = ProcessInfo.processInfo.environment
        guard let amqp = options.string("amqp") ?? env["AMQP_URL"],
            let redis = options.string("redis") ?? env["REDIS_URL"],
            let amqpURL = try? AMQPURL(amqp), let redisURL = try? RedisURL(redis)
        else {
            print("set AMQP_URL and REDIS_URL")
            exit(2)
        }
        self.amqp = AMQPConfiguration(url: amqpURL, connectionName: "fleet-bench")
        self.redisURL = redisURL
    }

    func cleanUp() async {
        let admin = AMQPAdmin(configuration: amqp)
        await admin.deleteAll(of: topology.amqp)
        await admin.close()
        if let redis = try? await RedisClient.connect(url: redisURL) {
            _ = try? await redis.deleteAll(in: keyspace)
            await redis.close()
        }
    }
}

/// Probe capacity: every target checked once (fresh connection each, as probes do) and the result
/// published with confirms, `--targets` of them against `--url` (a local nginx). `--publish 0` drops the
/// observations instead of publishing them (`NullPublisher`).
func runProbeBenchmark(_ options: BenchOptions) async {
    guard let url = options.string("url") else {
        print("probe: pass --url of a local server")
        exit(2)
    }
    let count = options.int("targets", default: 10_000)
    let services = BenchServices(options)
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    let rssIdle = rssMiB()
    let http = HTTPClient(maxConcurrentRequests: options.int("concurrency", default: 200))
    let redis = RedisClient(url: services.redisURL)
    let publisher = AMQPPublisher(configuration: services.amqp, topology: services.topology.amqp)
    var probeOptions = ProbeWorker.Options(proberId: "bench")
    probeOptions.maxInFlight = options.int("concurrency", default: 200)
    probeOptions.maxUnconfirmed = options.int("unconfirmed", default: 200)
    let targets = syntheticTargets(count, url: url)
    let worker = ProbeWorker(
        options: probeOptions, discover: { targets }, http: http,
        ec2: EC2Client(
            AWSClient(
                region: "us-east-1",
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyId: "AKIDBENCH", secretAccessKey: "unused")), http: http,
                environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:9"])),
        claims: RedisKeyValueStore(client: redis, keyspace: services.keyspace),
        publisher: options.int("publish", default: 1) == 1 ? publisher : NullPublisher(),
        topology: services.topology, logger: Logger(label: "bench"))
    // Warm-up round (connections to the broker, first allocations), then the measured one.
    await worker.checkAll(Array(targets.prefix(200)))
    let cpuBefore = processCPUSeconds()
    let start = ContinuousClock.now
    await worker.checkAll(targets)
    let elapsed = seconds(ContinuousClock.now - start)
    print(
        String(
            format:
                "probe: %d targets checked (fresh connection each) and published with confirms in %.2f s: %.0f probes/s, %.0f µs of CPU per check; RSS idle %.1f MiB, after %d targets %.1f MiB",
            count, elapsed, Double(count) / elapsed, (processCPUSeconds() - cpuBefore) / Double(count) * 1e6, rssIdle,
            count, rssMiB()))
    await publisher.shutdown()
    http.shutdown()
    await redis.close()
    await services.cleanUp()
}

/// Decision throughput: (1) the pure state machine, events/s; (2) the worker's full path per event
/// (Redis load, handle, compare-and-set, outbox publish when there are actions), events/s.
func runDecisionBenchmark(_ options: BenchOptions) async {
    let events = options.int("events", default: 200_000)
    let targets = options.int("targets", default: 1_000)
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    var settings = TargetSettings()
    settings.gracePeriod = 0

    // (1) Pure.
    var machines = (0..<targets).map {
        EscalationMachine(
            identity: TargetIdentity(name: "t\($0)", homeRegion: "us-east-1"),
            instance: InstanceRef(id: "i-\($0)", region: "us-east-1"), settings: settings)
    }
    let now = Date()
    var actions = 0
    let pureStart = ContinuousClock.now
    for i in 0..<events {
        let t = i % targets
        // Mostly healthy traffic with an outage now and then, as a fleet sees it.
        let healthy = !(7..<10).contains((i / targets) % 20)  // three failed rounds in twenty: an outage
        actions +=
            machines[t].handle(
                .probe(id: "e\(i)", ProbeResult(prober: "p", healthy: healthy)),
                now: now.addingTimeInterval(Double(i) / 1000), brakeEngaged: false
            ).count
    }
    let pure = seconds(ContinuousClock.now - pureStart)
    print(
        String(
            format: "decision pure: %d events over %d targets in %.2f s: %.0f events/s (%d actions)", events, targets,
            pure, Double(events) / pure, actions))

    // (2) Through the worker with Redis and the broker.
    let services = BenchServices(options)
    let workerEvents = options.int("worker-events", default: 20_000)
    let redis = try! await RedisClient.connect(url: services.redisURL)
    let publisher = AMQPPublisher(configuration: services.amqp, topology: services.topology.amqp)
    let synthetic = syntheticTargets(targets, url: "http://127.0.0.1:9/", settings: settings)
    let decision = DecisionWorker(
        options: .init(workerId: "bench"), states: RedisStateStore(client: redis, keyspace: services.keyspace),
        schedule: RedisSchedule(client: redis, keyspace: services.keyspace, name: "decision"), publisher: publisher,
        topology: services.topology, catalog: { synthetic }, defaultRegion: "us-east-1", logger: Logger(label: "bench"))
    try! await decision.refreshCatalog()
    // Steady state: a target probed for a few hours remembers its last `eventMemory` event ids, so the
    // document the worker loads and stores with every event is at its full size (`--history 0`: new targets).
    let history = options.int("history", default: EscalationMachine.eventMemory)
    if history > 0 {
        let states = RedisStateStore(client: redis, keyspace: services.keyspace)
        for target in synthetic {
            var machine = TargetMachine(
                ladder: EscalationMachine(identity: target.identity, instance: target.instance, settings: settings))
            for i in 0..<history {
                _ = machine.handle(
                    .ladder(
                        .probe(id: UUID().uuidString.lowercased(), ProbeResult(prober: "p\(i % 3)", healthy: true))),
                    TargetMachine.Context(now: Date(), brakeEngaged: false, uniqueId: "seed"))
            }
            let stored = try! await states.compareAndSet(
                DecisionWorker.stateKey(target.name), expectedVersion: 0,
                data: String(decoding: try! StateCodec.encode(machine), as: UTF8.self))
            precondition(stored != nil, "the seeded state of \(target.name) was there already")
        }
        print("decision worker: each target's state seeded with \(history) remembered event ids (steady state)")
    }
    let concurrency = options.int("concurrency", default: 16)
    let cpuBefore = processCPUSeconds()
    let start = ContinuousClock.now
    await withTaskGroup(of: Void.self) { group in
        for lane in 0..<concurrency {
            group.addTask {
                // Each lane owns its targets, as consumers with per-target routing would.
                var i = lane
                while i < workerEvents {
                    let t = i % targets
                    let healthy = !(7..<10).contains((i / targets) % 20)  // three failed rounds in twenty: an outage
                    let envelope = Envelope(
                        type: .observation, id: "w\(i)", target: "bench-\(t)", instanceId: String(format: "i-%017x", t),
                        occurredAt: Date(), body: ProbeResult(prober: "p", healthy: healthy))
                    try? await decision.handle(.probe(envelope), verifiedUser: nil)
                    i += concurrency
                }
            }
        }
    }
    let elapsed = seconds(ContinuousClock.now - start)
    print(
        String(
            format:
                "decision worker: %d events over %d targets, %d in parallel, in %.2f s: %.0f events/s (Redis CAS per event), %.0f µs of CPU per event; RSS %.1f MiB",
            workerEvents, targets, concurrency, elapsed, Double(workerEvents) / elapsed,
            (processCPUSeconds() - cpuBefore) / Double(workerEvents) * 1e6, rssMiB()))

    // (3) As the decision executable runs: the observations wait on the real queue, the worker consumes
    // them in its per-target lanes, decides each through Redis, publishes with confirms, acks.
    let topology = services.topology
    let queued = (0..<workerEvents).map { i in
        let t = i % targets
        let healthy = !(7..<10).contains((i / targets) % 20)
        return Envelope(
            type: .observation, id: "q\(i)", target: "bench-\(t)", instanceId: String(format: "i-%017x", t),
            occurredAt: Date(), body: ProbeResult(prober: "p", healthy: healthy))
    }
    for envelope in queued {
        try! await publisher.publish(
            OutgoingMessage(
                exchange: topology.exchange,
                routingKey: FleetTopology.routingKey(.observation, target: envelope.target!),
                body: try! EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: envelope.id)))
    }
    let lanes = options.int("lanes", default: DecisionWorker.Options(workerId: "").lanes)
    let consumer = AMQPConsumer(
        configuration: services.amqp, topology: topology.amqp, queue: topology.observationsQueue,
        prefetch: UInt16(options.int("prefetch", default: lanes * 4)))
    let handled = Counter()
    let loop = MessageWorker(
        consumer: consumer,
        deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "bench"),
        logger: Logger(label: "bench"), senders: nil, decode: DecisionWorker.decodeObservationQueue,
        handler: { input, delivery in
            try await decision.handle(input, delivery: delivery)
            handled.add()
        })
    let redisBefore = redis.pipelining
    let consumeCPU = processCPUSeconds()
    let consumeStart = ContinuousClock.now
    let running = Task { await loop.run(lanes: lanes, laneKey: MessageWorker<DecisionInput>.targetOfRoutingKey) }
    while handled.value < workerEvents { try? await Task.sleep(for: .milliseconds(2)) }
    let consumed = seconds(ContinuousClock.now - consumeStart)
    let consumedCPU = processCPUSeconds() - consumeCPU
    let redisAfter = redis.pipelining
    print(
        String(
            format:
                "decision worker through the broker: %d queued observations consumed, decided and acked in %d lanes in %.2f s: %.0f events/s, %.0f µs of CPU per event; %.1f Redis commands per round trip; %d ack frames; RSS %.1f MiB",
            workerEvents, lanes, consumed, Double(workerEvents) / consumed, consumedCPU / Double(workerEvents) * 1e6,
            Double(redisAfter.commands - redisBefore.commands)
                / Double(max(1, redisAfter.batches - redisBefore.batches)),
            consumer.acknowledgementFrames, rssMiB()))
    await consumer.shutdown()
    await running.value
    await publisher.shutdown()
    await redis.close()
    await services.cleanUp()
}

/// Pipeline overhead: from publishing the Nth failed observation of a target to the action request
/// arriving on the actuator queue, through the real broker, the decision worker and Redis.
func runPipelineBenchmark(_ options: BenchOptions) async {
    let targets = options.int("targets", default: 300)
    let services = BenchServices(options)
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    var settings = TargetSettings()
    settings.gracePeriod = 0
    settings.failureThreshold = 3
    let synthetic = syntheticTargets(targets, url: "http://127.0.0.1:9/", settings: settings)
    let redis = try! await RedisClient.connect(url: services.redisURL)
    let topology = services.topology
    let publisher = AMQPPublisher(configuration: services.amqp, topology: topology.amqp)
    var decisionOptions = DecisionWorker.Options(workerId: "bench")
    decisionOptions.tick = .milliseconds(20)
    decisionOptions.brakeSettings.maxOutageShare = 1.1  // every target fails here; keep the brake out of the figure
    decisionOptions.brakeSettings.maxDestructiveActions = 1_000_000
    let decision = DecisionWorker(
        options: decisionOptions, states: RedisStateStore(client: redis, keyspace: services.keyspace),
        schedule: RedisSchedule(client: redis, keyspace: services.keyspace, name: "decision"), publisher: publisher,
        topology: topology, catalog: { synthetic }, defaultRegion: "us-east-1", logger: Logger(label: "bench"))
    try! await decision.refreshCatalog()
    let observations = AMQPConsumer(
        configuration: services.amqp, topology: topology.amqp, queue: topology.observationsQueue, prefetch: 64)
    let loop = MessageWorker(
        consumer: observations,
        deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: "bench"),
        logger: Logger(label: "bench"), senders: nil, decode: DecisionWorker.decodeObservationQueue,
        handler: decision.handle)
    let running = Task { await loop.run() }
    let ticker = Task { await decision.runTicker() }
    let requests = AMQPConsumer(
        configuration: services.amqp, topology: topology.amqp, queue: topology.actionRequestsQueue, prefetch: 256)
    let sentAt = SentTimes()
    let received = Task { () -> [Double] in
        var latencies: [Double] = []
        for await delivery in requests.deliveries {
            let now = ContinuousClock.now
            if let envelope = try? EnvelopeCodec.decode(
                delivery.body, as: ActionRequest.self, expecting: .actionRequest),
                let sent = await sentAt.get(envelope.body.target)
            {
                latencies.append(seconds(now - sent) * 1000)
            }
            await requests.ack(delivery)
            if latencies.count == targets { break }
        }
        return latencies
    }
    for (i, target) in synthetic.enumerated() {
        for n in 1...3 {
            let envelope = Envelope(
                type: .observation, id: "p\(i)-\(n)", target: target.name, instanceId: target.instance.id,
                occurredAt: Date(), body: ProbeResult(prober: "bench", healthy: false))
            if n == 3 { await sentAt.set(target.name, ContinuousClock.now) }
            try! await publisher.publish(
                OutgoingMessage(
                    exchange: topology.exchange,
                    routingKey: FleetTopology.routingKey(.observation, target: target.name),
                    body: try! EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: envelope.id)))
        }
        // Paced, so the figure is the pipeline's latency rather than a queue building up.
        try? await Task.sleep(for: .milliseconds(20))
    }
    let latencies = await received.value
    print(
        String(
            format:
                "pipeline: %d outages, Nth failed observation -> action request on the actuator queue: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
            latencies.count, percentile(latencies, 0.5), percentile(latencies, 0.99), latencies.max() ?? .nan))
    ticker.cancel()
    await observations.shutdown()
    await running.value
    await ticker.value
    await requests.shutdown()
    await publisher.shutdown()
    await redis.close()
    await services.cleanUp()
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

actor SentTimes {
    private var times: [String: ContinuousClock.Instant] = [:]
    func set(_ target: String, _ t: ContinuousClock.Instant) { times[target] = t }
    func get(_ target: String) -> ContinuousClock.Instant? { times[target] }
}

/// `fleet-bench probe --publish 0`: observations encoded and handed over as usual, then dropped, so the
/// broker's share of a check's cost shows beside the full path's.
struct NullPublisher: MessagePublishing { func publish(_ message: OutgoingMessage) async throws {} }
