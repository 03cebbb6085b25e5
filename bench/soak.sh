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

BENCH_TAG=soak
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
init_loadgen_bench
[[ $SOAK_SECS =~ ^[0-9]+$ && $SOAK_SECS -ge 1 ]] || die "SOAK_SECS must be a positive integer"
[[ $SAMPLE_SECS =~ ^[0-9]+$ && $SAMPLE_SECS -ge 1 ]] || die "SAMPLE_SECS must be a positive integer"

raise_nofile

# ---------------------------------------------------------------- 1. build + fixtures
build_loadgen_binaries
make_tmp soak
seed_ftproot
make_certs soak "$KEY_ALG"

# ---------------------------------------------------------------- 2. processes
start_backend
start_gateway_demo
loadgen_sanity

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
wait_no_sessions 150
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

header_line soak "" "nofile=$NOFILE"
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
gateway_log_report
grep -h '^loadgen: error' "$TMP/loadgen.err" >&2 || true

FAILED=0
exit 0
