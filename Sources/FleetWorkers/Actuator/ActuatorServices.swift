import FleetRuntime
import RecoveryCore
import ServiceLifecycle

extension ActuatorWorker {
    /// The actuator's services for its `ServiceGroup` (`WorkerRuntime.run`), in the order graceful shutdown
    /// needs: `clients` first, then the `background` loops, and the consumer of the action requests last.
    /// The group stops them in reverse order: the consumer stops taking requests (`stopRequests`) and the
    /// steps in flight finish (outcome published, delivery acked) or are handed back, then the loops stop,
    /// and only then do the clients close.
    public func services(
        clients: [ClientService], background: [any Service], requests: any DeliverySource,
        stopRequests: @escaping @Sendable () async -> Void, deadLetters: DeadLetterSink, senders: SenderGate?
    ) -> [any Service] {
        let concurrency = options.maxConcurrentSteps
        let consumer = MessageWorker<Envelope<ActionRequest>>(
            consumer: requests, deadLetters: deadLetters, expecting: .actionRequest, logger: logger, senders: senders,
            handler: handle)
        let consuming = FleetRuntime.ClosureService(
            run: { await consumer.run(concurrency: concurrency) }, stop: stopRequests)
        return clients.map { $0 as any Service } + background + [consuming]
    }
}
