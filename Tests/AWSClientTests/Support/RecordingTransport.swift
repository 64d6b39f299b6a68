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

/// Passes requests to another transport and records the Query action of each.
final class CountingTransport: HTTPExecuting, @unchecked Sendable {
    // Invariant: `recorded` is only accessed under `lock`.
    private let lock = NSLock()
    private var recorded: [String] = []
    let inner: any HTTPExecuting

    init(_ inner: any HTTPExecuting) { self.inner = inner }

    var actions: [String] { lock.withLock { recorded } }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let action = RecordingTransport.form(request.body)["Action"] ?? request.method
        lock.withLock { recorded.append(action) }
        return try await inner.execute(request)
    }
}
