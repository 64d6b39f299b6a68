internal import CCrypto

/// A libcrypto call failed. Carries the OpenSSL error queue's message.
///
/// With in-memory inputs these calls only fail when the library itself is broken or out of memory;
/// the error says which call it was so the log is actionable.
public struct CryptoError: Error, Sendable, CustomStringConvertible {
    /// The libcrypto function that failed, e.g. `EVP_Digest`.
    public var operation: String
    /// OpenSSL's own message for the first queued error, or a note that there was none.
    public var reason: String

    public var description: String {
        "libcrypto \(operation) failed: \(reason). Check that the OpenSSL 3 libcrypto in the image is intact."
    }
}

/// The one place a libcrypto status is checked. `ok` is the call's success condition.
private func check(_ ok: Bool, _ operation: String) throws(CryptoError) {
    guard !ok else { return }
    let code = ERR_get_error()
    guard code != 0 else { throw CryptoError(operation: operation, reason: "no error queued") }
    var buffer = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buffer, buffer.count)
    // Drain the rest of the thread's error queue so a later failure reports its own cause.
    while ERR_get_error() != 0 {}
    let message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    throw CryptoError(operation: operation, reason: message)
}

/// SHA-256 of `data`: 32 bytes.
public func sha256(_ data: [UInt8]) throws(CryptoError) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
    var length: UInt32 = 0
    let status = data.withUnsafeBytes { input in
        EVP_Digest(input.baseAddress, input.count, &digest, &length, EVP_sha256(), nil)
    }
    try check(status == 1 && Int(length) == digest.count, "EVP_Digest(SHA-256)")
    return digest
}

/// SHA-256 of a string's UTF-8 bytes.
public func sha256(_ string: String) throws(CryptoError) -> [UInt8] {
    try sha256(Array(string.utf8))
}

/// HMAC-SHA-256 of `data` under `key`: 32 bytes.
public func hmacSHA256(key: [UInt8], data: [UInt8]) throws(CryptoError) -> [UInt8] {
    guard key.count <= Int(Int32.max) else {
        throw CryptoError(operation: "HMAC(SHA-256)", reason: "key longer than 2 GiB")
    }
    var mac = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
    var length: UInt32 = 0
    let result = key.withUnsafeBytes { keyBytes in
        data.withUnsafeBytes { dataBytes in
            // HMAC() writes into `mac` and returns it, or NULL on failure.
            HMAC(
                EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                dataBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), dataBytes.count,
                &mac, &length) != nil
        }
    }
    try check(result && Int(length) == mac.count, "HMAC(SHA-256)")
    return mac
}

/// HMAC-SHA-256 of a string's UTF-8 bytes under `key`.
public func hmacSHA256(key: [UInt8], data: String) throws(CryptoError) -> [UInt8] {
    try hmacSHA256(key: key, data: Array(data.utf8))
}

/// `count` bytes from OpenSSL's CSPRNG.
public func secureRandomBytes(count: Int) throws(CryptoError) -> [UInt8] {
    precondition(count >= 0 && count <= Int(Int32.max), "secureRandomBytes: count out of range")
    var bytes = [UInt8](repeating: 0, count: count)
    guard count > 0 else { return bytes }
    let status = RAND_bytes(&bytes, Int32(count))
    try check(status == 1, "RAND_bytes")
    return bytes
}

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

/// Lower-case hex, two digits per byte.
public func hexEncoded(_ bytes: some Sequence<UInt8>) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.underestimatedCount * 2)
    for byte in bytes {
        out.append(hexDigits[Int(byte >> 4)])
        out.append(hexDigits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// The bytes of a hex string (either case), or nil if it is not an even number of hex digits.
public func hexDecoded(_ hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var index = 0
    while index < digits.count {
        guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
        out.append(high << 4 | low)
        index += 2
    }
    return out
}

/// PBKDF2-HMAC-SHA-256 (RFC 8018) of `password` with `salt`: `length` bytes. For stored passwords
/// (the console's accounts file), with at least 600,000 iterations as OWASP advises for this function.
public func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int, length: Int = 32) throws(CryptoError)
    -> [UInt8]
{
    guard iterations > 0, iterations <= Int(Int32.max), length > 0, length <= 1024,
        password.count <= Int(Int32.max), salt.count <= Int(Int32.max)
    else {
        throw CryptoError(operation: "PKCS5_PBKDF2_HMAC", reason: "iterations, length or input out of range")
    }
    var key = [UInt8](repeating: 0, count: length)
    let status = password.withUnsafeBytes { p in
        salt.withUnsafeBytes { s in
            PKCS5_PBKDF2_HMAC(
                p.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(p.count),
                s.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(s.count), Int32(iterations), EVP_sha256(),
                Int32(length), &key)
        }
    }
    try check(status == 1, "PKCS5_PBKDF2_HMAC(SHA-256)")
    return key
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths (CRYPTO_memcmp): for
/// comparing MACs, signatures and password hashes, where an early exit would tell an attacker how many
/// leading bytes they got right.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 }
    }
}
