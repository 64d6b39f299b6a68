import FleetTestSupport
import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore
import Testing

/// One incident walked by the real probe, decision and actuator with Redis behind Sentinel
/// (scripts/redis-ha.sh: a primary, two replicas, three Sentinels, the deployment's conf files), the
/// workers' Redis client asking the Sentinels for the primary and waiting for a replica after every lock
/// and compare-and-set (REDIS_WAIT_REPLICAS=1), while the primary dies under it twice:
///
/// 1. once the outage is declared, the primary is killed (the decision's state and the probe's claims move
///    to the promoted replica);
/// 2. with that node back as a replica, just before the actuator sends RebootInstances (it holds the
///    target's lock and its step record says the step is under way), the new primary is killed.
///
/// The incident must close as recovered by the restart, the restart must run once, and no fencing token is
/// handed out twice: a lock taken after both fail-overs gets a larger fence than the step ever held.
@Suite(
    "An incident on Redis with Sentinel",
    .enabled(
        if: servicesAvailable && RedisSentinelSetup.isAvailable,
        "set the services' and the Sentinels' variables (scripts/services.sh env, scripts/redis-ha.sh env)"))
struct SentinelIncidentTests {
    @Test(.timeLimit(.minutes(4)))
    func anIncidentCompletesOnceWhileItsRedisPrimaryIsKilled() async throws {
        try await RedisSentinelSetup.exclusively { ha in
            let world = try World()
            let redis = try ha.client("admin", replicas: 1, name: "sentinel-incident")
            let report = try await IncidentUnderFaults(world: world, redis: redis, label: "sentinel").run(
                inGrace: { _ in
                    let primary = try await ha.primary()
                    try await ha.kill(primary)
                    return "in grace: killed the primary, node \(primary)"
                },
                beforeReboot: { _ in
                    try await ha.start()
                    let primary = try await ha.primary()
                    try await ha.kill(primary)
                    return "mid-step (lock held, step record written): killed the primary, node \(primary)"
                })
            let atFault = try #require(report.fenceAtFault)
            let recorded = try #require(report.finalRecordFence)
            #expect(recorded >= atFault, "the step kept (or a resumer raised) the fence it held at the fault")
            // After both fail-overs a new lock on the same target gets a fence nobody held before.
            let locks = RedisLockStore(client: redis, keyspace: world.keyspace)
            let (later, _, _) = try await RedisSentinelSetup.untilAccepted {
                try await locks.acquire(name: report.target, ttl: .seconds(10))
            }
            let lease = try #require(later, "the step released its lock")
            #expect(lease.fencingToken > max(atFault, recorded))
            _ = try await locks.release(lease)
            try await ha.start()
            await redis.close()
        }
    }
}
