import Foundation

/// Why an HTTP request failed.
///
/// The URL is only ever shown as `scheme://host:port`: paths, query strings and user info can hold secrets
/// (Slack and Teams webhook paths are the credential), so they never reach the description, and they are
/// also scrubbed from curl's own message.
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The request's `timeout` (or `connectTimeout`) ran out.
        case timeout
        case couldNotResolveHost
        /// Nothing accepted the TCP connection (refused, unreachable).
        case couldNotConnect
        /// The server's certificate chain or host name did not verify.
        case tlsVerificationFailed
        /// Any other TLS failure: handshake, unreadable CA file, unsupported cipher.
        case tlsError
        case tooManyRedirects
        case sendFailed
        /// The connection broke while reading the response, or the server closed it without an answer.
        case receiveFailed
        /// The client was shut down before the request finished.
        case shutdown
        /// The URL is malformed or not http/https.
        case invalidURL
        /// The request itself cannot be sent as given (e.g. a line break inside a header).
        case invalidRequest
        /// Any other libcurl failure; `code` is the CURLcode (or CURLMcode for multi-handle failures).
        case other(code: Int)
    }

    public var kind: Kind
    /// libcurl's explanation (its error buffer when it filled one, else the generic text), secrets removed.
    public var message: String
    /// The request's URL reduced to `scheme://host:port`.
    public var redactedURL: String
    /// The libcurl status code, when the failure came from libcurl.
    public var curlCode: Int?

    public init(kind: Kind, message: String, redactedURL: String, curlCode: Int? = nil) {
        self.kind = kind
        self.message = message
        self.redactedURL = redactedURL
        self.curlCode = curlCode
    }

    /// An error about a request to `url`, for drivers of `HTTPExecuting` other than `HTTPClient` (the
    /// in-memory one in tests): the URL is reduced to `scheme://host:port` and scrubbed from `message`,
    /// exactly as the curl client does it.
    public init(kind: Kind, message: String = "", url: String) {
        let redacted = RedactedURL(url)
        self.init(kind: kind, message: redacted.scrub(message), redactedURL: redacted.text)
    }

    public var description: String {
        var text = "HTTP request to \(redactedURL) failed: \(kind.summary)"
        if !message.isEmpty {
            text += " (" + (curlCode.map { "curl error \($0): " } ?? "") + message + ")"
        }
        return text + ". " + kind.advice
    }
}

extension HTTPClientError.Kind {
    var summary: String {
        switch self {
        case .timeout: "timed out"
        case .couldNotResolveHost: "could not resolve the host name"
        case .couldNotConnect: "could not connect"
        case .tlsVerificationFailed: "the server's TLS certificate did not verify"
        case .tlsError: "TLS error"
        case .tooManyRedirects: "too many redirects"
        case .sendFailed: "sending the request failed"
        case .receiveFailed: "receiving the response failed"
        case .shutdown: "the HTTP client is shut down"
        case .invalidURL: "invalid URL"
        case .invalidRequest: "invalid request"
        case .other(let code): "libcurl error \(code)"
        }
    }

    var advice: String {
        switch self {
        case .timeout:
            "The server did not answer within the request's timeout; it may be down or overloaded."
        case .couldNotResolveHost:
            "Check the host name and the DNS configuration."
        case .couldNotConnect:
            "Nothing accepted the connection; check that the server is up and the port is right."
        case .tlsVerificationFailed:
            "The certificate is untrusted, expired or issued for another name; fix the server's certificate, "
                + "or set tls.caFile to a PEM file of the private CA that issued it."
        case .tlsError:
            "Check the server's TLS configuration and, if set, that tls.caFile is a readable PEM file."
        case .tooManyRedirects:
            "The server keeps redirecting; check the URL."
        case .sendFailed:
            "The connection broke while sending; retry, and check the server's logs."
        case .receiveFailed:
            "The connection broke or closed before a complete answer; retry, and check the server's logs."
        case .shutdown:
            "Create a new HTTPClient; this one no longer accepts requests."
        case .invalidURL:
            "Check the URL; only http:// and https:// URLs are supported."
        case .invalidRequest:
            "Remove line breaks from the method and the header names and values."
        case .other:
            "See libcurl's message."
        }
    }
}

/// A URL reduced to what may be logged (`scheme://host:port`), plus the parts that must be scrubbed from
/// any text that might echo them.
///
/// Parsed by hand, so that even a URL that no parser accepts is reduced safely.
struct RedactedURL: Sendable {
    let text: String
    let secrets: [String]

    init(_ raw: String) {
        var secrets: [String] = [raw]
        var scheme = ""
        var rest = Substring(raw)
        if let range = raw.range(of: "://") {
            scheme = raw[..<range.lowerBound].lowercased()
            rest = raw[range.upperBound...]
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let remainder = rest[authorityEnd...]
        if !remainder.isEmpty {
            secrets.append(String(remainder))
            secrets += remainder.split { "/?&=#;".contains($0) }.map(String.init)
        }
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            secrets.append(String(userInfo))
            secrets += userInfo.split(separator: ":").map(String.init)
            authority = authority[authority.index(after: at)...]
        }
        var host = Substring(authority)
        var port: Substring = ""
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            host = authority[...close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { port = after.dropFirst() }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            port = authority[authority.index(after: colon)...]
        }
        if port.isEmpty {
            port = scheme == "https" ? "443" : scheme == "http" ? "80" : ""
        }
        let safeHost = host.allSatisfy { $0.isLetter || $0.isNumber || "-._[]:".contains($0) }
        if scheme.isEmpty || host.isEmpty || !safeHost || !port.allSatisfy(\.isNumber) {
            text = "(unparseable URL)"
        } else {
            text = "\(scheme)://\(host.lowercased())" + (port.isEmpty ? "" : ":\(port)")
        }
        // Longest first, so a whole path is replaced before its pieces; very short pieces carry no secret
        // and replacing them would garble the message.
        self.secrets = Array(Set(secrets.filter { $0.count >= 4 })).sorted { $0.count > $1.count }
    }

    /// `message` with every secret part of the URL replaced.
    func scrub(_ message: String) -> String {
        var result = message
        for secret in secrets where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return result
    }
}
