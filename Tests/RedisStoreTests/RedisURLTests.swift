import Testing
@testable import RedisStore

@Suite("RedisURL parsing")
struct RedisURLTests {
    @Test func plainHostGetsDefaults() throws {
        let url = try RedisURL("redis://localhost")
        #expect(url.host == "localhost")
        #expect(url.port == 6379)
        #expect(url.database == 0)
        #expect(url.user == nil)
        #expect(url.password == nil)
        #expect(url.description == "redis://localhost:6379/0")
    }

    @Test func fullURL() throws {
        let url = try RedisURL("redis://alice:s%40cret%3A1@cache.internal:6380/3")
        #expect(url.host == "cache.internal")
        #expect(url.port == 6380)
        #expect(url.database == 3)
        #expect(url.user == "alice")
        #expect(url.password == "s@cret:1")
    }

    @Test func passwordOnlyAuthenticatesAsDefaultUser() throws {
        let url = try RedisURL("redis://:hunter2@127.0.0.1:6379/0")
        #expect(url.user == nil)
        #expect(url.password == "hunter2")
        #expect(url.description == "redis://:redacted@127.0.0.1:6379/0")
    }

    @Test func unencodedAtInPasswordUsesLastAt() throws {
        let url = try RedisURL("redis://:p@ss@host")
        #expect(url.password == "p@ss")
        #expect(url.host == "host")
    }

    @Test func ipv6AndTrailingSlashAndSchemeCase() throws {
        let v6 = try RedisURL("redis://[::1]:7000/1")
        #expect(v6.host == "::1")
        #expect(v6.port == 7000)
        #expect(v6.endpoint == "[::1]:7000")
        #expect(v6.description == "redis://[::1]:7000/1")
        let slash = try RedisURL("REDIS://Host/")
        #expect(slash.host == "Host")
        #expect(slash.database == 0)
    }

    @Test(arguments: [
        ("http://host", "must start with redis://"),
        ("rediss://host", "TLS"),
        ("host:6379", "must start with redis://"),
        ("redis://", "host is missing"),
        ("redis://:6379", "host is missing"),
        ("redis://host:0", "port"),
        ("redis://host:65536", "port"),
        ("redis://host:abc", "port"),
        ("redis://host:", "port"),
        ("redis://host:+1", "port"),
        ("redis://host/-1", "database"),
        ("redis://host/db", "database"),
        ("redis://host/1/2", "database"),
        ("redis://alice@host", "needs a password"),
        ("redis://:@host", "password"),
        ("redis://:%zz@host", "percent-encoding"),
        ("redis://host?timeout=1", "query"),
        ("redis://[::1:6379", "closing ']'"),
        ("redis://[::1]x", "after the IPv6 host"),
    ])
    func rejectsBadInput(input: String, expected: String) {
        #expect {
            _ = try RedisURL(input)
        } throws: { error in
            guard let error = error as? RedisError, error.kind == .invalidURL else { return false }
            return error.message.contains(expected) && error.description.contains("Invalid Redis URL")
        }
    }

    @Test func memberwiseInitValidates() {
        #expect(throws: RedisError.self) { try RedisURL(host: "h", port: 70_000) }
        #expect(throws: RedisError.self) { try RedisURL(host: "", port: 1) }
        #expect(throws: RedisError.self) { try RedisURL(host: "h", database: -1) }
        #expect(throws: RedisError.self) { try RedisURL(host: "h", user: "u") }
    }

    @Test func passwordNeverAppearsInTextForms() throws {
        let secret = "topsecret-7f3a"
        let url = try RedisURL("redis://alice:\(secret)@host:6380/3")
        #expect(url.password == secret)
        #expect(url.description == "redis://alice:redacted@host:6380/3")
        var dumped = ""
        dump(url, to: &dumped)
        for text in [
            url.description, url.debugDescription, String(describing: url),
            String(reflecting: url), "\(url)", dumped, url.endpoint,
        ] {
            #expect(!text.contains(secret), "leaked in: \(text)")
        }
        #expect(dumped.contains("redacted"))
    }

    @Test func badURLErrorsDoNotEchoThePassword() {
        let secret = "topsecret-7f3a"
        for input in ["redis://u:\(secret)@host:notaport", "redis://u:\(secret)@host/x", "redis://u:\(secret)@"] {
            do {
                _ = try RedisURL(input)
                Issue.record("\(input) should not parse")
            } catch {
                #expect(!error.description.contains(secret))
                #expect(!error.message.contains(secret))
            }
        }
    }
}

@Suite("Pure helpers")
struct PureHelperTests {
    @Test func durationMillisecondsRoundUp() throws {
        #expect(Duration.microseconds(200).roundedUpMilliseconds == 1)
        #expect(Duration.microseconds(1500).roundedUpMilliseconds == 2)
        #expect(Duration.seconds(2).roundedUpMilliseconds == 2000)
        #expect(throws: RedisError.self) { try Duration.zero.positiveMilliseconds("ttl") }
        #expect(throws: RedisError.self) { try Duration.milliseconds(-5).positiveMilliseconds("ttl") }
    }

    @Test func sha1MatchesKnownVectors() {
        #expect(SHA1.hex([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            SHA1.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(
            SHA1.hex(Array(repeating: UInt8(ascii: "a"), count: 1000))
                == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }

    @Test func tokensAre128BitHexAndDistinct() {
        let tokens = (0..<1000).map { _ in RedisLockStore.makeToken() }
        #expect(Set(tokens).count == tokens.count)
        for token in tokens {
            #expect(token.count == 32)
            #expect(token.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        }
    }

    @Test func keyNames() {
        let keys = RedisKeyspace()
        #expect(keys.lockKey("i-123") == "recovery:lock:{i-123}")
        #expect(keys.fenceKey("i-123") == "recovery:lock:{i-123}:fence")
        #expect(keys.counterKey("restarts:i-123") == "recovery:counter:restarts:i-123")
        #expect(keys.valueKey("idem:m1") == "recovery:kv:idem:m1")
        #expect(RedisKeyspace(prefix: "staging:").lockKey("x") == "staging:lock:{x}")
    }

    @Test func serverErrorCode() {
        let error = RedisError(
            kind: .server, message: "WRONGTYPE Operation against a key", endpoint: "h:1",
            command: "LPUSH")
        #expect(error.serverErrorCode == "WRONGTYPE")
        #expect(error.description.contains("h:1"))
        #expect(error.description.contains("LPUSH"))
        #expect(RedisError(kind: .connection, message: "x").serverErrorCode == nil)
    }

    @Test func aclRefusalsAreNamedWithTheUser() {
        let noperm = RedisError(
            kind: .server, message: "NOPERM this user has no permissions to access one of the keys used as arguments",
            endpoint: "h:1", command: "SET", user: "probe")
        #expect(noperm.isPermissionDenied)
        #expect(!noperm.isAuthenticationFailure)
        #expect(noperm.description.contains("refused (command SET) for user 'probe'"))
        #expect(noperm.description.contains("Access control"))
        // A script's redis.call refused a key: Redis 7.0 answers ERR, not NOPERM.
        let script = RedisError(
            kind: .server,
            message:
                "ERR The user executing the script can't access at least one of the keys mentioned in the command arguments script: abc, on @user_script:1.",
            command: "EVAL", user: "decision")
        #expect(script.isPermissionDenied)
        // CLIENT SETNAME refused at connect time.
        #expect(
            RedisError(
                kind: .connection,
                message:
                    "connection setup was refused: NOPERM this user has no permissions to run the 'client|setname' command",
                command: "CLIENT"
            ).isPermissionDenied)
        let wrongPass = RedisError(
            kind: .connection,
            message: "connection setup was refused: WRONGPASS invalid username-password pair or user is disabled.",
            endpoint: "h:1", command: "AUTH", user: "actuator")
        #expect(wrongPass.isAuthenticationFailure)
        #expect(wrongPass.description.contains("refused to authenticate user 'actuator'"))
        let noAuth = RedisError(kind: .server, message: "NOAUTH Authentication required.", command: "GET")
        #expect(noAuth.isAuthenticationFailure)
        #expect(noAuth.description.contains("the default user"))
        #expect(!RedisError(kind: .server, message: "WRONGTYPE Operation against a key").isPermissionDenied)
        #expect(!RedisError(kind: .timeout, message: "NOPERM lookalike").isPermissionDenied)
    }
}
