#!/usr/bin/env python3
"""Fake OAuth2 token endpoint for bench/run.sh (stdlib only, loopback only).

Usage: fake_idp.py PORT [DELAY_MS]

POST /token answers
  {"access_token": "bench-token-<random hex>", "token_type": "Bearer", "expires_in": 3600}
(or FAKE_IDP_TTL seconds, for bench/fleet.sh's short-lived tokens)
whatever the credentials, after DELAY_MS (default 0) milliseconds. Every token issued is logged as one line on stderr
("issued bench-token-..."), so the benchmark can count how often the proxy asked.
"""

import json
import os
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


TTL = int(os.environ.get("FAKE_IDP_TTL", "3600"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.split("?", 1)[0] != "/token":
            self._send(404, '{"error":"not_found"}')
            return
        time.sleep(DELAY_S)
        token = "bench-token-" + secrets.token_hex(16)
        sys.stderr.write(f"issued {token}\n")
        sys.stderr.flush()
        self._send(
            200,
            json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": TTL}),
        )

    def do_GET(self):
        # Health check for the benchmark script.
        self._send(200, "ok\n", "text/plain")

    def log_message(self, fmt, *args):  # keep stderr for issued tokens only
        pass


DELAY_S = 0.0


def main():
    global DELAY_S
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: fake_idp.py PORT [DELAY_MS]")
    if len(sys.argv) == 3:
        DELAY_S = int(sys.argv[2]) / 1000
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
