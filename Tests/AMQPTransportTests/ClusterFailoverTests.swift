import AMQPTransport
import FleetTestSupport
import Foundation
import InMemoryLogging
import Logging
import Synchronization
import Testing

/// A publisher and a consumer on a three-node cluster (scripts/cluster.sh) while a node dies under them:
/// the one they are connected to, the one leading their quorum queue, or one that hangs with its sockets
/// open. Every confirmed message must be consumed (by message id: the redeliveries and resends that
/// at-least-once brings are counted, and a consumer that dedupes by id, as the fleet's do, handles each
/// one once), nothing may fail, and the clients must end up on a live node.
@Suite(
    "AMQP on a three-node cluster", .serialized,
    .enabled(if: clusterAvailable, "start the cluster: scripts/cluster.sh start; set -a; . <(scripts/cluster.sh env)"))
struct ClusterFailoverTests {
    /// The queue's leader is node `leader` (a quorum queue's leader is the node that declared it); the
    /// publisher and the consumer connect to node `clients` first.
    struct Scenario {
        let cluster: BrokerCluster
        let scratch = ScratchTopology()
        let publisher: AMQPPublisher
        let consumer: AMQPConsumer
        let collector: DeliveryCollector
        let publisherLog = InMemoryLogHandler()
        let publisherWatch: ConnectionWatch
        let consumerWatch: ConnectionWatch
        let clients: Int

        init(
            _ cluster: BrokerCluster, leader: Int, clients: Int, heartbeat: Int = AMQPConfiguration.defaultHeartbeat,
            topologyMode: AMQPConfiguration.TopologyMode = .declare
        ) async throws {
            self.cluster = cluster
            self.clients = clients
            let admin = AMQPAdmin(configuration: cluster.configuration(first: leader, name: "cluster-test-admin"))
            try await admin.declare(scratch.topology)
            await admin.close()
            #expect(try await cluster.leader(of: scratch.queue) == leader)
            var config = cluster.configuration(first: clients, heartbeat: heartbeat, name: "cluster-test")
            config.topologyMode = topologyMode
            let log = publisherLog
            publisher = AMQPPublisher(
                configuration: config, topology: scratch.topology,
                logger: Logger(label: "cluster-test.publisher") { _ in log })
            consumer = AMQPConsumer(
                configuration: config, topology: scratch.topology, queue: scratch.queue, prefetch: 50)
            collector = DeliveryCollector(consumer, autoAck: true)
            let (publisher, consumer) = (publisher, consumer)
            try await waitUntil("the clients to connect") {
                cluster.node(at: publisher.connectedNode) == clients
                    && cluster.node(at: consumer.connectedNode) == clients
            }
            publisherWatch = ConnectionWatch { publisher.connectedNode }
            consumerWatch = ConnectionWatch { consumer.connectedNode }
        }

        /// Waits for both clients to be connected to a node other than `node`; returns how long the
        /// publisher and the consumer were without a connection.
        func movedAway(from node: Int) async throws {
            let (publisher, consumer, cluster) = (publisher, consumer, cluster)
            try await waitUntil("the clients to move off node \(node)") {
                let p = cluster.node(at: publisher.connectedNode)
                let c = cluster.node(at: consumer.connectedNode)
                return p != nil && p != node && c != nil && c != node
            }
        }

        /// Every confirmed message consumed; nothing failed, nothing unknown arrived. Prints the figures.
        func verify(_ stream: PublishStream, _ what: String) async throws {
            let tally = stream.tally.withLock { $0 }
            #expect(tally.failed.isEmpty, "every publish is confirmed in the end: \(tally.failed.prefix(3))")
            #expect(tally.started == tally.confirmed.count + tally.failed.count)
            let confirmed = Set(tally.confirmed)
            let collector = collector
            try await waitUntil("every confirmed message to be consumed") {
                Set(await collector.received.compactMap(\.properties.messageId)).isSuperset(of: confirmed)
            }
            // Late duplicates (a resend whose first copy was stored too) have time to arrive before the count.
            try await Task.sleep(for: .seconds(1))
            let deliveries = await collector.received
            let ids = deliveries.compactMap(\.properties.messageId)
            let distinct = Set(ids)
            #expect(distinct == confirmed, "nothing lost, nothing that was never published")
            let redelivered = deliveries.filter(\.redelivered).count
            let unconfirmedAtLoss = publisherLog.entries
                .filter { $0.message.description.contains("lost its connection") }
                .compactMap { $0.metadata["unconfirmed"].flatMap { Int("\($0)") } }
            print(
                """
                cluster \(what): \(confirmed.count) confirmed, \(confirmed.count) consumed once by id \
                (\(ids.count - distinct.count) duplicate deliveries, \(redelivered) flagged redelivered), 0 lost; \
                unconfirmed when the publisher lost its node: \(unconfirmedAtLoss); \
                longest time without a confirm \(inMilliseconds(tally.longestPause)); \
                publisher \(publisherWatch.summary(cluster)), consumer \(consumerWatch.summary(cluster))
                """)
        }

        func finish() async {
            publisherWatch.stop()
            consumerWatch.stop()
            await consumer.shutdown(drainTimeout: .zero)
            await publisher.shutdown(drainTimeout: .zero)
            await scratch.cleanUp(cluster.configuration(first: 1, name: "cluster-test-cleanup"))
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func theNodeTheClientsUseIsKilledMidStream() async throws {
        try await BrokerCluster.exclusively { cluster in
            let scenario = try await Scenario(cluster, leader: 1, clients: 2)
            let stream = PublishStream()
            try await stream.run(scenario.publisher, scenario.scratch) {
                scenario.publisherWatch.mark()
                scenario.consumerWatch.mark()
                try await cluster.kill(2)
                try await scenario.movedAway(from: 2)
            }
            try await scenario.verify(stream, "connected node killed")
            let unconfirmed = scenario.publisherLog.entries.filter {
                $0.message.description.contains("lost its connection")
            }.compactMap { $0.metadata["unconfirmed"].flatMap { Int("\($0)") } }
            #expect(unconfirmed.reduce(0, +) > 0, "publishes were in flight on the killed node and were sent again")
            #expect(try await cluster.leader(of: scenario.scratch.queue) == 1, "the leader was not disturbed")
            await scenario.finish()
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func theNodeLeadingTheQueueIsKilledMidStream() async throws {
        try await BrokerCluster.exclusively { cluster in
            let scenario = try await Scenario(cluster, leader: 1, clients: 2)
            let stream = PublishStream()
            try await stream.run(scenario.publisher, scenario.scratch) {
                try await cluster.kill(1)
            }
            try await scenario.verify(stream, "queue leader killed")
            let leader = try await cluster.leader(of: scenario.scratch.queue)
            #expect(leader != 1, "a surviving member leads the queue")
            await scenario.finish()
        }
    }

    /// A node that stops answering but keeps its sockets open (a hung VM, a host cut off the network)
    /// closes nothing: only the heartbeat notices. Here with a 2 s heartbeat, so about 4 s.
    ///
    /// The clients only verify the topology, as the deployment's workers do (AMQP_TOPOLOGY=verify): until
    /// the other nodes give the hung one up (net_ticktime, 60 s), RabbitMQ blocks every change to its
    /// metadata, a binding declared again included, but not the passive declares, a subscription to a
    /// quorum queue or a publish to it (docs/scaling.md). The node is thawed well before then: a node
    /// given up and back is a partition that only a restart heals.
    @Test(.timeLimit(.minutes(3)))
    func aNodeThatHangsIsLeftWhenItsHeartbeatsStop() async throws {
        try await BrokerCluster.exclusively { cluster in
            let scenario = try await Scenario(cluster, leader: 1, clients: 3, heartbeat: 2, topologyMode: .verify)
            let stream = PublishStream()
            do {
                try await stream.run(scenario.publisher, scenario.scratch) {
                    scenario.publisherWatch.mark()
                    scenario.consumerWatch.mark()
                    try await cluster.freeze(3)
                    try await scenario.movedAway(from: 3)
                }
            } catch {
                try? await cluster.thaw(3)
                throw error
            }
            // Back, the node closes the dead connections: the consumer's unacknowledged deliveries return
            // to the queue, and publishes it had read but not confirmed are stored (duplicates, by id).
            try await cluster.thaw(3)
            try await scenario.verify(stream, "node hung (SIGSTOP), heartbeat 2 s")
            await scenario.finish()
        }
    }
}

extension ClusterFailoverTests {
    /// A node that keeps the connection alive but does not answer: with node 1 hung, RabbitMQ holds a
    /// binding declared again on nodes 2 and 3 until node 1 is declared down (a minute). The publisher
    /// gives each node up after its RPC timeout and keeps trying, instead of waiting on the first for as
    /// long as the broker takes; once node 1 is back, its publish is confirmed.
    @Test(.timeLimit(.minutes(3)))
    func aRequestTheBrokerHoldsIsGivenUpAfterTheRPCTimeout() async throws {
        try await BrokerCluster.exclusively { cluster in
            let scratch = ScratchTopology()
            let admin = AMQPAdmin(configuration: cluster.configuration(first: 2, name: "cluster-test-admin"))
            try await admin.declare(scratch.topology)
            await admin.close()
            var config = cluster.configuration(first: 2, name: "cluster-test-rpc")
            config.rpcTimeout = .seconds(2)
            config.connectTimeout = .seconds(2)
            let log = InMemoryLogHandler()
            try await cluster.freeze(1)
            let publisher = AMQPPublisher(
                configuration: config, topology: scratch.topology, logger: Logger(label: "cluster-test") { _ in log })
            async let confirmed: Void = publisher.publish(scratch.message("held", id: "held"))
            @Sendable func timedOut(on node: Int) -> Bool {
                log.entries.contains {
                    $0.message.description.contains("cannot use a node")
                        && "\($0.metadata["broker"] ?? "")" == cluster.nodes[node - 1].address
                        && "\($0.metadata["error"] ?? "")".contains("timed out")
                }
            }
            do {
                try await waitUntil("the publisher to give up nodes 2 and 3", timeout: .seconds(30)) {
                    timedOut(on: 2) && timedOut(on: 3)
                }
            } catch {
                try? await cluster.thaw(1)
                throw error
            }
            #expect(!publisher.isConnected)
            try await cluster.thaw(1)
            try await confirmed
            #expect(publisher.isConnected)
            let consumer = AMQPConsumer(
                configuration: cluster.configuration(first: 3, name: "cluster-test"), topology: scratch.topology,
                queue: scratch.queue)
            let got = await DeliveryCollector(consumer, autoAck: true).wait(for: 1, timeout: .seconds(60))
            #expect(got.compactMap(\.properties.messageId) == ["held"])
            await consumer.shutdown()
            await publisher.shutdown()
            await scratch.cleanUp(cluster.configuration(first: 1, name: "cluster-test-cleanup"))
        }
    }
}

/// Samples a client's connected node every few milliseconds, to report how long it was without one.
final class ConnectionWatch: Sendable {
    private let samples = Mutex<[(at: ContinuousClock.Instant, node: String?)]>([])
    private let marked = Mutex<ContinuousClock.Instant?>(nil)
    private let running = Atomic<Bool>(true)

    init(_ read: @escaping @Sendable () -> String?) {
        Thread.detachNewThread { [self] in
            var last: String?? = .none
            while running.load(ordering: .relaxed) {
                let node = read()
                if last != .some(node) {
                    samples.withLock { $0.append((.now, node)) }
                    last = .some(node)
                }
                usleep(2_000)
            }
        }
    }

    /// The fault starts now.
    func mark() { marked.withLock { $0 = .now } }
    func stop() { running.store(false, ordering: .relaxed) }

    /// "lost its node after A, on node N after B (without a node for C)", counted from `mark()`.
    func summary(_ cluster: BrokerCluster) -> String {
        guard let start = marked.withLock({ $0 }) else { return "(no fault marked)" }
        let after = samples.withLock { $0 }.filter { $0.at >= start }
        guard let lost = after.first(where: { $0.node == nil }),
            let back = after.first(where: { $0.at > lost.at && $0.node != nil })
        else { return "kept its node" }
        let node = cluster.node(at: back.node).map(String.init) ?? "?"
        return
            "lost its node after \(inMilliseconds(lost.at - start)), on node \(node) after \(inMilliseconds(back.at - start)) (\(inMilliseconds(back.at - lost.at)) without one)"
    }
}

func inMilliseconds(_ d: Duration) -> String {
    "\(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000) ms"
}
