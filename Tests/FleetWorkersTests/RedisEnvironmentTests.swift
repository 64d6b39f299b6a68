import Logging
import RedisStore
import Testing

@testable import FleetWorkers

/// How the workers read their Redis settings (docs/configuration.md): the Sentinels, the replicas to wait
/// for and the bounds of the wait, with errors that name the setting and never a password.
struct RedisEnvironmentTests {
    let base = ["REDIS_URL": "redis://decision:pw-decision@sentinel-managed/0"]

    @Test func aSingleRedisWaitsForNobody() throws {
        let client = try WorkerEnvironment(kind: "decision", values: base).redis(logger: Logger(label: "t"))
        #expect(client.options.sentinel == nil && client.options.replicas == 0)
    }

    @Test func theSentinelLayoutAsksTheSentinelsAndWaitsForAReplica() throws {
        var values = base
        values["REDIS_SENTINELS"] = "s1,s2:26380"
        values["REDIS_SENTINEL_PASSWORD"] = "pw-sentinel"
        values["REDIS_WAIT_REPLICAS"] = "1"
        values["REDIS_WAIT_TIMEOUT"] = "0.5"
        let client = try WorkerEnvironment(kind: "decision", values: values).redis(logger: Logger(label: "t"))
        #expect(client.options.sentinel?.sentinels.map(\.description) == ["s1:26379", "s2:26380"])
        #expect(client.options.sentinel?.masterName == "fleet")
        #expect(client.options.replicas == 1 && client.options.replicaTimeout == .milliseconds(500))
    }

    @Test(arguments: [
        ("REDIS_WAIT_TIMEOUT", "2", "REDIS_WAIT_TIMEOUT"), ("REDIS_WAIT_TIMEOUT", "0.0001", "REDIS_WAIT_TIMEOUT"),
        ("REDIS_WAIT_REPLICAS", "-1", "REDIS_WAIT_REPLICAS"), ("REDIS_SENTINELS", ":pw-typo@s1:x", "REDIS_SENTINELS"),
    ])
    func badValuesAreRefusedNamingTheSetting(name: String, value: String, named: String) {
        var values = base
        values[name] = value
        #expect {
            try WorkerEnvironment(kind: "decision", values: values).redis(logger: Logger(label: "t"))
        } throws: { error in
            "\(error)".contains(named) && !"\(error)".contains("pw-")
        }
    }
}
