import AMQPTransport
import FleetRuntime
import FleetTestSupport
import Foundation
import Logging
import RecoveryCore
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import FleetWorkers

/// Graceful shutdown of the actuator's services as `ActuatorWorker.services` lists them (the services
/// main.swift runs), on the memory drivers: a step in flight when shutdown begins finishes (its outcome
/// published, its delivery acked) before any client closes.
@Suite("Actuator on the memory drivers: graceful shutdown")
struct ActuatorMemoryShutdownTests {
    final class Events: Sendable {
        let list = Mutex<[String]>([])
        func note(_ event: String) { list.withLock { $0.append(event) } }
        var all: [String] { list.withLock { $0 } }
        func contains(_ prefix: String) -> Bool { all.contains { $0.hasPrefix(prefix) } }
    }

    @Test(.timeLimit(.minutes(1)))
    func aStepInFlightFinishesBeforeTheClientsClose() async throws {
        let h = MemoryActuatorHarness()
        let instance = h.launchTarget("web")
        let request = h.request(.restart, target: "web", instance: instance.instanceId)
        let source = MemoryDeliverySource(queue: h.topology.actionRequestsQueue)
        let events = Events()
        let triggered = Mutex(false)
        let publisher = h.publisher
        // The step is still running when shutdown begins, and (by waiting, not by timing) still running when
        // a client would close under it: it waits for a close for up to 1 s before it goes on.
        let worker = h.actuator { options in
            options.afterSubStep = { _, sub in
                guard sub == .reboot else { return }
                events.note("step in flight")
                while !triggered.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
                let patience = ContinuousClock.now + .seconds(1)
                while !events.contains("closed"), ContinuousClock.now < patience {
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
        }
        let key = request.idempotencyKey
        @Sendable func state() -> String {
            let published = publisher.published.contains { $0.properties.messageId == "\(key):outcome" }
            return
                "outcome \(published ? "published" : "missing"), \(source.acked.count) acked, \(source.unacked.count) unacked"
        }
        let services = worker.services(
            clients: [
                ClientService("locks and records") { events.note("closed locks and records: \(state())") },
                ClientService("broker publisher") { events.note("closed broker publisher: \(state())") },
            ],
            background: [
                LoopService(run: { while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) } })
            ],
            requests: source, stopRequests: { source.shutdown() },
            deadLetters: DeadLetterSink(publisher: h.publisher, topology: h.topology, workerName: "actuator-test"),
            senders: nil)
        #expect(services.count == 4)
        #expect(services.prefix(2).allSatisfy { $0 is ClientService }, "the clients first")
        #expect(services.last is FleetRuntime.ClosureService, "the request consumer last")

        try await testGracefulShutdown { trigger in
            let group = ServiceGroup(
                configuration: try WorkerRuntime.configuration(services: services, logger: Logger(label: "group")))
            let running = Task { try await group.run() }
            let envelope = Envelope(
                type: .actionRequest, id: key, correlationId: request.incidentId, target: "web",
                instanceId: instance.instanceId, occurredAt: Date(), body: request)
            source.deliver(try EnvelopeCodec.encode(envelope), properties: AMQPProperties(messageId: key))
            let deadline = ContinuousClock.now + .seconds(20)
            while !events.contains("step in flight"), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(events.contains("step in flight"), "the request reached the step")
            trigger.triggerGracefulShutdown()
            triggered.withLock { $0 = true }
            try await running.value
        }

        let expected = "outcome published, 1 acked, 0 unacked"
        #expect(
            events.all == [
                "step in flight", "closed broker publisher: \(expected)", "closed locks and records: \(expected)",
            ],
            "the step finished, then the clients closed in reverse order")
        #expect(h.outcomes(key).first?.body.status == .succeeded)
    }
}
