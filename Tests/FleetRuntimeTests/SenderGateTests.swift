@testable import AMQPTransport
import FleetRuntime
import Foundation
import Logging
import RecoveryCore
import Synchronization
import Testing

@Suite("Who may send what (no server)")
struct SenderGateTests {
    let identities = FleetIdentities.fromEnvironment([
        "OPERATORS": "alice,fleet-operator", "DECISION_USERS": "dec-a, dec-b",
    ])

    func delivery(_ type: MessageType, from user: String?, body: [UInt8]? = nil) throws -> AMQPDelivery {
        let bytes =
            try body ?? EnvelopeCodec.encode(Envelope(type: type, target: "shop", occurredAt: Date(), body: ["k": "v"]))
        return AMQPDelivery(
            body: bytes, properties: AMQPProperties(messageId: UUID().uuidString, userId: user), exchange: "recovery",
            routingKey: "\(type.rawValue).shop", redelivered: false, deliveryTag: 1, generation: 1)
    }

    @Test func eachTypeHasItsSenders() {
        #expect(identities.allowedSenders(of: .actionRequest) == ["dec-a", "dec-b"])
        #expect(identities.allowedSenders(of: .observation) == ["fleet-probe"])
        #expect(identities.allowedSenders(of: .actionEvent) == ["fleet-actuator"])
        #expect(identities.allowedSenders(of: .prediction) == ["fleet-predictor"])
        #expect(identities.allowedSenders(of: .notification) == ["dec-a", "dec-b", "fleet-actuator"])
        #expect(identities.allowedSenders(of: .command) == ["alice", "fleet-operator", "fleet-console"])
        #expect(identities.allowedSenders(of: .predictionRequest) == ["alice", "fleet-operator"])
        // Nobody may send as the notifier or the recorder: they only dead-letter.
        #expect(FleetRole.notifier.sends.isEmpty && FleetRole.recorder.sends.isEmpty)
        // Fail closed: no OPERATORS, no person's commands. Only the console's user may send them, and the
        // decision worker acts on those only for someone on OPERATORS (DecisionMemoryTests,
        // theConsoleActsOnlyForAnOperatorItNamesAndNeverOnItsOwn).
        #expect(FleetIdentities.fromEnvironment([:]).allowedSenders(of: .command) == ["fleet-console"])
        #expect(FleetIdentities.fromEnvironment(["CONSOLE_USERS": "web-1"]).users[.console] == ["web-1"])
    }

    @Test func theGateLetsThroughOnlyAllowedSendersAndAnnouncesEachSenderOnce() async throws {
        let announced = Mutex<[UnauthorizedSender]>([])
        let gate = SenderGate(identities: identities, unchecked: [.command], logger: Logger(label: "test")) { refusal in
            announced.withLock { $0.append(refusal) }
        }
        let queue = "recovery.actuator.requests"
        #expect(gate.refusal(of: try delivery(.actionRequest, from: "dec-b"), queue: queue) == nil)
        #expect(
            gate.refusal(of: try delivery(.command, from: "mallory"), queue: queue) == nil,
            "commands are the worker's own check")
        #expect(gate.refusal(of: try delivery(.command, from: nil), queue: queue) != nil, "but they need a user_id")
        #expect(
            gate.refusal(of: try delivery(.observation, from: nil, body: Array("{not json".utf8)), queue: queue) == nil,
            "an unreadable body is the decoder's to refuse")

        let forged = try #require(gate.refusal(of: try delivery(.actionRequest, from: "fleet-probe"), queue: queue))
        #expect(
            forged.reason
                == "unauthorized-sender: broker user 'fleet-probe' may not send 'action.request' (only the decision identities may)"
        )
        let anonymous = try #require(gate.refusal(of: try delivery(.actionRequest, from: nil), queue: queue))
        #expect(anonymous.reason.hasPrefix("unauthorized-sender: a sender without user_id"))
        let other = try #require(gate.refusal(of: try delivery(.observation, from: "fleet-probe2"), queue: queue))

        for refusal in [forged, forged, forged, anonymous, other, forged] { await gate.refused(refusal) }
        // A dead letter the worker itself wrote and an operator moved back is judged by its recorded sender.
        let own = SenderGate(identities: identities, ownUser: "fleet-actuator", logger: Logger(label: "test"))
        var replayed = try delivery(.actionRequest, from: "fleet-actuator")
        replayed.properties.headers = ["x-original-queue": .string(queue), "x-original-user-id": .string("dec-a")]
        #expect(own.refusal(of: replayed, queue: queue) == nil)
        replayed.properties.headers["x-original-user-id"] = .string("fleet-probe")
        #expect(own.refusal(of: replayed, queue: queue)?.user == "fleet-probe")
        replayed.properties.headers["x-original-queue"] = .string("recovery.other")
        #expect(own.refusal(of: replayed, queue: queue)?.user == "fleet-actuator", "only dead letters of this queue")
        #expect(announced.withLock { $0.map(\.user) } == ["fleet-probe", nil, "fleet-probe2"], "once per sender")

        // The notice names the sender and the day only: every worker announcing it sends the same id.
        let day = Date(timeIntervalSince1970: 1_796_000_000)
        let a = forged.notice(at: day, announcedBy: "actuator@h1")
        var fromDecision = forged
        fromDecision.queue = "recovery.decision.observations"
        #expect(a.id == fromDecision.notice(at: day.addingTimeInterval(60), announcedBy: "decision@h2").id)
        #expect(a.kind == .unauthorizedSender && a.target == nil)
        #expect(a.detail?.contains("fleet-probe") == true)
    }

    @Test func permissionsAreAsNarrowAsEachKindsQueues() {
        let topology = FleetTopology()
        let probe = topology.permissions(for: .probe)
        #expect(probe.configure == "^$" && probe.write == "^(recovery)$" && probe.read == "^$")
        #expect(probe.topics.first { $0.exchange == "recovery" }?.write == "^(observation)\\.")
        let decision = topology.permissions(for: .decision)
        #expect(decision.read == "^(recovery\\.decision\\.observations|recovery\\.decision\\.commands)$")
        #expect(
            decision.topics.first { $0.exchange == "recovery" }?.write == "^(action\\.request|notification|event)\\.")
        #expect(decision.topics.first { $0.exchange == "recovery.dlx" }?.write == decision.read)
        let notifier = topology.permissions(for: .notifier)
        #expect(notifier.write == "^(recovery\\.dlx)$", "the notifier publishes nothing but dead letters")
        let operators = topology.permissions(for: .operator)
        // Only broker-named queues: a name of the operator's choosing could be an exchange, bound to the
        // fleet exchange and published through with no topic permission.
        #expect(operators.configure == "^amq\\.gen-.+$" && operators.tags == ["management"])
        #expect(operators.write == "^(recovery|amq\\.gen-.+)$")
        #expect(operators.read == "^(recovery|recovery\\.dlx|amq\\.gen-.+|recovery\\..+\\.dead)$")
        #expect(operators.topics.first { $0.exchange == "recovery.dlx" }?.write == "^$")
        #expect(operators.topics.first { $0.exchange == "recovery" }?.write == "^(command|predict)\\.")
        // The console follows its commands like recoveryctl, but reads no dead-letter queue, has no
        // management UI, and may publish commands only.
        let console = topology.permissions(for: .console)
        #expect(console.configure == "^amq\\.gen-.+$" && console.tags.isEmpty)
        #expect(console.read == "^(recovery|recovery\\.dlx|amq\\.gen-.+)$")
        #expect(console.topics.first { $0.exchange == "recovery" }?.write == "^(command)\\.")
        #expect(console.topics.first { $0.exchange == "recovery.dlx" }?.write == "^$")
        for role in FleetRole.allCases where role != .operator && role != .console {
            #expect(topology.permissions(for: role).configure == "^$", "\(role) declares nothing")
            #expect(topology.permissions(for: role).tags.isEmpty)
        }
        // A test prefix with regex characters is escaped.
        #expect(FleetTopology(prefix: "it.a+b").permissions(for: .probe).write == "^(it\\.a\\+b)$")
    }
}
