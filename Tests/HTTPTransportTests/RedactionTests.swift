import Foundation
import Testing

@testable import HTTPTransport

@Suite("Secrets in URLs never reach error text")
struct RedactionTests {
    @Test func webhookURLPathNeverAppearsInErrors() async throws {
        let closed = try RawSocket(listening: false)
        let silent = try RawSocket(listening: true)
        let client = HTTPClient()
        defer { client.shutdown() }

        for (port, timeout) in [(closed.port, Duration.seconds(5)), (silent.port, .milliseconds(200))] {
            let url =
                "http://hookuser:hookpass@127.0.0.1:\(port)"
                + "/services/T0SECRET1/B0SECRET2/XxSecretToken3?token=QSECRET4#FRAG5"
            let error = try await #require(throws: HTTPClientError.self) {
                try await client.execute(
                    HTTPRequest(method: "POST", url: url, body: Array("{}".utf8), timeout: timeout))
            }
            let texts = [error.description, error.message, error.redactedURL, "\(error)", String(reflecting: error)]
            for text in texts {
                for secret in ["services", "SECRET", "Secret", "token", "hookuser", "hookpass", "FRAG"] {
                    #expect(!text.contains(secret), "\(secret) leaked into: \(text)")
                }
            }
            #expect(error.redactedURL == "http://127.0.0.1:\(port)")
        }
    }

    @Test func redactedURLKeepsOnlySchemeHostAndPort() {
        #expect(RedactedURL("https://hooks.slack.com/services/T/B/XYZ").text == "https://hooks.slack.com:443")
        #expect(RedactedURL("http://Example.COM/path?q=1").text == "http://example.com:80")
        #expect(RedactedURL("https://user:pw@host:8443").text == "https://host:8443")
        #expect(RedactedURL("https://[::1]:9000/x").text == "https://[::1]:9000")
        #expect(RedactedURL("https://[::1]/x").text == "https://[::1]:443")
        #expect(RedactedURL("no scheme/secret").text == "(unparseable URL)")
        #expect(RedactedURL("http://bad host/secret").text == "(unparseable URL)")
        #expect(RedactedURL("").text == "(unparseable URL)")
    }

    @Test func scrubRemovesEveryPartOfThePath() {
        let url = RedactedURL("https://u:p4ssword@outlook.office.com/webhook/abcd-1234/IncomingWebhook/efgh?x=secretq")
        let scrubbed = url.scrub(
            "failed for https://u:p4ssword@outlook.office.com/webhook/abcd-1234/IncomingWebhook/efgh?x=secretq "
                + "then /IncomingWebhook/efgh and secretq and p4ssword")
        for secret in ["abcd-1234", "IncomingWebhook", "efgh", "secretq", "p4ssword"] {
            #expect(!scrubbed.contains(secret))
        }
        #expect(scrubbed.hasPrefix("failed for <redacted>"))
    }
}
