import Foundation
import HTTPTransport
import Logging
import Testing

@testable import AWSClient

/// Records the retry sleeps instead of sleeping, and moves a manual clock by them.
final class SleepRecorder: @unchecked Sendable {
    // Invariant: `recorded` is only accessed under `lock`.
    private let lock = NSLock()
    private var recorded: [Duration] = []
    let clock: ManualClock
    let random: Double

    init(clock: ManualClock = ManualClock(Date()), random: Double = 0.5) {
        self.clock = clock
        self.random = random
    }

    var delays: [Duration] { lock.withLock { recorded } }

    var dependencies: AWSClientDependencies {
        AWSClientDependencies(
            now: clock.closure,
            sleep: { duration in
                try Task.checkCancellation()
                self.lock.withLock { self.recorded.append(duration) }
                self.clock.advance(by: AWSClient.seconds(duration))
            },
            random: { self.random })
    }
}

/// The real curl client, shared by every test in the process (it shuts down with the process).
let testHTTP = HTTPClient(logger: Logger(label: "aws-test-http"))

let testCredentials = AWSCredentials(
    accessKeyId: "AKIDTESTCLIENT", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY",
    sessionToken: "FQoGZXIvYXdzEXAMPLE//SESSION+TOKEN=")

func uniqueName(_ prefix: String) -> String {
    prefix + "-" + UUID().uuidString.lowercased().prefix(8)
}

/// Cleanup steps registered as resources are created, run in reverse order at the end of a test
/// whether it passed or not. A failing step is recorded and the others still run.
actor Cleanup {
    private var steps: [(String, @Sendable () async throws -> Void)] = []

    func add(_ what: String, _ step: @escaping @Sendable () async throws -> Void) {
        steps.append((what, step))
    }

    func run() async {
        for (what, step) in steps.reversed() {
            do {
                try await step()
            } catch {
                print("cleanup of \(what) failed: \(error)")
            }
        }
        steps.removeAll()
    }
}

/// Runs `body`, then the cleanup, and rethrows the body's error.
func withCleanup<T>(_ body: (Cleanup) async throws -> T) async throws -> T {
    let cleanup = Cleanup()
    do {
        let value = try await body(cleanup)
        await cleanup.run()
        return value
    } catch {
        await cleanup.run()
        throw error
    }
}

enum TestEnvironment {
    static let motoEndpoint = ProcessInfo.processInfo.environment["AWS_ENDPOINT_URL"]
    static let motoAuthEndpoint = ProcessInfo.processInfo.environment["MOTO_AUTH_ENDPOINT_URL"]
}

/// A client on the moto server (AWS_ENDPOINT_URL) with throwaway keys; sleeps are recorded, not slept.
func motoAWS(region: String = "us-east-1", http: any HTTPExecuting = testHTTP) -> AWSClient {
    AWSClient(
        region: region,
        credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKIDMOTO", secretAccessKey: "moto-secret")),
        http: http, environment: ["AWS_ENDPOINT_URL": TestEnvironment.motoEndpoint ?? ""],
        dependencies: SleepRecorder().dependencies)
}

/// moto's whole state, `GET /moto-api/data.json` (what was sent by SES and SNS, among the rest).
///
/// moto builds this by walking every model while other requests may be changing them; when another
/// suite is busy it sometimes answers 500. Such an answer is asked again, a few times.
func motoData(endpoint given: String? = nil) async throws -> [String: Any] {
    let endpoint = try #require(given ?? TestEnvironment.motoEndpoint)
    var response: HTTPResponse
    var attempt = 0
    repeat {
        attempt += 1
        response = try await testHTTP.execute(
            HTTPRequest(url: endpoint + "/moto-api/data.json", timeout: .seconds(60), maxBodyBytes: 256 << 20))
    } while response.status == 500 && attempt < 5
    #expect(response.status == 200, "moto-api/data.json: \(response.bodyString.prefix(300))")
    #expect(!response.bodyTruncated)
    return try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
}
