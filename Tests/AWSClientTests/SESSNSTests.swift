import Foundation
import HTTPTransport
import Testing

@testable import AWSClient

/// SES SendEmail and SNS Publish: request encoding and input checks against a fake transport.
@Suite("SES and SNS encoding")
struct SESSNSEncodingTests {
    @Test("SendEmail sends sender, every recipient list, subject and both bodies as UTF-8")
    func sendEmail() async throws {
        let transport = RecordingTransport { _, _ in
            (
                200,
                "<SendEmailResponse><SendEmailResult><MessageId>m-1</MessageId></SendEmailResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SendEmailResponse>"
            )
        }
        let ses = SESClient(fakeAWS(transport, region: "eu-west-1"))
        let id = try await ses.sendEmail(
            Email(
                from: "Fleet <fleet@example.com>", to: ["a@example.com", "b@example.com"], subject: "i-1 recovered ✓",
                textBody: "plain & simple", htmlBody: "<p>rich</p>", cc: ["c@example.com"], bcc: ["d@example.com"],
                replyTo: ["ops@example.com"]))
        #expect(id == "m-1")
        let form = try #require(transport.forms.first)
        #expect(
            form == [
                "Action": "SendEmail", "Version": "2010-12-01", "Source": "Fleet <fleet@example.com>",
                "Destination.ToAddresses.member.1": "a@example.com",
                "Destination.ToAddresses.member.2": "b@example.com",
                "Destination.CcAddresses.member.1": "c@example.com",
                "Destination.BccAddresses.member.1": "d@example.com",
                "ReplyToAddresses.member.1": "ops@example.com", "Message.Subject.Data": "i-1 recovered ✓",
                "Message.Subject.Charset": "UTF-8", "Message.Body.Text.Data": "plain & simple",
                "Message.Body.Text.Charset": "UTF-8",
                "Message.Body.Html.Data": "<p>rich</p>", "Message.Body.Html.Charset": "UTF-8",
            ])
        let request = try #require(transport.requests.first)
        #expect(
            request.headers.first { $0.name == "Authorization" }?.value.contains("/eu-west-1/ses/aws4_request") == true)
    }

    @Test("SendEmail refuses, without a request, no recipients, too many, or no body")
    func sendEmailChecks() async throws {
        let transport = RecordingTransport { _, _ in (200, "") }
        let ses = SESClient(fakeAWS(transport))
        let tooMany = (0...50).map { "r\($0)@example.com" }
        for email in [
            Email(from: "f@example.com", to: [], subject: "s", textBody: "t"),
            Email(from: "f@example.com", to: tooMany, subject: "s", textBody: "t"),
            Email(from: "f@example.com", to: ["a@example.com"], subject: "s"),
        ] {
            do {
                _ = try await ses.sendEmail(email)
                Issue.record("expected a refusal")
            } catch let error as AWSError {
                #expect(error.kind == .invalidRequest)
                #expect(error.attempts == 0)
            }
        }
        #expect(transport.requests.isEmpty)
    }

    @Test("Publish sends subject and typed message attributes; numbers as their text")
    func publish() async throws {
        let transport = RecordingTransport { _, _ in
            (200, "<PublishResponse><PublishResult><MessageId>p-1</MessageId></PublishResult></PublishResponse>")
        }
        let sns = SNSClient(fakeAWS(transport))
        let id = try await sns.publish(
            SNSMessage(
                topicArn: "arn:aws:sns:us-east-1:1:t", message: "{\"a\":1}", subject: "Incident",
                attributes: [
                    "severity": .string("high"), "score": .number("0.1"), "tags": .stringArray(["a", "b/c"]),
                    "blob": .binary(Data([1, 2])),
                ]))
        #expect(id == "p-1")
        #expect(
            try #require(transport.forms.first) == [
                "Action": "Publish", "Version": "2010-03-31", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                "Message": "{\"a\":1}",
                "Subject": "Incident",
                "MessageAttributes.entry.1.Name": "blob", "MessageAttributes.entry.1.Value.DataType": "Binary",
                "MessageAttributes.entry.1.Value.BinaryValue": "AQI=",
                "MessageAttributes.entry.2.Name": "score", "MessageAttributes.entry.2.Value.DataType": "Number",
                "MessageAttributes.entry.2.Value.StringValue": "0.1",
                "MessageAttributes.entry.3.Name": "severity", "MessageAttributes.entry.3.Value.DataType": "String",
                "MessageAttributes.entry.3.Value.StringValue": "high",
                "MessageAttributes.entry.4.Name": "tags", "MessageAttributes.entry.4.Value.DataType": "String.Array",
                "MessageAttributes.entry.4.Value.StringValue": #"["a","b/c"]"#,
            ])
    }

    @Test("Publish refuses a bad subject, an empty message and an oversized one")
    func publishChecks() async throws {
        let transport = RecordingTransport { _, _ in (200, "") }
        let sns = SNSClient(fakeAWS(transport))
        let arn = "arn:aws:sns:us-east-1:1:t"
        for message in [
            SNSMessage(topicArn: arn, message: "m", subject: "two\nlines"),
            SNSMessage(topicArn: arn, message: "m", subject: String(repeating: "s", count: 101)),
            SNSMessage(topicArn: arn, message: ""),
            SNSMessage(topicArn: arn, message: String(repeating: "x", count: SNSClient.maxMessageBytes + 1)),
        ] {
            await #expect(throws: AWSError.self) { _ = try await sns.publish(message) }
        }
        #expect(transport.requests.isEmpty)
    }

    @Test("Query-protocol error documents of SES and SNS become typed AWSErrors")
    func errors() async throws {
        let transport = RecordingTransport { form, _ in
            form["Action"] == "SendEmail"
                ? (
                    400,
                    "<ErrorResponse xmlns=\"http://ses.amazonaws.com/doc/2010-12-01/\"><Error><Type>Sender</Type><Code>MessageRejected</Code><Message>Email address is not verified.</Message></Error><RequestId>r-ses</RequestId></ErrorResponse>"
                )
                : (
                    404,
                    "<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist</Message></Error><RequestId>r-sns</RequestId></ErrorResponse>"
                )
        }
        do {
            _ = try await SESClient(fakeAWS(transport)).sendEmail(
                Email(from: "f@example.com", to: ["a@example.com"], subject: "s", textBody: "t"))
            Issue.record("expected MessageRejected")
        } catch let error as AWSError {
            #expect(error.code == "MessageRejected")
            #expect(error.kind == .clientError)
            #expect(error.requestId == "r-ses")
            #expect(error.message == "Email address is not verified.")
        }
        do {
            _ = try await SNSClient(fakeAWS(transport)).publish(
                SNSMessage(topicArn: "arn:aws:sns:us-east-1:1:x", message: "m"))
            Issue.record("expected NotFound")
        } catch let error as AWSError {
            #expect(error.code == "NotFound")
            #expect(error.httpStatus == 404)
            #expect(error.attempts == 1)
        }
    }
}

/// SES and SNS against moto: what was sent is read back from moto's `/moto-api/data.json`.
@Suite("SES and SNS against moto", .enabled(if: TestEnvironment.motoEndpoint != nil))
struct SESSNSIntegrationTests {
    @Test("SES: verify a sender, send text+HTML and text-only mail, read both back; unverified senders are rejected")
    func ses() async throws {
        // A private moto: reading back from the shared one's data.json takes minutes once other
        // suites have filled it.
        let moto = try await PythonServer.start("private_moto.py")
        defer { moto.stop() }
        let ses = SESClient(privateMotoAWS(moto, region: "us-west-2"))
        let sender = "\(uniqueName("fleet"))@example.com"
        try await ses.verifyEmailIdentity(sender)
        let subject = "i-0abc recovered ✓ \(UUID().uuidString.prefix(6))"
        let both = try await ses.sendEmail(
            Email(
                from: sender, to: ["ops@example.com", "oncall@example.com"], subject: subject, textBody: "text body",
                htmlBody: "<p>html &amp; body</p>"))
        let textOnly = try await ses.sendEmail(
            Email(from: sender, to: ["ops@example.com"], subject: subject, textBody: "only text"))
        #expect(both != textOnly)

        let messages = try #require(
            (try await motoData(endpoint: moto.baseURL)["ses"] as? [String: Any])?["Message"] as? [[String: Any]])
        let first = try #require(messages.first { $0["id"] as? String == both })
        #expect(first["source"] as? String == sender)
        #expect(first["subject"] as? String == subject)
        #expect(
            (first["destinations"] as? [String: [String]])?["ToAddresses"] == ["ops@example.com", "oncall@example.com"])
        #expect(first["body"] as? String == "<p>html &amp; body</p>")  // moto keeps the HTML part when there is one
        let second = try #require(messages.first { $0["id"] as? String == textOnly })
        #expect(second["body"] as? String == "only text")

        // Identities are per region: the sender is not verified in us-east-1.
        do {
            _ = try await ses.withRegion("us-east-1").sendEmail(
                Email(from: sender, to: ["ops@example.com"], subject: "s", textBody: "t"))
            Issue.record("expected MessageRejected")
        } catch let error as AWSError {
            #expect(error.code == "MessageRejected")
            #expect(error.kind == .clientError)
        }
    }

    @Test("SNS: create a topic, publish with subject and attributes, read the notification back, delete")
    func sns() async throws {
        let moto = try await PythonServer.start("private_moto.py")
        defer { moto.stop() }
        let sns = SNSClient(privateMotoAWS(moto, region: "us-west-2"))
        let name = uniqueName("fleet-alerts")
        let arn = try await sns.createTopic(name: name, attributes: ["DisplayName": "Fleet"], tags: ["run": name])
        #expect(arn.hasSuffix(":\(name)") && arn.contains(":us-west-2:"))
        #expect(try await sns.createTopic(name: name) == arn)  // idempotent
        do {
            let body = "{\"instance_id\":\"i-0abc\",\"step\":\"reboot\"}"
            let id = try await sns.publish(
                SNSMessage(
                    topicArn: arn, message: body, subject: "Incident i-0abc",
                    attributes: ["severity": .string("high"), "score": .number("0.30000000000000004")]))
            let topics = try #require(
                (try await motoData(endpoint: moto.baseURL)["sns"] as? [String: Any])?["Topic"] as? [[String: Any]])
            let topic = try #require(topics.first { $0["arn"] as? String == arn })
            #expect(topic["display_name"] as? String == "Fleet")
            let sent = try #require(topic["sent_notifications"] as? [[Any]])
            #expect(sent.count == 1)
            let notification = try #require(sent.first)
            #expect(notification[0] as? String == id)
            #expect(notification[1] as? String == body)
            #expect(notification[2] as? String == "Incident i-0abc")
            let attributes = notification[3] as? [String: [String: String]]
            #expect(attributes?["severity"] == ["Type": "String", "Value": "high"])
            #expect(attributes?["score"] == ["Type": "Number", "Value": "0.30000000000000004"])
            // The topic exists only in us-west-2.
            do {
                _ = try await sns.withRegion("us-east-1").publish(SNSMessage(topicArn: arn, message: "m"))
                Issue.record("expected an error from us-east-1")
            } catch let error as AWSError {
                #expect(error.kind == .clientError)
            }
        } catch {
            try? await sns.deleteTopic(arn: arn)
            throw error
        }
        try await sns.deleteTopic(arn: arn)
        await #expect(throws: AWSError.self) { _ = try await sns.publish(SNSMessage(topicArn: arn, message: "gone")) }
    }
}

func privateMotoAWS(_ moto: PythonServer, region: String) -> AWSClient {
    AWSClient(
        region: region, credentials: StaticCredentialProvider(testCredentials), http: testHTTP,
        environment: ["AWS_ENDPOINT_URL": moto.baseURL])
}
