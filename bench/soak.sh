#!/usr/bin/env bash
# ftpsgate soak benchmark: short explicit-FTPS sessions (login, PBSZ/PROT, LIST,
# 1 KiB RETR with sha256 check, QUIT) at the highest rate the machine sustains, for
# minutes, while the gateway's RSS, open fds and CPU are sampled. Loopback only.
# See bench/README.md ("Scale and soak").
#
# Rate: unless SOAK_RATE is set, a probe runs the churn closed-loop at each of
# PROBE_CONCURRENCY for PROBE_SECS and keeps the best error-free sessions/s; the soak
# then runs open-loop at SOAK_FRACTION of it (at most SOAK_INFLIGHT in flight).
#
# Environment knobs:
#   SOAK_SECS          soak duration in seconds (default 300)
#   SAMPLE_SECS        RSS/fd/CPU sampling interval (default 10)
#   SOAK_RATE          sessions/s to start; skips the probe (0 = closed loop)
#   SOAK_FRACTION      fraction of the probed rate to soak at (default 0.9)
#   SOAK_INFLIGHT      most sessions in flight during the soak (default 256)
#   PROBE_CONCURRENCY  closed-loop concurrencies to probe (default "8 32 128")
#   PROBE_SECS         seconds per probe (default 15)
#   LG_TLS, LG_THREADS, LG_TIMEOUT, KEY_ALG, GW_PASV, FTPSGATE_BIN, BENCH_NO_BUILD,
#   BENCH_KEEP, RUST_LOG   as in bench/scale.sh
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

SOAK_SECS=${SOAK_SECS:-300}
SAMPLE_SECS=${SAMPLE_SECS:-10}
SOAK_FRACTION=${SOAK_FRACTION:-0.9}
SOAK_INFLIGHT=${SOAK_INFLIGHT:-256}
PROBE_CONCURRENCY=${PROBE_CONCURRENCY:-8 32 128}
PROBE_SECS=${PROBE_SECS:-15}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-200}
LG_TLS=${LG_TLS:-any}
LG_TIMEOUT=${LG_TIMEOUT:-60}
KEY_ALG=${KEY_ALG:-rsa}
GW_PASV=${GW_PASV:-10000-19999}
SIZE=1024   # the churn's RETR is small.bin

log() { printf '[soak] %s\n' "$*" >&2; }
die() { printf '[soak] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in openssl sha256sum ss getconf awk; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ $SOAK_SECS =~ ^[0-9]+$ && $SOAK_SECS -ge 1 ]] || die "SOAK_SECS must be a positive integer"
[[ $SAMPLE_SECS =~ ^[0-9]+$ && $SAMPLE_SECS -ge 1 ]] || die "SAMPLE_SECS must be a positive integer"

if [[ $(id -u) -eq 0 ]]; then
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
else
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
NOFILE=$(ulimit -n)

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

TMP=$(mktemp -d /tmp/ftpsgate-soak.XXXXXX)
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
    openssl req -x509 "${NEWKEY[@]}" -nodes -days 2 -subj "/CN=ftpsgate soak CA" \
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

# ---------------------------------------------------------------- 3. rate
churn() { # churn RATE SECS INFLIGHT OUTFILE -> runs loadgen churn in the foreground
    "$LOADGEN" churn "${LG_COMMON[@]}" --rate "$1" --secs "$2" --max-inflight "$3" \
        --file small.bin --size 1024 --sha256 "$SMALL_SHA" --progress 0 >"$4" 2>>"$TMP/loadgen.err"
}
PROBE_NOTE=""
if [[ -n ${SOAK_RATE:-} ]]; then
    RATE=$SOAK_RATE
    PROBE_NOTE="SOAK_RATE=$RATE (no probe)"
else
    best=0 best_c=""
    for c in $PROBE_CONCURRENCY; do
        churn 0 "$PROBE_SECS" "$c" "$TMP/probe.out" || log "probe loadgen exited with $?"
        gw_alive
        line=$(grep '^churn ' "$TMP/probe.out" || true)
        r=$(kv sessions_per_s <<<"$line"); e=$(kv errors <<<"$line")
        log "probe closed-loop concurrency=$c: ${r:-?} sessions/s, errors=${e:-?}"
        PROBE_NOTE+="c$c=${r:-nan}/s,err=${e:-nan} "
        if [[ -n $r && $e == 0 ]] && awk -v a="$r" -v b="$best" 'BEGIN { exit !(a > b) }'; then
            best=$r best_c=$c
        fi
    done
    [[ $best != 0 ]] || die "no probe ran without errors; set SOAK_RATE to soak anyway (see loadgen.err)"
    RATE=$(awk -v b="$best" -v f="$SOAK_FRACTION" 'BEGIN { printf "%.1f", b * f }')
    PROBE_NOTE="probe ${PROBE_SECS}s each: ${PROBE_NOTE}best=${best}/s at c$best_c; soak at x$SOAK_FRACTION"
    # Let the probe's sessions, pinholes and TIME_WAIT settle before the baseline.
    sleep 2
fi

# ---------------------------------------------------------------- 4. soak
RSS0=$(rss_kib "$GW_PID"); FD0=$(fds "$GW_PID")
log "soak: $RATE sessions/s for ${SOAK_SECS}s (max in flight $SOAK_INFLIGHT), sampling every ${SAMPLE_SECS}s"
c0=$(cpu_ticks "$GW_PID")
t0=$(date +%s.%N)
churn "$RATE" "$SOAK_SECS" "$SOAK_INFLIGHT" "$TMP/soak.out" &
LG_PID=$!
RSS_SERIES=() FD_SERIES=() CPU_SERIES=() ACT_SERIES=()
prev=$c0
next=$(awk -v t="$t0" -v s="$SAMPLE_SECS" 'BEGIN { printf "%.3f", t + s }')
while kill -0 "$LG_PID" 2>/dev/null; do
    now=$(date +%s.%N)
    if awk -v n="$now" -v x="$next" 'BEGIN { exit !(n >= x) }'; then
        gw_alive
        r=$(rss_kib "$GW_PID"); f=$(fds "$GW_PID"); c=$(cpu_ticks "$GW_PID")
        a=$(metric_sum ftpsgate_sessions_active)
        el=$(awk -v n="$now" -v t="$t0" 'BEGIN { printf "%.0f", n - t }')
        RSS_SERIES+=("$r"); FD_SERIES+=("$f"); ACT_SERIES+=("$a")
        CPU_SERIES+=("$(awk -v d=$((c - prev)) -v tk="$CLK_TCK" -v s="$SAMPLE_SECS" 'BEGIN { printf "%.0f", d / tk / s * 100 }')")
        prev=$c
        log "t=${el}s rss=$(mib "$r")MiB fds=$f sessions_active=$a gateway_cpu=${CPU_SERIES[-1]}%"
        next=$(awk -v x="$next" -v s="$SAMPLE_SECS" 'BEGIN { printf "%.3f", x + s }')
    fi
    sleep 0.5
done
rc=0; wait "$LG_PID" || rc=$?
LG_PID=""
[[ $rc -eq 0 ]] || log "loadgen churn exited with $rc"
c1=$(cpu_ticks "$GW_PID")
gw_alive
# After the load: every session and pinhole must be gone, RSS should stay flat.
for _ in $(seq 150); do
    a=$(metric_sum ftpsgate_sessions_active)
    [[ $a == 0 ]] && break
    sleep 0.2
done
sleep 2
ACTIVE_AFTER=$(metric_sum ftpsgate_sessions_active)
PINHOLES_AFTER=$(metric_sum ftpsgate_pinholes_open)
RSS_END=$(rss_kib "$GW_PID"); FD_END=$(fds "$GW_PID"); HWM=$(hwm_kib "$GW_PID")
TW=$(ss -Htan state time-wait 2>/dev/null | wc -l)

# ---------------------------------------------------------------- 5. report
SOAK_LINE=$(grep '^churn ' "$TMP/soak.out" || echo "churn missing")
OK=$(kv ok <<<"$SOAK_LINE")
n=${#RSS_SERIES[@]}
PLATEAU=$(printf '%s\n' "${RSS_SERIES[@]}" | awk -v n="$n" '
    { v[NR] = $1 }
    END {
        k = int(n / 3)
        if (k < 1) { print "unknown (fewer than 3 samples) first_third_max=nan last_third_max=nan"; exit }
        for (i = 1; i <= k; i++) if (v[i] > f) f = v[i]
        for (i = n - k + 1; i <= n; i++) if (v[i] > l) l = v[i]
        lim = f * 1.1 + 2048
        printf "%s first_third_max=%.1fMiB last_third_max=%.1fMiB limit=%.1fMiB\n", (l <= lim) ? "yes" : "NO", f / 1024, l / 1024, lim / 1024
    }')
series() { # series ARRAY_NAME FORMAT -> "t:v t:v ..."
    local -n arr=$1
    local i out=""
    for i in "${!arr[@]}"; do
        out+="$(((i + 1) * SAMPLE_SECS)):$(if [[ $2 == mib ]]; then mib "${arr[$i]}"; else echo "${arr[$i]}"; fi) "
    done
    echo "${out% }"
}
CPU_MS=$(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v n="${OK:-0}" 'BEGIN { if (n > 0) printf "%.2f", d / t / n * 1000; else print "nan" }')

echo "# ftpsgate soak $(date -u +%Y-%m-%dT%H:%M:%SZ)  $("$BIN" --version 2>/dev/null) ($BIN_NOTE)  cpus=$(nproc)  loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)  nofile=$NOFILE"
echo "# loopback; explicit FTPS client leg (loadgen --tls $LG_TLS, key $KEY_ALG), plain-FTP backend (bench_backend, own process); session = login, PBSZ/PROT, LIST, RETR 1KiB (sha256), QUIT; $PROBE_NOTE"
echo "$SOAK_LINE"
echo "soak_rss_series_MiB $(series RSS_SERIES mib)"
echo "soak_fd_series $(series FD_SERIES raw)"
echo "soak_sessions_active_series $(series ACT_SERIES raw)"
echo "soak_gateway_cpu_pct_series $(series CPU_SERIES raw)"
echo "soak_rss_plateau=$PLATEAU (rule: last third max <= first third max x 1.1 + 2 MiB)"
echo "gateway_rss_before=$(mib "$RSS0")MiB after_idle=$(mib "$RSS_END")MiB peak_VmHWM=$(mib "$HWM")MiB fds_before=$FD0 fds_after=$FD_END"
echo "gateway_after_soak sessions_active=$ACTIVE_AFTER pinholes_open=$PINHOLES_AFTER time_wait_sockets=$TW"
echo "gateway_cpu_soak=$(ticks_s $((c1 - c0)))s per_session=${CPU_MS}ms"
echo "gateway_log lines=$(wc -l <"$TMP/gateway.log") warn=$(grep -c '"level":"WARN"' "$TMP/gateway.log" || true) error=$(grep -c '"level":"ERROR"' "$TMP/gateway.log" || true)"
log_kinds
grep -h '^loadgen: error' "$TMP/loadgen.err" >&2 || true

FAILED=0
exit 0
