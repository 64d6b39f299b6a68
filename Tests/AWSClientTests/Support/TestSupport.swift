import Foundation
import Logging

@testable import AWSClient

/// Records the retry sleeps instead of sleeping, and moves a manual clock by them.
final class SleepRecorder: @unchecked Sendable {
    // Invariant: `recorded` is only accessed under `lock`.
    private let lock = NSLock()
    private var recorded: [Duration] = []
    let clock: ManualClock
    let random: Double

    init(clock: ManualClock = ManualClock(Date()), random: Double = 0.5) {
        self.clock = clock
        self.random = random
    }

    var delays: [Duration] { lock.withLock { recorded } }

    var dependencies: AWSClientDependencies {
        AWSClientDependencies(
            now: clock.closure,
            sleep: { duration in
                try Task.checkCancellation()
                self.lock.withLock { self.recorded.append(duration) }
                self.clock.advance(by: AWSClient.seconds(duration))
            },
            random: { self.random })
    }
}

let testCredentials = AWSCredentials(
    accessKeyId: "AKIDTESTCLIENT", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYSECRETKEY",
    sessionToken: "FQoGZXIvYXdzEXAMPLE//SESSION+TOKEN=")

func uniqueName(_ prefix: String) -> String {
    prefix + "-" + UUID().uuidString.lowercased().prefix(8)
}
