import FleetControl
import FleetTestSupport
import Foundation
import Testing

/// Chromium and its driver (Debian's chromium, chromium-driver) and Selenium, as scripts/services.sh
/// install installs them. CI sets CONSOLE_BROWSER_TESTS=require, so that a missing browser fails the run
/// instead of skipping the test.
let browserAvailable =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")

@Suite(
    "Console in headless Chromium, against the real workers, broker, Redis and moto",
    .enabled(
        if: servicesAvailable && (browserAvailable || environment["CONSOLE_BROWSER_TESTS"] == "require"),
        "needs the services and /usr/bin/chromium, /usr/bin/chromedriver (scripts/services.sh install)"))
struct ConsoleBrowserTests {
    @Test(.timeLimit(.minutes(4)))
    func anOperatorApprovesInTheBrowserAndAViewerSeesNoButtons() async throws {
        #expect(browserAvailable, "CONSOLE_BROWSER_TESTS=require, but Chromium or its driver is missing")
        let fleet = try await ConsoleFleet()
        do {
            try await fleet.breakSite()
            fleet.site.set(healthy: true)  // the approved restart brings it back
            let home = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: home) }
            var arguments = [
                repositoryRoot.appendingPathComponent("Tests/browser/console_flow.py").path, "--url", fleet.url,
                "--target", fleet.name, "--operator", "alice:\(ConsoleFleet.passwords["alice"]!)",
                "--viewer", "bob:\(ConsoleFleet.passwords["bob"]!)",
            ]
            // CONSOLE_SCREENSHOTS=docs/images refreshes the pictures in docs/console.md from this run.
            if let shots = environment["CONSOLE_SCREENSHOTS"] { arguments += ["--screenshots", shots] }
            let run = try await runProgram(
                await TestProcesses.python(), arguments,
                env: ["PATH": environment["PATH"] ?? "/usr/bin:/bin", "HOME": home.path])
            #expect(run.code == 0, "\(run.stdout)\n\(run.stderr.suffix(3000))")
            for line in run.stdout.split(separator: "\n") { print("browser: \(line)") }
            // What the browser did, checked where it happened: one reboot in moto, alice in the history.
            #expect(fleet.log.actions("RebootInstances").count == 1)
            let approval = try await fleet.timeline().first { $0.type == "command" && $0.what == "approve" }
            #expect(approval?.who == "alice via guest")
        } catch {
            Issue.record(error)
        }
        await fleet.tearDown()
    }
}
