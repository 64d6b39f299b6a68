import AMQPTransport
import FleetTestSupport
import Foundation
import Synchronization
import Testing

let clusterAvailable = BrokerCluster.isAvailable

/// Publishes without pause on `lanes` concurrent lanes (unique ids `<lane>-<n>`) while `fault` runs, and
/// for `after` more confirms once it returned; records what was confirmed.
final class PublishStream: Sendable {
    struct Tally {
        var started = 0
        var confirmed: [String] = []
        var failed: [String: String] = [:]
        var stop = false
        var lastConfirm: ContinuousClock.Instant?
        /// The longest time without any confirm: how long the fault held publishing up.
        var longestPause: Duration = .zero

        mutating func confirm(_ id: String) {
            let now = ContinuousClock.now
            if let lastConfirm { longestPause = max(longestPause, now - lastConfirm) }
            lastConfirm = now
            confirmed.append(id)
        }
    }
    let tally = Mutex(Tally())

    var confirmedCount: Int { tally.withLock { $0.confirmed.count } }
    var stopped: Bool { tally.withLock { $0.stop } }

    func run(
        _ publisher: AMQPPublisher, _ scratch: ScratchTopology, lanes: Int = 16, before: Int = 200,
        after: Int = 200, during fault: () async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var n = 0
                    while !self.stopped {
                        let id = "\(lane)-\(n)"
                        n += 1
                        self.tally.withLock { $0.started += 1 }
                        do {
                            try await publisher.publish(scratch.message(id, id: id))
                            self.tally.withLock { $0.confirm(id) }
                        } catch {
                            self.tally.withLock { $0.failed[id] = "\(error)" }
                        }
                    }
                }
            }
            do {
                try await waitUntil("\(before) confirms before the fault") { self.confirmedCount >= before }
                try await fault()
                let resumed = confirmedCount
                try await waitUntil("\(after) confirms after the fault") { self.confirmedCount >= resumed + after }
            } catch {
                tally.withLock { $0.stop = true }
                throw error
            }
            tally.withLock { $0.stop = true }
            try await group.waitForAll()
        }
    }
}

/// Polls `condition` (real I/O) until it holds; fails after `timeout`, which is generous, not a measure.
func waitUntil(
    _ what: String, timeout: Duration = .seconds(90), _ condition: @Sendable () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for \(what)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
