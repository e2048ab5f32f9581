#!/usr/bin/env python3
"""One round of the stalled-body attack, for bench/stalled_bodies.sh (stdlib only).

Usage: stalled_clients.py PID PORT CONNECTIONS BODY_TIMEOUT_S SEND_DEADLINE_S ROUND

Opens CONNECTIONS sockets to 127.0.0.1:PORT (the sidecar's proxy port), each sending
`POST /upload` with `Content-Length: 1048576` and a body one byte short of it, then
stalling. Samples VmRSS of PID (the sidecar) from /proc:
  before     just before the first connection,
  peak       the highest sample while sending and for 1 s after,
  timeout    BODY_TIMEOUT_S + 2 s after the last byte went out (body_read_timeout
             should have cut every connection off by then),
  closed     2 s after the clients closed every socket.
It also records what each connection got back (a status code, a close, a reset).
Prints one tab-separated line:
  round before_kib peak_kib timeout_kib closed_kib sent_full connections answers
where answers is e.g. "408x150" or "none".
Every wait has a deadline; nothing here talks to anything but 127.0.0.1.
"""

import collections
import selectors
import socket
import sys
import time

BODY = 1048576
SAMPLE_EVERY = 0.1


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        head = (
            "POST /upload HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {BODY}\r\n\r\n"
        ).encode()
        self.out = memoryview(head + b"x" * (BODY - 1))
        self.sent = 0
        self.answer = None  # "408", "closed", "reset", ...

    @property
    def done_sending(self):
        return self.sent == len(self.out) or self.answer is not None

    def send_some(self):
        try:
            self.sent += self.sock.send(self.out[self.sent : self.sent + 65536])
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            self.answer = self.answer or "reset"

    def read_some(self):
        """Reads what the proxy sent; False once the proxy closed or reset the socket."""
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return True
        except ConnectionResetError:
            self.answer = self.answer or "reset"
            return False
        if not data:
            self.answer = self.answer or "closed"
            return False
        if self.answer is None:
            parts = data.split(b" ", 2)
            self.answer = parts[1].decode(errors="replace") if len(parts) > 1 else "garbage"
        return True


def main():
    pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    body_timeout, send_deadline, rnd = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]

    before = rss_kib(pid)
    peak = before
    conns = [Conn(port) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    # Send until every body is one byte short (or the connection was answered/cut).
    deadline = time.monotonic() + send_deadline
    next_sample = 0.0
    while time.monotonic() < deadline and not all(c.done_sending for c in conns):
        for key, events in sel.select(timeout=SAMPLE_EVERY):
            c = key.data
            if events & selectors.EVENT_READ and not c.read_some():
                sel.unregister(c.sock)
                continue
            if events & selectors.EVENT_WRITE and not c.done_sending:
                c.send_some()
                if c.done_sending:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
        if time.monotonic() >= next_sample:
            peak = max(peak, rss_kib(pid))
            next_sample = time.monotonic() + SAMPLE_EVERY
    last_byte = time.monotonic()
    sent_full = sum(1 for c in conns if c.sent == len(c.out))
    for c in conns:
        if c.sock.fileno() in sel.get_map() and not c.done_sending:
            sel.modify(c.sock, selectors.EVENT_READ, c)

    # Stall. Keep reading what the proxy answers, sampling RSS.
    stall_end = last_byte + body_timeout + 2
    peak_end = last_byte + 1
    while time.monotonic() < stall_end:
        for key, _ in sel.select(timeout=SAMPLE_EVERY):
            if not key.data.read_some():
                sel.unregister(key.fileobj)
        if time.monotonic() < peak_end:
            peak = max(peak, rss_kib(pid))
    after_timeout = rss_kib(pid)

    for c in conns:
        c.sock.close()
    time.sleep(2)
    closed = rss_kib(pid)

    answers = collections.Counter(c.answer for c in conns if c.answer)
    answered = ",".join(f"{a}x{k}" for a, k in sorted(answers.items())) or "none"
    print(
        "\t".join(
            str(x)
            for x in (rnd, before, peak, after_timeout, closed, sent_full, n, answered)
        )
    )


if __name__ == "__main__":
    main()
