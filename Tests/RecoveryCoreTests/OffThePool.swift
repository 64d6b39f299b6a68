import Foundation

/// Runs a long synchronous computation (a backtest, a replay of NAB series) on a GCD thread instead of
/// Swift's cooperative pool, which has one thread per core: on the 2-core CI machine two such tests held
/// every thread for about 16 s, and the time-sensitive suites running beside them (leases, renewals)
/// starved. Assertions stay in the test's own task, on the returned value.
func offThePool<T>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let box = OffThePoolBox<T>()
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
        DispatchQueue.global().async {
            do {
                box.value = try body()
                done.resume()
            } catch {
                done.resume(throwing: error)
            }
        }
    }
    return box.value!
}

/// The result, handed from the GCD thread to the waiting task (written once, read after the resume).
private final class OffThePoolBox<T>: @unchecked Sendable {
    var value: T?
}
