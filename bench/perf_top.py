#!/usr/bin/env python3
"""Summarises a `perf report --no-children --sort dso,sym -g none --stdio` text for
bench/profile.sh (stdlib only).

  perf_top.py REPORT_TXT [TOP]

Prints the self time by module, then the TOP (30) hottest symbols. A module is the
kernel, the C library, or for symbols of token-sidecar's binary the crate the (demangled)
symbol belongs to: token_sidecar, hyper, hyper_util, tokio, h2, http, bytes, std/core/alloc
(`std`), the allocator (glibc's malloc family, jemalloc or mimalloc: `allocator`), and
so on. Generic code is counted where it was instantiated only when the symbol names no
crate of its own (`<T as Trait>` is counted by T's crate).
"""

import collections
import re
import sys

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*?)\s*$")
ALLOC = re.compile(
    r"^(__libc_)?(malloc|free|calloc|realloc|cfree|_int_malloc|_int_free|_int_realloc|"
    r"malloc_consolidate|tcache_\w+|unlink_chunk|__rust_alloc|__rust_dealloc|__rust_realloc|"
    r"__rdl_\w+|_rjem_\w+|je_\w+|mi_\w+|_mi_\w+|mi_\w+)\b"
)
STD = {"std", "core", "alloc"}


def crate_of(sym):
    """The crate a demangled Rust symbol belongs to, or None."""
    s = sym.lstrip("<&*( ")
    s = re.sub(r"^(mut |dyn |const )+", "", s)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    return m.group(1) if m else None


def module(dso, kind, sym):
    if kind == "k" or dso.startswith("[kernel"):
        return "kernel"
    if ALLOC.match(sym) or "jemalloc" in sym or "tikv_jemalloc" in sym or "mimalloc" in sym:
        return "allocator"
    if dso.startswith("libc") or dso.startswith("ld-linux"):
        return "libc"
    if dso.startswith("[vdso]"):
        return "vdso (clock)"
    crate = crate_of(sym)
    if crate is None:
        return dso if not dso.startswith("token-sidecar") else "token-sidecar (other)"
    if crate in STD:
        return "std"
    return crate


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) == 3 else 30
    by_module = collections.Counter()
    symbols = []
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        mod = module(dso, kind, sym)
        by_module[mod] += pct
        symbols.append((pct, mod, sym))
    if not symbols:
        sys.exit(f"{sys.argv[1]}: no samples (is it a perf report --stdio text?)")
    print("self time by module")
    print(f"{'%':>7}  module")
    for mod, pct in by_module.most_common():
        if pct >= 0.05:
            print(f"{pct:7.2f}  {mod}")
    print()
    print(f"top {top} symbols (self time)")
    print(f"{'%':>7}  {'module':<14}  symbol")
    # One line per name: instantiations of one generic function are summed.
    merged = collections.Counter()
    for pct, mod, sym in symbols:
        merged[(mod, re.sub(r"::h[0-9a-f]{16}$", "", sym))] += pct
    for (mod, short), pct in merged.most_common(top):
        if len(short) > 110:
            short = short[:107] + "..."
        print(f"{pct:7.2f}  {mod:<14}  {short}")


if __name__ == "__main__":
    main()
