import Foundation
import HTTPTransport
import Logging

/// Time, sleep and randomness for the client, injected so tests neither wait nor depend on chance.
public struct AWSClientDependencies: Sendable {
    public var now: @Sendable () -> Date
    /// Sleeps for the duration; must throw `CancellationError` when the task is cancelled.
    public var sleep: @Sendable (Duration) async throws -> Void
    /// Uniform in [0, 1).
    public var random: @Sendable () -> Double

    public init(
        now: @escaping @Sendable () -> Date, sleep: @escaping @Sendable (Duration) async throws -> Void,
        random: @escaping @Sendable () -> Double
    ) {
        self.now = now
        self.sleep = sleep
        self.random = random
    }

    public static let live = AWSClientDependencies(
        now: { Date() }, sleep: { try await Task.sleep(for: $0) }, random: { Double.random(in: 0..<1) })
}

/// The core AWS client: endpoint resolution, signing, retries, error mapping, and the three wire
/// protocols (Query, JSON, REST-XML). Service clients such as ``EC2Client`` are thin typed layers on it.
///
/// One instance talks to one region. For a second region (disaster recovery next to the primary) use
/// ``withRegion(_:)``: the copy shares the credentials, the transport and the clock-skew estimate.
public struct AWSClient: Sendable {
    public let region: String
    public let credentialProvider: any CredentialProvider
    public let http: any HTTPExecuting
    /// Environment variables for endpoint overrides (`AWS_ENDPOINT_URL*`). Injected, never read here.
    public let environment: [String: String]
    public var retryPolicy: RetryPolicy
    /// Bound on one HTTP attempt.
    public var attemptTimeout: Duration
    public var connectTimeout: Duration
    /// Larger answers are treated as unreadable (a cut XML document must not be half-parsed).
    public var maxResponseBytes: Int
    public var userAgent: String
    public let logger: Logger
    public let dependencies: AWSClientDependencies
    private var shared: SharedState

    public init(
        region: String, credentials: any CredentialProvider, http: any HTTPExecuting,
        environment: [String: String] = [:], retryPolicy: RetryPolicy = .default,
        attemptTimeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "aws"), dependencies: AWSClientDependencies = .live
    ) {
        self.region = region
        self.credentialProvider = credentials
        self.http = http
        self.environment = environment
        self.retryPolicy = retryPolicy
        self.attemptTimeout = attemptTimeout
        self.connectTimeout = connectTimeout
        self.maxResponseBytes = 32 << 20
        self.userAgent = "ec2-recovery-fleet/1 swift-aws-client/1"
        self.logger = logger
        self.dependencies = dependencies
        self.shared = SharedState()
    }

    /// A client configured the way the AWS CLI would be from `environment`: region from
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`/profile (unless given), credentials from the standard chain.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, region: String? = nil,
        http: any HTTPExecuting, logger: Logger = Logger(label: "aws")
    ) throws -> AWSClient {
        guard let region = region ?? AWSEndpointResolver.region(environment: environment) else {
            throw AWSError(
                kind: .invalidRequest, service: "-", operation: "configure", region: "-",
                message: "no AWS region: set AWS_REGION or AWS_DEFAULT_REGION, or region in the profile")
        }
        let chain = CredentialProviderChain.standard(environment: environment, http: http, logger: logger)
        return AWSClient(region: region, credentials: chain, http: http, environment: environment, logger: logger)
    }

    /// The same client for another region (shares credentials, transport, caches).
    public func withRegion(_ region: String) -> AWSClient {
        var copy = AWSClient(
            region: region, credentials: credentialProvider, http: http, environment: environment,
            retryPolicy: retryPolicy, attemptTimeout: attemptTimeout, connectTimeout: connectTimeout, logger: logger,
            dependencies: dependencies, shared: shared)
        copy.maxResponseBytes = maxResponseBytes
        copy.userAgent = userAgent
        return copy
    }

    private init(
        region: String, credentials: any CredentialProvider, http: any HTTPExecuting, environment: [String: String],
        retryPolicy: RetryPolicy, attemptTimeout: Duration, connectTimeout: Duration, logger: Logger,
        dependencies: AWSClientDependencies, shared: SharedState
    ) {
        self.init(
            region: region, credentials: credentials, http: http, environment: environment, retryPolicy: retryPolicy,
            attemptTimeout: attemptTimeout, connectTimeout: connectTimeout, logger: logger, dependencies: dependencies)
        self.shared = shared
    }

    public func endpoint(for service: AWSService) -> AWSEndpoint {
        AWSEndpointResolver.resolve(service: service, region: region, environment: environment)
    }

    /// The signing clock: the injected `now` corrected by the measured skew to AWS's clock.
    var signingNow: Date { dependencies.now().addingTimeInterval(shared.skew.withLock { $0 }) }

    // MARK: The request loop

    /// How a service reports errors in a response body.
    enum ErrorShape {
        case xml, json
    }

    /// Sends one operation: resolve, sign, execute, retry, map errors. Returns the 2xx response.
    /// Throws ``AWSError``, or `CancellationError` when the task is cancelled.
    func perform(
        service: AWSService, operation: String, method: String, path: String, query: String = "",
        headers: [(name: String, value: String)], body: [UInt8], errorShape: ErrorShape, keepErrorDocument: Bool = false
    ) async throws -> HTTPResponse {
        let endpoint = endpoint(for: service)
        let signer = shared.signer(service: service.signingName, region: endpoint.signingRegion)
        let url = endpoint.url + path + (query.isEmpty ? "" : "?" + query)
        let start = dependencies.now()
        var attempt = 0
        var correctedSkew = false
        var secrets: [String] = []

        func error(
            _ kind: AWSError.Kind, status: Int? = nil, code: String? = nil, message: String,
            requestId: String? = nil
        ) -> AWSError {
            AWSError(
                kind: kind, service: service.serviceId, operation: operation, region: region, httpStatus: status,
                code: code, message: Self.scrub(message, secrets: secrets), requestId: requestId,
                attempts: max(attempt, 1))
        }

        var resign = false
        while true {
            attempt += 1
            try Task.checkCancellation()
            // A re-send after a skew correction is a re-send too (outside the transport's catch, so the
            // guard's error reaches the caller as it is).
            if resign {
                resign = false
                try await AWSCallGuard.current?.beforeRetry(operation)
            }
            let credentials: AWSCredentials
            do {
                credentials = try await credentialProvider.credentials()
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                throw self.error(kind: .credentials, error: error, service: service, operation: operation)
            }
            secrets = credentials.secrets

            var request = HTTPRequest(
                method: method, url: url, headers: headers + [("User-Agent", userAgent)], body: body,
                timeout: attemptTimeout, connectTimeout: connectTimeout, maxBodyBytes: maxResponseBytes)
            do {
                request = try signer.sign(request, credentials: credentials, date: signingNow).request
            } catch {
                throw self.error(kind: .invalidRequest, error: error, service: service, operation: operation)
            }

            var failure: AWSError
            // Whether AWS certainly did not act on this attempt (see `AWSCallGuard`).
            var notActedOn = false
            let attemptStart = ContinuousClock.now
            do {
                let response = try await http.execute(request)
                let elapsed = ContinuousClock.now - attemptStart
                let requestId = response.header("x-amzn-RequestId") ?? response.header("x-amz-request-id")
                if (200..<300).contains(response.status) {
                    guard !response.bodyTruncated else {
                        throw error(
                            .invalidResponse, status: response.status,
                            message: "response longer than \(maxResponseBytes) bytes", requestId: requestId)
                    }
                    logger.debug(
                        "AWS \(service.serviceId) \(operation) \(region): HTTP \(response.status) in \(Self.ms(elapsed)) (attempt \(attempt), request id \(requestId ?? "-"))"
                    )
                    return response
                }
                let parsed = Self.parseError(response, shape: errorShape)
                let status = response.status
                let code = parsed.code
                let id = parsed.requestId ?? requestId

                // A signature rejected because our clock is off: adopt AWS's clock and resign at once.
                if !correctedSkew, let code, Self.skewCodes.contains(code),
                    let serverDate = response.header("Date").flatMap(UTCTime.parseHTTPDate)
                {
                    let offset = serverDate.timeIntervalSince(dependencies.now())
                    if abs(offset) > 240 {
                        correctedSkew = true
                        shared.skew.withLock { $0 = offset }
                        logger.warning(
                            "AWS \(service.serviceId) \(operation) \(region): \(code); host clock is off by \(Int(offset)) s, re-signing with AWS's time"
                        )
                        attempt -= 1
                        resign = true
                        continue
                    }
                }
                let kind = AWSError.kind(status: status, code: code)
                failure = error(kind, status: status, code: code, message: parsed.message, requestId: id)
                notActedOn = kind == .throttling
                if keepErrorDocument, !Self.containsSecret(response.body, secrets: secrets) {
                    failure.errorDocument = response.body
                }
                guard RetryPolicy.isRetryable(status: status, code: code) else {
                    logger.debug(
                        "AWS \(service.serviceId) \(operation) \(region): \(failure.kind), HTTP \(status) \(code ?? "-")"
                    )
                    throw failure
                }
            } catch let error as AWSError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch let transportError {
                if Task.isCancelled { throw CancellationError() }
                failure = error(.transport, message: "\(transportError)")
                if let httpError = transportError as? HTTPClientError {
                    notActedOn = httpError.kind == .couldNotConnect || httpError.kind == .couldNotResolveHost
                }
            }

            // Retry, if the bounds and the caller's guard allow.
            guard attempt < retryPolicy.maxAttempts else { throw failure }
            let callGuard = AWSCallGuard.current
            if let callGuard, !callGuard.idempotent, !notActedOn {
                logger.warning(
                    "AWS \(service.serviceId) \(operation) \(region): \(failure.kind) (\(failure.httpStatus.map { "HTTP \($0) " } ?? "")\(failure.code ?? failure.message)); not re-sent: the call is not idempotent and AWS may have acted on it"
                )
                throw failure
            }
            let delay = retryPolicy.delay(beforeRetry: attempt, random: dependencies.random())
            let elapsed = dependencies.now().timeIntervalSince(start)
            guard elapsed + Self.seconds(delay) <= Self.seconds(retryPolicy.maxTotalTime) else { throw failure }
            logger.warning(
                "AWS \(service.serviceId) \(operation) \(region): \(failure.kind) (\(failure.httpStatus.map { "HTTP \($0) " } ?? "")\(failure.code ?? failure.message)); retry \(attempt) of \(retryPolicy.maxAttempts - 1) in \(Self.ms(delay))"
            )
            try await dependencies.sleep(delay)
            try await callGuard?.beforeRetry(operation)
        }
    }

    private func error(kind: AWSError.Kind, error: any Error, service: AWSService, operation: String) -> AWSError {
        AWSError(
            kind: kind, service: service.serviceId, operation: operation, region: region,
            message: "\(error)", attempts: 0)
    }

    /// Error codes that can mean the request's timestamp is too far from AWS's clock.
    static let skewCodes: Set<String> = [
        "RequestTimeTooSkewed", "RequestExpired", "InvalidSignatureException", "SignatureDoesNotMatch",
        "AuthFailure", "RequestInTheFuture", "InvalidSignature",
    ]

    /// Removes secrets (raw, and URL-encoded once or twice, as they appear inside presigned URLs)
    /// and control characters, and bounds the length.
    static func scrub(_ message: String, secrets: [String]) -> String {
        var variants: [String] = []
        for secret in secrets {
            let once = URIEncoding.encode(secret)
            variants += [secret, once, URIEncoding.encode(once)]
        }
        var text = message.redacting(variants.sorted { $0.count > $1.count })
        text = String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        if text.count > 1000 { text = String(text.prefix(1000)) + "…" }
        return text
    }

    /// Whether `body` holds a secret in any of the forms `scrub` removes.
    static func containsSecret(_ body: [UInt8], secrets: [String]) -> Bool {
        let text = String(decoding: body, as: UTF8.self)
        return secrets.contains { secret in
            let once = URIEncoding.encode(secret)
            return [secret, once, URIEncoding.encode(once)].contains { !$0.isEmpty && text.contains($0) }
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func ms(_ d: Duration) -> String { "\(Int((seconds(d) * 1000).rounded())) ms" }

    /// Code, message and request id from an error answer. Tolerates bodies that are not XML/JSON
    /// (a load balancer's HTML page): then the code is nil and the message is the body's start.
    static func parseError(_ response: HTTPResponse, shape: ErrorShape) -> (
        code: String?, message: String, requestId: String?
    ) {
        let headerCode = response.header("x-amzn-ErrorType").map { Self.shortCode($0) }
        switch shape {
        case .xml:
            if let root = try? XML.parse(response.body) {
                let requestId = root.string("RequestID") ?? root.string("RequestId")
                // Route 53's InvalidChangeBatch: the root names the error, the reasons are a list.
                if root.first(named: "Error") == nil, let messages = root["Messages"] {
                    let message = messages.all("Message").map(\.text).joined(separator: "; ")
                    return (headerCode ?? root.name, message, requestId)
                }
                let error = root.first(named: "Error")
                let code = error?.string("Code") ?? headerCode
                let message = error?.string("Message") ?? error?.string("message") ?? ""
                return (code, message, requestId)
            }
        case .json:
            if let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] {
                let type = (object["__type"] as? String) ?? (object["code"] as? String) ?? (object["Code"] as? String)
                let message = (object["message"] as? String) ?? (object["Message"] as? String) ?? ""
                return (headerCode ?? type.map(Self.shortCode), message, nil)
            }
        }
        let snippet = String(response.bodyString.prefix(300)).trimmingCharacters(in: .whitespacesAndNewlines)
        return (headerCode, snippet, nil)
    }

    /// `com.amazon.coral.service#ThrottlingException:http://…` → `ThrottlingException`.
    static func shortCode(_ raw: String) -> String {
        var code = Substring(raw)
        if let colon = code.firstIndex(of: ":") { code = code[..<colon] }
        if let hash = code.lastIndex(of: "#") { code = code[code.index(after: hash)...] }
        return code.trimmingCharacters(in: .whitespaces)
    }
}

/// State shared by a client and its `withRegion` copies.
final class SharedState: Sendable {
    /// Seconds to add to the local clock to get AWS's.
    let skew = Locked<TimeInterval>(0)
    private let signers = Locked<[String: SigV4Signer]>([:])

    func signer(service: String, region: String) -> SigV4Signer {
        signers.withLock { cache in
            let key = service + "/" + region
            if let signer = cache[key] { return signer }
            let signer = SigV4Signer(service: service, region: region)
            cache[key] = signer
            return signer
        }
    }
}
