import AWSClient
import FleetRuntime
import RedisStore

// Which failures of the transports are transient (`TransientFailure`, FleetRuntime): `MessageWorker`
// retries those in place with backoff instead of spending the queue's delivery limit on them.

extension RedisError: TransientFailure {
    /// Unreachable, timed out or closed, or a server that is loading, busy, or (during a Sentinel
    /// fail-over) a replica that refuses writes. Not a command Redis refuses for what it says.
    public var isTransient: Bool {
        switch kind {
        case .connection, .timeout, .closed, .notReplicated: return true
        case .server:
            // Whole error codes (a space after): BUSYKEY and BUSYGROUP are about the command, not the server.
            return [
                "LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "OOM", "MISCONF",
            ]
            .contains { message == $0 || message.hasPrefix($0 + " ") }
        case .invalidURL, .protocolViolation, .invalidArgument: return false
        }
    }
}

/// `AWSError.isTransient`: throttled, a 5xx, or no response; not a refusal (access denied, a bad request,
/// no credentials).
extension AWSError: TransientFailure {}

extension DecisionError: TransientFailure {
    /// Contention (a target or the brake changed 20 times while one event was decided): the next attempt
    /// decides on quieter state. Anything else the decision worker throws is about the message or its state.
    public var isTransient: Bool { isContention }
}
