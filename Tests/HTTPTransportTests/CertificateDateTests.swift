import Foundation
import Testing

@testable import HTTPTransport

@Suite("Parsing libcurl's certificate dates")
struct CertificateDateTests {
    @Test(arguments: [
        ("Jan  1 00:00:00 2027 GMT", 1_798_761_600.0),
        ("Feb 29 12:34:56 2028 GMT", 1_835_440_496.0),
        ("Dec 31 23:59:59 1999 GMT", 946_684_799.0),
        ("Jan  1 00:00:00 1970 GMT", 0.0),
        ("Mar  1 00:00:00.5 2024 GMT", 1_709_251_200.5),
    ])
    func parsesOpenSSLDates(text: String, epoch: Double) {
        #expect(CertificateDate.parse(text) == Date(timeIntervalSince1970: epoch))
    }

    @Test(arguments: [
        "", "Foo  1 00:00:00 2027 GMT", "Jan 32 00:00:00 2027 GMT", "Jan  1 24:00:00 2027 GMT",
        "Jan  1 00:00:00 2027 PST", "Jan  1 00:00 2027 GMT", "2027-01-01T00:00:00Z",
    ])
    func rejectsOtherText(text: String) {
        #expect(CertificateDate.parse(text) == nil)
    }
}
