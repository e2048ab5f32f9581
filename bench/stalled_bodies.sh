#!/usr/bin/env bash
# Stalled-body attack (issue 10, "Memory"): the sidecar's RSS while CONNECTIONS clients
# each send a replayable 1 MiB body minus its last byte and then stall. Not a test: a
# measurement to report. Everything on 127.0.0.1; bounded in count and time; stops
# everything it started on exit. See bench/README.md, "Stalled bodies".
#
# Env: CONNECTIONS (150) ROUNDS (3) BODY_TIMEOUT (5, seconds: limits.body_read_timeout)
#      SEND_DEADLINE (30, seconds per round to send the bodies) SKIP_BUILD (0)
#      SIDECAR_BIN (target/release/token-sidecar)
#
# The route has `max_replay_body: 1MiB`, so every body qualifies for the replay buffer.
# With `limits:` in the config (issue 10), body_read_timeout should cut the stalled
# connections off (408) and the replay budget (max_buffered_bodies, 64 MiB) should cap
# the peak. A binary that does not know `limits:` yet is measured without it, and the
# script says so: that run is the "before" figure.
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-150}
ROUNDS=${ROUNDS:-3}
BODY_TIMEOUT=${BODY_TIMEOUT:-5}
SEND_DEADLINE=${SEND_DEADLINE:-30}
SKIP_BUILD=${SKIP_BUILD:-0}

for v in CONNECTIONS ROUNDS BODY_TIMEOUT SEND_DEADLINE; do
    if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
        echo "stalled_bodies: $v must be a positive integer (got '${!v}')" >&2
        exit 2
    fi
done
((CONNECTIONS <= 1000)) || { echo "stalled_bodies: CONNECTIONS is capped at 1000" >&2; exit 2; }
((ROUNDS <= 20)) || { echo "stalled_bodies: ROUNDS is capped at 20" >&2; exit 2; }

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '[stalled %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[stalled %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building token-sidecar (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet --bin token-sidecar)
fi
SIDECAR_BIN=${SIDECAR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/token-sidecar}
[[ -x $SIDECAR_BIN ]] || die "no sidecar binary at $SIDECAR_BIN"

TMP=$(mktemp -d /tmp/token-sidecar-stalled.XXXXXX)
PIDS=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((rc != 0)) && [[ -f $TMP/sidecar.log ]]; then
        log "sidecar log (last lines):"
        tail -n 20 "$TMP/sidecar.log" >&2 || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Client sockets + the sidecar's side + its upstream connections.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

read -r UP_PORT SC_PORT ADMIN_PORT IDP_PORT < <(python3 "$BENCH_DIR/free_ports.py" 4)

# ---------------------------------------------------------------- fakes
log "fake IdP on 127.0.0.1:$IDP_PORT, fake upstream on 127.0.0.1:$UP_PORT"
python3 "$BENCH_DIR/fake_idp.py" "$IDP_PORT" 2>"$TMP/idp.log" &
PIDS+=($!)
# The upstream reads whatever body reaches it (bodies past the replay budget stream
# through) and answers 200; it never sees a complete body in this attack.
python3 - "$UP_PORT" >"$TMP/upstream.log" 2>&1 <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120
    def do_POST(self):
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    do_GET = do_POST
    def log_message(self, *a):
        pass

# The default backlog of 5 would refuse most of the proxy's concurrent connections.
ThreadingHTTPServer.request_queue_size = 1024
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
s.daemon_threads = True
s.serve_forever()
EOF
PIDS+=($!)
for url in "http://127.0.0.1:$IDP_PORT/" "http://127.0.0.1:$UP_PORT/"; do
    for _ in $(seq 100); do
        curl -s --noproxy '*' --max-time 1 -o /dev/null "$url" 2>/dev/null && break
        sleep 0.1
    done
    curl -s --noproxy '*' --max-time 1 -o /dev/null "$url" || die "no answer from $url"
done

# ---------------------------------------------------------------- sidecar config
config() {
    cat <<EOF
listen: 127.0.0.1:$SC_PORT
admin_listen: 127.0.0.1:$ADMIN_PORT
log: { format: text, level: warn }
workers: 2
$1
providers:
  bench:
    token_url: http://127.0.0.1:$IDP_PORT/token
    client_id: bench
    client_secret: bench-secret
    prefetch: true
routes:
  - name: upload
    match: { path_prefix: /upload }
    provider: bench
    upstream: http://127.0.0.1:$UP_PORT
    max_replay_body: 1MiB
EOF
}
config "limits: { body_read_timeout: ${BODY_TIMEOUT}s }" >"$TMP/proxy.yaml"
if "$SIDECAR_BIN" validate -c "$TMP/proxy.yaml" >"$TMP/validate.out" 2>&1; then
    LIMITS="body_read_timeout ${BODY_TIMEOUT}s"
elif grep -q 'unknown field `limits`' "$TMP/validate.out"; then
    log "this binary does not know \`limits:\` yet (issue 10): measuring without it;"
    log "the 'timeout' column is then just ${BODY_TIMEOUT}+2 s later"
    config "" >"$TMP/proxy.yaml"
    LIMITS="none (binary has no limits:)"
    "$SIDECAR_BIN" validate -c "$TMP/proxy.yaml" >"$TMP/validate.out" 2>&1 \
        || die "config refused: $(cat "$TMP/validate.out")"
else
    die "config refused: $(cat "$TMP/validate.out")"
fi

log "starting $SIDECAR_BIN on 127.0.0.1:$SC_PORT (admin $ADMIN_PORT)"
"$SIDECAR_BIN" run -c "$TMP/proxy.yaml" >"$TMP/sidecar.log" 2>&1 &
SC_PID=$!
PIDS=("$SC_PID" "${PIDS[@]}")
for _ in $(seq 300); do
    [[ $(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null || true) == 200 ]] && break
    kill -0 "$SC_PID" 2>/dev/null || die "the sidecar exited during start-up"
    sleep 0.1
done
[[ $(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$ADMIN_PORT/readyz") == 200 ]] || die "the sidecar is not ready after 30 s"
# One complete upload first, so the route, the token and the upstream are known to work.
code=$(head -c 1048576 /dev/zero | curl -s --noproxy '*' --max-time 10 -o /dev/null \
    -w '%{http_code}' --data-binary @- -H 'Content-Type: application/octet-stream' \
    "http://127.0.0.1:$SC_PORT/upload")
[[ $code == 200 ]] || die "a complete 1 MiB upload through the sidecar got $code, not 200"

# ---------------------------------------------------------------- rounds
log "$ROUNDS rounds x $CONNECTIONS connections, 1 MiB - 1 byte each; limits: $LIMITS"
ROWS=()
for r in $(seq "$ROUNDS"); do
    kill -0 "$SC_PID" 2>/dev/null || die "the sidecar died before round $r"
    row=$(timeout $((SEND_DEADLINE + BODY_TIMEOUT + 30)) python3 "$BENCH_DIR/stalled_clients.py" \
        "$SC_PID" "$SC_PORT" "$CONNECTIONS" "$BODY_TIMEOUT" "$SEND_DEADLINE" "$r") \
        || die "round $r failed"
    log "round $r: $row"
    ROWS+=("$row")
done
kill -0 "$SC_PID" 2>/dev/null || die "the sidecar died during the last round"

# ---------------------------------------------------------------- table
echo
echo "token-sidecar RSS under $CONNECTIONS stalled 1 MiB bodies (max_replay_body 1MiB; limits: $LIMITS)"
printf '%-6s %9s %9s %9s %9s  %-10s %s\n' round before peak timeout closed "sent full" "answers"
for row in "${ROWS[@]}"; do
    IFS=$'\t' read -r rnd before peak tmo closed full n answers <<<"$row"
    printf '%-6s %9s %9s %9s %9s  %-10s %s\n' "$rnd" \
        "$(awk -v k="$before" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$tmo" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$closed" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$full/$n" "$answers"
done
echo "(MiB of VmRSS: before the round; peak while sending; ${BODY_TIMEOUT}+2 s after the last"
echo " byte; 2 s after the clients closed. 'answers': what the connections got back.)"
