"""Shared bits of the test servers: bind 127.0.0.1 on a free port, print PORT=<n>, serve until killed."""
import http.server
import signal
import sys
import threading


class QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", content_type="text/plain", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(handler_class):
    # The Swift test runner spawns us from a thread that blocks most signals, and the mask is inherited:
    # unblock them so SIGTERM from the test ends the server.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, range(1, signal.NSIG))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    print(f"PORT={server.server_address[1]}", flush=True)
    server.serve_forever()


LOCK = threading.Lock()
