#!/usr/bin/env python3
"""A cold herd for bench/cold_herd.sh (stdlib only, loopback only).

  cold_herd.py PORT N

Opens N connections to 127.0.0.1:PORT, and once all are open sends `GET /` on each at
once (Connection: close). Prints one line: the status codes seen, and the latency of the
requests from that moment to the end of each answer (p50, p90, p99, max, in ms).
"""

import asyncio
import collections
import sys
import time


async def one(port, opened, start, results):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened.append(1)
    await start.wait()
    t0 = time.perf_counter()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    took = time.perf_counter() - t0
    writer.close()
    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "none"
    results.append((status, took))


async def herd(port, n):
    opened, start, results = [], asyncio.Event(), []
    tasks = [asyncio.create_task(one(port, opened, start, results)) for _ in range(n)]
    deadline = time.monotonic() + 30
    # every connection open before the first request goes
    while len(opened) < n and not any(t.done() for t in tasks):
        if time.monotonic() > deadline:
            sys.exit(f"only {len(opened)} of {n} connections opened within 30 s")
        await asyncio.sleep(0.01)
    start.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    errors = [e for e in done if isinstance(e, BaseException)]
    if errors:
        print(f"{len(errors)} connections failed, first: {errors[0]!r}", file=sys.stderr)
    return results


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    port, n = int(sys.argv[1]), int(sys.argv[2])
    results = asyncio.run(herd(port, n))
    if not results:
        sys.exit("no answers")
    statuses = collections.Counter(s for s, _ in results)
    lat = sorted(t * 1000 for _, t in results)

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100 * len(lat))) - 1)]

    codes = " ".join(f"{code}x{count}" for code, count in sorted(statuses.items()))
    print(
        f"answers={len(results)}/{n} statuses={codes} "
        f"p50={pct(50):.1f}ms p90={pct(90):.1f}ms p99={pct(99):.1f}ms max={lat[-1]:.1f}ms"
    )


if __name__ == "__main__":
    main()
