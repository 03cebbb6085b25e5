#!/usr/bin/env bash
# CI regression guard: the gateway's CPU per MiB relayed and per short session,
# each divided by a floor measured in the same run (the CPU per MiB of a plain TCP
# relay between two loopback sockets, examples/relay_floor.rs, pinned to the
# gateway's CPU, before and after the runs), against the ratios committed in
# bench/baseline.txt. Fails (exit 1) when either ratio exceeds GUARD_FACTOR (default
# 1.25) times its baseline. The floor makes the guard a ratio within one run: this
# VM's speed moves by 2-3x between sessions (2026-12-08: ring's AES-GCM, an RSA
# signature and the TCP relay floor all 1.5-3x slower than the day before), which
# the gateway's raw CPU figures follow and a code regression does not.
#
# CPU seconds of the ftpsgate process (sum over its threads, /proc/PID/task/*/schedstat),
# not wall time: other work on a busy machine slows the run down but adds little to
# the gateway's own CPU time. Median of GUARD_RUNS runs. Needs no root and no vsftpd:
# bench_backend (plain FTP) behind, loadgen (rustls) in front, so the relay figure is
# one AES-GCM encrypt per byte (client leg) plus the copies. Takes about 30 s after
# the build.
#
# The binaries are built with the `package-test` profile (release without LTO,
# opt-level 1, incremental), not `release`: tests/packaging.rs builds ftpsgate with it
# in the same test run, so the guard's build is incremental, where a cold fat-LTO
# release build takes over 5 minutes on 2 cores. The figures guard against
# regressions relative to bench/baseline.txt (written with the same profile; the
# guard refuses a baseline of another profile), they are not the release figures.
#
#   ./bench/guard.sh                  # check (builds target/package-test first)
#   GUARD_UPDATE=1 ./bench/guard.sh   # measure and write bench/baseline.txt
#
# Environment: GUARD_RUNS (7), GUARD_FACTOR (1.25), GUARD_MIB (256, file size),
# GUARD_SESSIONS (100 per run), BENCH_PROFILE (package-test), BENCH_NO_BUILD=1,
# FTPSGATE_BIN, BENCH_KEEP=1.
set -euo pipefail
BENCH_PROFILE=${BENCH_PROFILE:-package-test}

RUNS=${GUARD_RUNS:-7}
FACTOR=${GUARD_FACTOR:-1.25}
GUARD_MIB=${GUARD_MIB:-256}
SIZE=$((GUARD_MIB * 1024 * 1024))
GUARD_SESSIONS=${GUARD_SESSIONS:-100}
CONNECT_CONCURRENCY=20
LG_TLS=any
LG_TIMEOUT=120
GW_PASV=${GW_PASV:-10000-19999}

BENCH_TAG=guard
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
init_loadgen_bench
raise_nofile
BASELINE=$REPO/bench/baseline.txt

build_loadgen_binaries
make_tmp guard
make_certs guard rsa
seed_ftproot
start_backend
start_gateway_demo
loadgen_sanity
# On 2+ CPUs: the gateway on CPU 0, backend and load generator on CPU 1, so how the
# three share the cores (which changes how many records the relay finds ready per
# read, hence its cost per MiB) is the same every run. GUARD_PIN=0 turns it off.
PIN_LG=()
if [[ ${GUARD_PIN:-1} == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
    taskset -a -p -c 0 "$GW_PID" >/dev/null && taskset -a -p -c 1 "$BE_PID" >/dev/null && PIN_LG=(taskset -c 1)
fi

median() { sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }

# CPU time of the gateway in ns: the sum of its threads' sum_exec_runtime
# (/proc/PID/task/*/schedstat, ns). Read only while the gateway is idle (after the
# work, gw_settle), when every thread's figure is up to date. /proc/PID/stat's
# utime+stime is not usable over a few seconds: the kernel's split of the runtime
# into user and system time holds the sum still, then jumps (runs read 0 then 4x).
# A thread that exits between two readings would take its time with it: the
# thread ids are compared, and such a run is repeated.
gw_cpu() { # gw_cpu -> "NS TIDS"
    local ns=0 tids="" t v
    for t in /proc/"$GW_PID"/task/*; do
        read -r v _ <"$t/schedstat" 2>/dev/null || continue
        ns=$((ns + v))
        tids+="${t##*/},"
    done
    echo "$ns $tids"
}
gw_settle() { sleep 0.3; }
# measure VAR CMD... -> runs CMD (its stdout in OUT), VAR = gateway CPU ns spent
measure() {
    local var=$1 a b try
    shift
    for try in 1 2 3; do
        read -r -a a < <(gw_cpu)
        OUT=$("$@" 2>>"$TMP/loadgen.err")
        gw_settle
        read -r -a b < <(gw_cpu)
        if [[ ${a[1]} == "${b[1]}" ]]; then
            printf -v "$var" '%d' $((b[0] - a[0]))
            return 0
        fi
        log "gateway threads changed during the run (${a[1]} -> ${b[1]}), measuring again"
    done
    die "gateway threads keep changing; cannot measure its CPU"
}

gw_settle
RELAY=()
# The same-run floor: CPU (ms) per MiB of a plain read/write relay, on the gateway's
# CPU. Measured before and after the runs; their mean divides the figures.
FLOOR_BIN=$REPO/target/$BENCH_PROFILE/examples/relay_floor
[[ -x $FLOOR_BIN ]] || die "no executable at $FLOOR_BIN"
PIN_GW=()
[[ ${#PIN_LG[@]} -gt 0 ]] && PIN_GW=(taskset -c 0)
tcp_floor() {
    "${PIN_GW[@]}" "$FLOOR_BIN" --mib 256 --runs 5 2>/dev/null \
        | awk -F'median_cpu_s=' '/^relay_floor_tcp/ { printf "%.4f", $2 * 1000 / 256 }'
}
FLOOR_BEFORE=$(tcp_floor)
[[ -n $FLOOR_BEFORE ]] || die "relay_floor printed no figure"

SESS=()
for r in $(seq "$RUNS"); do
    measure d "${PIN_LG[@]}" "$LOADGEN" transfers "${LG_COMMON[@]}" --sessions 1 --size "$SIZE" --sha256 "$FILE_SHA"
    out=$OUT
    [[ $(kv ok <<<"$out") == 1 ]] || die "run $r: download failed: $out"
    RELAY+=("$(awk -v d="$d" -v m="$GUARD_MIB" 'BEGIN { printf "%.3f", d / 1e6 / m }')")

    measure d "${PIN_LG[@]}" "$LOADGEN" churn "${LG_COMMON[@]}" --rate 0 --max-inflight 4 --secs 600 --max-sessions "$GUARD_SESSIONS" \
        --file small.bin --size 1024 --sha256 "$SMALL_SHA" --progress 0
    out=$OUT
    ok=$(kv ok <<<"$out")
    [[ $ok == "$GUARD_SESSIONS" && $(kv errors <<<"$out") == 0 ]] || die "run $r: short sessions failed: $out"
    SESS+=("$(awk -v d="$d" -v n="$ok" 'BEGIN { printf "%.3f", d / 1e6 / n }')")
    log "run $r: relay ${RELAY[-1]} ms/MiB, session ${SESS[-1]} ms"
    gw_alive
done
RELAY_MED=$(printf '%s\n' "${RELAY[@]}" | median)
SESS_MED=$(printf '%s\n' "${SESS[@]}" | median)
FLOOR_AFTER=$(tcp_floor)
[[ -n $FLOOR_AFTER ]] || die "relay_floor printed no figure"
FLOOR=$(awk -v a="$FLOOR_BEFORE" -v b="$FLOOR_AFTER" 'BEGIN { printf "%.4f", (a + b) / 2 }')
RELAY_X=$(awk -v v="$RELAY_MED" -v f="$FLOOR" 'BEGIN { printf "%.3f", v / f }')
SESS_X=$(awk -v v="$SESS_MED" -v f="$FLOOR" 'BEGIN { printf "%.3f", v / f }')

header_line guard
echo "guard relay_cpu_ms_per_MiB=$RELAY_MED session_cpu_ms=$SESS_MED runs_relay=[${RELAY[*]}] runs_session=[${SESS[*]}] (${GUARD_MIB} MiB download, $GUARD_SESSIONS sessions of login+LIST+1KiB RETR per run, plain backend)"
echo "guard floor_tcp_ms_per_MiB=$FLOOR (before $FLOOR_BEFORE, after $FLOOR_AFTER) relay_per_floor=$RELAY_X session_per_floor=$SESS_X"

if [[ ${GUARD_UPDATE:-0} == 1 ]]; then
    {
        echo "# bench/guard.sh baseline: gateway CPU per MiB relayed and per short session, each"
        echo "# divided by the same run's plain TCP relay floor (ms per MiB); median of $RUNS runs,"
        echo "# cargo profile $BENCH_PROFILE. Written by GUARD_UPDATE=1 ./bench/guard.sh on"
        echo "# $(date -u +%Y-%m-%d), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cpus."
        echo "# The raw figures of that run, for reference (not checked):"
        echo "# relay_cpu_ms_per_MiB=$RELAY_MED session_cpu_ms=$SESS_MED floor_tcp_ms_per_MiB=$FLOOR"
        echo "profile=$BENCH_PROFILE"
        echo "relay_per_floor=$RELAY_X"
        echo "session_per_floor=$SESS_X"
    } >"$BASELINE"
    log "wrote $BASELINE"
    FAILED=0
    exit 0
fi

[[ -r $BASELINE ]] || die "no $BASELINE (create it with GUARD_UPDATE=1)"
base() { awk -F= -v k="$1" '$1 == k { print $2 }' "$BASELINE"; }
[[ $(base profile) == "$BENCH_PROFILE" ]] \
    || die "$BASELINE was measured with profile '$(base profile)', this run uses '$BENCH_PROFILE'"
bad=0
for pair in "relay_per_floor $RELAY_X" "session_per_floor $SESS_X"; do
    read -r key val <<<"$pair"
    ref=$(base "$key")
    [[ -n $ref ]] || die "$BASELINE has no $key"
    verdict=$(awk -v v="$val" -v r="$ref" -v f="$FACTOR" 'BEGIN { print (v <= r * f) ? "ok" : "REGRESSION" }')
    echo "guard $key=$val baseline=$ref limit=$(awk -v r="$ref" -v f="$FACTOR" 'BEGIN { printf "%.3f", r * f }') $verdict"
    [[ $verdict == ok ]] || bad=1
done
FAILED=0
exit "$bad"
