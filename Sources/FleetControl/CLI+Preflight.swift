import AMQPTransport
import AWSClient
import ArgumentParser
import FleetRuntime
import FleetWorkers
import Foundation
import RecoveryCore
import RedisStore

// MARK: preflight, topology

/// `preflight` output.
public struct PreflightOutput: ControlOutput, Equatable {
    public var report: PreflightReport

    public func encode(to encoder: any Encoder) throws { try report.encode(to: encoder) }

    public var exitCode: Int32 { report.failing.isEmpty ? 0 : 4 }

    public func render(width: Int) -> String {
        var lines = [
            "DR pre-flight of \(report.targets.count) target(s): \(report.failing.count) would fail over badly."
        ]
        for t in report.targets {
            lines.append("")
            lines.append(
                "\(t.target)  \(t.instanceId) (\(t.region)) -> \(t.drRegion ?? "no DR region")  \(t.ok ? "OK" : "PROBLEMS")"
            )
            if let s = t.homeSnapshot {
                lines.append(
                    "  home snapshot: \(s.snapshotId)\(s.ageSeconds.map { ", \(TimeInput.compact($0)) old" } ?? "")")
            }
            if let s = t.drSnapshot {
                lines.append(
                    "  DR snapshot:   \(s.snapshotId)\(s.ageSeconds.map { ", \(TimeInput.compact($0)) old" } ?? "")")
            }
            if let a = t.drAddress { lines.append("  DR address:    \(a)") }
            if let d = t.dns { lines.append(wrap("  DNS:           \(d)", width: width, indent: "                 ")) }
            for p in t.problems { lines.append(wrap("  problem: \(p)", width: width, indent: "    ")) }
            for w in t.warnings { lines.append(wrap("  warning: \(w)", width: width, indent: "    ")) }
        }
        return lines.joined(separator: "\n")
    }
}

extension RecoveryCtlCommand {
    public struct Preflight: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract:
                "Would a fail-over work now? Checks snapshots, DR settings, DR address and DNS of every target (read-only).",
            discussion: "Exit status 4 when a target has a problem.")
        @Argument(help: "Only this target.") var target: String?
        @OptionGroup var output: OutputOptions
        public init() {}
        public func run() async throws {
            try await Runner.run(json: output.json) { context in
                let aws = try context.aws()
                let config = try ActuatorConfig.fromEnvironment(context.env, aws: aws, logger: context.logger)
                var options = DRPreflight.Options()
                options.maxSnapshotAge = try context.env.seconds("SNAPSHOT_MAX_AGE", default: 26 * 3600)
                let preflight = DRPreflight(
                    ec2: EC2Client(aws), route53: Route53Client(aws), config: config, options: options,
                    logger: context.logger)
                var targets = try await context.catalog().discover()
                if let target {
                    targets = targets.filter { $0.name == target }
                    guard !targets.isEmpty else {
                        throw ControlError(
                            "no target named '\(target)' was discovered (tag AutoRecovery=enabled\(context.env.fleetTag.map { ", AutoRecovery:Fleet=\($0)" } ?? ""))"
                        )
                    }
                }
                return PreflightOutput(report: await preflight.run(targets: targets))
            }
        }
    }

    public struct Topology: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "The fleet's RabbitMQ topology.", subcommands: [Apply.self])
        public init() {}

        public struct Apply: AsyncParsableCommand {
            public static let configuration = CommandConfiguration(
                abstract:
                    "Declare the fleet's exchanges, queues and bindings (idempotent); set its policies through the management API when RABBITMQ_MANAGEMENT_URL is set; with --identities also create each worker kind's broker user with least-privilege permissions.",
                discussion: """
                    Without --file the topology is the built-in one for FLEET_PREFIX (topology/definitions.json is the same for \
                    the prefix recovery). Run it as the broker's administrator. --identities creates one user per kind \
                    (probe, predictor, decision, actuator, notifier, recorder, operator) named by <KIND>_USERS / OPERATORS \
                    (default fleet-<kind>) with the password in RABBITMQ_<KIND>_PASSWORD; see docs/security.md.
                    """)
            @Option(help: "A definitions file to declare instead of the built-in topology.") var file: String?
            @Flag(help: "Also create or update every worker kind's broker user, permissions and topic permissions.")
            var identities = false
            @OptionGroup var output: OutputOptions
            public init() {}
            public func run() async throws {
                try await Runner.run(json: output.json) { context in
                    let topology = try file.map(DefinitionsFile.load(path:)) ?? context.topology.amqp
                    let planned = identities ? try PlannedIdentity.plan(context.env, topology: context.topology) : nil
                    return try await TopologyApplier(
                        amqp: try context.amqp(), http: context.http,
                        managementURL: context.env.string("RABBITMQ_MANAGEMENT_URL")
                    )
                    .apply(
                        topology, file: file ?? "built-in topology (prefix \(context.topology.prefix))",
                        identities: planned)
                }
            }
        }
    }
}
