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

    /// A new session's cookie value for `name`.
    public func issue(name: String, now: Date) throws -> String {
        let expiry = Int64(now.addingTimeInterval(lifetime).timeIntervalSince1970)
        let nonce = hexEncoded(try secureRandomBytes(count: 12))
        let payload = "\(name).\(expiry).\(nonce)"
        return payload + "." + hexEncoded(try mac("session|" + payload))
    }

    /// The person a cookie value names, if its MAC is right and it has not expired.
    public func verify(_ value: String, now: Date) -> String? {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, ConsoleIdentity.isValidName(parts[0]), let expiry = Int64(parts[1]),
            let given = hexDecoded(parts[3]),
            let expected = try? mac("session|\(parts[0]).\(parts[1]).\(parts[2])"),
            constantTimeEquals(given, expected), Double(expiry) > now.timeIntervalSince1970
        else { return nil }
        return parts[0]
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
