import Foundation

/// Runs a long synchronous computation (a backtest, a replay of NAB series, the random ladders) on one
/// thread of its own instead of Swift's cooperative pool, which has one thread per core: on the 2-core CI
/// machine such tests held both threads for 20–60 s, and every time-sensitive test running beside them
/// (leases, BLPOP deadlines, dead-letter waits) starved and failed. GCD's global queue is no way out on
/// Linux: its threads are the pool's (measured with gdb during a stall). Jobs run one at a time, so they
/// take at most one core. Not at a lower priority: `nice` 19 made two 3 s-bound tests fail in CI twice,
/// most likely by priority inversion (a thread that allocates this much, preempted while it holds a
/// malloc arena's lock, stalls every thread sharing that arena until it runs again). Assertions stay in
/// the test's own task, on the returned value.
func offThePool<T>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let box = OffThePoolBox<T>()
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
        LowPriorityThread.shared.submit {
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

/// The result, handed from the thread to the waiting task (written once, read after the resume).
private final class OffThePoolBox<T>: @unchecked Sendable {
    var value: T?
}

/// One thread, started on first use, that runs submitted jobs in order.
private final class LowPriorityThread: @unchecked Sendable {
    static let shared = LowPriorityThread()

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []

    private init() {
        let thread = Thread { [self] in run() }
        thread.stackSize = 64 << 20  // debug builds recurse deeply through the Codable coders
        thread.start()
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
