import AWSClient
import FleetWorkers
import Foundation
import Synchronization

// Test doubles of the narrow AWS ports (Sources/FleetWorkers/Shared/WorkerPorts.swift,
// Notifier/NoticeSenders.swift): each records what it was asked and answers what the test set, so the
// workers run with no server. `hold` keeps a call in flight (graceful-shutdown tests).

typealias Hold = @Sendable () async -> Void

/// EC2 instance statuses per instance id; every call is recorded with its region.
final class MemoryInstanceStatuses: InstanceStatusReading {
    private let state = Mutex<(statuses: [String: InstanceStatus], calls: [(ids: [String], region: String)])>(([:], []))

    func set(_ status: InstanceStatus) { state.withLock { $0.statuses[status.instanceId] = status } }
    var calls: [(ids: [String], region: String)] { state.withLock { $0.calls } }

    func instanceStatuses(_ instanceIds: [String], region: String) async throws -> [InstanceStatus] {
        state.withLock { s in
            s.calls.append((instanceIds, region))
            return instanceIds.compactMap { s.statuses[$0] }
        }
    }
}

/// E-mail and SNS, in memory: what was sent, with the region of the sender that sent it.
final class MemoryNoticeSenders: NoticeSenders {
    struct Failure: Error, CustomStringConvertible {
        var description: String { "injected AWS failure" }
    }

    enum Sent { case email(Email), sns(SNSMessage) }

    private let state = Mutex<(sent: [(item: Sent, region: String?)], failures: Int)>(([], 0))

    var emails: [(email: Email, region: String?)] {
        state.withLock { $0.sent.compactMap { if case .email(let e) = $0.item { (e, $0.region) } else { nil } } }
    }
    var messages: [(message: SNSMessage, region: String?)] {
        state.withLock { $0.sent.compactMap { if case .sns(let m) = $0.item { (m, $0.region) } else { nil } } }
    }
    /// The next `count` sends (e-mail or SNS) throw.
    func failNext(_ count: Int) { state.withLock { $0.failures = count } }

    /// Keeps `item`, or throws while failures are due; returns a message id.
    func record(_ item: Sent, region: String?) throws -> String {
        try state.withLock {
            if $0.failures > 0 {
                $0.failures -= 1
                throw Failure()
            }
            $0.sent.append((item, region))
            return "message-\($0.sent.count)"
        }
    }

    struct Mail: EmailSending {
        let owner: MemoryNoticeSenders
        let region: String?
        func sendEmail(_ email: Email) async throws -> String { try owner.record(.email(email), region: region) }
    }

    struct Topics: TopicPublishing {
        let owner: MemoryNoticeSenders
        let region: String?
        func publish(_ message: SNSMessage) async throws -> String { try owner.record(.sns(message), region: region) }
    }

    func email(region: String?) -> any EmailSending { Mail(owner: self, region: region) }
    func topics(region: String?) -> any TopicPublishing { Topics(owner: self, region: region) }
}

/// GetMetricData answered by `answer` per query id.
final class MemoryMetricData: MetricDataReading {
    let answer: @Sendable (MetricDataQuery, Date) -> [(timestamp: Date, value: Double)]
    let hold: Hold?
    private let calls = Mutex<[(queries: Int, region: String)]>([])

    init(hold: Hold? = nil, answer: @escaping @Sendable (MetricDataQuery, Date) -> [(timestamp: Date, value: Double)]) {
        self.answer = answer
        self.hold = hold
    }

    var requests: [(queries: Int, region: String)] { calls.withLock { $0 } }

    func metricData(_ queries: [MetricDataQuery], start: Date, end: Date, region: String) async throws
        -> MetricDataResults
    {
        calls.withLock { $0.append((queries.count, region)) }
        if let hold { await hold() }
        return MetricDataResults(
            queries.map { query in
                MetricDataResult(
                    id: query.id, points: answer(query, end).filter { $0.timestamp >= start && $0.timestamp <= end })
            })
    }
}

/// Tables of rows keyed by partition and sort key; `putItemIfAbsent` writes a row once.
final class MemoryTables: ConditionalItemWriting {
    let sortKey: String
    let hold: Hold?
    private let rows = Mutex<[String: [String: DynamoItem]]>([:])

    init(sortKey: String, hold: Hold? = nil) {
        self.sortKey = sortKey
        self.hold = hold
    }

    func items(_ table: String) -> [DynamoItem] { rows.withLock { Array(($0[table] ?? [:]).values) } }

    func putItemIfAbsent(tableName: String, item: DynamoItem, partitionKey: String) async throws -> PutIfAbsentResult {
        if let hold { await hold() }
        let key = "\(item[partitionKey]?.stringValue ?? "")|\(item[sortKey]?.stringValue ?? "")"
        return rows.withLock {
            if let existing = $0[tableName]?[key] { return .alreadyExists(existing) }
            $0[tableName, default: [:]][key] = item
            return .written
        }
    }
}

/// PutMetricData, kept.
final class MemoryMetricSink: MetricDataPutting {
    private let sent = Mutex<[(namespace: String, data: [MetricDatum])]>([])
    var calls: [(namespace: String, data: [MetricDatum])] { sent.withLock { $0 } }

    func putMetricData(namespace: String, data: [MetricDatum]) async throws -> Int {
        sent.withLock { $0.append((namespace, data)) }
        return 1
    }
}
