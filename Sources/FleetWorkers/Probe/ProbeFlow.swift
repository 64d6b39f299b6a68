import Synchronization

/// The probe's two bounds: health checks in flight (`maxChecks`, the curl handles) and observations of
/// its checks published but not yet confirmed (`maxUnconfirmed`). A check holds a check slot until its
/// answer is in; its observation then counts as unconfirmed until the publish returns. While
/// `maxUnconfirmed` are unconfirmed no slot is granted, so a broker that stops confirming stops the
/// replica taking up targets (the others claim them). At most `maxUnconfirmed + maxChecks - 1` are
/// unconfirmed: the checks in flight when the bound is reached still publish.
///
/// The scheduler reserves its slots before it claims targets in Redis (`reserve`), and gives back those
/// it did not fill (`release`): a target claimed is then always checked. Granting at each start instead
/// would let checks that end during the claims' round trips fill the unconfirmed bound in between, and a
/// claimed target be dropped: its seat held, and nobody checking it for the interval (review).
///
/// One lock over both counts, so a grant sees the two at the same instant; three uncontended locks per
/// check, and no actor hop.
final class ProbeFlow: Sendable {
    let maxChecks: Int
    let maxUnconfirmed: Int
    private let counts = Mutex<(checking: Int, unconfirmed: Int)>((0, 0))

    init(maxChecks: Int, maxUnconfirmed: Int) {
        self.maxChecks = max(1, maxChecks)
        self.maxUnconfirmed = max(1, maxUnconfirmed)
    }

    /// How many more checks may start now (nothing is reserved).
    var room: Int { counts.withLock { Self.room($0, maxChecks, maxUnconfirmed) } }
    var checkingCount: Int { counts.withLock { $0.checking } }
    var unconfirmedCount: Int { counts.withLock { $0.unconfirmed } }

    private static func room(_ c: (checking: Int, unconfirmed: Int), _ maxChecks: Int, _ maxUnconfirmed: Int) -> Int {
        c.unconfirmed >= maxUnconfirmed ? 0 : max(0, maxChecks - c.checking)
    }

    /// Takes up to `wanted` check slots, as many as there is room for, and returns how many it took.
    func reserve(upTo wanted: Int) -> Int {
        counts.withLock { c in
            let granted = min(max(0, wanted), Self.room(c, maxChecks, maxUnconfirmed))
            c.checking += granted
            return granted
        }
    }

    /// Gives back `count` reserved slots that no check will use.
    func release(_ count: Int) {
        guard count > 0 else { return }
        counts.withLock { $0.checking -= count }
    }

    /// The check's answer is in: its slot is free, and its observation (if it has one) is unconfirmed.
    func checkEnded(publishing: Bool) {
        counts.withLock { c in
            if publishing { c.unconfirmed += 1 }
            c.checking -= 1
        }
    }

    /// The broker confirmed (or refused) the observation.
    func publishEnded() { counts.withLock { $0.unconfirmed -= 1 } }
}
