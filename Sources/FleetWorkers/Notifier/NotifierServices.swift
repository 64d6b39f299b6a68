import FleetRuntime
import Foundation
import ServiceLifecycle

extension NotifierWorker {
    /// The notifier's services, in the order `WorkerRuntime.run` starts them and shuts them down in
    /// reverse: `clients` first, so they close last; then `monitors` (the Redis health loop); the consumer
    /// of `notifications` last, behind a `SenderGate` that announces forged notices to the channels. On
    /// graceful shutdown the consumer stops taking notices and finishes the one in hand (sent, marked,
    /// acked) before any client closes. main.swift runs these; the tests run them on the memory drivers.
    public func services(
        notifications: any DeliverySource, identities: FleetIdentities, ownUser: String?,
        clients: [ClientService], monitors: [any Service] = []
    ) -> [any Service] {
        let senders = SenderGate(
            identities: identities, ownUser: ownUser, logger: logger, announce: announcingRefusals())
        let loop = MessageWorker(
            consumer: notifications, deadLetters: deadLetters, expecting: .notification, logger: logger,
            senders: senders, handler: handle)
        return clients + monitors + [loop.service()]
    }
}
