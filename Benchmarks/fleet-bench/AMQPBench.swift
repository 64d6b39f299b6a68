import AMQPTransport
import Foundation

/// Publish-with-confirm plus consume-and-ack throughput through the Swift transport. The same workload
/// as Benchmarks/amqp_raw.c (the raw librabbitmq loop): N persistent 256-byte messages to one quorum
/// queue, at most `window` unconfirmed publishes, a consumer with prefetch `window` acking each one.
/// The figure is N divided by the time from the first publish to the last ack.
func runAMQPBenchmark(_ options: BenchOptions) async {
    guard let urlString = options.string("url") ?? ProcessInfo.processInfo.environment["AMQP_URL"],
        let url = try? AMQPURL(urlString)
    else {
        print("amqp: set AMQP_URL or pass --url")
        exit(2)
    }
    let count = options.int("messages", default: 20_000)
    let window = options.int("window", default: 100)
    let config = AMQPConfiguration(url: url, connectionName: "fleet-bench")
    let queue = "bench.\(UUID().uuidString.prefix(8).lowercased())"
    let topology = AMQPTopology(queues: [.init(name: queue, arguments: ["x-queue-type": "quorum"])])
    let publisher = AMQPPublisher(configuration: config, topology: topology)
    let consumer = AMQPConsumer(configuration: config, topology: topology, queue: queue, prefetch: UInt16(window))
    let body = [UInt8](repeating: 0x61, count: 256)

    let start = ContinuousClock.now
    async let consumed: Int = {
        var n = 0
        for await delivery in consumer.deliveries {
            await consumer.ack(delivery)
            n += 1
            if n == count { break }
        }
        return n
    }()
    do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                if i >= window { try await group.next() }
                group.addTask {
                    try await publisher.publish(
                        OutgoingMessage(
                            exchange: "", routingKey: queue, body: body, properties: AMQPProperties(messageId: "\(i)")))
                }
            }
            try await group.waitForAll()
        }
    } catch {
        print("amqp: publish failed: \(error)")
        exit(1)
    }
    let published = ContinuousClock.now
    let n = await consumed
    // Acks are queued, not awaited: the figure ends when the consumer has sent the last one and closed
    // (shutdown waits for every delivery in flight to be settled), which is later than the raw loop's end.
    await consumer.shutdown()
    let end = ContinuousClock.now
    let seconds = Double((end - start).components.attoseconds) / 1e18 + Double((end - start).components.seconds)
    let publishSeconds =
        Double((published - start).components.attoseconds) / 1e18 + Double((published - start).components.seconds)
    print(
        String(
            format:
                "amqp swift: %d messages (256 B, quorum queue, window %d): publish+confirm %.0f msg/s; publish+confirm+consume+ack %.0f msg/s",
            n, window, Double(count) / publishSeconds, Double(n) / seconds))
    await publisher.shutdown()
    let admin = AMQPAdmin(configuration: config)
    try? await admin.deleteQueue(queue)
    await admin.close()
}
