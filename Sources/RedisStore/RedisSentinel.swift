/// Where the Sentinels are and which primary to ask them for (docs/scaling.md, "Redis with Sentinel").
///
/// With a Sentinel configuration, ``RedisClient`` never connects to a fixed address: before every
/// (re)connect it asks the Sentinels `SENTINEL get-master-addr-by-name <masterName>`, one after another
/// starting with the last one that answered, connects to the address named, and checks with `ROLE` that
/// the server really is a primary (right after a fail-over a Sentinel can still name the old one, and a
/// demoted primary keeps its old address). A replica is never used: the client drops it and asks again.
/// The REDIS_URL still gives the user, password and database; its host and port are not used.
public struct RedisSentinelConfiguration: Sendable, Hashable {
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public static let defaultPort = 26_379

    public let sentinels: [Node]
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> …`).
    public let masterName: String
    /// Credentials for the Sentinels themselves (`requirepass` / an ACL user on the Sentinel), if they
    /// need any. Never shown in descriptions.
    public let user: String?
    public let password: String?

    /// Parses `host[:port],host[:port],…` (port 26379 when left out; IPv6 hosts in brackets).
    public init(list: String, masterName: String, user: String? = nil, password: String? = nil) throws(RedisError) {
        var nodes: [Node] = []
        for raw in list.split(separator: ",") {
            let item = String(raw.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
            guard !item.isEmpty else { continue }
            guard let node = Self.node(item) else {
                // A mistyped entry may hold credentials (":pw@host"): never repeat what comes before an '@'.
                let shown = item.lastIndex(of: "@").map { "…" + item[$0...] } ?? item
                throw .invalidURL("REDIS_SENTINELS entry '\(shown)' is not host[:port] (IPv6 as [addr]:port)")
            }
            nodes.append(node)
        }
        guard !nodes.isEmpty else { throw .invalidURL("REDIS_SENTINELS names no Sentinel (host:port,host:port,…)") }
        guard Set(nodes).count == nodes.count else { throw .invalidURL("REDIS_SENTINELS names a Sentinel twice") }
        guard !masterName.isEmpty, !masterName.contains(" ") else {
            throw .invalidURL("the Sentinel master name '\(masterName)' must be non-empty and contain no spaces")
        }
        if user != nil, password == nil { throw .invalidURL("a Sentinel user needs a password") }
        self.sentinels = nodes
        self.masterName = masterName
        self.user = user
        self.password = password
    }

    private static func node(_ item: String) -> Node? {
        var host = Substring(item)
        var port: Substring?
        if item.hasPrefix("[") {
            guard let close = item.firstIndex(of: "]") else { return nil }
            host = item[item.index(after: item.startIndex)..<close]
            let after = item[item.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { return nil }
                port = after.dropFirst()
            }
        } else if let colon = item.firstIndex(of: ":") {
            host = item[..<colon]
            port = item[item.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(where: { "/@[] ".contains($0) }) else { return nil }
        guard let port else { return Node(host: String(host), port: defaultPort) }
        guard port.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(port), (1...65_535).contains(value)
        else { return nil }
        return Node(host: String(host), port: value)
    }

    /// The Sentinel at `index` as a connectable URL (its credentials, database 0).
    func url(_ index: Int) throws(RedisError) -> RedisURL {
        let node = sentinels[index]
        return try RedisURL(host: node.host, port: node.port, user: user, password: password)
    }
}

extension RedisSentinelConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var debugDescription: String { "RedisSentinelConfiguration(\(description))" }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "sentinels": sentinels.map(\.description), "masterName": masterName, "user": user as Any,
                "password": password == nil ? "nil" : "redacted",
            ])
    }

    public var description: String {
        "Sentinels \(sentinels.map(\.description).joined(separator: ",")) for '\(masterName)'"
            + (password == nil ? "" : " (authenticated)")
    }
}

/// Asks the Sentinels for the current primary. Not thread-safe: owned by a ``RedisClient`` and used only
/// on its serial queue.
final class SentinelResolver {
    let configuration: RedisSentinelConfiguration
    /// The Sentinel that answered last is asked first next time (the Sentinel clients guideline).
    private var preferred = 0

    init(_ configuration: RedisSentinelConfiguration) { self.configuration = configuration }

    /// The primary's address according to the first Sentinel that knows it. Throws `.connection` naming
    /// every Sentinel's failure when none answers.
    func primary(connectTimeout: Duration) throws(RedisError) -> (host: String, port: Int, sentinel: String) {
        let count = configuration.sentinels.count
        var failures: [String] = []
        for step in 0..<count {
            let index = (preferred + step) % count
            let node = configuration.sentinels[index]
            do {
                let connection = try RedisConnection.open(
                    url: try configuration.url(index), connectTimeout: connectTimeout,
                    commandTimeout: connectTimeout, clientName: nil)
                let reply = try connection.run(
                    ["SENTINEL", "get-master-addr-by-name", configuration.masterName].map { Array($0.utf8) })
                guard case .array(let parts) = reply, parts.count == 2, let host = parts[0].string,
                    let portText = parts[1].string, let port = Int(portText), (1...65_535).contains(port)
                else {
                    failures.append("\(node): does not know '\(configuration.masterName)' (\(reply))")
                    continue
                }
                preferred = index
                return (host, port, node.description)
            } catch {
                failures.append("\(node): \(error.message)")
            }
        }
        throw RedisError(
            kind: .connection,
            message:
                "no Sentinel named the primary of '\(configuration.masterName)': \(failures.joined(separator: "; "))")
    }
}
