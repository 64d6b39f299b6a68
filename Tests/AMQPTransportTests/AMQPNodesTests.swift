@testable import AMQPTransport
import Foundation
import Testing

@Suite("AMQP_URL's list of cluster nodes")
struct AMQPNodeListTests {
    @Test func parsesEveryNodeOfTheList() throws {
        let nodes = try AMQPURL.list(
            " amqp://fleet:pw@mq-1:5672/%2f, amqp://fleet:pw@mq-2/%2f ,amqp://fleet:pw@mq-3:5673/%2f,")
        #expect(nodes.map(\.address) == ["mq-1:5672", "mq-2:5672", "mq-3:5673"])
        #expect(nodes.allSatisfy { $0.user == "fleet" && $0.password == "pw" && $0.vhost == "/" })
        #expect(try AMQPURL.list("amqps://u:p@h/v").map(\.address) == ["h:5671"])
        #expect(try AMQPURL("amqp://[::1]:5682").address == "[::1]:5682")
    }

    @Test(arguments: [
        ("amqp://u:p@a,amqp://v:p@b", "user"),
        ("amqp://u:p@a,amqp://u:p@b/other", "vhost"),
        ("amqp://u:p@a,amqps://u:p@b", "scheme"),
        ("amqp://u:p@a,amqp://u:p@b?heartbeat=5", "heartbeat"),
        ("amqp://u:p@a:5672,amqp://u:p@a", "listed twice"),
        (" , ", "no URL"),
        ("amqp://u:p@a,http://u:p@b", "scheme must be amqp"),
    ])
    func refusesAListWhoseNodesDiffer(_ text: String, _ reason: String) {
        #expect {
            try AMQPURL.list(text)
        } throws: { error in
            String(describing: error).contains(reason)
        }
    }

    @Test func errorsNameTheNodeButNeverThePassword() {
        do {
            _ = try AMQPURL.list("amqp://fleet:hunter2@mq-1,amqp://fleet:hunter3@mq-2:5999")
            Issue.record("different passwords must be refused")
        } catch {
            #expect(error.description.contains("node 2 (mq-2:5999)"))
            #expect(error.description.contains("password"))
            #expect(!error.description.contains("hunter2") && !error.description.contains("hunter3"))
        }
    }

    @Test func theFirstNodeCarriesTheSettingsOfAll() throws {
        let config = AMQPConfiguration(nodes: try AMQPURL.list("amqp://u:p@a?heartbeat=4,amqp://u:p@b?heartbeat=4"))
        #expect(config.url.address == "a:5672")
        #expect(config.heartbeat == 4)
        #expect(AMQPConfiguration(url: try AMQPURL("amqp://h")).heartbeat == AMQPConfiguration.defaultHeartbeat)
    }
}

@Suite("The order in which a client tries the nodes")
struct NodeRotationTests {
    let nodes = (1...3).map { try! AMQPURL("amqp://u:p@mq-\($0)") }

    /// A generator that always returns the same sequence, so the shuffle is reproducible.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state
        }
    }

    @Test func aPassTriesEveryNodeOnceAndTheShuffleSpreadsClients() {
        var firsts = Set<String>()
        for seed in 0..<40 {
            var generator = Seeded(state: UInt64(seed))
            let rotation = NodeRotation(nodes, shuffle: true, using: &generator)
            #expect(Set(rotation.pass.map(\.address)) == Set(nodes.map(\.address)))
            #expect(rotation.pass.count == 3)
            firsts.insert(rotation.pass[0].address)
        }
        #expect(firsts.count == 3, "clients start on different nodes")
    }

    @Test func withoutShuffleTheListedOrderIsKept() {
        let rotation = NodeRotation(nodes, shuffle: false)
        #expect(rotation.pass.map(\.address) == ["mq-1:5672", "mq-2:5672", "mq-3:5672"])
    }

    @Test func afterALossTheNextPassStartsAfterTheLostNodeAndTriesItLast() {
        var rotation = NodeRotation(nodes, shuffle: false)
        rotation.connected(to: nodes[1])
        #expect(rotation.pass.first == nodes[1], "a reconnect without a loss goes back to the same node")
        rotation.lost()
        #expect(rotation.pass.map(\.address) == ["mq-3:5672", "mq-1:5672", "mq-2:5672"])
        // mq-3 is down too: the pass went on to mq-1, and the next loss moves past mq-1.
        rotation.connected(to: nodes[0])
        rotation.lost()
        #expect(rotation.pass.map(\.address) == ["mq-2:5672", "mq-3:5672", "mq-1:5672"])
    }

    @Test func oneNodeIsTriedAgainAndAgain() {
        var rotation = NodeRotation([nodes[0]], shuffle: true)
        rotation.connected(to: nodes[0])
        rotation.lost()
        #expect(rotation.pass == [nodes[0]])
    }
}
