import Foundation
import RecoveryCore

/// The decision worker's per-event codec work, alone: a target's stored document (`StateCodec`) encoded
/// and decoded, as the worker does once each per event it decides (docs/benchmarks.md).
func runCodecBenchmark(_ options: BenchOptions) {
    let rounds = options.int("rounds", default: 20_000)
    var settings = TargetSettings()
    settings.gracePeriod = 0
    var machine = TargetMachine(
        ladder: EscalationMachine(
            identity: TargetIdentity(name: "bench-1", homeRegion: "us-east-1"),
            instance: InstanceRef(id: "i-0123456789abcdef0", region: "us-east-1"), settings: settings))
    // A target as the fleet sees it most of the time: three probers, healthy, its recent events remembered
    // (observation ids are UUIDs, as the probe sends them; `--events`, default 600: past the memory's bound).
    let start = Date()
    for i in 0..<options.int("events", default: 600) {
        _ = machine.handle(
            .ladder(.probe(id: UUID().uuidString.lowercased(), ProbeResult(prober: "probe-\(i % 3)", healthy: true))),
            TargetMachine.Context(now: start.addingTimeInterval(Double(i) * 10), brakeEngaged: false, uniqueId: "u\(i)")
        )
    }
    let bytes = try! StateCodec.encode(machine)
    if options.string("print") != nil { print(String(decoding: bytes, as: UTF8.self)) }
    var clock = ContinuousClock.now
    var sink = 0
    for _ in 0..<rounds { sink &+= try! StateCodec.encode(machine).count }
    let encode = seconds(ContinuousClock.now - clock) / Double(rounds) * 1e6
    clock = ContinuousClock.now
    for _ in 0..<rounds { sink &+= try! StateCodec.decodeTarget(bytes).outbox.count }
    let decode = seconds(ContinuousClock.now - clock) / Double(rounds) * 1e6
    // The machine's own work on one more observation (the event memory's lookup and insert included).
    let ids = (0..<rounds).map { _ in UUID().uuidString.lowercased() }
    clock = ContinuousClock.now
    for id in ids {
        var copy = machine
        sink &+=
            copy.handle(
                .ladder(.probe(id: id, ProbeResult(prober: "probe-0", healthy: true))),
                TargetMachine.Context(now: Date(), brakeEngaged: false, uniqueId: "u")
            ).count
    }
    let handle = seconds(ContinuousClock.now - clock) / Double(rounds) * 1e6
    // An observation as the decision worker reads it off the queue (type first, then the envelope).
    var result = ProbeResult(prober: "probe@host-1", instanceId: "i-0123456789abcdef0", healthy: true, statusCode: 200)
    result.source = .http
    result.timing = ProbeTiming(dnsMs: 0.1, connectMs: 0.4, tlsMs: 0, firstByteMs: 2.5, totalMs: 2.7)
    let message = try! EnvelopeCodec.encode(
        Envelope(
            type: .observation, target: "bench-1", instanceId: "i-0123456789abcdef0", occurredAt: Date(),
            producer: "probe@host-1", body: result))
    clock = ContinuousClock.now
    for _ in 0..<rounds {
        _ = try! EnvelopeCodec.messageType(of: message)
        sink &+= try! EnvelopeCodec.decode(message, as: ProbeResult.self, expecting: .observation).id.utf8.count
    }
    let observation = seconds(ContinuousClock.now - clock) / Double(rounds) * 1e6
    // The fleet brake in a mass outage (a quarter of 10,000 targets, each with a step requested): the
    // decision worker decodes it when another replica changed it, and decides and encodes it with every
    // outage that opens and every step requested (docs/benchmarks.md, "Scale").
    var brakeSettings = FleetBrake.Settings()
    brakeSettings.maxOutageShare = 1.1
    brakeSettings.maxDestructiveActions = 1_000_000
    var brake = FleetBrake(settings: brakeSettings, fleet: (0..<10_000).map { "target-\($0)" })
    for t in 0..<2_500 {
        _ = brake.handle(.outageOpened(target: "target-\(t * 4)"), now: start)
        _ = brake.handle(
            .destructiveActionRequested(target: "target-\(t * 4)", idempotencyKey: "restart:inc-\(t)"), now: start)
    }
    let brakeBytes = try! StateCodec.encode(brake)
    let brakeRounds = max(1, rounds / 100)
    clock = ContinuousClock.now
    for _ in 0..<brakeRounds { sink &+= try! StateCodec.encode(brake).count }
    let brakeEncode = seconds(ContinuousClock.now - clock) / Double(brakeRounds) * 1e6
    clock = ContinuousClock.now
    for _ in 0..<brakeRounds { sink &+= try! StateCodec.decodeBrake(brakeBytes).engagements }
    let brakeDecode = seconds(ContinuousClock.now - clock) / Double(brakeRounds) * 1e6
    clock = ContinuousClock.now
    for i in 0..<brakeRounds {
        var copy = brake
        sink &+= copy.handle(.outageOpened(target: "target-\(i * 4 + 1)"), now: start).count
    }
    let brakeHandle = seconds(ContinuousClock.now - clock) / Double(brakeRounds) * 1e6
    print(
        String(
            format:
                "fleet brake with 2,500 targets in outage and 2,500 steps, %d bytes: encode %.0f µs, decode %.0f µs, one more outage decided %.0f µs (%d rounds)",
            brakeBytes.count, brakeEncode, brakeDecode, brakeHandle, brakeRounds))
    print(
        String(
            format:
                "state codec: a healthy target's document, %d bytes: encode %.1f µs, decode %.1f µs; handling an observation %.1f µs; reading an observation (%d bytes) off the queue %.1f µs (%d rounds; %d)",
            bytes.count, encode, decode, handle, message.count, observation, rounds, sink % 2))
}
