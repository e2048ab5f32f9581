#!/usr/bin/env bash
# Loopback benchmark: upstream directly vs nginx (static bearer header) vs token-sidecar.
# See bench/README.md. Everything listens on 127.0.0.1 only; every load run is bounded.
#
# Env: ROUNDS (3) DURATION (10, seconds per run) CONNECTIONS (50) THREADS (2)
#      WARMUP (2, seconds per target) SKIP_BUILD (0) SIDECAR_BIN (target/release/token-sidecar)
#      BASELINE_BIN (unset): a second token-sidecar binary (say, built from an older commit),
#      measured as target "baseline" in the same interleaved rounds, for before/after numbers
#      COMPARE (unset): "NAME=PATH ...", more token-sidecar binaries, measured as targets NAME
#      HAPROXY (1): also measure haproxy (static header, 1 thread) when it is installed
#      WORKERS (1): token-sidecar's `workers:` (every token-sidecar target)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2}
WORKERS=${WORKERS:-1}
SKIP_BUILD=${SKIP_BUILD:-0}

for v in ROUNDS DURATION CONNECTIONS THREADS WARMUP WORKERS; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "bench: $v must be a positive integer (got '${!v}')" >&2
        exit 2
    fi
done
if ((CONNECTIONS < THREADS)); then
    echo "bench: CONNECTIONS ($CONNECTIONS) must be >= THREADS ($THREADS)" >&2
    exit 2
fi

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$STAMP
mkdir -p "$RESULTS"
TMP=$(mktemp -d /tmp/token-sidecar-bench.XXXXXX)
bench_init

# ---------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
fi
SIDECAR_BIN=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/token-sidecar}
[[ -x $SIDECAR_BIN ]] || die "no sidecar binary at $SIDECAR_BIN"

# Free loopback ports: bind to port 0, note the port, close.
read -r UP_PORT NGX_PORT SC_PORT IDP_PORT < <(python3 "$BENCH_DIR/free_ports.py" 4)
log "ports: upstream=$UP_PORT nginx=$NGX_PORT sidecar=$SC_PORT idp=$IDP_PORT"

# ---------------------------------------------------------------- processes
STATIC_TOKEN=static-bench-token

start_upstream "$UP_PORT"

log "starting nginx reverse proxy on 127.0.0.1:$NGX_PORT (1 worker, upstream keepalive)"
start_nginx proxy "    upstream backend {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Authorization \"Bearer $STATIC_TOKEN\";
        }
    }"
NGX_MASTER=$LAST_PID
wait_200 "http://127.0.0.1:$NGX_PORT/" "$NGX_MASTER" nginx-proxy
NGX_WORKER=$(nginx_worker "$NGX_MASTER")

# haproxy, when installed (HAPROXY=0 leaves it out): the same static header, one thread.
HAPROXY_BIN=
if [[ ${HAPROXY:-1} == 1 ]]; then
    HAPROXY_BIN=$(command -v haproxy || true)
    [[ -z $HAPROXY_BIN && -x /usr/sbin/haproxy ]] && HAPROXY_BIN=/usr/sbin/haproxy
fi
if [[ -n $HAPROXY_BIN ]]; then
    HAP_PORT=$(python3 "$BENCH_DIR/free_ports.py" 1)
    cat >"$TMP/haproxy.cfg" <<HAP
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    option http-keep-alive
    http-reuse always
frontend bench
    bind 127.0.0.1:$HAP_PORT
    default_backend upstream
backend upstream
    http-request set-header Authorization "Bearer $STATIC_TOKEN"
    server up 127.0.0.1:$UP_PORT
HAP
    cp "$TMP/haproxy.cfg" "$RESULTS/haproxy.cfg"
    log "starting haproxy on 127.0.0.1:$HAP_PORT (1 thread, upstream keepalive)"
    "$HAPROXY_BIN" -db -f "$TMP/haproxy.cfg" >"$RESULTS/haproxy.log" 2>&1 &
    HAP_PID=$!
    PIDS+=("$HAP_PID")
    wait_200 "http://127.0.0.1:$HAP_PORT/" "$HAP_PID" haproxy
fi

start_idp "$IDP_PORT"

SC_CFG=$TMP/sidecar.yaml
sidecar_config "$SC_CFG" "$SC_PORT" "$IDP_PORT" "$UP_PORT" "$WORKERS"
cp "$SC_CFG" "$RESULTS/sidecar.yaml"
start_sidecar sidecar "$SIDECAR_BIN" "$SC_CFG"
SC_PID=$LAST_PID

# ---------------------------------------------------------------- checks
TARGETS=(direct nginx sidecar)
declare -A URL=(
    [direct]="http://127.0.0.1:$UP_PORT"
    [nginx]="http://127.0.0.1:$NGX_PORT"
    [sidecar]="http://127.0.0.1:$SC_PORT"
)
declare -A CPU_PIDS=([direct]="" [nginx]="$NGX_MASTER $NGX_WORKER" [sidecar]="$SC_PID")
declare -A RSS_PID=([direct]="" [nginx]="$NGX_WORKER" [sidecar]="$SC_PID")
if [[ -n $HAPROXY_BIN ]]; then
    TARGETS=(direct nginx haproxy sidecar)
    URL[haproxy]="http://127.0.0.1:$HAP_PORT"
    CPU_PIDS[haproxy]=$HAP_PID
    RSS_PID[haproxy]=$HAP_PID
fi

# More token-sidecar binaries, measured in the same interleaved rounds: BASELINE_BIN as
# target "baseline", and COMPARE="NAME=PATH ..." as targets NAME.
EXTRA=()
[[ -n ${BASELINE_BIN:-} ]] && EXTRA+=("baseline=$BASELINE_BIN")
for spec in ${COMPARE:-}; do
    [[ $spec =~ ^[a-z][a-z0-9_-]{0,15}=.+$ ]] || die "COMPARE: '$spec' is not NAME=PATH (NAME: a-z0-9_-)"
    EXTRA+=("$spec")
done
for spec in "${EXTRA[@]}"; do
    name=${spec%%=*}
    [[ -z ${URL[$name]:-} ]] || die "COMPARE: target name '$name' is taken"
    port=$(python3 "$BENCH_DIR/free_ports.py" 1)
    sidecar_config "$TMP/$name.yaml" "$port" "$IDP_PORT" "$UP_PORT" "$WORKERS"
    start_sidecar "$name" "${spec#*=}" "$TMP/$name.yaml"
    TARGETS+=("$name")
    URL[$name]="http://127.0.0.1:$port"
    CPU_PIDS[$name]=$LAST_PID
    RSS_PID[$name]=$LAST_PID
done

log "checking each target answers 200 and what Authorization the upstream receives"
for t in "${TARGETS[@]}"; do
    code=$(http_code "${URL[$t]}/")
    [[ $code == 200 ]] || die "$t answered $code, not 200"
done
auth_direct=$("${CURL[@]}" "${URL[direct]}/echo-auth")
auth_nginx=$("${CURL[@]}" "${URL[nginx]}/echo-auth")
auth_sidecar=$("${CURL[@]}" "${URL[sidecar]}/echo-auth")
if [[ -n $HAPROXY_BIN ]]; then
    auth_haproxy=$("${CURL[@]}" "${URL[haproxy]}/echo-auth")
    [[ $auth_haproxy == "Bearer $STATIC_TOKEN" ]] || die "haproxy did not inject its header (got '$auth_haproxy')"
fi
issued=$(awk '/^issued / { print $2 }' "$RESULTS/idp.log")
[[ -z $auth_direct ]] || die "direct request unexpectedly carried Authorization: $auth_direct"
[[ $auth_nginx == "Bearer $STATIC_TOKEN" ]] || die "nginx did not inject its header (got '$auth_nginx')"
[[ $auth_sidecar =~ ^Bearer\ bench-token-[0-9a-f]{32}$ ]] \
    || die "token-sidecar did not inject a token from the fake IdP (got '$auth_sidecar')"
grep -qxF "${auth_sidecar#Bearer }" <<<"$issued" \
    || die "token-sidecar injected '$auth_sidecar', which the IdP never issued"
log "  ok: direct=none, nginx='Bearer $STATIC_TOKEN', sidecar='Bearer bench-token-…' (the IdP's)"

{
    echo "date: $(date -Is)"
    echo "git: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo '?') ($(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) changed paths)"
    echo "kernel: $(uname -r)   cpus: $(nproc)"
    echo "nginx: $("$NGINX" -v 2>&1)"
    [[ -z $HAPROXY_BIN ]] || echo "haproxy: $("$HAPROXY_BIN" -v 2>&1 | head -n1)"
    echo "wrk: $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
    echo "rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS threads=$THREADS warmup=${WARMUP}s workers=$WORKERS"
    for t in "${TARGETS[@]}"; do echo "url[$t]=${URL[$t]}/"; done
} >"$RESULTS/meta.txt"

# ---------------------------------------------------------------- load
run_wrk() { # run_wrk SECONDS URL OUTFILE
    timeout $(($1 + 30)) wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$1"s --timeout 5s "$2" >"$3" 2>&1 \
        || die "wrk failed against $2 (see $3)"
}

for t in "${TARGETS[@]}"; do
    log "warm-up $t (${WARMUP}s)"
    run_wrk "$WARMUP" "${URL[$t]}/" "$RESULTS/warmup-$t.txt"
done

ROUNDS_TSV=$RESULTS/rounds.tsv
printf '# target\tround\trps\trequests\tp50_us\tp99_us\tnon2xx\tsocket_errors\tproxy_cpu_ticks\n' >"$ROUNDS_TSV"
total=$((ROUNDS * ${#TARGETS[@]} * DURATION))
log "measuring: $ROUNDS rounds x ${#TARGETS[@]} targets x ${DURATION}s (~${total}s), interleaved"
for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#TARGETS[@]}; k++)); do
        # rotate the order each round so no target always runs first
        t=${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}
        out=$RESULTS/wrk-$t-r$r.txt
        pids=${CPU_PIDS[$t]}
        before=-
        # shellcheck disable=SC2086
        [[ -n $pids ]] && before=$(cpu_ticks $pids)
        run_wrk "$DURATION" "${URL[$t]}/" "$out"
        ticks=-
        # shellcheck disable=SC2086
        [[ -n $pids ]] && ticks=$(($(cpu_ticks $pids) - before))
        parsed=$(python3 "$BENCH_DIR/summarize.py" parse "$out")
        printf '%s\t%s\t%s\t%s\n' "$t" "$r" "$parsed" "$ticks" >>"$ROUNDS_TSV"
        read -r rps _ p50 p99 non2xx sockerr <<<"$parsed"
        log "  round $r/$ROUNDS  $(printf '%-8s' "$t") ${rps} req/s  p50=${p50}us p99=${p99}us  cpu_ticks=$ticks  non2xx=$non2xx sockerr=$sockerr"
    done
done

# ---------------------------------------------------------------- report
RSS_TSV=$RESULTS/rss.tsv
: >"$RSS_TSV"
for t in "${TARGETS[@]}"; do
    p=${RSS_PID[$t]}
    printf '%s\t%s\n' "$t" "$([[ -n $p ]] && rss_kib "$p" || echo -)" >>"$RSS_TSV"
done
echo "nginx master VmRSS (not in the table): $(rss_kib "$NGX_MASTER") kB" >>"$RESULTS/meta.txt"
idp_calls=$(grep -c '^issued ' "$RESULTS/idp.log" || true)
echo "tokens issued by the fake IdP: $idp_calls" >>"$RESULTS/meta.txt"
kill -0 "$SC_PID" 2>/dev/null || die "token-sidecar died during the run"

{
    echo
    echo "token-sidecar bench: $ROUNDS rounds x ${DURATION}s, wrk -t$THREADS -c$CONNECTIONS, $(nproc) CPUs, loopback"
    echo "(req/s, p50, p99, CPU: median over rounds; errors: non-2xx + socket errors summed; RSS after the run)"
    echo
    python3 "$BENCH_DIR/summarize.py" table "$ROUNDS_TSV" "$RSS_TSV" "$(getconf CLK_TCK)"
    echo
    echo "nginx CPU = master+worker, RSS = worker; token-sidecar: whole process. IdP token requests: $idp_calls"
    echo "raw outputs: $RESULTS"
} | tee "$RESULTS/summary.txt"
ln -sfn "$STAMP" "$BENCH_DIR/results/latest"
