import Foundation

/// An AWS access key, with the session token of temporary credentials.
///
/// `description` and `debugDescription` show the access key id only; the secret and the session token
/// are redacted, so credentials can be logged or interpolated into errors without leaking.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyId: String
    public var secretAccessKey: String
    /// Present for temporary credentials (STS, instance roles); sent as `X-Amz-Security-Token`.
    public var sessionToken: String?
    /// When temporary credentials stop working; nil for long-term keys.
    public var expiration: Date?
    /// Where they came from ("environment", "profile default", "instance metadata (role x)"), for logs.
    public var source: String

    public init(
        accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil,
        source: String = "static"
    ) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        self.source = source
    }

    public var description: String {
        var text = "AWSCredentials(accessKeyId: \(accessKeyId), secretAccessKey: <redacted>"
        if sessionToken != nil { text += ", sessionToken: <redacted>" }
        if let expiration { text += ", expiration: \(UTCTime.iso8601(expiration))" }
        return text + ", source: \(source))"
    }

    public var debugDescription: String { description }

    /// The strings that must never appear in logs or error text.
    var secrets: [String] {
        var list: [String] = []
        if !secretAccessKey.isEmpty { list.append(secretAccessKey) }
        if let sessionToken, !sessionToken.isEmpty { list.append(sessionToken) }
        return list
    }
}

extension String {
    /// This text with every occurrence of each secret replaced by `<redacted>`.
    func redacting(_ secrets: [String]) -> String {
        var text = self
        for secret in secrets where !secret.isEmpty {
            text = text.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return text
    }
}
