import Foundation

/// Plumbing shared by the typed service clients.
extension AWSClient {
    /// A Query call whose answer `parse` decodes; a decoding failure becomes an `.invalidResponse`
    /// ``AWSError`` carrying the request id.
    func query<T>(
        _ service: AWSService, action: String, parameters: QueryParameters, parse: (XML.Element) throws -> T
    ) async throws -> T {
        let root = try await query(service, action: action, parameters: parameters)
        do {
            return try parse(root)
        } catch {
            throw AWSError(
                kind: .invalidResponse, service: service.serviceId, operation: action, region: region,
                message: "\(error)", requestId: root.first(named: "RequestId")?.text)
        }
    }

    /// An input the client refuses before sending anything (`attempts` 0).
    func invalidRequest(_ service: AWSService, _ operation: String, _ message: String) -> AWSError {
        AWSError(
            kind: .invalidRequest, service: service.serviceId, operation: operation, region: region, message: message,
            attempts: 0)
    }

    func invalidResponse(_ service: AWSService, _ operation: String, _ message: String) -> AWSError {
        AWSError(
            kind: .invalidResponse, service: service.serviceId, operation: operation, region: region, message: message)
    }
}

/// A timestamp in a JSON answer: epoch seconds as a number (the JSON protocols' default), or an ISO 8601
/// string (SSM's `StringDateTime` members, and moto's spelling of some). An empty or unreadable string
/// gives nil rather than failing the whole answer (SSM sends "" for a time not reached yet).
struct JSONTimestamp: Decodable, Sendable {
    var date: Date?

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let seconds = try? container.decode(Double.self) {
            date = Date(timeIntervalSince1970: seconds)
        } else {
            let text = try container.decode(String.self)
            date = UTCTime.parseISO8601(text) ?? UTCTime.parseISO8601(text + "Z")
        }
    }
}
