# shellcheck shell=bash
# Set-up shared by bench/run.sh and bench/profile.sh (sourced, not run): logging, the
# process list stopped on exit, readiness polls, nginx instances from generated configs,
# the fake IdP and token-sidecar in reverse-proxy mode. Everything listens on 127.0.0.1.
#
# The caller sets BENCH_DIR, REPO, RESULTS (a directory for logs) and TMP (a private temp
# directory, removed on exit) before calling any function, and calls bench_init first.

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[bench %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

PIDS=()
# Functions the caller wants run on exit, before the processes are stopped.
ON_EXIT=()

bench_cleanup() {
    local rc=$? pid i f
    trap - EXIT INT TERM
    for f in "${ON_EXIT[@]}"; do "$f" || true; done
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
    # keep the nginx logs next to the results
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

# bench_init TOOL...: checks (or, as root, installs with apt-get) nginx, wrk, curl,
# python3 and the extra TOOLs; sets NGINX; installs the exit trap.
bench_init() {
    NGINX=$(command -v nginx || true)
    [[ -z $NGINX && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
    local missing=() t
    [[ -n $NGINX ]] || missing+=(nginx)
    for t in wrk curl python3 "$@"; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    if ((${#missing[@]})); then
        ((EUID == 0)) || die "missing ${missing[*]} and not root: install them first"
        log "installing ${missing[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
        NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    fi
    [[ -x $NGINX ]] || die "nginx not found after install"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ulimit -n 65536 2>/dev/null || true
}

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
    cat >"$dir/nginx.conf" <<NGINX
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
NGINX
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

# start_upstream PORT: the upstream, an nginx (1 worker) answering `200 ok`; sets UP_MASTER
start_upstream() {
    log "starting upstream nginx on 127.0.0.1:$1 (1 worker)"
    start_nginx upstream "    server {
        listen 127.0.0.1:$1;
        default_type text/plain;
        location / { return 200 \"ok\\n\"; }
        # for the injection check only: echoes the Authorization header it got
        location = /echo-auth { return 200 \"\$http_authorization\\n\"; }
    }"
    UP_MASTER=$LAST_PID
    wait_200 "http://127.0.0.1:$1/" "$UP_MASTER" upstream
}

# start_idp PORT [DELAY_MS]: the fake IdP (bench/fake_idp.py), answering after DELAY_MS,
# logging to $RESULTS/idp.log; sets IDP_PID
start_idp() {
    log "starting fake IdP on 127.0.0.1:$1"
    python3 "$BENCH_DIR/fake_idp.py" "$1" "${2:-0}" 2>"$RESULTS/idp.log" &
    IDP_PID=$!
    PIDS+=("$IDP_PID")
    wait_200 "http://127.0.0.1:$1/" "$IDP_PID" fake-idp
}

# sidecar_config FILE PORT IDP_PORT UP_PORT [WORKERS] [PREFETCH]: one route to the
# upstream, a provider on the fake IdP (prefetch unless PREFETCH is false), logs at warn
sidecar_config() {
    cat >"$1" <<YAML
listen: 127.0.0.1:$2
workers: ${5:-1}
log: { level: warn }
providers:
  bench:
    token_url: http://127.0.0.1:$3/token
    client_id: bench
    client_secret: bench-secret
    prefetch: ${6:-true}
routes:
  - name: bench
    provider: bench
    upstream: http://127.0.0.1:$4
YAML
}

# wait_port PORT PID NAME: poll until 127.0.0.1:PORT accepts a connection (max 30 s)
wait_port() {
    local i
    for i in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited during startup (see $RESULTS)"
        sleep 0.1
    done
    die "$3 did not listen on 127.0.0.1:$1 within 30 s"
}

# start_sidecar NAME BIN CONFIG [cold]: copies BIN into $TMP (so a concurrent `cargo build`
# can replace target/ freely), validates CONFIG, runs it until it answers 200 (with
# "cold": until it listens, sending no request, so that no token is fetched yet); sets
# LAST_PID
start_sidecar() {
    local name=$1 bin=$2 cfg=$3 port
    [[ -x $bin ]] || die "no $name binary at $bin"
    cp "$bin" "$TMP/token-sidecar-$name"
    "$TMP/token-sidecar-$name" validate -c "$cfg" >"$RESULTS/$name-validate.txt" 2>&1 \
        || { cat "$RESULTS/$name-validate.txt" >&2; die "$name config invalid"; }
    port=$(awk -F: '/^listen:/ { print $NF }' "$cfg")
    log "starting $name ($bin) on 127.0.0.1:$port"
    "$TMP/token-sidecar-$name" run -c "$cfg" >"$RESULTS/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    if [[ ${4:-} == cold ]]; then
        wait_port "$port" "$LAST_PID" "$name"
    else
        wait_200 "http://127.0.0.1:$port/" "$LAST_PID" "$name"
    fi
}
