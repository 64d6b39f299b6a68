internal import CCurl

/// A libcurl status code: `CURLcode` from the easy interface or `CURLMcode` from the multi interface.
protocol CurlStatus {
    var isOK: Bool { get }
    var code: Int { get }
    /// libcurl's generic text for the code.
    var genericMessage: String { get }
    var kind: HTTPClientError.Kind { get }
}

extension CURLcode: CurlStatus {
    var isOK: Bool { self == CURLE_OK }
    var code: Int { Int(rawValue) }
    var genericMessage: String { String(cString: curl_easy_strerror(self)) }

    var kind: HTTPClientError.Kind {
        switch self {
        case CURLE_OPERATION_TIMEDOUT: .timeout
        case CURLE_COULDNT_RESOLVE_HOST: .couldNotResolveHost
        case CURLE_COULDNT_CONNECT: .couldNotConnect
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
            CURLE_SSL_INVALIDCERTSTATUS:
            .tlsVerificationFailed
        case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE,
            CURLE_SSL_CRL_BADFILE, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_ENGINE_NOTFOUND,
            CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_CLIENTCERT:
            .tlsError
        case CURLE_TOO_MANY_REDIRECTS: .tooManyRedirects
        case CURLE_SEND_ERROR: .sendFailed
        case CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE: .receiveFailed
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL: .invalidURL
        default: .other(code: code)
        }
    }
}

extension CURLMcode: CurlStatus {
    var isOK: Bool { self == CURLM_OK }
    var code: Int { Int(rawValue) }
    var genericMessage: String { String(cString: curl_multi_strerror(self)) }
    var kind: HTTPClientError.Kind { .other(code: code) }
}

/// The one place where libcurl status codes are checked. Throws an `HTTPClientError` carrying curl's
/// message (the transfer's error buffer when curl filled it), with the URL's secrets scrubbed.
///
/// - Parameters:
///   - operation: what was called, e.g. `"curl_easy_setopt(CURLOPT_URL)"`; shown for failures that are
///     not about the network (setup and multi-handle failures).
///   - detail: the transfer's error buffer, if any.
func curlCheck(
    _ status: some CurlStatus, _ operation: @autoclosure () -> String, url: @autoclosure () -> RedactedURL,
    detail: String? = nil
) throws(HTTPClientError) {
    if status.isOK { return }
    let url = url()
    var message = detail.flatMap { $0.isEmpty ? nil : $0 } ?? status.genericMessage
    if status is CURLMcode || status.kind == .other(code: status.code) {
        message = "\(operation()): \(message)"
    }
    throw HTTPClientError(
        kind: status.kind, message: url.scrub(message), redactedURL: url.text, curlCode: status.code)
}
