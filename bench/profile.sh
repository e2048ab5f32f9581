#!/usr/bin/env bash
# Where token-sidecar's time goes under the bench load: the same set-up as run.sh (fake
# IdP, nginx upstream, token-sidecar with `workers: 1` in reverse-proxy mode), `wrk`
# against the sidecar, and `perf record -g` of the sidecar process meanwhile. Prints the
# time by module (kernel, libc, the allocator, token_sidecar, hyper, tokio, ...) and the
# top symbols. See bench/README.md.
#
# Env: DURATION (10, seconds recorded) WARMUP (2) CONNECTIONS (50) THREADS (2) WORKERS (1)
#      TOP (30, symbols listed) FREQ (999, samples per second) SKIP_BUILD (0)
#      SIDECAR_BIN (target/profiling/token-sidecar: the release build with line tables)
#      PERF (perf on PATH, else /usr/bin/perf)
#      CALLGRAPH (fp): perf's --call-graph; "dwarf" finds the callers of leaf functions
#      (memmove, malloc) in code built without frame pointers, at a higher recording cost
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-1}
TOP=${TOP:-30}
FREQ=${FREQ:-999}
SKIP_BUILD=${SKIP_BUILD:-0}
CALLGRAPH=${CALLGRAPH:-fp}

for v in DURATION WARMUP CONNECTIONS THREADS WORKERS TOP FREQ; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "profile: $v must be a positive integer (got '${!v}')" >&2
        exit 2
    fi
done

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

PERF=${PERF:-$(command -v perf || echo /usr/bin/perf)}
[[ -x $PERF ]] || die "no perf (Debian: apt-get install linux-perf)"

STAMP=profile-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$STAMP
mkdir -p "$RESULTS"
TMP=$(mktemp -d /tmp/token-sidecar-profile.XXXXXX)
bench_init

if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --profile profiling)"
    (cd "$REPO" && cargo build --profile profiling --quiet)
fi
SIDECAR_BIN=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/profiling/token-sidecar}

read -r UP_PORT SC_PORT IDP_PORT < <(python3 "$BENCH_DIR/free_ports.py" 3)
start_upstream "$UP_PORT"
start_idp "$IDP_PORT"
sidecar_config "$TMP/sidecar.yaml" "$SC_PORT" "$IDP_PORT" "$UP_PORT" "$WORKERS"
cp "$TMP/sidecar.yaml" "$RESULTS/sidecar.yaml"
start_sidecar sidecar "$SIDECAR_BIN" "$TMP/sidecar.yaml"
SC_PID=$LAST_PID
URL=http://127.0.0.1:$SC_PORT/

log "warm-up (${WARMUP}s)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP"s "$URL" >"$RESULTS/warmup.txt" 2>&1 \
    || die "wrk failed (see $RESULTS/warmup.txt)"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "recording ${DURATION}s of token-sidecar (pid $SC_PID) under wrk -t$THREADS -c$CONNECTIONS"
# cpu-clock works in VMs without hardware counters; call chains (frame pointers unless
# CALLGRAPH says otherwise) do not change the self time per symbol the summary uses.
"$PERF" record -e cpu-clock -F "$FREQ" --call-graph "$CALLGRAPH" -p "$SC_PID" -o "$RESULTS/perf.data" \
    -- sleep "$((DURATION + 1))" >"$RESULTS/perf-record.txt" 2>&1 &
PERF_PID=$!
PIDS+=("$PERF_PID")
sleep 0.5
timeout $((DURATION + 30)) wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION"s "$URL" \
    >"$RESULTS/wrk.txt" 2>&1 || die "wrk failed (see $RESULTS/wrk.txt)"
wait "$PERF_PID" || die "perf record failed (see $RESULTS/perf-record.txt)"
kill -0 "$SC_PID" 2>/dev/null || die "token-sidecar died during the run"

"$PERF" report -i "$RESULTS/perf.data" --no-children --sort dso,sym -g none \
    --percent-limit 0 --stdio 2>/dev/null >"$RESULTS/perf-report.txt" \
    || die "perf report failed"
{
    echo "token-sidecar profile: $(python3 "$BENCH_DIR/summarize.py" parse "$RESULTS/wrk.txt" \
        | awk '{ printf "%.0f req/s, p99 %.0f us", $1, $4 }'), ${DURATION}s, wrk -t$THREADS -c$CONNECTIONS, workers: $WORKERS"
    echo "binary: $SIDECAR_BIN ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "load average before the recording: $LOAD_BEFORE"
    echo
    python3 "$BENCH_DIR/perf_top.py" "$RESULTS/perf-report.txt" "$TOP"
    echo
    echo "raw: $RESULTS (perf.data: perf report -i $RESULTS/perf.data)"
} | tee "$RESULTS/summary.txt"
