import Foundation
import RedisStore
import Synchronization

/// Whether Redis answered the last PING, for `/healthz`. `run()` pings every few seconds until cancelled.
public final class RedisHealth: Sendable {
    let client: RedisClient
    let ok = Atomic<Bool>(false)

    public init(client: RedisClient) { self.client = client }

    public var isReady: Bool { ok.load(ordering: .relaxed) }

    public func run(every interval: Duration = .seconds(5)) async {
        while !Task.isCancelled {
            let pong = (try? await client.command(["PING"], idempotent: true)) == .status("PONG")
            ok.store(pong, ordering: .relaxed)
            try? await Task.sleep(for: interval)
        }
    }
}
