import FleetRuntime
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// The request context: Hummingbird's, plus the TCP peer (the login throttle keys on it).
struct ConsoleRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let peer: String?
    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress
    }
}

/// ``ConsoleApp`` on Hummingbird 2: bodies up to 1 MiB, idle connections closed after 30 s.
public final class ConsoleServer: Sendable {
    let app: ConsoleApp
    let host: String
    let requestedPort: Int
    let logger: Logger
    private let state = Mutex<(port: Int, group: ServiceGroup?)>((0, nil))

    public init(app: ConsoleApp, host: String, port: Int, logger: Logger) {
        self.app = app
        self.host = host
        requestedPort = port
        self.logger = logger
    }

    public var port: Int { state.withLock { $0.port } }

    /// Serves until cancelled or shut down gracefully (SIGTERM via ServiceLifecycle in the executable).
    public func run() async throws {
        let group = ServiceGroup(
            configuration: .init(
                services: [application(onListening: { _ in })], gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    /// Starts in the background and returns once the port is bound (tests); `stop()` ends it.
    public func start() async throws {
        let group = try await StatusServer.startInBackground(logger: logger, what: "\(host):\(requestedPort)") {
            application(onListening: $0)
        }
        state.withLock { $0.group = group }
    }

    public func stop() async {
        guard let group = state.withLock({ $0.group }) else { return }
        await group.triggerGracefulShutdown()
    }

    private func application(onListening: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let app = app
        let responder = CallbackResponder<ConsoleRequestContext> { request, context in
            let body = try await request.body.collect(upTo: 1 << 20)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            // HTTP/1's Host header arrives as the request's authority, not among the fields.
            if let authority = request.head.authority { headers["host"] = authority }
            var query: [String: String] = [:]
            for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
            let answer = await app.handle(
                ConsoleRequest(
                    method: request.method.rawValue, path: request.uri.path, query: query, headers: headers,
                    body: Array(buffer: body), peer: context.peer))
            var response = Response(
                status: HTTPResponse.Status(code: answer.status),
                body: request.method == .head ? .init() : .init(byteBuffer: ByteBuffer(bytes: answer.body)))
            for (name, value) in answer.headers {
                if let field = HTTPFields.Element.Name(name) {
                    response.headers.append(.init(name: field, value: value))
                }
            }
            response.headers[.contentLength] = "\(answer.body.count)"
            return response
        }
        return Application(
            responder: responder,
            server: .http1(configuration: .init(idleTimeout: .seconds(30))),
            configuration: ApplicationConfiguration(address: .hostname(host, port: requestedPort), serverName: nil),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? 0
                state.withLock { $0.port = port }
                logger.notice("console listening", metadata: ["port": "\(port)"])
                onListening(port)
            },
            logger: logger)
    }
}
