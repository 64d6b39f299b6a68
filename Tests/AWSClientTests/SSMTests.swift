import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

/// SSM SendCommand and GetCommandInvocation: the JSON 1.1 requests, the typed statuses and the
/// InvocationDoesNotExist error, against a scripted fake transport.
@Suite("SSM encoding")
struct SSMEncodingTests {
    static let sendCommandAnswer = #"""
        {"Command":{"CommandId":"c-1","DocumentName":"AWS-RunShellScript","InstanceIds":["i-1"],"Status":"Pending",
         "Comment":"recover web","RequestedDateTime":1767323045.5}}
        """#

    @Test("SendCommand sends document, instances, parameters, timeout and comment")
    func sendCommand() async throws {
        let transport = ScriptedTransport { _, _ in .init(200, Self.sendCommandAnswer) }
        let ssm = SSMClient(fakeAWS(transport))
        let command = try await ssm.sendCommand(
            .shellScript(
                ["systemctl restart nginx", "curl -fsS localhost/healthz"], instanceIds: ["i-1"],
                executionTimeout: 120, timeoutSeconds: 60, comment: "recover web"))
        #expect(command.commandId == "c-1")
        #expect(command.status == .pending)
        #expect(command.requestedAt == Date(timeIntervalSince1970: 1_767_323_045.5))
        let request = try #require(transport.requests.first)
        #expect(request.headers.contains { $0.name == "X-Amz-Target" && $0.value == "AmazonSSM.SendCommand" })
        #expect(request.headers.contains { $0.name == "Content-Type" && $0.value == "application/x-amz-json-1.1" })
        let body = try #require(transport.jsonBodies.first)
        #expect(body["DocumentName"] as? String == "AWS-RunShellScript")
        #expect(body["InstanceIds"] as? [String] == ["i-1"])
        #expect(body["TimeoutSeconds"] as? Int == 60)
        #expect(body["Comment"] as? String == "recover web")
        #expect(
            body["Parameters"] as? [String: [String]] == [
                "commands": ["systemctl restart nginx", "curl -fsS localhost/healthz"], "executionTimeout": ["120"],
            ])
        #expect(body["DocumentVersion"] == nil)
    }

    @Test("SendCommand refuses no instances or more than 50, without a request")
    func sendCommandChecks() async throws {
        let transport = ScriptedTransport { _, _ in .init(200, Self.sendCommandAnswer) }
        let ssm = SSMClient(fakeAWS(transport))
        for ids in [[], (0...50).map { "i-\($0)" }] {
            await #expect(throws: AWSError.self) {
                _ = try await ssm.sendCommand(SendCommandInput(documentName: "AWS-RunShellScript", instanceIds: ids))
            }
        }
        #expect(transport.requests.isEmpty)
    }

    @Test("GetCommandInvocation: status, output, exit code; empty dates read as nil")
    func invocation() async throws {
        let transport = ScriptedTransport { _, index in
            index == 0
                ? .init(
                    200,
                    #"{"CommandId":"c-1","InstanceId":"i-1","Status":"InProgress","StatusDetails":"InProgress","ResponseCode":-1,"StandardOutputContent":"","StandardErrorContent":"","ExecutionStartDateTime":"2026-01-02T03:04:05.123Z","ExecutionEndDateTime":""}"#
                )
                : .init(
                    200,
                    #"{"CommandId":"c-1","InstanceId":"i-1","Status":"Failed","StatusDetails":"Failed","ResponseCode":3,"StandardOutputContent":"restarting\n","StandardErrorContent":"nginx: failed ✗\n","ExecutionStartDateTime":"2026-01-02T03:04:05.123Z","ExecutionEndDateTime":"2026-01-02T03:04:09.000Z"}"#
                )
        }
        let ssm = SSMClient(fakeAWS(transport))
        let running = try await ssm.getCommandInvocation(commandId: "c-1", instanceId: "i-1")
        #expect(running.status == .inProgress)
        #expect(!running.status.isTerminal)
        #expect(running.responseCode == -1)
        #expect(running.executionStart == UTCTime.parseISO8601("2026-01-02T03:04:05.123Z"))
        #expect(running.executionEnd == nil)
        let done = try await ssm.getCommandInvocation(commandId: "c-1", instanceId: "i-1")
        #expect(done.status == .failed && done.status.isTerminal && !done.status.isSuccess)
        #expect(done.responseCode == 3)
        #expect(done.standardOutput == "restarting\n")
        #expect(done.standardError == "nginx: failed ✗\n")
        #expect(transport.jsonBodies[0] as NSDictionary == ["CommandId": "c-1", "InstanceId": "i-1"] as NSDictionary)
        #expect(CommandStatus(rawValue: "SomethingNew").isTerminal == false)
    }

    @Test("InvocationDoesNotExist (type in the header or the body) is a typed error, not retried")
    func invocationDoesNotExist() async throws {
        let transport = ScriptedTransport { _, index in
            index == 0
                ? .init(
                    400, #"{"message":"An error occurred (InvocationDoesNotExist)"}"#,
                    headers: [("x-amzn-ErrorType", "InvocationDoesNotExist")])
                : .init(400, #"{"__type":"com.amazonaws.ssm#InvocationDoesNotExist"}"#)
        }
        let ssm = SSMClient(fakeAWS(transport))
        for _ in 0..<2 {
            do {
                _ = try await ssm.getCommandInvocation(commandId: "c-9", instanceId: "i-9")
                Issue.record("expected invocationDoesNotExist")
            } catch let error as SSMError {
                #expect(error == .invocationDoesNotExist(commandId: "c-9", instanceId: "i-9"))
                #expect(error.description.contains("c-9") && error.description.contains("i-9"))
            }
        }
        #expect(transport.requests.count == 2)
    }

    @Test("InvalidCommandId and InvalidInstanceId are typed errors too")
    func otherTypedErrors() async throws {
        let transport = ScriptedTransport { request, _ in
            let target = request.headers.first { $0.name == "X-Amz-Target" }?.value ?? ""
            return target.hasSuffix("SendCommand")
                ? .init(
                    400,
                    #"{"__type":"InvalidInstanceId","message":"Instances [[i-1]] not in a valid state for account 1"}"#)
                : .init(400, #"{"__type":"InvalidCommandId","message":"Invalid command id."}"#)
        }
        let ssm = SSMClient(fakeAWS(transport))
        await #expect(throws: SSMError.invalidCommandId("c-x")) {
            _ = try await ssm.getCommandInvocation(commandId: "c-x", instanceId: "i-1")
        }
        do {
            _ = try await ssm.sendCommand(.shellScript(["true"], instanceIds: ["i-1"]))
            Issue.record("expected invalidInstanceId")
        } catch SSMError.invalidInstanceId(let ids, let message) {
            #expect(ids == ["i-1"])
            #expect(message.contains("not in a valid state"))
        }
    }

    @Test("the waiter treats a not-yet-registered invocation as pending and returns the final one")
    func waiter() async throws {
        let answers: [ScriptedTransport.Answer] = [
            .init(400, "{}", headers: [("x-amzn-ErrorType", "InvocationDoesNotExist")]),
            .init(200, #"{"Status":"Pending","ResponseCode":-1}"#),
            .init(200, #"{"Status":"InProgress","ResponseCode":-1}"#),
            .init(200, #"{"Status":"Success","ResponseCode":0,"StandardOutputContent":"ok"}"#),
        ]
        let transport = ScriptedTransport { _, index in answers[min(index, answers.count - 1)] }
        let recorder = SleepRecorder()
        let aws = AWSClient(
            region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: transport,
            environment: ["AWS_ENDPOINT_URL": "http://fake.local"], dependencies: recorder.dependencies)
        let result = try await SSMClient(aws).waitUntilCommandFinished(
            commandId: "c-1", instanceId: "i-1", interval: .seconds(2))
        #expect(result.status == .success)
        #expect(result.standardOutput == "ok")
        #expect(result.commandId == "c-1")
        #expect(recorder.delays == [.seconds(2), .seconds(2), .seconds(2)])

        let never = ScriptedTransport { _, _ in .init(200, #"{"Status":"InProgress"}"#) }
        let bounded = AWSClient(
            region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: never,
            environment: ["AWS_ENDPOINT_URL": "http://fake.local"], dependencies: SleepRecorder().dependencies)
        do {
            _ = try await SSMClient(bounded).waitUntilCommandFinished(
                commandId: "c-1", instanceId: "i-1", timeout: .seconds(30), interval: .seconds(10))
            Issue.record("expected a timeout")
        } catch let error as WaiterError {
            #expect(error.reason == .timedOut)
            #expect(error.lastState == "InProgress")
            #expect(never.requests.count == 4)  // at 0, 10, 20 and 30 s
        }
    }
}

/// SSM Run Command against moto.
@Suite("SSM against moto", .enabled(if: TestEnvironment.motoEndpoint != nil))
struct SSMIntegrationTests {
    @Test("SendCommand, then GetCommandInvocation: success on a targeted instance, InvocationDoesNotExist elsewhere")
    func runCommand() async throws {
        let ssm = SSMClient(motoAWS(region: "us-west-2"))
        let instance = "i-0" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(16))
        let command = try await ssm.sendCommand(
            .shellScript(
                ["systemctl restart nginx"], instanceIds: [instance], executionTimeout: 120, timeoutSeconds: 60,
                comment: "recover \(instance)"))
        #expect(!command.commandId.isEmpty)
        #expect(command.documentName == "AWS-RunShellScript")
        #expect(command.instanceIds.contains(instance))
        #expect(command.comment == "recover \(instance)")

        let invocation = try await ssm.getCommandInvocation(commandId: command.commandId, instanceId: instance)
        #expect(invocation.commandId == command.commandId)
        #expect(invocation.instanceId == instance)
        #expect(invocation.status == .success)  // moto finishes commands at once
        #expect(invocation.responseCode == 0)
        #expect(invocation.executionStart != nil)
        let waited = try await ssm.waitUntilCommandFinished(commandId: command.commandId, instanceId: instance)
        #expect(waited.status.isSuccess)

        do {
            _ = try await ssm.getCommandInvocation(commandId: command.commandId, instanceId: "i-00000000000000000")
            Issue.record("expected invocationDoesNotExist")
        } catch let error as SSMError {
            #expect(error == .invocationDoesNotExist(commandId: command.commandId, instanceId: "i-00000000000000000"))
        }
        // The command lives in us-west-2 only.
        do {
            _ = try await ssm.withRegion("us-east-1").getCommandInvocation(
                commandId: command.commandId, instanceId: instance)
            Issue.record("expected invalidCommandId")
        } catch let error as SSMError {
            #expect(error == .invalidCommandId(command.commandId))
        }
    }
}
