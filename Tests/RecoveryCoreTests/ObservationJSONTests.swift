import Foundation
import Testing

@testable import RecoveryCore

/// The probe's observations are written by hand (`ObservationJSON`); they must read exactly as the
/// Codable encoder's JSON does, field for field.
@Suite("Observations written by hand")
struct ObservationJSONTests {
    static let t = Date(timeIntervalSince1970: 1_796_600_000.5)  // whole milliseconds, exact in binary

    static var results: [ProbeResult] {
        var all = [ProbeResult(prober: "probe@host-1", healthy: true)]
        var full = ProbeResult(
            prober: "probe \"quoted\" \\ back/slash", instanceId: "i-0123456789abcdef0", healthy: false,
            statusCode: 503,
            detail: "line\nbreak\ttab\r\u{01}\u{1F}\u{08}\u{0C} ünïcode 🚑 </script>")
        full.source = .ec2Status
        full.timing = ProbeTiming(dnsMs: 0, connectMs: 0.1, tlsMs: 1e-5, firstByteMs: 2.0, totalMs: 123_456.789)
        full.certificateExpiry = t.addingTimeInterval(86_400 * 30)
        full.ec2State = "stopped"
        full.discovered = InstanceRef(id: "i-0fedcba9876543210", region: "eu-west-1")
        all.append(full)
        var http = ProbeResult(prober: "p", healthy: true, statusCode: 200)
        http.source = .http
        http.timing = ProbeTiming(dnsMs: 1e300, connectMs: -0.0, tlsMs: 0.5, firstByteMs: 3, totalMs: 1.0 / 3)
        all.append(http)
        return all
    }

    static var envelopes: [Envelope<ProbeResult>] {
        results.flatMap { result in
            [
                Envelope(type: .observation, id: "obs-1", occurredAt: t, body: result),
                Envelope(
                    type: .observation, id: "a\"b", correlationId: "inc-1", target: "shop/web", instanceId: "i-1",
                    occurredAt: t, sentAt: t.addingTimeInterval(0.0004), producer: "probe@h", body: result),
            ]
        }
    }

    @Test func readsAsTheCodableEncodersJSON() throws {
        for envelope in Self.envelopes {
            let fast = try EnvelopeCodec.encode(envelope)
            let codable = Array(try Timestamp.jsonEncoder().encode(envelope))
            #expect(fast == codable, "written differently")
            let a = try #require(try JSONSerialization.jsonObject(with: Data(fast)) as? NSDictionary)
            let b = try #require(try JSONSerialization.jsonObject(with: Data(codable)) as? NSDictionary)
            #expect(a == b, "\(String(decoding: fast, as: UTF8.self))\n\(String(decoding: codable, as: UTF8.self))")
            let back = try EnvelopeCodec.decode(fast, as: ProbeResult.self, expecting: .observation)
            #expect(back.body == envelope.body)
            #expect(back.id == envelope.id && back.correlationId == envelope.correlationId)
            #expect(back.target == envelope.target && back.instanceId == envelope.instanceId)
            #expect(back.producer == envelope.producer && back.schemaVersion == envelope.schemaVersion)
            #expect(Timestamp.format(back.occurredAt) == Timestamp.format(envelope.occurredAt))
            #expect(Timestamp.format(back.sentAt) == Timestamp.format(envelope.sentAt))
        }
    }

    /// Read by hand too (`ObservationJSON.decode`), to what the Codable decoder reads; what the hand reader
    /// does not take goes to the Codable decoder, whose refusals are the envelope tests'.
    @Test func readsAsTheCodableDecoderReads() throws {
        for envelope in Self.envelopes {
            let codable = Array(try Timestamp.jsonEncoder().encode(envelope))
            let fast = try #require(ObservationJSON.decode(codable), "\(String(decoding: codable, as: UTF8.self))")
            let reference = try Timestamp.jsonDecoder().decode(Envelope<ProbeResult>.self, from: Data(codable))
            #expect(fast.body == reference.body)
            #expect(fast.type == reference.type && fast.schemaVersion == reference.schemaVersion)
            #expect(fast.id == reference.id && fast.correlationId == reference.correlationId)
            #expect(fast.target == reference.target && fast.instanceId == reference.instanceId)
            #expect(fast.producer == reference.producer)
            #expect(fast.occurredAt == reference.occurredAt && fast.sentAt == reference.sentAt)
            #expect(ObservationJSON.type(of: codable) == "observation")
        }
        let good = String(decoding: try EnvelopeCodec.encode(Self.envelopes[1]), as: UTF8.self)
        let elsewhere = [
            good.replacingOccurrences(of: #""type":"observation""#, with: #""type":"observation","x":1"#),
            good.replacingOccurrences(of: #""healthy":true"#, with: #""healthy":null"#),
            good.replacingOccurrences(of: #""healthy":true"#, with: #""healthy":true,"healthy":false"#),
            good.replacingOccurrences(of: #""schema_version":1"#, with: #""schema_version":"1""#),
            // Foundation keeps a repeated key's first value, and refuses this unknown type.
            good.replacingOccurrences(of: #""type":"observation""#, with: #""type":"bogus","type":"observation""#),
        ]
        for text in elsewhere {
            #expect(text != good)
            #expect(ObservationJSON.decode(Array(text.utf8)) == nil, "\(text)")
        }
        // Another type is read the same way, and refused by the header's checks; an unknown or missing one
        // is left to the slow checks.
        let command = Array(good.replacingOccurrences(of: #""type":"observation""#, with: #""type":"command""#).utf8)
        #expect(try EnvelopeCodec.messageType(of: command) == .command)
        #expect {
            try EnvelopeCodec.decode(command, as: ProbeResult.self, expecting: .observation)
        } throws: { ($0 as? MessageDecodingError)?.kind == .unexpectedType }
        #expect(ObservationJSON.type(of: Array(#"{"id":"1"}"#.utf8)) == nil)
        #expect(throws: MessageDecodingError.self) { try EnvelopeCodec.messageType(of: Array(#"{"id":"1"}"#.utf8)) }
        // A null, a string for a number, an unknown type: refused by the Codable decoder too.
        for text in [elsewhere[1], elsewhere[3], elsewhere[4]] {
            #expect(throws: MessageDecodingError.self, "\(text)") {
                try EnvelopeCodec.decode(Array(text.utf8), as: ProbeResult.self, expecting: .observation)
            }
        }
        // Nested deeper than Foundation reads: refused as not JSON, never a stack overflow.
        let deep = Array((#"{"type":"observation","a":"# + String(repeating: "[", count: 1_000_000)).utf8)
        #expect(ObservationJSON.type(of: deep) == nil)
        #expect(throws: MessageDecodingError.self) { try EnvelopeCodec.messageType(of: deep) }
        #expect(throws: MessageDecodingError.self) {
            try EnvelopeCodec.decode(deep, as: ProbeResult.self, expecting: .observation)
        }
    }

    /// A field added to these types must be added to the writer too: this counts them.
    @Test func knowsEveryField() throws {
        let result = try #require(Self.results.last)
        #expect(
            Mirror(reflecting: result).children.count == 10, "ProbeResult has a new field: write it in ObservationJSON")
        #expect(Mirror(reflecting: try #require(result.timing)).children.count == 5, "ProbeTiming changed")
        #expect(Mirror(reflecting: InstanceRef(id: "i", region: "r")).children.count == 2, "InstanceRef changed")
        #expect(Mirror(reflecting: try #require(Self.envelopes.first)).children.count == 10, "Envelope changed")
    }

    @Test func refusesWhatJSONCannotSay() {
        var result = ProbeResult(prober: "p", healthy: true)
        result.timing = ProbeTiming(dnsMs: .nan, connectMs: 0, tlsMs: 0, firstByteMs: 0, totalMs: .infinity)
        let envelope = Envelope(type: .observation, occurredAt: Self.t, body: result)
        #expect(throws: EncodingError.self) { try EnvelopeCodec.encode(envelope) }
        #expect(throws: EncodingError.self) { try Timestamp.jsonEncoder().encode(envelope) }
    }
}
