import Foundation

/// A parsed `amqp://` or `amqps://` URL: `amqp[s]://[user[:password]@]host[:port][/vhost][?heartbeat=N]`.
///
/// The vhost is the percent-decoded path without its leading slash (`%2f` is `/`); an absent path means
/// the default vhost `/`. The password never appears in `description`.
public struct AMQPURL: Sendable, Equatable, CustomStringConvertible {
    public var tls: Bool
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String
    /// Heartbeat in seconds from the `heartbeat` query parameter, if any.
    public var heartbeat: Int?

    public init(_ string: String) throws(AMQPError) {
        guard let components = URLComponents(string: string), let scheme = components.scheme?.lowercased()
        else { throw AMQPError.invalidURL(reason: "not a URL", url: Self.redact(string)) }
        switch scheme {
        case "amqp": tls = false
        case "amqps": tls = true
        default:
            throw AMQPError.invalidURL(
                reason: "scheme must be amqp or amqps, not \(scheme)", url: Self.redact(string))
        }
        guard let host = components.host, !host.isEmpty else {
            throw AMQPError.invalidURL(reason: "no host", url: Self.redact(string))
        }
        self.host = host
        port = components.port ?? (tls ? 5671 : 5672)
        guard (1...65535).contains(port) else {
            throw AMQPError.invalidURL(reason: "port \(port) out of range", url: Self.redact(string))
        }
        user = components.user?.removingPercentEncoding ?? "guest"
        password = components.password?.removingPercentEncoding ?? "guest"
        let path = components.percentEncodedPath
        if path.isEmpty || path == "/" {
            vhost = "/"
        } else {
            vhost = String(path.dropFirst()).removingPercentEncoding ?? String(path.dropFirst())
        }
        heartbeat = nil
        if let value = components.queryItems?.first(where: { $0.name == "heartbeat" })?.value {
            guard let seconds = Int(value), seconds >= 0 else {
                throw AMQPError.invalidURL(reason: "heartbeat must be a number of seconds", url: Self.redact(string))
            }
            heartbeat = seconds
        }
    }

    public var description: String {
        let encodedVhost = vhost.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? vhost
        return "\(tls ? "amqps" : "amqp")://\(user):***@\(host):\(port)/\(encodedVhost)"
    }

    /// A URL string with any password replaced, for error messages about a URL that did not parse.
    static func redact(_ string: String) -> String {
        guard let at = string.lastIndex(of: "@"), let scheme = string.range(of: "://") else { return string }
        let userinfo = string[scheme.upperBound..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return string }
        return String(string[..<colon]) + ":***" + String(string[at...])
    }
}
