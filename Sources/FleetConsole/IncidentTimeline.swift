import FleetControl

/// One incident's rows of a target's history. Notices, requests, steps and state changes carry the incident
/// id as their correlation id; an operator's command carries none (it names the target), so the commands
/// sent between the incident's first and last row belong to it too.
enum IncidentTimeline {
    /// The incidents a history mentions, newest first.
    static func incidents(_ entries: [HistoryEntry]) -> [String] {
        var seen: Set<String> = []
        var ids: [String] = []
        for entry in entries.reversed() {
            guard let id = entry.correlationId, id.hasPrefix("inc-"), seen.insert(id).inserted else { continue }
            ids.append(id)
        }
        return ids
    }

    /// `open`: the incident is the target's current one, so a command sent after its last row belongs to it.
    static func rows(_ entries: [HistoryEntry], incident: String, open: Bool = false) -> [HistoryEntry] {
        let own = entries.filter { $0.correlationId == incident }
        guard let first = own.first?.occurredAt, let last = own.last?.occurredAt else { return [] }
        // ISO 8601 times of one format (the recorder's) order as text.
        return entries.filter {
            $0.correlationId == incident
                || ($0.type == "command" && $0.correlationId == nil && $0.occurredAt >= first
                    && (open || $0.occurredAt <= last))
        }
    }
}
