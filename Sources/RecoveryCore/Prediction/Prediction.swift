import Foundation

/// One data point of a metric: the start of its period and the period's statistic.
public struct MetricPoint: Sendable, Equatable {
    public var time: Date
    public var value: Double
    public init(time: Date, value: Double) {
        self.time = time
        self.value = value
    }
}

/// The metrics the predictor reads, by their CloudWatch names.
public enum PredictorMetric: String, Sendable, CaseIterable, Codable {
    case cpu = "CPUUtilization"
    case networkIn = "NetworkIn"
    case networkOut = "NetworkOut"
    case statusCheckFailed = "StatusCheckFailed"
    case cpuCreditBalance = "CPUCreditBalance"
    case memory = "mem_used_percent"
    case disk = "disk_used_percent"
}

/// A target's recent metrics, hourly, each series in time order (missing hours simply absent).
public struct MetricHistory: Sendable, Equatable {
    public var series: [PredictorMetric: [MetricPoint]]
    public init(_ series: [PredictorMetric: [MetricPoint]] = [:]) { self.series = series }
    public subscript(metric: PredictorMetric) -> [MetricPoint] {
        get { series[metric] ?? [] }
        set { series[metric] = newValue }
    }
}

/// What a prediction is about. The raw value is the body's `kind`.
public enum PredictionKind: String, Sendable, Codable, CaseIterable {
    case diskExhaustion = "disk_exhaustion"
    case memoryExhaustion = "memory_exhaustion"
    case cpuAnomaly = "cpu_anomaly"
    case networkAnomaly = "network_anomaly"
    case statusCheckRecurrence = "status_check_recurrence"
    case cpuCreditExhaustion = "cpu_credit_exhaustion"

    /// The repair the decision worker may use for it (docs/prediction.md): an SSM document the actuator
    /// runs, the ladder's `restart`, or `notify` when nothing automatic fits.
    public var suggestedRepair: String {
        switch self {
        case .diskExhaustion: "ssm:disk-cleanup"
        case .memoryExhaustion, .cpuAnomaly: "ssm:restart-services"
        case .statusCheckRecurrence: "restart"
        case .networkAnomaly, .cpuCreditExhaustion: "notify"
        }
    }
}

/// One input of a prediction's confidence: a name, its value and a sentence.
public struct PredictionFactor: Sendable, Equatable, Codable {
    public var name: String
    public var value: Double
    public var detail: String
    public init(_ name: String, _ value: Double, _ detail: String) {
        self.name = name
        self.value = PredictionNumber.plain(value)
        self.detail = detail
    }
}

/// When the predicted failure is expected (for an anomaly: the period of elevated risk).
public struct PredictionWindow: Sendable, Equatable, Codable {
    public var from: Date
    public var to: Date
    public init(from: Date, to: Date) {
        self.from = from
        self.to = max(from, to)
    }
}

/// What the model says about one target and one kind at one time.
public struct Prediction: Sendable, Equatable {
    public var kind: PredictionKind
    /// In [0, 1], three decimals.
    public var confidence: Double
    public var metric: PredictorMetric
    public var detail: String
    public var factors: [PredictionFactor]
    public var window: PredictionWindow
    public var evaluatedAt: Date

    public init(
        kind: PredictionKind, confidence: Double, metric: PredictorMetric, detail: String, factors: [PredictionFactor],
        window: PredictionWindow, evaluatedAt: Date
    ) {
        self.kind = kind
        self.confidence = PredictionNumber.plain(min(1, max(0, confidence)), decimals: 3)
        self.metric = metric
        self.detail = detail
        self.factors = factors
        self.window = window
        self.evaluatedAt = evaluatedAt
    }
}

/// The body of a `prediction` message (docs/messages.md, docs/prediction.md). Every number is a plain
/// decimal (at most four decimals, magnitude below 10^15, never NaN or infinite), so it survives the
/// recorder's digit-for-digit copy into DynamoDB and reads back equal.
public struct PredictionBody: Codable, Sendable, Equatable {
    public var kind: PredictionKind
    public var confidence: Double
    public var highConfidence: Bool
    public var metric: String
    public var detail: String
    public var factors: [PredictionFactor]
    public var window: PredictionWindow
    public var repair: String
    public var evaluatedAt: Date
    public var lookbackHours: Int
    public var model: String

    /// The model's name and version, so history rows say which model produced them.
    public static let modelName = "robust-onset-v4"

    public init(_ prediction: Prediction, highConfidenceThreshold: Double, lookbackHours: Int) {
        kind = prediction.kind
        confidence = prediction.confidence
        highConfidence = prediction.confidence >= highConfidenceThreshold
        metric = prediction.metric.rawValue
        detail = prediction.detail
        factors = prediction.factors
        // Whole milliseconds, as the wire carries them, so a body equals its decoded copy.
        func ms(_ d: Date) -> Date { Timestamp.parse(Timestamp.format(d)) ?? d }
        window = PredictionWindow(from: ms(prediction.window.from), to: ms(prediction.window.to))
        repair = prediction.kind.suggestedRepair
        evaluatedAt = ms(prediction.evaluatedAt)
        self.lookbackHours = lookbackHours
        model = Self.modelName
    }

    enum CodingKeys: String, CodingKey {
        case kind, confidence, metric, detail, factors, window, repair, model
        case highConfidence = "high_confidence"
        case evaluatedAt = "evaluated_at"
        case lookbackHours = "lookback_hours"
    }
}

/// A request for predictions now (`predict.<target>`, or `predict.fleet` for every target). Envelope
/// type `predict`; the body is optional text.
public struct PredictionRequest: Codable, Sendable, Equatable {
    public var reason: String?
    public init(reason: String? = nil) { self.reason = reason }
}

/// Numbers as the prediction body carries them.
public enum PredictionNumber {
    /// `value` rounded to `decimals` (≤ 4) places, clamped below 10^15 in magnitude; NaN becomes 0.
    /// Such a value prints as plain decimal text (no exponent) and reads back as the same `Double`.
    public static func plain(_ value: Double, decimals: Int = 4) -> Double {
        guard !value.isNaN else { return 0 }
        let limit = 1e15
        let clamped = min(limit, max(-limit, value))
        let scale = pow(10, Double(min(4, max(0, decimals))))
        let rounded = (clamped * scale).rounded() / scale
        return rounded == 0 ? 0 : rounded  // no -0
    }
}
