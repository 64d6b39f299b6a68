import FleetConsole
import FleetControl
import Foundation
import HTTPTransport
import RecoveryCore
import Testing

/// A client with one session cookie, speaking HTTP to the console's real port.
struct ConsoleClient {
    let base: String
    let http: HTTPClient
    var cookie: String?

    mutating func login(_ name: String, _ password: String) async throws {
        let response = try await post("/login", form: "name=\(name)&password=\(password)")
        #expect(response.status == 303, "login \(name): \(response.status)")
        let setCookie = try #require(response.headers.first { $0.name.lowercased() == "set-cookie" }?.value)
        cookie = String(setCookie.split(separator: ";")[0])
    }

    func get(_ path: String) async throws -> HTTPResponse {
        try await http.execute(
            HTTPRequest(method: "GET", url: base + path, headers: cookie.map { [("Cookie", $0)] } ?? []))
    }

    func post(_ path: String, form: String) async throws -> HTTPResponse {
        var headers = [("Content-Type", "application/x-www-form-urlencoded")]
        if let cookie { headers.append(("Cookie", cookie)) }
        return try await http.execute(
            HTTPRequest(
                method: "POST", url: base + path, headers: headers, body: Array(form.utf8), timeout: .seconds(60)))
    }
}

extension HTTPResponse {
    var text: String { String(decoding: body, as: UTF8.self) }
}

@Suite(
    "Console against the real workers, broker, Redis and moto",
    .enabled(if: servicesAvailable, "set AMQP_URL, REDIS_URL, AWS_ENDPOINT_URL"))
struct ConsoleIntegrationTests {
    /// Windows set in the console land in the instance-config table, as `recoveryctl targets set` writes them;
    /// one the workers could not read is refused and writes nothing.
    @Test(.timeLimit(.minutes(2)))
    func maintenanceFromTheConsoleIsWrittenToTheTableAndABadOneIsNot() async throws {
        let fleet = try await ConsoleFleet()
        do {
            var alice = ConsoleClient(base: fleet.url, http: fleet.world.http)
            try await alice.login("alice", "alice-password-1")
            let csrf = try ConsoleRig.csrf(in: try await alice.get("/targets/\(fleet.name)").text)
            let saved = try await alice.post(
                "/targets/\(fleet.name)/maintenance", form: "csrf=\(csrf)&action=for_hours&hours=2")
            #expect(saved.status == 200, "\(saved.text)")
            let item = try #require(try await fleet.configTable.settings(of: fleet.name))
            guard case .array(let windows)? = item["maintenance"], case .object(let window)? = windows.first else {
                Issue.record("no window in \(item)")
                throw ControlError("no window")
            }
            #expect(windows.count == 1 && window["start"] != nil && window["end"] != nil)
            #expect(try await alice.get("/targets/\(fleet.name)").text.contains("maintenance-current"))
            let bad = #"[{"cron": "every tuesday", "duration": 3600}]"#
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let seen = String(decoding: try encoder.encode(item["maintenance"]), as: UTF8.self)
            let refused = try await alice.post(
                "/targets/\(fleet.name)/maintenance",
                form:
                    "csrf=\(csrf)&action=set&windows=\(bad.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&previous=\(seen.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)"
            )
            #expect(refused.status == 400 && refused.text.contains("not written"), "\(refused.text)")
            #expect(!refused.text.contains("changed since"), "refused for the cron, not for a stale form")
            #expect(try await fleet.configTable.settings(of: fleet.name)?["maintenance"] == item["maintenance"])
            _ = try await alice.post("/targets/\(fleet.name)/maintenance", form: "csrf=\(csrf)&action=clear")
            #expect(try await fleet.configTable.settings(of: fleet.name)?["maintenance"] == nil)
        } catch {
            Issue.record(error)
        }
        await fleet.tearDown()
    }

    @Test(.timeLimit(.minutes(3)))
    func approveFromTheConsoleAndAcknowledgeFromSlackActInTheOperatorsName() async throws {
        let fleet = try await ConsoleFleet()
        do {
            try await fleet.breakSite()
            var alice = ConsoleClient(base: fleet.url, http: fleet.world.http)
            try await alice.login("alice", "alice-password-1")

            // The fleet page lists the target as awaiting approval.
            let page = try await alice.get("/")
            #expect(page.status == 200)
            #expect(page.text.contains(fleet.name) && page.text.contains("awaiting_approval(restart)"), "\(page.text)")

            // Slack: alice (mapped from UALICE) acknowledges; the decision worker records it as hers.
            let reader = fleet.stateReader
            let incident = try #require(try await reader.target(fleet.name)?.machine.incident?.id)
            let receiver = try await WebhookReceiver()
            let payload = """
                {"type":"block_actions","user":{"id":"UALICE"},"actions":[{"action_id":"ack","value":"\(fleet.name)|\(incident)"}],\
                "response_url":"\(receiver.baseURL)/slack-response","message":{"text":"down","blocks":[]}}
                """
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let body = Array(("payload=" + payload.addingPercentEncoding(withAllowedCharacters: allowed)!).utf8)
            let ts = String(Int(Date().timeIntervalSince1970))
            let slack = try await fleet.world.http.execute(
                HTTPRequest(
                    method: "POST", url: fleet.url + "/slack/interactions",
                    headers: [
                        ("X-Slack-Request-Timestamp", ts),
                        (
                            "X-Slack-Signature",
                            SlackInteractivity.signature(secret: ConsoleFleet.slackSecret, timestamp: ts, body: body)
                        ),
                        ("Content-Type", "application/x-www-form-urlencoded"),
                    ], body: body))
            #expect(slack.status == 200)
            try await poll("the ack from Slack is applied") {
                if case .acknowledged(let by, _)? = try await reader.target(fleet.name)?.machine.incident?.hold {
                    return by == "alice"
                }
                return false
            }
            try await poll("Slack's message is updated with who did what") {
                try await receiver.requests(http: fleet.world.http).contains {
                    String(decoding: $0.body, as: UTF8.self).contains("alice (Slack) sent ack")
                }
            }
            receiver.stop()

            // The incident page shows the outage notice; approve runs the restart.
            try await poll("the outage notice is in the timeline") {
                try await alice.get("/targets/\(fleet.name)/live").text.contains("outage_declared")
            }
            let incidentPage = try await alice.get("/targets/\(fleet.name)")
            let csrf = try ConsoleRig.csrf(in: incidentPage.text)
            // Acknowledged holds the ladder: resume first (as the decision worker's refusal of approve says).
            let resumed = try await alice.post("/targets/\(fleet.name)/commands", form: "csrf=\(csrf)&command=resume")
            #expect(resumed.status == 200, "\(resumed.text)")
            fleet.site.set(healthy: true)  // the restart brings it back
            let answer = try await alice.post("/targets/\(fleet.name)/commands", form: "csrf=\(csrf)&command=approve")
            #expect(answer.status == 200, "\(answer.text)")
            #expect(
                answer.text.contains("alice approved restart") && answer.text.contains("restart succeeded"),
                "\(answer.text)")
            #expect(fleet.log.actions("RebootInstances").count == 1, "the approved restart ran in moto")
            try await poll("the timeline names alice for the approval") {
                try await fleet.timeline().contains {
                    $0.type == "command" && $0.what == "approve" && $0.who == "alice via guest"
                }
            }
            #expect(try await alice.get("/targets/\(fleet.name)/live").text.contains("alice via guest"))

            // A page loaded for another incident: the decision worker refuses, nothing changes.
            let stale = try await alice.post(
                "/targets/\(fleet.name)/commands", form: "csrf=\(csrf)&command=ack&incident=inc-\(fleet.name)-yesterday"
            )
            #expect(stale.status == 409 && stale.text.contains("it was for incident inc-"), "\(stale.text)")
            #expect(try await reader.target(fleet.name)?.machine.incident?.hold == nil)

            // Bob is not on OPERATORS: no buttons, and his POST changes nothing.
            var bob = ConsoleClient(base: fleet.url, http: fleet.world.http)
            try await bob.login("bob", "bob-password-123")
            let bobsPage = try await bob.get("/targets/\(fleet.name)")
            #expect(!bobsPage.text.contains("button-approve") && bobsPage.text.contains("Read-only"))
            let bobsToken = try ConsoleRig.csrf(in: bobsPage.text)
            #expect(
                try await bob.post("/targets/\(fleet.name)/commands", form: "csrf=\(bobsToken)&command=reset").status
                    == 403)
            // A forged POST (alice's session, no token): refused before anything is sent.
            #expect(try await alice.post("/brake", form: "action=engage").status == 403)
            #expect(try await reader.brake()?.isEngaged != true)
        } catch {
            Issue.record(error)
        }
        await fleet.tearDown()
    }
}
