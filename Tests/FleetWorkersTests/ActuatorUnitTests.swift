import AWSClient
import Foundation
import RecoveryCore
import Testing

@testable import FleetWorkers

/// The actuator's pure parts: configuration, client tokens, error classification, dry-run outcomes,
/// the record's wire form.
struct ActuatorUnitTests {
    @Test func drSettingsAreMergedFromDefaultsTargetAndEnvironment() throws {
        let file = try TargetConfigFile(
            data: Data(
                """
                {"defaults": {"dr_region": "us-west-2", "dr": {"subnet_id": "subnet-shared", "security_group_ids": ["sg-1"]}},
                 "targets": {"shop": {"dry_run": true, "dr": {"record_name": "shop.example.com", "subnet_id": "subnet-shop"}},
                             "blog": {}}}
                """.utf8))
        let env = WorkerEnvironment(
            kind: "actuator",
            values: [
                "DR_INSTANCE_TYPE": "t3.large", "DR_HOSTED_ZONE_ID": "Z1", "DR_SUBNET_ID": "subnet-env",
            ])
        var config = try ActuatorConfig.fromEnvironment(env)
        config.file = file
        let shop = try config.target("shop")
        #expect(shop.dryRun)
        #expect(shop.drRegion == "us-west-2")
        #expect(shop.dr.subnetId == "subnet-shop", "the target's own value wins")
        #expect(shop.dr.securityGroupIds == ["sg-1"], "defaults' dr object is merged one level deep")
        #expect(shop.dr.recordName == "shop.example.com")
        #expect(shop.dr.instanceType == "t3.large", "the environment fills what the file leaves out")
        #expect(shop.dr.hostedZoneId == "Z1")
        let blog = try config.target("blog")
        #expect(!blog.dryRun)
        #expect(blog.dr.subnetId == "subnet-shared")
        #expect(blog.dr.recordName == nil)
    }

    @Test func fleetWideDryRunAndBadValuesAreRefusedClearly() throws {
        let dry = try ActuatorConfig.fromEnvironment(
            WorkerEnvironment(kind: "actuator", values: ["DRY_RUN": "true", "FLEET_TAG": "prod"]))
        #expect(try dry.target("anything").dryRun)
        #expect(try dry.target("anything").fleetTag == "prod", "replacements keep the fleet tag")
        #expect(throws: ConfigurationError.self) {
            try ActuatorConfig.fromEnvironment(WorkerEnvironment(kind: "actuator", values: ["DRY_RUN": "maybe"]))
        }
        do {
            _ = try TargetConfigFile(data: Data(#"{"targets": {"shop": {"dr": {"subnet": "subnet-1"}}}}"#.utf8))
            Issue.record("an unknown DR key must be refused")
        } catch {
            #expect("\(error)".contains("unknown DR setting 'subnet'"))
        }
        #expect(throws: ConfigurationError.self) {
            try TargetConfigFile(data: Data(#"{"targets": {"shop": {"dry_run": "yes"}}}"#.utf8))
        }
    }

    @Test func clientTokensAreDeterministicShortAndDistinct() throws {
        let a = try ClientToken.forKey("shop/inc-shop-20261122T030000Z/reprovision")
        #expect(a == (try ClientToken.forKey("shop/inc-shop-20261122T030000Z/reprovision")))
        #expect(a != (try ClientToken.forKey("shop/inc-shop-20261122T030000Z/failover")))
        #expect(a.count <= 64 && a.hasPrefix("ar-"))
        #expect(a.allSatisfy { $0.isASCII })
    }

    @Test func errorsAreClassifiedByWhatCanFixThem() {
        func aws(_ kind: AWSError.Kind, _ code: String? = nil) -> AWSError {
            AWSError(
                kind: kind, service: "EC2", operation: "RunInstances", region: "us-east-1", code: code, message: "m")
        }
        func name(_ f: ActuatorWorker.Failure) -> String {
            switch f {
            case .retry: "retry"
            case .failed: "failed"
            case .humanNeeded: "human"
            }
        }
        #expect(name(ActuatorWorker.classify(aws(.accessDenied, "UnauthorizedOperation"))) == "human")
        #expect(name(ActuatorWorker.classify(aws(.throttling, "RequestLimitExceeded"))) == "retry")
        #expect(name(ActuatorWorker.classify(aws(.transport))) == "retry")
        #expect(name(ActuatorWorker.classify(aws(.clientError, "InstanceLimitExceeded"))) == "human")
        #expect(
            name(ActuatorWorker.classify(aws(.clientError, "InsufficientInstanceCapacity"))) == "failed",
            "another region may have capacity")
        #expect(name(ActuatorWorker.classify(ActuatorError.corruptRecord("x"))) == "human")
        #expect(name(ActuatorWorker.classify(CancellationError())) == "retry")
    }

    @Test func aDryRunIsNeverReportedAsDone() {
        let request = ActionRequest(
            idempotencyKey: "shop/inc-1/reprovision", target: "shop", incidentId: "inc-1", step: .reprovision,
            instanceId: "i-1",
            region: "us-east-1", destinationRegion: "us-east-1", elasticIpAllocationId: nil, requestedAt: Date(),
            deadline: Date(), requestedBy: nil)
        let outcome = ActuatorWorker.outcome(
            for: request,
            result: .succeeded(summary: "dry run", newInstance: InstanceRef(id: "i-dry-run", region: "us-east-1")),
            dryRun: true, plannedCalls: ["ec2:RunInstances [us-east-1] ImageId=ami-1"])
        #expect(outcome.status == .failed)
        #expect(outcome.instanceId == nil)
        #expect(
            outcome.reason
                == "dry run, nothing was changed: the step would run to its end. Calls it would make: ec2:RunInstances [us-east-1] ImageId=ami-1"
        )
        let real = ActuatorWorker.outcome(
            for: request, result: .succeeded(summary: "done", newInstance: InstanceRef(id: "i-2", region: "us-east-1")),
            dryRun: false, plannedCalls: [])
        #expect(
            real
                == ActionOutcome(
                    for: request, status: .succeeded, newInstance: InstanceRef(id: "i-2", region: "us-east-1")))
    }

    @Test func plannedCallsReadLikeTheAPI() {
        let call = PlannedCall(
            "ec2", "StopInstances", region: "us-east-1", [("InstanceId", "i-1")], if: "the site is still down")
        #expect(call.description == "if the site is still down: ec2:StopInstances [us-east-1] InstanceId=i-1")
    }

    @Test func stepRecordsRoundTripAndRefuseNewerSchemas() throws {
        let request = ActionRequest(
            idempotencyKey: "shop/inc-1/restart", target: "shop", incidentId: "inc-1", step: .restart,
            instanceId: "i-1",
            region: "us-east-1", destinationRegion: "us-east-1", elasticIpAllocationId: "eipalloc-1",
            requestedAt: Date(timeIntervalSince1970: 1_800_000_000),
            deadline: Date(timeIntervalSince1970: 1_800_000_600),
            requestedBy: nil)
        var record = StepRecord(
            request: request, owner: "actuator@a", fencingToken: 7, dryRun: false,
            now: Date(timeIntervalSince1970: 1_800_000_001))
        record.done = [.inspect, .reboot]
        record.resources.allocationId = "eipalloc-1"
        let text = try record.encoded()
        #expect(text.contains(#""done":["inspect","reboot"]"#))
        #expect(text.contains(#""fencing_token":7"#))
        #expect(text.contains(#""status":"in_progress""#))
        #expect(try StepRecord.decode(text) == record)
        let newer = text.replacingOccurrences(of: #""schema_version":1"#, with: #""schema_version":2"#)
        #expect(throws: ActuatorError.self) { try StepRecord.decode(newer) }
    }
}
