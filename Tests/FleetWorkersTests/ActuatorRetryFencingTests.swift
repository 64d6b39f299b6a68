import AWSClient
import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore
import Synchronization
import Testing

/// Issue 14, gap 7, against moto, RabbitMQ and Redis: the AWS client's own retries of a mutation. The
/// lease was checked once before a call, and the client then re-sent it for up to 60 s (the lock's TTL);
/// transport retries also repeated calls that are not idempotent.
@Suite(
    "Actuator: AWS retries of a mutation are fenced and never repeat a non-idempotent call", .serialized,
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct ActuatorRetryFencingTests {
    /// Before: the client re-sent the refused StopInstances after its backoff, although another actor had
    /// taken the target meanwhile, and the original was stopped by an actor that no longer owned it.
    @Test(.timeLimit(.minutes(2)))
    func aRetryAfterTheLeaseIsLostIsNeverSent() async throws {
        try await ActuatorHarness.run { h in
            let target = h.name("retry-fenced")
            let old = try await h.launchTarget(target, healthURL: "http://127.0.0.1:9/health")
            _ = try await h.elasticIP(on: old.instanceId, h.ec2)
            _ = try await h.snapshot(target, h.ec2)
            let request = h.request(.reprovision, target: target, instance: old.instanceId)
            let (redis, keyspace, locks) = (h.redis, h.world.keyspace, h.locks)
            let successor = Mutex<LockLease?>(nil)
            // The old instance's StopInstances meets a 503 that AWS never acted on; while the client waits
            // to retry, the lock expires and another actor takes the target.
            h.log.inject(
                "StopInstances",
                .refuse {
                    _ = try await redis.command(["DEL", keyspace.lockKey(target)], idempotent: true)
                    let lease = try await locks.acquire(name: target, ttl: .seconds(30))
                    successor.withLock { $0 = lease }
                })

            let result = try await h.actuator().perform(request)

            guard case .leaseLost(let reason) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            #expect(reason.contains("re-sending") && reason.contains("StopInstances"), "\(reason)")
            #expect(h.log.refused.map(\.action) == ["StopInstances"])
            #expect(h.log.actions("StopInstances").isEmpty, "the retry never reached AWS")
            #expect(try await h.instance(old.instanceId, h.ec2).state == .running)
            #expect(try await locks.isHeld(try #require(successor.withLock { $0 })))
        }
    }

    /// Before: the client re-sent CreateSnapshot and CreateVolume after an answer that never came, and the
    /// repair made two evidence snapshots and two volumes. Now it looks for what the call made (by the
    /// step's tag) and uses it.
    @Test(.timeLimit(.minutes(3)))
    func aCreationWhoseAnswerIsLostIsLookedUpNotRepeated() async throws {
        let site = try await FakeSite()
        defer { site.stop() }
        try await ActuatorHarness.run { h in
            let target = h.name("lost-answer")
            let instance = try await h.launchTarget(target, healthURL: site.url)
            let root = try #require(instance.rootDeviceName)
            let oldVolume = try #require(instance.blockDevices.first { $0.deviceName == root }?.volumeId)
            _ = try await h.snapshot(target, h.ec2)
            h.log.inject("CreateSnapshot", .loseAnswer)
            h.log.inject("CreateVolume", .loseAnswer)
            let request = ActionRequest.repair(
                RepairRequest(.ebsRepair, id: "pred-lost", reason: "root volume impaired"), target: target,
                instanceId: instance.instanceId, region: "us-east-1", requestedAt: Date(), deadline: Date() + 300)

            let result = try await h.actuator().perform(request)

            guard case .completed(let outcome) = result else {
                Issue.record("unexpected \(result)")
                return
            }
            let resources = try #require(outcome.resources)
            let evidence = try #require(resources["evidence_snapshot_id"])
            let newVolume = try #require(resources["new_volume_id"])
            await h.cleanup.add { [ec2 = h.ec2] in
                _ = try? await ec2.terminateInstances([instance.instanceId])
                _ = try? await ec2.waitUntilTerminated([instance.instanceId], interval: .milliseconds(200))
                try? await ec2.deleteVolume(newVolume)
                try? await ec2.deleteVolume(oldVolume)
                try? await ec2.deleteSnapshot(evidence)
            }
            #expect(outcome.status == .succeeded, "\(outcome.reason ?? "")")
            #expect(h.log.actions("CreateSnapshot").count == 1, "one evidence snapshot")
            #expect(h.log.actions("CreateVolume").count == 1, "one new root volume")
            let tagged = try await h.ec2.describeSnapshots(filters: [.tag("AutoRecovery:EvidenceFor", target)])
            #expect(tagged.map(\.snapshotId) == [evidence])
            let record = try #require(try await h.records.load(request.idempotencyKey))
            #expect(record.notes.filter { $0.contains("had taken effect") }.count == 2, "\(record.notes)")
        }
    }
}
