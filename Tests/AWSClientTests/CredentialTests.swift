import Foundation
import InMemoryLogging
import Logging
import Testing

@testable import AWSClient

/// A temporary folder with the files a test writes, removed afterwards.
private struct TempDir {
    let url: URL = FileManager.default.temporaryDirectory.appendingPathComponent("aws-creds-\(UUID().uuidString)")
    init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    func write(_ name: String, _ text: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(
            at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

private func kind(of body: () async throws -> AWSCredentials) async -> CredentialProviderError.Kind? {
    do {
        _ = try await body()
        return nil
    } catch let error as CredentialProviderError {
        return error.kind
    } catch {
        return nil
    }
}

/// An environment that points the shared files at a place with nothing in it and turns IMDS off.
private func isolatedEnvironment(_ dir: TempDir, _ extra: [String: String] = [:]) -> [String: String] {
    var environment = [
        "HOME": dir.url.path, "AWS_EC2_METADATA_DISABLED": "true",
    ]
    environment.merge(extra) { _, new in new }
    return environment
}

@Suite("Credentials")
struct CredentialTests {
    @Test("descriptions redact the secret and the session token")
    func redaction() {
        let credentials = AWSCredentials(
            accessKeyId: "AKIAEXAMPLE", secretAccessKey: "s3cr3t/KEY+value", sessionToken: "T0KEN-very-secret")
        for text in [
            credentials.description, credentials.debugDescription, "\(credentials)", String(reflecting: credentials),
        ] {
            #expect(!text.contains("s3cr3t"))
            #expect(!text.contains("T0KEN"))
            #expect(text.contains("AKIAEXAMPLE"))
            #expect(text.contains("<redacted>"))
        }
    }

    @Test("environment: keys, session token, half a pair, nothing")
    func environment() async throws {
        let full = try await EnvironmentCredentialProvider(environment: [
            "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "TOKEN",
        ]).credentials()
        #expect(full.accessKeyId == "AKID" && full.secretAccessKey == "SECRET" && full.sessionToken == "TOKEN")
        #expect(full.source == "environment")
        let noToken = try await EnvironmentCredentialProvider(environment: [
            "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "",
        ]).credentials()
        #expect(noToken.sessionToken == nil)
        #expect(
            await kind {
                try await EnvironmentCredentialProvider(environment: ["AWS_ACCESS_KEY_ID": "AKID"]).credentials()
            }
                == .invalidConfiguration)
        #expect(
            await kind { try await EnvironmentCredentialProvider(environment: ["AWS_ACCESS_KEY_ID": ""]).credentials() }
                == .notConfigured)
    }

    @Test("shared files: INI rules, [profile x] in config, credentials file wins")
    func fileParsing() throws {
        let config = """
            # comment
            [default]
            region = eu-west-1
            aws_access_key_id = FROM_CONFIG
            s3 =
              max_concurrent_requests = 10
            ; another comment
            [profile dr]
            region=us-west-2
            aws_access_key_id=DR_ID
            aws_secret_access_key = DR/SECRET+x=
            [sso-session corp]
            sso_region = us-east-1
            [not-a-profile]
            aws_access_key_id = IGNORED
            """
        let credentials = """
            [default]
            aws_access_key_id = DEFAULT_ID
            AWS_Secret_Access_Key = DEFAULT_SECRET
            aws_session_token =
            """
        let configProfiles = SharedConfigFiles.parse(config, isConfigFile: true)
        #expect(Set(configProfiles.keys) == ["default", "dr"])
        #expect(configProfiles["default"]?["region"] == "eu-west-1")
        #expect(configProfiles["default"]?["max_concurrent_requests"] == nil)
        #expect(configProfiles["dr"]?["aws_secret_access_key"] == "DR/SECRET+x=")
        let files = SharedConfigFiles(
            credentialsPath: "c", configPath: "f",
            credentialsProfiles: SharedConfigFiles.parse(credentials, isConfigFile: false),
            configProfiles: configProfiles)
        let merged = try #require(files.profile("default"))
        #expect(merged["aws_access_key_id"] == "DEFAULT_ID")
        #expect(merged["aws_secret_access_key"] == "DEFAULT_SECRET")
        #expect(merged["region"] == "eu-west-1")
        #expect(files.profile("missing") == nil)
    }

    @Test("profile provider: default paths under HOME, AWS_PROFILE, file overrides, errors")
    func profileProvider() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        _ = try dir.write(
            ".aws/credentials", "[default]\naws_access_key_id = HOME_ID\naws_secret_access_key = HOME_SECRET\n")
        _ = try dir.write(
            ".aws/config",
            "[profile dr]\naws_access_key_id = DR_ID\naws_secret_access_key = DR_SECRET\naws_session_token = DR_TOKEN\n"
                + "[profile role]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n"
                + "[profile half]\naws_access_key_id = HALF\n[profile regiononly]\nregion = us-east-2\n")
        let env = isolatedEnvironment(dir)

        let home = try await ProfileCredentialProvider(environment: env).credentials()
        #expect(home.accessKeyId == "HOME_ID" && home.secretAccessKey == "HOME_SECRET")
        #expect(home.source == "profile default")

        var withProfile = env
        withProfile["AWS_PROFILE"] = "dr"
        let dr = try await ProfileCredentialProvider(environment: withProfile).credentials()
        #expect(dr.accessKeyId == "DR_ID" && dr.sessionToken == "DR_TOKEN")

        let explicit = try await ProfileCredentialProvider(environment: withProfile, profile: "default").credentials()
        #expect(explicit.accessKeyId == "HOME_ID")

        for (profile, expected) in [
            ("missing", CredentialProviderError.Kind.invalidConfiguration), ("role", .invalidConfiguration),
            ("half", .invalidConfiguration), ("regiononly", .notConfigured),
        ] {
            var e = env
            e["AWS_PROFILE"] = profile
            #expect(
                await kind { try await ProfileCredentialProvider(environment: e).credentials() } == expected,
                "\(profile)")
        }

        let other = try dir.write("elsewhere/creds", "[default]\naws_access_key_id=OTHER\naws_secret_access_key=S\n")
        var overridden = env
        overridden["AWS_SHARED_CREDENTIALS_FILE"] = other
        overridden["AWS_CONFIG_FILE"] = dir.url.appendingPathComponent("nope").path
        #expect(try await ProfileCredentialProvider(environment: overridden).credentials().accessKeyId == "OTHER")

        var nothing = env
        nothing["HOME"] = dir.url.appendingPathComponent("empty-home").path
        #expect(
            await kind { try await ProfileCredentialProvider(environment: nothing).credentials() } == .notConfigured)
    }

    @Test("chain: environment before files before IMDS; a broken source stops it; the winner is kept")
    func chainOrder() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        _ = try dir.write(
            ".aws/credentials", "[default]\naws_access_key_id = FILE_ID\naws_secret_access_key = FILE_SECRET\n")
        let http = testHTTP
        let envKeys = ["AWS_ACCESS_KEY_ID": "ENV_ID", "AWS_SECRET_ACCESS_KEY": "ENV_SECRET"]

        let both = CredentialProviderChain.standard(environment: isolatedEnvironment(dir, envKeys), http: http)
        #expect(try await both.credentials().accessKeyId == "ENV_ID")

        let filesOnly = CredentialProviderChain.standard(environment: isolatedEnvironment(dir), http: http)
        #expect(try await filesOnly.credentials().accessKeyId == "FILE_ID")

        let broken = CredentialProviderChain.standard(
            environment: isolatedEnvironment(dir, ["AWS_ACCESS_KEY_ID": "ENV_ID"]), http: http)
        #expect(await kind { try await broken.credentials() } == .invalidConfiguration)

        let empty = try TempDir()
        defer { empty.remove() }
        let none = CredentialProviderChain.standard(environment: isolatedEnvironment(empty), http: http)
        do {
            _ = try await none.credentials()
            Issue.record("expected no credentials")
        } catch let error as CredentialProviderError {
            #expect(error.kind == .notConfigured)
            #expect(error.description.contains("environment"))
            #expect(error.description.contains("profile default"))
            #expect(error.description.contains("AWS_EC2_METADATA_DISABLED"))
        }

        // The chain sticks with the provider that answered first.
        final class Counting: CredentialProvider, @unchecked Sendable {
            let lock = NSLock()
            var calls = 0
            let answer: AWSCredentials?
            init(_ answer: AWSCredentials?) { self.answer = answer }
            func credentials() async throws -> AWSCredentials {
                lock.withLock { calls += 1 }
                guard let answer else {
                    throw CredentialProviderError(provider: "counting", kind: .notConfigured, reason: "none")
                }
                return answer
            }
        }
        let first = Counting(nil)
        let second = Counting(AWSCredentials(accessKeyId: "B", secretAccessKey: "b"))
        let chain = CredentialProviderChain([first, second])
        for _ in 0..<3 { #expect(try await chain.credentials().accessKeyId == "B") }
        #expect(first.calls == 1)
        #expect(second.calls == 3)
    }

    @Test("fromEnvironment: region and credentials as the CLI would pick them")
    func fromEnvironment() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let env = isolatedEnvironment(
            dir,
            [
                "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "ENV_ID", "AWS_SECRET_ACCESS_KEY": "ENV_SECRET",
                "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:1",
            ])
        let client = try AWSClient.fromEnvironment(env, http: testHTTP)
        #expect(client.region == "eu-west-1")
        #expect(try await client.credentialProvider.credentials().accessKeyId == "ENV_ID")
        #expect(client.endpoint(for: .ec2).url == "http://127.0.0.1:1")
        #expect(try AWSClient.fromEnvironment(env, region: "us-west-2", http: testHTTP).region == "us-west-2")
        #expect(throws: AWSError.self) { try AWSClient.fromEnvironment(isolatedEnvironment(dir), http: testHTTP) }
    }

    @Test("chain falls through to IMDS when environment and files have nothing")
    func chainReachesIMDS() async throws {
        try await withPythonServer("fake_imds.py") { imds in
            let dir = try TempDir()
            defer { dir.remove() }
            let env = ["HOME": dir.url.path, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.baseURL + "/"]
            let chain = CredentialProviderChain.standard(environment: env, http: testHTTP)
            let credentials = try await chain.credentials()
            #expect(credentials.accessKeyId == "ASIAFAKE1")
            #expect(credentials.sessionToken == "token-1")
            #expect(credentials.source == "instance metadata (role fleet-role)")
        }
    }
}

@Suite("IMDSv2 credentials")
struct InstanceMetadataTests {
    private func stats(_ server: PythonServer) async throws -> [String: Int] {
        try await server.json("/__stats").compactMapValues { $0 as? Int }
    }

    @Test("token, role, keys; cached; refreshed five minutes before expiry")
    func refreshBeforeExpiry() async throws {
        try await withPythonServer("fake_imds.py") { imds in
            let clock = ManualClock(Date(timeIntervalSince1970: 1_900_000_000))  // 2030-03-17T17:46:40Z
            let expiry = clock.now.addingTimeInterval(3600)
            try await imds.post("/__control", json: ["expiration": UTCTime.iso8601(expiry)])
            let provider = InstanceMetadataCredentialProvider(
                http: testHTTP, environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.baseURL],
                now: clock.closure)

            let first = try await provider.credentials()
            #expect(first.accessKeyId == "ASIAFAKE1")
            #expect(first.secretAccessKey == "secret-1")
            #expect(first.sessionToken == "token-1")
            #expect(first.expiration == expiry)
            #expect(
                try await stats(imds) == [
                    "token_puts": 1, "list_gets": 1, "cred_gets": 1, "unauthorized": 0, "generation": 1,
                ])

            clock.advance(by: 3600 - 301)  // still more than 5 minutes left
            #expect(try await provider.credentials().accessKeyId == "ASIAFAKE1")
            #expect(try await stats(imds)["cred_gets"] == 1)

            clock.advance(by: 2)  // now inside the 5-minute margin
            try await imds.post("/__control", json: ["expiration": UTCTime.iso8601(expiry.addingTimeInterval(3600))])
            let second = try await provider.credentials()
            #expect(second.accessKeyId == "ASIAFAKE2")
            let after = try await stats(imds)
            #expect(after["cred_gets"] == 2)
            #expect(after["token_puts"] == 1)  // the session token is reused within its TTL
        }
    }

    @Test("a failed refresh keeps the still-valid cached keys, and fails once they expired")
    func staticStability() async throws {
        try await withPythonServer("fake_imds.py") { imds in
            let clock = ManualClock(Date(timeIntervalSince1970: 1_900_000_000))
            try await imds.post("/__control", json: ["expiration": UTCTime.iso8601(clock.now.addingTimeInterval(600))])
            let handler = InMemoryLogHandler()
            let provider = InstanceMetadataCredentialProvider(
                http: testHTTP, environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.baseURL],
                now: clock.closure, logger: Logger(label: "imds-test") { _ in handler })
            #expect(try await provider.credentials().accessKeyId == "ASIAFAKE1")
            try await imds.post("/__control", json: ["fail": true])
            clock.advance(by: 400)  // inside the margin, not expired
            #expect(try await provider.credentials().accessKeyId == "ASIAFAKE1")
            #expect(
                handler.entries.contains { $0.level == .warning && "\($0.message)".contains("using the cached ones") })
            #expect(
                !handler.entries.contains {
                    "\($0.message)".contains("secret-1") || "\($0.message)".contains("token-1")
                })
            clock.advance(by: 300)  // expired
            await #expect(throws: CredentialProviderError.self) { try await provider.credentials() }
            try await imds.post("/__control", json: ["fail": false])
            #expect(try await provider.credentials().accessKeyId == "ASIAFAKE2")
        }
    }

    @Test("a rejected session token is renewed once")
    func tokenRenewal() async throws {
        try await withPythonServer("fake_imds.py") { imds in
            let clock = ManualClock(Date(timeIntervalSince1970: 1_900_000_000))
            try await imds.post("/__control", json: ["expiration": UTCTime.iso8601(clock.now.addingTimeInterval(400))])
            let provider = InstanceMetadataCredentialProvider(
                http: testHTTP, environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.baseURL],
                now: clock.closure)
            _ = try await provider.credentials()
            try await imds.post("/__control", json: ["forget_tokens": true])
            clock.advance(by: 120)  // 400 s expiry, 300 s margin: refresh due
            #expect(try await provider.credentials().accessKeyId == "ASIAFAKE2")
            let stats = try await stats(imds)
            #expect(stats["token_puts"] == 2)
            #expect(stats["unauthorized"] == 1)
        }
    }

    @Test("no instance profile, IMDSv1-only endpoint, disabled, unreachable")
    func edges() async throws {
        try await withPythonServer("fake_imds.py") { imds in
            let env = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.baseURL]
            try await imds.post("/__control", json: ["role": ""])
            #expect(
                await kind {
                    try await InstanceMetadataCredentialProvider(http: testHTTP, environment: env).credentials()
                }
                    == .notConfigured)

            try await imds.post("/__control", json: ["role": "fleet-role", "v1only": true])
            let v1 = try await InstanceMetadataCredentialProvider(http: testHTTP, environment: env).credentials()
            #expect(v1.accessKeyId.hasPrefix("ASIAFAKE"))
            var v1Disabled = env
            v1Disabled["AWS_EC2_METADATA_V1_DISABLED"] = "true"
            #expect(
                await kind {
                    try await InstanceMetadataCredentialProvider(http: testHTTP, environment: v1Disabled).credentials()
                }
                    == .unavailable)
        }
        #expect(
            await kind {
                try await InstanceMetadataCredentialProvider(
                    http: testHTTP, environment: ["AWS_EC2_METADATA_DISABLED": "TRUE"]
                ).credentials()
            } == .notConfigured)
        // A port nothing listens on (the server above is gone): unavailable, so a chain moves on.
        let closed = try await withPythonServer("fake_imds.py") { $0.baseURL }
        #expect(
            await kind {
                try await InstanceMetadataCredentialProvider(
                    http: testHTTP, environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": closed]
                ).credentials()
            } == .unavailable)
    }

    @Test("refresh time: margin before expiry, at least a minute away, never after expiry")
    func refreshTime() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        func at(_ expiresIn: TimeInterval?) -> TimeInterval {
            let c = AWSCredentials(
                accessKeyId: "a", secretAccessKey: "b", expiration: expiresIn.map { now.addingTimeInterval($0) })
            return InstanceMetadataCredentialProvider.refreshTime(for: c, now: now, margin: 300)
                .timeIntervalSince(now)
        }
        #expect(at(3600) == 3300)
        #expect(at(200) == 60)
        #expect(at(30) == 30)
        #expect(at(nil) > 1e9)
    }
}
