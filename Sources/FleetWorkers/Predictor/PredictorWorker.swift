import AMQPTransport
import AWSClient
import FleetRuntime
import Foundation
import Logging
import RecoveryCore

/// The predictor worker (docs/prediction.md): every `interval` (and on request) it reads each target's
/// last `lookbackHours` of CloudWatch metrics, runs the `Predictor` model, and publishes every
/// prediction at or above `minConfidence` as a `prediction` message (durable, confirmed), which the
/// decision worker and the recorder consume.
///
/// - Schedule: slot k = floor(now / interval). A replica predicts target T in slot k only after claiming
///   `predict:T:k` with SET NX (expiry two intervals), so replicas never predict a target twice in a slot;
///   a replica that dies loses at most its claimed targets for that slot, the next slot is claimed anew.
///   Without Redis a replica predicts nothing (and retries each tick): a missed hour costs little, a
///   duplicate would put a second row in history.
/// - On request: `predict.<target>` or `predict.fleet` on `<prefix>.predictor.requests` (one replica
///   gets each message); no claim, it is the operator's explicit ask.
/// - Fetching: one GetMetricData call per region for all the targets being predicted (5-minute points; the
///   client splits at 500 queries per request and follows NextToken), never one call per metric. A
///   scheduled run reads the 3 fast series of each target (CPU, network), and its 4 slow ones (disk,
///   memory, credits, status checks) only when `PredictionCadence` says so: every `slowEvery` slots,
///   every slot while something stirs. The last slow read is kept as `predict-slow:<target>` (expiry
///   `slowEvery + 2` intervals; no record reads them). A request reads all 7.
///
/// It runs on ports (docs/architecture.md): metrics through `MetricDataReading`, claims in a
/// `KeyValueStore`, predictions through `MessagePublishing`, and the targets from `discover`; `services` lists what the
/// executable runs, in shutdown order.
public final class PredictorWorker: Sendable {
    public struct Options: Sendable {
        public var workerId: String
        /// Seconds between scheduled predictions of a target (PREDICTION_INTERVAL).
        public var interval: TimeInterval = 3600
        /// When the slow series are read (PREDICTION_SLOW_INTERVAL ÷ PREDICTION_INTERVAL, default 6 slots).
        public var cadence = PredictionCadence()
        public var lookbackHours = 168
        /// How far back CPU and network are read (PREDICTION_PATTERN_HOURS): the part older than
        /// `lookbackHours` only teaches their hour-of-week pattern. At most `lookbackHours` turns it off.
        public var patternHours = 336
        /// Targets fetched and predicted together (memory: about 20,000 points each).
        public var targetsPerFetch = 200
        public var highConfidence = 0.8
        /// Predictions below this are not published (PREDICTION_MIN_CONFIDENCE).
        public var minConfidence = 0.5
        /// The CloudWatch period of every query (seconds): 5 minutes, EC2's basic monitoring, so a burst
        /// is not averaged away (the model folds the trend metrics into hours itself). GetMetricData
        /// costs the same per metric whatever the period.
        public var period = 300
        /// Where mem_used_percent and disk_used_percent live (the CloudWatch agent's namespace).
        public var agentNamespace = "CWAgent"
        /// Dimensions besides InstanceId that the agent's disk_used_percent carries (e.g. path=/), when
        /// it is not aggregated by InstanceId alone (docs/prediction.md).
        public var diskDimensions: [MetricDimension] = []
        public var discoveryInterval: Duration = .seconds(60)
        /// How often the scheduler looks for due slots.
        public var tick: Duration = .seconds(5)
        public var model = Predictor.Configuration()
        public init(workerId: String) { self.workerId = workerId }
    }

    /// What one prediction run produced: the targets evaluated and the messages published.
    public struct RunResult: Sendable {
        public var evaluated: [String] = []
        public var published: [Envelope<PredictionBody>] = []
        public var failedTargets: [String] = []
        /// The targets whose slow series were read, and those of them where something stirs.
        public var slowRead: Set<String> = []
        public var stirring: Set<String> = []
    }

    let options: Options
    let discover: @Sendable () async throws -> [Target]
    let cloudWatch: any MetricDataReading
    let claims: any KeyValueStore
    let publisher: any MessagePublishing
    let topology: FleetTopology
    let logger: Logger
    let clock: @Sendable () -> Date
    let predictor: Predictor
    private let state = PredictorState()

    public init(
        options: Options, discover: @escaping @Sendable () async throws -> [Target], cloudWatch: any MetricDataReading,
        claims: any KeyValueStore, publisher: any MessagePublishing, topology: FleetTopology, logger: Logger,
        clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.options = options
        self.discover = discover
        self.cloudWatch = cloudWatch
        self.claims = claims
        self.publisher = publisher
        self.topology = topology
        self.logger = logger
        self.clock = clock
        var model = options.model
        model.lookbackHours = Double(options.lookbackHours)
        model.patternLookbackHours = Double(options.patternHours)
        predictor = Predictor(configuration: model)
    }

    // MARK: Schedule

    /// Runs the schedule until the task is cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    await self.refreshTargets()
                    try? await Task.sleep(for: self.options.discoveryInterval)
                }
            }
            while !Task.isCancelled {
                await runDueSlots()
                try? await Task.sleep(for: options.tick)
            }
            group.cancelAll()
        }
    }

    /// Discovers the targets now (tests; `run()` does it every discovery interval).
    public func refreshTargetsForTests() async { await refreshTargets() }

    @discardableResult
    func refreshTargets() async -> [Target] {
        do {
            let targets = try await discover()
            await state.setTargets(targets)
            FleetMetrics.predictorTargets.record(targets.count)
            return targets
        } catch {
            FleetMetrics.errors(worker: "predictor", kind: "discovery").increment()
            logger.warning("target discovery failed; keeping the previous list", metadata: ["error": "\(error)"])
            return await state.targets
        }
    }

    /// Claims this slot for every target not yet done in it, and predicts the claimed ones together.
    @discardableResult
    public func runDueSlots() async -> RunResult {
        let now = clock()
        let slot = Int64((now.timeIntervalSince1970 / max(options.interval, 1)).rounded(.down))
        var claimed: [Target] = []
        // Shuffled, so replicas that tick at the same moment split the fleet instead of racing in one order.
        for target in await state.targets.shuffled() where await state.lastSlot(target.name) != slot {
            do {
                let key = "predict:\(target.name):\(slot)"
                let expiry = Duration.milliseconds(Int64(options.interval * 2000) + 1000)
                if try await claims.setIfAbsent(key, options.workerId, expiry: expiry) { claimed.append(target) }
                await state.setLastSlot(target.name, slot)
            } catch {
                FleetMetrics.errors(worker: "predictor", kind: "claim").increment()
                logger.warning("cannot claim a prediction slot; retrying next tick", metadata: ["error": "\(error)"])
                break
            }
        }
        guard !claimed.isEmpty else { return RunResult() }
        let slow = await slowReaders(claimed, slot: slot)
        let result = await predict(claimed, now: now, idPrefix: "prediction-\(slot)", readingSlow: slow)
        await recordSlowReads(result, slot: slot)
        return result
    }

    static func slowKey(_ target: String) -> String { "predict-slow:\(target)" }

    /// The claimed targets whose slow series this slot reads (`PredictionCadence`), their records read
    /// concurrently. A record that cannot be read counts as none: the slow series are read.
    func slowReaders(_ targets: [Target], slot: Int64) async -> Set<String> {
        let cadence = options.cadence
        return await withTaskGroup(of: String?.self) { group in
            for target in targets {
                group.addTask {
                    let last = try? await self.claims.get(Self.slowKey(target.name)).flatMap(
                        PredictionCadence.SlowRead.init(text:))
                    return cadence.readsSlow(in: slot, last: last) ? target.name : nil
                }
            }
            var out: Set<String> = []
            for await name in group { if let name { out.insert(name) } }
            return out
        }
    }

    /// Keeps when each target's slow series were last read and whether something stirred. A failed
    /// write only costs a read next slot (no record reads them).
    func recordSlowReads(_ result: RunResult, slot: Int64) async {
        let expiry = Duration.milliseconds(Int64(options.interval * 1000) * (options.cadence.slowEvery + 2))
        await withTaskGroup(of: Void.self) { group in
            for name in result.slowRead.subtracting(result.failedTargets) {
                group.addTask {
                    let read = PredictionCadence.SlowRead(slot: slot, stirring: result.stirring.contains(name))
                    do {
                        try await self.claims.set(Self.slowKey(name), read.text, expiry: expiry)
                    } catch {
                        FleetMetrics.errors(worker: "predictor", kind: "claim").increment()
                        self.logger.debug("cannot record a slow-series read", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    // MARK: On request

    public static func decodeRequest(_ bytes: [UInt8]) throws(MessageDecodingError) -> Envelope<PredictionRequest> {
        try EnvelopeCodec.decode(bytes, as: PredictionRequest.self, expecting: .predictionRequest)
    }

    /// `predict.<target>` predicts that target now; a request without a target (or `fleet`) predicts
    /// every target. An unknown target is refused (dead-lettered); a fetch failure requeues the request.
    public func handle(_ request: Envelope<PredictionRequest>, delivery: AMQPDelivery) async throws {
        _ = try await handle(request)
    }

    public func handle(_ request: Envelope<PredictionRequest>) async throws -> RunResult {
        var targets = await state.targets
        if targets.isEmpty || (request.target.map { name in !targets.contains { $0.name == name } } ?? false) {
            targets = await refreshTargets()
        }
        let chosen: [Target]
        if let name = request.target, name != "fleet" {
            guard let target = targets.first(where: { $0.name == name }) else {
                throw RejectMessage("unknown target '\(name)'")
            }
            chosen = [target]
        } else {
            chosen = targets
        }
        logger.info("prediction requested", metadata: ["targets": "\(chosen.count)", "request_id": "\(request.id)"])
        // Ids named after the request: a request requeued after a partial failure republishes the same
        // ids, which the recorder and the decision worker drop as duplicates.
        let result = await predict(chosen, now: clock(), idPrefix: "prediction-request-\(request.id)")
        if !result.failedTargets.isEmpty { throw PredictionFailed(targets: result.failedTargets) }
        return result
    }

    struct PredictionFailed: Error, CustomStringConvertible {
        var targets: [String]
        var description: String {
            "could not predict \(targets.count) target(s): \(targets.prefix(5).joined(separator: ", "))"
        }
    }

    // MARK: Predict

    /// Fetches the targets' metrics (batched GetMetricData per region and chunk of targets), predicts and
    /// publishes.
    /// `idPrefix`: each prediction's id is `<idPrefix>-<kind>-<target>` (the scheduled slot, or the request).
    /// `readingSlow`: the targets whose slow series are read (nil: all of them).
    public func predict(_ targets: [Target], now: Date, idPrefix: String, readingSlow: Set<String>? = nil) async
        -> RunResult
    {
        var result = RunResult()
        let slow = readingSlow ?? Set(targets.map(\.name))
        // In chunks of `targetsPerFetch` per region: a target's two weeks of fast series and week of slow
        // ones are about 20,000 points, so a whole region of 10,000 targets at once would hold gigabytes.
        // GetMetricData is billed per metric, and requests hold at most 500 queries anyway.
        let regions = Dictionary(grouping: targets, by: \.instance.region).sorted(by: { $0.key < $1.key })
        let size = max(options.targetsPerFetch, 1)
        let chunks = regions.flatMap { region, all in
            stride(from: 0, to: all.count, by: size).map { (region, Array(all[$0..<min($0 + size, all.count)])) }
        }
        for (region, group) in chunks {
            let histories: [String: MetricHistory]
            let incomplete: Set<String>
            do {
                (histories, incomplete) = try await fetch(group, region: region, now: now, readingSlow: slow)
            } catch {
                FleetMetrics.errors(worker: "predictor", kind: "fetch").increment()
                logger.warning(
                    "GetMetricData failed",
                    metadata: ["region": "\(region)", "targets": "\(group.count)", "error": "\(error)"])
                result.failedTargets += group.map(\.name)
                continue
            }
            for target in group {
                result.evaluated.append(target.name)
                FleetMetrics.predictorEvaluations.increment()
                let history = histories[target.name] ?? MetricHistory()
                let predictions = predictor.predict(history, now: now)
                // A slow series CloudWatch did not answer in full is not a read: it is read again next slot.
                if slow.contains(target.name), !incomplete.contains(target.name) {
                    result.slowRead.insert(target.name)
                    if PredictionCadence.stirring(predictions, history: history) { result.stirring.insert(target.name) }
                }
                for prediction in predictions where prediction.confidence >= options.minConfidence {
                    let body = PredictionBody(
                        prediction, highConfidenceThreshold: options.highConfidence,
                        lookbackHours: options.lookbackHours)
                    if let envelope = await publish(
                        body, target: target, now: now, id: "\(idPrefix)-\(body.kind.rawValue)-\(target.name)")
                    {
                        result.published.append(envelope)
                    } else {
                        result.failedTargets.append(target.name)
                    }
                }
            }
        }
        return result
    }

    /// The series of every target in `targets` (all in `region`), every `period`, in one batched call:
    /// all seven for those in `readingSlow`, the three fast series for the others.
    /// Also the targets for which some series came back other than `Complete`.
    func fetch(_ targets: [Target], region: String, now: Date, readingSlow: Set<String>) async throws
        -> (histories: [String: MetricHistory], incomplete: Set<String>)
    {
        let period = Double(options.period)
        // Whole periods only: the current, unfinished one would read low.
        let end = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / period).rounded(.down) * period)
        // Two calls at most (a call has one time range): the fast series over the pattern's weeks, the
        // slow ones over the lookback. CloudWatch prices each metric once whatever the range.
        let fastHours = max(options.patternHours, options.lookbackHours)
        var queries: [Int: [MetricDataQuery]] = [:]
        var owner: [String: (target: String, metric: PredictorMetric)] = [:]
        for (index, target) in targets.enumerated() {
            let metrics = options.cadence.metrics(readingSlow: readingSlow.contains(target.name))
            for (short, metric) in Self.queryNames where metrics.contains(metric) {
                let id = "t\(index)_\(short)"
                let hours = PredictionCadence.slowMetrics.contains(metric) ? options.lookbackHours : fastHours
                queries[hours, default: []].append(query(id: id, metric: metric, instanceId: target.instance.id))
                owner[id] = (target.name, metric)
            }
        }
        var answers: [MetricDataResult] = []
        var incomplete: Set<String> = []
        for (hours, batch) in queries.sorted(by: { $0.key > $1.key }) {
            let start = end.addingTimeInterval(-Double(hours) * 3600)
            do {
                let results = try await cloudWatch.metricData(batch, start: start, end: end, region: region)
                FleetMetrics.getMetricDataRequests.increment(by: results.requestCount)
                answers += results.results
            } catch  where hours < fastHours {
                // Only the slow series' call failed: the fast ones are judged now, and the slow ones are
                // not a read (incomplete), so the next slot reads them again.
                FleetMetrics.errors(worker: "predictor", kind: "fetch").increment()
                logger.warning(
                    "GetMetricData failed for the slow series; they are read again next slot",
                    metadata: ["region": "\(region)", "queries": "\(batch.count)", "error": "\(error)"])
                for query in batch { if let (name, _) = owner[query.id] { incomplete.insert(name) } }
            }
        }
        var histories: [String: MetricHistory] = [:]
        for result in answers {
            guard let (name, metric) = owner[result.id] else { continue }
            if result.statusCode != "Complete" {
                incomplete.insert(name)
                logger.debug("partial metric data", metadata: ["id": "\(result.id)", "status": "\(result.statusCode)"])
            }
            let points = result.points.filter { $0.value.isFinite }.map {
                MetricPoint(time: $0.timestamp, value: $0.value)
            }
            histories[name, default: MetricHistory()][metric] = points.sorted { $0.time < $1.time }
        }
        return (histories, incomplete)
    }

    /// Query-id suffix and metric, in a fixed order.
    static let queryNames: [(String, PredictorMetric)] = [
        ("cpu", .cpu), ("nin", .networkIn), ("nout", .networkOut), ("status", .statusCheckFailed),
        ("credit", .cpuCreditBalance), ("mem", .memory), ("disk", .disk),
    ]

    func query(id: String, metric: PredictorMetric, instanceId: String) -> MetricDataQuery {
        let instance = MetricDimension("InstanceId", instanceId)
        let (namespace, dimensions, stat): (String, [MetricDimension], String) =
            switch metric {
            case .cpu: ("AWS/EC2", [instance], "Average")
            case .networkIn, .networkOut: ("AWS/EC2", [instance], "Sum")  // bytes per hour
            case .statusCheckFailed: ("AWS/EC2", [instance], "Maximum")  // 1 when any check failed in the hour
            case .cpuCreditBalance: ("AWS/EC2", [instance], "Average")
            case .memory: (options.agentNamespace, [instance], "Average")
            case .disk: (options.agentNamespace, [instance] + options.diskDimensions, "Maximum")
            }
        return .metric(
            id: id, Metric(namespace: namespace, name: metric.rawValue, dimensions: dimensions), period: options.period,
            stat: stat)
    }

    func publish(_ body: PredictionBody, target: Target, now: Date, id: String) async -> Envelope<PredictionBody>? {
        let envelope = Envelope(
            type: .prediction, id: id, target: target.name, instanceId: target.instance.id, occurredAt: now,
            producer: options.workerId, body: body)
        do {
            try await EnvelopePublisher(
                publisher: publisher, topology: topology, producer: options.workerId, appId: "predictor"
            )
            .publish(
                .prediction, id: envelope.id, target: target.name, instanceId: target.instance.id, correlationId: nil,
                body: body, now: now)
            FleetMetrics.predictions(kind: body.kind.rawValue).increment()
            if body.highConfidence {
                FleetMetrics.highConfidencePredictions(kind: body.kind.rawValue).increment()
            }
            logger.info(
                "prediction",
                metadata: [
                    "instance_id": "\(target.name)", "kind": "\(body.kind.rawValue)",
                    "confidence": "\(body.confidence)",
                ])
            return envelope
        } catch {
            FleetMetrics.errors(worker: "predictor", kind: "publish").increment()
            logger.error(
                "could not publish a prediction", metadata: ["instance_id": "\(target.name)", "error": "\(error)"])
            return nil
        }
    }
}

/// The predictor's mutable state, confined to an actor.
actor PredictorState {
    private(set) var targets: [Target] = []
    private var slots: [String: Int64] = [:]
    func setTargets(_ targets: [Target]) { self.targets = targets }
    func lastSlot(_ name: String) -> Int64? { slots[name] }
    func setLastSlot(_ name: String, _ slot: Int64) { slots[name] = slot }
}

extension WorkerEnvironment {
    /// PREDICTION_INTERVAL, PREDICTION_SLOW_INTERVAL, PREDICTION_LOOKBACK_HOURS, HIGH_CONFIDENCE_THRESHOLD, PREDICTION_MIN_CONFIDENCE,
    /// PREDICTION_AGENT_NAMESPACE, PREDICTION_DISK_DIMENSIONS, DISCOVERY_INTERVAL (docs/configuration.md).
    public func predictorOptions() throws -> PredictorWorker.Options {
        var options = PredictorWorker.Options(workerId: workerId)
        options.interval = try seconds("PREDICTION_INTERVAL", default: 3600)
        let slowInterval = try seconds("PREDICTION_SLOW_INTERVAL", default: max(6 * 3600, options.interval))
        guard slowInterval >= options.interval else {
            throw ConfigurationError("PREDICTION_SLOW_INTERVAL must be at least PREDICTION_INTERVAL")
        }
        options.cadence = PredictionCadence(slowEvery: Int64((slowInterval / options.interval).rounded()))
        options.lookbackHours = try int("PREDICTION_LOOKBACK_HOURS", default: 168)
        options.patternHours = try int("PREDICTION_PATTERN_HOURS", default: 336)
        options.highConfidence = try double("HIGH_CONFIDENCE_THRESHOLD", default: 0.8)
        options.minConfidence = try double("PREDICTION_MIN_CONFIDENCE", default: 0.5)
        if let namespace = string("PREDICTION_AGENT_NAMESPACE") { options.agentNamespace = namespace }
        options.diskDimensions = try list("PREDICTION_DISK_DIMENSIONS").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ConfigurationError(
                    "PREDICTION_DISK_DIMENSIONS must be name=value pairs separated by commas, not '\(pair)'")
            }
            return MetricDimension(parts[0], parts[1])
        }
        guard options.lookbackHours >= 24 else {
            throw ConfigurationError("PREDICTION_LOOKBACK_HOURS must be at least 24")
        }
        options.discoveryInterval = .milliseconds(Int64(try seconds("DISCOVERY_INTERVAL", default: 60) * 1000))
        return options
    }
}
