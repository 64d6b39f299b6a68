import FleetCrypto
import Foundation

/// The console's people (docs/console.md, "Logging in"): one line per person in `CONSOLE_ACCOUNTS_FILE`,
///
///     alice:pbkdf2-sha256:600000:<salt, base64>:<key, base64>
///
/// made by `console hash-password alice` (the password is read from standard input, never an argument).
/// Blank lines and lines starting with `#` are ignored. Who may act is not decided here: a logged-in person
/// on `OPERATORS` gets the buttons, anyone else sees the pages read-only.
public struct ConsoleAccounts: Sendable {
    public struct Account: Sendable, Equatable {
        public var name: String
        public var iterations: Int
        public var salt: [UInt8]
        public var key: [UInt8]
    }

    public static let scheme = "pbkdf2-sha256"
    /// OWASP's figure for PBKDF2-HMAC-SHA-256 (2023).
    public static let defaultIterations = 600_000
    /// Below this a stolen file is cheap to guess through; such a line is refused.
    public static let minimumIterations = 100_000

    public let accounts: [String: Account]
    /// A stand-in checked when the name is unknown, so a login takes as long for a name that does not exist.
    private let decoy: Account

    public init(_ accounts: [Account]) {
        self.accounts = Dictionary(accounts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        decoy = Account(
            // The most iterations any account has: an unknown name never answers faster than a known one.
            name: "", iterations: accounts.map(\.iterations).max() ?? Self.defaultIterations,
            salt: Array(repeating: 0, count: 16), key: Array(repeating: 0, count: 32))
    }

    /// Parses the file's text; every bad line is an error naming its line number (never its content, which
    /// holds a hash).
    public static func parse(_ text: String, minimumIterations: Int = minimumIterations) throws -> ConsoleAccounts {
        var accounts: [Account] = []
        var seen: Set<String> = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let where_ = "accounts file line \(index + 1)"
            let parts = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 5 else {
                throw ConsoleError(
                    "\(where_): expected name:\(scheme):iterations:salt:key (console hash-password NAME)")
            }
            guard ConsoleIdentity.isValidName(parts[0]) else {
                throw ConsoleError("\(where_): a name is letters, digits and . _ @ - (at most 64)")
            }
            guard parts[1] == scheme else { throw ConsoleError("\(where_): unknown scheme; only \(scheme)") }
            guard let iterations = Int(parts[2]), iterations >= minimumIterations, iterations <= 10_000_000 else {
                throw ConsoleError("\(where_): iterations must be \(minimumIterations) to 10000000")
            }
            guard let salt = Data(base64Encoded: parts[3]), salt.count >= 16,
                let key = Data(base64Encoded: parts[4]), key.count == 32
            else {
                throw ConsoleError("\(where_): salt (16 bytes or more) and key (32 bytes) must be base64")
            }
            guard seen.insert(parts[0]).inserted else { throw ConsoleError("\(where_): \(parts[0]) is listed twice") }
            accounts.append(Account(name: parts[0], iterations: iterations, salt: Array(salt), key: Array(key)))
        }
        return ConsoleAccounts(accounts)
    }

    /// A short digest of the person's stored hash, bound into their sessions (nil: no such account).
    public func fingerprint(of name: String) -> String? {
        guard let account = accounts[name], let digest = try? sha256(account.salt + account.key) else { return nil }
        return hexEncoded(digest.prefix(16))
    }

    /// The name if the password is right; nil otherwise. Unknown names cost the same work.
    public func verify(name: String, password: String) -> String? {
        let account = accounts[name]
        let checked = account ?? decoy
        guard
            let derived = try? pbkdf2SHA256(
                password: Array(password.utf8), salt: checked.salt, iterations: checked.iterations)
        else { return nil }
        return constantTimeEquals(derived, checked.key) && account != nil ? name : nil
    }

    /// One line of the accounts file for `name` and `password`, with a fresh random salt.
    public static func line(name: String, password: String, iterations: Int = defaultIterations) throws -> String {
        guard ConsoleIdentity.isValidName(name) else {
            throw ConsoleError("a name is letters, digits and . _ @ - (at most 64)")
        }
        guard password.count >= 12 else { throw ConsoleError("use a password of 12 characters or more") }
        let salt = try secureRandomBytes(count: 16)
        let key = try pbkdf2SHA256(password: Array(password.utf8), salt: salt, iterations: iterations)
        return "\(name):\(scheme):\(iterations):\(Data(salt).base64EncodedString()):\(Data(key).base64EncodedString())"
    }
}

public struct ConsoleError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

enum ConsoleIdentity {
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64
            && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || "._@-".unicodeScalars.contains($0)
            }
    }
}
