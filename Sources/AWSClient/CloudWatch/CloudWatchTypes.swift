import Foundation

/// A metric dimension (name and value). Order is kept as given.
public struct MetricDimension: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A CloudWatch unit. A struct rather than an enum so any unit AWS accepts can be named.
public struct MetricUnit: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let seconds = MetricUnit(rawValue: "Seconds")
    public static let milliseconds = MetricUnit(rawValue: "Milliseconds")
    public static let microseconds = MetricUnit(rawValue: "Microseconds")
    public static let bytes = MetricUnit(rawValue: "Bytes")
    public static let percent = MetricUnit(rawValue: "Percent")
    public static let count = MetricUnit(rawValue: "Count")
    public static let countPerSecond = MetricUnit(rawValue: "Count/Second")
    public static let none = MetricUnit(rawValue: "None")
}

/// One data point for ``CloudWatchClient/putMetricData(namespace:data:)``.
public struct MetricDatum: Sendable, Equatable {
    public var metricName: String
    public var dimensions: [MetricDimension]
    /// Sent as the shortest decimal text that reads back as this same `Double` (`0.1` is sent as `0.1`,
    /// never `0.1000000000000000055…`); whole numbers without a fraction. Must be finite, and zero or
    /// between 8.515920e-109 and 1.174271e+108 in magnitude (CloudWatch's range).
    public var value: Double
    /// When the value was measured; nil means the time CloudWatch receives it.
    public var timestamp: Date?
    public var unit: MetricUnit?
    /// 1 for a high-resolution metric (per-second storage); nil or 60 for standard.
    public var storageResolution: Int?

    public init(
        metricName: String, value: Double, dimensions: [MetricDimension] = [], timestamp: Date? = nil,
        unit: MetricUnit? = nil, storageResolution: Int? = nil
    ) {
        self.metricName = metricName
        self.value = value
        self.dimensions = dimensions
        self.timestamp = timestamp
        self.unit = unit
        self.storageResolution = storageResolution
    }
}

/// A metric, named by namespace, name and dimensions.
public struct Metric: Sendable, Hashable {
    public var namespace: String
    public var name: String
    public var dimensions: [MetricDimension]
    public init(namespace: String, name: String, dimensions: [MetricDimension] = []) {
        self.namespace = namespace
        self.name = name
        self.dimensions = dimensions
    }
}

/// One query of ``CloudWatchClient/getMetricData(_:start:end:scanBy:maxDatapoints:)``: a metric with a
/// statistic, or a math expression over other queries' ids.
public struct MetricDataQuery: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// A statistic (`Average`, `Sum`, `Maximum`, `Minimum`, `SampleCount`, `p99`, …) of a metric per
        /// `period` seconds.
        case metric(Metric, period: Int, stat: String, unit: MetricUnit?)
        /// Metric math (e.g. `errors / requests * 100`), a `SEARCH(…)`, or a Metrics Insights query.
        case expression(String, period: Int?)
    }

    /// Unique in the request; starts with a lowercase letter, then letters, digits and `_`.
    public var id: String
    public var kind: Kind
    public var label: String?
    /// False for a query only used as an input of an expression.
    public var returnData: Bool

    public init(id: String, _ kind: Kind, label: String? = nil, returnData: Bool = true) {
        self.id = id
        self.kind = kind
        self.label = label
        self.returnData = returnData
    }

    public static func metric(
        id: String, _ metric: Metric, period: Int, stat: String, unit: MetricUnit? = nil, label: String? = nil,
        returnData: Bool = true
    ) -> MetricDataQuery {
        MetricDataQuery(
            id: id, .metric(metric, period: period, stat: stat, unit: unit), label: label, returnData: returnData)
    }

    public static func expression(
        id: String, _ expression: String, period: Int? = nil, label: String? = nil, returnData: Bool = true
    ) -> MetricDataQuery {
        MetricDataQuery(id: id, .expression(expression, period: period), label: label, returnData: returnData)
    }
}

/// The order of the data points in each result.
public enum MetricScanOrder: String, Sendable {
    case timestampAscending = "TimestampAscending"
    case timestampDescending = "TimestampDescending"
}

/// A message CloudWatch attached to a result or to the whole answer (e.g. `MaxQueryTimeRangeExceed`).
public struct MetricDataMessage: Sendable, Hashable {
    public var code: String
    public var value: String
}

/// The data of one query, merged across every page and call.
public struct MetricDataResult: Sendable, Equatable {
    public var id: String
    public var label: String?
    /// Paired with `values`, index by index.
    public var timestamps: [Date]
    public var values: [Double]
    /// `Complete`, `PartialData` (more than the data-point limit), `InternalError` or `Forbidden`.
    public var statusCode: String
    public var messages: [MetricDataMessage]

    /// The data points as (timestamp, value) pairs, in the answer's order.
    public var points: [(timestamp: Date, value: Double)] {
        Array(zip(timestamps, values)).map { (timestamp: $0.0, value: $0.1) }
    }
}

/// What ``CloudWatchClient/getMetricData(_:start:end:scanBy:maxDatapoints:)`` returns.
public struct MetricDataResults: Sendable, Equatable {
    /// One per query that returns data, in the order of the queries.
    public var results: [MetricDataResult]
    /// Messages about the whole request, from every call.
    public var messages: [MetricDataMessage]
    /// How many GetMetricData requests it took (batches × pages).
    public var requestCount: Int

    public subscript(id: String) -> MetricDataResult? { results.first { $0.id == id } }
}
