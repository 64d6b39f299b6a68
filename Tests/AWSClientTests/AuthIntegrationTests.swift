import Foundation
import InMemoryLogging
import Logging
import Testing

@testable import AWSClient

/// Against the moto server that verifies signatures with botocore and enforces IAM
/// (MOTO_AUTH_ENDPOINT_URL). The first 4 requests after a reset are free: they create an admin user,
/// its key and an allow-everything policy, plus a second, limited user. Everything after is verified.
@Suite("Signatures and IAM against moto", .enabled(if: TestEnvironment.motoAuthEndpoint != nil), .serialized)
struct AuthIntegrationTests {
    let endpoint = TestEnvironment.motoAuthEndpoint ?? ""

    func client(_ credentials: AWSCredentials, logger: Logger = Logger(label: "auth-test")) -> AWSClient {
        AWSClient(
            region: "us-east-1", credentials: StaticCredentialProvider(credentials), http: testHTTP,
            environment: ["AWS_ENDPOINT_URL": endpoint], logger: logger, dependencies: SleepRecorder().dependencies)
    }

    func resetAuth(freeCalls: Int) async throws {
        let response = try await testHTTP.execute(
            .init(
                method: "POST", url: endpoint + "/moto-api/reset-auth", headers: [("Content-Type", "text/plain")],
                body: Array(String(freeCalls).utf8)))
        #expect(response.status == 200)
    }

    func createAccessKey(_ iam: AWSClient, user: String) async throws -> AWSCredentials {
        let root = try await iam.query(.iam, action: "CreateAccessKey", parameters: QueryParameters(["UserName": user]))
        return AWSCredentials(
            accessKeyId: try #require(root.first(named: "AccessKeyId")?.text),
            secretAccessKey: try #require(root.first(named: "SecretAccessKey")?.text))
    }

    func putPolicy(_ iam: AWSClient, user: String, actions: [String]) async throws {
        let quoted = actions.map { "\"\($0)\"" }.joined(separator: ",")
        let document =
            #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[\#(quoted)],"Resource":"*"}]}"#
        _ = try await iam.query(
            .iam, action: "PutUserPolicy",
            parameters: QueryParameters(["UserName": user, "PolicyName": "fleet-test", "PolicyDocument": document]))
    }

    func expectKind(_ kind: AWSError.Kind, _ body: () async throws -> Void) async -> AWSError? {
        do {
            try await body()
            Issue.record("expected \(kind)")
        } catch let error as AWSError {
            #expect(error.kind == kind, "\(error)")
            #expect(error.attempts == 1, "auth and permission errors are not retried")
            return error
        } catch {
            Issue.record("unexpected \(error)")
        }
        return nil
    }

    @Test("signed calls pass; a wrong secret is an authentication failure; a denied action is AccessDenied")
    func signaturesAndPermissions() async throws {
        try await resetAuth(freeCalls: 4)
        let admin = uniqueName("fleet-admin")
        let limited = uniqueName("fleet-limited")
        // The four free calls (not verified, so any key will do).
        let bootstrap = client(AWSCredentials(accessKeyId: "AKIDBOOTSTRAP", secretAccessKey: "unused"))
        _ = try await bootstrap.query(.iam, action: "CreateUser", parameters: QueryParameters(["UserName": admin]))
        let adminKey = try await createAccessKey(bootstrap, user: admin)
        try await putPolicy(bootstrap, user: admin, actions: ["*"])
        _ = try await bootstrap.query(.iam, action: "CreateUser", parameters: QueryParameters(["UserName": limited]))

        // From here on every request is verified.
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "auth-test") { _ in handler }
        logger.logLevel = .trace
        let adminAWS = client(adminKey, logger: logger)
        let iam = adminAWS
        let limitedKey = try await createAccessKey(iam, user: limited)
        try await putPolicy(iam, user: limited, actions: ["ec2:DescribeInstances"])

        try await withCleanup { cleanup in
            // Cleanup runs in reverse: the limited user (by the admin), then the admin itself with three
            // free calls (once its policy is gone it may not delete itself), leaving the counter at 0.
            let deleteUser: @Sendable (AWSClient, String, AWSCredentials) async throws -> Void = { iam, user, key in
                _ = try await iam.query(
                    .iam, action: "DeleteAccessKey",
                    parameters: QueryParameters(["UserName": user, "AccessKeyId": key.accessKeyId]))
                _ = try await iam.query(
                    .iam, action: "DeleteUserPolicy",
                    parameters: QueryParameters(["UserName": user, "PolicyName": "fleet-test"]))
                _ = try await iam.query(.iam, action: "DeleteUser", parameters: QueryParameters(["UserName": user]))
            }
            await cleanup.add("user \(admin)") {
                try await resetAuth(freeCalls: 3)
                try await deleteUser(bootstrap, admin, adminKey)
            }
            await cleanup.add("user \(limited)") { try await deleteUser(iam, limited, limitedKey) }

            // Correctly signed calls succeed (Query protocol, EC2 and IAM).
            let ec2 = EC2Client(adminAWS)
            _ = try await ec2.describeInstances()
            _ = try await ec2.describeInstanceStatus()
            let user = try await iam.query(.iam, action: "GetUser", parameters: QueryParameters(["UserName": limited]))
            #expect(user.first(named: "UserName")?.text == limited)

            // A wrong secret: typed authentication failure, no retry, no secret in the text.
            var wrong = adminKey
            wrong.secretAccessKey = "not-the-secret-" + UUID().uuidString
            let authError = await expectKind(.authentication) {
                _ = try await EC2Client(client(wrong, logger: logger)).describeInstances()
            }
            #expect(authError?.isAuthenticationFailure == true)
            #expect(authError?.description.contains(wrong.secretAccessKey) == false)

            // An unknown access key: also an authentication failure.
            let unknown = AWSCredentials(accessKeyId: "AKIDNOSUCHKEY0000000", secretAccessKey: "whatever")
            _ = await expectKind(.authentication) { _ = try await EC2Client(client(unknown)).describeInstances() }

            // The limited user may describe but not launch or tag.
            let limitedEC2 = EC2Client(client(limitedKey, logger: logger))
            _ = try await limitedEC2.describeInstances()
            let denied = await expectKind(.accessDenied) {
                _ = try await limitedEC2.runInstance(
                    RunInstancesInput(imageId: "ami-12345678", instanceType: "t3.micro"))
            }
            #expect(denied?.isAccessDenied == true)
            #expect(denied?.operation == "RunInstances")
            _ = await expectKind(.accessDenied) {
                try await limitedEC2.createTags(resourceIds: ["i-0123456789abcdef0"], tags: ["a": "b"])
            }

            // Nothing secret reached the logs.
            let logText = handler.entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
            #expect(!handler.entries.isEmpty)
            for secret in [adminKey.secretAccessKey, limitedKey.secretAccessKey, wrong.secretAccessKey] {
                #expect(!logText.contains(secret))
            }
        }
    }
}
