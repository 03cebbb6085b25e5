#!/usr/bin/env bash
# ftpsgate scale benchmark: many idle explicit-FTPS sessions (time to log them all
# in, gateway RSS per session, /metrics), then many concurrent protected downloads
# with sha256 checks. Loopback only. See bench/README.md ("Scale and soak").
#
# Processes (each started from this script, so $! is the process itself):
#   target/release/examples/bench_backend   plain-FTP libunftp backend (own process)
#   ftpsgate run                             explicit FTPS listener -> backend mode none
#   target/release/examples/loadgen          the clients
# Only ftpsgate's RSS and CPU are measured.
#
# Environment knobs:
#   SESSIONS           idle sessions (default 10000)
#   TRANSFERS          concurrent downloads (default 1000)
#   SIZE               bytes per download (default 65536)
#   CONNECT_CONCURRENCY  sessions in their connect/login phase at once (default 200)
#   SETTLE_SECS        wait after the last login before sampling RSS (default 3)
#   IDLE_ROUNDS        repeat the idle phase this often (default 1); later rounds show
#                      whether RSS after close is reused (flat) or grows (a leak)
#   LG_TLS             TLS versions the load generator offers: any|1.2|1.3 (default any)
#   LG_THREADS         tokio worker threads of the load generator (default: CPUs)
#   LG_TIMEOUT         per login / per transfer limit in the load generator, s (default 120)
#   KEY_ALG            rsa (RSA 2048, default) or ec (P-256) for the gateway certificate
#   GW_PASV            gateway passive range (default 10000-19999, outside the
#                      ephemeral range and the control/metrics ports)
#   FTPSGATE_BIN       use this ftpsgate binary (loadgen/bench_backend still built)
#   BENCH_NO_BUILD=1   do not run cargo; use target/release as it is
#   BENCH_KEEP=1       keep the temp dir (configs, certs, logs)
#   RUST_LOG           passed to ftpsgate (default: its own "info" filter)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

SESSIONS=${SESSIONS:-10000}
TRANSFERS=${TRANSFERS:-1000}
SIZE=${SIZE:-65536}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-200}
SETTLE_SECS=${SETTLE_SECS:-3}
IDLE_ROUNDS=${IDLE_ROUNDS:-1}
LG_TLS=${LG_TLS:-any}
LG_TIMEOUT=${LG_TIMEOUT:-120}
KEY_ALG=${KEY_ALG:-rsa}
GW_PASV=${GW_PASV:-10000-19999}

log() { printf '[scale] %s\n' "$*" >&2; }
die() { printf '[scale] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in openssl sha256sum ss getconf awk; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ $SESSIONS =~ ^[0-9]+$ && $SESSIONS -ge 1 ]] || die "SESSIONS must be a positive integer"
[[ $TRANSFERS =~ ^[0-9]+$ && $TRANSFERS -ge 1 ]] || die "TRANSFERS must be a positive integer"
[[ $SIZE =~ ^[0-9]+$ ]] || die "SIZE must be a byte count"
[[ $IDLE_ROUNDS =~ ^[0-9]+$ && $IDLE_ROUNDS -ge 1 ]] || die "IDLE_ROUNDS must be a positive integer"

# ---------------------------------------------------------------- file descriptors
# Inherited by every process started below. As root, try the big limit first; in a
# container without CAP_SYS_RESOURCE only the hard limit can be reached.
if [[ $(id -u) -eq 0 ]]; then
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
else
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
NOFILE=$(ulimit -n)
# ftpsgate holds 2 fds per idle session (client + backend control) and ~4 per
# transfer; keep 256 spare.
SESSIONS_REQ=$SESSIONS
if [[ $NOFILE != unlimited ]]; then
    max_sessions=$(((NOFILE - 256) / 2))
    if ((SESSIONS > max_sessions)); then
        log "open-files limit $NOFILE allows about $max_sessions idle sessions; SESSIONS lowered from $SESSIONS"
        SESSIONS=$max_sessions
    fi
    max_transfers=$(((NOFILE - 256) / 4))
    ((TRANSFERS <= max_transfers)) || { log "TRANSFERS lowered to $max_transfers (open-files limit $NOFILE)"; TRANSFERS=$max_transfers; }
fi

# ---------------------------------------------------------------- cleanup
TMP=""
BE_PID=""
GW_PID=""
LG_PID=""
FAILED=1

stop_pid() { # stop_pid PID NAME
    local pid=$1 name=$2 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name ($pid) did not stop on SIGTERM within 10 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    if [[ $FAILED -ne 0 && -n $TMP ]]; then
        for f in gateway.log backend.log loadgen.err; do
            if [[ -s $TMP/$f ]]; then
                log "---- last 30 lines of $f ----"
                tail -n 30 "$TMP/$f" >&2
            fi
        done
    fi
    stop_pid "$LG_PID" loadgen
    stop_pid "$GW_PID" ftpsgate
    stop_pid "$BE_PID" bench_backend
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            log "kept temp dir $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
PASV_LO=${GW_PASV%-*}
PASV_HI=${GW_PASV#*-}
free_port() { # a TCP port on 127.0.0.1 nobody listens on, outside the passive range
    local p used
    used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
    while :; do
        p=$((20000 + RANDOM % 12000))
        ((p >= PASV_LO && p <= PASV_HI)) && continue
        grep -qx "$p" <<<"$used" || { echo "$p"; return; }
    done
}

wait_listen() { # wait_listen PORT PID NAME
    local port=$1 pid=$2 name=$3 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name does not listen on 127.0.0.1:$port after 10 s"
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime+stime of PID in clock ticks (fields 14, 15 of /proc/PID/stat)
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    awk '{print $12 + $13}' <<<"$rest"
}
ticks_s() { awk -v d="$1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", d / t }'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

metrics() { # the /metrics text (HTTP/1.0 over bash's /dev/tcp, no curl needed)
    timeout 10 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        cat <&3' _ "$METRICS_PORT" 2>/dev/null | tr -d '\r' || true
}
metric_sum() { # metric_sum NAME -> sum over all label sets ("nan" if absent)
    metrics | awk -v n="$1" '
        $1 == n || index($1, n "{") == 1 { s += $NF; f = 1 }
        END { if (f) print s + 0; else print "nan" }'
}
kv() { # kv KEY < line  -> value of KEY=value
    tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { sub(/^[^=]*=/, ""); print; exit }'
}
log_kinds() { # the most frequent WARN/ERROR messages of gateway.log, to stderr
    grep -E '"level":"(WARN|ERROR)"' "$TMP/gateway.log" 2>/dev/null \
        | sed -E 's/"(timestamp|id|client|span|spans|peer|port|addr)":("[^"]*"|[0-9]+|\{[^}]*\}|\[[^]]*\]),?//g' \
        | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/[gateway.log] /' >&2 || true
}
gw_alive() { kill -0 "$GW_PID" 2>/dev/null || die "ftpsgate died (see gateway.log)"; }

# ---------------------------------------------------------------- 1. build + fixtures
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building (cargo build --release --bins --examples)"
    (cd "$REPO" && cargo build --release --quiet --bins --examples) >&2 || die "cargo build failed"
fi
BIN=${FTPSGATE_BIN:-$REPO/target/release/ftpsgate}
LOADGEN=$REPO/target/release/examples/loadgen
BACKEND=$REPO/target/release/examples/bench_backend
for b in "$BIN" "$LOADGEN" "$BACKEND"; do [[ -x $b ]] || die "no executable at $b"; done
if [[ -n ${FTPSGATE_BIN:-} ]]; then
    BIN_NOTE="FTPSGATE_BIN=$BIN"
else
    BIN_NOTE="built from $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$( [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo +dirty || true)"
fi

TMP=$(mktemp -d /tmp/ftpsgate-scale.XXXXXX)
log "temp dir $TMP"
FTPROOT=$TMP/ftp
mkdir -p "$FTPROOT"
head -c 1024 /dev/urandom >"$FTPROOT/small.bin"
head -c "$SIZE" /dev/urandom >"$FTPROOT/size-$SIZE.bin"
SMALL_SHA=$(sha256sum "$FTPROOT/small.bin" | cut -d' ' -f1)
FILE_SHA=$(sha256sum "$FTPROOT/size-$SIZE.bin" | cut -d' ' -f1)

log "creating CA and leaf certificate ($KEY_ALG)"
case $KEY_ALG in
    rsa) NEWKEY=(-newkey rsa:2048) ;;
    ec) NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    *) die "KEY_ALG must be rsa or ec" ;;
esac
(
    cd "$TMP"
    openssl req -x509 "${NEWKEY[@]}" -nodes -days 2 -subj "/CN=ftpsgate scale CA" \
        -keyout ca.key -out ca.pem \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req "${NEWKEY[@]}" -nodes -subj "/CN=localhost" -keyout leaf.key -out leaf.csr
    cat >leaf.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EOF
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile leaf.ext -out leaf.pem
    chmod 600 leaf.key ca.key
) >/dev/null 2>&1 || die "certificate generation failed"

# ---------------------------------------------------------------- 2. processes
log "starting bench_backend"
"$BACKEND" --root "$FTPROOT" >"$TMP/backend.addr" 2>"$TMP/backend.log" &
BE_PID=$!
for _ in $(seq 100); do
    [[ -s $TMP/backend.addr ]] && break
    kill -0 "$BE_PID" 2>/dev/null || die "bench_backend exited during startup"
    sleep 0.1
done
BE_ADDR=$(head -n1 "$TMP/backend.addr")
[[ $BE_ADDR =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "bench_backend printed no address"

GW_PORT=$(free_port)
METRICS_PORT=$(free_port)
while [[ $METRICS_PORT == "$GW_PORT" ]]; do METRICS_PORT=$(free_port); done
cat >"$TMP/gateway.yaml" <<EOF
listeners:
  - name: edge
    bind: "127.0.0.1:$GW_PORT"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { ports: "$GW_PASV", advertise: "127.0.0.1" }
    backend: demo
    limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
backends:
  - name: demo
    address: "$BE_ADDR"
    tls: { mode: none }
limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
# Generous: the login phase of many sessions on a busy 2-core machine can be slow.
timeouts: { connect: 60s, login: 300s, idle: 3600s, pinhole: 60s, data_idle: 300s }
metrics: { bind: "127.0.0.1:$METRICS_PORT" }
EOF
"$BIN" check --config "$TMP/gateway.yaml" >&2 || die "ftpsgate check rejected the config"

log "starting ftpsgate on 127.0.0.1:$GW_PORT (metrics :$METRICS_PORT, backend $BE_ADDR)"
"$BIN" --log-format json run --config "$TMP/gateway.yaml" 2>"$TMP/gateway.log" &
GW_PID=$!
wait_listen "$GW_PORT" "$GW_PID" ftpsgate
wait_listen "$METRICS_PORT" "$GW_PID" "ftpsgate metrics"
log "bench_backend pid=$BE_PID ftpsgate pid=$GW_PID nofile=$NOFILE"

LG_COMMON=(--addr "127.0.0.1:$GW_PORT" --ca "$TMP/ca.pem" --server-name localhost
    --connect-concurrency "$CONNECT_CONCURRENCY" --tls "$LG_TLS" --timeout "$LG_TIMEOUT")
[[ -n ${LG_THREADS:-} ]] && LG_COMMON+=(--threads "$LG_THREADS")

# Sanity (also warms the gateway up: allocator arenas, TLS, first session).
out=$("$LOADGEN" transfers "${LG_COMMON[@]}" --sessions 1 --size 1024 --file small.bin --sha256 "$SMALL_SHA" 2>"$TMP/loadgen.err") \
    || die "sanity loadgen run failed"
[[ $(kv ok <<<"$out") == 1 ]] || { cat "$TMP/loadgen.err" >&2; die "sanity download through the gateway failed: $out"; }
sleep 1
gw_alive

# ---------------------------------------------------------------- 3. idle sessions
RSS0=$(rss_kib "$GW_PID")
FD0=$(fds "$GW_PID")
ROUNDS_NOTE=""
for round in $(seq "$IDLE_ROUNDS"); do
    log "idle round $round/$IDLE_ROUNDS: logging in $SESSIONS sessions ($CONNECT_CONCURRENCY at a time)"
    c0=$(cpu_ticks "$GW_PID")
    "$LOADGEN" idle "${LG_COMMON[@]}" --sessions "$SESSIONS" >"$TMP/idle.out" 2>"$TMP/loadgen.err" &
    LG_PID=$!
    # No fixed deadline: the login phase ends when every session has logged in or
    # failed (LG_TIMEOUT each); we only stop waiting if a process dies.
    while ! grep -q '^ready ' "$TMP/idle.out" 2>/dev/null; do
        kill -0 "$LG_PID" 2>/dev/null || { cat "$TMP/loadgen.err" >&2; die "loadgen exited before all sessions were logged in"; }
        gw_alive
        sleep 0.2
    done
    c1=$(cpu_ticks "$GW_PID")
    sleep "$SETTLE_SECS"
    gw_alive
    c2=$(cpu_ticks "$GW_PID")
    RSS1=$(rss_kib "$GW_PID")
    FD1=$(fds "$GW_PID")
    ACTIVE=$(metric_sum ftpsgate_sessions_active)
    HELD=$(kv held <"$TMP/idle.out")
    log "idle: $HELD sessions held, RSS $(mib "$RSS1") MiB, sessions_active=$ACTIVE; closing"
    kill -TERM "$LG_PID"
    wait "$LG_PID" || log "loadgen idle exited with $?"
    LG_PID=""
    c3=$(cpu_ticks "$GW_PID")
    # Wait (up to 60 s) for the gateway to see every session end.
    for _ in $(seq 300); do
        a=$(metric_sum ftpsgate_sessions_active)
        [[ $a == 0 ]] && break
        sleep 0.2
    done
    ACTIVE_AFTER=$(metric_sum ftpsgate_sessions_active)
    sleep 1
    RSS2=$(rss_kib "$GW_PID")
    FD2=$(fds "$GW_PID")
    cat "$TMP/loadgen.err" >&2
    ROUNDS_NOTE+="$round:$(mib "$RSS1")/$(mib "$RSS2") "
done

# ---------------------------------------------------------------- 4. transfers
log "transfers: $TRANSFERS concurrent downloads of $SIZE bytes"
c4=$(cpu_ticks "$GW_PID")
"$LOADGEN" transfers "${LG_COMMON[@]}" --sessions "$TRANSFERS" --size "$SIZE" \
    --file "size-$SIZE.bin" --sha256 "$FILE_SHA" >"$TMP/transfers.out" 2>"$TMP/loadgen.err" \
    || log "loadgen transfers exited with $?"
c5=$(cpu_ticks "$GW_PID")
gw_alive
cat "$TMP/loadgen.err" >&2
sleep 1
RSS3=$(rss_kib "$GW_PID")
HWM=$(hwm_kib "$GW_PID")
TRANSFERS_OK=$(metrics | awk '/^ftpsgate_transfers_total\{/ { print }' | tr '\n' ' ')

# ---------------------------------------------------------------- 5. report
IDLE_LOGIN=$(grep '^idle_login ' "$TMP/idle.out" || echo "idle_login missing")
IDLE_CLOSE=$(grep '^idle_close ' "$TMP/idle.out" || echo "idle_close missing")
TRANSFERS_LINE=$(grep '^transfers ' "$TMP/transfers.out" || echo "transfers missing")
PER_SESSION=$(awk -v a="$RSS0" -v b="$RSS1" -v n="$HELD" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "nan" }')
LOGIN_CPU_MS=$(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v n="$HELD" 'BEGIN { if (n > 0) printf "%.2f", d / t / n * 1000; else print "nan" }')

echo "# ftpsgate scale $(date -u +%Y-%m-%dT%H:%M:%SZ)  $("$BIN" --version 2>/dev/null) ($BIN_NOTE)  cpus=$(nproc)  loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)  nofile=$NOFILE"
echo "# loopback; client leg explicit FTPS (loadgen --tls $LG_TLS, key $KEY_ALG), backend leg plain FTP (bench_backend, own process); sessions=$SESSIONS (requested $SESSIONS_REQ) connect_concurrency=$CONNECT_CONCURRENCY transfers=$TRANSFERS size=$SIZE"
echo "$IDLE_LOGIN"
echo "gateway_rss_before=$(mib "$RSS0")MiB fds=$FD0"
echo "gateway_rss_with_sessions=$(mib "$RSS1")MiB sessions=$HELD fds=$FD1 (sampled ${SETTLE_SECS}s after the last login)"
echo "gateway_rss_per_session=${PER_SESSION}KiB goal<=64KiB $(awk -v v="$PER_SESSION" 'BEGIN { if (v == "nan") print "MISS"; else print (v <= 64) ? "PASS" : "MISS" }')"
echo "gateway_sessions_active=$ACTIVE (metrics, with $HELD held)"
echo "gateway_cpu_login_phase=$(ticks_s $((c1 - c0)))s per_session=${LOGIN_CPU_MS}ms"
echo "gateway_cpu_idle_hold=$(ticks_s $((c2 - c1)))s over ${SETTLE_SECS}s"
echo "$IDLE_CLOSE"
echo "gateway_cpu_close_phase=$(ticks_s $((c3 - c2)))s"
echo "gateway_after_close sessions_active=$ACTIVE_AFTER rss=$(mib "$RSS2")MiB fds=$FD2"
((IDLE_ROUNDS > 1)) && echo "gateway_rss_rounds_MiB ${ROUNDS_NOTE% } (round:with_sessions/after_close; figures above are from the last round)"
echo "$TRANSFERS_LINE"
echo "gateway_cpu_transfers=$(ticks_s $((c5 - c4)))s (login+PBSZ/PROT+PASV+RETR of $TRANSFERS sessions)"
echo "gateway_rss_after_transfers=$(mib "$RSS3")MiB peak_VmHWM=$(mib "$HWM")MiB"
echo "gateway_transfers_metric ${TRANSFERS_OK:-none}"
echo "gateway_log lines=$(wc -l <"$TMP/gateway.log") warn=$(grep -c '"level":"WARN"' "$TMP/gateway.log" || true) error=$(grep -c '"level":"ERROR"' "$TMP/gateway.log" || true)"
log_kinds

FAILED=0
exit 0
