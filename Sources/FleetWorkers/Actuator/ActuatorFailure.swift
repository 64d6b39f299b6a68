import AMQPTransport
import AWSClient
import RecoveryCore
import RedisStore

extension ActuatorWorker {
    /// AWS error codes that no later step can fix: a person must raise a limit or grant something.
    static let humanCodes: Set<String> = [
        "InstanceLimitExceeded", "VcpuLimitExceeded", "AddressLimitExceeded", "ResourceLimitExceeded",
        "AMIQuotaExceeded", "SnapshotLimitExceeded", "MaxSpotInstanceCountExceeded",
        "InvalidIamInstanceProfile.NotFound",
        "Blocked", "PendingVerification",
    ]

    static func classify(_ error: any Error) -> Failure {
        switch error {
        case let error as AWSError:
            switch error.kind {
            case .accessDenied, .authentication, .credentials:
                return .humanNeeded(
                    "\(error) The actuator's AWS identity cannot do this: grant it, then run the step by hand")
            case .throttling, .serverError, .transport, .invalidResponse:
                return .retry("\(error)")
            case .clientError, .invalidRequest:
                if let code = error.code, humanCodes.contains(code) {
                    return .humanNeeded(
                        "\(error) An account limit or setting blocks the step: fix it, then run the step by hand")
                }
                return .failed("\(error)")
            }
        case let error as WaiterError:
            return .failed("\(error)")
        case is RedisError, is AMQPError, is CancellationError:
            return .retry("\(error)")
        case let error as ActuatorError:
            if case .corruptRecord = error { return .humanNeeded("\(error)") }
            return .retry("\(error)")
        default:
            return .failed("\(error)")
        }
    }

}
