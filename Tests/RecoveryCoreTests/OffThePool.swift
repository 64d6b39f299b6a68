import Foundation

/// Runs a long synchronous computation (a backtest, a replay of NAB series, the random ladders) on GCD's
/// global queue. On Linux that queue's threads are the cooperative pool's own (gdb during a stall), so
/// this does not keep the work off the pool. That is why RecoveryCoreTests run in a `swift test` process of
/// their own (scripts/test.sh, phase 1; docs/testing.md, "Phases"), where a stall delays only pure tests.
/// Assertions stay in the test's own task, on the returned value.
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
