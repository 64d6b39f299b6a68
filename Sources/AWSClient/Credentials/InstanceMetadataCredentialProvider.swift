import Foundation
import HTTPTransport
import Logging

/// Credentials of the EC2 instance profile, from the instance metadata service (IMDSv2).
///
/// 1. `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` gives a session token
///    (kept until shortly before its TTL ends, dropped on a 401).
/// 2. `GET /latest/meta-data/iam/security-credentials/` gives the role name.
/// 3. `GET /latest/meta-data/iam/security-credentials/<role>` gives the keys and their expiration.
/// Each GET carries `X-aws-ec2-metadata-token`.
///
/// The credentials are cached and refreshed `refreshMargin` before they expire. If a refresh fails while
/// the cached credentials are still valid, those are returned (and a warning logged) so an IMDS hiccup
/// does not stop recovery. Concurrent callers share one refresh.
///
/// Environment: `AWS_EC2_METADATA_DISABLED=true` turns it off; `AWS_EC2_METADATA_SERVICE_ENDPOINT`
/// replaces `http://169.254.169.254` (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6` picks
/// `http://[fd00:ec2::254]`). If the token call answers 404 or 405 (an IMDSv1-only endpoint), the
/// provider falls back to tokenless GETs unless `AWS_EC2_METADATA_V1_DISABLED=true`.
public actor InstanceMetadataCredentialProvider: CredentialProvider {
    public nonisolated let endpoint: String
    public nonisolated let disabled: Bool
    private let v1Disabled: Bool
    private let http: any HTTPExecuting
    private let now: @Sendable () -> Date
    private let refreshMargin: TimeInterval
    private let timeout: Duration
    private let attempts: Int
    private let tokenTTL: Int
    private let logger: Logger

    private var cached: AWSCredentials?
    private var nextRefresh: Date = .distantPast
    private var token: (value: String, validUntil: Date)?
    private var useV1 = false
    private var inFlight: Task<AWSCredentials, any Error>?

    /// - Parameters:
    ///   - now: the clock; injected so tests can move time.
    ///   - refreshMargin: refresh this long before expiry (SDKs use about 5 minutes).
    ///   - timeout: per IMDS request; IMDS answers in milliseconds on EC2, so keep it short off EC2.
    ///   - attempts: tries per IMDS request.
    public init(
        http: any HTTPExecuting, environment: [String: String], now: @escaping @Sendable () -> Date = { Date() },
        refreshMargin: Duration = .seconds(300), timeout: Duration = .seconds(1), attempts: Int = 2,
        tokenTTLSeconds: Int = 21_600, logger: Logger = Logger(label: "aws.credentials.imds")
    ) {
        self.http = http
        self.now = now
        self.refreshMargin = Double(refreshMargin.components.seconds)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.tokenTTL = tokenTTLSeconds
        self.logger = logger
        func flag(_ name: String) -> Bool { environment[name]?.lowercased() == "true" }
        disabled = flag("AWS_EC2_METADATA_DISABLED")
        v1Disabled = flag("AWS_EC2_METADATA_V1_DISABLED")
        var endpoint =
            environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"]?.lowercased() == "ipv6"
                ? "http://[fd00:ec2::254]" : "http://169.254.169.254")
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
    }

    public func credentials() async throws -> AWSCredentials {
        guard !disabled else {
            throw CredentialProviderError(
                provider: "instance metadata", kind: .notConfigured, reason: "AWS_EC2_METADATA_DISABLED is true")
        }
        let now = self.now()
        if let cached, now < nextRefresh { return cached }
        let task: Task<AWSCredentials, any Error>
        if let inFlight {
            task = inFlight
        } else {
            task = Task { try await self.fetchCredentials() }
            inFlight = task
        }
        defer { if inFlight == task { inFlight = nil } }
        do {
            let fresh = try await task.value
            cached = fresh
            nextRefresh = Self.refreshTime(for: fresh, now: self.now(), margin: refreshMargin)
            logger.debug(
                "AWS credentials fetched from \(fresh.source), expiring \(fresh.expiration.map(UTCTime.iso8601) ?? "never")"
            )
            return fresh
        } catch {
            if let cached, let expiration = cached.expiration, self.now() < expiration {
                logger.warning(
                    "instance profile credential refresh failed (\(error)); using the cached ones until they expire at \(UTCTime.iso8601(expiration))"
                )
                return cached
            }
            throw error
        }
    }

    /// When to refresh: `margin` before expiry, but not sooner than a minute from now (IMDS keeps
    /// handing out the same keys until shortly before they expire) and never after expiry.
    static func refreshTime(for credentials: AWSCredentials, now: Date, margin: TimeInterval) -> Date {
        guard let expiration = credentials.expiration else { return .distantFuture }
        let preferred = expiration.addingTimeInterval(-margin)
        if preferred > now { return preferred }
        return min(now.addingTimeInterval(60), expiration)
    }

    private func fetchCredentials() async throws -> AWSCredentials {
        let roleList = try await get("/latest/meta-data/iam/security-credentials/")
        guard let role = roleList.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw CredentialProviderError(
                provider: "instance metadata", kind: .notConfigured,
                reason: "the instance has no IAM instance profile attached")
        }
        let body = try await get("/latest/meta-data/iam/security-credentials/\(role)")
        struct Document: Decodable {
            var Code: String?
            var Message: String?
            var AccessKeyId: String?
            var SecretAccessKey: String?
            var Token: String?
            var Expiration: String?
        }
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(body.utf8))
        } catch {
            throw CredentialProviderError(
                provider: "instance metadata", kind: .unavailable,
                reason: "the credentials document for role \(role) is not valid JSON")
        }
        guard document.Code == nil || document.Code == "Success" else {
            throw CredentialProviderError(
                provider: "instance metadata", kind: .unavailable,
                reason: "IMDS reports \(document.Code ?? "?") for role \(role): \(document.Message ?? "")")
        }
        guard let id = document.AccessKeyId, let secret = document.SecretAccessKey else {
            throw CredentialProviderError(
                provider: "instance metadata", kind: .unavailable,
                reason: "the credentials document for role \(role) lacks AccessKeyId or SecretAccessKey")
        }
        let expiration = document.Expiration.flatMap(UTCTime.parseISO8601)
        return AWSCredentials(
            accessKeyId: id, secretAccessKey: secret, sessionToken: document.Token, expiration: expiration,
            source: "instance metadata (role \(role))")
    }

    /// A metadata GET with the session token; on 401 the token is renewed once.
    private func get(_ path: String) async throws -> String {
        for renewal in 0..<2 {
            var headers: [(name: String, value: String)] = []
            if let token = try await sessionToken() { headers.append(("X-aws-ec2-metadata-token", token)) }
            let response = try await send(HTTPRequest(method: "GET", url: endpoint + path, headers: headers))
            switch response.status {
            case 200:
                return response.bodyString
            case 401 where renewal == 0:
                token = nil
                continue
            case 404:
                throw CredentialProviderError(
                    provider: "instance metadata", kind: .notConfigured,
                    reason: "\(path) not found: the instance has no IAM instance profile attached")
            default:
                throw CredentialProviderError(
                    provider: "instance metadata", kind: .unavailable,
                    reason: "GET \(path) answered HTTP \(response.status)")
            }
        }
        throw CredentialProviderError(
            provider: "instance metadata", kind: .unavailable, reason: "GET \(path) kept answering 401")
    }

    /// The IMDSv2 session token, or nil when falling back to IMDSv1.
    private func sessionToken() async throws -> String? {
        if useV1 { return nil }
        if let token, now() < token.validUntil { return token.value }
        let response = try await send(
            HTTPRequest(
                method: "PUT", url: endpoint + "/latest/api/token",
                headers: [("X-aws-ec2-metadata-token-ttl-seconds", String(tokenTTL))]))
        switch response.status {
        case 200:
            let value = response.bodyString.trimmingCharacters(in: .whitespacesAndNewlines)
            // Renew a minute early so a token never expires between the check and its use.
            token = (value, now().addingTimeInterval(Double(max(tokenTTL - 60, 1))))
            return value
        case 404 where !v1Disabled, 405 where !v1Disabled:
            logger.info("IMDS has no token endpoint; falling back to IMDSv1")
            useV1 = true
            return nil
        case 403:
            throw CredentialProviderError(
                provider: "instance metadata", kind: .unavailable,
                reason: "IMDS refused a session token (HTTP 403): the metadata service may be turned off"
                    + " for this instance")
        default:
            throw CredentialProviderError(
                provider: "instance metadata", kind: .unavailable,
                reason: "PUT /latest/api/token answered HTTP \(response.status)")
        }
    }

    private func send(_ base: HTTPRequest) async throws -> HTTPResponse {
        var request = base
        request.timeout = timeout
        request.connectTimeout = timeout
        request.maxBodyBytes = 64 * 1024
        var lastError: any Error = CancellationError()
        for attempt in 1...attempts {
            try Task.checkCancellation()
            do {
                let response = try await http.execute(request)
                if response.status >= 500 && attempt < attempts { continue }
                return response
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = error
            }
        }
        throw CredentialProviderError(
            provider: "instance metadata", kind: .unavailable,
            reason: "\(endpoint) unreachable (\(lastError)); not running on EC2?")
    }
}
