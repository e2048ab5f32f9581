#!/usr/bin/env bash
# Fleet benchmark (issue 11): one redis-server and N token-sidecar processes on loopback,
# with and without token_store. Reports IdP requests at cold start and per token
# lifetime, RSS per sidecar, the first request's latency, and req/s through one sidecar
# with the store configured versus without (wrk, interleaved rounds).
#
# Env: N (50) TTL (20, token lifetime in s) LIFETIMES (2) ROUNDS (3) DURATION (10)
#      CONNECTIONS (50) THREADS (2) SKIP_BUILD (0) SIDECAR_BIN (target/release/token-sidecar)
#      HOT_ONLY (0): 1 measures only the hot path (phase 3)
set -euo pipefail

N=${N:-50}
TTL=${TTL:-20}
LIFETIMES=${LIFETIMES:-2}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
for v in N TTL LIFETIMES ROUNDS DURATION CONNECTIONS THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "fleet: $v must be a positive integer" >&2; exit 2; }
done

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
log() { printf '[fleet %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in wrk curl python3 redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
[[ -x $NGINX ]] || die "nginx is needed"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
fi
SIDECAR_BIN=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/token-sidecar}
[[ -x $SIDECAR_BIN ]] || die "no sidecar binary at $SIDECAR_BIN"

TMP=$(mktemp -d /tmp/token-sidecar-fleet.XXXXXX)
PIDS=()
SIDECARS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${SIDECARS[@]}" "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SIDECARS[@]}" "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n 65536 2>/dev/null || true

read -r -a PORTS < <(python3 "$BENCH_DIR/free_ports.py" $((3 + 2 * N + 4)))
REDIS_PORT=${PORTS[0]} IDP_PORT=${PORTS[1]} UP_PORT=${PORTS[2]}
CURL=(curl -s --noproxy '*' --max-time 10)
http_code() { "${CURL[@]}" -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true; }
wait_200() {
    local i
    for i in $(seq 300); do
        [[ $(http_code "$1") == 200 ]] && return 0
        sleep 0.1
    done
    die "$1 did not answer 200 within 30 s"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
issued() { grep -c '^issued' "$TMP/idp.log" || true; }

# ------------------------------------------------------------- shared processes
log "redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$TMP" --logfile "$TMP/redis.log" --daemonize no &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

log "fake IdP on 127.0.0.1:$IDP_PORT (tokens live ${TTL}s)"
FAKE_IDP_TTL=$TTL python3 "$BENCH_DIR/fake_idp.py" "$IDP_PORT" 2>"$TMP/idp.log" &
PIDS+=($!)
wait_200 "http://127.0.0.1:$IDP_PORT/"

mkdir -p "$TMP/nginx/tmp"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok\n"; } }
}
EOF
"$NGINX" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" &
PIDS+=($!)
wait_200 "http://127.0.0.1:$UP_PORT/"

KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
# config FILE PROXY_PORT ADMIN_PORT WITH_STORE
config() {
    cat >"$1" <<EOF
listen: 127.0.0.1:$2
admin_listen: 127.0.0.1:$3
log: { level: warn }
workers: 1
providers:
  bench:
    token_url: http://127.0.0.1:$IDP_PORT/token
    client_id: bench-client
    client_secret: bench-secret
routes:
  - match: { path_prefix: / }
    provider: bench
    upstream: http://127.0.0.1:$UP_PORT
EOF
    if [[ $4 == 1 ]]; then
        cat >>"$1" <<EOF
token_store:
  redis: { url: "redis://127.0.0.1:$REDIS_PORT/0" }
  encryption_key: "$KEY"
EOF
    fi
}

# start_fleet WITH_STORE: N sidecars on ports[3..], healthy
start_fleet() {
    local i pp ap
    SIDECARS=()
    for ((i = 0; i < N; i++)); do
        pp=${PORTS[3 + 2 * i]} ap=${PORTS[4 + 2 * i]}
        config "$TMP/sc-$i.yaml" "$pp" "$ap" "$1"
        "$SIDECAR_BIN" run -c "$TMP/sc-$i.yaml" 2>>"$TMP/sc-$i.log" &
        SIDECARS+=($!)
    done
    for ((i = 0; i < N; i++)); do wait_200 "http://127.0.0.1:${PORTS[4 + 2 * i]}/healthz"; done
}
stop_fleet() {
    local pid
    for pid in "${SIDECARS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SIDECARS[@]}"; do wait "$pid" 2>/dev/null || true; done
    SIDECARS=()
}

# one_phase WITH_STORE LABEL: prints "label cold per_lifetime rss_kib first_ms_p50 first_ms_max"
one_phase() {
    local with=$1 label=$2 before cold during rss i
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    start_fleet "$with"
    sleep 1 # let every store connect
    before=$(issued)
    # The cold herd: every sidecar's first request at once, like a rollout.
    for ((i = 0; i < N; i++)); do echo "http://127.0.0.1:${PORTS[3 + 2 * i]}/x"; done \
        | xargs -P "$N" -n 1 "${CURL[@]}" -o /dev/null -w '%{http_code} %{time_total}\n' \
        >"$TMP/first-$label.txt"
    cold=$(($(issued) - before))
    local failed
    failed=$(awk '$1 != 200' "$TMP/first-$label.txt" | wc -l)
    ((failed == 0)) || log "$label: $failed first requests failed"
    # Steady state: background refresh for LIFETIMES token lifetimes.
    before=$(issued)
    sleep $((TTL * LIFETIMES))
    during=$(($(issued) - before))
    rss=0
    for pid in "${SIDECARS[@]}"; do rss=$((rss + $(rss_kib "$pid"))); done
    python3 - "$TMP/first-$label.txt" "$label" "$cold" "$during" "$LIFETIMES" "$rss" "$N" <<'PY'
import sys
path, label, cold, during, lifetimes, rss, n = sys.argv[1:]
ms = sorted(float(l.split()[1]) * 1000 for l in open(path) if l.strip())
p50 = ms[len(ms) // 2]
print(f"{label:9} cold={cold:>3}  per_lifetime={int(during) / int(lifetimes):6.1f}  "
      f"rss_per_sidecar={int(rss) / int(n) / 1024:5.1f}MiB  first_request_p50={p50:6.1f}ms  max={ms[-1]:6.1f}ms")
PY
    stop_fleet
}

log "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
WITHOUT="" WITH=""
if [[ ${HOT_ONLY:-0} != 1 ]]; then
    log "phase 1/3: $N sidecars without the store"
    WITHOUT=$(one_phase 0 no-store)
    log "phase 2/3: $N sidecars with the store"
    WITH=$(one_phase 1 store)
fi

# ------------------------------------------------------------- hot path
log "phase 3/3: req/s through one sidecar, store vs none (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s x $ROUNDS rounds)"
HP=(${PORTS[$((3 + 2 * N))]} ${PORTS[$((4 + 2 * N))]} ${PORTS[$((5 + 2 * N))]} ${PORTS[$((6 + 2 * N))]})
config "$TMP/hot-none.yaml" "${HP[0]}" "${HP[1]}" 0
config "$TMP/hot-store.yaml" "${HP[2]}" "${HP[3]}" 1
"$SIDECAR_BIN" run -c "$TMP/hot-none.yaml" 2>"$TMP/hot-none.log" & PIDS+=($!)
"$SIDECAR_BIN" run -c "$TMP/hot-store.yaml" 2>"$TMP/hot-store.log" & PIDS+=($!)
wait_200 "http://127.0.0.1:${HP[0]}/x"
wait_200 "http://127.0.0.1:${HP[2]}/x"
rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$1/x" | awk '/^Requests\/sec/ { print $2 }'; }
NONE=() STORE=()
for ((r = 1; r <= ROUNDS; r++)); do
    NONE+=("$(rps "${HP[0]}")")
    STORE+=("$(rps "${HP[2]}")")
    log "round $r: none ${NONE[-1]} req/s, store ${STORE[-1]} req/s"
done
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "fleet of $N sidecars, tokens of ${TTL}s, $(nproc) CPUs (load $(cut -d' ' -f1 /proc/loadavg))"
[[ -z $WITHOUT ]] || echo "$WITHOUT"
[[ -z $WITH ]] || echo "$WITH"
python3 - "${NONE[*]}" "${STORE[*]}" <<'PY'
import statistics, sys
none = [float(x) for x in sys.argv[1].split()]
store = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(none), statistics.median(store)
print(f"hot path  none={a:9.0f} req/s  store={b:9.0f} req/s  store/none={b / a * 100:5.1f}%  "
      f"(medians of {len(none)} interleaved rounds; none {none}, store {store})")
PY
