import AWSClient
import FleetTestSupport
import Foundation
import Testing

/// What only the memory AWS drivers do: failure injection and the call log, the refusals moto does not
/// make (an SSM agent that is gone, a document that does not exist), a Route 53 change that stays pending.
@Suite("Memory AWS drivers: faults, log, what moto cannot show")
struct MemoryAWSTests {
    @Test func anInjectedThrottleFailsTheNextCallsOfThatOperationOnly() async throws {
        let aws = MemoryAWS()
        let ec2 = MemoryEC2(aws: aws)
        let instance = ec2.addInstance()
        aws.throttle("StopInstances", times: 2)
        for _ in 0..<2 {
            await #expect(throws: AWSError.self) {
                _ = try await ec2.stopInstances([instance.instanceId], force: false, hibernate: nil)
            }
        }
        #expect(ec2.instance(instance.instanceId)?.state == .running, "a throttled call changes nothing")
        try await ec2.rebootInstances([instance.instanceId])
        _ = try await ec2.stopInstances([instance.instanceId], force: false, hibernate: nil)
        #expect(ec2.instance(instance.instanceId)?.state == .stopped, "the third call goes through")
        let stops = aws.calls("StopInstances")
        #expect(stops.map(\.error) == ["RequestLimitExceeded", "RequestLimitExceeded", nil])
        #expect(aws.mutations.map(\.operation) == ["RebootInstances", "StopInstances"])
        do {
            aws.throttle("RunInstances")
            _ = try await ec2.runInstance(RunInstancesInput(imageId: ec2.addImage().imageId, instanceType: "t3.micro"))
            Issue.record("the throttle must fire")
        } catch let error as AWSError {
            #expect(
                error.kind == .throttling && error.isTransient && error.operation == "RunInstances"
                    && error.region == "us-east-1")
        }
    }

    @Test func anOutageFailsEveryCallOfOneRegionAndNoOther() async throws {
        let aws = MemoryAWS()
        let home = MemoryEC2(aws: aws)
        let dr = home.withRegion("us-west-2")
        let instance = home.addInstance()
        aws.outage(region: "us-east-1")
        do {
            _ = try await home.describeInstances(instanceIds: [instance.instanceId], filters: [])
            Issue.record("the home region must not answer")
        } catch let error as AWSError {
            #expect(error.kind == .transport)
        }
        #expect(try await dr.describeInstances(instanceIds: [], filters: []).isEmpty)
    }

    @Test func ssmRefusesAnInstanceWithoutAgentAndAnUnknownDocument() async throws {
        let ssm = MemorySSM()
        ssm.install(["AutoRecovery-restart-services"])
        ssm.removeAgent("i-noagent")
        let refusal = "Instances [i-noagent] not in a valid state for account \(MemoryAWS.accountId)"
        await #expect(throws: SSMError.invalidInstanceId(instanceIds: ["i-noagent"], message: refusal)) {
            _ = try await ssm.sendCommand(
                SendCommandInput(documentName: "AutoRecovery-restart-services", instanceIds: ["i-noagent"]))
        }
        do {
            _ = try await ssm.sendCommand(SendCommandInput(documentName: "AutoRecovery-missing", instanceIds: ["i-1"]))
            Issue.record("an unknown document must be refused")
        } catch let error as AWSError {
            #expect(error.code == "InvalidDocument")
        }
        ssm.respond(
            to: "AutoRecovery-restart-services",
            with: .init(status: .failed, exitCode: 3, output: "nginx failed", polls: 2))
        let command = try await ssm.sendCommand(
            SendCommandInput(documentName: "AutoRecovery-restart-services", instanceIds: ["i-1"]))
        let first = try await ssm.getCommandInvocation(commandId: command.commandId, instanceId: "i-1", pluginName: nil)
        #expect(first.status == .inProgress)
        let done = try await ssm.waitUntilCommandFinished(
            commandId: command.commandId, instanceId: "i-1", interval: .milliseconds(10))
        #expect(done.status == .failed && done.responseCode == 3 && done.standardOutput == "nginx failed")
        #expect(ssm.sent.map(\.documentName) == ["AutoRecovery-restart-services"])
    }

    @Test func aRoute53ChangeStaysPendingForItsPollsAndRefusesANameOutsideTheZone() async throws {
        let route53 = MemoryRoute53(pendingPolls: 2)
        let zone = route53.createHostedZone(name: "example.com")
        let change = try await route53.upsertARecord(
            hostedZoneId: zone, name: "WWW.example.com", addresses: ["192.0.2.1"], ttl: 30, comment: nil)
        #expect(change.status == .pending)
        #expect(try await route53.getChange(change.id).status == .pending)
        #expect(try await route53.getChange(change.id).status == .pending)
        #expect(try await route53.getChange(change.id).status == .insync)
        #expect(
            route53.record(zone: zone, name: "www.example.com")?.values == ["192.0.2.1"], "names are stored lowercase")
        do {
            _ = try await route53.upsertARecord(
                hostedZoneId: zone, name: "www.other.org", addresses: ["192.0.2.1"], ttl: 30, comment: nil)
            Issue.record("a name outside the zone must be refused")
        } catch let error as AWSError {
            #expect(error.code == "InvalidChangeBatch")
        }
    }

    @Test func aLockCanBeEndedByTheTestAndItsFencingTokenStays() async throws {
        let locks = MemoryLockStore()
        let lease = try #require(try await locks.acquire(name: "web", ttl: .seconds(60)))
        await locks.expire("web")
        #expect(try await !locks.isHeld(lease))
        let next = try #require(try await locks.acquire(name: "web", ttl: .seconds(60)))
        #expect(next.fencingToken == lease.fencingToken + 1)
        #expect(await locks.currentFencingToken(name: "web") == next.fencingToken)
    }
}
