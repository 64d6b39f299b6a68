import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import HTTPTransport
import Logging
import Metrics
import RecoveryCore
import Synchronization

/// The probe worker: discovers targets, checks each one's health URL once per probe interval
/// fleet-wide (whichever replica claims the interval's slot in Redis does it), reads EC2 status checks
/// in batches of 100, and publishes every result as an `observation`.
///
/// Replicas share the work through slot claims: for target T and interval number k
/// (`floor((now - phase(T)) / interval)`), the key `probe:T:k:q` is claimed with SET NX by one replica, for
/// q < quorum size. A replica that dies simply stops claiming; the others claim the next interval's
/// slots, so its targets are picked up within one interval. With quorum on, q runs over 0..<quorumSize
/// and a replica claims at most one q per interval, so that many distinct probers check each interval.
///
/// Each target's intervals start at its own phase, a fixed fraction of the interval derived from its name
/// (the same on every replica), so the checks of many targets spread evenly over the interval instead of
/// all falling due at the same second (10,000 targets at 30 s: about 333 a second, not 10,000 at once;
/// docs/benchmarks.md, "Scale"). The scheduler looks for due slots ten times a second, so those 333 a
/// second start 33 at a time rather than all together: a second's checks started at once put their
/// observations on the broker in one burst, which the broker and the decision worker then took 80 ms
/// (p50) to work through (measured). A replica claims no more targets than it has room for (`ProbeFlow`):
/// the rest stay due and are claimed at a later tick, in turn (`LockedState.takeDue` goes round the list).
///
/// It runs on ports (docs/architecture.md): checks through `HTTPExecuting`, claims in a `KeyValueStore`,
/// EC2 status through `InstanceStatusReading`, observations through `MessagePublishing`, and the targets
/// from `discover`; `services` lists what the executable runs, in shutdown order.
public final class ProbeWorker: Sendable {
    public struct Options: Sendable {
        public var proberId: String
        public var discoveryInterval: Duration = .seconds(60)
        public var statusInterval: Duration = .seconds(60)
        /// How often the scheduler looks for due slots (see the type's documentation for why not every
        /// second). Each look reads every target's current slot (`LockedState.takeDue`, one actor call).
        public var tick: Duration = .milliseconds(100)
        /// Health checks in flight at once (PROBE_MAX_IN_FLIGHT), each from its request to its answer.
        public var maxInFlight: Int = 500
        /// Observations handed to the broker and not yet confirmed (PROBE_MAX_UNCONFIRMED). At this many
        /// the replica takes up no more targets, so a broker that stops confirming stops it claiming, and
        /// other replicas take its targets (`ProbeFlow`).
        public var maxUnconfirmed: Int = 500
        /// The self-check (PROBE_CANARY_URL): while it fails, this prober's HTTP checks are not published.
        public var canary: ProbeCanary.Options?
        public init(proberId: String) { self.proberId = proberId }
    }

    let options: Options
    let discover: @Sendable () async throws -> [Target]
    let http: any HTTPExecuting
    let ec2: any InstanceStatusReading
    let claims: any KeyValueStore
    let publisher: any MessagePublishing
    let topology: FleetTopology
    let logger: Logger
    let clock: @Sendable () -> Date
    /// The self-check, when configured.
    public let canary: ProbeCanary?
    private let state = LockedState()
    let flow: ProbeFlow
    private let stopping = Atomic<Bool>(false)

    public init(
        options: Options, discover: @escaping @Sendable () async throws -> [Target], http: any HTTPExecuting,
        ec2: any InstanceStatusReading, claims: any KeyValueStore, publisher: any MessagePublishing,
        topology: FleetTopology,
        logger: Logger, clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.options = options
        self.discover = discover
        self.http = http
        self.ec2 = ec2
        self.claims = claims
        self.publisher = publisher
        self.topology = topology
        self.logger = logger
        self.clock = clock
        flow = ProbeFlow(maxChecks: options.maxInFlight, maxUnconfirmed: options.maxUnconfirmed)
        canary = options.canary.map { ProbeCanary(options: $0, http: http, logger: logger) }
    }

    /// Runs until `stop()` or cancellation. Checks run as child tasks of a discarding group, so a slow
    /// site (up to its probe timeout) never delays the scheduling of the others. After `stop()` no check
    /// starts, and `run` returns once the checks in flight have published their observations (graceful
    /// shutdown, before the clients close); cancellation abandons them, and a cancelled check publishes
    /// nothing.
    public func run() async {
        await withTaskGroup(of: Void.self) { background in
            // Discovery runs on its own: a slow DescribeInstances must never delay the checks.
            background.addTask {
                while !Task.isCancelled {
                    await self.refreshTargets()
                    try? await Task.sleep(for: self.options.discoveryInterval)
                }
            }
            if let canary {
                background.addTask { await canary.run(while: { !self.stopping.load(ordering: .relaxed) }) }
            }
            await withDiscardingTaskGroup { checks in
                var lastStatus: ContinuousClock.Instant?
                // Ticks at fixed instants (not a sleep after each pass): a target's check then comes the same
                // time after its phase every interval, so the time between two checks does not wander by up
                // to a tick (measured: p99 0.89 s off 30 s with sleeps, docs/benchmarks.md "Scale").
                var nextTick = ContinuousClock.now
                while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
                    let now = ContinuousClock.now
                    if lastStatus == nil || now - lastStatus! >= options.statusInterval {
                        lastStatus = now
                        checks.addTask { await self.checkInstanceStatus() }
                    }
                    for target in await takeUpDueTargets() {
                        checks.addTask { await self.checkAndPublish(target) }
                    }
                    FleetMetrics.probesUnconfirmed.record(flow.unconfirmedCount)
                    nextTick += options.tick
                    if nextTick < ContinuousClock.now { nextTick = ContinuousClock.now }  // behind: no burst of ticks
                    try? await Task.sleep(until: nextTick, clock: .continuous)
                }
            }
            background.cancelAll()
        }
    }

    /// Graceful shutdown: `run` starts no more checks and returns once those in flight are done.
    public func stop() { stopping.store(true, ordering: .relaxed) }

    func refreshTargets() async {
        do {
            let targets = try await discover()
            await state.setTargets(targets, discoveredAt: clock())
            FleetMetrics.targets.record(targets.count)
            logger.debug("targets discovered", metadata: ["count": "\(targets.count)"])
        } catch {
            FleetMetrics.errors(worker: "probe", kind: "discovery").increment()
            logger.warning("target discovery failed; keeping the previous list", metadata: ["error": "\(error)"])
        }
    }

    /// Claims due targets, each with its check slot already held: the slots are reserved first, at most
    /// that many targets are claimed, and the slots left over are given back (`ProbeFlow`). Start each
    /// with `checkAndPublish`.
    func takeUpDueTargets() async -> [Target] {
        let reserved = flow.reserve(upTo: flow.maxChecks)
        let due = await dueTargets(room: reserved)
        flow.release(reserved - due.count)
        return due
    }

    /// Targets whose current interval this replica has just claimed, at most `room` (by default the room
    /// it has now, nothing reserved; `run` passes the slots it has reserved for them).
    func dueTargets(room: Int? = nil) async -> [Target] {
        let now = clock()
        let room = room ?? flow.room
        var due: [Target] = []
        // At most `room` targets are taken up, so every one of them can still be claimed below; the others
        // stay due and a later tick takes them up.
        let (taken, waiting) = await state.takeDue(at: now, limit: room)
        FleetMetrics.probesDueWaiting.record(waiting)
        for (target, slot) in taken {
            let interval = Self.interval(of: target)
            // Quorum on: quorum_size probers per interval. Unset (automatic): two, so that where two replicas
            // run each interval is checked from two vantage points and the decision worker sees both
            // (EscalationMachine.requiredProbers); a single replica claims one. Off: one.
            let probers: Int =
                switch target.settings.quorum {
                case true?: max(target.settings.quorumSize, 1)
                case nil: 2
                case false?: 1
                }
            for q in 0..<probers {
                do {
                    let key = "probe:\(target.name):\(slot):\(q)"
                    if try await claims.setIfAbsent(key, options.proberId, expiry: .seconds(Int64(interval * 2) + 1)) {
                        due.append(target)
                        break
                    }
                    // This replica may hold a seat of this slot already: a target listed twice, one that
                    // left the list and came back within the interval, a restart. Taking a second seat would
                    // check the target twice and keep another replica from its check.
                    if try await claims.get(key) == options.proberId { break }
                } catch {
                    // Without Redis this replica cannot coordinate; probing anyway would duplicate work but
                    // lose nothing, and a site going down during a Redis outage must still be seen.
                    logger.warning("cannot claim a probe slot; probing anyway", metadata: ["error": "\(error)"])
                    due.append(target)
                    break
                }
            }
        }
        return due
    }

    /// The number of `name`'s current interval: intervals start at the target's phase, a fraction of the
    /// interval fixed by its name (FNV-1a, so every replica and every restart agrees).
    static func slot(of name: String, interval: Double, at now: Date) -> Int64 {
        slot(phase: phase(of: name, interval: interval), interval: interval, at: now)
    }

    /// A target's probe interval in seconds, at least one: its slots and its claims' expiry both follow it.
    static func interval(of target: Target) -> Double { max(target.settings.probeInterval, 1) }

    /// Where in each interval `name`'s intervals start, in seconds.
    static func phase(of name: String, interval: Double) -> Double {
        Double(FNV1a.hash(name) % 1_000_003) / 1_000_003 * interval
    }

    static func slot(phase: Double, interval: Double, at now: Date) -> Int64 {
        Int64(((now.timeIntervalSince1970 - phase) / interval).rounded(.down))
    }

    /// Checks every target once, now (not waiting for slots), within the same bounds as `run` (`ProbeFlow`),
    /// and publishes the results. For `recoveryctl` and the benchmarks.
    public func checkAll(_ targets: [Target]) async {
        // Each check tells the loop when it has freed room (its answer came, or its confirm), so the loop
        // waits for exactly that rather than for a whole check and publish to end.
        let (freed, signal) = AsyncStream.makeStream(of: Void.self)
        var wake = freed.makeAsyncIterator()
        await withDiscardingTaskGroup { group in
            for target in targets {
                while flow.reserve(upTo: 1) == 0 {
                    // nil: cancelled (the stream ends for a cancelled task); start nothing more.
                    guard await wake.next() != nil, !Task.isCancelled else { return }
                }
                group.addTask { await self.checkAndPublish(target, freed: { signal.yield() }) }
            }
        }
        signal.finish()
    }

    /// One check, its slot reserved in `flow`: its check slot is given back when the answer is in, and
    /// its observation then counts as unconfirmed until the broker has confirmed it (or refused it). The
    /// publish does not hold a check slot: on a quorum queue its confirm waits for the broker's write-ahead
    /// log, and while slots waited for that, this replica checked up to a fifth fewer sites a second
    /// (docs/benchmarks.md, "Probe").
    func checkAndPublish(_ target: Target, freed: (@Sendable () -> Void)? = nil) async {
        guard let result = await check(target) else {
            flow.checkEnded(publishing: false)
            freed?()
            return
        }
        flow.checkEnded(publishing: true)
        freed?()
        await publish(result, target: target)
        flow.publishEnded()
        freed?()
    }

    /// Checks `target`'s health URL; nil when there is nothing to publish (no URL, cancelled, or this
    /// prober's own network suspect).
    func check(_ target: Target) async -> ProbeResult? {
        guard let url = target.healthURL else { return nil }
        let request = HTTPRequest(
            url: url, timeout: .milliseconds(Int64(target.settings.probeTimeout * 1000)),
            connectTimeout: .milliseconds(Int64(min(target.settings.probeTimeout, 5) * 1000)),
            maxBodyBytes: 64 * 1024, followRedirects: true, freshConnection: true)
        // A check of the health URL is a check of the site, wherever it runs now: no instance id (nil =
        // the target's current instance). Naming the catalog's instance would misattribute checks made
        // between a re-provision and the next discovery to the displaced instance.
        var result = ProbeResult(prober: options.proberId, instanceId: nil, healthy: false)
        result.source = .http
        do {
            let response = try await http.execute(request)
            result.statusCode = response.status
            result.healthy = target.settings.isHealthy(statusCode: response.status, body: response.bodyString)
            result.timing = ProbeTiming(response.timing)
            result.certificateExpiry = response.certificateExpiry
            if !result.healthy {
                result.detail =
                    target.settings.expectedStatus.contains(where: { $0.contains(response.status) })
                    ? "body does not contain the expected text" : "HTTP \(response.status)"
            }
        } catch let error as HTTPClientError {
            result.detail = error.description
        } catch is CancellationError {
            return nil  // shutting down: the check did not fail, it was not finished
        } catch {
            result.detail = "\(error)"
        }
        if let canary, canary.impaired {
            // This prober's own network is suspect (ProbeCanary): its check counts for nothing.
            FleetMetrics.probes(result: "withheld").increment()
            return nil
        }
        FleetMetrics.probes(result: result.healthy ? "healthy" : "unhealthy").increment()
        if let timing = result.timing {
            FleetMetrics.probeDuration.recordMilliseconds(timing.totalMs)
        }
        return result
    }

    /// DescribeInstanceStatus for every target (batches of 100, IncludeAllInstances). A stopped or
    /// impaired instance is published as a failed observation; healthy status is not a site check and
    /// is not published. A target's displaced instances (the originals of a re-provision or fail-over)
    /// are checked too: while one runs, its status is published under its own instance id (healthy when
    /// both status checks pass), which is how the decision worker learns that the original came back;
    /// a stopped one, the normal case, is not news and is not published.
    func checkInstanceStatus() async {
        let targets = await state.targets
        let now = clock()
        let slot = Int64(now.timeIntervalSince1970 / max(1, Double(options.statusInterval.components.seconds)))
        do {
            guard
                try await claims.setIfAbsent(
                    "probe:status:\(slot)", options.proberId, expiry: options.statusInterval * 2)
            else { return }
        } catch {
            logger.warning("cannot claim the status check; checking anyway", metadata: ["error": "\(error)"])
        }
        // (target, instance, whether it is a displaced original) for every instance to check.
        let checks = targets.flatMap { target in
            [(target, target.instance, false)] + target.displaced.map { (target, $0, true) }
        }
        for (region, group) in Dictionary(grouping: checks, by: \.1.region) {
            do {
                let statuses = try await ec2.instanceStatuses(group.map(\.1.id), region: region)
                let byId = Dictionary(statuses.map { ($0.instanceId, $0) }, uniquingKeysWith: { a, _ in a })
                for (target, instance, isDisplaced) in group where isDisplaced {
                    guard let status = byId[instance.id], status.state == .running else { continue }
                    var result = ProbeResult(
                        prober: options.proberId, instanceId: instance.id,
                        healthy: status.systemStatus.isOK && status.instanceStatus.isOK)
                    result.source = .ec2Status
                    result.ec2State = status.state.rawValue
                    result.detail =
                        "original instance \(instance.id) is running; status checks: system \(status.systemStatus.status), instance \(status.instanceStatus.status)"
                    await publish(result, target: target)
                }
                for (target, _, isDisplaced) in group where !isDisplaced {
                    guard let status = byId[target.instance.id] else { continue }
                    let impaired = status.systemStatus.isImpaired || status.instanceStatus.isImpaired
                    guard status.state != .running || impaired else {
                        // A target without a health URL has only these checks: say when they pass too, or an
                        // outage of it could never end (the decision waits for healthy checks after a step).
                        if target.healthURL == nil, status.systemStatus.isOK, status.instanceStatus.isOK {
                            var result = ProbeResult(
                                prober: options.proberId, instanceId: target.instance.id, healthy: true)
                            result.source = .ec2Status
                            result.ec2State = status.state.rawValue
                            result.detail = "no health URL; status checks: system ok, instance ok"
                            await publish(result, target: target)
                        }
                        continue
                    }
                    var result = ProbeResult(prober: options.proberId, instanceId: target.instance.id, healthy: false)
                    result.source = .ec2Status
                    result.ec2State = status.state.rawValue
                    result.detail =
                        status.state != .running
                        ? "instance is \(status.state.rawValue)"
                        : "status checks: system \(status.systemStatus.status), instance \(status.instanceStatus.status)"
                    await publish(result, target: target)
                }
            } catch {
                FleetMetrics.errors(worker: "probe", kind: "ec2_status").increment()
                logger.warning("DescribeInstanceStatus failed", metadata: ["error": "\(error)", "region": "\(region)"])
            }
        }
    }

    func publish(_ result: ProbeResult, target: Target) async {
        var result = result
        let now = clock()
        // Said only from a fresh list: a list kept after failed discoveries may name an instance the
        // target has left, and the decision worker acts on what this says (docs/escalation.md).
        if let at = await state.discoveredAt,
            now.timeIntervalSince(at) <= 2 * Double(options.discoveryInterval.components.seconds) + 1
        {
            result.discovered = target.instance
        }
        let envelopes = EnvelopePublisher(
            publisher: publisher, topology: topology, producer: options.proberId, appId: "probe")
        do {
            try await envelopes.publish(
                .observation, id: RandomId.uuid(), target: target.name,
                instanceId: result.instanceId ?? target.instance.id, correlationId: nil, body: result, now: now)
        } catch {
            FleetMetrics.errors(worker: "probe", kind: "publish").increment()
            logger.error(
                "could not publish an observation", metadata: ["instance_id": "\(target.name)", "error": "\(error)"])
        }
    }
}

/// The probe's mutable state, confined to an actor.
actor LockedState {
    private(set) var targets: [Target] = []
    /// When the list was last discovered successfully (a failed discovery keeps the previous list).
    private(set) var discoveredAt: Date?
    /// The checked targets (those with a health URL), and for each, in parallel arrays, its interval, its
    /// phase (worked out once per discovery instead of at every tick) and the last slot this replica took
    /// up (`Int64.min`: none yet). Parallel arrays of numbers, so that a tick over 10,000 targets copies
    /// no `Target` and hashes no name: that took 7% of a core at ten ticks a second (perf).
    private var scheduled: [Target] = []
    private var intervals: [Double] = []
    private var phases: [Double] = []
    private var lastSlots: [Int64] = []
    /// Where the next `takeDue` starts looking: just past the last target it took up.
    private var cursor = 0

    func setTargets(_ targets: [Target], discoveredAt: Date) {
        self.targets = targets
        self.discoveredAt = discoveredAt
        // A target still listed keeps the slot it was last taken up for, so a new list never checks a
        // target twice in one interval.
        let taken = Dictionary(zip(scheduled.map(\.name), lastSlots), uniquingKeysWith: max)
        scheduled = targets.filter { $0.healthURL != nil }
        intervals = scheduled.map(ProbeWorker.interval(of:))
        phases = zip(scheduled, intervals).map { ProbeWorker.phase(of: $0.name, interval: $1) }
        lastSlots = scheduled.map { taken[$0.name] ?? .min }
    }

    /// Targets whose current slot this replica has not taken up yet, at most `limit`, each taken up (its
    /// slot remembered) as it is returned. One actor call for the whole fleet: a call per target (20,000
    /// hops at every tick for 10,000 targets) cost a tenth of a core at ten ticks a second.
    ///
    /// The look starts where the last one stopped and goes round the list. A replica with less room than
    /// targets due then checks all of them in turn, each less often; looking from the top every time, it
    /// checked the first ones every interval and never the rest, and said nothing.
    ///
    /// `waiting`: the targets due that were left for a later look for want of room (counted only when the
    /// room ran out; `recovery_probe_due_waiting`).
    func takeDue(at now: Date, limit: Int) -> (due: [(target: Target, slot: Int64)], waiting: Int) {
        var due: [(target: Target, slot: Int64)] = []
        var waiting = 0
        let count = scheduled.count
        guard count > 0 else { return (due, 0) }
        let start = cursor < count ? cursor : 0
        var full = limit <= 0
        for step in 0..<count {
            let i = (start + step) % count
            let slot = ProbeWorker.slot(phase: phases[i], interval: intervals[i], at: now)
            guard lastSlots[i] != slot else { continue }
            if full {
                waiting += 1
                continue
            }
            lastSlots[i] = slot
            due.append((scheduled[i], slot))
            if due.count == limit {
                cursor = (i + 1) % count
                full = true
            }
        }
        return (due, waiting)
    }
}

extension ProbeTiming {
    init(_ t: HTTPTiming) {
        func ms(_ d: Duration) -> Double {
            Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        }
        self.init(
            dnsMs: ms(t.dns), connectMs: ms(t.connect), tlsMs: ms(t.tls), firstByteMs: ms(t.firstByte),
            totalMs: ms(t.total))
    }
}

extension Metrics.Timer {
    func recordMilliseconds(_ ms: Double) { recordNanoseconds(Int64(ms * 1_000_000)) }
}
