import Foundation

/// One HTTP request, as the probes, the webhooks and the AWS client send it.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    /// Header fields in order. Names are sent as given.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Bound on the whole exchange, from DNS to the last body byte.
    public var timeout: Duration
    /// Bound on DNS + TCP (+ TLS) connect.
    public var connectTimeout: Duration
    /// The response body is kept up to this many bytes; the rest is read and discarded.
    public var maxBodyBytes: Int
    public var tls: TLSOptions
    public var followRedirects: Bool
    /// Open a new connection for this request instead of reusing one (probes measure a cold connect).
    public var freshConnection: Bool

    public init(
        method: String = "GET", url: String, headers: [(name: String, value: String)] = [],
        body: [UInt8] = [], timeout: Duration = .seconds(10), connectTimeout: Duration = .seconds(5),
        maxBodyBytes: Int = 1 << 20, tls: TLSOptions = TLSOptions(), followRedirects: Bool = false,
        freshConnection: Bool = false
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.maxBodyBytes = maxBodyBytes
        self.tls = tls
        self.followRedirects = followRedirects
        self.freshConnection = freshConnection
    }
}

/// TLS settings. Verification of the peer and of the host name is on unless turned off explicitly.
public struct TLSOptions: Sendable {
    /// Verify the certificate chain and that it was issued for the host name. `false` turns off both
    /// (never for production; the certificate's expiry is still reported).
    public var verifyPeer: Bool
    /// A PEM file of CA certificates to trust instead of the system store.
    public var caFile: String?
    public init(verifyPeer: Bool = true, caFile: String? = nil) {
        self.verifyPeer = verifyPeer
        self.caFile = caFile
    }
}

/// Where the time went, each measured from the start of the request (as curl reports it), so
/// `dns <= connect <= firstByte <= total`. `tls` is zero when no TLS handshake was done (plain HTTP, or a
/// reused connection); otherwise `connect <= tls <= firstByte`. On a reused connection `connect == dns`.
public struct HTTPTiming: Sendable, Equatable {
    public var dns: Duration
    public var connect: Duration
    public var tls: Duration
    public var firstByte: Duration
    public var total: Duration
    public init(dns: Duration, connect: Duration, tls: Duration, firstByte: Duration, total: Duration) {
        self.dns = dns
        self.connect = connect
        self.tls = tls
        self.firstByte = firstByte
        self.total = total
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// True when the body was longer than `maxBodyBytes` and was cut.
    public var bodyTruncated: Bool
    public var timing: HTTPTiming
    /// The `notAfter` of the server's leaf certificate, for HTTPS (nil for plain HTTP). A request that
    /// reuses a kept-alive connection reports what that connection's handshake saw.
    public var certificateExpiry: Date?

    public init(
        status: Int, headers: [(name: String, value: String)], body: [UInt8], bodyTruncated: Bool = false,
        timing: HTTPTiming, certificateExpiry: Date? = nil
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bodyTruncated = bodyTruncated
        self.timing = timing
        self.certificateExpiry = certificateExpiry
    }

    /// The first header of that name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyString: String { String(decoding: body, as: UTF8.self) }
}

/// Anything that can carry out an HTTP request: the curl client, or a test double in pure-logic tests.
public protocol HTTPExecuting: Sendable {
    func execute(_ request: HTTPRequest) async throws -> HTTPResponse
}
