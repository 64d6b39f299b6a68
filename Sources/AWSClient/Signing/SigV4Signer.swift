import FleetCrypto
import Foundation
import HTTPTransport

/// A request could not be signed.
public struct AWSSigningError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "AWS SigV4 signing failed: \(reason)" }
}

/// AWS Signature Version 4 (header and query-string forms). Pure: no I/O, the date is an argument.
///
/// One signer per (service, region). Copies share a small cache of the derived signing key, which only
/// changes with the date, the region, the service and the secret.
public struct SigV4Signer: Sendable {
    public struct Options: Sendable, Equatable {
        /// URI-encode each path segment of the (already encoded) request path again. True for every
        /// service except S3.
        public var doubleURIEncode: Bool
        /// Remove `.`/`..` segments and repeated slashes from the path before signing. False for S3.
        public var normalizePath: Bool
        /// With a session token: true puts `X-Amz-Security-Token` in the signed headers (all current
        /// services); false adds it after signing (a few legacy services require that).
        public var signSecurityToken: Bool
        /// Send `x-amz-content-sha256` with the payload hash (S3 requires it; harmless elsewhere).
        public var addContentSHA256Header: Bool

        public init(
            doubleURIEncode: Bool = true, normalizePath: Bool = true, signSecurityToken: Bool = true,
            addContentSHA256Header: Bool = false
        ) {
            self.doubleURIEncode = doubleURIEncode
            self.normalizePath = normalizePath
            self.signSecurityToken = signSecurityToken
            self.addContentSHA256Header = addContentSHA256Header
        }

        public static let `default` = Options()
        public static let s3 = Options(doubleURIEncode: false, normalizePath: false, addContentSHA256Header: true)
    }

    /// The signed request and the intermediate strings (useful when AWS answers SignatureDoesNotMatch:
    /// its message shows the canonical request it computed).
    public struct SignedRequest: Sendable {
        public var request: HTTPRequest
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var authorization: String
    }

    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// Headers never signed: the transport or proxies may add or change them.
    static let unsignedHeaders: Set<String> = [
        "authorization", "user-agent", "expect", "x-amzn-trace-id", "connection", "transfer-encoding",
    ]

    public let service: String
    public let region: String
    public let options: Options
    private let keyCache = Locked<CachedKey?>(nil)

    private struct CachedKey {
        var secret: String
        var dateStamp: String
        var key: [UInt8]
    }

    public init(service: String, region: String, options: Options = .default) {
        self.service = service
        self.region = region
        self.options = options
    }

    // MARK: Header signing

    /// Signs `request` with an `Authorization` header. Sets `X-Amz-Date` (replacing any), and
    /// `X-Amz-Security-Token` when the credentials carry a session token.
    ///
    /// - Parameter payloadHash: hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`; computed when nil.
    public func sign(
        _ request: HTTPRequest, credentials: AWSCredentials, date: Date, payloadHash: String? = nil
    ) throws(AWSSigningError) -> SignedRequest {
        let amzDate = UTCTime.amzDate(date)
        let dateStamp = String(amzDate.prefix(8))
        var request = request
        request.headers.removeAll { header in
            let name = header.name.lowercased()
            return name == "authorization" || name == "x-amz-date"
                || (credentials.sessionToken != nil && name == "x-amz-security-token")
                || (options.addContentSHA256Header && name == "x-amz-content-sha256")
        }
        request.headers.append((name: "X-Amz-Date", value: amzDate))
        if let token = credentials.sessionToken, options.signSecurityToken {
            request.headers.append((name: "X-Amz-Security-Token", value: token))
        }
        let bodyHash: String
        if let payloadHash { bodyHash = payloadHash } else { bodyHash = try Self.hashHex(request.body) }
        if options.addContentSHA256Header {
            request.headers.append((name: "x-amz-content-sha256", value: bodyHash))
        }

        let url = try SplitURL(request.url)
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(request.headers, url: url)
        let canonicalRequest = [
            request.method.uppercased(),
            canonicalURI(url.path),
            Self.canonicalQuery(url.query),
            canonicalHeaders,
            signedHeaders,
            bodyHash,
        ].joined(separator: "\n")
        let scope = "\(dateStamp)/\(region)/\(service)/aws4_request"
        let stringToSign = try [Self.algorithm, amzDate, scope, Self.hashHex(Array(canonicalRequest.utf8))]
            .joined(separator: "\n")
        let signature = try hexEncoded(
            hmac(signingKey(secret: credentials.secretAccessKey, dateStamp: dateStamp), stringToSign))
        let authorization =
            "\(Self.algorithm) Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        request.headers.append((name: "Authorization", value: authorization))
        if let token = credentials.sessionToken, !options.signSecurityToken {
            request.headers.append((name: "X-Amz-Security-Token", value: token))
        }
        return SignedRequest(
            request: request, canonicalRequest: canonicalRequest, stringToSign: stringToSign,
            signature: signature, authorization: authorization)
    }

    // MARK: Query-string signing (presigned URLs)

    /// A presigned URL for `method url`, valid for `expires` seconds from `date`. Only `host` is signed;
    /// the payload hash is that of an empty body (S3 signers use `UNSIGNED-PAYLOAD` via `payloadHash`).
    public func presignURL(
        method: String = "GET", url: String, credentials: AWSCredentials, date: Date, expires: Int = 3600,
        payloadHash: String? = nil
    ) throws(AWSSigningError) -> String {
        let amzDate = UTCTime.amzDate(date)
        let dateStamp = String(amzDate.prefix(8))
        let scope = "\(dateStamp)/\(region)/\(service)/aws4_request"
        let split = try SplitURL(url)
        var auth: [(String, String)] = [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope)"),
            ("X-Amz-Date", amzDate),
            ("X-Amz-Expires", String(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        if let token = credentials.sessionToken { auth.append(("X-Amz-Security-Token", token)) }
        let authQuery = auth.map { "\(URIEncoding.encode($0.0))=\(URIEncoding.encode($0.1))" }
            .joined(separator: "&")
        let query = split.query.isEmpty ? authQuery : split.query + "&" + authQuery
        let bodyHash: String
        if let payloadHash { bodyHash = payloadHash } else { bodyHash = try Self.hashHex([]) }
        let canonicalRequest = [
            method.uppercased(), canonicalURI(split.path), Self.canonicalQuery(query),
            "host:\(split.signingHost)\n", "host", bodyHash,
        ].joined(separator: "\n")
        let stringToSign = try [Self.algorithm, amzDate, scope, Self.hashHex(Array(canonicalRequest.utf8))]
            .joined(separator: "\n")
        let signature = try hexEncoded(
            hmac(signingKey(secret: credentials.secretAccessKey, dateStamp: dateStamp), stringToSign))
        return
            "\(split.scheme)://\(split.authority)\(split.path.isEmpty ? "/" : split.path)?\(query)&X-Amz-Signature=\(signature)"
    }

    // MARK: Pieces (internal for tests)

    func canonicalURI(_ path: String) -> String {
        var path = path.isEmpty ? "/" : path
        if options.normalizePath { path = Self.normalize(path) }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        return segments.map { segment in
            options.doubleURIEncode
                ? URIEncoding.encode(segment) : URIEncoding.encode(URIEncoding.decode(segment))
        }.joined(separator: "/")
    }

    /// Removes `.` and `..` segments and empty segments; keeps a trailing slash.
    static func normalize(_ path: String) -> String {
        var stack: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = stack.popLast()
            default: stack.append(segment)
            }
        }
        var result = "/" + stack.joined(separator: "/")
        if path.hasSuffix("/") && result != "/" { result += "/" }
        return result
    }

    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        var pairs: [(String, String)] = []
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let key: Substring
            let value: Substring
            if let eq = part.firstIndex(of: "=") {
                key = part[..<eq]
                value = part[part.index(after: eq)...]
            } else {
                key = part
                value = ""
            }
            pairs.append((URIEncoding.encode(URIEncoding.decode(key)), URIEncoding.encode(URIEncoding.decode(value))))
        }
        // Encoded keys and values are ASCII, so String ordering is byte ordering.
        pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Canonical header block (each line ending in `\n`) and the signed-headers list.
    static func canonicalHeaders(_ headers: [(name: String, value: String)], url: SplitURL) -> (String, String) {
        var values: [String: [String]] = [:]
        for header in headers {
            let name = header.name.lowercased().trimmingCharacters(in: .whitespaces)
            guard !unsignedHeaders.contains(name) else { continue }
            values[name, default: []].append(trimmedValue(header.value))
        }
        if values["host"] == nil { values["host"] = [url.signingHost] }
        let names = values.keys.sorted()
        var block = ""
        for name in names {
            block += name + ":" + values[name]!.joined(separator: ",") + "\n"
        }
        return (block, names.joined(separator: ";"))
    }

    /// Trims the value and turns each run of whitespace (including folded line breaks) into one space.
    static func trimmedValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
            .joined(separator: " ")
    }

    static func hashHex(_ bytes: [UInt8]) throws(AWSSigningError) -> String {
        do {
            return hexEncoded(try sha256(bytes))
        } catch {
            throw AWSSigningError(reason: error.description)
        }
    }

    private func hmac(_ key: [UInt8], _ data: String) throws(AWSSigningError) -> [UInt8] {
        do {
            return try hmacSHA256(key: key, data: data)
        } catch {
            throw AWSSigningError(reason: error.description)
        }
    }

    func signingKey(secret: String, dateStamp: String) throws(AWSSigningError) -> [UInt8] {
        if let cached = keyCache.withLock({ $0 }), cached.secret == secret, cached.dateStamp == dateStamp {
            return cached.key
        }
        let kDate = try hmac(Array("AWS4\(secret)".utf8), dateStamp)
        let kRegion = try hmac(kDate, region)
        let kService = try hmac(kRegion, service)
        let key = try hmac(kService, "aws4_request")
        keyCache.withLock { $0 = CachedKey(secret: secret, dateStamp: dateStamp, key: key) }
        return key
    }
}

/// `scheme://authority/path?query#fragment`, split without Foundation's URL (which rejects the raw
/// characters some signing inputs contain). The fragment is dropped: it is never sent.
struct SplitURL: Equatable {
    var scheme: String
    /// `host[:port]` as written (user info removed).
    var authority: String
    var path: String
    var query: String

    init(_ url: String) throws(AWSSigningError) {
        guard let schemeEnd = url.range(of: "://") else {
            throw AWSSigningError(reason: "URL has no scheme: \(url.prefix(200))")
        }
        scheme = url[..<schemeEnd.lowerBound].lowercased()
        var rest = url[schemeEnd.upperBound...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        guard !authority.isEmpty else { throw AWSSigningError(reason: "URL has no host: \(url.prefix(200))") }
        self.authority = String(authority)
        let pathAndQuery = rest[authorityEnd...]
        if let q = pathAndQuery.firstIndex(of: "?") {
            path = String(pathAndQuery[..<q])
            query = String(pathAndQuery[pathAndQuery.index(after: q)...])
        } else {
            path = String(pathAndQuery)
            query = ""
        }
    }

    /// The `Host` header value: the authority without a default port.
    var signingHost: String {
        if scheme == "http", authority.hasSuffix(":80") { return String(authority.dropLast(3)) }
        if scheme == "https", authority.hasSuffix(":443") { return String(authority.dropLast(4)) }
        return authority
    }
}
