import Foundation

/// Typed CloudWatch metric calls (Query protocol, API 2010-08-01) on the core ``AWSClient``.
///
/// Both calls split work that is too large for one request: GetMetricData into batches of at most 500
/// queries (keeping each expression with the queries it reads), each followed through its `NextToken`
/// pages, results merged by query id; PutMetricData into requests of at most 1000 data points and
/// 1 MB. One instance per region. Calls throw ``AWSError`` (or `CancellationError`); input that AWS
/// would refuse is refused before sending (`.invalidRequest`).
public struct CloudWatchClient: Sendable {
    public let aws: AWSClient

    /// GetMetricData's limit on queries per request.
    public static let maxQueriesPerRequest = 500
    /// PutMetricData's limit on data points per request.
    public static let maxDatumsPerRequest = 1000
    /// PutMetricData's limit on the request body (1 MB), with room for the headers.
    public static let maxRequestBytes = 1_000_000
    /// Dimensions per metric.
    public static let maxDimensions = 30

    /// Queries per GetMetricData request; lower it only to test batching.
    public var queriesPerRequest = CloudWatchClient.maxQueriesPerRequest
    /// Data points per PutMetricData request; lower it only to test batching.
    public var datumsPerRequest = CloudWatchClient.maxDatumsPerRequest

    public init(_ aws: AWSClient) { self.aws = aws }

    public var region: String { aws.region }

    public func withRegion(_ region: String) -> CloudWatchClient {
        var copy = CloudWatchClient(aws.withRegion(region))
        copy.queriesPerRequest = queriesPerRequest
        copy.datumsPerRequest = datumsPerRequest
        return copy
    }

    // MARK: PutMetricData

    /// PutMetricData, in as many requests as the limits need (sent one after the other; a failure stops
    /// there, the earlier requests' data stays stored). Returns the number of requests sent.
    @discardableResult
    public func putMetricData(namespace: String, data: [MetricDatum]) async throws -> Int {
        guard !namespace.isEmpty, !namespace.hasPrefix("AWS/") else {
            throw aws.invalidRequest(
                .cloudWatch, "PutMetricData", "namespace \"\(namespace)\" is empty or reserved (AWS/…)")
        }
        let batches: [QueryParameters]
        do {
            batches = try Self.putBatches(
                namespace: namespace, data: data, maxCount: min(max(1, datumsPerRequest), Self.maxDatumsPerRequest))
        } catch {
            throw aws.invalidRequest(.cloudWatch, "PutMetricData", error.description)
        }
        for batch in batches {
            _ = try await aws.query(.cloudWatch, action: "PutMetricData", parameters: batch)
        }
        return batches.count
    }

    struct InputError: Error, CustomStringConvertible {
        var description: String
    }

    /// The PutMetricData requests for `data`: each at most 1000 data points and `maxRequestBytes`
    /// form-encoded.
    static func putBatches(
        namespace: String, data: [MetricDatum], maxCount: Int = maxDatumsPerRequest, maxBytes: Int = maxRequestBytes
    ) throws(InputError) -> [QueryParameters] {
        var head = QueryParameters()
        head.set("Action", "PutMetricData")
        head.set("Version", AWSService.cloudWatch.apiVersion)
        head.set("Namespace", namespace)
        let headBytes = head.formEncoded.utf8.count
        var batches: [QueryParameters] = []
        var current = QueryParameters()
        current.set("Namespace", namespace)
        var count = 0
        var bytes = headBytes
        for datum in data {
            try validate(datum)
            var single = QueryParameters()
            encode(datum, prefix: "MetricData.member.\(count + 1)", into: &single)
            let size = single.formEncoded.utf8.count + 1
            if count > 0 && (count == maxCount || bytes + size > maxBytes) {
                batches.append(current)
                current = QueryParameters()
                current.set("Namespace", namespace)
                count = 0
                bytes = headBytes
                single = QueryParameters()
                encode(datum, prefix: "MetricData.member.1", into: &single)
            }
            let finalSize = single.formEncoded.utf8.count + 1
            guard headBytes + finalSize <= maxBytes else {
                throw InputError(description: "data point \(datum.metricName) alone is larger than \(maxBytes) bytes")
            }
            current.append(single)
            count += 1
            bytes += finalSize
        }
        if count > 0 { batches.append(current) }
        return batches
    }

    static func validate(_ datum: MetricDatum) throws(InputError) {
        guard !datum.metricName.isEmpty else { throw InputError(description: "a data point without a metric name") }
        guard datum.dimensions.count <= maxDimensions else {
            throw InputError(
                description: "\(datum.metricName) has \(datum.dimensions.count) dimensions; at most \(maxDimensions)")
        }
        let magnitude = abs(datum.value)
        guard datum.value.isFinite, magnitude == 0 || (8.515920e-109...1.174271e+108).contains(magnitude) else {
            throw InputError(
                description:
                    "\(datum.metricName) = \(datum.value) is outside CloudWatch's range (finite, 0 or 8.5e-109 to 1.2e108 in magnitude)"
            )
        }
    }

    static func encode(_ datum: MetricDatum, prefix: String, into params: inout QueryParameters) {
        params.set("\(prefix).MetricName", datum.metricName)
        params.setList("\(prefix).Dimensions", datum.dimensions, members: true) { dimension, d, p in
            p.set("\(dimension).Name", d.name)
            p.set("\(dimension).Value", d.value)
        }
        params.set("\(prefix).Value", format(datum.value))
        params.set("\(prefix).Timestamp", datum.timestamp.map(UTCTime.iso8601Milliseconds))
        params.set("\(prefix).Unit", datum.unit?.rawValue)
        params.set("\(prefix).StorageResolution", datum.storageResolution)
    }

    /// The shortest decimal text that reads back as exactly `value` (Swift's round-trip printing);
    /// whole numbers below 2^53 without `.0`.
    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            return String(Int64(value))
        }
        return value.description
    }

    // MARK: GetMetricData

    /// GetMetricData for any number of queries: batches of at most 500 queries (an expression stays in
    /// the batch of the queries it names; `METRICS()` needs them all in one), each batch followed
    /// through its pages. Results are merged by query id, in the order of the queries.
    public func getMetricData(
        _ queries: [MetricDataQuery], start: Date, end: Date, scanBy: MetricScanOrder = .timestampAscending,
        maxDatapoints: Int? = nil
    ) async throws -> MetricDataResults {
        guard start < end else {
            throw aws.invalidRequest(.cloudWatch, "GetMetricData", "the start time must be before the end time")
        }
        let batches: [[MetricDataQuery]]
        do {
            batches = try Self.queryBatches(queries, limit: min(max(1, queriesPerRequest), Self.maxQueriesPerRequest))
        } catch {
            throw aws.invalidRequest(.cloudWatch, "GetMetricData", error.description)
        }
        var merger = MetricDataMerger(order: queries.map(\.id))
        for batch in batches {
            var base = QueryParameters()
            Self.encode(batch, into: &base)
            base.set("StartTime", UTCTime.iso8601Milliseconds(start))
            base.set("EndTime", UTCTime.iso8601Milliseconds(end))
            base.set("ScanBy", scanBy.rawValue)
            base.set("MaxDatapoints", maxDatapoints)
            var token: String?
            var seen: Set<String> = []
            repeat {
                var page = base
                page.set("NextToken", token)
                let answer = try await aws.query(
                    .cloudWatch, action: "GetMetricData", parameters: page, parse: Self.page)
                merger.add(answer)
                token = answer.nextToken
                if let token, !seen.insert(token).inserted {
                    throw aws.invalidResponse(
                        .cloudWatch, "GetMetricData", "the same NextToken came back twice; stopping to avoid a loop")
                }
            } while token != nil
        }
        return merger.results
    }

    /// Splits queries into batches of at most `limit`, in order, keeping every expression with the
    /// queries its text names (transitively). Throws for duplicate ids, and for a group of
    /// interdependent queries larger than `limit`.
    static func queryBatches(_ queries: [MetricDataQuery], limit: Int) throws(InputError) -> [[MetricDataQuery]] {
        guard !queries.isEmpty else { return [] }
        var indexById: [String: Int] = [:]
        for (index, query) in queries.enumerated() {
            guard indexById.updateValue(index, forKey: query.id) == nil else {
                throw InputError(description: "query id \(query.id) is used twice")
            }
        }
        // Union-find over query indices.
        var parent = Array(queries.indices)
        func root(_ i: Int) -> Int {
            var i = i
            while parent[i] != i {
                parent[i] = parent[parent[i]]
                i = parent[i]
            }
            return i
        }
        func union(_ a: Int, _ b: Int) {
            let (ra, rb) = (root(a), root(b))
            if ra != rb { parent[max(ra, rb)] = min(ra, rb) }
        }
        for (index, query) in queries.enumerated() {
            guard case .expression(let text, _) = query.kind else { continue }
            if text.contains("METRICS(") {
                for other in queries.indices { union(index, other) }
                continue
            }
            for name in identifiers(in: text) {
                if let other = indexById[name] { union(index, other) }
            }
        }
        // Groups in order of their first query; each group's queries in their order.
        var groups: [[MetricDataQuery]] = []
        var groupOfRoot: [Int: Int] = [:]
        for (index, query) in queries.enumerated() {
            let r = root(index)
            if let group = groupOfRoot[r] {
                groups[group].append(query)
            } else {
                groupOfRoot[r] = groups.count
                groups.append([query])
            }
        }
        var batches: [[MetricDataQuery]] = []
        var current: [MetricDataQuery] = []
        for group in groups {
            guard group.count <= limit else {
                throw InputError(
                    description:
                        "\(group.count) queries depend on each other (through expressions); one request takes at most \(limit)"
                )
            }
            if current.count + group.count > limit {
                batches.append(current)
                current = []
            }
            current += group
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }

    /// Words that could be query ids in a metric math expression.
    static func identifiers(in expression: String) -> Set<String> {
        var names: Set<String> = []
        var word = ""
        for c in expression.unicodeScalars {
            if c == "_" || (c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c))) {
                word.unicodeScalars.append(c)
            } else {
                if !word.isEmpty { names.insert(word) }
                word = ""
            }
        }
        if !word.isEmpty { names.insert(word) }
        return names
    }

    static func encode(_ queries: [MetricDataQuery], into params: inout QueryParameters) {
        params.setList("MetricDataQueries", queries, members: true) { prefix, query, p in
            p.set("\(prefix).Id", query.id)
            p.set("\(prefix).Label", query.label)
            if !query.returnData { p.set("\(prefix).ReturnData", false) }
            switch query.kind {
            case .metric(let metric, let period, let stat, let unit):
                p.set("\(prefix).MetricStat.Metric.Namespace", metric.namespace)
                p.set("\(prefix).MetricStat.Metric.MetricName", metric.name)
                p.setList("\(prefix).MetricStat.Metric.Dimensions", metric.dimensions, members: true) {
                    d, dimension, q in
                    q.set("\(d).Name", dimension.name)
                    q.set("\(d).Value", dimension.value)
                }
                p.set("\(prefix).MetricStat.Period", period)
                p.set("\(prefix).MetricStat.Stat", stat)
                p.set("\(prefix).MetricStat.Unit", unit?.rawValue)
            case .expression(let expression, let period):
                p.set("\(prefix).Expression", expression)
                p.set("\(prefix).Period", period)
            }
        }
    }

    /// One GetMetricData answer.
    struct Page {
        var results: [MetricDataResult]
        var messages: [MetricDataMessage]
        var nextToken: String?
    }

    static func page(_ root: XML.Element) throws -> Page {
        guard let result = root["GetMetricDataResult"] else { throw MissingField("GetMetricDataResult") }
        func messages(_ element: XML.Element) -> [MetricDataMessage] {
            element.list("Messages", item: "member").map {
                MetricDataMessage(code: $0.string("Code") ?? "", value: $0.string("Value") ?? "")
            }
        }
        let results = try result.list("MetricDataResults", item: "member").map { member in
            let timestamps = try member.list("Timestamps", item: "member").map { item in
                guard let date = UTCTime.parseISO8601(item.text) else {
                    throw MissingField("a timestamp in \(item.text)")
                }
                return date
            }
            let values = try member.list("Values", item: "member").map { item in
                guard let value = Double(item.text) else { throw MissingField("a number in \(item.text)") }
                return value
            }
            guard timestamps.count == values.count else {
                throw MissingField("as many values (\(values.count)) as timestamps (\(timestamps.count))")
            }
            return MetricDataResult(
                id: try member.required("Id"), label: member.nonEmpty("Label"), timestamps: timestamps, values: values,
                statusCode: member.string("StatusCode") ?? "Complete", messages: messages(member))
        }
        return Page(results: results, messages: messages(result), nextToken: result.nonEmpty("NextToken"))
    }
}

/// Merges pages and batches by query id: data points appended, the last status kept.
struct MetricDataMerger {
    let order: [String]
    private let known: Set<String>
    private var byId: [String: MetricDataResult] = [:]
    private var extraIds: [String] = []
    private var messages: [MetricDataMessage] = []
    private var requests = 0

    init(order: [String]) {
        self.order = order
        known = Set(order)
    }

    mutating func add(_ page: CloudWatchClient.Page) {
        requests += 1
        messages += page.messages
        for result in page.results {
            if var existing = byId[result.id] {
                existing.timestamps += result.timestamps
                existing.values += result.values
                existing.statusCode = result.statusCode
                existing.messages += result.messages
                if existing.label == nil { existing.label = result.label }
                byId[result.id] = existing
            } else {
                byId[result.id] = result
                if !known.contains(result.id) { extraIds.append(result.id) }
            }
        }
    }

    var results: MetricDataResults {
        MetricDataResults(
            results: (order + extraIds).compactMap { byId[$0] }, messages: messages, requestCount: requests)
    }
}
