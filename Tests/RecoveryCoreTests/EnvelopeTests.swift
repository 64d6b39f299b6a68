import Foundation
import RecoveryCore
import Testing

struct Ping: Codable, Sendable, Equatable {
    var status: Int
    var note: String?
}

@Suite("Message envelope")
struct EnvelopeTests {
    let when = Date(timeIntervalSince1970: 1_795_000_000.125)

    @Test func roundTripsEveryHeaderField() throws {
        let envelope = Envelope(
            type: .observation, id: "id-1", correlationId: "inc-7", target: "shop-web", instanceId: "i-0abc",
            occurredAt: when, sentAt: when.addingTimeInterval(1), producer: "probe@h1",
            body: Ping(status: 503, note: nil))
        let bytes = try EnvelopeCodec.encode(envelope)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"schema_version\":1"))
        #expect(text.contains("\"occurred_at\":\"2026-11-18T"))
        #expect(text.contains(".125Z\""))
        let back = try EnvelopeCodec.decode(bytes, as: Ping.self, expecting: .observation)
        #expect(back.id == "id-1" && back.correlationId == "inc-7" && back.target == "shop-web")
        #expect(back.instanceId == "i-0abc" && back.producer == "probe@h1")
        #expect(back.body == Ping(status: 503, note: nil))
        #expect(abs(back.occurredAt.timeIntervalSince(when)) < 0.001)
        #expect(abs(back.sentAt.timeIntervalSince(when) - 1) < 0.001)
    }

    @Test func acceptsTimesWithoutFractionsOrWithOffsets() throws {
        let json =
            #"{"type":"command","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T04:00:00+01:00","body":{"status":1}}"#
        let e = try EnvelopeCodec.decode(Array(json.utf8), as: Ping.self, expecting: .command)
        #expect(e.occurredAt == e.sentAt)
    }

    static let refusals: [(String, MessageDecodingError.Kind, String)] = [
        ("not json at all", .notJSON, "not a JSON object"),
        ("[1,2,3]", .notJSON, "not a JSON object"),
        (
            #"{"schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .missingField, "'type'"
        ),
        (
            #"{"type":"observation","schema_version":1,"id":"x","occurred_at":"yesterday","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .invalidField, "occurred_at"
        ),
        (
            #"{"type":"bogus","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .unexpectedType, "unknown type 'bogus'"
        ),
        (
            #"{"type":"command","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .unexpectedType, "type 'command' on a queue for 'observation'"
        ),
        (
            #"{"type":"observation","schema_version":2,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .unsupportedSchemaVersion, "schema_version 2"
        ),
        (
            #"{"type":"observation","schema_version":"1","id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .invalidField, "schema_version"
        ),
        (
            #"{"type":"observation","schema_version":1,"id":"","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#,
            .invalidField, "id must not be empty"
        ),
        (
            #"{"type":"observation","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":"up"}}"#,
            .invalidBody, "body.status"
        ),
        (
            #"{"type":"observation","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{}}"#,
            .invalidBody, "missing field 'status'"
        ),
        (
            #"{"type":"observation","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z"}"#,
            .invalidBody, "missing field 'body'"
        ),
    ]

    @Test(arguments: refusals)
    func refusesWithAClearReason(_ input: String, _ kind: MessageDecodingError.Kind, _ mention: String) {
        do {
            _ = try EnvelopeCodec.decode(Array(input.utf8), as: Ping.self, expecting: .observation)
            Issue.record("accepted \(input)")
        } catch {
            #expect(error.kind == kind, "\(error)")
            #expect(error.reason.contains(mention), "\(error.reason)")
        }
    }

    @Test func truncatedAndBinaryInputNeverTraps() {
        let valid = Array(
            #"{"type":"observation","schema_version":1,"id":"x","occurred_at":"2026-11-22T03:00:00Z","sent_at":"2026-11-22T03:00:00Z","body":{"status":1}}"#
                .utf8)
        for cut in 0..<valid.count {
            #expect(throws: MessageDecodingError.self) {
                _ = try EnvelopeCodec.decode(Array(valid.prefix(cut)), as: Ping.self, expecting: .observation)
            }
        }
        #expect(throws: MessageDecodingError.self) {
            _ = try EnvelopeCodec.decode([0xff, 0xfe, 0x00, 0x7b], as: Ping.self, expecting: .observation)
        }
    }

    /// Every decode/encode cycle (stored state, outboxes, re-published bodies) must give the same text:
    /// the formatter truncates, and a parsed `.123` is 0.12299… in binary.
    @Test func timestampsSurviveAnyNumberOfRoundTrips() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let date = Date(timeIntervalSince1970: Double.random(in: 1.7e9...1.9e9, using: &generator))
            let text = Timestamp.format(date)
            let parsed = try #require(Timestamp.parse(text))
            #expect(Timestamp.format(parsed) == text)
            #expect(abs(parsed.timeIntervalSince(date)) <= 0.0005 + 1e-6, "rounded to the nearest millisecond")
        }
        let exact = Date(timeIntervalSince1970: 1_795_316_400)
        #expect(Timestamp.format(exact) == "2026-11-22T03:00:00.000Z")
        #expect(
            Timestamp.format(exact.addingTimeInterval(0.9996)) == "2026-11-22T03:00:01.000Z",
            "rounding carries into the seconds")
        #expect(Timestamp.format(exact.addingTimeInterval(-0.0004)) == "2026-11-22T03:00:00.000Z")
        #expect(Timestamp.format(exact.addingTimeInterval(0.05)) == "2026-11-22T03:00:00.050Z")
    }
}
