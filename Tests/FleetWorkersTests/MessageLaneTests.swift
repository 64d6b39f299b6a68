import AMQPTransport
import FleetRuntime
import FleetTestSupport
import Foundation
import Logging
import RecoveryCore
import Synchronization
import Testing

/// `MessageWorker.run(lanes:laneKey:)`, as the decision worker uses it: one target's deliveries are handled
/// one at a time in delivery order; different targets' at once.
@Suite("Message lanes: per-target order, fleet-wide concurrency")
struct MessageLaneTests {
    @Test func oneTargetsDeliveriesKeepTheirOrderWhileTargetsRunInParallel() async throws {
        let topology = FleetTopology(prefix: "lanes-\(UUID().uuidString.prefix(6))")
        let broker = MemoryBroker(topology: topology.amqp)
        let queue = try #require(broker.queue(topology.observationsQueue))
        let targets = 12
        let perTarget = 25
        struct Seen {
            var order: [String: [Int]] = [:]
            var running: [String: Int] = [:]
            var runningNow = 0
            var maxRunning = 0
            var overlapsWithinTarget = 0
        }
        let seen = Mutex(Seen())
        let worker = MessageWorker<String>(
            consumer: queue,
            deadLetters: DeadLetterSink(
                publisher: MemoryPublisher(broker: broker), topology: topology, workerName: "t"),
            logger: Logger(label: "test"), senders: nil,
            decode: { (bytes) throws(MessageDecodingError) in String(decoding: bytes, as: UTF8.self) },
            handler: { body, delivery in
                let target = MessageWorker<String>.targetOfRoutingKey(delivery)
                let n = Int(body.split(separator: ":")[1])!
                seen.withLock {
                    $0.running[target, default: 0] += 1
                    if $0.running[target]! > 1 { $0.overlapsWithinTarget += 1 }
                    $0.runningNow += 1
                    $0.maxRunning = max($0.maxRunning, $0.runningNow)
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...3)))
                seen.withLock {
                    $0.order[target, default: []].append(n)
                    $0.running[target]! -= 1
                    $0.runningNow -= 1
                }
            })
        for n in 0..<perTarget {
            for t in 0..<targets {
                queue.deliver(Array("site-\(t):\(n)".utf8), routingKey: "observation.site-\(t)")
            }
        }
        let running = Task { await worker.run(lanes: 8, laneKey: MessageWorker<String>.targetOfRoutingKey) }
        let deadline = ContinuousClock.now + .seconds(30)
        while seen.withLock({ $0.order.values.map(\.count).reduce(0, +) }) < targets * perTarget,
            ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(5))
        }
        queue.shutdown()
        await running.value
        let result = seen.withLock { $0 }
        #expect(result.order.count == targets)
        for (target, order) in result.order {
            #expect(order == Array(0..<perTarget), "\(target) handled out of order: \(order)")
        }
        #expect(result.overlapsWithinTarget == 0)
        #expect(result.maxRunning > 1, "lanes ran one at a time")
        #expect(result.maxRunning <= 8)
    }

    @Test func theLaneKeyIsTheRoutingKeysTarget() {
        func key(_ routingKey: String) -> String {
            MessageWorker<String>.targetOfRoutingKey(
                AMQPDelivery(
                    body: [], properties: AMQPProperties(), exchange: "", routingKey: routingKey, redelivered: false,
                    deliveryTag: 1))
        }
        #expect(key(MessageType.observation.routingKey(target: "shop.web")) == "shop_web")
        #expect(key(MessageType.actionEvent.routingKey(target: "shop-web")) == "shop-web")
        #expect(key(MessageType.prediction.routingKey(target: "shop-web")) == "shop-web")
        #expect(key("something-else") == "something-else")
    }
}
