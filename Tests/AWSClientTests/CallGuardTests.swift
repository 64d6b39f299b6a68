import Foundation
import HTTPTransport
import Synchronization
import Testing

@testable import AWSClient

/// `AWSCallGuard`: the actuator's rules for re-sending a mutation (issue 14, gap 7). Without the guard the
/// client re-sends every 5xx and timeout up to its retry policy, whatever happened meanwhile.
@Suite("AWS call guard: lease check before every re-send, no blind re-send of non-idempotent calls")
struct CallGuardTests {
    struct LeaseGone: Error {}

    /// Fails the first `failures` requests with `status` (or a transport error when nil), then answers 200.
    final class Flaky: HTTPExecuting, Sendable {
        let failures: Int
        let status: Int?
        let transport: HTTPClientError.Kind
        let sent = Mutex(0)
        init(failures: Int, status: Int?, transport: HTTPClientError.Kind = .timeout) {
            self.failures = failures
            self.status = status
            self.transport = transport
        }
        func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
            let n = sent.withLock {
                $0 += 1
                return $0
            }
            let timing = HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero)
            if n <= failures {
                guard let status else { throw HTTPClientError(kind: transport, url: request.url) }
                let code = status == 400 ? "RequestLimitExceeded" : "InternalError"
                let body =
                    "<Response><Errors><Error><Code>\(code)</Code><Message>m</Message></Error></Errors></Response>"
                return HTTPResponse(status: status, headers: [], body: Array(body.utf8), timing: timing)
            }
            let ok = "<DescribeRegionsResponse><regionInfo/></DescribeRegionsResponse>"
            return HTTPResponse(status: 200, headers: [], body: Array(ok.utf8), timing: timing)
        }
    }

    func call(_ transport: Flaky, _ callGuard: AWSCallGuard?) async throws {
        let client = fakeAWS(transport)
        _ = try await AWSCallGuard.$current.withValue(callGuard) {
            try await client.query(.ec2, action: "DescribeRegions")
        }
    }

    @Test("the guard runs before every re-send; when it throws, nothing more is sent")
    func leaseCheckedBeforeEveryResend() async throws {
        let checks = Mutex(0)
        let transport = Flaky(failures: 2, status: 503)
        try await call(transport, AWSCallGuard(idempotent: true) { _ in checks.withLock { $0 += 1 } })
        #expect(transport.sent.withLock { $0 } == 3)
        #expect(checks.withLock { $0 } == 2, "one check before each of the two re-sends")

        let stale = Flaky(failures: 1, status: 503)
        await #expect(throws: LeaseGone.self) {
            try await call(stale, AWSCallGuard(idempotent: true) { _ in throw LeaseGone() })
        }
        #expect(stale.sent.withLock { $0 } == 1, "the lease was gone: the retry was never sent")
    }

    @Test("a non-idempotent call is not re-sent after a 5xx or a timeout: AWS may have acted on it")
    func nonIdempotentNotResentAfterAmbiguousAnswer() async throws {
        for transport in [Flaky(failures: 1, status: 500), Flaky(failures: 1, status: nil, transport: .timeout)] {
            do {
                try await call(transport, AWSCallGuard(idempotent: false) { _ in })
                Issue.record("expected the ambiguous failure to reach the caller")
            } catch let error as AWSError {
                #expect(error.kind.mayHaveActed)
            }
            #expect(transport.sent.withLock { $0 } == 1)
        }
        // Without a guard the client's own policy re-sends it (the old behaviour, kept for reads).
        let unguarded = Flaky(failures: 1, status: 500)
        try await call(unguarded, nil)
        #expect(unguarded.sent.withLock { $0 } == 2)
    }

    @Test("a non-idempotent call is re-sent when AWS certainly did not act: throttled, or no connection")
    func nonIdempotentResentWhenRefused() async throws {
        for transport in [
            Flaky(failures: 1, status: 400), Flaky(failures: 1, status: nil, transport: .couldNotConnect),
        ] {
            try await call(transport, AWSCallGuard(idempotent: false) { _ in })
            #expect(transport.sent.withLock { $0 } == 2)
        }
    }
}
