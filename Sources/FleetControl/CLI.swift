import AMQPTransport
import AWSClient
import ArgumentParser
import FleetRuntime
import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore

// The recoveryctl command line (docs/operations.md). Each subcommand parses its arguments, calls the
// logic in this module and prints either a human text (80 columns) or, with --json, one JSON document.
// Errors go to stderr (and, with --json, also as {"error": …} on stdout), with a non-zero exit status.

public struct RecoveryCtlCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "recoveryctl",
        abstract:
            "Operate the EC2 recovery fleet: status, history, commands, target settings, DR pre-flight, topology.",
        discussion: """
            Configuration comes from the workers' environment variables (docs/configuration.md): AMQP_URL, \
            REDIS_URL, FLEET_PREFIX, FLEET_TAG, AWS_*, TARGETS_FILE, INSTANCE_CONFIG_TABLE, RECOVERY_EVENTS_TABLE. \
            Commands are sent as the RabbitMQ user of AMQP_URL, which must be on the decision worker's OPERATORS.
            Exit status: 0 done, 1 error, 64 usage, 3 command rejected, 4 step failed or needs a person, 5 timed out.
            """,
        subcommands: [
            Status.self, History.self, Restart.self, Reprovision.self, Failover.self, Abort.self, Ack.self,
            Approve.self,
            Hold.self, Resume.self, Reset.self, Brake.self, Quarantine.self, Unquarantine.self, RepairVolume.self,
            Targets.self, Preflight.self, Topology.self,
        ])

    public init() {}

    /// Parses the process's arguments and runs the subcommand (async), exiting with its status.
    public static func runFromCommandLine() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

// MARK: Shared options and output

public struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON document on stdout instead of text.")
    public var json = false
    public init() {}
}

public struct WaitOptions: ParsableArguments {
    @Flag(name: .customLong("no-wait"), help: "Only send the command; do not wait for its answer.")
    public var noWait = false

    @Option(name: .long, help: "How long to wait for the answer and, for a step, its outcome (e.g. 90s, 10m, 1h).")
    public var timeout: String = "10m"

    public init() {}

    public func validate() throws { _ = try timeoutDuration() }

    public func timeoutDuration() throws -> Duration {
        guard let s = TimeInput.seconds(timeout), s > 0 else {
            throw ValidationError("--timeout '\(timeout)' is not a duration (90s, 10m, 1h)")
        }
        return .milliseconds(Int64(s * 1000))
    }
}

/// The options every command that publishes onto the commands queue takes (`--no-wait`, `--timeout`,
/// `--json`), and the one way such a command is sent and reported.
public struct SendOptions: ParsableArguments {
    @OptionGroup var wait: WaitOptions
    @OptionGroup var output: OutputOptions
    public init() {}

    func send(_ request: CommandRequest) async throws {
        try await Runner.run(json: output.json) { try await sendCommand(request, wait: wait, context: $0) }
    }
}

/// Something a subcommand prints: text for people, JSON for scripts.
public protocol ControlOutput: Encodable {
    func render(width: Int) -> String
    var exitCode: Int32 { get }
}

extension ControlOutput {
    public var exitCode: Int32 { 0 }
}

extension StatusReport: ControlOutput {}
extension HistoryReport: ControlOutput {}
extension CommandResult: ControlOutput {}
extension TopologyApplyResult: ControlOutput {}

/// Runs a subcommand's body with a context, prints its output, maps errors to exit statuses.
enum Runner {
    static func run(json: Bool, _ body: (ControlContext) async throws -> any ControlOutput) async throws {
        let context = ControlContext()
        let secrets = Secrets(context.env.values)
        let code: Int32
        do {
            let output = try await body(context)
            if json {
                let encoder = Timestamp.jsonEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
                print(secrets.scrub(String(decoding: try encoder.encode(output), as: UTF8.self)))
            } else {
                print(secrets.scrub(output.render(width: 80)))
            }
            code = output.exitCode
        } catch {
            let message: String
            var status: Int32 = 1
            if let control = error as? ControlError {
                message = control.description
                status = control.exitCode
            } else if let validation = error as? ValidationError {
                message = validation.message
                status = 64
            } else {
                message = "\(error)"
            }
            let clean = secrets.scrub(message)
            FileHandle.standardError.write(Data("recoveryctl: error: \(clean)\n".utf8))
            if json {
                let doc = try JSONSerialization.data(
                    withJSONObject: ["error": clean], options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: doc, as: UTF8.self))
            }
            code = status
        }
        await context.close()
        if code != 0 { throw ExitCode(code) }
    }
}

/// The secret values of the environment, replaced by `***` in anything recoveryctl prints (a last line of
/// defence: the clients already keep them out of their errors).
struct Secrets {
    var values: [String] = []

    init(_ env: [String: String]) {
        for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] + ChannelKind.allSecretVariables {
            if let v = env[name], v.count >= 4 { values.append(v) }
        }
        // AMQP_URL may list a cluster's nodes, separated by commas: each URL is looked at alone.
        let urls = ["AMQP_URL", "REDIS_URL", "RABBITMQ_MANAGEMENT_URL"].flatMap {
            (env[$0] ?? "").split(separator: ",").map(String.init)
        }
        for url in urls {
            guard let scheme = url.range(of: "://"), let at = url.lastIndex(of: "@"), at > scheme.upperBound
            else { continue }
            let userinfo = url[scheme.upperBound..<at]
            if let colon = userinfo.firstIndex(of: ":") {
                let password = String(userinfo[userinfo.index(after: colon)...])
                // A password equal to the user name (guest:guest) would hide the user everywhere; the user
                // is printed on purpose (who sent a command), so such a password cannot be masked.
                if password.count >= 3, password != String(userinfo[..<colon]) {
                    values.append(password)
                    if let decoded = password.removingPercentEncoding, decoded != password { values.append(decoded) }
                }
            }
        }
    }

    func scrub(_ text: String) -> String {
        values.reduce(text) { $0.replacingOccurrences(of: $1, with: "***") }
    }
}

/// Sends one command and reports it.
func sendCommand(_ request: CommandRequest, wait: WaitOptions, context: ControlContext) async throws -> CommandResult {
    let timeout = try wait.timeoutDuration()
    let sender = CommandSender(
        amqp: try context.amqp(), topology: context.topology, producer: context.env.workerId, logger: context.logger)
    return try await sender.send(request, wait: !wait.noWait, timeout: timeout)
}

// MARK: status, history

extension RecoveryCtlCommand {
    public struct Status: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "One line per target: state, outages, instance, last probe, lock, hold; and the fleet brake.")
        @Argument(help: "Only this target.") var target: String?
        @Flag(name: .customLong("no-discovery"), help: "Show stored state only; do not ask EC2 for the targets.")
        var noDiscovery = false
        @OptionGroup var output: OutputOptions
        public init() {}

        public func run() async throws {
            try await Runner.run(json: output.json) { context in
                let redis = try await context.redis()
                let discover: (@Sendable () async throws -> [Target])?
                if noDiscovery {
                    discover = nil
                } else {
                    let catalog = try context.catalog()
                    discover = { try await catalog.discover() }
                }
                return try await StatusReader(redis: redis, keyspace: context.env.keyspace, discover: discover).report(
                    only: target)
            }
        }
    }

    public struct History: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "A target's incident timeline from the history table.")
        @Argument(help: "The target (its AutoRecovery:Name).") var target: String
        @Option(name: .long, help: "Show the newest N rows.") var limit: Int = 50
        @Flag(name: .long, help: "Show every row.") var all = false
        @OptionGroup var output: OutputOptions
        public init() {}

        public func validate() throws {
            guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
        }

        public func run() async throws {
            try await Runner.run(json: output.json) { context in
                try await HistoryReader(dynamo: DynamoDBClient(try context.aws()), table: try context.eventsTable())
                    .read(target: target, limit: all ? nil : limit)
            }
        }
    }
}

// MARK: commands about one target

extension RecoveryCtlCommand {
    public struct Restart: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Reboot the target now (same lock and run-once key as the automatic step).")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .restart, reason: reason))
        }
    }

    public struct Reprovision: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Replace the instance from its latest snapshot and move the Elastic IP, now.")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .reprovision, reason: reason))
        }
    }

    public struct Failover: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Launch the target in the DR region and point DNS at it, now.")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .failover, reason: reason))
        }
    }

    public struct Abort: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract:
                "Stop the running step at its next sub-step and undo what it did; automation stops for the incident.",
            discussion: """
                The actuator finishes the sub-step it is in (an AWS call or a wait), then stops and compensates \
                as after a failure (a stopped instance is started again, a launched replacement is stopped and \
                tagged abandoned). No automatic step follows in the incident. Waits for the actuator's outcome.
                """)
        @Argument var target: String
        @Option(help: "Why (kept with the incident, the step record and the history).") var reason: String?
        @OptionGroup var send: SendOptions
        public init() {}

        public func validate() throws {
            guard !target.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("abort needs a target name")
            }
        }

        public func run() async throws {
            try await send.send(.init(target: target, name: .abort, reason: reason))
        }
    }

    public struct Quarantine: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract:
                "Take the target out of automation: tag it AutoRecovery:Quarantined, record it in the config; notify only from then on."
        )
        @Argument var target: String
        @Option(help: "Why (kept in the history and the instance tag).") var reason: String
        @Flag(name: .customLong("detach-eip"), help: "Also take the Elastic IP off the instance.") var detachEip = false
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .quarantine, reason: reason, detachEip: detachEip))
        }
    }

    public struct Unquarantine: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Hand a quarantined target back to automation (the Elastic IP is not put back).")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String?
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .unquarantine, reason: reason))
        }
    }

    public struct RepairVolume: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "repair-volume",
            abstract: "Replace the root volume with one from the newest tagged snapshot (the old one is kept).")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .repairVolume, reason: reason))
        }
    }

    public struct Ack: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Someone is on it: no automatic step for this incident until resume.")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String?
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .ack, reason: reason))
        }
    }

    public struct Approve: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Take the pending step now (required for targets that need approval).")
        @Argument var target: String
        @Option(help: "Why (kept in the history).") var reason: String?
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .approve, reason: reason))
        }
    }

    public struct Hold: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "No step before a time, then the normal flow.")
        @Argument var target: String
        @Option(help: "An ISO 8601 time (2026-11-22T06:00:00Z) or a duration from now (90m, 2h, 1d).") var until: String
        @Option(help: "Why (kept in the history).") var reason: String?
        @OptionGroup var send: SendOptions
        public init() {}

        public func validate() throws {
            do { _ = try TimeInput.until(until, now: Date()) } catch { throw ValidationError("\(error)") }
        }

        public func run() async throws {
            try await send.send(
                .init(target: target, name: .hold, until: try TimeInput.until(until, now: Date()), reason: reason))
        }
    }

    public struct Resume: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(abstract: "Undo an ack or a hold.")
        @Argument var target: String
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .resume))
        }
    }

    public struct Reset: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Forget the outage count: the next outage starts at restart again.")
        @Argument var target: String
        @OptionGroup var send: SendOptions
        public init() {}
        public func run() async throws {
            try await send.send(.init(target: target, name: .reset))
        }
    }
}

// MARK: brake

extension RecoveryCtlCommand {
    public struct Brake: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "The fleet brake: release it, or engage it by hand.", subcommands: [Release.self, Engage.self])
        public init() {}

        public struct Release: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract: "Release the fleet brake: due steps run again.")
            @OptionGroup var send: SendOptions
            public init() {}
            public func run() async throws {
                try await send.send(.init(target: nil, name: .brakeRelease))
            }
        }

        public struct Engage: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract: "Stop every destructive step in the fleet now.")
            @Option(help: "Why (in the alert and the history).") var reason: String
            @OptionGroup var send: SendOptions
            public init() {}
            public func run() async throws {
                try await send.send(.init(target: nil, name: .brakeEngage, reason: reason))
            }
        }
    }
}
