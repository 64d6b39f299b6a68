@testable import FleetConsole
import FleetControl
import Foundation
import Logging
import RecoveryCore
import Synchronization
import Testing

/// A console backend on memory: a fixed fleet, and every command it was asked to send.
final class RecordingConsoleBackend: ConsoleBackend {
    let sent = Mutex<[CommandRequest]>([])
    let windows = Mutex<[String: String]>([:])
    func maintenance(target: String) async throws -> String? { windows.withLock { $0[target] } }
    func updateMaintenance(target: String, by person: String, change: @escaping @Sendable (String?) throws -> String?)
        async throws -> String?
    {
        try windows.withLock { stored in
            let new = try change(stored[target])
            stored[target] = new
            return new
        }
    }
    let report: StatusReport
    init(targets: [String] = ["shop-web"]) {
        report = StatusReport(
            at: Date(timeIntervalSince1970: 1_800_000_000),
            brake: BrakeStatus(engaged: false, fleetSize: targets.count),
            targets: targets.map {
                TargetStatus(
                    target: $0, state: "awaiting_approval(restart)", incidentId: "inc-1", outageCount: 1,
                    instanceId: "i-0abc", region: "eu-west-1")
            })
    }
    func status(now: Date) async throws -> StatusReport { report }
    func history(target: String, limit: Int) async throws -> HistoryReport {
        HistoryReport(
            target: target,
            entries: [
                HistoryEntry(
                    occurredAt: "2027-01-14T01:00:00Z", type: "notification", who: "fleet-decision",
                    what: "outage_declared", why: "yesterday's outage", correlationId: "inc-0"),
                HistoryEntry(
                    occurredAt: "2027-01-14T01:05:00Z", type: "notification", who: "fleet-decision",
                    what: "recovered", why: "back", correlationId: "inc-0"),
                HistoryEntry(
                    occurredAt: "2027-01-15T08:00:00Z", type: "notification", who: "fleet-decision",
                    what: "outage_declared", why: "3 failed checks", correlationId: "inc-1"),
                HistoryEntry(
                    occurredAt: "2027-01-15T08:01:00Z", type: "command", who: "alice via fleet-console", what: "ack",
                    why: "ack"),
                HistoryEntry(
                    occurredAt: "2027-01-15T08:01:00Z", type: "notification", who: "alice", what: "command_accepted",
                    why: "acknowledged", correlationId: "inc-1"),
            ], truncated: false)
    }
    func send(_ request: CommandRequest, timeout: Duration) async throws -> CommandResult {
        sent.withLock { $0.append(request) }
        return CommandResult(
            commandId: "cmd-1", command: request.name.rawValue, target: request.target,
            operator: "\(request.onBehalfOf ?? "?") via fleet-console", status: .accepted, detail: "approved")
    }
}

final class PostLog: Sendable {
    let value = Mutex<[(String, String)]>([])
}

/// A console on memory, and a browser's cookie jar for it.
struct ConsoleRig {
    static let secret = String(repeating: "s3cr3t-", count: 6)
    let app: ConsoleApp
    let backend: RecordingConsoleBackend
    let slackPosts: PostLog
    let accounts: ConsoleAccounts

    static func accounts() throws -> ConsoleAccounts {
        let lines = try [
            ConsoleAccounts.line(name: "alice", password: "alice-password-1", iterations: 1000),
            ConsoleAccounts.line(name: "bob", password: "bob-password-123", iterations: 1000),
        ]
        return try ConsoleAccounts.parse("# people\n" + lines.joined(separator: "\n") + "\n", minimumIterations: 1000)
    }

    init(now: Date = Date(timeIntervalSince1970: 1_800_000_000)) throws {
        backend = RecordingConsoleBackend()
        let posts = PostLog()
        slackPosts = posts
        accounts = try Self.accounts()
        var configuration = ConsoleConfiguration(
            accounts: accounts, sessions: try ConsoleSessions(secret: Self.secret, secureCookie: false),
            operators: ["alice"])
        configuration.slack = try SlackInteractivity(
            signingSecret: "slack-signing-secret", people: ["UALICE": "alice", "UBOB": "bob"], operators: ["alice"],
            responseURLPrefix: "https://hooks.slack.com/", logger: Logger(label: "slack"),
            post: { url, json in posts.value.withLock { $0.append((url, String(decoding: json, as: UTF8.self))) } })
        app = ConsoleApp(
            configuration: configuration, backend: backend, logger: Logger(label: "console"), clock: { now })
    }

    /// Logs in and returns the cookie header value.
    func login(_ name: String, _ password: String) async throws -> String {
        let response = await app.handle(
            ConsoleRequest(
                method: "POST", path: "/login", headers: ["Content-Type": "application/x-www-form-urlencoded"],
                body: Array("name=\(name)&password=\(password)".utf8)))
        #expect(response.status == 303)
        let cookie = try #require(response.header("Set-Cookie"))
        #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
        return String(cookie.split(separator: ";")[0])
    }

    func get(_ path: String, cookie: String?) async -> ConsoleResponse {
        await app.handle(ConsoleRequest(method: "GET", path: path, headers: cookie.map { ["Cookie": $0] } ?? [:]))
    }

    func post(_ path: String, cookie: String?, form: String, origin: String? = nil) async -> ConsoleResponse {
        var headers = ["Host": "console.example", "Content-Type": "application/x-www-form-urlencoded"]
        if let cookie { headers["Cookie"] = cookie }
        if let origin { headers["Origin"] = origin }
        return await app.handle(ConsoleRequest(method: "POST", path: path, headers: headers, body: Array(form.utf8)))
    }

    /// The CSRF token a page carries.
    static func csrf(in page: String) throws -> String {
        let marker = "name=\"csrf\" value=\""
        let start = try #require(page.range(of: marker)).upperBound
        return String(page[start...].prefix { $0 != "\"" })
    }
}

@Suite("Console: login, read-only viewers, CSRF, buttons (memory backend)")
struct ConsoleAppTests {
    @Test func anOperatorsButtonSendsTheCommandInTheirName() async throws {
        let rig = try ConsoleRig()
        let cookie = try await rig.login("alice", "alice-password-1")
        let page = await rig.get("/targets/shop-web", cookie: cookie)
        #expect(page.status == 200)
        #expect(page.text.contains("id=\"button-approve\"") && page.text.contains("outage_declared"))
        #expect(page.header("Content-Security-Policy")?.contains("frame-ancestors 'none'") == true)
        // No inline style or script (the policy forbids both): both are served by the console.
        #expect(!page.text.contains("<style") && page.text.contains("href=\"/console.css\""))
        #expect(await rig.get("/console.css", cookie: nil).header("Content-Type")?.hasPrefix("text/css") == true)
        let csrf = try ConsoleRig.csrf(in: page.text)
        let answer = await rig.post(
            "/targets/shop-web/commands", cookie: cookie, form: "csrf=\(csrf)&command=approve",
            origin: "https://console.example")
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.text.contains("alice via fleet-console"))
        let hold = await rig.post(
            "/targets/shop-web/commands", cookie: cookie, form: "csrf=\(csrf)&command=hold&hours=4")
        #expect(hold.status == 200)
        let until = await rig.post(
            "/targets/shop-web/commands", cookie: cookie,
            form: "csrf=\(csrf)&command=hold&hours=1&until=2027-01-15T12:30:00Z")
        #expect(until.status == 200)
        for bad in ["2020-01-01T00:00:00Z", "4", "400d", "2099-01-01T00:00:00Z"] {
            let refused = await rig.post(
                "/targets/shop-web/commands", cookie: cookie, form: "csrf=\(csrf)&command=hold&until=\(bad)")
            #expect(refused.status == 400, "\(bad)")
        }
        let sent = rig.backend.sent.withLock { $0 }
        #expect(sent.count == 3 && sent[2].until == Date(timeIntervalSince1970: 1_800_000_000 + 4.5 * 3600))
        #expect(sent.map(\.name) == [.approve, .hold, .hold])
        #expect(sent.allSatisfy { $0.onBehalfOf == "alice" && $0.target == "shop-web" })
        #expect(sent[1].until == Date(timeIntervalSince1970: 1_800_000_000 + 4 * 3600))
    }

    @Test func eachIncidentHasAPageWithItsOwnRowsAndTheCommandsSentDuringIt() async throws {
        let rig = try ConsoleRig()
        let cookie = try await rig.login("alice", "alice-password-1")
        let target = await rig.get("/targets/shop-web", cookie: cookie).text
        #expect(
            target.contains(
                #"href="/targets/shop-web/incidents/inc-1">inc-1</a>, <a href="/targets/shop-web/incidents/inc-0""#))
        let page = await rig.get("/targets/shop-web/incidents/inc-1", cookie: cookie)
        #expect(page.status == 200 && page.text.contains("Timeline of incident inc-1"))
        #expect(page.text.contains("alice via fleet-console") && page.text.contains("command_accepted"))
        #expect(!page.text.contains("yesterday&#39;s outage"), "another incident's rows are not on its page")
        #expect(page.text.contains(#"data-live="/targets/shop-web/incidents/inc-1/live""#))
        let old = await rig.get("/targets/shop-web/incidents/inc-0/live", cookie: cookie).text
        #expect(old.contains("yesterday&#39;s outage") && !old.contains("alice via"))
        // The buttons act on the current incident: none on an old one's page.
        let oldPage = await rig.get("/targets/shop-web/incidents/inc-0", cookie: cookie).text
        #expect(!oldPage.contains("button-approve") && oldPage.contains("This incident is over"))
        #expect(await rig.get("/targets/shop-web/incidents/inc-9", cookie: cookie).status == 404)
    }

    @Test func aWindowFromNowIsAddedAndEndedOnesAreDropped() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15T08:00:00Z
        #expect(
            try ConsoleApp.addWindow(to: "null", from: now, hours: 1)
                == #"[{"end":"2027-01-15T09:00:00Z","start":"2027-01-15T08:00:00Z"}]"#)
        let kept = #"{"cron":"0 2 * * 6","duration":7200}"#
        let ended = #"{"end":"2027-01-15T07:00:00Z","start":"2027-01-15T06:00:00Z"}"#
        let added = try ConsoleApp.addWindow(to: "[\(kept),\(ended)]", from: now, hours: 2)
        #expect(
            added
                == #"[{"cron":"0 2 * * 6","duration":7200},{"end":"2027-01-15T10:00:00Z","start":"2027-01-15T08:00:00Z"}]"#
        )
        #expect(try ConsoleApp.addWindow(to: kept, from: now, hours: 1).hasPrefix("[" + kept))
    }

    @Test func aForgedPostIsRefusedAndSendsNothing() async throws {
        let rig = try ConsoleRig()
        let cookie = try await rig.login("alice", "alice-password-1")
        let csrf = try ConsoleRig.csrf(in: await rig.get("/", cookie: cookie).text)
        // No token, a wrong token, another session's token, another site's Origin, no session at all.
        let bob = try await rig.login("bob", "bob-password-123")
        let bobsToken = try ConsoleRig.csrf(in: await rig.get("/", cookie: bob).text)
        for (form, origin, who) in [
            ("command=approve", nil, cookie), ("csrf=00ff&command=approve", nil, cookie),
            ("csrf=\(bobsToken)&command=approve", nil, cookie),
            ("csrf=\(csrf)&command=approve", "https://evil.example", cookie),
            ("csrf=\(csrf)&command=approve", nil, nil),
        ] as [(String, String?, String?)] {
            let response = await rig.post("/targets/shop-web/commands", cookie: who, form: form, origin: origin)
            #expect([401, 403].contains(response.status), "\(form) \(origin ?? "-"): \(response.status)")
        }
        #expect(rig.backend.sent.withLock { $0 }.isEmpty)
        // A tampered cookie is no session.
        let tampered = cookie.replacingOccurrences(of: "alice", with: "admin")
        #expect(await rig.get("/", cookie: tampered).status == 303)
    }

    @Test func anOperatorSetsMaintenanceFromNowAndByHandAndAViewerCannot() async throws {
        let rig = try ConsoleRig()
        let cookie = try await rig.login("alice", "alice-password-1")
        let page = await rig.get("/targets/shop-web", cookie: cookie)
        #expect(page.text.contains("None of its own") && page.text.contains("button-maintenance-now"))
        let csrf = try ConsoleRig.csrf(in: page.text)
        let now = await rig.post(
            "/targets/shop-web/maintenance", cookie: cookie, form: "csrf=\(csrf)&action=for_hours&hours=2")
        #expect(now.status == 200, "\(now.text)")
        #expect(
            rig.backend.windows.withLock { $0["shop-web"] }
                == #"[{"end":"2027-01-15T10:00:00Z","start":"2027-01-15T08:00:00Z"}]"#)
        // A second one is added to the first; the page shows both.
        _ = await rig.post(
            "/targets/shop-web/maintenance", cookie: cookie, form: "csrf=\(csrf)&action=for_hours&hours=1")
        #expect(rig.backend.windows.withLock { $0["shop-web"] }?.components(separatedBy: "start").count == 3)
        #expect(await rig.get("/targets/shop-web", cookie: cookie).text.contains("2027-01-15T09:00:00Z"))
        let cron = #"[{"cron": "0 2 * * 6", "time_zone": "Europe/Berlin", "duration": 7200}]"#
        let encoded = cron.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        // By hand, over a form loaded before the last change: refused, nothing written.
        let before = rig.backend.windows.withLock { $0["shop-web"] }
        let stale = await rig.post(
            "/targets/shop-web/maintenance", cookie: cookie,
            form: "csrf=\(csrf)&action=set&windows=\(encoded)&previous=")
        #expect(stale.status == 400 && stale.text.contains("changed since the page was loaded"))
        #expect(rig.backend.windows.withLock { $0["shop-web"] } == before)
        let seen = before!.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        _ = await rig.post(
            "/targets/shop-web/maintenance", cookie: cookie,
            form: "csrf=\(csrf)&action=set&windows=\(encoded)&previous=\(seen)")
        #expect(rig.backend.windows.withLock { $0["shop-web"] } == cron)
        // An unknown target gets nothing written.
        let unknown = await rig.post(
            "/targets/nobody/maintenance", cookie: cookie, form: "csrf=\(csrf)&action=for_hours&hours=2")
        #expect(unknown.status == 404 && rig.backend.windows.withLock { $0["nobody"] } == nil)
        _ = await rig.post("/targets/shop-web/maintenance", cookie: cookie, form: "csrf=\(csrf)&action=clear")
        #expect(rig.backend.windows.withLock { $0["shop-web"] } == nil)
        // bob: no forms, and his POST changes nothing.
        let bob = try await rig.login("bob", "bob-password-123")
        let bobsPage = await rig.get("/targets/shop-web", cookie: bob)
        #expect(!bobsPage.text.contains("button-maintenance") && bobsPage.text.contains("None of its own"))
        let bobsToken = try ConsoleRig.csrf(in: bobsPage.text)
        let refused = await rig.post(
            "/targets/shop-web/maintenance", cookie: bob, form: "csrf=\(bobsToken)&action=for_hours&hours=2")
        #expect(refused.status == 403 && rig.backend.windows.withLock { $0["shop-web"] } == nil)
    }

    @Test func someoneNotOnOperatorsSeesNoButtonsAndCannotAct() async throws {
        let rig = try ConsoleRig()
        let cookie = try await rig.login("bob", "bob-password-123")
        let page = await rig.get("/targets/shop-web", cookie: cookie)
        #expect(page.status == 200 && page.text.contains("Read-only"))
        #expect(!page.text.contains("button-approve") && !page.text.contains("Engage the brake"))
        let csrf = try ConsoleRig.csrf(in: page.text)  // bob's own token, for logging out
        let response = await rig.post(
            "/targets/shop-web/commands", cookie: cookie, form: "csrf=\(csrf)&command=approve")
        #expect(response.status == 403)
        #expect(rig.backend.sent.withLock { $0 }.isEmpty)
    }

    @Test func aWrongPasswordIsRefusedAndRepeatedFailuresAreThrottled() async throws {
        let rig = try ConsoleRig()
        #expect(await rig.get("/", cookie: nil).header("Location") == "/login")
        #expect(await rig.get("/fleet/live", cookie: nil).status == 401)
        for _ in 0..<5 {
            let r = await rig.app.handle(
                ConsoleRequest(method: "POST", path: "/login", body: Array("name=alice&password=guess".utf8)))
            #expect(r.status == 401 && r.header("Set-Cookie") == nil)
        }
        let unknown = await rig.app.handle(
            ConsoleRequest(method: "POST", path: "/login", body: Array("name=nobody&password=guess".utf8)))
        #expect(unknown.status == 401)
        // The sixth try within 15 minutes is refused even with the right password.
        let throttled = await rig.app.handle(
            ConsoleRequest(method: "POST", path: "/login", body: Array("name=alice&password=alice-password-1".utf8)))
        #expect(throttled.status == 429)
    }

    @Test func pagesEscapeWhatTheFleetSays() async throws {
        let rig = try ConsoleRig()
        let cookie = try await rig.login("alice", "alice-password-1")
        let backend = RecordingConsoleBackend(targets: ["<script>alert(1)</script>"])
        let app = ConsoleApp(
            configuration: ConsoleConfiguration(
                accounts: rig.accounts,
                sessions: try ConsoleSessions(secret: ConsoleRig.secret, secureCookie: false), operators: ["alice"]),
            backend: backend, logger: Logger(label: "console"), clock: { Date(timeIntervalSince1970: 1_800_000_000) })
        let page = await app.handle(ConsoleRequest(method: "GET", path: "/", headers: ["Cookie": cookie]))
        #expect(page.status == 200)
        #expect(!page.text.contains("<script>alert") && page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
    }

    @Test func aSessionEndsWhenTheAccountIsRemovedOrItsPasswordChanges() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let sessions = try ConsoleSessions(secret: ConsoleRig.secret, secureCookie: false)
        let accounts = try ConsoleRig.accounts()
        let cookie = try sessions.issue(name: "alice", fingerprint: accounts.fingerprint(of: "alice")!, now: now)
        #expect(sessions.verify(cookie, now: now, fingerprint: accounts.fingerprint(of:)) == "alice")
        #expect(
            sessions.verify(cookie, now: now.addingTimeInterval(13 * 3600), fingerprint: accounts.fingerprint(of:))
                == nil)
        let changed = try ConsoleRig.accounts()  // the same people with new passwords (new salts)
        #expect(sessions.verify(cookie, now: now, fingerprint: changed.fingerprint(of:)) == nil)
        #expect(sessions.verify(cookie, now: now, fingerprint: { _ in nil }) == nil, "removed from the file")
        // A name with dots is a name.
        let dotted = try sessions.issue(name: "alice.smith", fingerprint: "f", now: now)
        #expect(sessions.verify(dotted, now: now, fingerprint: { $0 == "alice.smith" ? "f" : nil }) == "alice.smith")
        #expect(throws: ConsoleError.self) {
            try ConsoleSessions(secret: "change-me-" + String(repeating: "x", count: 40))
        }
    }

    @Test func loginIsSameOriginOnlyAndUnknownNamesAreNotRemembered() async throws {
        let rig = try ConsoleRig()
        let foreign = await rig.app.handle(
            ConsoleRequest(
                method: "POST", path: "/login", headers: ["Host": "console.example", "Origin": "https://evil.example"],
                body: Array("name=alice&password=alice-password-1".utf8)))
        #expect(foreign.status == 403 && foreign.header("Set-Cookie") == nil)
        // Guessing from one address does not lock alice out from another.
        for _ in 0..<5 {
            _ = await rig.app.handle(
                ConsoleRequest(
                    method: "POST", path: "/login", body: Array("name=alice&password=guess".utf8), peer: "10.0.0.66"))
        }
        let elsewhere = await rig.app.handle(
            ConsoleRequest(
                method: "POST", path: "/login", body: Array("name=alice&password=alice-password-1".utf8),
                peer: "10.0.0.7"))
        #expect(elsewhere.status == 303)
        let attacker = await rig.app.handle(
            ConsoleRequest(
                method: "POST", path: "/login", body: Array("name=alice&password=alice-password-1".utf8),
                peer: "10.0.0.66"))
        #expect(attacker.status == 429)
        // A name no account could have is refused without a hash.
        let junk = await rig.app.handle(
            ConsoleRequest(method: "POST", path: "/login", body: Array("name=%3Cscript%3E&password=x".utf8)))
        #expect(junk.status == 401)
    }

    @Test func anAccountsFileWithABadLineIsRefusedWithoutEchoingIt() throws {
        let good = try ConsoleAccounts.line(name: "alice", password: "alice-password-1", iterations: 100_000)
        #expect(try ConsoleAccounts.parse(good).accounts.keys.sorted() == ["alice"])
        let weak = try ConsoleAccounts.line(name: "alice", password: "alice-password-1", iterations: 1000)
        for (text, says) in [
            (weak, "iterations"), ("alice:md5:1:abc:def", "scheme"),
            ("alice:plaintext-password", "expected name"), (good + "\n" + good, "listed twice"),
        ] {
            let error = try #require(throws: ConsoleError.self) { try ConsoleAccounts.parse(text) }
            #expect(error.description.contains(says), "\(error)")
            #expect(!error.description.contains(String(good.split(separator: ":")[4])))
        }
        #expect(throws: ConsoleError.self) { try ConsoleAccounts.line(name: "alice", password: "short") }
    }
}
