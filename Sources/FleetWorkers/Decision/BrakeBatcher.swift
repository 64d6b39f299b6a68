import RecoveryCore
import Synchronization

/// Group commit for the events that change the fleet brake (an outage opening or closing, a destructive
/// step counted). The brake is one document: each such event used to be decided and stored alone, one
/// after the other behind a gate, so in a mass outage thousands of 150 KB brake writes queued in a line
/// (docs/benchmarks.md, "Scale"). Now the events waiting meanwhile are decided together, one after the
/// other on the brake as each leaves it, and stored with their targets in one atomic compare-and-set.
///
/// One submitter at a time leads: it decides and stores its own event with the waiting ones (at most
/// `maximumBatch`, one per target: a target's second event waits for the next batch, so it is decided on
/// the state the first one stored), resumes their submitters with the result, and hands the lead to the
/// longest waiter. Nobody leads while nothing waits. Each event's outcome is its own: one that fails
/// (a state that does not decode, a refused step) fails only its submitter.
final class BrakeBatcher: Sendable {
    struct Submission: Sendable {
        let event: TargetMachine.Event
        let target: String
        let instanceHint: String?
    }

    /// A decided and stored event: what its submitter carries out.
    struct Committed: Sendable {
        let actions: [TargetMachine.Action]
        let machine: TargetMachine
        let version: Int64
    }

    /// Decides and stores a batch; one result per submission, in order.
    typealias Commit = @Sendable ([Submission]) async -> [Result<Committed, any Error>]

    private enum Turn: Sendable {
        case committed(Committed)
        case lead
    }

    private struct Waiting {
        let submission: Submission
        let continuation: CheckedContinuation<Turn, any Error>
    }

    static let maximumBatch = 64
    private let state = Mutex<(leading: Bool, waiting: [Waiting])>((false, []))

    init() {}

    /// Returns once `submission` is stored (or throws its own failure); `commit` stores the batch this
    /// submitter leads, if it leads one. Waiting cannot be cancelled: the leader resumes every submitter
    /// it took.
    func submit(_ submission: Submission, commit: @escaping Commit) async throws -> Committed {
        let leads = state.withLock { state in
            if state.leading { return false }
            state.leading = true
            return true
        }
        if !leads {
            let turn = try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<Turn, any Error>) in
                let leadsNow = state.withLock { state in
                    if state.leading {
                        state.waiting.append(Waiting(submission: submission, continuation: continuation))
                        return false
                    }
                    state.leading = true
                    return true
                }
                if leadsNow { continuation.resume(returning: .lead) }
            }
            if case .committed(let done) = turn { return done }
        }
        let others = state.withLock { state in
            var targets: Set<String> = [submission.target]
            var taken: [Waiting] = []
            var left: [Waiting] = []
            for waiting in state.waiting {
                if taken.count < Self.maximumBatch - 1, targets.insert(waiting.submission.target).inserted {
                    taken.append(waiting)
                } else {
                    left.append(waiting)
                }
            }
            state.waiting = left
            return taken
        }
        // In a task of its own: a cancelled leader (its delivery's handler ended) must not cancel the
        // others' decisions, which it holds for them.
        let batch = [submission] + others.map(\.submission)
        let results = await Task { [commit] in await commit(batch) }.value
        precondition(results.count == batch.count, "a brake batch commit returned \(results.count) of \(batch.count)")
        for (waiting, result) in zip(others, results.dropFirst()) {
            switch result {
            case .success(let done): waiting.continuation.resume(returning: .committed(done))
            case .failure(let error): waiting.continuation.resume(throwing: error)
            }
        }
        let next = state.withLock { state -> Waiting? in
            guard !state.waiting.isEmpty else {
                state.leading = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        return try results[0].get()
    }
}
