import Foundation

// Public initialisers for values the services answer with, so a driver other than the real service (a
// test's in-memory EC2 status reader or CloudWatch reader) can build them. The clients build them from
// the wire and never need these.

extension StatusCheck {
    /// `status`: "ok", "impaired", "insufficient-data", "not-applicable" or "initializing".
    public init(_ status: String, details: [Detail] = []) {
        self.init(status: status, details: details)
    }
}

extension MetricDataResult {
    /// `points` in the answer's order.
    public init(
        id: String, points: [(timestamp: Date, value: Double)], statusCode: String = "Complete", label: String? = nil,
        messages: [MetricDataMessage] = []
    ) {
        self.id = id
        self.label = label
        self.timestamps = points.map(\.timestamp)
        self.values = points.map(\.value)
        self.statusCode = statusCode
        self.messages = messages
    }
}

extension MetricDataResults {
    /// The answer of one request.
    public init(_ results: [MetricDataResult]) {
        self.results = results
        self.messages = []
        self.requestCount = 1
    }
}
