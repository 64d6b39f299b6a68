import Foundation

/// Writes an observation (`Envelope<ProbeResult>`), the message the probe sends for every check, without
/// Foundation's Codable encoder, which took a seventh of the probe's CPU per check (docs/benchmarks.md).
/// It writes the JSON `Timestamp.jsonEncoder()` writes: keys sorted, absent optionals left out, times as
/// `Timestamp.format`, slashes unescaped; the one difference in bytes is that a whole-number Double reads
/// `2.0` where Codable writes `2`, the same value. `ObservationJSONTests` holds the two to the same JSON
/// values for every field and fails when a field is added to these types without being added here.
enum ObservationJSON {
    static func encode(_ e: Envelope<ProbeResult>) throws -> [UInt8] {
        var w = Writer()
        w.bytes.reserveCapacity(512)
        w.open()
        w.key("body")
        try body(e.body, &w)
        if let v = e.correlationId { w.field("correlation_id", v) }
        w.field("id", e.id)
        if let v = e.instanceId { w.field("instance_id", v) }
        w.field("occurred_at", Timestamp.format(e.occurredAt))
        if let v = e.producer { w.field("producer", v) }
        w.key("schema_version")
        w.raw(String(e.schemaVersion))
        w.field("sent_at", Timestamp.format(e.sentAt))
        if let v = e.target { w.field("target", v) }
        w.field("type", e.type.rawValue)
        w.close()
        return w.bytes
    }

    private static func body(_ r: ProbeResult, _ w: inout Writer) throws {
        w.open()
        if let v = r.certificateExpiry { w.field("certificate_expiry", Timestamp.format(v)) }
        if let v = r.detail { w.field("detail", v) }
        if let v = r.discovered {
            w.key("discovered")
            w.open()
            w.field("id", v.id)
            w.field("region", v.region)
            w.close()
        }
        if let v = r.ec2State { w.field("ec2_state", v) }
        w.key("healthy")
        w.raw(r.healthy ? "true" : "false")
        if let v = r.instanceId { w.field("instance_id", v) }
        w.field("prober", r.prober)
        if let v = r.source { w.field("source", v.rawValue) }
        if let v = r.statusCode {
            w.key("status_code")
            w.raw(String(v))
        }
        if let t = r.timing {
            w.key("timing")
            w.open()
            for (key, value) in [
                ("connect_ms", t.connectMs), ("dns_ms", t.dnsMs), ("first_byte_ms", t.firstByteMs), ("tls_ms", t.tlsMs),
                ("total_ms", t.totalMs),
            ] {
                w.key(key)
                try w.number(value, at: key)
            }
            w.close()
        }
        w.close()
    }

    private struct Writer {
        var bytes: [UInt8] = []

        mutating func open() { bytes.append(UInt8(ascii: "{")) }
        mutating func close() { bytes.append(UInt8(ascii: "}")) }
        mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

        /// A key, after a comma unless it is the object's first.
        mutating func key(_ name: String) {
            if bytes.last != UInt8(ascii: "{") { bytes.append(UInt8(ascii: ",")) }
            string(name)
            bytes.append(UInt8(ascii: ":"))
        }

        mutating func field(_ name: String, _ value: String) {
            key(name)
            string(value)
        }

        /// JSON's escapes: the quote, the backslash and the control characters; the rest as UTF-8.
        mutating func string(_ s: String) {
            bytes.append(UInt8(ascii: "\""))
            for byte in s.utf8 {
                switch byte {
                case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
                case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
                case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
                case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
                case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: [
                        0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)],
                    ])
                default: bytes.append(byte)
                }
            }
            bytes.append(UInt8(ascii: "\""))
        }

        /// Swift's shortest form that reads back as the same Double; JSON has no infinity or NaN, so those
        /// are refused as the Codable encoder refuses them.
        mutating func number(_ value: Double, at key: String) throws {
            guard value.isFinite else {
                throw EncodingError.invalidValue(
                    value,
                    EncodingError.Context(codingPath: [], debugDescription: "\(key) is \(value), not a JSON number"))
            }
            raw("\(value)")
        }
    }
}
