import Foundation

/// What one poll of a waiter found.
public enum WaiterStep<Value: Sendable>: Sendable {
    /// The awaited state was reached.
    case done(Value)
    /// Not yet; `state` describes what was seen (for logs and the timeout error).
    case pending(state: String)
    /// A state from which the awaited one cannot be reached (e.g. terminated while waiting for running).
    case failed(state: String)
}

/// A waiter gave up.
public struct WaiterError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case timedOut
        case failureState
    }

    public var reason: Reason
    /// What was awaited, e.g. "instances i-1, i-2 running".
    public var what: String
    /// The last state seen.
    public var lastState: String
    public var polls: Int

    public var description: String {
        switch reason {
        case .timedOut:
            "gave up waiting for \(what) after \(polls) polls; last state: \(lastState)"
        case .failureState:
            "stopped waiting for \(what): reached \(lastState), from which it cannot get there"
        }
    }
}

/// Polls `check` every `interval` until it reports done or failed, or `timeout` has passed.
///
/// Time and sleep come from `dependencies`; the real sleep ends at once when the task is cancelled, and
/// cancellation is also checked before every poll, so a cancelled waiter stops promptly with
/// `CancellationError`. Errors thrown by `check` end the wait (AWS calls inside it are already retried).
public func waitUntil<Value: Sendable>(
    _ what: String, timeout: Duration, interval: Duration, dependencies: AWSClientDependencies = .live,
    check: () async throws -> WaiterStep<Value>
) async throws -> Value {
    let deadline = dependencies.now().addingTimeInterval(AWSClient.seconds(timeout))
    var polls = 0
    while true {
        try Task.checkCancellation()
        if polls > 0 { try await AWSWaitGuard.beforePoll?(what) }
        polls += 1
        switch try await check() {
        case .done(let value):
            return value
        case .failed(let state):
            throw WaiterError(reason: .failureState, what: what, lastState: state, polls: polls)
        case .pending(let state):
            let now = dependencies.now()
            guard now.addingTimeInterval(AWSClient.seconds(interval)) <= deadline else {
                throw WaiterError(reason: .timedOut, what: what, lastState: state, polls: polls)
            }
            try await dependencies.sleep(interval)
        }
    }
}
