import AMQPTransport
import Foundation

/// An error that says the world is briefly unwell (Redis or the broker unreachable, AWS throttling or
/// failing, a compare-and-set that kept losing), not that the message is bad. `MessageWorker` retries
/// such a message in place, with backoff, instead of returning it to the queue: a few seconds of Redis
/// trouble must not use up the queue's poison-message limit (`x-delivery-limit`) and dead-letter live
/// messages. The transports' error types conform in FleetWorkers (TransientErrors.swift); AMQP's here.
public protocol TransientFailure: Error {
    var isTransient: Bool { get }
}

/// How long `MessageWorker` keeps retrying a message whose handler failed transiently before it returns
/// the message to the queue (which counts one delivery): by default about 10 minutes, from 0.2 s doubling
/// to 15 s between attempts, with ±20% jitter so replicas do not retry in step.
public struct TransientRetryPolicy: Sendable {
    public var maxAttempts: Int
    public var initialDelay: Duration
    public var maxDelay: Duration

    public init(maxAttempts: Int = 45, initialDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(15)) {
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
    }

    /// The wait before retry number `attempt` (1-based).
    public func delay(beforeAttempt attempt: Int) -> Duration {
        let base = min(maxDelay.timeInterval, initialDelay.timeInterval * pow(2, Double(min(attempt - 1, 30))))
        return .milliseconds(Int64(base * Double.random(in: 0.8...1.2) * 1000))
    }

    /// Whether `error` (or anything it wraps as `TransientFailure`) is transient.
    public static func isTransient(_ error: any Error) -> Bool {
        (error as? any TransientFailure)?.isTransient ?? false
    }
}

extension AMQPError: TransientFailure {
    /// A broker that is unreachable, closing, nacking or slow to confirm; not a refusal of this message
    /// (no route, wrong credentials, a bad URL) and not a publisher this process shut down, which no
    /// retry fixes.
    public var isTransient: Bool {
        switch self {
        case .connectionFailed, .library, .publishNacked, .publishTimedOut: true
        case .brokerClosed(let code, _, _): ![403, 404, 406].contains(code)
        case .invalidURL, .loginRefused, .unroutable, .shutdown, .invalidMessage: false
        }
    }
}

extension AMQPError {
    /// The broker (or the encoder before it) refuses this very message, whatever the connection: an
    /// over-long short string, no route. Sending it again can never succeed.
    public var refusesTheMessageItself: Bool {
        switch self {
        case .invalidMessage, .unroutable: true
        default: false
        }
    }
}

extension Duration {
    /// Seconds as a `TimeInterval`, for date arithmetic and backoff.
    public var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
