"""Prints N free TCP ports on 127.0.0.1 (default 1), space-separated, for the bench
scripts. The ports are found by binding port 0 and closed before printing, so another
process could take one in between: the scripts are not run in parallel with others."""
import socket
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
socks = []
for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
