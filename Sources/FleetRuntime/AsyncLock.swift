import Synchronization

/// A first-come, first-served lock for async code: `lock` suspends (never blocks a thread) until the
/// holder calls `unlock`. For short critical sections; waiting for it cannot be cancelled.
public final class AsyncLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func lock() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state in
                if state.locked {
                    state.waiters.append(waiter)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { waiter.resume() }
        }
    }

    /// Hands the lock to the longest waiter, or frees it.
    public func unlock() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            precondition(state.locked, "AsyncLock unlocked while free")
            guard !state.waiters.isEmpty else {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
