/// How the AWS calls made inside one scope may be retried. A caller that changes the world under a lease
/// (the actuator, docs/actuator.md "Fencing and retries") sets it around each mutation with
/// `AWSCallGuard.$current.withValue(…)`; every client call in that task then follows it.
///
/// Two rules, both about a retry that lands after the caller lost the right to act:
/// - `beforeRetry` runs right before every re-send (after the backoff wait). It throws when the caller's
///   lease is gone, and the call ends with that error: nothing more is sent.
/// - A call that is not `idempotent` (AllocateAddress, CreateVolume, SendCommand …) is re-sent only when
///   AWS certainly did not act on it: it was throttled, or no connection was made. After an answer that
///   may hide a done call (HTTP 5xx, a timeout, a broken connection) the error goes to the caller, who
///   looks before sending it again.
public struct AWSCallGuard: Sendable {
    public var idempotent: Bool
    public var beforeRetry: @Sendable (_ operation: String) async throws -> Void

    public init(idempotent: Bool, beforeRetry: @escaping @Sendable (_ operation: String) async throws -> Void) {
        self.idempotent = idempotent
        self.beforeRetry = beforeRetry
    }

    /// The guard of the calls made by the current task; nil: retry as the client's `RetryPolicy` says.
    @TaskLocal public static var current: AWSCallGuard?
}

extension AWSError.Kind {
    /// Whether AWS may have carried out a request that ended with this kind of error: the answer was a
    /// 5xx, broken, or never came. (Throttling and client errors mean it was refused.)
    public var mayHaveActed: Bool { self == .serverError || self == .transport || self == .invalidResponse }
}

/// Runs before every poll of a waiter (`waitUntil`) in its scope, and before each round of a caller's
/// own polling loop that opts in. A caller that waits for minutes sets it so the wait ends when it must:
/// the actuator stops a step waiting for an image or an instance when an operator aborts it or its lease
/// is lost (docs/actuator.md). Throwing ends the wait with that error.
public enum AWSWaitGuard {
    @TaskLocal public static var beforePoll: (@Sendable (_ what: String) async throws -> Void)?
}
