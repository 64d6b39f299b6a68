import FleetRuntime
import Foundation
import ServiceLifecycle

extension RecorderWorker {
    /// The recorder's services, in the order `WorkerRuntime.run` starts them and shuts them down in
    /// reverse: `clients` first, so they close last; then the CloudWatch metrics (`metrics`), flushed every
    /// minute; the consumer of `history` last, behind a `SenderGate` (commands from anyone with a verified
    /// user: an audit trail of attempts). On graceful shutdown the consumer stops and finishes the message
    /// in hand (row written, acked), then the last metrics are sent, then the clients close. main.swift
    /// runs these; the tests run them on the memory drivers.
    public func services(
        history: any DeliverySource, deadLetters: DeadLetterSink, identities: FleetIdentities, ownUser: String?,
        clients: [ClientService]
    ) -> [any Service] {
        let senders = SenderGate(identities: identities, unchecked: [.command], ownUser: ownUser, logger: logger)
        let loop = MessageWorker(
            consumer: history, deadLetters: deadLetters, logger: logger, senders: senders,
            decode: Self.decode, handler: handle)
        let flushing: [any Service] =
            metrics.map { metrics in
                [LoopService(run: { await metrics.run() }, cleanup: { await metrics.flushLogging(all: true) })]
            } ?? []
        return clients + flushing + [loop.service()]
    }
}
