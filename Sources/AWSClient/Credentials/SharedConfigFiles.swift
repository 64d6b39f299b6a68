import Foundation

/// The shared AWS files, `~/.aws/credentials` and `~/.aws/config`, parsed into profiles.
///
/// Locations follow the SDKs: `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` override the default
/// paths, and `~` is the injected `HOME`. The profile is the explicit one, else `AWS_PROFILE`, else
/// `AWS_DEFAULT_PROFILE`, else `default`. In the config file, sections are `[default]` or
/// `[profile name]`; in the credentials file, `[name]`. For the same key the credentials file wins.
public struct SharedConfigFiles: Sendable {
    public typealias Profile = [String: String]

    public var credentialsPath: String
    public var configPath: String
    /// Profiles from the credentials file (nil when the file does not exist).
    public var credentialsProfiles: [String: Profile]?
    /// Profiles from the config file (nil when the file does not exist).
    public var configProfiles: [String: Profile]?

    /// Reads both files. A missing file is not an error; an unreadable one is.
    public static func load(environment: [String: String]) throws -> SharedConfigFiles {
        let credentialsPath = expand(
            environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "~/.aws/credentials", environment: environment)
        let configPath = expand(environment["AWS_CONFIG_FILE"] ?? "~/.aws/config", environment: environment)
        func read(_ path: String) throws -> String? {
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            do {
                return try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw CredentialProviderError(
                    provider: "shared config files", kind: .invalidConfiguration,
                    reason: "cannot read \(path): \(error.localizedDescription)")
            }
        }
        return SharedConfigFiles(
            credentialsPath: credentialsPath, configPath: configPath,
            credentialsProfiles: try read(credentialsPath).map { parse($0, isConfigFile: false) },
            configProfiles: try read(configPath).map { parse($0, isConfigFile: true) })
    }

    /// The profile name the environment selects, and whether it was chosen explicitly.
    public static func selectedProfile(environment: [String: String]) -> (name: String, explicit: Bool) {
        for variable in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"] {
            if let name = environment[variable]?.trimmingCharacters(in: .whitespaces), !name.isEmpty {
                return (name, true)
            }
        }
        return ("default", false)
    }

    /// The merged settings of one profile (credentials file over config file), nil if in neither.
    public func profile(_ name: String) -> Profile? {
        let fromConfig = configProfiles?[name]
        let fromCredentials = credentialsProfiles?[name]
        if fromConfig == nil && fromCredentials == nil { return nil }
        return (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { _, credentials in credentials }
    }

    static func expand(_ path: String, environment: [String: String]) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        let home = environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
        return home + path.dropFirst()
    }

    /// INI as the SDKs read it: `#` and `;` start comment lines, keys are case-insensitive, values are
    /// trimmed, indented lines (sub-properties such as `s3 =` blocks) are skipped, and later duplicates
    /// win. Sections other than profiles (`[sso-session x]`, `[services x]`) are ignored.
    static func parse(_ text: String, isConfigFile: Bool) -> [String: Profile] {
        var profiles: [String: Profile] = [:]
        var current: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if rawLine.first == " " || rawLine.first == "\t" { continue }  // sub-property or continuation
            if line.hasPrefix("[") {
                guard let close = line.firstIndex(of: "]") else {
                    current = nil
                    continue
                }
                let name = line[line.index(after: line.startIndex)..<close].trimmingCharacters(in: .whitespaces)
                current = profileName(fromSection: name, isConfigFile: isConfigFile)
                if let current, profiles[current] == nil { profiles[current] = [:] }
                continue
            }
            guard let current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { continue }
            profiles[current]?[key] = value
        }
        return profiles
    }

    private static func profileName(fromSection section: String, isConfigFile: Bool) -> String? {
        guard isConfigFile else { return section.isEmpty ? nil : section }
        if section == "default" { return "default" }
        let parts = section.split(separator: " ", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, parts[0] == "profile", !parts[1].isEmpty else { return nil }
        return parts[1]
    }
}

/// Static keys from a profile of the shared files (`aws_access_key_id`, `aws_secret_access_key`,
/// `aws_session_token`). Profiles that assume a role, use SSO or a credential process are reported as
/// unsupported rather than skipped, so a misconfigured host fails loudly.
public final class ProfileCredentialProvider: CredentialProvider {
    public let environment: [String: String]
    public let profileName: String?
    private let cached = Locked<AWSCredentials?>(nil)

    /// - Parameter profile: the profile to use; nil means `AWS_PROFILE`, then `default`.
    public init(environment: [String: String], profile: String? = nil) {
        self.environment = environment
        self.profileName = profile
    }

    public func credentials() async throws -> AWSCredentials {
        if let cached = cached.withLock({ $0 }) { return cached }
        let selected = profileName.map { ($0, true) } ?? SharedConfigFiles.selectedProfile(environment: environment)
        let provider = "profile \(selected.0)"
        let files = try SharedConfigFiles.load(environment: environment)
        if files.credentialsProfiles == nil && files.configProfiles == nil {
            throw CredentialProviderError(
                provider: provider, kind: selected.1 ? .invalidConfiguration : .notConfigured,
                reason: "neither \(files.credentialsPath) nor \(files.configPath) exists")
        }
        guard let profile = files.profile(selected.0) else {
            throw CredentialProviderError(
                provider: provider, kind: selected.1 ? .invalidConfiguration : .notConfigured,
                reason: "no such profile in \(files.credentialsPath) or \(files.configPath)")
        }
        let id = profile["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = profile["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case (let id?, let secret?):
            let token = profile["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
            let credentials = AWSCredentials(
                accessKeyId: id, secretAccessKey: secret, sessionToken: token, source: provider)
            self.cached.withLock { $0 = credentials }
            return credentials
        case (.some, nil), (nil, .some):
            throw CredentialProviderError(
                provider: provider, kind: .invalidConfiguration,
                reason: "has only one of aws_access_key_id and aws_secret_access_key")
        case (nil, nil):
            for key in ["role_arn", "sso_session", "sso_start_url", "credential_process", "web_identity_token_file"]
            where profile[key] != nil {
                throw CredentialProviderError(
                    provider: provider, kind: .invalidConfiguration,
                    reason: "uses \(key), which this client does not support; give it static keys or use the"
                        + " instance profile")
            }
            throw CredentialProviderError(
                provider: provider, kind: .notConfigured, reason: "has no aws_access_key_id")
        }
    }
}
