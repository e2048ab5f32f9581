#!/usr/bin/env python3
"""Helpers for bench/run.sh (stdlib only).

  summarize.py parse WRK_OUTPUT_FILE
      Prints one tab-separated line from a `wrk --latency` output:
      rps  requests  p50_us  p99_us  non2xx  socket_errors

  summarize.py table ROUNDS_TSV RSS_TSV CLK_TCK
      Prints the final table. ROUNDS_TSV has one line per (target, round):
      target round rps requests p50_us p99_us non2xx sockerr cpu_ticks
      (cpu_ticks is "-" for a target without a proxy process). RSS_TSV has
      target, rss_kib ("-" when there is no proxy process).
"""

import re
import statistics
import sys

UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * UNITS_US[m.group(2)]


def parse(path):
    text = open(path, encoding="utf-8", errors="replace").read()

    def need(pattern):
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise SystemExit(f"{path}: no match for {pattern!r} in wrk output")
        return m

    rps = float(need(r"^Requests/sec:\s+([0-9.]+)").group(1))
    requests = int(need(r"^\s*(\d+) requests in ").group(1))
    p50 = to_us(need(r"^\s*50%\s+(\S+)").group(1))
    p99 = to_us(need(r"^\s*99%\s+(\S+)").group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    sockerr = sum(int(g) for g in m.groups()) if m else 0
    print(f"{rps:.2f}\t{requests}\t{p50:.1f}\t{p99:.1f}\t{non2xx}\t{sockerr}")


def fmt_us(us):
    if us >= 10_000:
        return f"{us / 1000:.1f}ms"
    if us >= 1000:
        return f"{us / 1000:.2f}ms"
    return f"{us:.0f}us"


def table(rounds_path, rss_path, clk_tck):
    clk_tck = float(clk_tck)
    rows = {}
    order = []
    for line in open(rounds_path, encoding="utf-8"):
        if not line.strip() or line.startswith("#"):
            continue
        target, rnd, rps, requests, p50, p99, non2xx, sockerr, ticks = line.split("\t")
        if target not in rows:
            rows[target] = []
            order.append(target)
        cpu_us_per_req = None
        if ticks.strip() != "-" and int(requests) > 0:
            cpu_us_per_req = int(ticks) / clk_tck * 1e6 / int(requests)
        rows[target].append(
            dict(
                rps=float(rps),
                p50=float(p50),
                p99=float(p99),
                errors=int(non2xx) + int(sockerr),
                cpu=cpu_us_per_req,
                round=rnd,
            )
        )
    rss = {}
    for line in open(rss_path, encoding="utf-8"):
        if line.strip():
            target, kib = line.split("\t")
            rss[target] = kib.strip()

    # Ratios to nginx of the same round (the machine's drift hits both), median over rounds.
    ref = {r["round"]: r for r in rows.get("nginx", [])}

    def vs_nginx(rs, key):
        ratios = [
            r[key] / ref[r["round"]][key]
            for r in rs
            if r["round"] in ref and r[key] and ref[r["round"]][key]
        ]
        return f"{statistics.median(ratios):.2f}" if ratios else "-"

    header = [
        "target", "req/s", "req/s min..max", "x nginx", "p50", "p99",
        "CPU us/req", "x nginx", "RSS MiB", "errors",
    ]
    out = [header]
    for target in order:
        rs = rows[target]
        med_rps = statistics.median(r["rps"] for r in rs)
        cpus = [r["cpu"] for r in rs if r["cpu"] is not None]
        kib = rss.get(target, "-")
        out.append(
            [
                target,
                f"{med_rps:,.0f}",
                f"{min(r['rps'] for r in rs):,.0f}..{max(r['rps'] for r in rs):,.0f}",
                vs_nginx(rs, "rps"),
                fmt_us(statistics.median(r["p50"] for r in rs)),
                fmt_us(statistics.median(r["p99"] for r in rs)),
                f"{statistics.median(cpus):.1f}" if cpus else "-",
                vs_nginx(rs, "cpu"),
                f"{int(kib) / 1024:.1f}" if kib not in ("-", "") else "-",
                str(sum(r["errors"] for r in rs)),
            ]
        )
    widths = [max(len(row[i]) for row in out) for i in range(len(header))]
    for n, row in enumerate(out):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "parse":
        parse(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
