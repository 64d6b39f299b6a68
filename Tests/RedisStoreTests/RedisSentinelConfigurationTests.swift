import Testing
@testable import RedisStore

/// REDIS_SENTINELS as the workers read it, and a client whose Sentinels do not answer. No server needed.
struct RedisSentinelConfigurationTests {
    @Test func readsHostsPortsAndIPv6() throws {
        let config = try RedisSentinelConfiguration(
            list: " sentinel-1:26380, sentinel-2 ,[::1]:26381,10.0.0.3", masterName: "fleet")
        #expect(
            config.sentinels.map(\.description) == [
                "sentinel-1:26380", "sentinel-2:26379", "[::1]:26381", "10.0.0.3:26379",
            ])
        #expect(config.masterName == "fleet")
    }

    @Test(arguments: [
        ("", "names no Sentinel"), ("a:0", "is not host[:port]"), ("a:99999", "is not host[:port]"),
        ("a:b", "is not host[:port]"), ("[::1", "is not host[:port]"), ("a/0", "is not host[:port]"),
        ("user@a", "is not host[:port]"), ("a:26379,a:26379", "names a Sentinel twice"),
    ])
    func refusesWhatIsNotAList(list: String, message: String) {
        #expect {
            try RedisSentinelConfiguration(list: list, masterName: "fleet")
        } throws: { error in
            (error as? RedisError)?.kind == .invalidURL && (error as? RedisError)?.message.contains(message) == true
        }
    }

    @Test func refusesAMasterNameWithSpacesAndAUserWithoutPassword() {
        #expect(throws: RedisError.self) { try RedisSentinelConfiguration(list: "a", masterName: "my fleet") }
        #expect(throws: RedisError.self) { try RedisSentinelConfiguration(list: "a", masterName: "") }
        #expect(throws: RedisError.self) { try RedisSentinelConfiguration(list: "a", masterName: "f", user: "u") }
    }

    @Test func theDescriptionNeverShowsThePassword() throws {
        let config = try RedisSentinelConfiguration(list: "a,b", masterName: "fleet", password: "s3cret-sentinel")
        #expect(!config.description.contains("s3cret-sentinel"))
        var dumped = ""
        dump(config, to: &dumped)
        #expect(!dumped.contains("s3cret-sentinel"))
        #expect(!String(reflecting: config).contains("s3cret-sentinel"))
        #expect(config.description.contains("authenticated"))
    }

    /// No Sentinel answers: the command fails as a connection failure naming every Sentinel asked, and
    /// nothing is sent anywhere else (the URL's own host is never used).
    @Test func noSentinelAnsweringIsAConnectionFailureNamingEachOne() async throws {
        let ports = [try freeLoopbackPort(), try freeLoopbackPort()]
        let config = try RedisSentinelConfiguration(
            list: ports.map { "127.0.0.1:\($0)" }.joined(separator: ","), masterName: "fleet", password: "pw-sentinel")
        let client = RedisClient(
            url: try RedisURL("redis://:pw-redis@127.0.0.1:\(try freeLoopbackPort())/0"),
            options: .init(connectTimeout: .milliseconds(500), reconnectAttempts: 1, sentinel: config))
        let error = await redisError { _ = try await client.command(["PING"], idempotent: true) }
        #expect(error?.kind == .connection)
        for port in ports {
            #expect(error?.message.contains("127.0.0.1:\(port)") == true, "\(String(describing: error))")
        }
        #expect(error?.description.contains("pw-") == false)
        await client.close()
    }
}
