import AMQPTransport
import AWSClient
import FleetRuntime
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import Prometheus
import RecoveryCore
import RedisStore
import Synchronization
import Testing

let environment = ProcessInfo.processInfo.environment
let servicesAvailable =
    environment["AMQP_URL"] != nil && environment["REDIS_URL"] != nil && environment["AWS_ENDPOINT_URL"] != nil

/// One isolated world per test: its own exchange, queues, Redis keys and moto resources (names carry a
/// unique prefix), torn down at the end.
struct World {
    let prefix = "it-\(UUID().uuidString.prefix(8).lowercased())"
    var topology: FleetTopology { FleetTopology(prefix: prefix) }
    var keyspace: RedisKeyspace { RedisKeyspace(prefix: "\(prefix):") }
    let amqp: AMQPConfiguration
    let redisURL: RedisURL
    let http = HTTPClient()
    let aws: AWSClient

    /// `amqp`: another broker than the shared one (the cluster tests' nodes).
    init(amqp: AMQPConfiguration? = nil) throws {
        self.amqp =
            try amqp
            ?? AMQPConfiguration(
                url: try AMQPURL(environment["AMQP_URL"]!), connectionName: "workers-test",
                reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .milliseconds(500))
        redisURL = try RedisURL(environment["REDIS_URL"]!)
        aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDFLEETTEST", secretAccessKey: "fleet-test-secret")),
            http: http, environment: ["AWS_ENDPOINT_URL": environment["AWS_ENDPOINT_URL"]!])
    }

    var ec2: EC2Client { EC2Client(aws) }

    /// Launches an instance that opts in, named `name`, with `healthURL`.
    func launchTarget(name: String, healthURL: String) async throws -> EC2Instance {
        let imageId = try await TestImage.shared.id(ec2)
        return try await ec2.runInstance(
            RunInstancesInput(
                imageId: imageId, instanceType: "t3.micro",
                tags: [
                    "AutoRecovery": "enabled", "AutoRecovery:Name": name, "AutoRecovery:HealthUrl": healthURL,
                    "test-run": prefix, "AutoRecovery:Fleet": prefix,
                ]))
    }

    /// A decision worker on this world's Redis keyspace and topology. With `discover`, its targets are the
    /// instances tagged with this world's fleet tag, merged with `config`, read once before it returns;
    /// `targets`: these instead (from `discover(config:)`), every time it refreshes its catalog.
    func decision(
        _ workerId: String, redis: RedisClient, publisher: AMQPPublisher, config: TargetConfigFile = .empty,
        operators: Set<String> = [], tick: Duration? = nil, discover: Bool = true,
        fleetMaintenance: [MaintenanceWindow] = [], targets: [Target]? = nil,
        logger: Logger = Logger(label: "decision")
    ) async throws -> DecisionWorker {
        var options = DecisionWorker.Options(workerId: workerId)
        options.operators = operators
        options.fleetMaintenance = fleetMaintenance
        if let tick { options.tick = tick }
        let catalog = catalog(config: config)
        var discovery: (@Sendable () async throws -> [Target])?
        if let targets {
            discovery = { targets }
        } else if discover {
            discovery = { try await catalog.discover() }
        }
        let decision = DecisionWorker(
            options: options, states: RedisStateStore(client: redis, keyspace: keyspace),
            schedule: RedisSchedule(client: redis, keyspace: keyspace, name: "decision"), publisher: publisher,
            topology: topology, catalog: discovery, defaultRegion: "us-east-1", logger: logger)
        if discover || targets != nil { try await decision.refreshCatalog() }
        return decision
    }

    /// This world's targets as the decision worker discovers them (`decision(targets:)`): a test whose
    /// timing starts with the worker discovers first, since a DescribeInstances on a loaded moto can take
    /// seconds.
    func discover(config: TargetConfigFile = .empty) async throws -> [Target] {
        try await catalog(config: config).discover()
    }

    private func catalog(config: TargetConfigFile) -> TargetCatalog {
        TargetCatalog(ec2: ec2, drRegion: nil, config: config, fleet: prefix, logger: Logger(label: "catalog"))
    }

    /// A decision worker consuming the observations queue in-process, with its ticker.
    func runDecision(_ decision: DecisionWorker, publisher: AMQPPublisher, workerName: String) -> RunningDecision {
        let observations = AMQPConsumer(configuration: amqp, topology: topology.amqp, queue: topology.observationsQueue)
        let loop = MessageWorker(
            consumer: observations,
            deadLetters: DeadLetterSink(publisher: publisher, topology: topology, workerName: workerName),
            logger: Logger(label: "decision"), senders: nil, decode: DecisionWorker.decodeObservationQueue,
            handler: decision.handle)
        return RunningDecision(
            consumer: observations, loop: Task { await loop.run() }, ticker: Task { await decision.runTicker() })
    }

    func tearDown(instances: [String]) async {
        _ = try? await ec2.terminateInstances(instances)
        let admin = AMQPAdmin(configuration: amqp)
        await admin.deleteAll(of: topology.amqp)
        await admin.close()
        if let redis = try? await RedisClient.connect(url: redisURL) {
            _ = try? await redis.deleteAll(in: keyspace)
            await redis.close()
        }
        http.shutdown()
    }
}

/// One public x86_64 image id per test process: listing moto's ~900 public images is the slowest call
/// there is, and on a loaded machine it slows every other suite that shares the moto server.
actor TestImage {
    static let shared = TestImage()
    /// The one lookup: tests that start together wait for it instead of each listing the images (the
    /// actor is reentrant, so a cached value alone let every early caller send its own DescribeImages).
    private var lookup: Task<String, any Error>?

    func id(_ ec2: EC2Client) async throws -> String {
        let lookup =
            self.lookup
            ?? Task {
                let images = try await ec2.describeImages(
                    owners: ["amazon"], filters: [EC2Filter("architecture", ["x86_64"])])
                return try #require(images.first { $0.state == "available" }).imageId
            }
        self.lookup = lookup
        do { return try await lookup.value } catch {
            self.lookup = nil  // a failed lookup is tried again by the next caller
            throw error
        }
    }
}

/// A website stand-in whose health the test switches: `/healthz` answers 200 or 503.
final class FakeSite: Sendable {
    final class Flag: Sendable {
        let value = Atomic<Bool>(true)
    }
    let healthy = Flag()
    let server: StatusServer

    init() async throws {
        let flag = healthy
        server = StatusServer(
            host: "127.0.0.1", port: 0, registry: PrometheusCollectorRegistry(),
            checks: ["site": { flag.value.load(ordering: .relaxed) }], logger: Logger(label: "fake-site"))
        try await server.start()
    }

    var url: String { "http://127.0.0.1:\(server.port)/healthz" }
    func set(healthy: Bool) { self.healthy.value.store(healthy, ordering: .relaxed) }
    func stop() { server.stop() }
}

/// Collects decoded messages of one queue in the background.
actor Collector<Body: Codable & Sendable> {
    private(set) var items: [Envelope<Body>] = []

    init(_ consumer: AMQPConsumer, type: MessageType, onItem: (@Sendable (Envelope<Body>) async -> Void)? = nil) {
        let stream = consumer.deliveries
        Task { [weak self] in
            for await delivery in stream {
                if let envelope = try? EnvelopeCodec.decode(delivery.body, as: Body.self, expecting: type) {
                    await self?.append(envelope)
                    await onItem?(envelope)
                }
                await consumer.ack(delivery)
            }
        }
    }

    private func append(_ e: Envelope<Body>) { items.append(e) }

    /// Waits (bounded) for an item matching `predicate`; real I/O, so this polls.
    func wait(timeout: Duration = .seconds(30), for predicate: @Sendable (Envelope<Body>) -> Bool) async -> Envelope<
        Body
    >? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let found = items.first(where: predicate) { return found }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return items.first(where: predicate)
    }
}

/// Wraps the real HTTP client and records every AWS request that goes through it: the action (the
/// Query `Action=`, the JSON `X-Amz-Target`, or the Route 53 operation from method and path), the
/// region from the signature's credential scope, and the body. Requests without a SigV4 signature
/// (site health checks) are passed through unrecorded.
final class RequestLog: HTTPExecuting, Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        var action: String
        var region: String
        var body: String
        var description: String { "\(action) [\(region)]" }
        /// Describe*, List*, Get*: everything else changes something.
        var isMutation: Bool { !["Describe", "List", "Get"].contains { action.hasPrefix($0) } }
    }

    /// A fault the log injects into the next request of one action.
    enum Fault: Sendable {
        /// Answer HTTP 503 without passing the request on (AWS never saw it), after running `then`.
        case refuse(then: @Sendable () async throws -> Void)
        /// Pass the request on, then throw a timeout instead of the answer (AWS acted; the client can't know).
        case loseAnswer
    }

    let inner: any HTTPExecuting
    private let entries = Mutex<[Entry]>([])
    private let faults = Mutex<[String: [Fault]]>([:])
    /// Requests answered by a `refuse` fault: they never reached the server.
    private let refusedEntries = Mutex<[Entry]>([])

    init(_ inner: any HTTPExecuting) { self.inner = inner }

    /// What reached the server (requests a `refuse` fault answered are not in it).
    var all: [Entry] { entries.withLock { $0 } }
    var refused: [Entry] { refusedEntries.withLock { $0 } }
    func actions(_ name: String) -> [Entry] { all.filter { $0.action == name } }
    var mutations: [Entry] { all.filter(\.isMutation) }

    /// The next request of `action` meets `fault` (faults of one action apply in order, once each).
    func inject(_ action: String, _ fault: Fault) { faults.withLock { $0[action, default: []].append(fault) } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard let authorization = request.headers.first(where: { $0.name.lowercased() == "authorization" })?.value,
            authorization.hasPrefix("AWS4-HMAC-SHA256")
        else { return try await inner.execute(request) }
        let body = String(decoding: request.body, as: UTF8.self)
        let region =
            authorization.components(separatedBy: "Credential=").dropFirst().first?
            .split(separator: "/").dropFirst(2).first.map(String.init) ?? "?"
        let entry = Entry(action: Self.action(request, body: body), region: region, body: body)
        let fault = faults.withLock { $0[entry.action]?.isEmpty == false ? $0[entry.action]!.removeFirst() : nil }
        switch fault {
        case .refuse(let then):
            refusedEntries.withLock { $0.append(entry) }
            try await then()
            let error =
                "<Response><Errors><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error></Errors></Response>"
            return HTTPResponse(
                status: 503, headers: [], body: Array(error.utf8),
                timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
        case .loseAnswer:
            entries.withLock { $0.append(entry) }
            _ = try await inner.execute(request)
            throw HTTPClientError(kind: .timeout, message: "answer lost (injected)", url: request.url)
        case nil:
            entries.withLock { $0.append(entry) }
            return try await inner.execute(request)
        }
    }

    static func action(_ request: HTTPRequest, body: String) -> String {
        for pair in body.split(separator: "&") where pair.hasPrefix("Action=") {
            return String(pair.dropFirst("Action=".count))
        }
        if let target = request.headers.first(where: { $0.name.lowercased() == "x-amz-target" })?.value {
            return String(target.split(separator: ".").last ?? "")
        }
        let path = request.url.components(separatedBy: "/2013-04-01/").dropFirst().first ?? request.url
        switch (request.method, path) {
        case ("POST", let p) where p.hasSuffix("/rrset"): return "ChangeResourceRecordSets"
        case ("GET", let p) where p.contains("/rrset"): return "ListResourceRecordSets"
        case ("GET", let p) where p.hasPrefix("change/"): return "GetChange"
        case ("POST", "hostedzone"): return "CreateHostedZone"
        case ("DELETE", _): return "DeleteHostedZone"
        default: return "\(request.method) \(path)"
        }
    }
}

/// Clean-up steps registered as resources are created, run in reverse order (errors ignored).
actor Cleanup {
    private var steps: [@Sendable () async throws -> Void] = []
    func add(_ step: @escaping @Sendable () async throws -> Void) { steps.append(step) }
    func run() async {
        for step in steps.reversed() { try? await step() }
        steps = []
    }
}

/// A TCP port in `range` that nothing is bound to right now. The default range lies below Linux's
/// ephemeral ports (32768-60999), so no client socket takes it between this check and the server's start;
/// a fixed offset once put a private broker's distribution port on a client socket's port. (Erlang's CLI
/// tools also use the distribution port + 10000, which must stay a valid port.)
func freeTCPPort(in range: Range<Int> = 20_000..<32_000) throws -> Int {
    for _ in 0..<200 {
        let port = Int.random(in: range)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        close(fd)
        if bound { return port }
    }
    throw POSIXError(.EADDRINUSE)
}

/// A decision worker running in-process (`World.runDecision`).
struct RunningDecision {
    let consumer: AMQPConsumer
    let loop: Task<Void, Never>
    let ticker: Task<Void, Never>

    func stop() async {
        ticker.cancel()
        await consumer.shutdown()
        await loop.value
    }
}
