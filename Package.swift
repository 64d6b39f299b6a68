// swift-tools-version:6.1
import PackageDescription

// Layout (see docs/architecture.md):
//   C*            system-library targets over Debian's -dev packages, with typed shims for variadic C calls
//   *Transport / RedisStore / FleetCrypto   the only Swift modules that import the C modules
//   AWSClient     SigV4 signer (pure) and the per-service clients, on HTTPTransport + FleetCrypto
//   RecoveryCore  messages, escalation state machine, predictor math, ports. No C, no I/O.
//   FleetRuntime  config, logging, metrics, worker harness
//   executables   wiring only
let package = Package(
    name: "ec2-recovery-fleet",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "RecoveryCore", targets: ["RecoveryCore"]),
        .library(name: "AMQPTransport", targets: ["AMQPTransport"]),
        .library(name: "RedisStore", targets: ["RedisStore"]),
        .library(name: "HTTPTransport", targets: ["HTTPTransport"]),
        .library(name: "AWSClient", targets: ["AWSClient"]),
        .library(name: "FleetRuntime", targets: ["FleetRuntime"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // Already built for SwiftNIO; the publisher's queues of pending and unconfirmed messages use its Deque.
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // The status endpoint (/metrics, /healthz) and the console's HTTP server. No traits: neither
        // swift-configuration nor the full-Foundation extras are used.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(
            name: "CRabbitMQ", path: "Sources/CRabbitMQ", pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(
            name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(
            name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),

        // MARK: Swift wrappers over the C libraries
        .target(
            name: "AMQPTransport",
            dependencies: [
                "CRabbitMQ", .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]),
        .target(
            name: "RedisStore",
            dependencies: [
                "CHiredis", "RecoveryCore", .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "HTTPTransport",
            dependencies: [
                "CCurl", .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "FleetCrypto", dependencies: ["CCrypto"]),

        // MARK: AWS
        .target(
            name: "AWSClient",
            dependencies: [
                "FleetCrypto", "HTTPTransport", .product(name: "Logging", package: "swift-log"),
            ]),

        // MARK: Pure core
        .target(name: "RecoveryCore"),

        // MARK: Runtime shared by the workers: topology, message harness
        .target(
            name: "FleetRuntime",
            dependencies: [
                "AMQPTransport", "RecoveryCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // MARK: Test support: in-memory drivers of the ports, a clock a test moves (docs/architecture.md)
        .target(
            name: "FleetTestSupport",
            dependencies: ["FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport", "RecoveryCore", "RedisStore"]),

        // MARK: Workers: the logic of each executable, testable in-process
        .target(
            name: "FleetWorkers",
            dependencies: [
                "FleetRuntime", "AMQPTransport", "RedisStore", "HTTPTransport", "AWSClient", "RecoveryCore",
                "FleetCrypto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // MARK: The operator CLI's logic (recoveryctl), testable in-process
        .target(
            name: "FleetControl",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "RedisStore", "HTTPTransport", "AWSClient",
                "RecoveryCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // MARK: Executables (wiring only)
        .executableTarget(name: "recoveryctl", dependencies: ["FleetControl"]),
        // The operators' web console (docs/console.md): pages, buttons, login, Slack's interactivity endpoint.
        .target(
            name: "FleetConsole",
            dependencies: [
                "FleetControl", "FleetCrypto", "FleetRuntime", "FleetWorkers", "RecoveryCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "console",
            dependencies: [
                "FleetConsole", "FleetControl", "FleetRuntime", "FleetWorkers", "RecoveryCore", "AWSClient",
                "HTTPTransport",
            ]),
        .executableTarget(
            name: "probe",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport", "RedisStore",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "decision",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport", "RedisStore",
                "RecoveryCore", .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "actuator",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport", "RedisStore",
                "RecoveryCore", .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "recorder",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "predictor",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport", "RedisStore",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "notifier",
            dependencies: [
                "FleetWorkers", "FleetRuntime", "AMQPTransport", "AWSClient", "HTTPTransport", "RedisStore",
                .product(name: "Logging", package: "swift-log"),
            ]),

        // MARK: Benchmarks (see docs/benchmarks.md)
        .executableTarget(
            name: "fleet-bench",
            dependencies: [
                "AMQPTransport", "HTTPTransport", "RecoveryCore", "FleetWorkers", "FleetRuntime", "RedisStore",
                "AWSClient", "FleetTestSupport", "PredictionBacktest",
                .product(name: "Logging", package: "swift-log"),
            ], path: "Benchmarks/fleet-bench"),
        // The predictor's backtest: the generator and scorer are a library so the unit tests hold the model to its figures.
        .target(name: "PredictionBacktest", dependencies: ["RecoveryCore"], path: "Benchmarks/PredictionBacktest"),
        .executableTarget(
            name: "prediction-backtest", dependencies: ["PredictionBacktest", "RecoveryCore"],
            path: "Benchmarks/prediction-backtest"),
        // The harness on NAB's labelled series (Benchmarks/nab): the predictor replayed as the workers run it, NAB-scored.
        .executableTarget(
            name: "prediction-nab", dependencies: ["PredictionBacktest", "RecoveryCore"],
            path: "Benchmarks/prediction-nab"),

        // MARK: Tests
        .testTarget(name: "RecoveryCoreTests", dependencies: ["RecoveryCore", "PredictionBacktest"]),
        .testTarget(
            name: "FleetRuntimeTests",
            dependencies: [
                "FleetRuntime", "FleetTestSupport", "AMQPTransport", "RecoveryCore", "HTTPTransport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]),
        .testTarget(
            name: "AMQPTransportTests",
            dependencies: [
                "AMQPTransport", "RecoveryCore", "FleetTestSupport",
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]),
        .testTarget(name: "RedisStoreTests", dependencies: ["RedisStore", "FleetTestSupport"]),
        .testTarget(
            name: "FleetWorkersTests",
            dependencies: [
                "FleetWorkers", "FleetTestSupport", "FleetControl", "FleetConsole",
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"), "FleetRuntime",
                "AMQPTransport", "AWSClient", "HTTPTransport", "RecoveryCore", "RedisStore",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]),
        .testTarget(name: "HTTPTransportTests", dependencies: ["HTTPTransport", "FleetTestSupport"]),
        .testTarget(
            name: "AWSClientTests",
            dependencies: [
                "AWSClient", "HTTPTransport", "FleetCrypto", "FleetTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v6]
)
