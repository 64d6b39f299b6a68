import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The repository's root, found from this file's path (the tests read the files the deployment ships).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

struct ChildProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A helper program run by a test: a script to completion (`run`), or a server kept running until
/// `stop()` (`start`). See docs/testing.md, "Helper processes":
///
/// - Spawned with `posix_spawn` and reaped with `waitpid`, on a thread of its own, never on the
///   cooperative pool, which every other test shares.
/// - The child starts with an empty signal mask and default handlers (the test runner's threads
///   block SIGTERM and a child would inherit that), so `stop()` can end it with SIGTERM.
/// - Descriptors above 2 are closed before the program runs (a bash prologue, as in
///   BrokerRestartTests): a server must not keep a copy of a test's socket. stdout and stderr go to
///   `logFile`, which errors quote; it is deleted with the object.
final class ChildProcess: Sendable {
    let pid: pid_t
    let logFile: URL
    let name: String
    /// nil while running; the wait status once reaped.
    private let exitStatus = Mutex<Int32?>(nil)

    private init(pid: pid_t, logFile: URL, name: String) {
        self.pid = pid
        self.logFile = logFile
        self.name = name
    }

    deinit {
        // A test that forgot stop() (or threw first) must not leave a server behind.
        if exitStatus.withLock({ $0 }) == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        try? FileManager.default.removeItem(at: logFile)
    }

    /// Runs `argv` to completion and returns its exit status and output (stdout and stderr together).
    static func run(
        _ argv: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
        in directory: URL? = nil
    ) async throws -> (status: Int32, output: String) {
        let process = try spawn(argv, environment: environment, in: directory)
        let status = await process.waitForExit()
        return (status, process.log)
    }

    /// Starts a server and returns once it accepts TCP connections on 127.0.0.1:`port`; throws with
    /// its log if it exits first or is not ready within `timeout`.
    static func start(
        _ argv: [String], readyPort port: Int, environment: [String: String] = ProcessInfo.processInfo.environment,
        timeout: Duration = .seconds(10)
    ) async throws -> ChildProcess {
        let process = try spawn(argv, environment: environment, in: nil)
        let ready = await offPool {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if process.reapIfExited() { return false }
                if canConnect(port: port) { return true }
                usleep(5_000)
            }
            return false
        }
        guard ready else {
            await process.stop()
            throw ChildProcessError("\(process.name) was not ready on port \(port): \(process.log)")
        }
        return process
    }

    /// SIGTERM, then SIGKILL if it is still running after 3 s; returns once it is reaped.
    func stop() async {
        guard exitStatus.withLock({ $0 }) == nil else { return }
        _ = Glibc.kill(pid, SIGTERM)
        let stopped = await offPool {
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline {
                if self.reapIfExited() { return true }
                usleep(5_000)
            }
            return false
        }
        if !stopped {
            _ = Glibc.kill(pid, SIGKILL)
            _ = await waitForExit()
        }
    }

    /// SIGKILL, and returns once it is reaped (its sockets are closed by then). Blocks for the moment
    /// the kernel needs, not for the program.
    func forceStop() {
        guard exitStatus.withLock({ $0 }) == nil else { return }
        _ = Glibc.kill(pid, SIGKILL)
        while !reapIfExited() { usleep(1_000) }
    }

    /// What the program wrote so far.
    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    // MARK: Private

    private static func spawn(_ argv: [String], environment: [String: String], in directory: URL?) throws
        -> ChildProcess
    {
        let name = URL(fileURLWithPath: argv[0]).lastPathComponent
        let logFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString).log")
        let prologue =
            #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null; "#
            + #"[ -z "$CHILD_DIR" ] || cd "$CHILD_DIR" || exit 127; exec "$@" >"$CHILD_LOG" 2>&1"#
        let cArgs = (["/bin/bash", "-c", prologue, name] + argv).map { strdup($0) } + [nil]
        let env = environment.merging(["CHILD_LOG": logFile.path, "CHILD_DIR": directory?.path ?? ""]) { $1 }
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", nil, &attributes, cArgs, cEnv)
        guard rc == 0 else {
            throw ChildProcessError("posix_spawn \(argv[0]) failed: \(String(cString: strerror(rc)))")
        }
        return ChildProcess(pid: pid, logFile: logFile, name: name)
    }

    /// Non-blocking: true once the child has exited (and is reaped).
    private func reapIfExited() -> Bool {
        exitStatus.withLock { status in
            if status != nil { return true }
            var raw: Int32 = 0
            let rc = waitpid(pid, &raw, WNOHANG)
            guard rc == pid else { return false }
            status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            return true
        }
    }

    private func waitForExit() async -> Int32 {
        await offPool {
            while !self.reapIfExited() { usleep(2_000) }
            return self.exitStatus.withLock { $0 } ?? -1
        }
    }
}

/// Runs blocking work on a thread of its own and awaits its result, so the cooperative pool never waits.
func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` (blocking; call it off the pool).
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = loopbackAddress(port: port)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// A loopback port nobody listens on now (bound to port 0, read back, released).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ChildProcessError("socket() failed") }
    defer { close(fd) }
    var address = loopbackAddress(port: 0)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw ChildProcessError("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}
