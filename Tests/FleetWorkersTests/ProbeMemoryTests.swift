import AMQPTransport
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

/// The probe on the memory drivers: checks, observations, slot claims and the EC2 status sweep, with no
/// service variables set. The same worker against RabbitMQ, Redis and moto: ReplicaTests,
/// DisplacedInstanceTests, LadderIntegrationTests.
@Suite("Probe on memory drivers")
struct ProbeMemoryTests {
    /// One probe world: a memory broker with the fleet exchange, HTTP, claims, EC2 statuses and a clock.
    struct Rig {
        let topology = FleetTopology(prefix: "mem")
        let http = MemoryHTTP()
        let claims = MemoryKeyValueStore()
        let statuses = MemoryInstanceStatuses()
        let clock = TestClock()
        let publisher: MemoryPublisher

        init() {
            publisher = MemoryPublisher(broker: MemoryBroker(exchanges: [topology.exchange]), user: "fleet-probe")
        }

        func worker(
            _ id: String = "probe-a", targets: [Target], claims: (any KeyValueStore)? = nil, maxInFlight: Int = 500,
            maxUnconfirmed: Int = 500, publisher: (any MessagePublishing)? = nil
        ) -> ProbeWorker {
            var options = ProbeWorker.Options(proberId: id)
            options.maxInFlight = maxInFlight
            options.maxUnconfirmed = maxUnconfirmed
            return ProbeWorker(
                options: options, discover: { targets }, http: http, ec2: statuses,
                claims: claims ?? self.claims, publisher: publisher ?? self.publisher, topology: topology,
                logger: Logger(label: "probe-test"),
                clock: clock.now)
        }

        /// Every observation published, decoded, with the message that carried it.
        func observations() throws -> [(envelope: Envelope<ProbeResult>, message: OutgoingMessage)] {
            try publisher.published.map {
                (try EnvelopeCodec.decode($0.body, as: ProbeResult.self, expecting: .observation), $0)
            }
        }
    }

    /// `count` targets `site-<i>` without quorum (one prober decides), each at `url(i)`.
    static func sites(_ count: Int, url: (Int) -> String) -> [Target] {
        var settings = TargetSettings()
        settings.quorum = false
        return (0..<count).map { target("site-\($0)", url: url($0), settings: settings) }
    }

    static func target(
        _ name: String, url: String?, settings: TargetSettings = TargetSettings(), region: String = "us-east-1",
        displaced: [InstanceRef] = []
    ) -> Target {
        Target(
            identity: TargetIdentity(name: name, homeRegion: region),
            instance: InstanceRef(id: "i-0\(name)", region: region),
            instanceState: "running", healthURL: url, settings: settings, displaced: displaced)
    }

    @Test("a healthy check publishes a healthy observation: routing key, the probe's user_id, envelope and body")
    func healthyCheck() async throws {
        let rig = Rig()
        let url = "https://shop.example.com/health"
        rig.http.script(url, .status(200, "all good"))
        await rig.worker(targets: []).checkAll([Self.target("shop", url: url)])

        let observations = try rig.observations()
        try #require(observations.count == 1)
        let (envelope, message) = observations[0]
        #expect(message.exchange == rig.topology.exchange)
        #expect(message.routingKey == "observation.shop")
        #expect(message.properties.userId == "fleet-probe")
        #expect(message.properties.type == "observation")
        #expect(message.properties.appId == "probe")
        #expect(message.properties.messageId == envelope.id)
        #expect(envelope.target == "shop")
        #expect(envelope.instanceId == "i-0shop")
        #expect(envelope.producer == "probe-a")
        #expect(envelope.occurredAt == rig.clock.now())
        let result = envelope.body
        #expect(result.healthy)
        #expect(result.statusCode == 200)
        #expect(result.source == .http)
        #expect(result.prober == "probe-a")
        #expect(result.instanceId == nil, "a site check is about the target's current instance, whichever it is")
        #expect(result.detail == nil)
        #expect(result.timing != nil)

        let request = try #require(rig.http.requests.first)
        #expect(request.method == "GET" && request.url == url)
        #expect(request.freshConnection, "a cold connect each time")
        #expect(request.followRedirects)
        #expect(request.timeout == .seconds(10), "the target's probe timeout (default 10 s)")
        #expect(request.connectTimeout == .seconds(5))
    }

    @Test("an unexpected status and an expected status with the wrong body are unhealthy, each with its reason")
    func unhealthyChecks() async throws {
        let rig = Rig()
        var matching = TargetSettings()
        matching.bodyMatch = "shop-ok"
        rig.http.script("https://a.example.com/health", .status(503, "maintenance"))
        rig.http.script("https://b.example.com/health", .status(200, "maintenance"))
        rig.http.script("https://c.example.com/health", .status(200, "<p>shop-ok</p>"))
        await rig.worker(targets: []).checkAll([
            Self.target("a", url: "https://a.example.com/health"),
            Self.target("b", url: "https://b.example.com/health", settings: matching),
            Self.target("c", url: "https://c.example.com/health", settings: matching),
        ])
        let byTarget = Dictionary(
            uniqueKeysWithValues: try rig.observations().map { ($0.envelope.target ?? "?", $0.envelope.body) })
        #expect(byTarget.count == 3)
        #expect(byTarget["a"]?.healthy == false)
        #expect(byTarget["a"]?.statusCode == 503)
        #expect(byTarget["a"]?.detail == "HTTP 503")
        #expect(byTarget["b"]?.healthy == false)
        #expect(byTarget["b"]?.statusCode == 200)
        #expect(byTarget["b"]?.detail == "body does not contain the expected text")
        #expect(byTarget["c"]?.healthy == true)
    }

    @Test("a check that times out is unhealthy, bounded by the target's probe timeout")
    func timeoutIsUnhealthy() async throws {
        let rig = Rig()
        var settings = TargetSettings()
        settings.probeTimeout = 0.3
        let url = "https://slow.example.com/health"
        rig.http.script(url, .hang)
        let started = ContinuousClock.now
        await rig.worker(targets: []).checkAll([Self.target("slow", url: url, settings: settings)])
        #expect(ContinuousClock.now - started < .seconds(60), "ended by the timeout, not left hanging")
        let result = try #require(try rig.observations().first?.envelope.body)
        #expect(!result.healthy)
        #expect(result.statusCode == nil)
        #expect(result.detail?.contains("timed out") == true, "\(result.detail ?? "-")")
        #expect(rig.http.requests.first?.timeout == .milliseconds(300))
    }

    @Test("a refused connection is unhealthy; the detail names the host, never the path")
    func refusedIsUnhealthy() async throws {
        let rig = Rig()
        let url = "https://down.example.com:8443/health?token=HEALTHSECRET"
        await rig.worker(targets: []).checkAll([Self.target("down", url: url)])  // nothing scripted: nothing listens
        let result = try #require(try rig.observations().first?.envelope.body)
        #expect(!result.healthy)
        #expect(
            result.detail?.hasPrefix("HTTP request to https://down.example.com:8443 failed: could not connect") == true,
            "\(result.detail ?? "-")")
        #expect(result.detail?.contains("HEALTHSECRET") == false)
    }

    @Test(
        "a target without a health URL is not checked; an observation the broker refuses is lost, the next one goes out"
    )
    func noURLAndRefusedPublish() async throws {
        let rig = Rig()
        let url = "https://shop.example.com/health"
        rig.http.script(url, .status(200))
        let worker = rig.worker(targets: [])
        await worker.checkAll([Self.target("no-url", url: nil)])
        #expect(rig.http.requests.isEmpty)
        rig.publisher.failNext(1)
        await worker.checkAll([Self.target("shop", url: url)])
        await worker.checkAll([Self.target("shop", url: url)])
        #expect(rig.http.requests.count == 2)
        #expect(try rig.observations().count == 1)
    }

    @Test("a check cancelled while in flight publishes nothing: it did not fail, it was not finished")
    func cancelledCheckPublishesNothing() async throws {
        let rig = Rig()
        let url = "https://shop.example.com/health"
        rig.http.script(url, .hang)
        let worker = rig.worker(targets: [])
        let checking = Task { await worker.checkAll([Self.target("shop", url: url)]) }
        let http = rig.http
        #expect(await eventually { http.requests.count == 1 })
        checking.cancel()
        await checking.value
        #expect(rig.publisher.published.isEmpty)
    }

    @Test("quorum off: replicas share the claims, one checks a target per interval, the next is claimed anew")
    func oneReplicaPerSlot() async throws {
        let rig = Rig()
        var settings = TargetSettings()
        settings.quorum = false
        settings.probeInterval = 30
        let targets = [Self.target("shop", url: "https://shop.example.com/health", settings: settings)]
        let a = rig.worker("probe-a", targets: targets)
        let b = rig.worker("probe-b", targets: targets)
        await a.refreshTargets()
        await b.refreshTargets()
        rig.clock.set(Date(timeIntervalSince1970: 1_800_000_010))
        let slot = ProbeWorker.slot(of: "shop", interval: 30, at: rig.clock.now())
        #expect(await a.dueTargets().map(\.name) == ["shop"])
        #expect(await b.dueTargets().isEmpty, "probe-a holds this interval's slot")
        #expect(await a.dueTargets().isEmpty, "a replica claims each interval once")
        #expect(try await rig.claims.get("probe:shop:\(slot):0") == "probe-a")
        rig.clock.advance(by: 30)
        #expect(await b.dueTargets().map(\.name) == ["shop"], "the next interval goes to whoever claims it first")
        #expect(await a.dueTargets().isEmpty)
    }

    /// Scale benchmark finding: every target's interval started at the same second (floor(now / interval)),
    /// so 10,000 targets fell due at once, 500 went in flight and the rest were skipped for the whole
    /// interval. Each target now has its own phase: over one interval the checks spread evenly.
    @Test func tenThousandTargetsFallDueSpreadOverTheInterval() async throws {
        let rig = Rig()
        let targets = Self.sites(10_000) { "https://site-\($0).example.com/health" }
        let worker = rig.worker(targets: targets, maxInFlight: 10_000)
        await worker.refreshTargets()
        rig.clock.set(Date(timeIntervalSince1970: 1_800_000_000))
        _ = await worker.dueTargets()  // the first sight: every target is checked once at start
        var perSecond: [Int] = []
        for _ in 0..<30 {
            rig.clock.advance(by: 1)
            perSecond.append(await worker.dueTargets().count)
        }
        #expect(perSecond.reduce(0, +) == 10_000, "each target once per interval")
        #expect(perSecond.max()! < 450 && perSecond.min()! > 220, "about 333 a second: \(perSecond)")
    }

    /// The scheduler looks for due slots every `tick` (100 ms), so a second's 333 checks start about 33 at
    /// a time. Looked for once a second, they started together and their observations reached the broker
    /// in one burst (docs/benchmarks.md, "Scale", item 7: the 3rd failure → its request p50 257 → 43 ms).
    @Test func eachTickStartsATenthOfASecondsChecks() async throws {
        let rig = Rig()
        let targets = Self.sites(10_000) { "https://site-\($0).example.com/health" }
        let worker = rig.worker(targets: targets, maxInFlight: 10_000)
        await worker.refreshTargets()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        rig.clock.set(start)
        _ = await worker.dueTargets()  // the first sight: every target is checked once at start
        let tick = ProbeWorker.Options(proberId: "probe-a").tick
        let seconds = Double(tick.components.seconds) + Double(tick.components.attoseconds) / 1e18
        var perTick: [Int] = []
        for i in 1...Int((30 / seconds).rounded()) {
            rig.clock.set(start.addingTimeInterval(Double(i) * seconds))
            perTick.append(await worker.dueTargets().count)
        }
        #expect(perTick.reduce(0, +) == 10_000, "each target once per interval")
        #expect(perTick.max()! < 60, "about 33 a tick, at most \(perTick.max()!)")
    }

    /// A new target list (discovery, every minute) keeps the slots this replica took up: a target still
    /// listed is not taken up twice in one interval, whatever its place in the list; a new one at once.
    @Test func aNewTargetListKeepsTheSlotsTakenUp() async {
        let state = LockedState()
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let sites = Self.sites(3) { "https://s.example.com/\($0)" }
        await state.setTargets([sites[0], sites[1]], discoveredAt: now)
        #expect(await state.takeDue(at: now, limit: 10).due.map(\.target.name) == ["site-0", "site-1"])
        await state.setTargets([sites[2], sites[1], sites[0]], discoveredAt: now.addingTimeInterval(1))
        #expect(await state.takeDue(at: now.addingTimeInterval(1), limit: 10).due.map(\.target.name) == ["site-2"])
        #expect(await state.takeDue(at: now.addingTimeInterval(31), limit: 10).due.count == 3, "the next interval")
    }

    /// A replica with less room than targets due checks them all in turn: 10 targets, room for 3 at the
    /// one look of each interval. Looking from the top of the list every time, it checked the same three
    /// every interval and never the other seven.
    @Test func aReplicaShortOfRoomChecksEveryTargetInTurn() async {
        let state = LockedState()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        await state.setTargets(Self.sites(10) { "https://s.example.com/\($0)" }, discoveredAt: start)
        var checks: [String: Int] = [:]
        for interval in 0..<10 {
            let (due, waiting) = await state.takeDue(at: start.addingTimeInterval(Double(interval) * 30), limit: 3)
            #expect(waiting == 7, "the due targets left for a later look")
            for (target, _) in due { checks[target.name, default: 0] += 1 }
        }
        #expect(checks.count == 10, "targets never checked: \(10 - checks.count)")
        #expect(checks.values.allSatisfy { $0 == 3 }, "30 checks shared evenly: \(checks)")
    }

    /// A replica takes one seat of a slot: a target listed twice (or back on the list within its interval)
    /// is checked once, and the second replica still gets the other seat (review of the per-list slots).
    @Test func aReplicaHoldingASeatTakesNoSecondOne() async throws {
        let rig = Rig()
        let shop = Self.target("shop", url: "https://shop.example.com/health")  // quorum unset: two seats
        let a = rig.worker("probe-a", targets: [shop, shop])
        let b = rig.worker("probe-b", targets: [shop])
        await a.refreshTargets()
        await b.refreshTargets()
        #expect(await a.dueTargets().map(\.name) == ["shop"], "one check, not one per listing")
        #expect(await b.dueTargets().map(\.name) == ["shop"], "the other seat is still free")
    }

    /// A replica claims no more than it has room for in flight; the rest stay due for the next tick
    /// instead of being skipped for the interval.
    @Test func aReplicaClaimsOnlyWhatItHasRoomForAndTheRestStayDue() async throws {
        let rig = Rig()
        let targets = Self.sites(250) { "https://s.example.com/\($0)" }
        let worker = rig.worker(targets: targets, maxInFlight: 100)
        await worker.refreshTargets()
        var seen = Set<String>()
        for _ in 0..<3 {
            let due = await worker.dueTargets()
            #expect(due.count == min(100, 250 - seen.count))
            seen.formUnion(due.map(\.name))
        }
        #expect(seen.count == 250, "every target claimed within three ticks, none skipped")
    }

    /// Issue 18: an observation waiting for its confirm no longer holds a check slot, so a broker slow to
    /// confirm (a quorum queue's write-ahead log) does not slow the checks. Before, two slots held by two
    /// unconfirmed publishes stopped the third check from starting.
    @Test func aCheckWaitingForItsConfirmHoldsNoCheckSlot() async throws {
        let rig = Rig()
        let targets = Self.sites(6) { "https://s.example.com/\($0)" }
        for target in targets { rig.http.script(target.healthURL!, .status(200)) }
        let held = GatedPublisher(rig.publisher, log: EventLog())  // confirms nothing until opened
        let worker = rig.worker(targets: [], maxInFlight: 2, maxUnconfirmed: 10, publisher: held)
        let checking = Task { await worker.checkAll(targets) }
        let http = rig.http
        #expect(await eventually(.seconds(10)) { http.requests.count == 6 }, "checked: \(http.requests.count) of 6")
        #expect(rig.publisher.published.isEmpty, "nothing confirmed yet")
        let flow = worker.flow
        #expect(await eventually(.seconds(10)) { flow.unconfirmedCount == 6 && flow.checkingCount == 0 })
        held.open()
        await checking.value
        #expect(rig.publisher.published.count == 6)
        #expect(worker.flow.unconfirmedCount == 0)
    }

    /// The other half of the bound: a broker that stops confirming still stops the replica taking up
    /// targets (at `maxUnconfirmed`, plus the checks already in flight), every target it claimed is
    /// checked (its slot was reserved before the claim), and another replica claims the rest; once the
    /// broker confirms again, the held observations go out and the counts return to zero.
    @Test func aBrokerThatStopsConfirmingStopsTheReplicaTakingUpTargets() async throws {
        let rig = Rig()
        let targets = Self.sites(20) { "https://s.example.com/\($0)" }
        for target in targets { rig.http.script(target.healthURL!, .status(200)) }
        let held = GatedPublisher(rig.publisher, log: EventLog())  // confirms nothing until opened
        let a = rig.worker("probe-a", targets: targets, maxInFlight: 2, maxUnconfirmed: 3, publisher: held)
        let running = Task { await a.run() }
        let http = rig.http
        // Stalled: the bound reached and every check it started answered (no slot held, none to grant).
        #expect(await eventually(.seconds(30)) { a.flow.unconfirmedCount >= 3 && a.flow.checkingCount == 0 })
        try await Task.sleep(for: .milliseconds(500))  // five more looks at the list: none takes anything up
        let checkedByA = http.requests.count
        #expect((3...4).contains(checkedByA), "a stalled replica took up \(checkedByA) targets; at most 3 + 2 - 1")
        #expect(a.flow.room == 0)
        var claimedByA = 0
        for target in targets {
            let slot = ProbeWorker.slot(
                of: target.name, interval: ProbeWorker.interval(of: target), at: rig.clock.now())
            if try await rig.claims.get("probe:\(target.name):\(slot):0") == "probe-a" { claimedByA += 1 }
        }
        #expect(
            claimedByA == checkedByA, "claimed \(claimedByA), checked \(checkedByA): a claimed target went unchecked")

        let b = rig.worker("probe-b", targets: targets)
        await b.refreshTargets()
        #expect(await b.dueTargets().count == 20 - claimedByA, "the other replica claims every target A left")

        held.open()
        #expect(await eventually(.seconds(10)) { rig.publisher.published.count == checkedByA })
        a.stop()
        await running.value
        #expect(a.flow.unconfirmedCount == 0 && a.flow.checkingCount == 0)
    }

    /// Claims that run `during` once, inside the first claim's round trip.
    final class ClaimsDuring: KeyValueStore {
        let inner = MemoryKeyValueStore()
        private let during: Mutex<(@Sendable () -> Void)?>
        init(_ during: @escaping @Sendable () -> Void) { self.during = Mutex(during) }

        func set(_ key: String, _ value: String, expiry: Duration?) async throws {
            try await inner.set(key, value, expiry: expiry)
        }
        func get(_ key: String) async throws -> String? { try await inner.get(key) }
        func delete(_ key: String) async throws -> Bool { try await inner.delete(key) }
        func setIfAbsent(_ key: String, _ value: String, expiry: Duration?) async throws -> Bool {
            during.withLock { hook in
                defer { hook = nil }
                return hook
            }?()
            return try await inner.setIfAbsent(key, value, expiry: expiry)
        }
    }

    /// Review of the unconfirmed bound: checks that end while the replica claims targets in Redis can
    /// fill the bound between the look and the starts. The slots are reserved before the claims, so
    /// every target claimed is one whose check can start; granted at each start instead, the two claimed
    /// here would have found no room, their seats held and nobody checking them for the interval.
    @Test func everyTargetClaimedHasItsCheckSlotEvenIfTheBoundFillsDuringTheClaims() async throws {
        let rig = Rig()
        let targets = Self.sites(5) { "https://s.example.com/\($0)" }
        let flowBox = Mutex<ProbeFlow?>(nil)
        // Two checks in flight end (their observations now unconfirmed, the bound reached) during the
        // first claim's round trip.
        let claims = ClaimsDuring {
            let flow = flowBox.withLock { $0 }!
            flow.checkEnded(publishing: true)
            flow.checkEnded(publishing: true)
        }
        let worker = rig.worker(targets: targets, claims: claims, maxInFlight: 4, maxUnconfirmed: 2)
        flowBox.withLock { $0 = worker.flow }
        await worker.refreshTargets()
        #expect(worker.flow.reserve(upTo: 2) == 2, "two checks in flight")

        let due = await worker.takeUpDueTargets()
        #expect(due.count == 2, "room for two more at the look")
        #expect(worker.flow.checkingCount == due.count, "each target claimed holds its check slot")
        #expect(worker.flow.room == 0, "and now the bound is reached: no more claims")
        var claimed = 0
        for target in targets {
            let slot = ProbeWorker.slot(
                of: target.name, interval: ProbeWorker.interval(of: target), at: rig.clock.now())
            if try await claims.get("probe:\(target.name):\(slot):0") != nil { claimed += 1 }
        }
        #expect(claimed == due.count, "nothing claimed that is not returned to be checked")
    }

    /// Issue 14, gap 3 (with the review of its first fix): with quorum unset, one replica per interval
    /// let the replica that kept winning the claims (the same one, at a fixed phase) be the only prober the
    /// decision saw. Two replicas now check each interval, so where two run both are seen.
    @Test("quorum unset (automatic): two replicas check each interval, a third does not")
    func automaticQuorumSlots() async throws {
        let rig = Rig()
        let targets = [Self.target("shop", url: "https://shop.example.com/health")]
        let workers = ["probe-a", "probe-b", "probe-c"].map { rig.worker($0, targets: targets) }
        var due: [Int] = []
        for worker in workers {
            await worker.refreshTargets()
            due.append(await worker.dueTargets().count)
        }
        #expect(due == [1, 1, 0])
    }

    @Test("with quorum on, quorum-size distinct replicas check each interval")
    func quorumSlots() async throws {
        let rig = Rig()
        var settings = TargetSettings()
        settings.quorum = true
        settings.quorumSize = 2
        let targets = [Self.target("shop", url: "https://shop.example.com/health", settings: settings)]
        let workers = ["probe-a", "probe-b", "probe-c"].map { rig.worker($0, targets: targets) }
        var due: [Int] = []
        for worker in workers {
            await worker.refreshTargets()
            due.append(await worker.dueTargets().count)
        }
        #expect(due == [1, 1, 0])
    }

    @Test("claims unreachable: the probe checks anyway rather than miss an outage")
    func claimsDownStillProbes() async throws {
        struct Down: KeyValueStore {
            struct Unreachable: Error {}
            func set(_ key: String, _ value: String, expiry: Duration?) async throws { throw Unreachable() }
            func get(_ key: String) async throws -> String? { throw Unreachable() }
            func delete(_ key: String) async throws -> Bool { throw Unreachable() }
            func setIfAbsent(_ key: String, _ value: String, expiry: Duration?) async throws -> Bool {
                throw Unreachable()
            }
        }
        let rig = Rig()
        let worker = rig.worker(targets: [Self.target("shop", url: "https://shop.example.com/health")], claims: Down())
        await worker.refreshTargets()
        #expect(await worker.dueTargets().map(\.name) == ["shop"])
    }

    /// Issue 14, gap 5: only failures were published for a target without a health URL, so after a
    /// successful restart the decision waited for healthy checks that never came and escalated a fixed
    /// instance. Now passing status checks are published for such a target (and only for such a target).
    @Test func aTargetWithoutAHealthURLIsReportedHealthyWhenItsStatusChecksPass() async throws {
        let rig = Rig()
        let ok = StatusCheck("ok")
        let targets = [
            Self.target("bare", url: nil), Self.target("booting", url: nil),
            Self.target("watched", url: "https://watched.example.com/health"),
        ]
        rig.statuses.set(InstanceStatus(instanceId: "i-0bare", state: .running, systemStatus: ok, instanceStatus: ok))
        rig.statuses.set(
            InstanceStatus(
                instanceId: "i-0booting", state: .running, systemStatus: ok, instanceStatus: StatusCheck("initializing")
            ))
        rig.statuses.set(
            InstanceStatus(instanceId: "i-0watched", state: .running, systemStatus: ok, instanceStatus: ok))
        let worker = rig.worker(targets: targets)
        await worker.refreshTargets()
        await worker.checkInstanceStatus()
        let observations = try rig.observations().map(\.envelope)
        #expect(
            observations.map(\.target) == ["bare"],
            "checks still initializing say nothing; a health URL speaks for itself")
        let bare = try #require(observations.first)
        #expect(bare.body.healthy && bare.body.source == .ec2Status && bare.body.instanceId == "i-0bare")
    }

    @Test(
        "the EC2 sweep: a stopped or impaired instance is a failed observation, a healthy one is not news, a running original is reported under its own id; each region asked once"
    )
    func instanceStatusSweep() async throws {
        let rig = Rig()
        let ok = StatusCheck("ok")
        let impaired = StatusCheck("impaired")
        let original = InstanceRef(id: "i-0original", region: "us-east-1")
        let targets = [
            Self.target("stopped", url: nil), Self.target("impaired", url: nil),
            Self.target("fine", url: "https://fine.example.com/health", displaced: [original]),
            Self.target("west", url: nil, region: "eu-west-1"),
        ]
        rig.statuses.set(
            InstanceStatus(
                instanceId: "i-0stopped", state: .stopped, systemStatus: StatusCheck("not-applicable"),
                instanceStatus: StatusCheck("not-applicable")))
        rig.statuses.set(
            InstanceStatus(instanceId: "i-0impaired", state: .running, systemStatus: ok, instanceStatus: impaired))
        rig.statuses.set(InstanceStatus(instanceId: "i-0fine", state: .running, systemStatus: ok, instanceStatus: ok))
        rig.statuses.set(
            InstanceStatus(instanceId: "i-0original", state: .running, systemStatus: ok, instanceStatus: ok))
        rig.statuses.set(InstanceStatus(instanceId: "i-0west", state: .stopping, systemStatus: ok, instanceStatus: ok))
        let worker = rig.worker(targets: targets)
        await worker.refreshTargets()
        await worker.checkInstanceStatus()

        let byTarget = Dictionary(grouping: try rig.observations(), by: { $0.envelope.target ?? "?" })
        #expect(Set(byTarget.keys) == ["stopped", "impaired", "fine", "west"])
        let stopped = try #require(byTarget["stopped"]?.first?.envelope)
        #expect(!stopped.body.healthy && stopped.body.source == .ec2Status)
        #expect(stopped.body.ec2State == "stopped" && stopped.body.detail == "instance is stopped")
        #expect(stopped.body.instanceId == "i-0stopped" && stopped.instanceId == "i-0stopped")
        #expect(byTarget["impaired"]?.first?.envelope.body.detail == "status checks: system ok, instance impaired")
        #expect(byTarget["west"]?.first?.envelope.body.ec2State == "stopping")
        let fine = try #require(byTarget["fine"])
        #expect(fine.count == 1, "the current instance is fine: only the original is reported")
        #expect(fine.first?.envelope.body.instanceId == "i-0original")
        #expect(fine.first?.envelope.body.healthy == true)
        #expect(fine.first?.message.routingKey == "observation.fine")
        #expect(rig.statuses.calls.map(\.region).sorted() == ["eu-west-1", "us-east-1"])
        #expect(
            Set(rig.statuses.calls.first { $0.region == "us-east-1" }?.ids ?? []) == [
                "i-0stopped", "i-0impaired", "i-0fine", "i-0original",
            ])

        // Another replica in the same interval: the sweep is claimed, nothing is asked twice; in the next
        // interval it sweeps.
        let other = rig.worker("probe-b", targets: targets)
        await other.refreshTargets()
        await other.checkInstanceStatus()
        #expect(rig.statuses.calls.count == 2)
        rig.clock.advance(by: 60)
        await other.checkInstanceStatus()
        #expect(rig.statuses.calls.count == 4)
    }

    /// Issue 14, gap 4 (following discovery): an observation names the instance discovery found only while
    /// the list is fresh. After discoveries fail for longer than two intervals the kept list may name an
    /// instance the target has left, and the decision worker must not follow it.
    @Test func observationsNameTheDiscoveredInstanceOnlyFromAFreshList() async throws {
        let rig = Rig()
        let url = "https://shop.example.com/health"
        rig.http.script(url, .status(200, "ok"))
        let shop = Self.target("shop", url: url)
        let failing = Mutex(false)
        let worker = ProbeWorker(
            options: ProbeWorker.Options(proberId: "probe-a"),
            discover: {
                if failing.withLock({ $0 }) { throw CancellationError() }
                return [shop]
            }, http: rig.http, ec2: rig.statuses, claims: rig.claims, publisher: rig.publisher,
            topology: rig.topology, logger: Logger(label: "probe-test"), clock: rig.clock.now)

        await worker.checkAll([shop])
        #expect(try rig.observations().last?.envelope.body.discovered == nil, "never discovered: says nothing")
        await worker.refreshTargets()
        await worker.checkAll([shop])
        #expect(try rig.observations().last?.envelope.body.discovered == shop.instance)

        failing.withLock { $0 = true }
        rig.clock.advance(by: 180)
        await worker.refreshTargets()
        await worker.checkAll([shop])
        #expect(try rig.observations().last?.envelope.body.discovered == nil, "the kept list is stale")
    }
}
