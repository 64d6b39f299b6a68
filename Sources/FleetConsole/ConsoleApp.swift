import FleetControl
import Foundation
import Logging
import RecoveryCore

/// One HTTP request as the console sees it: header names lower-cased.
public struct ConsoleRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [String: String]
    public var body: [UInt8]
    /// The TCP peer's address (behind a reverse proxy: the proxy's).
    public var peer: String?

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: [UInt8] = [], peer: String? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { a, _ in a })
        self.body = body
        self.peer = peer
    }

    /// The form fields of an `application/x-www-form-urlencoded` body.
    public var form: [String: String] { FormEncoding.decode(String(decoding: body, as: UTF8.self)) }

    /// The session cookie's value, if the request carries one.
    var sessionCookie: String? {
        guard let header = headers["cookie"] else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(ConsoleSessions.cookieName + "=") {
                return String(pair.dropFirst(ConsoleSessions.cookieName.count + 1))
            }
        }
        return nil
    }
}

public struct ConsoleResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    public var text: String { String(decoding: body, as: UTF8.self) }

    static func html(_ status: Int, _ page: String) -> ConsoleResponse {
        ConsoleResponse(status: status, headers: [("Content-Type", "text/html; charset=utf-8")], body: Array(page.utf8))
    }
    static func redirect(_ location: String, cookie: String? = nil) -> ConsoleResponse {
        var headers = [("Location", location)]
        if let cookie { headers.append(("Set-Cookie", cookie)) }
        return ConsoleResponse(status: 303, headers: headers)
    }
    static func plain(_ status: Int, _ text: String) -> ConsoleResponse {
        ConsoleResponse(
            status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(text.utf8))
    }
}

public struct ConsoleConfiguration: Sendable {
    public var accounts: ConsoleAccounts
    public var sessions: ConsoleSessions
    /// The people whose commands the decision worker accepts (`OPERATORS`): they get the buttons.
    public var operators: Set<String>
    public var slack: SlackInteractivity?
    /// How long a button waits for the decision worker's answer (and a step's outcome) before it shows
    /// what it has.
    public var commandTimeout: Duration = .seconds(20)
    /// Rows of history on a target's page.
    public var timelineRows = 200
    /// CONSOLE_PUBLIC_URL: the origin browsers see (behind a proxy). A POST whose `Origin` is another is
    /// refused; unset, the origin must match the request's own host.
    public var publicURL: String?

    public init(
        accounts: ConsoleAccounts, sessions: ConsoleSessions, operators: Set<String>, slack: SlackInteractivity? = nil
    ) {
        self.accounts = accounts
        self.sessions = sessions
        self.operators = operators
        self.slack = slack
    }
}

/// The console's routes (docs/console.md). Pure over its backend and clock, so it is tested without a
/// server; ``ConsoleServer`` puts it on Hummingbird.
public struct ConsoleApp: Sendable {
    let configuration: ConsoleConfiguration
    let backend: any ConsoleBackend
    let logger: Logger
    let clock: @Sendable () -> Date
    let throttle = LoginThrottle()
    /// At most 2 password hashes at once (PBKDF2 is deliberately slow: unbounded, anyone could fill the CPU).
    let hashing = HashGate(slots: 2, queue: 16)

    public init(
        configuration: ConsoleConfiguration, backend: any ConsoleBackend, logger: Logger,
        clock: @escaping @Sendable () -> Date = Date.init
    ) {
        self.configuration = configuration
        self.backend = backend
        self.logger = logger
        self.clock = clock
    }

    /// Who is asking: the person of a valid session, whether they may act, and their CSRF token.
    struct Viewer {
        var name: String
        var isOperator: Bool
        var csrf: String
        var session: String
    }

    public func handle(_ request: ConsoleRequest) async -> ConsoleResponse {
        var response = await route(request)
        // Nothing the console serves may be framed, cached or leak its address to another site; scripts only
        // from the console itself (no inline script: an injected one would not run). `same-origin`, not
        // `no-referrer`: with the latter browsers send `Origin: null` on the console's own form POSTs.
        response.headers += [
            ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
            ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"),
            ("Cache-Control", "no-store"),
        ]
        return response
    }

    private func route(_ request: ConsoleRequest) async -> ConsoleResponse {
        let parts = request.path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        switch (request.method, parts) {
        case ("GET", ["healthz"]): return .plain(200, "ok\n")
        case ("GET", ["console.js"]):
            return ConsoleResponse(
                status: 200, headers: [("Content-Type", "text/javascript; charset=utf-8")],
                body: Array(ConsolePages.script.utf8))
        case ("GET", ["console.css"]):
            return ConsoleResponse(
                status: 200, headers: [("Content-Type", "text/css; charset=utf-8")],
                body: Array(ConsolePages.style.utf8))
        case ("GET", ["login"]): return .html(200, ConsolePages.login(error: nil))
        case ("POST", ["login"]):
            // Login CSRF (someone else's session planted in this browser) is refused by origin too.
            if let refusal = foreignOrigin(request) { return refusal }
            return await login(request)
        case ("POST", ["slack", "interactions"]):
            guard let slack = configuration.slack else { return .plain(404, "Slack interactivity is not configured\n") }
            return await slack.handle(request, backend: backend, now: clock())
        default: break
        }
        guard let viewer = viewer(request) else {
            // A page sends the browser to the login form; a live fragment or a POST just says so.
            return request.method == "GET" && parts.last != "live" ? .redirect("/login") : .plain(401, "log in first\n")
        }
        if request.method == "POST" {
            if let refusal = foreignOrigin(request) { return refusal }
            let form = request.form
            guard configuration.sessions.checkCSRF(form["csrf"], session: viewer.session) else {
                logger.warning("POST without a valid CSRF token refused", metadata: ["person": "\(viewer.name)"])
                return .plain(403, "refused: missing or wrong CSRF token (reload the page and try again)\n")
            }
            if parts == ["logout"] { return .redirect("/login", cookie: configuration.sessions.clearCookie) }
            guard viewer.isOperator else {
                return .plain(403, "refused: \(viewer.name) is not on OPERATORS; the console is read-only for you\n")
            }
            if parts.count == 3, parts[0] == "targets", parts[2] == "maintenance" {
                return await maintenance(parts[1], form: form, viewer: viewer)
            }
            return await command(parts, form: form, viewer: viewer)
        }
        guard request.method == "GET" || request.method == "HEAD" else { return .plain(405, "GET or POST\n") }
        if parts.isEmpty { return await fleet(viewer, fragment: false) }
        if parts == ["fleet", "live"] { return await fleet(viewer, fragment: true) }
        if parts.first == "targets", parts.count == 2 { return await target(parts[1], viewer, fragment: false) }
        if parts.first == "targets", parts.count == 3, parts[2] == "live" {
            return await target(parts[1], viewer, fragment: true)
        }
        if parts.first == "targets", parts.count == 4 || parts.count == 5, parts[2] == "incidents",
            parts.count == 4 || parts[4] == "live"
        {
            return await target(parts[1], viewer, fragment: parts.count == 5, incident: parts[3])
        }
        return .plain(404, "no such page\n")
    }

    /// Same origin only: a browser names the page's origin on every POST; it must be this console's
    /// (CONSOLE_PUBLIC_URL's, else the request's own host). A POST without `Origin` (not a browser) still
    /// needs its CSRF token.
    func foreignOrigin(_ request: ConsoleRequest) -> ConsoleResponse? {
        guard let origin = request.headers["origin"] else { return nil }
        let allowed: [String]
        if let publicURL = configuration.publicURL, let url = URL(string: publicURL), let scheme = url.scheme,
            let host = url.host
        {
            allowed = ["\(scheme)://\(host)\(url.port.map { ":\($0)" } ?? "")"]
        } else if let host = request.headers["host"] {
            allowed = ["http://\(host)", "https://\(host)"]
        } else {
            allowed = []
        }
        guard !allowed.contains(origin) else { return nil }
        logger.warning("POST from another origin refused", metadata: ["origin": "\(ConsolePages.loggable(origin))"])
        return .plain(403, "refused: a request from another site (Origin \(origin))\n")
    }

    func viewer(_ request: ConsoleRequest) -> Viewer? {
        let accounts = configuration.accounts
        guard let session = request.sessionCookie,
            let name = configuration.sessions.verify(session, now: clock(), fingerprint: accounts.fingerprint(of:))
        else {
            return nil
        }
        return Viewer(
            name: name, isOperator: configuration.operators.contains(name),
            csrf: configuration.sessions.csrfToken(session: session), session: session)
    }

    private func login(_ request: ConsoleRequest) async -> ConsoleResponse {
        let form = request.form
        let name = form["name"] ?? ""
        let now = clock()
        let wrong = ConsoleResponse.html(401, ConsolePages.login(error: "Wrong name or password."))
        // A name no account could have costs nothing and is not remembered.
        guard ConsoleIdentity.isValidName(name) else { return wrong }
        // Per name and address: someone guessing from one address cannot lock the person out elsewhere.
        let key = "\(name)|\(request.peer ?? "-")"
        guard await throttle.begin(key, now: now) else {
            return .html(429, ConsolePages.login(error: "Too many failed attempts; wait 15 minutes."))
        }
        let accounts = configuration.accounts
        let password = form["password"] ?? ""
        guard let verified = await hashing.run({ accounts.verify(name: name, password: password) }) else {
            await throttle.end(key, failed: false, now: now)
            return .html(503, ConsolePages.login(error: "The console is busy; try again in a moment."))
        }
        await throttle.end(key, failed: verified == nil, now: now)
        guard let person = verified, let digest = accounts.fingerprint(of: person),
            let cookie = try? configuration.sessions.issue(name: person, fingerprint: digest, now: now)
        else {
            // Only a name that is an account is logged: a password typed into the name field is not.
            logger.notice(
                "console login refused",
                metadata: ["name": "\(accounts.accounts[name] != nil ? name : "(not an account)")"])
            return wrong
        }
        logger.notice("console login", metadata: ["person": "\(person)"])
        return .redirect("/", cookie: configuration.sessions.setCookie(cookie))
    }

    private func fleet(_ viewer: Viewer, fragment: Bool) async -> ConsoleResponse {
        do {
            let report = try await backend.status(now: clock())
            let live = ConsolePages.fleetLive(report, viewer: viewer)
            return .html(200, fragment ? live : ConsolePages.fleetPage(live, viewer: viewer))
        } catch {
            return .html(503, ConsolePages.problem("The fleet's state could not be read: \(error)", viewer: viewer))
        }
    }

    /// A target's page, or with `incident` one incident's page (its rows of the history only).
    private func target(_ name: String, _ viewer: Viewer, fragment: Bool, incident: String? = nil) async
        -> ConsoleResponse
    {
        do {
            let report = try await backend.status(now: clock())
            guard let row = report.targets.first(where: { $0.target == name }) else {
                return .html(404, ConsolePages.problem("No target named \(name).", viewer: viewer))
            }
            var timeline: HistoryReport?
            var historyError: String?
            do {
                // An incident's page looks further back: its rows are a part of the target's.
                timeline = try await backend.history(
                    target: name, limit: incident == nil ? configuration.timelineRows : configuration.timelineRows * 10)
            } catch {
                historyError = "\(error)"
            }
            if let incident, let timeline, incident != row.incidentId,
                IncidentTimeline.rows(timeline.entries, incident: incident).isEmpty
            {
                return .html(404, ConsolePages.problem("No incident \(incident) in \(name)'s history.", viewer: viewer))
            }
            let live = ConsolePages.targetLive(
                row, brake: report.brake, timeline: timeline, historyError: historyError, now: report.at,
                incident: incident)
            if fragment { return .html(200, live) }
            // The target's own windows: read once per page, not on every live update.
            let windows: Result<String?, any Error>
            do { windows = .success(try await backend.maintenance(target: name)) } catch { windows = .failure(error) }
            return .html(
                200,
                ConsolePages.targetPage(row, live: live, maintenance: windows, viewer: viewer, incident: incident))
        } catch {
            return .html(503, ConsolePages.problem("The fleet's state could not be read: \(error)", viewer: viewer))
        }
    }

    /// A button: the same command `recoveryctl` sends, relayed for the person who pressed it.
    private func command(_ parts: [String], form: [String: String], viewer: Viewer) async -> ConsoleResponse {
        let request: CommandRequest
        if parts == ["brake"] {
            switch form["action"] {
            case "engage":
                request = CommandRequest(
                    target: nil, name: .brakeEngage, reason: nonEmpty(form["reason"]) ?? "engaged from the console",
                    onBehalfOf: viewer.name)
            case "release": request = CommandRequest(target: nil, name: .brakeRelease, onBehalfOf: viewer.name)
            default: return .plain(400, "brake action must be engage or release\n")
            }
        } else if parts.count == 3, parts[0] == "targets", parts[2] == "commands" {
            let target = parts[1]
            guard let name = form["command"].flatMap(CommandName.init(rawValue:)),
                Self.buttons.contains(name)
            else {
                return .plain(400, "command must be one of \(Self.buttons.map(\.rawValue).joined(separator: ", "))\n")
            }
            var until: Date?
            if name == .hold {
                // An end time typed in (ISO 8601 or a duration, as `recoveryctl hold --until` takes), else the
                // hours chosen.
                if let typed = nonEmpty(form["until"]) {
                    // A bare number would be seconds: too easy to mistake for hours.
                    guard typed.contains(where: { !$0.isNumber }) else {
                        return .plain(400, "give the hold's end with a unit (90m, 2h) or as a time\n")
                    }
                    do { until = try TimeInput.until(typed, now: clock()) } catch {
                        return .plain(400, "\(error)\n")
                    }
                } else {
                    guard let hours = form["hours"].flatMap(Double.init), hours > 0, hours <= 24 * 7 else {
                        return .plain(400, "hold needs hours between 0 and 168, or an end time\n")
                    }
                    until = clock().addingTimeInterval(hours * 3600)
                }
                guard let end = until, end > clock(), end <= clock().addingTimeInterval(7 * 86_400) else {
                    return .plain(400, "a hold must end in the future, within 7 days\n")
                }
            }
            // The incident the page showed: if another one opened since, the decision worker refuses.
            request = CommandRequest(
                target: target, name: name, until: until, reason: nonEmpty(form["reason"]), onBehalfOf: viewer.name,
                incidentId: name == .reset ? nil : nonEmpty(form["incident"]))
        } else {
            return .plain(404, "no such action\n")
        }
        logger.notice(
            "console command",
            metadata: [
                "person": "\(viewer.name)", "command": "\(request.name.rawValue)",
                "target": "\(request.target ?? "fleet")",
            ])
        do {
            let result = try await backend.send(request, timeout: configuration.commandTimeout)
            let back = request.target.map { "/targets/\(ConsolePages.pathComponent($0))" } ?? "/"
            return .html(
                result.status == .rejected ? 409 : 200, ConsolePages.answer(result, back: back, viewer: viewer))
        } catch {
            return .html(502, ConsolePages.problem("The command was not sent: \(error)", viewer: viewer))
        }
    }

    /// The buttons of a target's page: the commands of the ladder an operator answers a page with.
    static let buttons: [CommandName] = [.approve, .ack, .hold, .resume, .reset, .abort]

    private func nonEmpty(_ text: String?) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        return String(text.prefix(500))
    }
}
