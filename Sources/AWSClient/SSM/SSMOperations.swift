import Foundation

/// The SSM Run Command calls of the actuator (restart-services, verify-health, diagnostics, `ssm`
/// repairs), as a port: ``SSMClient`` talks to AWS, `MemorySSM` (FleetTestSupport) is the in-memory
/// driver; both pass one contract test. One value per region. The failures callers act on are
/// ``SSMError``s; everything else is an ``AWSError``.
public protocol SSMOperations: Sendable {
    var region: String { get }
    /// The clock and sleep of ``waitUntilCommandFinished(commandId:instanceId:timeout:interval:)``.
    var dependencies: AWSClientDependencies { get }
    func withRegion(_ region: String) -> Self
    /// Runs the document on the instances; `SSMError.invalidInstanceId` when SSM cannot reach them.
    func sendCommand(_ input: SendCommandInput) async throws -> SSMCommand
    /// How the command went on one instance (`SSMError.invocationDoesNotExist` / `.invalidCommandId`).
    func getCommandInvocation(commandId: String, instanceId: String, pluginName: String?) async throws
        -> CommandInvocation
}

extension SSMClient: SSMOperations {
    public var dependencies: AWSClientDependencies { aws.dependencies }
}

extension SSMOperations {
    /// Polls GetCommandInvocation until the status is terminal (Success, Failed, TimedOut, Cancelled,
    /// …), bounded by `timeout`, on the client's clock. A not-yet-registered invocation counts as
    /// pending. Returns the final invocation whatever its status: check `status.isSuccess`.
    public func waitUntilCommandFinished(
        commandId: String, instanceId: String, timeout: Duration = .seconds(600), interval: Duration = .seconds(5)
    ) async throws -> CommandInvocation {
        try await waitUntil(
            "command \(commandId) finished on \(instanceId) in \(region)", timeout: timeout, interval: interval,
            dependencies: dependencies
        ) { () -> WaiterStep<CommandInvocation> in
            do {
                let invocation = try await getCommandInvocation(
                    commandId: commandId, instanceId: instanceId, pluginName: nil)
                return invocation.status.isTerminal ? .done(invocation) : .pending(state: invocation.status.rawValue)
            } catch SSMError.invocationDoesNotExist {
                return .pending(state: "invocation not registered yet")
            }
        }
    }
}
