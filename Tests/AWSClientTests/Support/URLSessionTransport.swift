import Foundation
import HTTPTransport

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// STAND-IN, TEST ONLY: an `HTTPExecuting` over Foundation's URLSession so the AWS client's integration
/// tests can run before the curl-based `HTTPClient` (branch wt-http) is merged. Once it is, replace
/// `URLSessionTransport()` with `HTTPClient` in these tests and delete this file. Never move it to Sources.
///
/// Limits: no per-request connect timeout, redirects follow URLSession's defaults, timings are zero.
struct URLSessionTransport: HTTPExecuting {
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        return URLSession(configuration: configuration)
    }()

    struct InvalidURL: Error, CustomStringConvertible {
        var url: String
        var description: String { "invalid URL: \(url)" }
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard let url = URL(string: request.url) else { throw InvalidURL(url: request.url) }
        var urlRequest = URLRequest(url: url)
        urlRequest.httpMethod = request.method
        urlRequest.timeoutInterval = Double(request.timeout.components.seconds)
            + Double(request.timeout.components.attoseconds) / 1e18
        for header in request.headers {
            urlRequest.addValue(header.value, forHTTPHeaderField: header.name)
        }
        if !request.body.isEmpty { urlRequest.httpBody = Data(request.body) }
        let started = ContinuousClock.now
        let (data, response) = try await Self.session.data(for: urlRequest)
        let elapsed = ContinuousClock.now - started
        guard let http = response as? HTTPURLResponse else { throw InvalidURL(url: request.url) }
        var headers: [(name: String, value: String)] = []
        for (name, value) in http.allHeaderFields {
            headers.append((String(describing: name), String(describing: value)))
        }
        var body = [UInt8](data)
        let truncated = body.count > request.maxBodyBytes
        if truncated { body.removeLast(body.count - request.maxBodyBytes) }
        return HTTPResponse(
            status: http.statusCode, headers: headers, body: body, bodyTruncated: truncated,
            timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: elapsed, total: elapsed))
    }
}
