import Foundation
import HTTPTransport
import Logging

/// A source of AWS credentials.
public protocol CredentialProvider: Sendable {
    /// Current credentials. Throws ``CredentialProviderError`` with kind `.notConfigured` when this
    /// source has nothing to offer, so that a chain moves on to the next source.
    func credentials() async throws -> AWSCredentials
}

/// Credentials could not be obtained. Never carries a secret.
public struct CredentialProviderError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// This source is not set up here (no variables, no file, not on EC2). A chain tries the next.
        case notConfigured
        /// This source is set up but wrong (half a key pair, a missing named profile, an unsupported
        /// profile type). A chain stops: silently using another identity would be worse.
        case invalidConfiguration
        /// The source is set up but failed to answer (IMDS unreachable or erroring). A chain moves on.
        case unavailable
    }

    public var provider: String
    public var kind: Kind
    public var reason: String

    public init(provider: String, kind: Kind, reason: String) {
        self.provider = provider
        self.kind = kind
        self.reason = reason
    }

    public var description: String {
        switch kind {
        case .notConfigured: "no AWS credentials from \(provider): \(reason)"
        case .invalidConfiguration: "invalid AWS credential configuration in \(provider): \(reason)"
        case .unavailable: "AWS credentials from \(provider) unavailable: \(reason)"
        }
    }
}

/// Fixed credentials (tests, or keys handed over by the caller).
public struct StaticCredentialProvider: CredentialProvider {
    public let value: AWSCredentials
    public init(_ credentials: AWSCredentials) { value = credentials }
    public func credentials() async throws -> AWSCredentials { value }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (empty counts as unset).
public struct EnvironmentCredentialProvider: CredentialProvider {
    public let environment: [String: String]

    /// - Parameter environment: usually `ProcessInfo.processInfo.environment`; injected for tests.
    public init(environment: [String: String]) { self.environment = environment }

    public func credentials() async throws -> AWSCredentials {
        func value(_ name: String) -> String? {
            guard let v = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else {
                return nil
            }
            return v
        }
        let id = value("AWS_ACCESS_KEY_ID")
        let secret = value("AWS_SECRET_ACCESS_KEY")
        switch (id, secret) {
        case (nil, nil):
            throw CredentialProviderError(
                provider: "environment", kind: .notConfigured, reason: "AWS_ACCESS_KEY_ID is not set")
        case (.some, nil):
            throw CredentialProviderError(
                provider: "environment", kind: .invalidConfiguration,
                reason: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, .some):
            throw CredentialProviderError(
                provider: "environment", kind: .invalidConfiguration,
                reason: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (let id?, let secret?):
            return AWSCredentials(
                accessKeyId: id, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN"),
                source: "environment")
        }
    }
}

/// Tries providers in order and sticks with the first that answers, as the AWS SDKs do.
///
/// A provider failing with `.notConfigured` or `.unavailable` passes the turn to the next one; one
/// failing with `.invalidConfiguration` stops the chain. Once a provider has answered, later calls go
/// straight to it (its own caching and refresh apply).
public final class CredentialProviderChain: CredentialProvider {
    public let providers: [any CredentialProvider]
    private let chosen = Locked<Int?>(nil)
    private let logger: Logger

    public init(_ providers: [any CredentialProvider], logger: Logger = Logger(label: "aws.credentials")) {
        self.providers = providers
        self.logger = logger
    }

    /// Environment, then the shared files (`~/.aws/credentials`, `~/.aws/config`), then the EC2 instance
    /// metadata service (IMDSv2).
    public static func standard(
        environment: [String: String], http: any HTTPExecuting,
        logger: Logger = Logger(label: "aws.credentials")
    ) -> CredentialProviderChain {
        CredentialProviderChain(
            [
                EnvironmentCredentialProvider(environment: environment),
                ProfileCredentialProvider(environment: environment),
                InstanceMetadataCredentialProvider(http: http, environment: environment, logger: logger),
            ], logger: logger)
    }

    public func credentials() async throws -> AWSCredentials {
        if let index = chosen.withLock({ $0 }) {
            return try await providers[index].credentials()
        }
        var reasons: [String] = []
        for (index, provider) in providers.enumerated() {
            do {
                let credentials = try await provider.credentials()
                chosen.withLock { $0 = index }
                logger.debug(
                    "AWS credentials resolved from \(credentials.source) (access key \(credentials.accessKeyId))")
                return credentials
            } catch let error as CredentialProviderError where error.kind != .invalidConfiguration {
                reasons.append(error.description)
            }
        }
        throw CredentialProviderError(
            provider: "the standard chain", kind: .notConfigured,
            reason: "tried every source: " + reasons.joined(separator: "; ")
                + ". Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, configure ~/.aws/credentials, or run on EC2"
                + " with an instance profile")
    }
}
