import FleetRuntime
import Foundation
import ServiceLifecycle

extension PredictorWorker {
    /// The predictor's services, in the order `WorkerRuntime.run` starts them and shuts them down in
    /// reverse: `clients` first, so they close last; then `monitors` (the Redis health loop); the schedule;
    /// the consumer of prediction `requests` last, behind a `SenderGate` (operators only). On graceful
    /// shutdown the consumer stops taking requests and finishes the one in hand (predictions published,
    /// acked), then the schedule is cancelled, then the clients close. main.swift runs these; the tests run
    /// them on the memory drivers.
    public func services(
        requests: any DeliverySource, identities: FleetIdentities, ownUser: String?,
        clients: [ClientService], monitors: [any Service] = []
    ) -> [any Service] {
        let deadLetters = DeadLetterSink(publisher: publisher, topology: topology, workerName: options.workerId)
        // The predictor may not publish notices: a refused sender is logged, counted and dead-lettered.
        let senders = SenderGate(identities: identities, ownUser: ownUser, logger: logger)
        let loop = MessageWorker(
            consumer: requests, deadLetters: deadLetters, logger: logger, senders: senders,
            decode: Self.decodeRequest, handler: handle)
        return clients + monitors + [LoopService(run: { await self.run() }), loop.service()]
    }
}
