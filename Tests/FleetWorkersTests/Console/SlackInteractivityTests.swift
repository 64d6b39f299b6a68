import FleetConsole
import FleetControl
import Foundation
import Testing

/// Slack's interactivity requests, signed here with the signing secret as Slack signs them.
@Suite("Console: Slack interactivity (signature, timestamp window, user mapping)")
struct SlackInteractivityTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func payload(user: String, action: String, target: String = "shop-web") -> [UInt8] {
        let json = """
            {"type":"block_actions","user":{"id":"\(user)"},"actions":[{"action_id":"\(action)","value":"\(target)"}],\
            "response_url":"https://hooks.slack.com/actions/T1/1/abc","message":{"text":"shop-web is down",\
            "blocks":[{"type":"section","text":{"type":"mrkdwn","text":"shop-web is down"}},{"type":"actions","block_id":"fleet_actions","elements":[]}]}}
            """
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return Array(("payload=" + json.addingPercentEncoding(withAllowedCharacters: allowed)!).utf8)
    }

    static func request(
        _ body: [UInt8], timestamp: Date = now, secret: String = "slack-signing-secret", signature: String? = nil
    ) -> ConsoleRequest {
        let ts = String(Int(timestamp.timeIntervalSince1970))
        return ConsoleRequest(
            method: "POST", path: "/slack/interactions",
            headers: [
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signature
                    ?? SlackInteractivity.signature(secret: secret, timestamp: ts, body: body),
                "Content-Type": "application/x-www-form-urlencoded",
            ], body: body)
    }

    func waitForPosts(_ rig: ConsoleRig, _ count: Int) async throws -> [(String, String)] {
        for _ in 0..<500 {
            let posts = rig.slackPosts.value.withLock { $0 }
            if posts.count >= count { return posts }
            try await Task.sleep(for: .milliseconds(10))
        }
        return rig.slackPosts.value.withLock { $0 }
    }

    @Test func aValidRequestSendsTheCommandAndUpdatesTheMessageWithWhoDidWhat() async throws {
        let rig = try ConsoleRig(now: Self.now)
        let response = await rig.app.handle(Self.request(Self.payload(user: "UALICE", action: "approve")))
        #expect(response.status == 200)
        let posts = try await waitForPosts(rig, 1)
        let sent = rig.backend.sent.withLock { $0 }
        #expect(sent.map(\.name) == [.approve] && sent.first?.onBehalfOf == "alice" && sent.first?.target == "shop-web")
        let (url, json) = try #require(posts.first)
        #expect(url == "https://hooks.slack.com/actions/T1/1/abc")
        #expect(json.contains("\"replace_original\":true") && json.contains("alice (Slack) sent approve for shop-web"))
        #expect(
            !json.contains("fleet_actions") && json.contains("shop-web is down"), "the buttons are gone once answered")
        // Hold 1 h from Slack.
        _ = await rig.app.handle(Self.request(Self.payload(user: "UALICE", action: "hold_1h")))
        _ = try await waitForPosts(rig, 2)
        #expect(rig.backend.sent.withLock { $0 }.last?.until == Self.now.addingTimeInterval(3600))
    }

    @Test func aButtonCarriesItsIncidentAndAReplayIsRefused() async throws {
        let rig = try ConsoleRig(now: Self.now)
        let current = Self.request(Self.payload(user: "UALICE", action: "approve", target: "shop-web|inc-1"))
        #expect(await rig.app.handle(current).status == 200)
        _ = try await waitForPosts(rig, 1)
        // The decision worker refuses it if inc-1 is over (EscalationCommandTests, incident_changed).
        #expect(rig.backend.sent.withLock { $0 }.map(\.incidentId) == ["inc-1"])
        #expect(rig.backend.sent.withLock { $0 }.map(\.target) == ["shop-web"])
        #expect(await rig.app.handle(current).status == 401, "the same signed request again is a replay")
        #expect(rig.backend.sent.withLock { $0 }.count == 1)
    }

    @Test func aBadSignatureAnOldTimestampAndAnotherSecretAreRefused() async throws {
        let rig = try ConsoleRig(now: Self.now)
        let body = Self.payload(user: "UALICE", action: "approve")
        let refused = [
            Self.request(body, signature: "v0=" + String(repeating: "0", count: 64)),
            Self.request(body, signature: "not-a-signature"),
            Self.request(body, secret: "another-secret"),
            Self.request(body, timestamp: Self.now.addingTimeInterval(-301)),
            Self.request(body, timestamp: Self.now.addingTimeInterval(301)),
        ]
        for request in refused {
            #expect(await rig.app.handle(request).status == 401)
        }
        // A body changed after signing.
        var tampered = Self.request(body)
        tampered.body = Self.payload(user: "UALICE", action: "approve", target: "other-web")
        #expect(await rig.app.handle(tampered).status == 401)
        try await Task.sleep(for: .milliseconds(50))
        #expect(rig.backend.sent.withLock { $0 }.isEmpty)
        #expect(rig.slackPosts.value.withLock { $0 }.isEmpty)
    }

    @Test func anUnknownSlackUserOrOneNotOnOperatorsGetsAnEphemeralRefusal() async throws {
        let rig = try ConsoleRig(now: Self.now)
        for user in ["UMALLORY", "UBOB"] {  // bob is mapped but not on OPERATORS
            #expect(await rig.app.handle(Self.request(Self.payload(user: user, action: "approve"))).status == 200)
        }
        let posts = try await waitForPosts(rig, 2)
        #expect(posts.count == 2)
        for (_, json) in posts {
            #expect(json.contains("\"response_type\":\"ephemeral\"") && json.contains("Refused"))
        }
        #expect(rig.backend.sent.withLock { $0 }.isEmpty)
    }
}
