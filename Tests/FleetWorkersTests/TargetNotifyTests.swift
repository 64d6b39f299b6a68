import AWSClient
import Foundation
import HTTPTransport
import RecoveryCore
import Testing

@testable import FleetWorkers

/// A target's `notify` settings: parsing, merging with `defaults`, and the channels they give.
@Suite("Per-target notification channels")
struct TargetNotifyTests {
    static let fleet: NotificationDefaults = {
        var d = NotificationDefaults()
        d.emailFrom = "fleet@example.com"
        d.emailTo = ["ops@example.com"]
        d.slackWebhookURL = "https://hooks.slack.com/services/T/B/fleetsecret"
        d.slackChannel = "#ops"
        d.snsTopicArn = "arn:aws:sns:us-east-1:123456789012:fleet"
        return d
    }()

    func entry(_ json: String, _ target: String) throws -> TargetConfigFile.Entry {
        try TargetConfigFile(data: Data(json.utf8)).entry(for: target)
    }

    @Test("a target's keys replace the fleet's one by one; defaults.notify merges key by key")
    func merging() throws {
        let file = """
            {"defaults": {"notify": {"email_to": ["all-sites@example.com"], "slack_channel": "#sites"}},
             "targets": {"shop": {"notify": {"slack_channel": "#shop", "channels": ["email", "slack"]}},
                         "blog": {}}}
            """
        let shop = try #require(try entry(file, "shop").notify)
        #expect(shop.emailTo == ["all-sites@example.com"])  // from defaults.notify
        #expect(shop.slackChannel == "#shop")  // the target's own
        #expect(shop.channels == ["email", "slack"])
        let specs = Self.fleet.specs(for: shop)
        #expect(specs.problems.isEmpty)
        #expect(
            specs.specs == [
                .email(from: "fleet@example.com", to: ["all-sites@example.com"], region: nil),
                .slack(url: "https://hooks.slack.com/services/T/B/fleetsecret", channel: "#shop", username: nil),
            ])  // SNS left out: not in channels
        let blog = try entry(file, "blog").notify
        #expect(blog?.slackChannel == "#sites")
        #expect(Self.fleet.specs(for: blog).specs.map(\.name) == ["email", "slack", "sns"])
        // No notify anywhere: the fleet's channels, unchanged.
        #expect(Self.fleet.specs(for: nil).specs.map(\.name) == ["email", "slack", "sns"])
    }

    @Test("a target can add a channel the fleet lacks, mute itself, or ask for one nobody configures")
    func addMuteMissing() throws {
        var teams = TargetNotify()
        teams.teamsWebhookURL = "https://example.logic.azure.com/workflows/x?sig=teamsecret"
        #expect(Self.fleet.specs(for: teams).specs.map(\.name) == ["email", "slack", "teams", "sns"])

        var muted = TargetNotify()
        muted.channels = []
        #expect(Self.fleet.specs(for: muted).specs.isEmpty)

        var wantsTeams = TargetNotify()
        wantsTeams.channels = ["teams"]
        let result = Self.fleet.specs(for: wantsTeams)
        #expect(result.specs.isEmpty)
        #expect(
            result.problems == ["the target asks for the teams channel, but neither it nor the fleet configures one"])

        var noSender = NotificationDefaults()
        var recipients = TargetNotify()
        recipients.emailTo = ["team@example.com"]
        noSender.slackWebhookURL = "https://hooks.slack.com/services/T/B/x"
        let r = noSender.specs(for: recipients)
        #expect(r.specs.map(\.name) == ["slack"])
        #expect(r.problems.first?.contains("NOTIFY_EMAIL_FROM") == true)
    }

    @Test("mistakes are refused with the key's name, never a webhook URL")
    func mistakes() {
        let cases: [(String, String)] = [
            (#"{"notify": "slack"}"#, "must be an object"),
            (#"{"notify": {"slack_url": "https://x"}}"#, "unknown key 'slack_url'"),
            (#"{"notify": {"channels": ["pager"]}}"#, "unknown channel 'pager'"),
            (#"{"notify": {"channels": "email"}}"#, "notify.channels"),
            (#"{"notify": {"email_to": []}}"#, "notify.email_to"),
            (#"{"notify": {"email_to": ["not-an-address"]}}"#, "not an e-mail address"),
            (
                #"{"notify": {"slack_webhook_url": "hooks.slack.com/services/T/B/topsecret"}}"#,
                "notify.slack_webhook_url"
            ),
            (#"{"notify": {"teams_webhook_url": "ftp://x/topsecret"}}"#, "notify.teams_webhook_url"),
            (#"{"notify": {"sns_topic_arn": "alerts"}}"#, "notify.sns_topic_arn"),
        ]
        for (settings, expected) in cases {
            do {
                _ = try entry(#"{"targets": {"shop": "# + settings + "}}", "shop")
                Issue.record("expected a refusal for \(settings)")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
                #expect("\(error)".contains("shop"), "\(error)")
                #expect(!"\(error)".contains("topsecret"), "\(error)")
            }
        }
    }

    @Test("an unreadable instance-config table sends the notice to the fleet's channels instead of losing it")
    func unreadableTable() async throws {
        let http = HTTPClient()
        defer { http.shutdown() }
        let aws = AWSClient(
            region: "us-east-1",
            credentials: StaticCredentialProvider(
                AWSCredentials(accessKeyId: "AKIDTEST", secretAccessKey: "test-secret")),
            http: http, environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:9"])  // nothing listens on port 9
        let file = try TargetConfigFile(data: Data(#"{"targets": {"shop": {"notify": {"channels": ["sns"]}}}}"#.utf8))
        let table = TargetConfigTable(dynamo: DynamoDBClient(aws), tableName: "unreachable")
        let router = TargetChannelRouter(
            defaults: Self.fleet, source: TargetConfigSource(file: file, table: table),
            http: http, aws: aws, formatter: NoticeFormatter())
        let notice = Notice(id: "n1", kind: .outageDeclared, at: Date(), target: "shop", detail: "down")
        #expect(try await router.channels(for: notice).map(\.name) == ["email", "slack", "sns"])
        // Without the table the file alone routes it (only SNS): the fallback above is the table's doing.
        let fileOnly = TargetChannelRouter(
            defaults: Self.fleet, source: .fixed(file), http: http, aws: aws, formatter: NoticeFormatter())
        #expect(try await fileOnly.channels(for: notice).map(\.name) == ["sns"])
    }
}
