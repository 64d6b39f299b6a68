import Foundation
import Testing

@testable import HTTPTransport

@Suite("HTTP client against a local HTTPS server with a private CA")
struct TLSTests {
    @Test func untrustedCertificateFailsVerificationByDefault() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try await TestHTTPServer(tls: (certificates.serverCertificate, certificates.serverKey))
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let error = try await #require(throws: HTTPClientError.self) {
            try await client.execute(HTTPRequest(url: "\(server.tlsBaseURL)/hello"))
        }
        #expect(error.kind == .tlsVerificationFailed)
        #expect(error.description.contains("certificate"))
        #expect(error.description.contains("tls.caFile"))
        #expect(error.description.contains(server.tlsBaseURL))
    }

    @Test func trustedPrivateCASucceedsAndReportsExpiry() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try await TestHTTPServer(tls: (certificates.serverCertificate, certificates.serverKey))
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let response = try await client.execute(
            HTTPRequest(url: "\(server.tlsBaseURL)/hello", tls: TLSOptions(caFile: certificates.caFile)))
        #expect(response.status == 200)
        #expect(response.bodyString == "hello")

        let expected = try #require(Self.parseOpenSSLDate(certificates.notAfterText(certificates.serverCertificate)))
        #expect(response.certificateExpiry == expected)
        // Sanity: it is the 400-day server certificate, not the 30-day CA.
        let days = try #require(response.certificateExpiry).timeIntervalSinceNow / 86_400
        #expect(days > 398 && days < 401)

        let t = response.timing
        #expect(t.tls > .zero)
        #expect(t.dns <= t.connect)
        #expect(t.connect <= t.tls)
        #expect(t.tls <= t.firstByte)
        #expect(t.firstByte <= t.total)

        // The next request reuses the connection: no handshake, but the expiry that handshake reported.
        let reused = try await client.execute(
            HTTPRequest(url: "\(server.tlsBaseURL)/hello", tls: TLSOptions(caFile: certificates.caFile)))
        #expect(reused.timing.tls == .zero, "a reused connection does no handshake")
        #expect(reused.timing.connect <= reused.timing.firstByte)
        #expect(reused.certificateExpiry == expected)

        // A fresh connection does a new handshake and so reports the certificate again.
        let fresh = try await client.execute(
            HTTPRequest(
                url: "\(server.tlsBaseURL)/hello", tls: TLSOptions(caFile: certificates.caFile),
                freshConnection: true))
        #expect(fresh.certificateExpiry == expected)
    }

    @Test func wrongHostNameFailsVerificationUnlessTurnedOff() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try await TestHTTPServer(tls: (certificates.otherHostCertificate, certificates.otherHostKey))
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let error = try await #require(throws: HTTPClientError.self) {
            try await client.execute(
                HTTPRequest(url: "\(server.tlsBaseURL)/hello", tls: TLSOptions(caFile: certificates.caFile)))
        }
        #expect(error.kind == .tlsVerificationFailed)

        let unverified = try await client.execute(
            HTTPRequest(url: "\(server.tlsBaseURL)/hello", tls: TLSOptions(verifyPeer: false)))
        #expect(unverified.status == 200)
        #expect(unverified.certificateExpiry != nil)
    }

    @Test func unreadableCAFileIsATLSError() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try await TestHTTPServer(tls: (certificates.serverCertificate, certificates.serverKey))
        defer { server.stop() }
        let client = HTTPClient()
        defer { client.shutdown() }

        let error = try await #require(throws: HTTPClientError.self) {
            try await client.execute(
                HTTPRequest(
                    url: "\(server.tlsBaseURL)/hello",
                    tls: TLSOptions(caFile: certificates.directory.appendingPathComponent("missing.pem").path)))
        }
        #expect(error.kind == .tlsError)
    }

    /// Parses openssl's date independently of the client's own parser.
    static func parseOpenSSLDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        let normalized = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        return formatter.date(from: normalized)
    }
}
