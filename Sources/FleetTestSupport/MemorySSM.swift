import AWSClient
import Foundation

/// What the memory SSM holds: installed documents, instances without a reachable agent, how documents
/// end, and the commands sent.
struct SSMWorld: Sendable {
    struct Invocation: Sendable {
        var result: MemorySSM.Outcome
        var pollsLeft: Int
        var started: Date
    }
    struct Command: Sendable {
        var region: String
        var input: SendCommandInput
        var invocations: [String: Invocation]
    }
    var documents: Set<String> = ["AWS-RunShellScript"]
    var unreachable: Set<String> = []
    var outcomes: [String: MemorySSM.Outcome] = [:]
    var commands: [String: Command] = [:]
    var order: [String] = []
}

/// The in-memory `SSMOperations` of one region of a `MemoryAWS` account. A document must be installed
/// (`install`; `AWS-RunShellScript` is) or SendCommand is refused with `InvalidDocument`; every instance
/// has a registered agent unless `removeAgent` took it away (then `SSMError.invalidInstanceId`). A document
/// ends as `respond` says (default: Success, exit 0, no output) after answering InProgress for the
/// outcome's `polls` GetCommandInvocation calls.
public struct MemorySSM: SSMOperations, MemoryRegionalDriver {
    /// How a document's run ends on an instance.
    public struct Outcome: Sendable {
        public var status: CommandStatus
        public var exitCode: Int
        public var output: String
        public var error: String
        /// GetCommandInvocation answers InProgress this many times first.
        public var polls: Int

        public init(
            status: CommandStatus = .success, exitCode: Int = 0, output: String = "", error: String = "", polls: Int = 0
        ) {
            (self.status, self.exitCode, self.output, self.error, self.polls) = (status, exitCode, output, error, polls)
        }
    }

    public let aws: MemoryAWS
    public let region: String

    public init(region: String = "us-east-1", aws: MemoryAWS = MemoryAWS()) { (self.region, self.aws) = (region, aws) }

    // MARK: Set-up and reading back

    /// Makes documents of these names exist (in every region).
    public func install(_ documents: [String]) { aws.ssmState.withLock { $0.documents.formUnion(documents) } }
    /// The instance's agent is gone: SSM cannot run commands on it.
    public func removeAgent(_ instanceId: String) { aws.ssmState.withLock { _ = $0.unreachable.insert(instanceId) } }
    /// How later runs of `document` end.
    public func respond(to document: String, with outcome: Outcome) {
        aws.ssmState.withLock { $0.outcomes[document] = outcome }
    }
    /// Every SendCommand that was accepted, in order.
    public var sent: [SendCommandInput] {
        aws.ssmState.withLock { world in world.order.compactMap { world.commands[$0]?.input } }
    }

    // MARK: SSMOperations

    public func sendCommand(_ input: SendCommandInput) async throws -> SSMCommand {
        let commandId = UUID().uuidString.lowercased()
        return try aws.call(
            "SSM", "SendCommand", region: region, "\(input.documentName) \(input.instanceIds.joined(separator: " "))"
        ) {
            try aws.ssmState.withLock { world in
                guard world.documents.contains(input.documentName) else {
                    throw MemoryAWS.refusal(
                        "SSM", "SendCommand", region, "InvalidDocument", "Document \(input.documentName) does not exist"
                    )
                }
                let unreachable = input.instanceIds.filter(world.unreachable.contains)
                guard unreachable.isEmpty else {
                    let message =
                        "Instances [\(unreachable.joined(separator: ", "))] not in a valid state for account \(MemoryAWS.accountId)"
                    throw SSMError.invalidInstanceId(instanceIds: input.instanceIds, message: message)
                }
                let outcome = world.outcomes[input.documentName] ?? Outcome()
                world.commands[commandId] = SSMWorld.Command(
                    region: region, input: input,
                    invocations: Dictionary(
                        uniqueKeysWithValues: input.instanceIds.map {
                            ($0, SSMWorld.Invocation(result: outcome, pollsLeft: outcome.polls, started: aws.now()))
                        }))
                world.order.append(commandId)
                return SSMCommand(
                    commandId: commandId, documentName: input.documentName, instanceIds: input.instanceIds,
                    status: .pending, comment: input.comment, requestedAt: aws.now())
            }
        }
    }

    public func getCommandInvocation(commandId: String, instanceId: String, pluginName: String?) async throws
        -> CommandInvocation
    {
        try aws.call("SSM", "GetCommandInvocation", region: region, "\(commandId) \(instanceId)") {
            try aws.ssmState.withLock { world in
                guard let command = world.commands[commandId], command.region == region else {
                    throw SSMError.invalidCommandId(commandId)
                }
                guard var invocation = command.invocations[instanceId] else {
                    throw SSMError.invocationDoesNotExist(commandId: commandId, instanceId: instanceId)
                }
                if invocation.pollsLeft > 0 {
                    invocation.pollsLeft -= 1
                    world.commands[commandId]?.invocations[instanceId] = invocation
                    return CommandInvocation(
                        commandId: commandId, instanceId: instanceId, status: .inProgress, responseCode: -1,
                        executionStart: invocation.started)
                }
                let result = invocation.result
                return CommandInvocation(
                    commandId: commandId, instanceId: instanceId, status: result.status,
                    statusDetails: result.status.rawValue,
                    responseCode: result.exitCode, standardOutput: result.output, standardError: result.error,
                    executionStart: invocation.started, executionEnd: aws.now())
            }
        }
    }
}
