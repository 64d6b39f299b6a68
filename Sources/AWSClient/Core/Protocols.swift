import Foundation
import HTTPTransport

/// Parameters of a Query-protocol call, in order. Helpers write AWS's list conventions.
public struct QueryParameters: Sendable, Equatable {
    public struct Item: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    public private(set) var items: [Item] = []

    public init() {}

    public init(_ pairs: KeyValuePairs<String, String>) {
        for (name, value) in pairs { set(name, value) }
    }

    /// Adds `name=value`; nil values are left out, so optional inputs can be passed straight in.
    public mutating func set(_ name: String, _ value: String?) {
        guard let value else { return }
        items.append(Item(name: name, value: value))
    }

    public mutating func set(_ name: String, _ value: Int?) { set(name, value.map(String.init)) }

    public mutating func set(_ name: String, _ value: Bool?) { set(name, value.map { $0 ? "true" : "false" }) }

    /// A flat list, EC2 style: `Name.1`, `Name.2`, …
    public mutating func setList(_ name: String, _ values: [String]) {
        for (index, value) in values.enumerated() { set("\(name).\(index + 1)", value) }
    }

    /// A member list, the style of the other Query services: `Name.member.1`, …
    public mutating func setMemberList(_ name: String, _ values: [String]) {
        for (index, value) in values.enumerated() { set("\(name).member.\(index + 1)", value) }
    }

    /// A list of structures: `fill` receives each element's prefix (`Name.1` or `Name.member.1`).
    public mutating func setList<T>(
        _ name: String, _ elements: [T], members: Bool = false,
        _ fill: (_ prefix: String, T, inout QueryParameters) -> Void
    ) {
        for (index, element) in elements.enumerated() {
            fill(members ? "\(name).member.\(index + 1)" : "\(name).\(index + 1)", element, &self)
        }
    }

    public mutating func append(_ other: QueryParameters) { items += other.items }

    public func value(_ name: String) -> String? { items.first { $0.name == name }?.value }

    /// `application/x-www-form-urlencoded` body, RFC 3986 encoded (space as `%20`).
    public var formEncoded: String {
        items.map { URIEncoding.encode($0.name) + "=" + URIEncoding.encode($0.value) }.joined(separator: "&")
    }
}

extension AWSClient {
    /// A Query-protocol call (EC2, CloudWatch, SES, SNS, IAM, STS): a form-encoded POST of
    /// `Action`, `Version` and `parameters` to `/`. Returns the response's root element.
    ///
    /// Always POST: a signed GET with a query string is equally valid for AWS, but moto cannot verify
    /// it, and POST keeps long parameter lists out of URLs and logs.
    /// Throws ``AWSError`` (or `CancellationError`).
    public func query(
        _ service: AWSService, action: String, parameters: QueryParameters = QueryParameters()
    ) async throws -> XML.Element {
        var form = QueryParameters()
        form.set("Action", action)
        form.set("Version", service.apiVersion)
        form.append(parameters)
        let response = try await perform(
            service: service, operation: action, method: "POST", path: "/",
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: Array(form.formEncoded.utf8), errorShape: .xml)
        do {
            return try XML.parse(response.body)
        } catch {
            throw invalidResponse(service, action, response, "\(error)")
        }
    }

    /// A JSON-protocol call (DynamoDB 1.0, SSM 1.1, …): POST `/` with `X-Amz-Target:
    /// <prefix>.<operation>` and a JSON body. Returns the response body (`{}` when empty).
    public func json(_ service: AWSService, operation: String, body: [UInt8]) async throws -> [UInt8] {
        try await json(service, operation: operation, body: body, keepErrorDocument: false)
    }

    /// `keepErrorDocument`: an error answer's JSON document is kept in the thrown ``AWSError``
    /// (for error shapes that carry data, such as DynamoDB's existing item).
    func json(_ service: AWSService, operation: String, body: [UInt8], keepErrorDocument: Bool) async throws -> [UInt8]
    {
        guard let prefix = service.jsonTargetPrefix, let version = service.jsonVersion else {
            throw AWSError(
                kind: .invalidRequest, service: service.serviceId, operation: operation, region: region,
                message: "\(service.serviceId) does not speak the JSON protocol", attempts: 0)
        }
        let response = try await perform(
            service: service, operation: operation, method: "POST", path: "/",
            headers: [
                ("Content-Type", "application/x-amz-json-\(version)"), ("X-Amz-Target", "\(prefix).\(operation)"),
            ],
            body: body.isEmpty ? Array("{}".utf8) : body, errorShape: .json, keepErrorDocument: keepErrorDocument)
        return response.body.isEmpty ? Array("{}".utf8) : response.body
    }

    /// A JSON-protocol call with Codable input and output (member names as AWS spells them).
    public func json<Input: Encodable, Output: Decodable>(
        _ service: AWSService, operation: String, input: Input, output: Output.Type = Output.self
    ) async throws -> Output {
        try await json(service, operation: operation, input: input, output: output, keepErrorDocument: false)
    }

    func json<Input: Encodable, Output: Decodable>(
        _ service: AWSService, operation: String, input: Input, output: Output.Type, keepErrorDocument: Bool
    ) async throws -> Output {
        let body: Data
        do {
            body = try JSONEncoder().encode(input)
        } catch {
            throw AWSError(
                kind: .invalidRequest, service: service.serviceId, operation: operation, region: region,
                message: "cannot encode the input: \(error)", attempts: 0)
        }
        let bytes = try await json(
            service, operation: operation, body: [UInt8](body), keepErrorDocument: keepErrorDocument)
        do {
            return try JSONDecoder().decode(Output.self, from: Data(bytes))
        } catch {
            throw AWSError(
                kind: .invalidResponse, service: service.serviceId, operation: operation, region: region,
                message: "cannot decode the answer: \(error)")
        }
    }

    /// A REST-XML call (Route 53, S3-like): `method` on `path` (segments are URI-encoded here, so pass
    /// them raw, e.g. `/2013-04-01/hostedzone/Z1`), an optional XML body. Returns the root element
    /// of the answer, or nil for an empty body.
    public func restXML(
        _ service: AWSService, operation: String, method: String, path: String,
        query: [(name: String, value: String)] = [], body: [UInt8] = [],
        headers: [(name: String, value: String)] = []
    ) async throws -> XML.Element? {
        let encodedPath = path.split(separator: "/", omittingEmptySubsequences: false)
            .map { URIEncoding.encode($0) }.joined(separator: "/")
        let encodedQuery = query.map { URIEncoding.encode($0.name) + "=" + URIEncoding.encode($0.value) }
            .joined(separator: "&")
        var allHeaders = headers
        if !body.isEmpty && !allHeaders.contains(where: { $0.name.lowercased() == "content-type" }) {
            allHeaders.append(("Content-Type", "application/xml"))
        }
        let response = try await perform(
            service: service, operation: operation, method: method, path: encodedPath, query: encodedQuery,
            headers: allHeaders, body: body, errorShape: .xml)
        guard !response.body.isEmpty else { return nil }
        do {
            return try XML.parse(response.body)
        } catch {
            throw invalidResponse(service, operation, response, "\(error)")
        }
    }

    func invalidResponse(_ service: AWSService, _ operation: String, _ response: HTTPResponse, _ reason: String)
        -> AWSError
    {
        AWSError(
            kind: .invalidResponse, service: service.serviceId, operation: operation, region: region,
            httpStatus: response.status, message: reason,
            requestId: response.header("x-amzn-RequestId") ?? response.header("x-amz-request-id"))
    }
}
