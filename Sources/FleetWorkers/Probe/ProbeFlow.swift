import Synchronization

/// The probe's two bounds: health checks in flight (`maxChecks`, the curl handles) and observations
/// published but not yet confirmed (`maxUnconfirmed`). A check holds a check slot until its answer is in;
/// its observation then counts as unconfirmed until the publish returns. While `maxUnconfirmed` are
/// unconfirmed, no check starts, so a broker that stops confirming stops the replica taking up targets
/// (the others claim them). At most `maxUnconfirmed + maxChecks - 1` are unconfirmed: the checks in
/// flight when the bound is reached still publish. Atomics rather than an actor: three updates per check
/// with no hop.
final class ProbeFlow: Sendable {
    let maxChecks: Int
    let maxUnconfirmed: Int
    private let checking = Atomic<Int>(0)
    private let unconfirmed = Atomic<Int>(0)

    init(maxChecks: Int, maxUnconfirmed: Int) {
        self.maxChecks = max(1, maxChecks)
        self.maxUnconfirmed = max(1, maxUnconfirmed)
    }

    /// How many more checks may start now.
    var room: Int {
        unconfirmed.load(ordering: .relaxed) >= maxUnconfirmed
            ? 0 : max(0, maxChecks - checking.load(ordering: .relaxed))
    }
    var checkingCount: Int { checking.load(ordering: .relaxed) }
    var unconfirmedCount: Int { unconfirmed.load(ordering: .relaxed) }

    /// Takes a check slot if there is room; false when either bound is reached.
    func startCheck() -> Bool {
        guard unconfirmed.load(ordering: .relaxed) < maxUnconfirmed else { return false }
        var current = checking.load(ordering: .relaxed)
        while current < maxChecks {
            let (exchanged, original) = checking.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// The check's answer is in: its slot is free, and its observation (if it has one) is unconfirmed.
    /// The observation is counted before the slot is given back, so the two never both look free.
    func checkEnded(publishing: Bool) {
        if publishing { unconfirmed.add(1, ordering: .relaxed) }
        checking.subtract(1, ordering: .relaxed)
    }

    /// The broker confirmed (or refused) the observation.
    func publishEnded() { unconfirmed.subtract(1, ordering: .relaxed) }
}
