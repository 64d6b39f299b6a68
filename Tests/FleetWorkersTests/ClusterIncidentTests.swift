import AMQPTransport
import AWSClient
import FleetRuntime
import FleetTestSupport
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// One incident walked by the real probe, decision and actuator over a three-node RabbitMQ cluster
/// (scripts/cluster.sh), with Redis and moto as usual, while broker nodes die under it:
///
/// 1. once the outage is declared, node 2 is killed: every worker's node and the leader of every queue of
///    the fleet (a quorum queue's leader is the node that declared it, and the workers declared from 2);
/// 2. with node 2 back, just before the actuator sends RebootInstances (it holds the request,
///    unacknowledged), the node its consumer is on is killed: the broker hands the request out again.
///
/// The incident must close as recovered by the restart, and the restart must run once: one
/// RebootInstances reaching AWS, one state change of each kind, one outcome.
@Suite(
    "An incident on a three-node broker cluster",
    .enabled(
        if: servicesAvailable && BrokerCluster.isAvailable,
        "set the services' and the cluster's variables (scripts/services.sh env, scripts/cluster.sh env)"))
struct ClusterIncidentTests {
    @Test(.timeLimit(.minutes(4)))
    func anIncidentCompletesOnceWhileItsBrokerNodesAreKilled() async throws {
        try await BrokerCluster.exclusively { cluster in
            try await Self.incident(cluster)
        }
    }

    static func incident(_ cluster: BrokerCluster) async throws {
        let world = try World(amqp: cluster.configuration(first: 2, name: "cluster-incident"))
        let redis = try await RedisClient.connect(url: world.redisURL)
        try await IncidentUnderFaults(world: world, redis: redis, label: "cluster").run(
            ready: { workers in
                try await poll("every worker on node 2", timeout: .seconds(60)) {
                    workers.consumers.allSatisfy { cluster.node(at: $0.connectedNode) == 2 }
                        && cluster.node(at: workers.publisher.connectedNode) == 2
                }
                #expect(try await cluster.leader(of: world.topology.actionRequestsQueue) == 2)
            },
            inGrace: { _ in
                // Every worker's connection and every queue's leader.
                try await cluster.kill(2)
                return "in grace: killed node 2, every worker's and every queue's leader"
            },
            beforeReboot: { workers in
                // Node 2 back first: two nodes of three must stay up.
                try await cluster.start()
                let node = try #require(cluster.node(at: workers.actionRequests.connectedNode))
                let leader = try await cluster.leader(of: world.topology.actionRequestsQueue)
                try await cluster.kill(node)
                return "mid-step: killed node \(node), the actuator's (the requests queue's leader: node \(leader))"
            })
        await redis.close()
    }

    /// The incident's state changes from the history queue, each message once (by id).
    static func changes(_ deliveries: [AMQPDelivery], incident: String) -> [TargetStateChange] {
        envelopes(deliveries, type: .event, as: TargetStateChange.self).map(\.body).filter {
            $0.incidentId == incident
        }
    }

    static func envelopes<Body: Codable & Sendable>(_ deliveries: [AMQPDelivery], type: MessageType, as: Body.Type)
        -> [Envelope<Body>]
    {
        var seen = Set<String>()
        return deliveries.compactMap { delivery in
            guard let envelope = try? EnvelopeCodec.decode(delivery.body, as: Body.self, expecting: type),
                seen.insert(envelope.id).inserted
            else { return nil }
            return envelope
        }
    }
}

/// Passes every request on to `inner`, but runs `pause` before the first request of `action`.
final class BeforeFirstCall: HTTPExecuting, Sendable {
    let inner: RequestLog
    let action: String
    let pause: @Sendable () async throws -> Void
    private let done = Atomic<Bool>(false)

    init(_ inner: RequestLog, action: String, pause: @escaping @Sendable () async throws -> Void) {
        self.inner = inner
        self.action = action
        self.pause = pause
    }

    func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        if RequestLog.action(request, body: String(decoding: request.body, as: UTF8.self)) == action,
            !done.exchange(true, ordering: .relaxed)
        {
            try await pause()
        }
        return try await inner.execute(request)
    }
}
