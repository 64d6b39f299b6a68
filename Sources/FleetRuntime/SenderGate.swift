import AMQPTransport
import Foundation
import Logging
import Metrics
import RecoveryCore
import Synchronization

/// A message refused because its sender may not send its type.
public struct UnauthorizedSender: Sendable, Equatable {
    /// The broker-verified `user_id`, or nil when the message had none.
    public var user: String?
    public var type: MessageType
    public var queue: String
    public var routingKey: String
    public var messageId: String?

    /// The dead letter's `x-reject-reason`.
    public var reason: String {
        let who = user.map { "broker user '\($0)'" } ?? "a sender without user_id"
        return
            "unauthorized-sender: \(who) may not send '\(type.rawValue)' (only the \(FleetRole.senders(of: type).map(\.rawValue).joined(separator: "/")) identities may)"
    }
}

/// The consumer side of the trust boundary: before a worker acts on a message it checks that the
/// broker-verified `user_id` belongs to a kind allowed to send the message's type (docs/security.md).
///
/// The broker's own permissions should already refuse such a publish; this check holds even when they
/// are misconfigured (defence in depth). A refused message is dead-lettered with its reason and counted
/// (`recovery_unauthorized_messages_total{queue,type}`), and each sender is announced once per process
/// through `announce` (not once per message: a flood of forgeries must not become a flood of pages).
public final class SenderGate: Sendable {
    public typealias Announce = @Sendable (UnauthorizedSender) async -> Void

    let identities: FleetIdentities
    /// Types this consumer lets through from any sender with a `user_id`: types it checks itself with a
    /// better answer (the decision worker's commands), or records from anyone with their verified user
    /// (the recorder's commands, an audit trail of attempts). Without a `user_id` they are refused too.
    let unchecked: Set<MessageType>
    /// This consumer's own broker user: a dead letter it wrote, moved back to its queue by an operator
    /// (docs/operations.md), is judged by the sender it recorded (`x-original-user-id`).
    let ownUser: String?
    let announce: Announce
    let logger: Logger
    private let announced = Mutex<Set<String>>([])

    public init(
        identities: FleetIdentities, unchecked: Set<MessageType> = [], ownUser: String? = nil, logger: Logger,
        announce: @escaping Announce = { _ in }
    ) {
        self.identities = identities
        self.unchecked = unchecked
        self.ownUser = ownUser
        self.announce = announce
        self.logger = logger
    }

    /// Nil when the message may be acted on; else what to refuse. A body whose type cannot be read is
    /// left to the decoder, which dead-letters it as malformed.
    public func refusal(of delivery: AMQPDelivery, queue: String) -> UnauthorizedSender? {
        guard let type = try? EnvelopeCodec.messageType(of: delivery.body) else { return nil }
        var user = delivery.properties.userId.flatMap { $0.isEmpty ? nil : $0 }
        if let own = ownUser, user == own, delivery.properties.headers["x-original-queue"]?.stringValue == queue {
            user = delivery.properties.headers["x-original-user-id"]?.stringValue
        }
        if let user, unchecked.contains(type) || identities.allowedSenders(of: type).contains(user) { return nil }
        return UnauthorizedSender(
            user: user, type: type, queue: queue, routingKey: delivery.routingKey,
            messageId: delivery.properties.messageId)
    }

    /// Counts the refusal and announces its sender the first time this process sees it.
    public func refused(_ refusal: UnauthorizedSender) async {
        FleetMetrics.unauthorizedMessages(queue: refusal.queue, type: refusal.type.rawValue).increment()
        // Once per sender and UTC day, matching the notice's id.
        let key = "\(refusal.user ?? "")\u{0}\(Timestamp.format(Date()).prefix(10))"
        let first = announced.withLock { $0.insert(key).inserted }
        guard first else { return }
        logger.error(
            "refused a message from a sender that may not send it; later ones from this sender are only counted",
            metadata: [
                "reason": "\(refusal.reason)", "queue": "\(refusal.queue)", "routing_key": "\(refusal.routingKey)",
                "message_id": "\(refusal.messageId ?? "-")",
            ])
        await announce(refusal)
    }
}

extension UnauthorizedSender {
    /// The fleet-wide notice that announces a refused sender. Its id names only the sender and the day,
    /// so every worker and replica that sees the sender announces the same notice, which the notifier
    /// sends once per channel: one notice per sender a day, wherever its messages went.
    public func notice(at now: Date, announcedBy worker: String) -> Notice {
        let day = String(Timestamp.format(now).prefix(10))
        return Notice(
            id: "unauthorized-sender:\(user ?? "-"):\(day)", kind: .unauthorizedSender, at: now,
            reason: .refusedSender(
                .unauthorizedSender(
                    user: user, type: type.rawValue, routingKey: routingKey,
                    allowed: FleetRole.senders(of: type).map(\.rawValue),
                    deadLetterQueue: FleetTopology.deadLetterQueue(for: queue), worker: worker)))
    }
}
