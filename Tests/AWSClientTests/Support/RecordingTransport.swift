import Foundation
import HTTPTransport

@testable import AWSClient

/// A fake `HTTPExecuting` for pure tests of request encoding: records every request and answers from
/// a closure given the decoded form parameters.
final class RecordingTransport: HTTPExecuting, @unchecked Sendable {
    // Invariant: `recorded` is only accessed under `lock`.
    private let lock = NSLock()
    private var recorded: [HTTPRequest] = []
    let respond: @Sendable (_ form: [String: String], _ index: Int) -> (Int, String)

    init(respond: @escaping @Sendable (_ form: [String: String], _ index: Int) -> (Int, String)) {
        self.respond = respond
    }

    var requests: [HTTPRequest] { lock.withLock { recorded } }

    /// The form parameters of each recorded request.
    var forms: [[String: String]] { requests.map { Self.form($0.body) } }

    static func form(_ body: [UInt8]) -> [String: String] {
        var form: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            form[URIEncoding.decode(parts[0])] = parts.count > 1 ? URIEncoding.decode(parts[1]) : ""
        }
        return form
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let index = lock.withLock {
            recorded.append(request)
            return recorded.count - 1
        }
        let (status, body) = respond(Self.form(request.body), index)
        return HTTPResponse(
            status: status, headers: [("Content-Type", "text/xml")], body: Array(body.utf8),
            timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
    }
}

/// Passes requests to another transport and records the Query action (or JSON target) of each.
final class CountingTransport: HTTPExecuting, @unchecked Sendable {
    // Invariant: `recorded` is only accessed under `lock`.
    private let lock = NSLock()
    private var recorded: [String] = []
    let inner: any HTTPExecuting

    init(_ inner: any HTTPExecuting) { self.inner = inner }

    var actions: [String] { lock.withLock { recorded } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let target = request.headers.first { $0.name.lowercased() == "x-amz-target" }?.value
        let action = target ?? RecordingTransport.form(request.body)["Action"] ?? request.method
        lock.withLock { recorded.append(action) }
        return try await inner.execute(request)
    }
}

/// A fake `HTTPExecuting` that records every request and answers from a closure given the whole request
/// (for JSON and REST-XML calls, whose inputs are not form-encoded).
final class ScriptedTransport: HTTPExecuting, @unchecked Sendable {
    struct Answer: Sendable {
        var status: Int
        var body: String
        var headers: [(name: String, value: String)]
        init(_ status: Int, _ body: String, headers: [(name: String, value: String)] = []) {
            self.status = status
            self.body = body
            self.headers = headers
        }
    }

    // Invariant: `recorded` is only accessed under `lock`.
    private let lock = NSLock()
    private var recorded: [HTTPRequest] = []
    let respond: @Sendable (_ request: HTTPRequest, _ index: Int) -> Answer

    init(respond: @escaping @Sendable (_ request: HTTPRequest, _ index: Int) -> Answer) {
        self.respond = respond
    }

    var requests: [HTTPRequest] { lock.withLock { recorded } }

    /// Each request's body as text.
    var bodies: [String] { requests.map { String(decoding: $0.body, as: UTF8.self) } }

    /// Each request's body parsed as a JSON object.
    var jsonBodies: [[String: Any]] {
        requests.map { (try? JSONSerialization.jsonObject(with: Data($0.body))) as? [String: Any] ?? [:] }
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let index = lock.withLock {
            recorded.append(request)
            return recorded.count - 1
        }
        let answer = respond(request, index)
        return HTTPResponse(
            status: answer.status, headers: answer.headers, body: Array(answer.body.utf8),
            timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
    }
}

/// A client on a fake transport, for encoding tests.
func fakeAWS(_ transport: any HTTPExecuting, region: String = "us-east-1") -> AWSClient {
    AWSClient(
        region: region, credentials: StaticCredentialProvider(testCredentials), http: transport,
        environment: ["AWS_ENDPOINT_URL": "http://fake.local"], dependencies: SleepRecorder().dependencies)
}
