#!/usr/bin/env bash
# ftpsgate added control latency (issue 18, goal 4), standalone: NOOP round trips,
# loadgen (rustls) -> vsftpd directly and loadgen -> ftpsgate -> vsftpd, explicit
# FTPS on both legs, at 1 session and at LAT_MANY logged-in sessions, interleaved
# direct, relay, gateway, direct, relay, gateway. Added latency = gateway - direct;
# the relay floor = (plain TCP relay) - direct. Loopback only.
# The same case runs inside bench/run.sh (section 3d); this script runs only it.
#
# Needs root (local user `ftpsgatebench`, vsftpd), vsftpd, openssl.
# Environment knobs:
#   FTPSGATE_BIN   ftpsgate binary (default: cargo build --profile $BENCH_PROFILE)
#   LOADGEN_BIN    loadgen (default target/$BENCH_PROFILE/examples/loadgen)
#   BENCH_PROFILE  cargo profile built and used (default release; package-test is fast)
#   LAT_SECS       seconds of NOOPs per run (default 5)
#   LAT_MANY       sessions of the concurrent case (default 200)
#   LAT_ROUNDS     rounds of (direct, gateway) per case (default 1)
#   LAT_CONNECT    sessions logging in at once (default 16: vsftpd listens with a backlog of 32)
#   VS_PASV, GW_PASV  passive ranges (unused by NOOP; default 53000-53099, 53100-53199)
#   FTPSGATE_BIN_B a second ftpsgate (e.g. the build before a change): run as a third
#                  side, gateway_b, in the same rounds (before/after figures of one run)
#   LAT_PERF=1     also run `perf stat -e task-clock,context-switches,cpu-migrations -p`
#                  on the relay and each gateway during its loadgen run: lines
#                  `noop_perf SIDE … task_clock_us_per_noop= cs_per_noop= migrations_per_noop=`
#   LAT_STRACE=1   also run `strace -c -f -p` on them (slows them: ignore the latency of
#                  that run): lines `noop_syscalls SIDE … NAME=calls_per_noop …`
#   LAT_RECORD=1   also run `perf record -e cpu-clock -g -p` on them: $TMP/perf.data.SIDE.SESSIONS
#                  (with BENCH_KEEP=1, for `perf report -i … --sort dso,sym`)
#   BENCH_KEEP=1   keep the temp dir
set -euo pipefail

BENCH_USER=ftpsgatebench
BENCH_PASS=ftpsgatebench-pw
BIG_MIB=0
BIG_BYTES=0
VS_PASV=${VS_PASV:-53000-53099}
GW_PASV=${GW_PASV:-53100-53199}
LAT_SECS=${LAT_SECS:-5}
LAT_MANY=${LAT_MANY:-200}
LAT_ROUNDS=${LAT_ROUNDS:-1}
LAT_CONNECT=${LAT_CONNECT:-16}

BENCH_TAG=latency
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
STOP_SECS=5
FAIL_LOGS=(gateway.log vsftpd.log vsftpd.stderr loadgen.err)
cleanup_extra() {
    cleanup_extra_b
    if [[ -n $VS_PID ]]; then
        for child in $(ps -o pid= --ppid "$VS_PID" 2>/dev/null); do
            kill -KILL "$child" 2>/dev/null || true
        done
    fi
}
[[ $(id -u) -eq 0 ]] || die "must run as root (creates user $BENCH_USER, runs vsftpd)"
need_tools "(apt-get install -y vsftpd)" vsftpd openssl sha256sum ss getconf useradd chpasswd
raise_nofile

[[ -n ${FTPSGATE_BIN:-} && -n ${LOADGEN_BIN:-} ]] || cargo_build --bins --examples
BIN=${FTPSGATE_BIN:-$REPO/target/$BENCH_PROFILE/ftpsgate}
LOADGEN=${LOADGEN_BIN:-$REPO/target/$BENCH_PROFILE/examples/loadgen}
[[ -x $BIN && -x $LOADGEN ]] || die "no executable at $BIN or $LOADGEN"
BIN_NOTE=$(bin_note)

make_tmp latency
chmod 755 "$TMP"
bench_user_and_files
make_certs latency rsa
VS_PORT=$(free_port)
GW_PORT=$(free_port "$VS_PORT")
write_vsftpd_conf
cat >"$TMP/gateway.yaml" <<EOF2
listeners:
  - name: edge
    bind: "127.0.0.1:$GW_PORT"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { ports: "$GW_PASV", advertise: "127.0.0.1" }
    backend: vs
    limits: { max_sessions: 100000, max_sessions_per_ip: 100000 }
backends:
  - name: vs
    address: "127.0.0.1:$VS_PORT"
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }
limits: { max_sessions: 100000, max_sessions_per_ip: 100000 }
EOF2
check_gateway_config
start_vsftpd
start_gateway
log "vsftpd pid=$VS_PID ftpsgate pid=$GW_PID"
GWB_PID=""
if [[ -n ${FTPSGATE_BIN_B:-} ]]; then
    GWB_PORT=$(free_port "$VS_PORT" "$GW_PORT")
    sed "s/127.0.0.1:$GW_PORT/127.0.0.1:$GWB_PORT/" "$TMP/gateway.yaml" >"$TMP/gateway_b.yaml"
    "$FTPSGATE_BIN_B" run --config "$TMP/gateway_b.yaml" 2>"$TMP/gateway_b.log" &
    GWB_PID=$!
    wait_listen "$GWB_PORT" "$GWB_PID" "ftpsgate B"
    log "ftpsgate B ($FTPSGATE_BIN_B) pid=$GWB_PID"
fi
# The relay floor: `loadgen relay`, a plain TCP copy (no TLS, no FTP) in front of
# vsftpd, adds what any extra process on the path adds (two more wake-ups and two
# more loopback hops per round trip), in the same rounds.
"$LOADGEN" relay --listen 127.0.0.1:0 --to "127.0.0.1:$VS_PORT" >"$TMP/relay.addr" 2>"$TMP/relay.err" &
RELAY_PID=$!
for _ in $(seq 50); do [[ -s $TMP/relay.addr ]] && break; sleep 0.1; done
RELAY_PORT=$(kv listening <"$TMP/relay.addr" | sed 's/.*://')
[[ -n $RELAY_PORT ]] || die "loadgen relay did not start"
cleanup_extra_b() {
    [[ -z $GWB_PID ]] || stop_pid "$GWB_PID" "ftpsgate B"
    stop_pid "$RELAY_PID" "loadgen relay"
}

noop_case() { # noop_case SIDE SESSIONS INTERVAL -> "p50_us p99_us errors cpu_us_per_noop"
    # The gateway's CPU per NOOP (utime+stime over the whole loadgen run, logins
    # included, divided by the NOOPs) is steadier than the latency on a shared machine.
    local port=$VS_PORT out pid="" c0=0 c1=0
    [[ $1 == gateway ]] && { port=$GW_PORT; pid=$GW_PID; }
    [[ $1 == gateway_b ]] && { port=$GWB_PORT; pid=$GWB_PID; }
    [[ $1 == relay ]] && { port=$RELAY_PORT; pid=$RELAY_PID; }
    local perf_pid="" strace_pid="" record_pid=""
    [[ -z $pid ]] || c0=$(cpu_ticks "$pid")
    if [[ -n $pid && ${LAT_PERF:-0} == 1 ]]; then
        perf stat -x, -e task-clock,context-switches,cpu-migrations -p "$pid" -o "$TMP/perf.$1.$2" &
        perf_pid=$!
    fi
    if [[ -n $pid && ${LAT_RECORD:-0} == 1 ]]; then
        perf record -q -e cpu-clock -F 4000 -g -p "$pid" -o "$TMP/perf.data.$1.$2" 2>/dev/null &
        record_pid=$!
    fi
    if [[ -n $pid && ${LAT_STRACE:-0} == 1 ]]; then
        strace -c -f -p "$pid" -o "$TMP/strace.$1.$2" 2>/dev/null &
        strace_pid=$!
        sleep 0.5
    fi
    out=$("$LOADGEN" noop --addr "127.0.0.1:$port" --ca "$TMP/ca.pem" --server-name localhost \
        --user "$BENCH_USER" --pass "$BENCH_PASS" --sessions "$2" --interval "$3" --secs "$LAT_SECS" \
        --timeout 60 --connect-concurrency "$LAT_CONNECT" 2>>"$TMP/loadgen.err") || out=""
    [[ -z $pid ]] || c1=$(cpu_ticks "$pid")
    [[ -z $perf_pid ]] || { kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null || true; }
    [[ -z $strace_pid ]] || { kill -INT "$strace_pid" 2>/dev/null; wait "$strace_pid" 2>/dev/null || true; }
    [[ -z $record_pid ]] || { kill -INT "$record_pid" 2>/dev/null; wait "$record_pid" 2>/dev/null || true; }
    [[ -n $out ]] || { echo "nan nan 1 nan"; return; }
    log "noop $1 sessions=$2: $out"
    [[ -z $perf_pid ]] || perf_line "$1" "$2" "$(kv samples <<<"$out")" >>"$TMP/extra.lines"
    [[ -z $strace_pid ]] || strace_line "$1" "$2" "$(kv samples <<<"$out")" >>"$TMP/extra.lines"
    echo "$(kv p50_us <<<"$out") $(kv p99_us <<<"$out") $(kv errors <<<"$out") $(awk -v d=$((c1 - c0)) -v t="$CLK_TCK" -v n="$(kv samples <<<"$out")" 'BEGIN { if (n > 0) printf "%.1f", d / t / n * 1e6; else print "nan" }')"
}
perf_line() { # perf_line SIDE SESSIONS NOOPS -> the noop_perf line (logins included in the counts)
    awk -F, -v side="$1" -v n="$2" -v noops="$3" '
        $3 ~ /^task-clock/ { tc = $1 } $3 ~ /^context-switches/ { cs = $1 } $3 ~ /^cpu-migrations/ { mig = $1 }
        END { if (noops > 0) printf "noop_perf %s sessions=%s noops=%d task_clock_us_per_noop=%.1f cs_per_noop=%.2f migrations_per_noop=%.3f\n", side, n, noops, tc * 1000 / noops, cs / noops, mig / noops }' \
        "$TMP/perf.$1.$2"
}
strace_line() { # strace_line SIDE SESSIONS NOOPS -> the noop_syscalls line (calls per NOOP, 8 most frequent)
    printf 'noop_syscalls %s sessions=%s noops=%s' "$1" "$2" "$3"
    awk -v noops="$3" '$1 ~ /^[0-9.]+$/ && $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && noops > 0 { printf "%s %.2f\n", $NF, $4 / noops }' \
        "$TMP/strace.$1.$2" | sort -k2,2nr | head -8 | awk '{ printf " %s=%s", $1, $2 } END { printf "\n" }'
}
added() { awk -v g="$1" -v d="$2" 'BEGIN { if (g == "nan" || d == "nan" || g == "" || d == "") print "nan"; else printf "%.0f", g - d }'; }
verdict() { awk -v v="$1" -v l="$2" 'BEGIN { if (v == "nan") print "MISS"; else print (v <= l) ? "PASS" : "MISS" }'; }

header_line latency "vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null)"
echo "# loopback, explicit FTPS both legs (vsftpd require_ssl_reuse); loadgen noop, ${LAT_SECS}s per run, $LAT_ROUNDS round(s) per case"
for conc in "1 0.01" "$LAT_MANY 0.1"; do
    read -r n iv <<<"$conc"
    for r in $(seq "$LAT_ROUNDS"); do
        read -r d50 d99 derr _ < <(noop_case direct "$n" "$iv")
        read -r r50 r99 rerr _ < <(noop_case relay "$n" "$iv")
        read -r g50 g99 gerr gcpu < <(noop_case gateway "$n" "$iv")
        echo "noop_relay_floor sessions=$n round=$r relay_p50=${r50}us relay_p99=${r99}us errors_relay=$rerr relay_added_p50=$(added "$r50" "$d50")us relay_added_p99=$(added "$r99" "$d99")us (plain TCP relay, no TLS)"
        gw_alive
        if [[ -n $GWB_PID ]]; then
            read -r b50 b99 berr bcpu < <(noop_case gateway_b "$n" "$iv")
            echo "noop_latency_b sessions=$n round=$r gateway_b_p50=${b50}us gateway_b_p99=${b99}us errors_gateway_b=$berr added_b_p50=$(added "$b50" "$d50")us added_b_p99=$(added "$b99" "$d99")us gateway_b_cpu_per_noop=${bcpu}us (FTPSGATE_BIN_B=$FTPSGATE_BIN_B)"
        fi
        a50=$(added "$g50" "$d50")
        a99=$(added "$g99" "$d99")
        echo "noop_latency sessions=$n round=$r direct_p50=${d50}us direct_p99=${d99}us gateway_p50=${g50}us gateway_p99=${g99}us errors_direct=$derr errors_gateway=$gerr gateway_cpu_per_noop=${gcpu}us added_p50=${a50}us $(verdict "$a50" 50) added_p99=${a99}us $(verdict "$a99" 500)"
    done
done
[[ ! -s $TMP/extra.lines ]] || cat "$TMP/extra.lines"
sort "$TMP/loadgen.err" 2>/dev/null | uniq -c | sort -rn | head -5 | sed 's/^/[loadgen.err] /' >&2 || true
FAILED=0
exit 0
