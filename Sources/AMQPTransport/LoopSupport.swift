import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A self-pipe that lets other threads wake an event loop blocked in poll(2).
///
/// The loop must look at its inputs after every `wait`, and a caller must hand its input over before it
/// calls `signal`. Then a byte already in the pipe stands for every signal until the loop drains it:
/// under load hundreds of publishes or acks reach the loop between two of its turns, and only the first
/// of them writes.
final class Wakeup: Sendable {
    private let readFD: Int32
    private let writeFD: Int32
    /// A byte is in the pipe (or about to be). Cleared only after the pipe is read empty, so a signal that
    /// finds it set comes before the clearing, and its input before the loop's next look.
    private let signalled = Atomic<Bool>(false)

    init() {
        var fds: [Int32] = [-1, -1]
        let rc = pipe(&fds)
        precondition(rc == 0, "pipe() failed: \(errno)")
        readFD = fds[0]
        writeFD = fds[1]
        _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
        _ = fcntl(writeFD, F_SETFL, fcntl(writeFD, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    func signal() {
        guard !signalled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)  // a full pipe already means "wake up"
    }

    private func drain() {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { buffer in
            while read(readFD, buffer.baseAddress, buffer.count) > 0 {}
        }
        signalled.store(false, ordering: .releasing)
    }

    /// Waits until `socket` is readable, the wakeup is signalled, or `timeout` passes.
    /// Returns true when the socket is readable.
    @discardableResult
    func wait(socket: Int32?, timeout: Duration) -> Bool {
        var fds = [pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)]
        if let socket, socket >= 0 { fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0)) }
        // Rounded up to whole milliseconds: a wait shorter than asked would turn into a busy loop. Never
        // negative, which poll(2) would take as "no timeout".
        let ms = max(
            0,
            Int32(
                clamping: timeout.components.seconds * 1000
                    + (timeout.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
        _ = poll(&fds, nfds_t(fds.count), ms)
        if fds[0].revents != 0 { drain() }
        return fds.count > 1 && fds[1].revents != 0
    }
}

/// Exponential backoff with full jitter: each delay is uniform in [0, min(max, initial * 2^attempt)].
struct Backoff {
    var initial: Duration
    var maximum: Duration
    private(set) var attempt = 0

    init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    mutating func next<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        let ceiling = min(maximum, initial * (1 << min(attempt, 20)))
        attempt += 1
        let nanos = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...max(nanos, 1), using: &generator))
    }

    mutating func reset() { attempt = 0 }
}

/// Runs `body` on a new, named thread. The event loops block in C and poll(2); they must never run on
/// the cooperative pool.
func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread(block: body)
    thread.name = name
    thread.start()
}

/// A one-shot latch to wait for an event-loop thread to finish.
final class Completion: Sendable {
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func finish() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.done = true
            defer { s.waiters = [] }
            return s.waiters
        }
        waiters.forEach { $0.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if !s.done { s.waiters.append(c) }
                return s.done
            }
            if done { c.resume() }
        }
    }
}
