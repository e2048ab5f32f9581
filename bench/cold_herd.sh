#!/usr/bin/env bash
# A cold herd: N (1000) apps' first requests reach a token-sidecar that has no token yet
# (`prefetch: false`), all at once, on N connections. Reports how many token requests the
# fake IdP got (single flight: 1) and the herd's latency (p50/p90/p99/max), per round, each
# round with a fresh sidecar. The fake IdP answers after IDP_DELAY_MS (50), like a real one
# across a network. See bench/README.md.
#
# Env: N (1000) ROUNDS (3) IDP_DELAY_MS (50) SKIP_BUILD (0) WORKERS (1)
#      SIDECAR_BIN (target/release/token-sidecar)
set -euo pipefail

N=${N:-1000}
ROUNDS=${ROUNDS:-3}
IDP_DELAY_MS=${IDP_DELAY_MS:-50}
SKIP_BUILD=${SKIP_BUILD:-0}
for v in N ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "cold_herd: $v must be a positive integer" >&2; exit 2; }
done
[[ $IDP_DELAY_MS =~ ^[0-9]+$ ]] || { echo "cold_herd: IDP_DELAY_MS must be an integer" >&2; exit 2; }

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

STAMP=herd-$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$STAMP
mkdir -p "$RESULTS"
TMP=$(mktemp -d /tmp/token-sidecar-herd.XXXXXX)
bench_init

if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
fi
SIDECAR_BIN=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/token-sidecar}

read -r UP_PORT IDP_PORT < <(python3 "$BENCH_DIR/free_ports.py" 2)
start_upstream "$UP_PORT"
start_idp "$IDP_PORT" "$IDP_DELAY_MS"
for ((r = 1; r <= ROUNDS; r++)); do
    port=$(python3 "$BENCH_DIR/free_ports.py" 1)
    sidecar_config "$TMP/herd-$r.yaml" "$port" "$IDP_PORT" "$UP_PORT" "${WORKERS:-1}" false
    before=$(grep -c '^issued ' "$RESULTS/idp.log" || true)
    start_sidecar "herd-$r" "$SIDECAR_BIN" "$TMP/herd-$r.yaml" cold
    pid=$LAST_PID
    line=$(python3 "$BENCH_DIR/cold_herd.py" "$port" "$N")
    after=$(grep -c '^issued ' "$RESULTS/idp.log" || true)
    echo "round $r: n=$N idp_requests=$((after - before)) $line" | tee -a "$RESULTS/summary.txt"
    kill -TERM "$pid" 2>/dev/null || true
done
echo "fake IdP delay ${IDP_DELAY_MS} ms; raw: $RESULTS" | tee -a "$RESULTS/summary.txt"
