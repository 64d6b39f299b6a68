import FleetRuntime
import Foundation
import ServiceLifecycle

extension ProbeWorker {
    /// The probe's services, in the order `WorkerRuntime.run` starts them and shuts them down in reverse:
    /// `clients` first, so they close last; then `monitors` (the Redis health loop); the schedule last.
    /// On graceful shutdown the schedule starts no check and waits for those in flight, whose observations
    /// are published before any client closes. main.swift runs these; the tests run them on the memory
    /// drivers.
    public func services(clients: [ClientService], monitors: [any Service] = []) -> [any Service] {
        clients + monitors + [ClosureService(run: { await self.run() }, stop: { self.stop() })]
    }
}
