#!/usr/bin/env bash
# Loopback benchmark: upstream directly vs nginx (static bearer header) vs token-sidecar.
# See bench/README.md. Everything listens on 127.0.0.1 only; every load run is bounded.
#
# Env: ROUNDS (3) DURATION (10, seconds per run) CONNECTIONS (50) THREADS (2)
#      WARMUP (2, seconds per target) SKIP_BUILD (0) SIDECAR_BIN (target/release/token-sidecar)
#      BASELINE_BIN (unset): a second token-sidecar binary (say, built from an older commit),
#      measured as target "baseline" in the same interleaved rounds, for before/after numbers
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2}
SKIP_BUILD=${SKIP_BUILD:-0}

for v in ROUNDS DURATION CONNECTIONS THREADS WARMUP; do
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

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[bench %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- dependencies
NGINX=$(command -v nginx || true)
[[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
missing=()
[[ -n $NGINX ]] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    ((EUID == 0)) || die "missing ${missing[*]} and not root: install them first"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[[ -x $NGINX ]] || die "nginx not found after install"

# ---------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet)
fi
SIDECAR_BIN=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/token-sidecar}
[[ -x $SIDECAR_BIN ]] || die "no sidecar binary at $SIDECAR_BIN"

# ---------------------------------------------------------------- workspace
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$BENCH_DIR/results/$STAMP
mkdir -p "$RESULTS"
TMP=$(mktemp -d /tmp/token-sidecar-bench.XXXXXX)

PIDS=()
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # keep the generated configs and logs next to the results
    for d in "$TMP"/nginx-*; do
        if [[ -f $d/error.log ]]; then
            cp -f "$d/error.log" "$RESULTS/$(basename "$d").error.log" || true
        fi
    done
    rm -rf "$TMP"
    if ((rc != 0)); then
        log "failed (exit $rc); raw outputs and logs are in $RESULTS"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n 65536 2>/dev/null || true

# Free loopback ports: bind to port 0, note the port, close.
read -r UP_PORT NGX_PORT SC_PORT IDP_PORT BASE_PORT < <(python3 "$BENCH_DIR/free_ports.py" 5)
log "ports: upstream=$UP_PORT nginx=$NGX_PORT sidecar=$SC_PORT idp=$IDP_PORT"

CURL=(curl -s --noproxy '*' --max-time 5)
http_code() { "${CURL[@]}" -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true; }

# wait_200 URL PID NAME: poll until URL answers 200 (max 30 s) while PID lives
wait_200() {
    local url=$1 pid=$2 name=$3 i
    for i in $(seq 300); do
        [[ $(http_code "$url") == 200 ]] && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $RESULTS)"
        sleep 0.1
    done
    die "$name did not answer 200 on $url within 30 s"
}

# cpu_ticks PID...: utime+stime (all threads) summed over the processes, in clock ticks
cpu_ticks() {
    local total=0 p t
    for p in "$@"; do
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")
        total=$((total + t))
    done
    echo "$total"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# start_nginx NAME CONF_BODY: runs its own nginx master (daemon off) in $TMP/nginx-NAME
start_nginx() {
    local name=$1 body=$2 dir=$TMP/nginx-$1
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
$body
}
EOF
    cp "$dir/nginx.conf" "$RESULTS/nginx-$name.conf"
    "$NGINX" -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
        || die "nginx-$name: config test failed"
    "$NGINX" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$RESULTS/nginx-$name.out" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# nginx_worker MASTER_PID: the single worker's pid
nginx_worker() {
    local w i
    for i in $(seq 50); do
        w=$(pgrep -P "$1" | head -n1 || true)
        [[ -n $w ]] && { echo "$w"; return 0; }
        sleep 0.1
    done
    die "no nginx worker under master $1"
}

# ---------------------------------------------------------------- processes
STATIC_TOKEN=static-bench-token

log "starting upstream nginx on 127.0.0.1:$UP_PORT (1 worker)"
start_nginx upstream "    server {
        listen 127.0.0.1:$UP_PORT;
        default_type text/plain;
        location / { return 200 \"ok\\n\"; }
        # for the injection check only: echoes the Authorization header it got
        location = /echo-auth { return 200 \"\$http_authorization\\n\"; }
    }"
UP_MASTER=$LAST_PID
wait_200 "http://127.0.0.1:$UP_PORT/" "$UP_MASTER" upstream

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

log "starting fake IdP on 127.0.0.1:$IDP_PORT"
python3 "$BENCH_DIR/fake_idp.py" "$IDP_PORT" 2>"$RESULTS/idp.log" &
IDP_PID=$!
PIDS+=("$IDP_PID")
wait_200 "http://127.0.0.1:$IDP_PORT/" "$IDP_PID" fake-idp

SC_CFG=$TMP/sidecar.yaml
cat >"$SC_CFG" <<EOF
listen: 127.0.0.1:$SC_PORT
workers: 1
log: { level: warn }
providers:
  bench:
    token_url: http://127.0.0.1:$IDP_PORT/token
    client_id: bench
    client_secret: bench-secret
    prefetch: true
routes:
  - name: bench
    provider: bench
    upstream: http://127.0.0.1:$UP_PORT
EOF
cp "$SC_CFG" "$RESULTS/sidecar.yaml"
# A private copy, so a concurrent `cargo build` can replace target/release freely.
cp "$SIDECAR_BIN" "$TMP/token-sidecar"
"$TMP/token-sidecar" validate -c "$SC_CFG" >"$RESULTS/sidecar-validate.txt" 2>&1 \
    || { cat "$RESULTS/sidecar-validate.txt" >&2; die "sidecar config invalid"; }

log "starting token-sidecar on 127.0.0.1:$SC_PORT (workers: 1)"
"$TMP/token-sidecar" run -c "$SC_CFG" >"$RESULTS/sidecar.log" 2>&1 &
SC_PID=$!
PIDS+=("$SC_PID")
wait_200 "http://127.0.0.1:$SC_PORT/" "$SC_PID" token-sidecar

# ---------------------------------------------------------------- checks
TARGETS=(direct nginx sidecar)
declare -A URL=(
    [direct]="http://127.0.0.1:$UP_PORT"
    [nginx]="http://127.0.0.1:$NGX_PORT"
    [sidecar]="http://127.0.0.1:$SC_PORT"
)
declare -A CPU_PIDS=([direct]="" [nginx]="$NGX_MASTER $NGX_WORKER" [sidecar]="$SC_PID")
declare -A RSS_PID=([direct]="" [nginx]="$NGX_WORKER" [sidecar]="$SC_PID")

if [[ -n ${BASELINE_BIN:-} ]]; then
    [[ -x $BASELINE_BIN ]] || die "no baseline binary at $BASELINE_BIN"
    cp "$BASELINE_BIN" "$TMP/token-sidecar-baseline"
    sed "s/^listen: .*/listen: 127.0.0.1:$BASE_PORT/" "$SC_CFG" >"$TMP/baseline.yaml"
    log "starting the baseline token-sidecar on 127.0.0.1:$BASE_PORT (workers: 1)"
    "$TMP/token-sidecar-baseline" run -c "$TMP/baseline.yaml" >"$RESULTS/baseline.log" 2>&1 &
    BASE_PID=$!
    PIDS+=("$BASE_PID")
    wait_200 "http://127.0.0.1:$BASE_PORT/" "$BASE_PID" baseline
    TARGETS+=(baseline)
    URL[baseline]="http://127.0.0.1:$BASE_PORT"
    CPU_PIDS[baseline]=$BASE_PID
    RSS_PID[baseline]=$BASE_PID
fi

log "checking each target answers 200 and what Authorization the upstream receives"
for t in "${TARGETS[@]}"; do
    code=$(http_code "${URL[$t]}/")
    [[ $code == 200 ]] || die "$t answered $code, not 200"
done
auth_direct=$("${CURL[@]}" "${URL[direct]}/echo-auth")
auth_nginx=$("${CURL[@]}" "${URL[nginx]}/echo-auth")
auth_sidecar=$("${CURL[@]}" "${URL[sidecar]}/echo-auth")
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
    echo "wrk: $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
    echo "rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS threads=$THREADS warmup=${WARMUP}s"
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
