internal import CCurl
import Foundation
import Logging

/// `curl_global_init`, run once per process: Swift runs a global's initializer exactly once, thread-safely,
/// on first use (the first client creation).
private let curlGlobalInitResult: CURLcode = curl_global_init(cshim_CURL_GLOBAL_DEFAULT)

/// An HTTP client over libcurl's multi interface.
///
/// One dedicated thread per client drives all of its transfers (`curl_multi_poll`), so thousands of
/// requests can be in flight without blocking Swift's cooperative pool. Requests beyond
/// `maxConcurrentRequests` wait in a queue. Connections are kept alive and reused between requests to the
/// same host unless a request asks for a fresh connection.
///
/// Call `shutdown()` when done (dropping the last reference does the same): requests still running or
/// queued then fail with `HTTPClientError.Kind.shutdown`.
public final class HTTPClient: HTTPExecuting, Sendable {
    private let engine: CurlMultiEngine

    public init(maxConcurrentRequests: Int = 256, logger: Logger = Logger(label: "HTTPTransport")) {
        engine = CurlMultiEngine(maxConcurrent: max(1, maxConcurrentRequests), logger: logger)
    }

    deinit {
        engine.shutdown()
    }

    /// Sends `request` and returns the response, whatever its status code. Throws `HTTPClientError` when no
    /// response arrived, and `CancellationError` when the task is cancelled first (the transfer is then
    /// aborted and its connection closed).
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        try engine.checkUsable(url: request.url)
        let id = engine.makeID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                engine.submit(CurlMultiEngine.Submission(id: id, request: request, continuation: continuation))
            }
        } onCancel: {
            engine.cancel(id)
        }
    }

    /// Stops the client: fails queued and running requests with `.shutdown`, and lets its thread end.
    /// Later calls to `execute` fail the same way. Calling it again does nothing.
    public func shutdown() {
        engine.shutdown()
    }
}

/// Owns a CURLM handle.
private final class CurlMulti {
    let handle: UnsafeMutableRawPointer

    init?() {
        guard let handle = curl_multi_init() else { return nil }
        self.handle = handle
    }

    deinit {
        curl_multi_cleanup(handle)
    }
}

/// The machinery behind `HTTPClient`: a request queue shared with callers, and the curl thread's loop.
///
/// Thread-safety invariant (why `@unchecked Sendable` holds): `multi` is driven only by the engine's own
/// thread in `run()`; other threads touch it only through `curl_multi_wakeup` (which libcurl allows from
/// any thread), under `lock`, while `state.loopRunning` is true. Everything else shared lives in `state`
/// and is only accessed under `lock`. Easy handles (`CurlTransfer`) never leave the curl thread.
final class CurlMultiEngine: @unchecked Sendable {
    struct Submission: Sendable {
        var id: UInt64
        var request: HTTPRequest
        var continuation: CheckedContinuation<HTTPResponse, any Error>
    }

    private struct State {
        var nextID: UInt64 = 0
        /// Queued requests, in arrival order: `pendingOrder[pendingHead...]` names them, `pending` holds the
        /// ones not yet cancelled.
        var pending: [UInt64: Submission] = [:]
        var pendingOrder: [UInt64] = []
        var pendingHead = 0
        /// Requests handed to the curl thread and not yet reported back as finished.
        var active: Set<UInt64> = []
        var cancelRequests: [UInt64] = []
        var isShutdown = false
        var loopRunning = false
        /// A wakeup was sent and the loop has not collected the queue since.
        var wakeSent = false

        mutating func popPending() -> Submission? {
            while pendingHead < pendingOrder.count {
                let id = pendingOrder[pendingHead]
                pendingHead += 1
                if let submission = pending.removeValue(forKey: id) { return submission }
            }
            return nil
        }

        mutating func compactPending() {
            if pendingHead == pendingOrder.count {
                pendingOrder.removeAll(keepingCapacity: true)
                pendingHead = 0
            } else if pendingHead > 4096 && pendingHead * 2 > pendingOrder.count {
                pendingOrder.removeFirst(pendingHead)
                pendingHead = 0
            }
        }
    }

    private let lock = NSLock()
    private var state = State()
    private let multi: CurlMulti?
    private let maxConcurrent: Int
    private let logger: Logger

    init(maxConcurrent: Int, logger: Logger) {
        self.maxConcurrent = maxConcurrent
        self.logger = logger
        multi = curlGlobalInitResult == CURLE_OK ? CurlMulti() : nil
        guard multi != nil else {
            logger.error("libcurl could not be initialised; every request will fail")
            return
        }
        do {
            try curlCheck(
                cshim_curl_multi_setopt_long(multi!.handle, CURLMOPT_MAXCONNECTS, maxConcurrent),
                "curl_multi_setopt(CURLMOPT_MAXCONNECTS)", url: RedactedURL(""))
        } catch {
            logger.warning("could not size the connection cache", metadata: ["error": "\(error)"])
        }
        state.loopRunning = true
        let thread = Thread { [self] in run() }
        thread.name = "HTTPClient curl"
        thread.start()
        logger.debug("HTTP client started", metadata: ["max_concurrent": "\(maxConcurrent)"])
    }

    // MARK: Callers' side

    /// Throws when libcurl could not be set up at all, so requests fail with curl's reason.
    func checkUsable(url: String) throws(HTTPClientError) {
        try curlCheck(curlGlobalInitResult, "curl_global_init", url: RedactedURL(url))
        if multi == nil {
            try curlCheck(CURLM_OUT_OF_MEMORY, "curl_multi_init", url: RedactedURL(url))
        }
    }

    func makeID() -> UInt64 {
        lock.withLock {
            state.nextID += 1
            return state.nextID
        }
    }

    func submit(_ submission: Submission) {
        enum Refusal { case shutdown, cancelled }
        let refusal: Refusal? = lock.withLock {
            if state.isShutdown { return .shutdown }
            // Checked under the lock: a cancellation handler that ran before this found nothing to
            // cancel, but the task's cancelled flag was already set when it ran.
            if Task.isCancelled { return .cancelled }
            state.pending[submission.id] = submission
            state.pendingOrder.append(submission.id)
            wakeLocked()
            return nil
        }
        switch refusal {
        case nil: break
        case .shutdown: submission.continuation.resume(throwing: Self.shutdownError(submission.request.url))
        case .cancelled: submission.continuation.resume(throwing: CancellationError())
        }
    }

    func cancel(_ id: UInt64) {
        let queued: Submission? = lock.withLock {
            if let submission = state.pending.removeValue(forKey: id) { return submission }
            if state.active.contains(id) {
                state.cancelRequests.append(id)
                wakeLocked()
            }
            return nil
        }
        queued?.continuation.resume(throwing: CancellationError())
    }

    func shutdown() {
        let drained: [Submission] = lock.withLock {
            guard !state.isShutdown else { return [] }
            state.isShutdown = true
            var drained: [Submission] = []
            while let submission = state.popPending() { drained.append(submission) }
            state.compactPending()
            wakeLocked()
            return drained
        }
        for submission in drained {
            submission.continuation.resume(throwing: Self.shutdownError(submission.request.url))
        }
        if !drained.isEmpty { logger.debug("HTTP client shut down", metadata: ["queued_failed": "\(drained.count)"]) }
    }

    /// Must hold `lock`.
    private func wakeLocked() {
        guard state.loopRunning, !state.wakeSent, let multi else { return }
        state.wakeSent = true
        do {
            try curlCheck(curl_multi_wakeup(multi.handle), "curl_multi_wakeup", url: RedactedURL(""))
        } catch {
            logger.error("could not wake the curl thread", metadata: ["error": "\(error)"])
        }
    }

    private static func shutdownError(_ url: String) -> HTTPClientError {
        HTTPClientError(kind: .shutdown, message: "", redactedURL: RedactedURL(url).text)
    }

    // MARK: The curl thread

    private struct Batch {
        var started: [Submission] = []
        var cancelled: [UInt64] = []
        var shutdown = false
    }

    /// Reports finished requests and collects new work: queued requests up to the concurrency limit, and
    /// cancellations.
    private func collect(finished: [UInt64]) -> Batch {
        lock.withLock {
            var batch = Batch()
            for id in finished { state.active.remove(id) }
            state.wakeSent = false
            batch.cancelled = state.cancelRequests
            state.cancelRequests.removeAll()
            batch.shutdown = state.isShutdown
            while !batch.shutdown, state.active.count < maxConcurrent, let next = state.popPending() {
                state.active.insert(next.id)
                batch.started.append(next)
            }
            state.compactPending()
            return batch
        }
    }

    private func run() {
        guard let multi else { return }
        var transfers: [UInt64: CurlTransfer] = [:]
        var byHandle: [UnsafeMutableRawPointer: CurlTransfer] = [:]
        var finished: [UInt64] = []
        var expiries = CertificateExpiryCache()

        func detach(_ transfer: CurlTransfer) {
            transfers[transfer.id] = nil
            byHandle[transfer.handle] = nil
            finished.append(transfer.id)
            guard transfer.isAttached else { return }
            transfer.isAttached = false
            do {
                try curlCheck(
                    curl_multi_remove_handle(multi.handle, transfer.handle), "curl_multi_remove_handle",
                    url: transfer.redactedURL)
            } catch {
                logger.error("could not remove a transfer", metadata: ["error": "\(error)"])
            }
        }

        while true {
            let batch = collect(finished: finished)
            finished.removeAll(keepingCapacity: true)
            for id in batch.cancelled {
                guard let transfer = transfers[id] else { continue }
                detach(transfer)
                transfer.continuation.resume(throwing: CancellationError())
            }
            if batch.shutdown { break }
            for submission in batch.started {
                do {
                    let transfer = try CurlTransfer(
                        id: submission.id, request: submission.request, continuation: submission.continuation)
                    try curlCheck(
                        curl_multi_add_handle(multi.handle, transfer.handle), "curl_multi_add_handle",
                        url: transfer.redactedURL)
                    transfer.isAttached = true
                    transfers[transfer.id] = transfer
                    byHandle[transfer.handle] = transfer
                } catch {
                    finished.append(submission.id)
                    submission.continuation.resume(throwing: error)
                }
            }

            var running: Int32 = 0
            do {
                try curlCheck(curl_multi_perform(multi.handle, &running), "curl_multi_perform", url: RedactedURL(""))
            } catch {
                logger.error("curl_multi_perform failed", metadata: ["error": "\(error)"])
            }
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi.handle, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                    let transfer = byHandle[easy]
                else { continue }
                // Read the outcome while the handle is still in the multi handle: curl finds the
                // connection (CURLINFO_ACTIVESOCKET) through the multi handle's connection cache.
                let outcome = transfer.outcome(message.pointee.data.result, expiries: &expiries)
                detach(transfer)
                switch outcome {
                case .success(let response):
                    transfer.continuation.resume(returning: response)
                case .failure(let error):
                    logger.debug("HTTP request failed", metadata: ["url": "\(error.redactedURL)", "error": "\(error)"])
                    transfer.continuation.resume(throwing: error)
                }
            }

            // Finished transfers freed slots: go straight back for queued requests instead of waiting.
            if !finished.isEmpty { continue }
            do {
                // Waits for socket activity, curl's next timer, a wakeup, or one second, whichever is first.
                try curlCheck(curl_multi_poll(multi.handle, nil, 0, 1000, nil), "curl_multi_poll", url: RedactedURL(""))
            } catch {
                logger.error("curl_multi_poll failed", metadata: ["error": "\(error)"])
                Thread.sleep(forTimeInterval: 0.01)  // never spin if polling keeps failing
            }
        }

        lock.withLock { state.loopRunning = false }
        let abandoned = Array(transfers.values)
        for transfer in abandoned {
            detach(transfer)
            transfer.continuation.resume(
                throwing: HTTPClientError(kind: .shutdown, message: "", redactedURL: transfer.redactedURL.text))
        }
        logger.debug("HTTP client thread stopped", metadata: ["running_failed": "\(abandoned.count)"])
    }
}
