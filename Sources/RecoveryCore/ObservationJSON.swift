import Foundation

/// Writes an observation (`Envelope<ProbeResult>`), the message the probe sends for every check, without
/// Foundation's Codable encoder, which took a seventh of the probe's CPU per check (docs/benchmarks.md).
/// It writes the JSON `Timestamp.jsonEncoder()` writes: keys sorted, absent optionals left out, times as
/// `Timestamp.format`, slashes unescaped (`JSONBytesWriter`). `ObservationJSONTests` holds the two to the same JSON
/// values for every field and fails when a field is added to these types without being added here.
enum ObservationJSON {
    static func encode(_ e: Envelope<ProbeResult>) throws -> [UInt8] {
        var w = JSONBytesWriter(capacity: 512)
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

    private static func body(_ r: ProbeResult, _ w: inout JSONBytesWriter) throws {
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
}

extension ObservationJSON {
    /// Reads an observation of the shape `encode` writes, or nil for anything else (an unknown key, a
    /// `null`, another type of message, JSON this reader does not take), which `EnvelopeCodec` then reads
    /// with the Codable decoder and its refusals. The header's checks are `EnvelopeCodec`'s, after this.
    static func decode(_ bytes: [UInt8]) -> Envelope<ProbeResult>? {
        bytes.withUnsafeBufferPointer { buffer in
            var r = JSONBytesReader(buffer)
            guard let envelope = try? envelope(&r), (try? r.end()) != nil else { return nil }
            return envelope
        }
    }

    /// The `type` of any envelope whose top level this reader takes, else nil.
    static func type(of bytes: [UInt8]) -> String? {
        bytes.withUnsafeBufferPointer { buffer in
            var r = JSONBytesReader(buffer)
            var type: String?
            do {
                try r.beginObject()
                while let key = try r.nextKey() {
                    if key == "type" {
                        guard type == nil else { return nil }
                        type = try r.string()
                    } else {
                        try r.skipValue()
                    }
                }
                try r.end()
            } catch { return nil }
            return type
        }
    }

    private static func envelope(_ r: inout JSONBytesReader) throws -> Envelope<ProbeResult> {
        var body: ProbeResult?
        var correlationId: String?
        var id: String?
        var instanceId: String?
        var occurredAt: Date?
        var producer: String?
        var schemaVersion: Int?
        var sentAt: Date?
        var target: String?
        var typeName: String?
        try r.beginObject()
        while let key = try r.nextKey() {
            switch key {
            case "body" where body == nil: body = try probeResult(&r)
            case "correlation_id" where correlationId == nil: correlationId = try r.string()
            case "id" where id == nil: id = try r.string()
            case "instance_id" where instanceId == nil: instanceId = try r.string()
            case "occurred_at" where occurredAt == nil: occurredAt = try r.date()
            case "producer" where producer == nil: producer = try r.string()
            case "schema_version" where schemaVersion == nil: schemaVersion = try r.int()
            case "sent_at" where sentAt == nil: sentAt = try r.date()
            case "target" where target == nil: target = try r.string()
            case "type" where typeName == nil: typeName = try r.string()
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard let body, let id, let occurredAt, let schemaVersion, let sentAt,
            let type = typeName.flatMap(MessageType.init)
        else {
            throw JSONBytesReader.Unexpected()
        }
        return Envelope(
            type: type, schemaVersion: schemaVersion, id: id, correlationId: correlationId, target: target,
            instanceId: instanceId, occurredAt: occurredAt, sentAt: sentAt, producer: producer, body: body)
    }

    private static func probeResult(_ r: inout JSONBytesReader) throws -> ProbeResult {
        var prober: String?
        var healthy: Bool?
        var result = ProbeResult(prober: "", healthy: false)
        var seen: Set<String> = []
        try r.beginObject()
        while let key = try r.nextKey() {
            guard seen.insert(key).inserted else { throw JSONBytesReader.Unexpected() }
            switch key {
            case "certificate_expiry": result.certificateExpiry = try r.date()
            case "detail": result.detail = try r.string()
            case "discovered": result.discovered = try r.instanceRef()
            case "ec2_state": result.ec2State = try r.string()
            case "healthy": healthy = try r.bool()
            case "instance_id": result.instanceId = try r.string()
            case "prober": prober = try r.string()
            case "source":
                guard let source = ProbeResult.Source(rawValue: try r.string()) else {
                    throw JSONBytesReader.Unexpected()
                }
                result.source = source
            case "status_code": result.statusCode = try r.int()
            case "timing": result.timing = try timing(&r)
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard let prober, let healthy else { throw JSONBytesReader.Unexpected() }
        result.prober = prober
        result.healthy = healthy
        return result
    }

    private static func timing(_ r: inout JSONBytesReader) throws -> ProbeTiming {
        var values: [String: Double] = [:]
        try r.beginObject()
        while let key = try r.nextKey() {
            switch key {
            case "connect_ms", "dns_ms", "first_byte_ms", "tls_ms", "total_ms":
                guard values.updateValue(try r.double(), forKey: key) == nil else { throw JSONBytesReader.Unexpected() }
            default: throw JSONBytesReader.Unexpected()
            }
        }
        guard let dns = values["dns_ms"], let connect = values["connect_ms"], let tls = values["tls_ms"],
            let firstByte = values["first_byte_ms"], let total = values["total_ms"]
        else { throw JSONBytesReader.Unexpected() }
        return ProbeTiming(dnsMs: dns, connectMs: connect, tlsMs: tls, firstByteMs: firstByte, totalMs: total)
    }
}
