import AWSClient
import Foundation

// Narrow ports over the outside services the probe, predictor and recorder call besides the broker,
// Redis and HTTP (those have ports of their own: `MessagePublishing`, `KeyValueStore`, `HTTPExecuting`).
// Each names only the calls its worker makes; the AWS clients conform here, and the tests pass doubles
// that need no server (docs/architecture.md).

/// EC2's DescribeInstanceStatus in any region (the probe's status sweep). `EC2Client` in production.
public protocol InstanceStatusReading: Sendable {
    /// The status of each of `instanceIds` in `region`, stopped instances included; an instance EC2 does
    /// not know is left out.
    func instanceStatuses(_ instanceIds: [String], region: String) async throws -> [InstanceStatus]
}

extension EC2Client: InstanceStatusReading {
    public func instanceStatuses(_ instanceIds: [String], region: String) async throws -> [InstanceStatus] {
        try await (region == self.region ? self : withRegion(region)).describeInstanceStatus(instanceIds: instanceIds)
    }
}

/// CloudWatch's GetMetricData in any region (the predictor's history). `CloudWatchClient` in production.
public protocol MetricDataReading: Sendable {
    /// Every query's data points between `start` and `end`, asked of `region`.
    func metricData(_ queries: [MetricDataQuery], start: Date, end: Date, region: String) async throws
        -> MetricDataResults
}

extension CloudWatchClient: MetricDataReading {
    public func metricData(_ queries: [MetricDataQuery], start: Date, end: Date, region: String) async throws
        -> MetricDataResults
    {
        try await (region == self.region ? self : withRegion(region)).getMetricData(queries, start: start, end: end)
    }
}

/// CloudWatch's PutMetricData (the recorder's custom metrics). `CloudWatchClient` in production.
public protocol MetricDataPutting: Sendable {
    /// Stores `data` under `namespace`; returns the number of requests it took.
    @discardableResult func putMetricData(namespace: String, data: [MetricDatum]) async throws -> Int
}

extension CloudWatchClient: MetricDataPutting {}

/// DynamoDB's conditional PutItem (the recorder's history rows). `DynamoDBClient` in production.
public protocol ConditionalItemWriting: Sendable {
    /// Writes `item` unless an item with its `partitionKey` value (and sort key) is there already.
    /// DynamoDB refusing the item as invalid throws an `AWSError` with code `ValidationException`.
    func putItemIfAbsent(tableName: String, item: DynamoItem, partitionKey: String) async throws -> PutIfAbsentResult
}

extension DynamoDBClient: ConditionalItemWriting {
    public func putItemIfAbsent(tableName: String, item: DynamoItem, partitionKey: String) async throws
        -> PutIfAbsentResult
    {
        try await putItemIfAbsent(
            tableName: tableName, item: item, partitionKey: partitionKey, returnExistingItem: false)
    }
}

/// The targets' configuration as it is now (the targets file, with the instance-config table laid over
/// it). `TargetConfigSource` in production; a test passes a fixed file, or one that fails.
public protocol TargetConfigReading: Sendable {
    /// Throws when the configuration cannot be read (the table is unreachable).
    func current() async throws -> TargetConfigFile
}

extension TargetConfigSource: TargetConfigReading {}

extension TargetConfigReading where Self == TargetConfigSource {
    /// The targets file alone, read once.
    public static func fixed(_ file: TargetConfigFile) -> TargetConfigSource { TargetConfigSource(file: file) }
}
