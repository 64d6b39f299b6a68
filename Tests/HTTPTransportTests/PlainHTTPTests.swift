import Foundation
import Testing

@testable import HTTPTransport

@Suite("HTTP client against a local HTTP server")
struct PlainHTTPTests {
    @Test func getReturnsStatusHeadersAndBody() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let response = try await client.execute(HTTPRequest(url: "\(server.baseURL)/hello"))
        #expect(response.status == 200)
        #expect(response.bodyString == "hello")
        #expect(response.header("x-test") == "yes")
        #expect(response.header("Content-Type") == "text/plain")
        #expect(response.header("content-length") == "5")
        #expect(!response.bodyTruncated)
        #expect(response.certificateExpiry == nil)

        let missing = try await client.execute(HTTPRequest(url: "\(server.baseURL)/status?code=503"))
        #expect(missing.status == 503)
    }

    @Test func postAndPutSendTheBody() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let payload = Array(#"{"text":"instance i-123 recovered"}"#.utf8) + [0, 255, 13, 10]
        let post = try await client.execute(
            HTTPRequest(
                method: "POST", url: "\(server.baseURL)/echo",
                headers: [(name: "Content-Type", value: "application/json")], body: payload))
        #expect(post.status == 200)
        #expect(post.body == payload)
        #expect(post.header("X-Method") == "POST")

        let put = try await client.execute(HTTPRequest(method: "PUT", url: "\(server.baseURL)/echo", body: [1, 2, 3]))
        #expect(put.body == [1, 2, 3])
        #expect(put.header("X-Method") == "PUT")

        let delete = try await client.execute(HTTPRequest(method: "DELETE", url: "\(server.baseURL)/echo"))
        #expect(delete.header("X-Method") == "DELETE")
        #expect(delete.body.isEmpty)

        let emptyPost = try await client.execute(HTTPRequest(method: "POST", url: "\(server.baseURL)/echo"))
        #expect(emptyPost.header("X-Method") == "POST")
        #expect(emptyPost.header("X-Body-Length") == "0")

        let head = try await client.execute(HTTPRequest(method: "HEAD", url: "\(server.baseURL)/hello"))
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.header("Content-Length") == "5")
    }

    @Test func headersAreSentAsGivenWithoutCurlDefaultsForBodies() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let response = try await client.execute(
            HTTPRequest(
                method: "POST", url: "\(server.baseURL)/headers",
                headers: [(name: "X-Amz-Date", value: "20260101T000000Z"), (name: "X-Empty", value: "")],
                body: Array(repeating: 65, count: 2_000_000)))
        let lines = Set(response.bodyString.split(separator: "\n").map(String.init))
        #expect(lines.contains("x-amz-date: 20260101T000000Z"))
        #expect(lines.contains("x-empty: "))
        #expect(lines.contains("content-length: 2000000"))
        #expect(!lines.contains { $0.hasPrefix("expect:") })
        #expect(!lines.contains { $0.hasPrefix("content-type:") })
    }

    @Test func explicitExpectContinueKeepsOnlyTheFinalResponse() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let response = try await client.execute(
            HTTPRequest(
                method: "POST", url: "\(server.baseURL)/echo",
                headers: [(name: "Expect", value: "100-continue")], body: Array("body".utf8)))
        #expect(response.status == 200)
        #expect(response.bodyString == "body")
        #expect(response.headers.filter { $0.name.lowercased() == "server" }.count == 1)
    }

    @Test func bodyIsCappedAndTheRestDiscarded() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let cut = try await client.execute(HTTPRequest(url: "\(server.baseURL)/bytes?n=300000", maxBodyBytes: 1000))
        #expect(cut.status == 200)
        #expect(cut.body.count == 1000)
        #expect(cut.bodyTruncated)

        let exact = try await client.execute(HTTPRequest(url: "\(server.baseURL)/bytes?n=1000", maxBodyBytes: 1000))
        #expect(exact.body.count == 1000)
        #expect(!exact.bodyTruncated)

        let none = try await client.execute(HTTPRequest(url: "\(server.baseURL)/bytes?n=10", maxBodyBytes: 0))
        #expect(none.body.isEmpty)
        #expect(none.bodyTruncated)

        // The discarded rest was read: the connection is still usable for the next request.
        let next = try await client.execute(HTTPRequest(url: "\(server.baseURL)/hello"))
        #expect(next.bodyString == "hello")
    }

    @Test func foldedHeaderLinesAreJoined() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let response = try await client.execute(HTTPRequest(url: "\(server.baseURL)/folded"))
        #expect(response.header("X-Folded") == "first second")
        #expect(response.header("X-Plain") == "p")
        #expect(response.bodyString == "ok")
    }

    @Test func redirectsAreFollowedOnlyWhenAsked() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let notFollowed = try await client.execute(HTTPRequest(url: "\(server.baseURL)/redirect"))
        #expect(notFollowed.status == 302)
        #expect(notFollowed.header("Location") == "/hello")
        #expect(notFollowed.bodyString == "redirect body")

        let followed = try await client.execute(HTTPRequest(url: "\(server.baseURL)/redirect", followRedirects: true))
        #expect(followed.status == 200)
        #expect(followed.bodyString == "hello")
        #expect(followed.header("X-Redirect") == nil, "only the last response's headers are kept")
        #expect(followed.header("X-Test") == "yes")
    }

    @Test func timingIsOrdered() async throws {
        let server = try await TestHTTPServer()
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        // Fresh, then a new kept-alive connection, then a request that reuses it (curl reports 0 for
        // connect there).
        for fresh in [true, false, false] {
            let response = try await client.execute(
                HTTPRequest(url: "\(server.baseURL)/hello", freshConnection: fresh))
            let t = response.timing
            #expect(t.dns >= .zero)
            #expect(t.dns <= t.connect)
            #expect(t.connect <= t.firstByte)
            #expect(t.firstByte <= t.total)
            #expect(t.total > .zero)
            #expect(t.tls == .zero, "plain HTTP has no TLS handshake")
        }
    }

    @Test func serverThatNeverAnswersTimesOut() async throws {
        let silent = try RawSocket(listening: true)
        let client = HTTPClient()
        defer { client.shutdown() }

        let error = try await #require(throws: HTTPClientError.self) {
            try await client.execute(
                HTTPRequest(url: "http://127.0.0.1:\(silent.port)/probe", timeout: .milliseconds(300)))
        }
        #expect(error.kind == .timeout)
        #expect(error.description.contains("timed out"))
        #expect(error.description.contains("http://127.0.0.1:\(silent.port)"))
    }

    @Test func refusedConnectionIsCouldNotConnect() async throws {
        let closed = try RawSocket(listening: false)
        let client = HTTPClient()
        defer { client.shutdown() }

        let error = try await #require(throws: HTTPClientError.self) {
            try await client.execute(HTTPRequest(url: "http://127.0.0.1:\(closed.port)/"))
        }
        #expect(error.kind == .couldNotConnect)
        #expect(error.curlCode == 7)
    }

    @Test func badRequestsAreRejectedBeforeSending() async throws {
        let client = HTTPClient()
        defer { client.shutdown() }

        let ftp = try await #require(throws: HTTPClientError.self) {
            try await client.execute(HTTPRequest(url: "ftp://127.0.0.1/file"))
        }
        #expect(ftp.kind == .invalidURL)

        let injected = try await #require(throws: HTTPClientError.self) {
            try await client.execute(
                HTTPRequest(url: "http://127.0.0.1:1/", headers: [(name: "X-A", value: "a\r\nX-Injected: 1")]))
        }
        #expect(injected.kind == .invalidRequest)
    }
}
