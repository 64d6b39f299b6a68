import FleetCrypto
import Foundation

/// Signed session cookies and the CSRF tokens bound to them (docs/console.md, "Sessions and CSRF").
///
/// The cookie is `name.expiry.nonce.mac`, the MAC an HMAC-SHA-256 under `CONSOLE_SESSION_SECRET`, so the
/// console keeps no session table and any replica accepts any session. The cookie is HttpOnly,
/// SameSite=Strict and (unless turned off for plain-HTTP development) Secure. A session cannot be revoked
/// one by one: it ends at its expiry (`CONSOLE_SESSION_HOURS`, 12 by default), and changing the secret
/// ends all of them.
///
/// Every state-changing request carries a CSRF token in its form: an HMAC of the session cookie under the
/// same secret, with its own label. A page of another site can neither read it (same-origin policy) nor
/// derive it (no secret), and it changes with each login.
public struct ConsoleSessions: Sendable {
    public static let cookieName = "fleet_session"
    let secret: [UInt8]
    public let lifetime: TimeInterval
    public let secureCookie: Bool

    public init(secret: String, lifetime: TimeInterval = 12 * 3600, secureCookie: Bool = true) throws {
        guard !secret.lowercased().hasPrefix("change-me") else {
            throw ConsoleError(
                "CONSOLE_SESSION_SECRET is still the example's placeholder: set it to openssl rand -hex 32")
        }
        guard secret.utf8.count >= 32 else {
            throw ConsoleError(
                "CONSOLE_SESSION_SECRET must be at least 32 characters (e.g. openssl rand -hex 32)")
        }
        self.secret = Array(secret.utf8)
        self.lifetime = lifetime
        self.secureCookie = secureCookie
    }

    /// A new session's cookie value for `name`. `fingerprint` (``ConsoleAccounts/fingerprint(of:)``) is in
    /// the MAC, not the cookie: a changed password or a removed account ends the person's sessions.
    public func issue(name: String, fingerprint: String, now: Date) throws -> String {
        let expiry = Int64(now.addingTimeInterval(lifetime).timeIntervalSince1970)
        let nonce = hexEncoded(try secureRandomBytes(count: 12))
        let payload = "\(name).\(expiry).\(nonce)"
        return payload + "." + hexEncoded(try mac("session|\(fingerprint)|" + payload))
    }

    /// The person a cookie value names, if that person still has an account (`fingerprint` answers for
    /// them), the MAC is right and it has not expired. Names may contain dots: the last three parts are
    /// the expiry, the nonce and the MAC.
    public func verify(_ value: String, now: Date, fingerprint: (String) -> String?) -> String? {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 4 else { return nil }
        let name = parts.dropLast(3).joined(separator: ".")
        let (expiryText, nonce, macText) = (parts[parts.count - 3], parts[parts.count - 2], parts[parts.count - 1])
        guard ConsoleIdentity.isValidName(name), let expiry = Int64(expiryText), let given = hexDecoded(macText),
            let digest = fingerprint(name),
            let expected = try? mac("session|\(digest)|\(name).\(expiryText).\(nonce)"),
            constantTimeEquals(given, expected), Double(expiry) > now.timeIntervalSince1970
        else { return nil }
        return name
    }

    /// The CSRF token of a session (its cookie value).
    public func csrfToken(session: String) -> String {
        (try? hexEncoded(mac("csrf|" + session))) ?? ""
    }

    public func checkCSRF(_ token: String?, session: String) -> Bool {
        guard let token, let given = hexDecoded(token), let expected = try? mac("csrf|" + session) else { return false }
        return constantTimeEquals(given, expected)
    }

    public func setCookie(_ value: String) -> String {
        "\(Self.cookieName)=\(value); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(lifetime))"
            + (secureCookie ? "; Secure" : "")
    }

    public var clearCookie: String {
        "\(Self.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" + (secureCookie ? "; Secure" : "")
    }

    private func mac(_ text: String) throws -> [UInt8] { try hmacSHA256(key: secret, data: text) }
}
