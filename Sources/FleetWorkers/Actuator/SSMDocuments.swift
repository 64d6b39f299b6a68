import Foundation

/// What the actuator knows of the documents shipped in `compose/ssm/` (docs/actuator.md, "SSM"), so it can
/// refuse a request SSM would refuse (a required parameter missing, an unknown one) before SendCommand,
/// with a clear reason. `SSMDocumentTests` checks this table against the JSON files.
struct FleetSSMDocument: Sendable, Equatable {
    /// Every declared parameter.
    let parameters: Set<String>
    /// The parameters without a default: SendCommand without them fails.
    let required: Set<String>
    /// The document's own `executionTimeout` default, seconds (how long SSM lets the script run).
    let defaultExecutionTimeout: Int

    /// Short name → document.
    static let shipped: [String: FleetSSMDocument] = [
        "restart-services": FleetSSMDocument(
            parameters: ["services", "serviceTimeout", "executionTimeout"], required: ["services"],
            defaultExecutionTimeout: 600),
        "verify-health": FleetSSMDocument(
            parameters: ["url", "expectedStatus", "requestTimeout", "attempts", "executionTimeout"], required: [],
            defaultExecutionTimeout: 300),
        "diagnostics": FleetSSMDocument(
            parameters: ["logLines", "executionTimeout"], required: [], defaultExecutionTimeout: 120),
        "disk-cleanup": FleetSSMDocument(
            parameters: ["maxAgeDays", "journalMaxSize", "stepTimeout", "executionTimeout"], required: [],
            defaultExecutionTimeout: 900),
    ]

    /// The largest `executionTimeout` the documents' `allowedPattern` (`^[0-9]{1,4}$`) accepts.
    static let maxExecutionTimeout = 9999

    /// Why SSM would refuse `parameters` for this document, or nil.
    func problem(with parameters: [String: [String]]) -> String? {
        let given = parameters.filter { !$0.value.joined().trimmingCharacters(in: .whitespaces).isEmpty }.keys
        let missing = required.subtracting(given)
        if !missing.isEmpty {
            return "the required parameter(s) \(missing.sorted().joined(separator: ", ")) are missing"
        }
        let unknown = Set(parameters.keys).subtracting(self.parameters)
        if !unknown.isEmpty {
            return
                "unknown parameter(s) \(unknown.sorted().joined(separator: ", ")) (it takes \(self.parameters.sorted().joined(separator: ", ")))"
        }
        return nil
    }
}
