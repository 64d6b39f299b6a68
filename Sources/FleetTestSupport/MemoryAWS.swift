import AWSClient
import Foundation
import Synchronization

/// One call a memory AWS driver received: the operation as AWS names it, the region, its main parameters,
/// and the error it ended with (an injected fault or the driver's own refusal), if any.
public struct MemoryAWSCall: Sendable, CustomStringConvertible {
    public var service: String
    public var operation: String
    public var region: String
    /// The main parameters, e.g. `i-00000000000000001` or `ami-00000000000000003 t3.micro`.
    public var detail: String
    public var error: String?

    /// Describe*, List*, Get*: everything else changes something.
    public var isMutation: Bool { !["Describe", "List", "Get"].contains { operation.hasPrefix($0) } }
    public var description: String { "\(operation) [\(region)] \(detail)" + (error.map { " !! \($0)" } ?? "") }
}

/// The account behind the in-memory AWS drivers (`MemoryEC2`, `MemoryRoute53`, `MemorySSM`): their state,
/// a log of every call, and failure injection. Drivers made from one `MemoryAWS` share it, so a test sees
/// every call of a step in one list and can fail any of them.
///
/// A fault stands for what the real client throws once its own retries are spent: `throttle` gives the
/// `AWSError` of kind `.throttling`, `outage` the `.transport` error of a region that does not answer,
/// `fail` any error. Each fault fires on the next `times` matching calls, then is gone.
public final class MemoryAWS: Sendable {
    /// The account id of resources the test's account owns (`Owner=self`).
    public static let accountId = "123456789012"

    struct Fault {
        var operation: String?
        var region: String?
        var remaining: Int
        var error: AWSError
    }

    private struct Log {
        var calls: [MemoryAWSCall] = []
        var faults: [Fault] = []
        var nextId: UInt64 = 1
    }

    private let log = Mutex(Log())
    let ec2State = Mutex(EC2World())
    let route53State = Mutex(Route53World())
    let ssmState = Mutex(SSMWorld())
    /// Creation and launch times, snapshot start times.
    public let now: @Sendable () -> Date
    /// The clock and sleep of the waiters (polling this account's state).
    public let dependencies: AWSClientDependencies

    public init(now: @escaping @Sendable () -> Date = Date.init, dependencies: AWSClientDependencies = .live) {
        self.now = now
        self.dependencies = dependencies
    }

    // MARK: Calls

    /// Every call, in order.
    public var calls: [MemoryAWSCall] { log.withLock { $0.calls } }
    /// The calls of one operation (`RunInstances`), failed ones included.
    public func calls(_ operation: String) -> [MemoryAWSCall] { calls.filter { $0.operation == operation } }
    /// The mutating calls that succeeded, in order.
    public var mutations: [MemoryAWSCall] { calls.filter { $0.isMutation && $0.error == nil } }

    // MARK: Faults

    /// The next `times` calls of `operation` (any operation when nil) in `region` (any when nil) throw `error`.
    public func fail(_ operation: String?, region: String? = nil, times: Int = 1, with error: AWSError) {
        log.withLock { $0.faults.append(Fault(operation: operation, region: region, remaining: times, error: error)) }
    }

    /// The next `times` calls of `operation` are throttled (`RequestLimitExceeded`, still after retries).
    public func throttle(_ operation: String, region: String? = nil, times: Int = 1) {
        fail(
            operation, region: region, times: times,
            with: AWSError(
                kind: .throttling, service: "AWS", operation: operation, region: region ?? "-", httpStatus: 400,
                code: "RequestLimitExceeded", message: "Request limit exceeded (injected)", attempts: 4))
    }

    /// The next `times` calls to `region` get no answer (a region outage).
    public func outage(region: String, times: Int = .max) {
        fail(
            nil, region: region, times: times,
            with: AWSError(
                kind: .transport, service: "AWS", operation: "-", region: region,
                message: "connection timed out (injected outage)",
                attempts: 4))
    }

    /// Logs the call, throws an injected fault for it, or runs `body` (logging the error it throws).
    func call<T>(_ service: String, _ operation: String, region: String, _ detail: String, _ body: () throws -> T)
        throws -> T
    {
        let fault: AWSError? = log.withLock { log in
            guard
                let index = log.faults.firstIndex(where: {
                    ($0.operation == nil || $0.operation == operation) && ($0.region == nil || $0.region == region)
                })
            else { return nil }
            log.faults[index].remaining -= 1
            var error = log.faults[index].error
            if log.faults[index].remaining <= 0 { log.faults.remove(at: index) }
            (error.service, error.operation, error.region) = (service, operation, region)
            return error
        }
        var entry = MemoryAWSCall(service: service, operation: operation, region: region, detail: detail)
        defer { log.withLock { $0.calls.append(entry) } }
        if let fault {
            entry.error = fault.code ?? "\(fault.kind)"
            throw fault
        }
        do {
            return try body()
        } catch {
            entry.error = (error as? AWSError)?.code ?? "\(error)"
            throw error
        }
    }

    /// A fresh id: `<prefix>-` and 17 hex digits, unique in this account.
    func newId(_ prefix: String) -> String {
        let n = log.withLock { log in
            defer { log.nextId += 1 }
            return log.nextId
        }
        let hex = String(n, radix: 16)
        return "\(prefix)-" + String(repeating: "0", count: max(0, 17 - hex.count)) + hex
    }

    /// A client error as AWS answers it (HTTP 400 and its code).
    static func refusal(_ service: String, _ operation: String, _ region: String, _ code: String, _ message: String)
        -> AWSError
    {
        AWSError(
            kind: .clientError, service: service, operation: operation, region: region, httpStatus: 400, code: code,
            message: message)
    }
}

/// A memory driver that is one region's view of a `MemoryAWS` account (`MemoryEC2`, `MemorySSM`):
/// `withRegion` gives the same account in another region, and the waiters poll on the account's clock.
public protocol MemoryRegionalDriver: Sendable {
    var aws: MemoryAWS { get }
    var region: String { get }
    init(region: String, aws: MemoryAWS)
}

extension MemoryRegionalDriver {
    public var dependencies: AWSClientDependencies { aws.dependencies }
    public func withRegion(_ region: String) -> Self { Self(region: region, aws: aws) }
}
