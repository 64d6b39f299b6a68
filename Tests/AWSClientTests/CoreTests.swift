import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

@Suite("Endpoints and regions")
struct EndpointTests {
    @Test("real endpoints: regional, global (signed for us-east-1), China")
    func realEndpoints() {
        let cases: [(AWSService, String, String, String)] = [
            (.ec2, "eu-west-1", "https://ec2.eu-west-1.amazonaws.com", "eu-west-1"),
            (.cloudWatch, "us-west-2", "https://monitoring.us-west-2.amazonaws.com", "us-west-2"),
            (.ses, "us-east-1", "https://email.us-east-1.amazonaws.com", "us-east-1"),
            (.sns, "ap-south-1", "https://sns.ap-south-1.amazonaws.com", "ap-south-1"),
            (.ssm, "us-east-2", "https://ssm.us-east-2.amazonaws.com", "us-east-2"),
            (.dynamoDB, "us-west-2", "https://dynamodb.us-west-2.amazonaws.com", "us-west-2"),
            (.route53, "eu-central-1", "https://route53.amazonaws.com", "us-east-1"),
            (.iam, "us-west-2", "https://iam.amazonaws.com", "us-east-1"),
            (.ec2, "cn-north-1", "https://ec2.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ]
        for (service, region, url, signingRegion) in cases {
            let endpoint = AWSEndpointResolver.resolve(service: service, region: region, environment: [:])
            #expect(endpoint.url == url, "\(service)")
            #expect(endpoint.signingRegion == signingRegion, "\(service)")
            #expect(!endpoint.isCustom)
        }
    }

    @Test("AWS_ENDPOINT_URL_<SERVICE> beats AWS_ENDPOINT_URL; both beat the real endpoint")
    func overrides() {
        #expect(AWSService.route53.endpointVariable == "AWS_ENDPOINT_URL_ROUTE_53")
        #expect(AWSService.cloudWatch.endpointVariable == "AWS_ENDPOINT_URL_CLOUDWATCH")
        #expect(AWSService.dynamoDB.endpointVariable == "AWS_ENDPOINT_URL_DYNAMODB")
        let env = [
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000/",
            "AWS_ENDPOINT_URL_SNS": "http://localhost:4566",
            "AWS_ENDPOINT_URL_ROUTE_53": "http://r53.local:9000",
        ]
        let ec2 = AWSEndpointResolver.resolve(service: .ec2, region: "us-west-2", environment: env)
        #expect(ec2 == AWSEndpoint(url: "http://127.0.0.1:5000", signingRegion: "us-west-2", isCustom: true))
        #expect(
            AWSEndpointResolver.resolve(service: .sns, region: "us-west-2", environment: env).url
                == "http://localhost:4566")
        let r53 = AWSEndpointResolver.resolve(service: .route53, region: "us-west-2", environment: env)
        #expect(r53.url == "http://r53.local:9000")
        #expect(r53.signingRegion == "us-east-1")
        var ignored = env
        ignored["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
        #expect(
            AWSEndpointResolver.resolve(service: .ec2, region: "us-west-2", environment: ignored).url
                == "https://ec2.us-west-2.amazonaws.com")
        #expect(
            AWSEndpointResolver.resolve(service: .ec2, region: "us-west-2", environment: ["AWS_ENDPOINT_URL": ""]).url
                == "https://ec2.us-west-2.amazonaws.com")
    }

    @Test("region: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's region")
    func region() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("aws-region-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("config")
        try "[default]\nregion = eu-west-3\n[profile dr]\nregion = us-west-2\n".write(
            to: config, atomically: true, encoding: .utf8)
        let base = ["AWS_CONFIG_FILE": config.path, "HOME": dir.path]
        #expect(AWSEndpointResolver.region(environment: base) == "eu-west-3")
        #expect(AWSEndpointResolver.region(environment: base.merging(["AWS_PROFILE": "dr"]) { $1 }) == "us-west-2")
        #expect(
            AWSEndpointResolver.region(environment: base.merging(["AWS_DEFAULT_REGION": "ap-south-1"]) { $1 })
                == "ap-south-1")
        #expect(
            AWSEndpointResolver.region(
                environment: base.merging(["AWS_DEFAULT_REGION": "ap-south-1", "AWS_REGION": "sa-east-1"]) { $1 })
                == "sa-east-1")
        #expect(AWSEndpointResolver.region(environment: ["HOME": dir.appendingPathComponent("none").path]) == nil)
    }

    @Test("withRegion keeps everything but the region")
    func withRegion() {
        let primary = AWSClient(
            region: "us-east-1", credentials: StaticCredentialProvider(testCredentials), http: testHTTP,
            environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:5000"])
        let dr = primary.withRegion("us-west-2")
        #expect(dr.region == "us-west-2")
        #expect(primary.region == "us-east-1")
        #expect(dr.endpoint(for: .ec2).signingRegion == "us-west-2")
        #expect(dr.environment == primary.environment)
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test("full jitter: random × min(cap, base × 2^(n-1))")
    func delays() {
        let policy = RetryPolicy(maxAttempts: 10, baseDelay: .milliseconds(200), maxDelay: .seconds(10))
        #expect(policy.delay(beforeRetry: 1, random: 1) == .milliseconds(200))
        #expect(policy.delay(beforeRetry: 2, random: 1) == .milliseconds(400))
        #expect(policy.delay(beforeRetry: 3, random: 0.5) == .milliseconds(400))
        #expect(policy.delay(beforeRetry: 7, random: 1) == .seconds(10))  // 12.8 s capped
        #expect(policy.delay(beforeRetry: 60, random: 1) == .seconds(10))
        #expect(policy.delay(beforeRetry: 4, random: 0) == .zero)
        for retry in 1...8 {
            for r in stride(from: 0.0, through: 0.99, by: 0.11) {
                #expect(policy.delay(beforeRetry: retry, random: r) <= policy.delay(beforeRetry: retry, random: 1))
            }
        }
    }

    @Test("what is retried")
    func classification() {
        for code in [
            "RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException",
            "ProvisionedThroughputExceededException", "RequestThrottled", "SlowDown",
        ] {
            #expect(RetryPolicy.isRetryable(status: 400, code: code), "\(code)")
            #expect(AWSError.kind(status: 400, code: code) == .throttling, "\(code)")
        }
        #expect(RetryPolicy.isRetryable(status: 429, code: nil))
        #expect(RetryPolicy.isRetryable(status: 500, code: "InternalError"))
        #expect(RetryPolicy.isRetryable(status: 503, code: nil))
        #expect(!RetryPolicy.isRetryable(status: 400, code: "InvalidParameterValue"))
        #expect(!RetryPolicy.isRetryable(status: 401, code: "AuthFailure"))
        #expect(!RetryPolicy.isRetryable(status: 403, code: "AccessDenied"))
        #expect(!RetryPolicy.isRetryable(status: 404, code: nil))
    }

    @Test("error kinds: authentication and access denied are told apart")
    func kinds() {
        for code in ["AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"] {
            #expect(AWSError.kind(status: 400, code: code) == .authentication, "\(code)")
        }
        for code in ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation"] {
            #expect(AWSError.kind(status: 400, code: code) == .accessDenied, "\(code)")
        }
        #expect(AWSError.kind(status: 401, code: nil) == .authentication)
        #expect(AWSError.kind(status: 403, code: nil) == .accessDenied)
        #expect(AWSError.kind(status: 400, code: "InvalidAMIID.NotFound") == .clientError)
        #expect(AWSError.kind(status: 502, code: nil) == .serverError)
    }

    @Test("error codes from headers and JSON types")
    func codes() {
        #expect(
            AWSClient.shortCode("com.amazonaws.dynamodb.v20120810#ResourceNotFoundException")
                == "ResourceNotFoundException")
        #expect(AWSClient.shortCode("ThrottlingException:http://internal.amazon.com/coral/") == "ThrottlingException")
        #expect(AWSClient.shortCode("AccessDenied") == "AccessDenied")
    }
}

@Suite("XML reader")
struct XMLTests {
    @Test("elements, attributes, namespaces, entities, CDATA, comments")
    func parse() throws {
        let doc = """
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <ns:Root xmlns:ns="urn:x" a="1 &amp; 2">
              <item id='x'>a &lt;b&gt; &quot;c&quot; &apos;d&apos; &#65;&#x42; &#x1F600;</item>
              <item><![CDATA[<raw> & ]]>tail</item>
              <empty/>
              <empty2 b="c" />
            </ns:Root>
            """
        let root = try XML.parse(doc)
        #expect(root.name == "Root")
        #expect(root.attributes["a"] == "1 & 2")
        let items = root.all("item")
        #expect(items.count == 2)
        #expect(items[0].attributes["id"] == "x")
        #expect(items[0].text == "a <b> \"c\" 'd' AB 😀")
        #expect(items[1].text == "<raw> & tail")
        #expect(root["empty"]?.text == "")
        #expect(root["empty2"]?.attributes["b"] == "c")
        #expect(root.string("missing") == nil)
    }

    @Test("EC2 and Query error documents")
    func errors() throws {
        let ec2 = try XML.parse(
            "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-1' does not exist</Message></Error></Errors><RequestID>abc</RequestID></Response>"
        )
        #expect(ec2[path: "Errors", "Error", "Code"]?.text == "InvalidInstanceID.NotFound")
        #expect(ec2.first(named: "Message")?.text == "The instance ID 'i-1' does not exist")
        let response = HTTPResponse(
            status: 400, headers: [],
            body: Array(
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
                    .utf8), timing: HTTPTiming(dns: .zero, connect: .zero, tls: .zero, firstByte: .zero, total: .zero))
        let parsed = AWSClient.parseError(response, shape: .xml)
        #expect(parsed.code == "Throttling")
        #expect(parsed.message == "Rate exceeded")
        #expect(parsed.requestId == "r-1")
    }

    @Test(
        "malformed documents are rejected",
        arguments: [
            "", "text", "<a>", "<a></b>", "<a><b></a></b>", "<a>&bogus;</a>", "<a>&#xZZ;</a>", "<a x=1></a>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "<a></a><b></b>", "<a><![CDATA[x</a>",
        ])
    func malformed(_ text: String) {
        #expect(throws: XML.ParseError.self) { try XML.parse(text) }
    }

    @Test("nesting depth is bounded")
    func depth() {
        let deep = String(repeating: "<a>", count: 300) + String(repeating: "</a>", count: 300)
        #expect(throws: XML.ParseError.self) { try XML.parse(deep) }
        let ok = String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)
        #expect(throws: Never.self) { try XML.parse(ok) }
    }

    @Test("escape round-trips through the parser")
    func escape() throws {
        let text = "a<b>&\"c\"'d' ሴ"
        #expect(try XML.parse("<x>\(XML.escape(text))</x>").text == text)
    }
}

@Suite("Query parameters")
struct QueryParameterTests {
    @Test("lists, members, nested structures, RFC 3986 encoding, nils left out")
    func encoding() {
        var p = QueryParameters()
        p.set("Action", "RunInstances")
        p.set("Skip", nil as String?)
        p.set("Count", 2)
        p.set("DryRun", false)
        p.setList("InstanceId", ["i-1", "i-2"])
        p.setMemberList("Names", ["a b"])
        p.setList("Filter", [("tag:Name", ["web*", "x/y"])]) { prefix, filter, params in
            params.set("\(prefix).Name", filter.0)
            params.setList("\(prefix).Value", filter.1)
        }
        #expect(
            p.formEncoded
                == "Action=RunInstances&Count=2&DryRun=false&InstanceId.1=i-1&InstanceId.2=i-2&Names.member.1=a%20b&Filter.1.Name=tag%3AName&Filter.1.Value.1=web%2A&Filter.1.Value.2=x%2Fy"
        )
    }
}

@Suite("AWSError")
struct AWSErrorTests {
    @Test("description names the call and carries no secret, even URL-encoded")
    func scrubbed() {
        let secret = testCredentials.secretAccessKey
        let token = testCredentials.sessionToken!
        let message =
            "canonical: x-amz-security-token:\(token) key \(secret) url X-Amz-Security-Token=\(URIEncoding.encode(token))"
        let error = AWSError(
            kind: .clientError, service: "EC2", operation: "CopySnapshot", region: "us-west-2", httpStatus: 400,
            code: "InvalidParameterValue", message: AWSClient.scrub(message, secrets: testCredentials.secrets),
            requestId: "r-1", attempts: 1)
        let text = error.description
        #expect(!text.contains(secret))
        #expect(!text.contains(token))
        #expect(!text.contains(URIEncoding.encode(token)))
        #expect(text.contains("EC2 CopySnapshot in us-west-2"))
        #expect(text.contains("HTTP 400 InvalidParameterValue"))
        #expect(text.contains("r-1"))
    }
}

@Suite("Waiter")
struct WaiterTests {
    @Test("polls at the interval until done")
    func done() async throws {
        let recorder = SleepRecorder()
        let states = ["pending", "pending", "running"]
        let polls = Locked(0)
        let value = try await waitUntil(
            "thing running", timeout: .seconds(60), interval: .seconds(5), dependencies: recorder.dependencies
        ) { () -> WaiterStep<String> in
            let n = polls.withLock {
                $0 += 1
                return $0
            }
            let state = states[n - 1]
            return state == "running" ? .done(state) : .pending(state: state)
        }
        #expect(value == "running")
        #expect(recorder.delays == [.seconds(5), .seconds(5)])
    }

    @Test("times out with the last state, without sleeping past the deadline")
    func timeout() async throws {
        let recorder = SleepRecorder()
        do {
            _ = try await waitUntil(
                "thing running", timeout: .seconds(12), interval: .seconds(5), dependencies: recorder.dependencies
            ) { () -> WaiterStep<Int> in .pending(state: "pending") }
            Issue.record("expected a timeout")
        } catch let error as WaiterError {
            #expect(error.reason == .timedOut)
            #expect(error.lastState == "pending")
            #expect(error.polls == 3)
            #expect(error.description.contains("thing running"))
        }
        #expect(recorder.delays == [.seconds(5), .seconds(5)])
    }

    @Test("a failure state ends the wait at once")
    func failure() async throws {
        let recorder = SleepRecorder()
        await #expect(throws: WaiterError.self) {
            _ = try await waitUntil(
                "instance running", timeout: .seconds(60), interval: .seconds(5), dependencies: recorder.dependencies
            ) { () -> WaiterStep<Int> in .failed(state: "terminated") }
        }
        #expect(recorder.delays.isEmpty)
    }

    @Test("cancellation stops a waiter in the middle of a long real sleep")
    func cancellation() async throws {
        let polled = AsyncStream<Void>.makeStream()
        let task = Task {
            try await waitUntil("forever", timeout: .seconds(86_400), interval: .seconds(3600)) {
                () -> WaiterStep<Int> in
                polled.continuation.yield()
                return .pending(state: "pending")
            }
        }
        var iterator = polled.stream.makeAsyncIterator()
        await iterator.next()  // the first poll happened; the waiter now sleeps for an hour
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }
}
