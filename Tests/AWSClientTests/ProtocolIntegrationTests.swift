import Foundation
import Testing

@testable import AWSClient

/// The generic paths the other service clients build on, each with one real call against moto:
/// `query` (SNS), `json` (SSM, JSON 1.1) and `restXML` (Route 53, a global service).
@Suite("Generic protocols against moto", .enabled(if: TestEnvironment.motoEndpoint != nil))
struct ProtocolIntegrationTests {
    let aws = AWSClient(
        region: "us-west-2",
        credentials: StaticCredentialProvider(AWSCredentials(accessKeyId: "AKIDMOTO", secretAccessKey: "moto-secret")),
        http: testHTTP, environment: ["AWS_ENDPOINT_URL": TestEnvironment.motoEndpoint ?? ""],
        dependencies: SleepRecorder().dependencies)

    @Test("query: SNS CreateTopic, ListTopics (member lists), DeleteTopic")
    func snsQuery() async throws {
        let name = uniqueName("fleet-topic")
        let created = try await aws.query(.sns, action: "CreateTopic", parameters: QueryParameters(["Name": name]))
        let arn = try #require(created.first(named: "TopicArn")?.text)
        #expect(arn.hasSuffix(":\(name)"))
        #expect(arn.contains(":us-west-2:"))
        let listed = try await aws.query(.sns, action: "ListTopics")
        let arns = listed.first(named: "Topics")?.all("member").compactMap { $0.string("TopicArn") } ?? []
        #expect(arns.contains(arn))
        _ = try await aws.query(.sns, action: "DeleteTopic", parameters: QueryParameters(["TopicArn": arn]))
    }

    @Test("json: SSM PutParameter and GetParameter; a missing parameter is a typed error")
    func ssmJSON() async throws {
        struct Put: Encodable {
            var Name: String
            var Value: String
            var `Type` = "String"
            var Overwrite = true
        }
        struct Get: Encodable { var Name: String }
        struct GetOutput: Decodable {
            struct Parameter: Decodable {
                var Name: String
                var Value: String
                var Version: Int
            }
            var Parameter: Parameter
        }
        struct Empty: Decodable {}
        let name = "/fleet/test/\(uniqueName("param"))"
        _ = try await aws.json(.ssm, operation: "PutParameter", input: Put(Name: name, Value: "v1"), output: Empty.self)
        let got = try await aws.json(.ssm, operation: "GetParameter", input: Get(Name: name), output: GetOutput.self)
        #expect(got.Parameter.Value == "v1")
        #expect(got.Parameter.Version == 1)
        _ = try await aws.json(.ssm, operation: "DeleteParameter", input: Get(Name: name), output: Empty.self)
        do {
            _ = try await aws.json(.ssm, operation: "GetParameter", input: Get(Name: name), output: GetOutput.self)
            Issue.record("expected ParameterNotFound")
        } catch let error as AWSError {
            #expect(error.code == "ParameterNotFound")
            #expect(error.kind == .clientError)
            #expect(error.service == "SSM")
        }
    }

    @Test("restXML: Route 53 CreateHostedZone, GetHostedZone, DeleteHostedZone")
    func route53RestXML() async throws {
        let zone = "\(uniqueName("fleet")).example.com"
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
              <Name>\(XML.escape(zone))</Name><CallerReference>\(UUID().uuidString)</CallerReference>
            </CreateHostedZoneRequest>
            """
        let created = try #require(
            try await aws.restXML(
                .route53, operation: "CreateHostedZone", method: "POST", path: "/2013-04-01/hostedzone",
                body: Array(body.utf8)))
        let rawId = try #require(created[path: "HostedZone", "Id"]?.text)
        let id = String(rawId.split(separator: "/").last ?? "")
        #expect(!id.isEmpty)
        let fetched = try #require(
            try await aws.restXML(
                .route53, operation: "GetHostedZone", method: "GET", path: "/2013-04-01/hostedzone/\(id)"))
        #expect(fetched[path: "HostedZone", "Name"]?.text.hasPrefix(zone) == true)
        _ = try await aws.restXML(
            .route53, operation: "DeleteHostedZone", method: "DELETE", path: "/2013-04-01/hostedzone/\(id)")
        do {
            _ = try await aws.restXML(
                .route53, operation: "GetHostedZone", method: "GET", path: "/2013-04-01/hostedzone/\(id)")
            Issue.record("expected NoSuchHostedZone")
        } catch let error as AWSError {
            #expect(error.code == "NoSuchHostedZone")
            #expect(error.httpStatus == 404)
        }
    }
}
