internal import CCurl
import Foundation

/// One request on its way through the multi handle: owns the easy handle and everything libcurl keeps a
/// pointer to (header list, error buffer), and collects the response.
///
/// Confined to the client's curl thread from creation to `deinit`; never shared.
final class CurlTransfer {
    let id: UInt64
    let handle: UnsafeMutableRawPointer
    let continuation: CheckedContinuation<HTTPResponse, any Error>
    private let rawURL: String
    private let isHTTPS: Bool
    private let maxBodyBytes: Int
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>

    /// Set while the handle is added to a multi handle; it must be removed before `curl_easy_cleanup`.
    var isAttached = false

    private(set) var responseHeaders: [(name: String, value: String)] = []
    private(set) var body: [UInt8] = []
    private(set) var bodyTruncated = false

    var redactedURL: RedactedURL { RedactedURL(rawURL) }

    init(id: UInt64, request: HTTPRequest, continuation: CheckedContinuation<HTTPResponse, any Error>)
        throws(HTTPClientError)
    {
        self.id = id
        self.continuation = continuation
        self.rawURL = request.url
        self.isHTTPS = request.url.utf8.count >= 8 && request.url.prefix(8).lowercased() == "https://"
        self.maxBodyBytes = max(0, request.maxBodyBytes)
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        guard let handle = curl_easy_init() else {
            errorBuffer.deallocate()
            throw HTTPClientError(
                kind: .other(code: Int(CURLE_FAILED_INIT.rawValue)), message: "curl_easy_init failed",
                redactedURL: RedactedURL(request.url).text, curlCode: Int(CURLE_FAILED_INIT.rawValue))
        }
        self.handle = handle
        try configure(request)
    }

    deinit {
        precondition(!isAttached, "easy handle freed while still added to the multi handle")
        curl_easy_cleanup(handle)
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    // MARK: Setup

    private func set(_ option: CURLoption, _ value: Int, _ name: StaticString) throws(HTTPClientError) {
        try curlCheck(cshim_curl_easy_setopt_long(handle, option, value), "curl_easy_setopt(\(name))", url: redactedURL)
    }

    private func set(_ option: CURLoption, _ value: String, _ name: StaticString) throws(HTTPClientError) {
        try curlCheck(
            cshim_curl_easy_setopt_string(handle, option, value), "curl_easy_setopt(\(name))", url: redactedURL)
    }

    private func configure(_ request: HTTPRequest) throws(HTTPClientError) {
        try validate(request)
        let me = Unmanaged.passUnretained(self).toOpaque()
        try curlCheck(
            cshim_curl_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer),
            "curl_easy_setopt(CURLOPT_ERRORBUFFER)", url: redactedURL)
        try set(CURLOPT_URL, request.url, "CURLOPT_URL")
        try set(CURLOPT_PROTOCOLS_STR, "http,https", "CURLOPT_PROTOCOLS_STR")
        try set(CURLOPT_NOSIGNAL, 1, "CURLOPT_NOSIGNAL")
        try curlCheck(
            cshim_curl_easy_setopt_writefunction(handle, curlTransferWriteBody),
            "curl_easy_setopt(CURLOPT_WRITEFUNCTION)", url: redactedURL)
        try curlCheck(
            cshim_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, me), "curl_easy_setopt(CURLOPT_WRITEDATA)",
            url: redactedURL)
        try curlCheck(
            cshim_curl_easy_setopt_headerfunction(handle, curlTransferWriteHeader),
            "curl_easy_setopt(CURLOPT_HEADERFUNCTION)", url: redactedURL)
        try curlCheck(
            cshim_curl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, me), "curl_easy_setopt(CURLOPT_HEADERDATA)",
            url: redactedURL)

        try set(CURLOPT_TIMEOUT_MS, Self.milliseconds(request.timeout), "CURLOPT_TIMEOUT_MS")
        try set(CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(request.connectTimeout), "CURLOPT_CONNECTTIMEOUT_MS")

        if request.followRedirects {
            try set(CURLOPT_FOLLOWLOCATION, 1, "CURLOPT_FOLLOWLOCATION")
            try set(CURLOPT_MAXREDIRS, 10, "CURLOPT_MAXREDIRS")
            try set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https", "CURLOPT_REDIR_PROTOCOLS_STR")
        }

        try set(CURLOPT_SSL_VERIFYPEER, request.tls.verifyPeer ? 1 : 0, "CURLOPT_SSL_VERIFYPEER")
        try set(CURLOPT_SSL_VERIFYHOST, request.tls.verifyPeer ? 2 : 0, "CURLOPT_SSL_VERIFYHOST")
        if let caFile = request.tls.caFile {
            try set(CURLOPT_CAINFO, caFile, "CURLOPT_CAINFO")
        }
        if isHTTPS {
            try set(CURLOPT_CERTINFO, 1, "CURLOPT_CERTINFO")
        }
        if request.freshConnection {
            try set(CURLOPT_FRESH_CONNECT, 1, "CURLOPT_FRESH_CONNECT")
            try set(CURLOPT_FORBID_REUSE, 1, "CURLOPT_FORBID_REUSE")
        }

        let sendsBody: Bool
        switch request.method {
        case "GET" where request.body.isEmpty:
            sendsBody = false
        case "HEAD":
            sendsBody = false
            try set(CURLOPT_NOBODY, 1, "CURLOPT_NOBODY")
        case "POST":
            sendsBody = true
        default:
            sendsBody = !request.body.isEmpty || request.method == "PUT" || request.method == "PATCH"
            try set(CURLOPT_CUSTOMREQUEST, request.method, "CURLOPT_CUSTOMREQUEST")
        }
        if sendsBody {
            try curlCheck(
                cshim_curl_easy_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)),
                "curl_easy_setopt(CURLOPT_POSTFIELDSIZE_LARGE)", url: redactedURL)
            // COPYPOSTFIELDS copies the bytes, so the request's array need not outlive this call.
            let status = request.body.withUnsafeBytes { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    if let base = chars.baseAddress {
                        cshim_curl_easy_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, base)
                    } else {
                        cshim_curl_easy_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, "")
                    }
                }
            }
            try curlCheck(status, "curl_easy_setopt(CURLOPT_COPYPOSTFIELDS)", url: redactedURL)
        }

        // Headers are sent as given. curl's own defaults that the caller did not ask for are removed:
        // `Expect: 100-continue` (a round trip for nothing) and the form Content-Type it adds to bodies.
        var lines = request.headers.map { $0.value.isEmpty ? "\($0.name);" : "\($0.name): \($0.value)" }
        let names = Set(request.headers.map { $0.name.lowercased() })
        if sendsBody && !names.contains("expect") { lines.append("Expect:") }
        if sendsBody && !names.contains("content-type") { lines.append("Content-Type:") }
        for line in lines {
            guard let appended = curl_slist_append(headerList, line) else {
                throw HTTPClientError(
                    kind: .other(code: Int(CURLE_OUT_OF_MEMORY.rawValue)), message: "curl_slist_append failed",
                    redactedURL: redactedURL.text, curlCode: Int(CURLE_OUT_OF_MEMORY.rawValue))
            }
            headerList = appended
        }
        if let headerList {
            try curlCheck(
                cshim_curl_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList),
                "curl_easy_setopt(CURLOPT_HTTPHEADER)", url: redactedURL)
        }
    }

    private func validate(_ request: HTTPRequest) throws(HTTPClientError) {
        func clean(_ text: String) -> Bool { !text.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 } }
        guard !request.method.isEmpty, clean(request.method), !request.method.contains(" "),
            request.headers.allSatisfy({ clean($0.name) && clean($0.value) && !$0.name.isEmpty })
        else {
            throw HTTPClientError(
                kind: .invalidRequest, message: "the method or a header contains a line break or is empty",
                redactedURL: redactedURL.text)
        }
    }

    /// curl treats 0 as "no limit": anything at or below zero becomes the shortest real timeout.
    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 1 }
        let ms = seconds.multipliedReportingOverflow(by: 1000)
        if ms.overflow || ms.partialValue > Int64(Int32.max) { return Int(Int32.max) }
        return max(1, Int(ms.partialValue + attoseconds / 1_000_000_000_000_000))
    }

    // MARK: Receiving

    fileprivate func receiveBody(_ bytes: UnsafeRawBufferPointer) {
        let room = maxBodyBytes - body.count
        if bytes.count <= room {
            body.append(contentsOf: bytes)
        } else {
            if room > 0 { body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[..<room])) }
            bodyTruncated = true
        }
    }

    /// One header line as curl hands it over (complete, with its CRLF). A status line starts a new
    /// response: after a redirect or a `100 Continue` only the last response's headers (and body) remain.
    fileprivate func receiveHeaderLine(_ bytes: UnsafeRawBufferPointer) {
        var line = bytes[...]
        while let last = line.last, last == 0x0A || last == 0x0D { line = line.dropLast() }
        if line.starts(with: "HTTP/".utf8) {
            responseHeaders.removeAll(keepingCapacity: true)
            body.removeAll(keepingCapacity: true)
            bodyTruncated = false
            return
        }
        guard let first = line.first else { return }
        if first == 0x20 || first == 0x09 {
            // Obsolete line folding: the line continues the previous header's value.
            guard !responseHeaders.isEmpty else { return }
            let more = Self.trimmed(line)
            if !more.isEmpty {
                responseHeaders[responseHeaders.count - 1].value += " " + String(decoding: more, as: UTF8.self)
            }
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = String(decoding: line[..<colon], as: UTF8.self)
        let value = String(decoding: Self.trimmed(line[(colon + 1)...]), as: UTF8.self)
        responseHeaders.append((name: name, value: value))
    }

    private static func trimmed(_ bytes: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        var result = bytes
        while let first = result.first, first == 0x20 || first == 0x09 { result = result.dropFirst() }
        while let last = result.last, last == 0x20 || last == 0x09 { result = result.dropLast() }
        return result
    }

    // MARK: Completion

    /// The response, or the error for a transfer that finished with `result`.
    func outcome(_ result: CURLcode, expiries: inout CertificateExpiryCache) -> Result<HTTPResponse, HTTPClientError> {
        Result { () throws(HTTPClientError) -> HTTPResponse in
            let message = String(cString: errorBuffer)
            try curlCheck(result, "transfer", url: redactedURL, detail: message)
            return HTTPResponse(
                status: try info(CURLINFO_RESPONSE_CODE, "CURLINFO_RESPONSE_CODE"), headers: responseHeaders,
                body: body, bodyTruncated: bodyTruncated, timing: try timing(),
                certificateExpiry: isHTTPS ? try certificateExpiry(&expiries) : nil)
        }
    }

    private func info(_ info: CURLINFO, _ name: StaticString) throws(HTTPClientError) -> Int {
        var value = 0
        try curlCheck(
            cshim_curl_easy_getinfo_long(handle, info, &value), "curl_easy_getinfo(\(name))", url: redactedURL)
        return value
    }

    /// curl's points in time, made monotonic: on a reused connection curl reports connect and TLS as 0
    /// (nothing happened), which here reads as "connected as soon as the name was looked up" and "no
    /// handshake" (`tls` stays 0 whenever no handshake was done).
    private func timing() throws(HTTPClientError) -> HTTPTiming {
        func microseconds(_ info: CURLINFO, _ name: StaticString) throws(HTTPClientError) -> Int64 {
            var value: curl_off_t = 0
            try curlCheck(
                cshim_curl_easy_getinfo_off_t(handle, info, &value), "curl_easy_getinfo(\(name))", url: redactedURL)
            return max(0, Int64(value))
        }
        let dns = try microseconds(CURLINFO_NAMELOOKUP_TIME_T, "CURLINFO_NAMELOOKUP_TIME_T")
        let connect = max(dns, try microseconds(CURLINFO_CONNECT_TIME_T, "CURLINFO_CONNECT_TIME_T"))
        let handshake = try microseconds(CURLINFO_APPCONNECT_TIME_T, "CURLINFO_APPCONNECT_TIME_T")
        let tls = handshake == 0 ? 0 : max(connect, handshake)
        let firstByte = max(
            connect, tls, try microseconds(CURLINFO_STARTTRANSFER_TIME_T, "CURLINFO_STARTTRANSFER_TIME_T"))
        let total = max(firstByte, try microseconds(CURLINFO_TOTAL_TIME_T, "CURLINFO_TOTAL_TIME_T"))
        return HTTPTiming(
            dns: .microseconds(dns), connect: .microseconds(connect), tls: .microseconds(tls),
            firstByte: .microseconds(firstByte), total: .microseconds(total))
    }

    /// The leaf certificate's "Expire date". curl reports certificates only for the transfer that did the
    /// handshake; a request that reuses the connection gets what that handshake reported, from `expiries`.
    private func certificateExpiry(_ expiries: inout CertificateExpiryCache) throws(HTTPClientError) -> Date? {
        var socket: curl_socket_t = CURL_SOCKET_BAD
        try curlCheck(
            cshim_curl_easy_getinfo_socket(handle, CURLINFO_ACTIVESOCKET, &socket),
            "curl_easy_getinfo(CURLINFO_ACTIVESOCKET)", url: redactedURL)
        let connected = try info(CURLINFO_NUM_CONNECTS, "CURLINFO_NUM_CONNECTS") > 0
        if connected {
            let expiry = try certificateExpiryFromCertinfo()
            expiries.record(expiry, socket: socket)
            return expiry
        }
        return try certificateExpiryFromCertinfo() ?? expiries.lookup(socket: socket)
    }

    private func certificateExpiryFromCertinfo() throws(HTTPClientError) -> Date? {
        var info: UnsafeMutablePointer<curl_certinfo>?
        try curlCheck(
            cshim_curl_easy_getinfo_certinfo(handle, &info), "curl_easy_getinfo(CURLINFO_CERTINFO)",
            url: redactedURL)
        guard let info, info.pointee.num_of_certs > 0, let lists = info.pointee.certinfo else { return nil }
        var node = lists[0]
        let label = "Expire date:"
        while let current = node {
            if let data = current.pointee.data {
                let entry = String(cString: data)
                if entry.hasPrefix(label) { return CertificateDate.parse(entry.dropFirst(label.count)) }
            }
            node = current.pointee.next
        }
        return nil
    }
}

/// The leaf certificate expiry seen at the handshake of each open HTTPS connection, by socket.
///
/// Sound because every HTTPS transfer asks for certificate information, so each new HTTPS connection
/// overwrites its socket's entry at its handshake; a stale entry (socket closed, number reused) is only
/// ever read through a reused connection, which must have had a handshake of its own first. Owned by the
/// curl thread.
struct CertificateExpiryCache {
    private var bySocket: [curl_socket_t: Date] = [:]

    mutating func record(_ expiry: Date?, socket: curl_socket_t) {
        guard socket != CURL_SOCKET_BAD else { return }
        bySocket[socket] = expiry
    }

    func lookup(socket: curl_socket_t) -> Date? {
        socket == CURL_SOCKET_BAD ? nil : bySocket[socket]
    }
}

// MARK: C callbacks

/// CURLOPT_WRITEFUNCTION: keeps up to `maxBodyBytes`, and reports every byte as taken so the transfer
/// goes on (the rest is read and discarded).
private func curlTransferWriteBody(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?
) -> Int {
    let length = size * count
    guard let data, let context, length > 0 else { return length }
    Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
        .receiveBody(UnsafeRawBufferPointer(start: data, count: length))
    return length
}

/// CURLOPT_HEADERFUNCTION: one complete header line per call.
private func curlTransferWriteHeader(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?
) -> Int {
    let length = size * count
    guard let data, let context, length > 0 else { return length }
    Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
        .receiveHeaderLine(UnsafeRawBufferPointer(start: data, count: length))
    return length
}
