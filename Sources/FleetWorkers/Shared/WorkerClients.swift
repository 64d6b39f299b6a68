import AMQPTransport
import FleetRuntime
import HTTPTransport
import RedisStore

extension ClientService {
    /// The clients a worker executable opens, as the services its `services(...)` lists first: Redis (when
    /// the worker uses it), HTTP, the broker publisher. Shutdown runs in reverse order, so they close after
    /// everything that uses them, the publisher first.
    public static func workerClients(redis: RedisClient? = nil, http: HTTPClient, publisher: AMQPPublisher)
        -> [ClientService]
    {
        (redis.map { redis in [ClientService("redis") { await redis.close() }] } ?? []) + [
            ClientService("http") { http.shutdown() },
            ClientService("broker publisher") { await publisher.shutdown() },
        ]
    }
}
