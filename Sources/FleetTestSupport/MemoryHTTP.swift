import Foundation
import HTTPTransport
import Synchronization

/// The in-memory `HTTPExecuting`: answers scripted per URL, keeps every request it received, and fails
/// the way `HTTPClient` fails (both pass one contract test, `Tests/FleetWorkersTests/HTTPContractTests.swift`):
///
/// - A URL nobody scripted is a server that is not there: `HTTPClientError` `.couldNotConnect`.
/// - `.hang` is a server that takes the connection and never answers: the request's `timeout` ends it
///   (`.timeout`).
/// - After `shutdown()` every request fails with `.shutdown`, also one held or hanging at that moment.
/// - A cancelled request throws `CancellationError`.
///
/// Errors name the URL only as `scheme://host:port`, as the real client's do (a webhook's path is its
/// secret).
public final class MemoryHTTP: HTTPExecuting {
    /// What a scripted URL answers.
    public enum Reply: Sendable {
        case answer(status: Int, body: [UInt8], headers: [(name: String, value: String)])
        /// The request fails as the curl client reports it (`.couldNotConnect`, `.receiveFailed`, …).
        case fail(HTTPClientError.Kind)
        /// Never answers: the request times out after its `timeout`.
        case hang

        /// A response with a text body.
        public static func status(_ status: Int, _ body: String = "", headers: [(name: String, value: String)] = [])
            -> Reply
        {
            .answer(status: status, body: Array(body.utf8), headers: headers)
        }
    }

    /// Runs before a scripted URL answers: a test keeps a request in flight with it.
    public typealias Hold = @Sendable (HTTPRequest) async -> Void

    private struct Route {
        var replies: [Reply]
        var next = 0
        var hold: Hold?
    }

    private struct State {
        var routes: [String: Route] = [:]
        var requests: [HTTPRequest] = []
        var isShutdown = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Requests to exactly `url` get `replies` in turn, the last one again and again. Replaces any
    /// earlier script of `url`.
    public func script(_ url: String, _ replies: Reply..., hold: Hold? = nil) {
        precondition(!replies.isEmpty, "script at least one reply")
        state.withLock { $0.routes[url] = Route(replies: replies, hold: hold) }
    }

    /// Every request received (not those refused after `shutdown()`), in order.
    public var requests: [HTTPRequest] { state.withLock { $0.requests } }

    public func requests(to url: String) -> [HTTPRequest] { requests.filter { $0.url == url } }

    /// Fails every later request, and those held or hanging now, with `.shutdown`.
    public func shutdown() { state.withLock { $0.isShutdown = true } }

    public var isShutdown: Bool { state.withLock { $0.isShutdown } }

    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        try Task.checkCancellation()
        enum Taken { case shutdown, unscripted, reply(Reply, Hold?) }
        let taken: Taken = state.withLock { s in
            guard !s.isShutdown else { return .shutdown }
            s.requests.append(request)
            guard var route = s.routes[request.url] else { return .unscripted }
            let reply = route.replies[min(route.next, route.replies.count - 1)]
            route.next += 1
            s.routes[request.url] = route
            return .reply(reply, route.hold)
        }
        let reply: Reply
        let hold: Hold?
        switch taken {
        case .shutdown: throw HTTPClientError(kind: .shutdown, url: request.url)
        case .unscripted: throw HTTPClientError(kind: .couldNotConnect, url: request.url)
        case let .reply(r, h): (reply, hold) = (r, h)
        }
        if let hold { await hold(request) }
        try checkRunning(request)
        switch reply {
        case let .answer(status, body, headers):
            let kept = Array(body.prefix(max(0, request.maxBodyBytes)))
            return HTTPResponse(
                status: status, headers: headers, body: kept, bodyTruncated: kept.count < body.count,
                timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
        case let .fail(kind):
            throw HTTPClientError(kind: kind, url: request.url)
        case .hang:
            let deadline = ContinuousClock.now + request.timeout
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: min(.milliseconds(10), deadline - ContinuousClock.now))
                try checkRunning(request)
            }
            throw HTTPClientError(kind: .timeout, url: request.url)
        }
    }

    private func checkRunning(_ request: HTTPRequest) throws {
        try Task.checkCancellation()
        if isShutdown { throw HTTPClientError(kind: .shutdown, url: request.url) }
    }
}
