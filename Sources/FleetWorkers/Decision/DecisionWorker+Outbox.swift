import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore

// Publishing what a decision stored in a target's (or the brake's) outbox. See DecisionWorker's type
// documentation for why the outbox exists.
extension DecisionWorker {
    func publish(_ item: OutboxItem) async throws {
        try await envelopes.publish(encoded: try item.encoded(), now: clock())
        FleetMetrics.messagesPublished(type: item.type).increment()
    }

    /// Publishes outbox items that nobody has published yet; returns those still to be published (claimed
    /// by another worker right now). Two replicas can load the same outbox (the writer and the next
    /// reader); a short claim per message id (`publishing:<id>`) lets only one of them publish it, and a
    /// marker (`published:<id>`, kept a week) tells later readers it is done. A worker that dies after
    /// its claim leaves the item in the outbox; the claim expires and the next reader publishes it.
    ///
    /// The items are independent (each has its own claim and marker), so they go at once: their claims in
    /// one Redis round trip, their publishes awaiting their confirms together, their markers in one more
    /// round trip. (Their order on the wire is not kept; consumers never relied on it: several notifier
    /// replicas deliver in any order anyway, and every message carries its time.)
    func flush(_ items: [OutboxItem]) async throws -> [OutboxItem] {
        guard !items.isEmpty else { return [] }
        enum Claim: Sendable { case done, ours, theirs }
        let attempts = await concurrently(items) { item -> Result<Claim, any Error> in
            do {
                if try await self.markers.get("published:\(item.messageId)") != nil { return .success(.done) }
                let claimed = try await self.markers.setIfAbsent(
                    "publishing:\(item.messageId)", self.options.workerId, expiry: .seconds(30))
                return .success(claimed ? .ours : .theirs)
            } catch { return .failure(error) }
        }
        var claims: [Claim] = []
        for attempt in attempts {
            switch attempt {
            case .success(let claim): claims.append(claim)
            case .failure(let error):
                // Give back the claims taken, so that this message's retry publishes them at once instead
                // of finding them claimed (by this worker) until they expire.
                for (item, other) in zip(items, attempts) {
                    if case .success(.ours) = other { _ = try? await markers.delete("publishing:\(item.messageId)") }
                }
                throw error
            }
        }
        let ours = zip(items, claims).compactMap { item, claim in claim == .ours ? item : nil }
        let failures = await concurrently(ours) { item -> (any Error)? in
            do {
                try await self.publish(item)
            } catch let refused as AMQPError where refused.refusesTheMessageItself {
                // A message the broker can never take (an id over AMQP's limits, no route): kept, it would be
                // retried by every later reader and wedge the target (or, for the brake's pending notices,
                // every target). Dropped, loudly, as done.
                self.logger.error(
                    "a stored message can never be published; dropped",
                    metadata: ["message_id": "\(item.messageId.prefix(80))", "error": "\(refused)"])
                FleetMetrics.errors(worker: "decision", kind: "unpublishable").increment()
            } catch {
                // Let the next reader (this message's redelivery, most likely) publish it at once instead
                // of waiting for the claim to expire.
                _ = try? await self.markers.delete("publishing:\(item.messageId)")
                return error
            }
            do {
                try await self.markers.set("published:\(item.messageId)", "1", expiry: .seconds(7 * 86_400))
                return nil
            } catch { return error }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        return zip(items, claims).compactMap { item, claim in claim == .theirs ? item : nil }
    }

    /// `body` for every element at once; the results in the elements' order.
    func concurrently<T: Sendable, R: Sendable>(_ elements: [T], _ body: @escaping @Sendable (T) async -> R)
        async -> [R]
    {
        if elements.count == 1 { return [await body(elements[0])] }
        return await withTaskGroup(of: (Int, R).self) { group in
            for (i, element) in elements.enumerated() { group.addTask { (i, await body(element)) } }
            var results = [R?](repeating: nil, count: elements.count)
            for await (i, result) in group { results[i] = result }
            return results.map { $0! }
        }
    }
}
