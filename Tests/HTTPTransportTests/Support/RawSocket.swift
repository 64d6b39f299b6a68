import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP socket bound to a free loopback port, for the failure cases a real server cannot produce on
/// demand: `listening: false` refuses every connection (bound, not listening: the kernel answers RST);
/// `listening: true` lets the kernel complete connections that nobody serves until `acceptOne()`.
final class RawSocket: @unchecked Sendable {
    let fd: Int32
    let port: Int

    init(listening: Bool) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            close(fd)
            throw TestSupportError("bind() failed: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        if listening, listen(fd, 16) != 0 {
            close(fd)
            throw TestSupportError("listen() failed: errno \(errno)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    /// Waits (on a thread of its own, never the cooperative pool) for the next connection.
    func acceptOne() async throws -> AcceptedConnection {
        try await withCheckedThrowingContinuation { continuation in
            let fd = self.fd
            Thread {
                let client = accept(fd, nil, nil)
                if client >= 0 {
                    continuation.resume(returning: AcceptedConnection(fd: client))
                } else {
                    continuation.resume(throwing: TestSupportError("accept() failed: errno \(errno)"))
                }
            }.start()
        }
    }
}

final class AcceptedConnection: @unchecked Sendable {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// Reads until the peer closes the connection; false if it is still open after `seconds`.
    func waitForPeerClose(seconds: Int) async -> Bool {
        await withCheckedContinuation { continuation in
            let fd = self.fd
            Thread {
                var timeout = timeval(tv_sec: seconds, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = recv(fd, &buffer, buffer.count, 0)
                    if n > 0 { continue }
                    // 0: orderly close; ECONNRESET: aborted; EAGAIN: still open at the deadline.
                    continuation.resume(returning: n == 0 || errno == ECONNRESET)
                    return
                }
            }.start()
        }
    }
}
