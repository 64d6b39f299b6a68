import Foundation

/// The last observation the decision worker handled for a target (kept in its stored document).
public struct LastProbe: Codable, Sendable, Equatable {
    public var at: Date
    public var healthy: Bool
    public var prober: String
    /// The instance checked; nil means the target's current one.
    public var instanceId: String?
    public var detail: String?

    public init(at: Date, healthy: Bool, prober: String, instanceId: String? = nil, detail: String? = nil) {
        self.at = at
        self.healthy = healthy
        self.prober = prober
        self.instanceId = instanceId
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case at, healthy, prober, detail
        case instanceId = "instance_id"
    }
}
