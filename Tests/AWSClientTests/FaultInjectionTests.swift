import Foundation
import InMemoryLogging
import Logging
import Testing

@testable import AWSClient

/// The client against a local server that misbehaves on purpose (Fixtures/servers/fault_server.py).
/// Sleeps are recorded, not slept, so the retry waits cost no time.
@Suite("Retries and errors against a faulty server")
struct FaultInjectionTests {
    struct Run {
        let server: PythonServer
        let runId = UUID().uuidString.lowercased()
        let recorder: SleepRecorder
        let client: AWSClient

        init(
            _ server: PythonServer, scenario: String, policy: RetryPolicy = .default,
            recorder: SleepRecorder = SleepRecorder(),
            logger: Logger = Logger(label: "test"), attemptTimeout: Duration = .seconds(10)
        ) {
            self.server = server
            self.recorder = recorder
            client = AWSClient(
                region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: testHTTP,
                environment: ["AWS_ENDPOINT_URL": "\(server.baseURL)/\(scenario)/\(runId)"], retryPolicy: policy,
                attemptTimeout: attemptTimeout, logger: logger, dependencies: recorder.dependencies)
        }

        func requests() async throws -> [[String: Any]] {
            let response = try await testHTTP.execute(.init(url: "\(server.baseURL)/__requests/\(runId)"))
            return try JSONSerialization.jsonObject(with: Data(response.body)) as? [[String: Any]] ?? []
        }

        func call() async throws -> XML.Element {
            try await client.query(.ec2, action: "DescribeRegions")
        }
    }

    private func expectAWSError(_ body: () async throws -> Void) async -> AWSError? {
        do {
            try await body()
            Issue.record("expected an AWSError")
            return nil
        } catch let error as AWSError {
            return error
        } catch {
            Issue.record("expected an AWSError, got \(error)")
            return nil
        }
    }

    @Test("503 twice, then 200: retried with jittered backoff, and succeeds")
    func flaky() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let run = Run(server, scenario: "flaky")
            let root = try await run.call()
            #expect(root.list("regionInfo").first?.string("regionName") == "us-east-1")
            #expect(try await run.requests().count == 3)
            // random = 0.5: half of 200 ms, then half of 400 ms.
            #expect(run.recorder.delays == [.milliseconds(100), .milliseconds(200)])
        }
    }

    @Test("an HTML 503 from a proxy is retried like any 5xx")
    func html503() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let run = Run(server, scenario: "html503")
            _ = try await run.call()
            #expect(try await run.requests().count == 2)
        }
    }

    @Test("always throttled: gives up after maxAttempts with a typed throttling error")
    func throttled() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            for scenario in ["throttle", "ec2limit"] {
                let run = Run(server, scenario: scenario)
                let failure = await expectAWSError { _ = try await run.call() }
                #expect(failure?.kind == .throttling)
                #expect(failure?.isThrottling == true)
                #expect(failure?.attempts == 5)
                #expect(failure?.code == (scenario == "throttle" ? "Throttling" : "RequestLimitExceeded"))
                #expect(failure?.requestId?.hasPrefix("req-") == true)
                #expect(try await run.requests().count == 5)
                #expect(
                    run.recorder.delays == [
                        .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                    ])
            }
        }
    }

    @Test("the total-time bound stops retries before the attempt bound")
    func totalTimeBound() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            // random = 1: waits of 0.2, 0.4, 0.8 s; 0.2 + 0.4 + 0.8 > 1 s, so only two waits fit.
            let policy = RetryPolicy(maxAttempts: 10, baseDelay: .milliseconds(200), maxTotalTime: .seconds(1))
            let run = Run(server, scenario: "throttle", policy: policy, recorder: SleepRecorder(random: 1))
            let failure = await expectAWSError { _ = try await run.call() }
            #expect(failure?.attempts == 3)
            #expect(try await run.requests().count == 3)
            #expect(run.recorder.delays == [.milliseconds(200), .milliseconds(400)])
        }
    }

    @Test("a non-throttling 4xx is not retried: exactly one request")
    func clientErrorNotRetried() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let run = Run(server, scenario: "badrequest")
            let failure = await expectAWSError { _ = try await run.call() }
            #expect(failure?.kind == .clientError)
            #expect(failure?.httpStatus == 400)
            #expect(failure?.code == "InvalidParameterValue")
            #expect(failure?.message == "Value (x) for parameter y is invalid")
            #expect(failure?.requestId == "req-InvalidParameterValue")
            #expect(failure?.service == "EC2")
            #expect(failure?.operation == "DescribeRegions")
            #expect(failure?.attempts == 1)
            #expect(try await run.requests().count == 1)
            #expect(run.recorder.delays.isEmpty)
        }
    }

    @Test("authentication failure and access denied are typed and not retried")
    func authAndDenied() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let auth = Run(server, scenario: "authfail")
            let authError = await expectAWSError { _ = try await auth.call() }
            #expect(authError?.isAuthenticationFailure == true)
            #expect(authError?.code == "AuthFailure")
            #expect(try await auth.requests().count == 1)

            let denied = Run(server, scenario: "denied")
            let deniedError = await expectAWSError { _ = try await denied.call() }
            #expect(deniedError?.isAccessDenied == true)
            #expect(deniedError?.code == "UnauthorizedOperation")
            #expect(try await denied.requests().count == 1)
        }
    }

    @Test("requests are signed POSTs with the form body")
    func requestShape() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let run = Run(server, scenario: "flaky")
            let start = run.recorder.clock.now
            _ = try await run.call()
            let first = try #require(try await run.requests().first)
            let headers = (first["headers"] as? [String: String] ?? [:]).reduce(into: [String: String]()) {
                $0[$1.key.lowercased()] = $1.value
            }
            #expect(first["body"] as? String == "Action=DescribeRegions&Version=2016-11-15")
            #expect(headers["content-type"] == "application/x-www-form-urlencoded; charset=utf-8")
            #expect(headers["authorization"]?.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDTESTCLIENT/") == true)
            #expect(headers["authorization"]?.contains("/us-east-1/ec2/aws4_request") == true)
            #expect(headers["x-amz-security-token"] == testCredentials.sessionToken)
            #expect(headers["x-amz-date"] == UTCTime.amzDate(start))
        }
    }

    @Test("a host clock an hour off is corrected from the server's Date header")
    func clockSkew() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let behind = ManualClock(Date().addingTimeInterval(-3600))
            let run = Run(server, scenario: "skew", recorder: SleepRecorder(clock: behind))
            _ = try await run.call()
            let requests = try await run.requests()
            #expect(requests.count == 2)
            #expect(run.recorder.delays.isEmpty)
            // Later calls sign with the corrected clock straight away.
            _ = try await run.call()
            #expect(try await run.requests().count == 3)
        }
    }

    @Test("a timed-out attempt is retried")
    func timeoutRetried() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let run = Run(server, scenario: "slowfirst", attemptTimeout: .seconds(1))
            _ = try await run.call()
            #expect(try await run.requests().count == 2)
            #expect(run.recorder.delays.count == 1)
        }
    }

    @Test("connection refused: retried, then a transport error")
    func connectionRefused() async throws {
        let closed = try await withPythonServer("fault_server.py") { $0.baseURL }
        let recorder = SleepRecorder()
        let client = AWSClient(
            region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: testHTTP,
            environment: ["AWS_ENDPOINT_URL": closed], dependencies: recorder.dependencies)
        let failure = await expectAWSError { _ = try await client.query(.ec2, action: "DescribeRegions") }
        #expect(failure?.kind == .transport)
        #expect(failure?.attempts == 5)
        #expect(recorder.delays.count == 4)
    }

    @Test("cancellation during a backoff wait ends the call promptly")
    func cancelDuringBackoff() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let runId = UUID().uuidString
            let slept = AsyncStream<Void>.makeStream()
            let deps = AWSClientDependencies(
                now: { Date() },
                sleep: { duration in
                    slept.continuation.yield()
                    try await Task.sleep(for: duration)
                }, random: { 1 })
            let client = AWSClient(
                region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: testHTTP,
                environment: ["AWS_ENDPOINT_URL": "\(server.baseURL)/throttle/\(runId)"],
                retryPolicy: RetryPolicy(
                    baseDelay: .seconds(3600), maxDelay: .seconds(3600), maxTotalTime: .seconds(86_400)),
                dependencies: deps)
            let task = Task { try await client.query(.ec2, action: "DescribeRegions") }
            var iterator = slept.stream.makeAsyncIterator()
            await iterator.next()  // the first wait (an hour) has begun
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
        }
    }

    @Test("JSON protocol: throttling retried, then the answer decoded")
    func jsonPath() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let run = Run(server, scenario: "jsonthrottle")
            struct Input: Encodable { var Name: String }
            struct Output: Decodable {
                struct Parameter: Decodable {
                    var Name: String
                    var Value: String
                }
                var Parameter: Parameter
            }
            let output = try await run.client.json(
                .ssm, operation: "GetParameter", input: Input(Name: "n"), output: Output.self)
            #expect(output.Parameter.Value == "v")
            let requests = try await run.requests()
            #expect(requests.count == 2)
            let headers = (requests[0]["headers"] as? [String: String] ?? [:]).reduce(into: [String: String]()) {
                $0[$1.key.lowercased()] = $1.value
            }
            #expect(headers["x-amz-target"] == "AmazonSSM.GetParameter")
            #expect(headers["content-type"] == "application/x-amz-json-1.1")
            #expect(requests[0]["body"] as? String == #"{"Name":"n"}"#)
        }
    }

    @Test("secrets never reach error descriptions or log output")
    func noSecretsInErrorsOrLogs() async throws {
        try await withPythonServer("fault_server.py") { (server: PythonServer) async throws in
            let handler = InMemoryLogHandler()
            var logger = Logger(label: "aws-test") { _ in handler }
            logger.logLevel = .trace
            let secret = testCredentials.secretAccessKey
            let token = testCredentials.sessionToken!

            // The server echoes the session token and a configured text holding the secret, raw and encoded.
            let echo = Run(server, scenario: "echo", logger: logger)
            let config = "leak \(secret) \(URIEncoding.encode(token)) \(URIEncoding.encode(URIEncoding.encode(secret)))"
            _ = try await testHTTP.execute(
                .init(method: "POST", url: "\(server.baseURL)/__config/\(echo.runId)", body: Array(config.utf8)))
            let echoError = await expectAWSError { _ = try await echo.call() }
            let flaky = Run(server, scenario: "flaky", logger: logger)
            _ = try await flaky.call()
            let auth = Run(server, scenario: "authfail", logger: logger)
            let authError = await expectAWSError { _ = try await auth.call() }

            let texts = [echoError, authError].compactMap { $0 }.flatMap {
                [$0.description, $0.message, "\($0)", String(reflecting: $0)]
            }
            #expect(texts.count == 8)
            #expect(echoError?.message.contains("leak") == true)
            #expect(echoError?.message.contains("<redacted>") == true)
            let entries = handler.entries
            #expect(entries.contains { $0.level == .warning && "\($0.message)".contains("retry 1 of 4") })
            let logTexts = entries.map { "\($0.message) \($0.metadata)" }
            for text in texts + logTexts {
                for forbidden in [secret, token, URIEncoding.encode(secret), URIEncoding.encode(token)] {
                    #expect(!text.contains(forbidden), "leaked in: \(text)")
                }
            }
        }
    }
}
