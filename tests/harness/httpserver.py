#!/usr/bin/python3
"""A local HTTP server standing in for a slow third-party API (tests, demo, benchmarks).

Listens on 127.0.0.1 (port 0 unless given) and prints its port as the first line of stdout.
  /status/<code>   answers with that status
  /delay/<seconds> answers 200 after sleeping
  /echo            echoes the request body (any method)
  /json            a small JSON document
  /redirect        302 to /json
Exits on SIGTERM or SIGINT.
"""
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if parts[0] == "status" and len(parts) == 2:
            return self._send(int(parts[1]), b"status\n")
        if parts[0] == "delay" and len(parts) == 2:
            time.sleep(float(parts[1]))
            return self._send(200, b"slept\n")
        if parts[0] == "echo":
            return self._send(200, data, self.headers.get("Content-Type", "text/plain"))
        if parts[0] == "json":
            return self._send(200, json.dumps({"ok": True, "n": 42}).encode(), "application/json")
        if parts[0] == "redirect":
            self.send_response(302)
            self.send_header("Location", "/json")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._send(404, b"not found\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _route


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    srv = Server(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
