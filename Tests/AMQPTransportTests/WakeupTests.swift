@testable import AMQPTransport
import Foundation
import Synchronization
import Testing

/// The self-pipe of the publisher's and consumer's loops writes one byte for any number of signals until
/// the loop drains it (`Wakeup`). These hold it to never lose a wake-up: an input handed over before a
/// signal is always seen by the loop's next look, or the loop would sleep in poll(2) with work waiting.
@Suite("Wakeup")
struct WakeupTests {
    @Test func manySignalsBeforeAWaitWakeItOnceAndTheNextSignalWakesAgain() {
        let wakeup = Wakeup()
        for _ in 0..<1_000 { wakeup.signal() }
        let started = ContinuousClock.now
        wakeup.wait(socket: nil, timeout: .seconds(10))
        #expect(ContinuousClock.now - started < .seconds(5), "the signals did not wake the wait")
        // Drained: nothing wakes the next wait until a new signal, which must write again.
        let idle = ContinuousClock.now
        wakeup.wait(socket: nil, timeout: .milliseconds(100))
        #expect(ContinuousClock.now - idle >= .milliseconds(90), "a drained pipe woke the wait")
        wakeup.signal()
        let again = ContinuousClock.now
        wakeup.wait(socket: nil, timeout: .seconds(10))
        #expect(ContinuousClock.now - again < .seconds(5), "a signal after the drain did not wake the wait")
    }

    /// A wait is never shorter than asked: poll(2) counts whole milliseconds, and a timeout under one cut
    /// down to zero returns at once, so a loop waiting for a deadline 0.7 ms away (the publisher's resend of
    /// a nacked message) would spin until it comes instead of sleeping.
    @Test func aTimeoutUnderAMillisecondIsWaitedNotCutToZero() {
        let wakeup = Wakeup()
        for timeout in [Duration.microseconds(300), .microseconds(900), .microseconds(1_500)] {
            let started = ContinuousClock.now
            wakeup.wait(socket: nil, timeout: timeout)
            #expect(ContinuousClock.now - started >= timeout, "a wait of \(timeout) returned early")
        }
        // A deadline already past waits for nothing (poll(2) would wait forever on a negative timeout). On
        // a thread of its own, released by a signal if it is stuck, so a regression fails instead of hanging.
        let returned = Flag()
        let waiter = Thread {
            wakeup.wait(socket: nil, timeout: .milliseconds(-2.5))
            returned.value.store(true, ordering: .releasing)
        }
        waiter.start()
        let deadline = ContinuousClock.now + .seconds(2)
        while !returned.value.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1_000) }
        let waitReturned = returned.value.load(ordering: .acquiring)
        #expect(waitReturned, "a negative timeout waited")
        wakeup.signal()
    }

    final class Flag: Sendable { let value = Atomic<Bool>(false) }

    /// A loop as the publisher's: look at the inputs after every wait. Another thread hands over 200,000
    /// inputs, each followed by a signal, in bursts with pauses so that signals land at every point of
    /// the loop's turn. A wake-up lost while an input waits shows as a wait that runs to its 2 s timeout
    /// with an input waiting; none may.
    @Test func noInputWaitsForATimeoutWhileSignalsRace() async {
        let wakeup = Wakeup()
        let inputs = Mutex(0)
        let total = 200_000
        let producer = Thread {
            for i in 0..<total {
                inputs.withLock { $0 += 1 }
                wakeup.signal()
                if i % 97 == 0 { usleep(UInt32(i % 5)) }
            }
        }
        producer.start()
        var taken = 0
        var lostWakeups = 0
        while taken < total {
            let waiting = inputs.withLock { count in
                defer { count = 0 }
                return count
            }
            taken += waiting
            if taken >= total { break }
            let started = ContinuousClock.now
            wakeup.wait(socket: nil, timeout: .seconds(2))
            if ContinuousClock.now - started >= .seconds(2) && inputs.withLock({ $0 }) > 0 { lostWakeups += 1 }
        }
        #expect(taken == total)
        #expect(lostWakeups == 0, "\(lostWakeups) waits ran to their timeout with an input waiting")
    }
}
