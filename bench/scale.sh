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

BENCH_TAG=scale
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
init_loadgen_bench
[[ $SESSIONS =~ ^[0-9]+$ && $SESSIONS -ge 1 ]] || die "SESSIONS must be a positive integer"
[[ $TRANSFERS =~ ^[0-9]+$ && $TRANSFERS -ge 1 ]] || die "TRANSFERS must be a positive integer"
[[ $SIZE =~ ^[0-9]+$ ]] || die "SIZE must be a byte count"
[[ $IDLE_ROUNDS =~ ^[0-9]+$ && $IDLE_ROUNDS -ge 1 ]] || die "IDLE_ROUNDS must be a positive integer"

# ---------------------------------------------------------------- file descriptors
# Inherited by every process started below.
raise_nofile
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

# ---------------------------------------------------------------- 1. build + fixtures
build_loadgen_binaries
make_tmp scale
seed_ftproot
make_certs scale "$KEY_ALG"

# ---------------------------------------------------------------- 2. processes
start_backend
start_gateway_demo
loadgen_sanity

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
    wait_no_sessions 300
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

header_line scale "" "nofile=$NOFILE"
echo "# loopback; client leg explicit FTPS (loadgen --tls $LG_TLS, key $KEY_ALG), backend leg plain FTP (bench_backend, own process); sessions=$SESSIONS (requested $SESSIONS_REQ) connect_concurrency=$CONNECT_CONCURRENCY transfers=$TRANSFERS size=$SIZE"
echo "$IDLE_LOGIN"
echo "gateway_rss_before=$(mib "$RSS0")MiB fds=$FD0"
echo "gateway_rss_with_sessions=$(mib "$RSS1")MiB sessions=$HELD fds=$FD1 (sampled ${SETTLE_SECS}s after the last login)"
echo "gateway_rss_per_session=${PER_SESSION}KiB goal<=24KiB $(awk -v v="$PER_SESSION" 'BEGIN { if (v == "nan") print "MISS"; else print (v <= 24) ? "PASS" : "MISS" }')"
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
gateway_log_report

FAILED=0
exit 0
