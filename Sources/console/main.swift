// The operators' web console: wiring only. See FleetConsole and docs/console.md.
//
//   console                     serve (CONSOLE_PORT, default 8080)
//   console hash-password NAME  print an accounts-file line; the password is read from standard input
import AWSClient
import FleetConsole
import FleetControl
import FleetWorkers
import Foundation
import HTTPTransport
import Logging
import RecoveryCore

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "hash-password" {
    guard arguments.count == 2 else {
        FileHandle.standardError.write(Data("usage: console hash-password NAME < password\n".utf8))
        exit(2)
    }
    let password = (readLine(strippingNewline: true) ?? "")
    do {
        print(try ConsoleAccounts.line(name: arguments[1], password: password))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("console hash-password: \(error)\n".utf8))
        exit(2)
    }
}

/// The follow-up to a Slack action: a JSON post to the message's response_url.
@Sendable func postToSlack(_ http: HTTPClient, url: String, json: [UInt8]) async throws {
    let request = HTTPRequest(
        method: "POST", url: url, headers: [(name: "Content-Type", value: "application/json")], body: json,
        timeout: .seconds(10))
    let response = try await http.execute(request)
    guard (200..<300).contains(response.status) else {
        throw ConsoleError("Slack answered the response_url post with HTTP \(response.status)")
    }
}

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .info
    return handler
}
let env = WorkerEnvironment(kind: "console")
let logger = Logger(label: "console")
do {
    let accountsFile = try env.required(
        "CONSOLE_ACCOUNTS_FILE", hint: "the file of operators' logins (console hash-password NAME; docs/console.md)")
    let accounts = try ConsoleAccounts.parse(String(contentsOfFile: accountsFile, encoding: .utf8))
    let sessions = try ConsoleSessions(
        secret: try env.required("CONSOLE_SESSION_SECRET", hint: "at least 32 random characters: openssl rand -hex 32"),
        lifetime: try env.seconds("CONSOLE_SESSION_HOURS", default: 12) * 3600,
        secureCookie: env.string("CONSOLE_COOKIE_SECURE")?.lowercased() != "false")
    let operators = env.identities.users[.operator] ?? []
    if operators.isEmpty { logger.warning("OPERATORS is empty: the console is read-only for everybody") }

    let http = HTTPClient(logger: logger)
    var amqp = try env.amqp()
    amqp.reconnectInitialDelay = .milliseconds(200)
    amqp.reconnectMaxDelay = .seconds(2)
    try env.checkIdentity(amqp, role: .console, logger: logger)
    let aws = try env.aws(http: http, logger: logger)
    let redis = try env.redis(logger: logger)
    let configSource = try env.targetConfigSource(aws: aws, logger: logger)
    let catalog = TargetCatalog(
        ec2: EC2Client(aws), drRegion: env.drRegion, source: configSource, fleet: env.fleetTag, logger: logger)
    var discover: (@Sendable () async throws -> [Target])? = { try await catalog.discover() }
    if env.string("CONSOLE_DISCOVERY")?.lowercased() == "false" { discover = nil }
    var history: HistoryReader?
    if let table = env.string("RECOVERY_EVENTS_TABLE") {
        history = HistoryReader(dynamo: DynamoDBClient(aws), table: table)
    }
    let sender = CommandSender(amqp: amqp, topology: env.topology, producer: env.workerId, logger: logger)
    let backend = LiveConsoleBackend(
        statusReader: StatusReader(redis: redis, keyspace: env.keyspace, discover: discover),
        historyReader: history, sender: sender, configTable: configSource.table, targetsFile: configSource.file)

    var configuration = ConsoleConfiguration(accounts: accounts, sessions: sessions, operators: operators)
    configuration.publicURL = env.string("CONSOLE_PUBLIC_URL")
    if let secret = env.string("SLACK_SIGNING_SECRET") {
        configuration.slack = try SlackInteractivity(
            signingSecret: secret, people: try SlackInteractivity.parsePeople(env.string("SLACK_OPERATORS") ?? ""),
            operators: operators,
            responseURLPrefix: env.string("SLACK_RESPONSE_URL_PREFIX") ?? "https://hooks.slack.com/", logger: logger,
            post: { url, json in try await postToSlack(http, url: url, json: json) })
    }
    let server = ConsoleServer(
        app: ConsoleApp(configuration: configuration, backend: backend, logger: logger),
        host: env.string("CONSOLE_HOST") ?? "0.0.0.0", port: try env.int("CONSOLE_PORT", default: 8080), logger: logger)
    logger.notice(
        "console starting",
        metadata: [
            "accounts": "\(accounts.accounts.count)", "operators": "\(operators.sorted().joined(separator: ","))",
            "slack": "\(configuration.slack != nil)",
        ])
    try await server.run()
    await redis.close()
    http.shutdown()
} catch {
    logger.critical("console cannot start: \(error)")
    exit(1)
}
