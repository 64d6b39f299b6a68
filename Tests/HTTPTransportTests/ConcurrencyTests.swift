import Foundation
import Testing

@testable import HTTPTransport

@Suite("Many requests, cancellation and shutdown")
struct ConcurrencyTests {
    @Test func fiveHundredConcurrentRequestsAllSucceed() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient(maxConcurrentRequests: 500)
        defer { client.shutdown() }
        let echo = "\(server.baseURL)/echo"

        let bodies = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for i in 0..<500 {
                group.addTask {
                    let response = try await client.execute(
                        HTTPRequest(
                            method: "POST", url: echo, body: Array("request \(i)".utf8),
                            timeout: .seconds(60)))
                    #expect(response.status == 200)
                    return (i, response.body)
                }
            }
            var bodies: [Int: [UInt8]] = [:]
            for try await (i, body) in group { bodies[i] = body }
            return bodies
        }
        #expect(bodies.count == 500)
        #expect((0..<500).allSatisfy { bodies[$0] == Array("request \($0)".utf8) })
    }

    @Test func requestsBeyondTheLimitWaitInTheQueue() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient(maxConcurrentRequests: 4)
        defer { client.shutdown() }
        let slow = "\(server.baseURL)/slow?ms=30"

        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    try await client.execute(HTTPRequest(url: slow, timeout: .seconds(60)))
                        .status
                }
            }
            for try await status in group { #expect(status == 200) }
        }
        let stats = try await client.execute(HTTPRequest(url: "\(server.baseURL)/stats"))
        let highest = try #require(
            (try JSONSerialization.jsonObject(with: Data(stats.body)) as? [String: Any])?["highest"] as? Int)
        #expect(highest <= 4, "never more than maxConcurrentRequests at the server")
        #expect(highest >= 2, "requests did run concurrently")
    }

    @Test func cancellingAnInFlightRequestAbortsIt() async throws {
        let listener = try RawSocket(listening: true)
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient(maxConcurrentRequests: 1)
        defer { client.shutdown() }

        let hanging = Task {
            try await client.execute(HTTPRequest(url: "http://127.0.0.1:\(listener.port)/hang", timeout: .seconds(120)))
        }
        // Once the server side has the connection, the transfer is running inside curl.
        let connection = try await listener.acceptOne()
        // A second request waits in the queue behind it (the limit is 1); cancel that one too.
        let hello = "\(server.baseURL)/hello"
        let queued = Task {
            try await client.execute(HTTPRequest(url: hello))
        }
        queued.cancel()
        hanging.cancel()

        await #expect(throws: CancellationError.self) { try await hanging.value }
        await #expect(throws: CancellationError.self) { try await queued.value }
        #expect(await connection.waitForPeerClose(seconds: 10), "the aborted transfer closed its connection")

        // The slot was given back: with a limit of 1, this only runs if the cancelled transfer is gone.
        let after = try await client.execute(HTTPRequest(url: "\(server.baseURL)/hello"))
        #expect(after.status == 200)
    }

    @Test func alreadyCancelledTaskNeverSends() async throws {
        let listener = try RawSocket(listening: false)
        let client = HTTPClient()
        defer { client.shutdown() }

        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.execute(HTTPRequest(url: "http://127.0.0.1:\(listener.port)/"))
        }
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test func shutdownFailsRunningAndLaterRequests() async throws {
        let listener = try RawSocket(listening: true)
        let client = HTTPClient(maxConcurrentRequests: 1)

        let running = Task {
            try await client.execute(HTTPRequest(url: "http://127.0.0.1:\(listener.port)/a", timeout: .seconds(120)))
        }
        let connection = try await listener.acceptOne()
        let queued = Task {
            try await client.execute(HTTPRequest(url: "http://127.0.0.1:\(listener.port)/b", timeout: .seconds(120)))
        }
        // Let the second request reach the queue (or find the client shut down: either way it must fail
        // with .shutdown, never hang).
        client.shutdown()
        client.shutdown()

        for task in [running, queued] {
            let error = await #expect(throws: HTTPClientError.self) { try await task.value }
            #expect(error?.kind == .shutdown)
            #expect(error?.description.contains("shut down") == true)
        }
        #expect(await connection.waitForPeerClose(seconds: 10))

        let later = await #expect(throws: HTTPClientError.self) {
            try await client.execute(HTTPRequest(url: "http://127.0.0.1:\(listener.port)/c"))
        }
        #expect(later?.kind == .shutdown)
    }

    @Test func droppingTheClientEndsItsThread() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        weak var weakClient: HTTPClient?
        do {
            let client = HTTPClient()
            weakClient = client
            let response = try await client.execute(HTTPRequest(url: "\(server.baseURL)/hello"))
            #expect(response.status == 200)
        }
        #expect(weakClient == nil)
    }
}
