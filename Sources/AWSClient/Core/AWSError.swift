import Foundation

/// An AWS call failed. Carries what AWS said, never any credential: messages are scrubbed of the
/// secret key and session token (raw and URL-encoded) before they are stored.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable, CustomStringConvertible {
        /// AWS did not accept the credentials or the signature (AuthFailure, InvalidClientTokenId,
        /// SignatureDoesNotMatch, UnrecognizedClientException, ExpiredToken, HTTP 401, ...).
        case authentication
        /// The identity is known but not allowed this action (AccessDenied, UnauthorizedOperation, 403).
        case accessDenied
        /// Throttled, and still throttled after the retries.
        case throttling
        /// HTTP 5xx or a transient error, still failing after the retries.
        case serverError
        /// Any other error answer (bad parameters, missing resources, conflicts). Not retried.
        case clientError
        /// No HTTP answer (connect failure, timeout), still failing after the retries.
        case transport
        /// An answer that could not be read (not XML/JSON, or missing fields).
        case invalidResponse
        /// No credentials could be obtained.
        case credentials
        /// The request could not be built or signed.
        case invalidRequest

        public var description: String {
            switch self {
            case .authentication: "authentication failed"
            case .accessDenied: "access denied"
            case .throttling: "throttled"
            case .serverError: "server error"
            case .clientError: "request rejected"
            case .transport: "no response"
            case .invalidResponse: "unreadable response"
            case .credentials: "no credentials"
            case .invalidRequest: "invalid request"
            }
        }
    }

    public var kind: Kind
    /// Service id, e.g. "EC2".
    public var service: String
    /// Operation or action, e.g. "RunInstances".
    public var operation: String
    public var region: String
    public var httpStatus: Int?
    /// AWS's error code, e.g. "InvalidInstanceID.NotFound".
    public var code: String?
    public var message: String
    public var requestId: String?
    /// How many HTTP attempts were made.
    public var attempts: Int
    /// The JSON error document, kept only when the caller asked for it (DynamoDB's
    /// `ReturnValuesOnConditionCheckFailure` puts the existing item there) and never when it contains
    /// a credential. Not part of the description.
    var errorDocument: [UInt8]? = nil

    public init(
        kind: Kind, service: String, operation: String, region: String, httpStatus: Int? = nil, code: String? = nil,
        message: String, requestId: String? = nil, attempts: Int = 1
    ) {
        self.kind = kind
        self.service = service
        self.operation = operation
        self.region = region
        self.httpStatus = httpStatus
        self.code = code
        self.message = message
        self.requestId = requestId
        self.attempts = attempts
    }

    public var isAuthenticationFailure: Bool { kind == .authentication }
    public var isAccessDenied: Bool { kind == .accessDenied }
    public var isThrottling: Bool { kind == .throttling }
    /// Worth trying again later (throttling, server errors, no response).
    public var isTransient: Bool { kind == .throttling || kind == .serverError || kind == .transport }

    public var description: String {
        var text = "AWS \(service) \(operation) in \(region) failed (\(kind))"
        var detail: [String] = []
        if let httpStatus { detail.append("HTTP \(httpStatus)") }
        if let code { detail.append(code) }
        if !detail.isEmpty { text += ": " + detail.joined(separator: " ") }
        if !message.isEmpty { text += ": " + message }
        if let requestId { text += " [request id \(requestId)]" }
        text += attempts == 0 ? " (no request sent)." : " after \(attempts) attempt\(attempts == 1 ? "" : "s")."
        if let hint { text += " " + hint }
        return text
    }

    private var hint: String? {
        switch kind {
        case .authentication:
            "Check the access key, the secret and the session token in use, and that the host clock is right."
        case .accessDenied: "Grant this action to the identity in IAM, or check the resource's policy."
        case .throttling: "AWS is rate-limiting this account; slow down or raise the limit."
        case .serverError, .transport: "Transient: retry later."
        case .credentials: "Configure credentials (environment, ~/.aws, or an EC2 instance profile)."
        case .clientError, .invalidResponse, .invalidRequest: nil
        }
    }

    static let authenticationCodes: Set<String> = [
        "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
        "InvalidAccessKeyId", "IncompleteSignature", "MissingAuthenticationToken",
        "MissingAuthenticationTokenException", "InvalidSignatureException", "ExpiredToken", "ExpiredTokenException",
        "RequestExpired", "InvalidToken", "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
        "RequestTimeTooSkewed", "NotAuthorized",
    ]

    static let accessDeniedCodes: Set<String> = [
        "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
        "Forbidden", "OptInRequired",
    ]

    /// The kind of a final (not retried, or no longer retried) HTTP error answer.
    static func kind(status: Int, code: String?) -> Kind {
        if let code {
            if authenticationCodes.contains(code) { return .authentication }
            if accessDeniedCodes.contains(code) { return .accessDenied }
            if RetryPolicy.throttlingCodes.contains(code) { return .throttling }
            if RetryPolicy.transientCodes.contains(code) { return .serverError }
        }
        switch status {
        case 401: return .authentication
        case 403: return .accessDenied
        case 429: return .throttling
        case 500...599: return .serverError
        default: return .clientError
        }
    }
}
