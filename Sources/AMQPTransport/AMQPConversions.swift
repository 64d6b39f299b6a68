internal import CRabbitMQ
import Foundation
import Glibc

extension AMQPConnectionHandle {
    // MARK: Conversions. Every amqp_bytes_t built here lives only inside the closure it is passed to.

    static func timeval(_ d: Duration) -> timeval {
        let (seconds, attoseconds) = d.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }

    static func copy(_ bytes: amqp_bytes_t) -> [UInt8] {
        guard bytes.len > 0, let base = bytes.bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }

    static func string(_ bytes: amqp_bytes_t) -> String { String(decoding: copy(bytes), as: UTF8.self) }

    static func withBytes<R>(_ string: String, _ body: (amqp_bytes_t) throws(AMQPError) -> R) throws(AMQPError) -> R {
        var utf8 = Array(string.utf8)
        let result = utf8.withUnsafeMutableBytes { buffer in
            Result { () throws(AMQPError) -> R in try body(cshim_amqp_bytes(buffer.baseAddress, buffer.count)) }
        }
        return try result.get()
    }

    static func withBytesUnchecked<R>(_ string: String, _ body: (amqp_bytes_t) -> R) -> R {
        var utf8 = Array(string.utf8)
        return utf8.withUnsafeMutableBytes { buffer in body(cshim_amqp_bytes(buffer.baseAddress, buffer.count)) }
    }

    static func withTable<R>(_ fields: [String: AMQPFieldValue], _ body: (amqp_table_t) throws(AMQPError) -> R)
        throws(AMQPError) -> R
    {
        let arena = Arena()
        return try body(arena.table(fields))
    }

    static func withProperties<R>(_ p: AMQPProperties, _ body: (UnsafePointer<amqp_basic_properties_t>) -> R) -> R {
        let arena = Arena()
        var props = amqp_basic_properties_t()
        var flags: UInt32 = 0
        if let v = p.contentType {
            props.content_type = arena.bytes(v)
            flags |= UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
        }
        if let v = p.messageId {
            props.message_id = arena.bytes(v)
            flags |= UInt32(AMQP_BASIC_MESSAGE_ID_FLAG)
        }
        if let v = p.correlationId {
            props.correlation_id = arena.bytes(v)
            flags |= UInt32(AMQP_BASIC_CORRELATION_ID_FLAG)
        }
        if let v = p.timestamp {
            props.timestamp = v
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        if let v = p.userId {
            props.user_id = arena.bytes(v)
            flags |= UInt32(AMQP_BASIC_USER_ID_FLAG)
        }
        if let v = p.type {
            props.type = arena.bytes(v)
            flags |= UInt32(AMQP_BASIC_TYPE_FLAG)
        }
        if let v = p.appId {
            props.app_id = arena.bytes(v)
            flags |= UInt32(AMQP_BASIC_APP_ID_FLAG)
        }
        if let v = p.deliveryMode {
            props.delivery_mode = v
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if !p.headers.isEmpty {
            props.headers = arena.table(p.headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        props._flags = amqp_flags_t(flags)
        return withUnsafePointer(to: &props) { body($0) }
    }

    static func properties(from p: amqp_basic_properties_t) -> AMQPProperties {
        let flags = UInt32(p._flags)
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        return AMQPProperties(
            contentType: has(AMQP_BASIC_CONTENT_TYPE_FLAG) ? string(p.content_type) : nil,
            messageId: has(AMQP_BASIC_MESSAGE_ID_FLAG) ? string(p.message_id) : nil,
            correlationId: has(AMQP_BASIC_CORRELATION_ID_FLAG) ? string(p.correlation_id) : nil,
            timestamp: has(AMQP_BASIC_TIMESTAMP_FLAG) ? p.timestamp : nil,
            userId: has(AMQP_BASIC_USER_ID_FLAG) ? string(p.user_id) : nil,
            type: has(AMQP_BASIC_TYPE_FLAG) ? string(p.type) : nil,
            appId: has(AMQP_BASIC_APP_ID_FLAG) ? string(p.app_id) : nil,
            headers: has(AMQP_BASIC_HEADERS_FLAG) ? fields(from: p.headers) : [:],
            deliveryMode: has(AMQP_BASIC_DELIVERY_MODE_FLAG) ? p.delivery_mode : nil)
    }

    static func fields(from table: amqp_table_t) -> [String: AMQPFieldValue] {
        var result: [String: AMQPFieldValue] = [:]
        guard table.num_entries > 0, let entries = table.entries else { return result }
        for i in 0..<Int(table.num_entries) {
            let entry = entries[i]
            result[string(entry.key)] = value(from: entry.value)
        }
        return result
    }

    static func value(from v: amqp_field_value_t) -> AMQPFieldValue {
        switch Int(v.kind) {
        case Int(AMQP_FIELD_KIND_BOOLEAN.rawValue): return .bool(v.value.boolean != 0)
        case Int(AMQP_FIELD_KIND_I8.rawValue): return .int(Int64(v.value.i8))
        case Int(AMQP_FIELD_KIND_U8.rawValue): return .int(Int64(v.value.u8))
        case Int(AMQP_FIELD_KIND_I16.rawValue): return .int(Int64(v.value.i16))
        case Int(AMQP_FIELD_KIND_U16.rawValue): return .int(Int64(v.value.u16))
        case Int(AMQP_FIELD_KIND_I32.rawValue): return .int(Int64(v.value.i32))
        case Int(AMQP_FIELD_KIND_U32.rawValue): return .int(Int64(v.value.u32))
        case Int(AMQP_FIELD_KIND_I64.rawValue): return .int(v.value.i64)
        case Int(AMQP_FIELD_KIND_U64.rawValue): return .int(Int64(bitPattern: v.value.u64))
        case Int(AMQP_FIELD_KIND_F32.rawValue): return .double(Double(v.value.f32))
        case Int(AMQP_FIELD_KIND_F64.rawValue): return .double(v.value.f64)
        case Int(AMQP_FIELD_KIND_UTF8.rawValue): return .string(string(v.value.bytes))
        case Int(AMQP_FIELD_KIND_BYTES.rawValue): return .bytes(copy(v.value.bytes))
        case Int(AMQP_FIELD_KIND_TIMESTAMP.rawValue): return .timestamp(v.value.u64)
        case Int(AMQP_FIELD_KIND_TABLE.rawValue): return .table(fields(from: v.value.table))
        case Int(AMQP_FIELD_KIND_ARRAY.rawValue):
            let array = v.value.array
            guard array.num_entries > 0, let entries = array.entries else { return .array([]) }
            return .array((0..<Int(array.num_entries)).map { value(from: entries[$0]) })
        default: return .void
        }
    }

    /// Memory for C structures built from Swift values; freed when the arena goes away, which is after
    /// the C call that reads them has returned.
    final class Arena {
        private var blocks: [UnsafeMutableRawPointer] = []
        deinit { blocks.forEach { free($0) } }

        private func allocate(_ size: Int) -> UnsafeMutableRawPointer {
            let p = malloc(max(size, 1))!
            blocks.append(p)
            return p
        }

        func bytes(_ s: String) -> amqp_bytes_t { bytes(Array(s.utf8)) }

        func bytes(_ b: [UInt8]) -> amqp_bytes_t {
            let p = allocate(b.count)
            b.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
            return cshim_amqp_bytes(p, b.count)
        }

        func table(_ fields: [String: AMQPFieldValue]) -> amqp_table_t {
            var table = amqp_table_t()
            guard !fields.isEmpty else { return table }
            let entries = allocate(MemoryLayout<amqp_table_entry_t>.stride * fields.count)
                .bindMemory(to: amqp_table_entry_t.self, capacity: fields.count)
            for (i, (key, value)) in fields.sorted(by: { $0.key < $1.key }).enumerated() {
                (entries + i).initialize(to: amqp_table_entry_t(key: bytes(key), value: field(value)))
            }
            table.num_entries = Int32(fields.count)
            table.entries = entries
            return table
        }

        func field(_ value: AMQPFieldValue) -> amqp_field_value_t {
            var f = amqp_field_value_t()
            switch value {
            case let .string(s):
                f.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
                f.value.bytes = bytes(s)
            case let .bytes(b):
                f.kind = UInt8(AMQP_FIELD_KIND_BYTES.rawValue)
                f.value.bytes = bytes(b)
            case let .int(i):
                f.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
                f.value.i64 = i
            case let .bool(b):
                f.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
                f.value.boolean = b ? 1 : 0
            case let .double(d):
                f.kind = UInt8(AMQP_FIELD_KIND_F64.rawValue)
                f.value.f64 = d
            case let .timestamp(t):
                f.kind = UInt8(AMQP_FIELD_KIND_TIMESTAMP.rawValue)
                f.value.u64 = t
            case let .table(t):
                f.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
                f.value.table = table(t)
            case let .array(items):
                f.kind = UInt8(AMQP_FIELD_KIND_ARRAY.rawValue)
                let entries = allocate(MemoryLayout<amqp_field_value_t>.stride * max(items.count, 1))
                    .bindMemory(to: amqp_field_value_t.self, capacity: max(items.count, 1))
                for (i, item) in items.enumerated() { (entries + i).initialize(to: field(item)) }
                f.value.array = amqp_array_t(num_entries: Int32(items.count), entries: entries)
            case .void:
                f.kind = UInt8(AMQP_FIELD_KIND_VOID.rawValue)
            }
            return f
        }
    }
}
