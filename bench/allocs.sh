#!/usr/bin/env bash
# Heap allocations per proxied request: the same set-up as run.sh (fake IdP, nginx
# upstream, token-sidecar with `workers: 1`), `wrk` against the sidecar, and a perf
# uprobe on the C library's malloc counting the sidecar's calls meanwhile. Unlike req/s
# and CPU time this count does not depend on what else the machine is doing. Binaries
# built with another global allocator (jemalloc, mimalloc) do not call libc's malloc:
# the count is meaningless for them. See bench/README.md.
#
# Env: DURATION (3) CONNECTIONS (50) THREADS (2) SKIP_BUILD (0)
#      SIDECAR_BIN (target/release/token-sidecar), more binaries as arguments NAME=PATH
set -euo pipefail

DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

PERF=${PERF:-$(command -v perf || echo /usr/bin/perf)}
[[ -x $PERF ]] || die "no perf (Debian: apt-get install linux-perf)"
LIBC=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64|libc\.so\.6 .*aarch64/ { print $NF; exit }')
[[ -n $LIBC ]] || LIBC=$(ldconfig -p | awk '/libc\.so\.6/ { print $NF; exit }')

STAMP=allocs-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$STAMP
mkdir -p "$RESULTS"
TMP=$(mktemp -d /tmp/token-sidecar-allocs.XXXXXX)
bench_init

if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
fi
BINS=("sidecar=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/token-sidecar}" "$@")

# The uprobe is system-wide: added here only when missing, and then removed on exit.
if ! "$PERF" probe -l 2>/dev/null | grep -q 'probe_libc:malloc '; then
    "$PERF" probe -q -x "$LIBC" --add malloc >"$RESULTS/probe.txt" 2>&1 \
        || die "cannot add a uprobe on malloc in $LIBC (see $RESULTS/probe.txt)"
    remove_probe() { "$PERF" probe -q -d probe_libc:malloc >/dev/null 2>&1; }
    ON_EXIT+=(remove_probe)
fi

read -r UP_PORT IDP_PORT < <(python3 "$BENCH_DIR/free_ports.py" 2)
start_upstream "$UP_PORT"
start_idp "$IDP_PORT"
printf '%-12s %10s %10s %12s\n' target requests mallocs mallocs/req | tee "$RESULTS/summary.txt"
for spec in "${BINS[@]}"; do
    name=${spec%%=*}
    port=$(python3 "$BENCH_DIR/free_ports.py" 1)
    sidecar_config "$TMP/$name.yaml" "$port" "$IDP_PORT" "$UP_PORT"
    start_sidecar "$name" "${spec#*=}" "$TMP/$name.yaml"
    pid=$LAST_PID
    wrk -t"$THREADS" -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    "$PERF" stat -x, -e probe_libc:malloc -p "$pid" -o "$RESULTS/$name.stat" \
        -- sleep "$((DURATION + 1))" &
    stat_pid=$!
    sleep 0.3
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION"s "http://127.0.0.1:$port/" >"$RESULTS/$name.wrk" 2>&1
    wait "$stat_pid"
    requests=$(awk '/ requests in / { print $1 }' "$RESULTS/$name.wrk")
    mallocs=$(awk -F, '/probe_libc:malloc/ { print $1 }' "$RESULTS/$name.stat")
    awk -v n="$name" -v r="$requests" -v m="$mallocs" \
        'BEGIN { printf "%-12s %10s %10s %12.1f\n", n, r, m, m / r }' | tee -a "$RESULTS/summary.txt"
    kill -TERM "$pid" 2>/dev/null || true
done
