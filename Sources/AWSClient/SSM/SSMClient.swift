import Foundation

/// Typed SSM Run Command calls on the core ``AWSClient`` (JSON 1.1, API 2014-11-06).
///
/// One instance per region. The failures callers act on are ``SSMError``s (no such invocation, no such
/// command, an instance SSM cannot reach); everything else is an ``AWSError`` (or `CancellationError`).
public struct SSMClient: Sendable {
    public let aws: AWSClient

    public init(_ aws: AWSClient) { self.aws = aws }

    public var region: String { aws.region }

    public func withRegion(_ region: String) -> SSMClient { SSMClient(aws.withRegion(region)) }

    /// SendCommand: runs `documentName` on the instances. Returns the command, whose `commandId` names
    /// it in ``getCommandInvocation(commandId:instanceId:pluginName:)``.
    public func sendCommand(_ input: SendCommandInput) async throws -> SSMCommand {
        guard !input.instanceIds.isEmpty else {
            throw aws.invalidRequest(.ssm, "SendCommand", "no instance ids")
        }
        guard input.instanceIds.count <= 50 else {
            throw aws.invalidRequest(
                .ssm, "SendCommand", "\(input.instanceIds.count) instance ids; SSM takes at most 50 per command")
        }
        let request = SSMWire.SendCommand(
            DocumentName: input.documentName, DocumentVersion: input.documentVersion, InstanceIds: input.instanceIds,
            Parameters: input.parameters.isEmpty ? nil : input.parameters, TimeoutSeconds: input.timeoutSeconds,
            Comment: input.comment)
        let output: SSMWire.SendCommandOutput
        do {
            output = try await aws.json(
                .ssm, operation: "SendCommand", input: request, output: SSMWire.SendCommandOutput.self)
        } catch let error as AWSError where error.code == "InvalidInstanceId" {
            throw SSMError.invalidInstanceId(instanceIds: input.instanceIds, message: error.message)
        }
        let command = output.Command
        return SSMCommand(
            commandId: command.CommandId, documentName: command.DocumentName ?? input.documentName,
            instanceIds: command.InstanceIds ?? input.instanceIds,
            status: command.Status.map(CommandStatus.init) ?? .pending,
            comment: command.Comment, requestedAt: command.RequestedDateTime?.date)
    }

    /// GetCommandInvocation: how the command went on one instance.
    ///
    /// Right after SendCommand, AWS may briefly answer `InvocationDoesNotExist` before the invocation is
    /// registered; ``waitUntilCommandFinished(commandId:instanceId:timeout:interval:)`` treats that as pending.
    public func getCommandInvocation(commandId: String, instanceId: String, pluginName: String? = nil) async throws
        -> CommandInvocation
    {
        let request = SSMWire.GetCommandInvocation(CommandId: commandId, InstanceId: instanceId, PluginName: pluginName)
        let output: SSMWire.Invocation
        do {
            output = try await aws.json(
                .ssm, operation: "GetCommandInvocation", input: request, output: SSMWire.Invocation.self)
        } catch let error as AWSError {
            switch error.code {
            case "InvocationDoesNotExist":
                throw SSMError.invocationDoesNotExist(commandId: commandId, instanceId: instanceId)
            case "InvalidCommandId": throw SSMError.invalidCommandId(commandId)
            case "InvalidInstanceId":
                throw SSMError.invalidInstanceId(instanceIds: [instanceId], message: error.message)
            default: throw error
            }
        }
        return CommandInvocation(
            commandId: output.CommandId ?? commandId, instanceId: output.InstanceId ?? instanceId,
            status: CommandStatus(rawValue: output.Status ?? "Pending"), statusDetails: output.StatusDetails,
            responseCode: output.ResponseCode, standardOutput: output.StandardOutputContent ?? "",
            standardError: output.StandardErrorContent ?? "", executionStart: output.ExecutionStartDateTime?.date,
            executionEnd: output.ExecutionEndDateTime?.date)
    }
}

extension SSMClient {
    /// CreateDocument: a Command document from its JSON `content` (e.g. compose/ssm/<name>.json).
    /// Returns the document's status (`Creating`, `Active`, …).
    @discardableResult
    public func createDocument(name: String, content: String, documentType: String = "Command") async throws -> String {
        let output = try await aws.json(
            .ssm, operation: "CreateDocument",
            input: SSMWire.CreateDocument(
                Content: content, Name: name, DocumentType: documentType, DocumentFormat: "JSON"),
            output: SSMWire.CreateDocumentOutput.self)
        return output.DocumentDescription?.Status ?? "Creating"
    }

    public func deleteDocument(name: String) async throws {
        _ = try await aws.json(
            .ssm, operation: "DeleteDocument", input: SSMWire.DeleteDocument(Name: name),
            output: SSMWire.Empty.self)
    }
}

/// An SSM call was refused for a reason callers act on. Other failures are ``AWSError``s.
public enum SSMError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No invocation of this command on this instance: a wrong id, an instance the command did not
    /// target, or (for a moment after SendCommand) one not registered yet.
    case invocationDoesNotExist(commandId: String, instanceId: String)
    /// No such command in this region (a wrong id, or one sent from another region's client).
    case invalidCommandId(String)
    /// SSM cannot run commands on an instance: it does not exist, is not running, or its SSM agent is
    /// not registered (no agent, no instance profile, no route to SSM). Recovery must use another way.
    case invalidInstanceId(instanceIds: [String], message: String)

    public var description: String {
        switch self {
        case .invalidCommandId(let commandId):
            "SSM has no command \(commandId) in this region. Check the id and the client's region."
        case .invalidInstanceId(let instanceIds, let message):
            "SSM cannot run commands on \(instanceIds.joined(separator: ", ")): \(message). The instance is missing, not "
                + "running, or its SSM agent is not registered; use another recovery step."
        case .invocationDoesNotExist(let commandId, let instanceId):
            "SSM has no invocation of command \(commandId) on instance \(instanceId). Check both ids; right after "
                + "SendCommand, poll again: the invocation may not be registered yet."
        }
    }
}

/// `SendCommand`.
public struct SendCommandInput: Sendable, Equatable {
    /// e.g. `AWS-RunShellScript`.
    public var documentName: String
    public var documentVersion: String?
    public var instanceIds: [String]
    /// Document parameters, e.g. `["commands": ["systemctl restart nginx"], "executionTimeout": ["120"]]`.
    public var parameters: [String: [String]]
    /// Delivery timeout (30…2 592 000 s): if the command has not started by then, it does not run. How
    /// long it may run is the document's `executionTimeout` parameter.
    public var timeoutSeconds: Int?
    /// Shown in the console and returned in invocations (at most 100 characters).
    public var comment: String?

    public init(
        documentName: String, instanceIds: [String], parameters: [String: [String]] = [:], timeoutSeconds: Int? = nil,
        comment: String? = nil, documentVersion: String? = nil
    ) {
        self.documentName = documentName
        self.instanceIds = instanceIds
        self.parameters = parameters
        self.timeoutSeconds = timeoutSeconds
        self.comment = comment
        self.documentVersion = documentVersion
    }

    /// `AWS-RunShellScript` with these commands, and `executionTimeout` when given.
    public static func shellScript(
        _ commands: [String], instanceIds: [String], executionTimeout: Int? = nil, timeoutSeconds: Int? = nil,
        comment: String? = nil
    ) -> SendCommandInput {
        var parameters = ["commands": commands]
        if let executionTimeout { parameters["executionTimeout"] = [String(executionTimeout)] }
        return SendCommandInput(
            documentName: "AWS-RunShellScript", instanceIds: instanceIds, parameters: parameters,
            timeoutSeconds: timeoutSeconds, comment: comment)
    }
}

/// A command or invocation status. A struct rather than an enum so a status AWS adds later still parses.
public struct CommandStatus: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let pending = CommandStatus(rawValue: "Pending")
    public static let inProgress = CommandStatus(rawValue: "InProgress")
    public static let delayed = CommandStatus(rawValue: "Delayed")
    public static let success = CommandStatus(rawValue: "Success")
    public static let cancelled = CommandStatus(rawValue: "Cancelled")
    public static let cancelling = CommandStatus(rawValue: "Cancelling")
    public static let timedOut = CommandStatus(rawValue: "TimedOut")
    public static let failed = CommandStatus(rawValue: "Failed")

    /// Done, one way or the other: nothing will change any more.
    public var isTerminal: Bool { [.success, .cancelled, .timedOut, .failed].contains(self) }
    public var isSuccess: Bool { self == .success }
}

/// What SendCommand returned.
public struct SSMCommand: Sendable, Equatable {
    public var commandId: String
    public var documentName: String
    public var instanceIds: [String]
    public var status: CommandStatus
    public var comment: String?
    public var requestedAt: Date?

    public init(
        commandId: String, documentName: String, instanceIds: [String], status: CommandStatus, comment: String? = nil,
        requestedAt: Date? = nil
    ) {
        (self.commandId, self.documentName, self.instanceIds, self.status) = (
            commandId, documentName, instanceIds, status
        )
        (self.comment, self.requestedAt) = (comment, requestedAt)
    }
}

/// One instance's run of a command (GetCommandInvocation).
public struct CommandInvocation: Sendable, Equatable {
    public var commandId: String
    public var instanceId: String
    public var status: CommandStatus
    public var statusDetails: String?
    /// The script's exit code; -1 (or nil) while it has not finished.
    public var responseCode: Int?
    /// The first 24 000 characters of standard output (AWS's limit).
    public var standardOutput: String
    /// The first 8 000 characters of standard error.
    public var standardError: String
    public var executionStart: Date?
    public var executionEnd: Date?

    public init(
        commandId: String, instanceId: String, status: CommandStatus, statusDetails: String? = nil,
        responseCode: Int? = nil,
        standardOutput: String = "", standardError: String = "", executionStart: Date? = nil, executionEnd: Date? = nil
    ) {
        (self.commandId, self.instanceId, self.status, self.statusDetails) = (
            commandId, instanceId, status, statusDetails
        )
        (self.responseCode, self.standardOutput, self.standardError) = (responseCode, standardOutput, standardError)
        (self.executionStart, self.executionEnd) = (executionStart, executionEnd)
    }
}

/// SSM's JSON shapes, member names as AWS spells them.
enum SSMWire {
    struct SendCommand: Encodable {
        var DocumentName: String
        var DocumentVersion: String?
        var InstanceIds: [String]
        var Parameters: [String: [String]]?
        var TimeoutSeconds: Int?
        var Comment: String?
    }

    struct SendCommandOutput: Decodable {
        struct Command: Decodable {
            var CommandId: String
            var DocumentName: String?
            var InstanceIds: [String]?
            var Status: String?
            var Comment: String?
            var RequestedDateTime: JSONTimestamp?
        }
        var Command: Command
    }

    struct CreateDocument: Encodable {
        var Content: String
        var Name: String
        var DocumentType: String
        var DocumentFormat: String
    }

    struct CreateDocumentOutput: Decodable {
        struct Description: Decodable { var Status: String? }
        var DocumentDescription: Description?
    }

    struct DeleteDocument: Encodable { var Name: String }

    struct Empty: Decodable {}

    struct GetCommandInvocation: Encodable {
        var CommandId: String
        var InstanceId: String
        var PluginName: String?
    }

    struct Invocation: Decodable {
        var CommandId: String?
        var InstanceId: String?
        var Status: String?
        var StatusDetails: String?
        var ResponseCode: Int?
        var StandardOutputContent: String?
        var StandardErrorContent: String?
        var ExecutionStartDateTime: JSONTimestamp?
        var ExecutionEndDateTime: JSONTimestamp?
    }
}
