#!/usr/bin/env bash
# Kernel pinholes at session rate (listeners[].passive.nftables). See bench/README.md
# ("Kernel pinholes"). Needs root, nft, unshare and ip; runs in a network namespace of
# its own (re-executes itself under `unshare --net`), so its table, sets and ports
# touch nothing outside.
#
# 1. Per-pinhole cost: COUNT add + delete of one set element, forking `nft` twice per
#    pinhole (the old way) and over ftpsgate's netlink code (examples/pinhole_cost).
# 2. Sessions: one ftpsgate with two explicit-FTPS listeners in front of bench_backend,
#    "kern" with kernel pinholes and "user" without, loadgen churn (login, LIST, RETR
#    1 KiB with sha256, QUIT: two pinholes per session) closed loop against each in
#    turn, ROUNDS times (off, on, off, on, ...): sessions/s and gateway CPU per
#    session (utime+stime of ftpsgate and its reaped children, from /proc), medians
#    per mode and their ratio. FTPSGATE_BIN=<a build before netlink> measures the
#    old `nft` fork the same way (the cost lines always use examples/pinhole_cost).
#
# Environment knobs:
#   COUNT         pinholes of the fork cost measurement (default 1000)
#   NL_COUNT      pinholes of the netlink one (default 20000: enough CPU time to
#                 measure; the on-CPU clock is updated at scheduler ticks)
#   ROUNDS        churn rounds per mode (default 3)
#   CHURN_SECS    seconds per churn run (default 10)
#   INFLIGHT      closed-loop concurrency of the churn (default 16)
#   FTPSGATE_BIN, BENCH_NO_BUILD, BENCH_KEEP, BENCH_PROFILE, RUST_LOG   as for scale.sh
set -euo pipefail

if [[ -z ${PINHOLES_NETNS:-} ]]; then
    [[ $(id -u) == 0 ]] || { echo "[pinholes] ERROR: needs root (nftables, network namespace)" >&2; exit 1; }
    command -v unshare >/dev/null || { echo "[pinholes] ERROR: no unshare (util-linux)" >&2; exit 1; }
    PINHOLES_NETNS=1 exec unshare --net -- "$0" "$@"
fi

COUNT=${COUNT:-1000}
NL_COUNT=${NL_COUNT:-20000}
ROUNDS=${ROUNDS:-3}
CHURN_SECS=${CHURN_SECS:-10}
INFLIGHT=${INFLIGHT:-16}
SIZE=1024
LG_TLS=any
LG_TIMEOUT=60
CONNECT_CONCURRENCY=64
# "kern" gets the lower half, "user" the upper half. Both listeners bind and advertise
# their passive ports on 127.0.0.2, and only 127.0.0.2's kern half is filtered:
# bench_backend's own passive ports (49152-65535, on 127.0.0.1) overlap the range.
GW_PASV=55000-55999
KERN_PASV=55000-55499
USER_PASV=55500-55999

BENCH_TAG=pinholes
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
init_loadgen_bench
need_tools "apt-get install nftables iproute2" nft ip
ip link set lo up
raise_nofile

# ---------------------------------------------------------------- 1. build + ruleset
build_loadgen_binaries
COST=$REPO/target/$BENCH_PROFILE/examples/pinhole_cost
[[ -x $COST ]] || die "no executable at $COST"
make_tmp pinholes
cat >"$TMP/ruleset.nft" <<EOF
table inet ftpsgate {
  set pinholes { type ipv4_addr . inet_service; flags timeout; }
  set pinholes6 { type ipv6_addr . inet_service; flags timeout; }
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport $GW_PASV ct state established,related accept
    tcp dport $GW_PASV ip saddr . tcp dport @pinholes accept
    tcp dport $GW_PASV ip6 saddr . tcp dport @pinholes6 accept
    ip daddr 127.0.0.2 tcp dport $KERN_PASV counter drop
  }
}
EOF
nft -f "$TMP/ruleset.nft" || die "cannot load the ruleset"

# ---------------------------------------------------------------- 2. per-pinhole cost
log "per-pinhole cost: $COUNT x (add + delete), fork nft"
FORK_LINE=$("$COST" fork --count "$COUNT")
log "per-pinhole cost: $NL_COUNT x (add + delete), netlink"
NL_LINE=$("$COST" netlink --count "$NL_COUNT")
[[ $(nft list set inet ftpsgate pinholes) != *elements* ]] || die "elements left after the cost runs"

# ---------------------------------------------------------------- 3. processes
seed_ftproot
make_certs pinholes rsa
start_backend
GW_PORT=$(free_port)
USER_PORT=$(free_port "$GW_PORT")
METRICS_PORT=$(free_port "$GW_PORT" "$USER_PORT")
cat >"$TMP/gateway.yaml" <<EOF
listeners:
  - name: kern
    bind: "127.0.0.1:$GW_PORT"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive:
      bind: "127.0.0.2"
      ports: "$KERN_PASV"
      advertise: "127.0.0.2"
      nftables: { table: "inet ftpsgate", set: pinholes, set6: pinholes6, on_error: fail }
    backend: demo
    limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
  - name: user
    bind: "127.0.0.1:$USER_PORT"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { bind: "127.0.0.2", ports: "$USER_PASV", advertise: "127.0.0.2" }
    backend: demo
    limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
backends:
  - name: demo
    address: "$BE_ADDR"
    tls: { mode: none }
limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
timeouts: { connect: 60s, login: 60s, idle: 600s, pinhole: 30s, data_idle: 60s }
metrics: { bind: "127.0.0.1:$METRICS_PORT" }
EOF
check_gateway_config
log "starting ftpsgate: kern 127.0.0.1:$GW_PORT (kernel pinholes), user 127.0.0.1:$USER_PORT"
start_gateway --log-format json
wait_listen "$USER_PORT" "$GW_PID" "ftpsgate (user listener)"
wait_listen "$METRICS_PORT" "$GW_PID" "ftpsgate metrics"
loadgen_sanity # on "kern"
LG_BASE=("${LG_COMMON[@]}")

# ---------------------------------------------------------------- 4. churn, interleaved
churn() { # churn PORT OUTFILE
    local args=("${LG_BASE[@]}")
    args[1]="127.0.0.1:$1" # --addr
    "$LOADGEN" churn "${args[@]}" --rate 0 --secs "$CHURN_SECS" --max-inflight "$INFLIGHT" \
        --file small.bin --size 1024 --sha256 "$SMALL_SHA" --progress 0 >"$2" 2>>"$TMP/loadgen.err"
}
cpu_all() { # utime+stime+cutime+cstime of PID (fields 14-17 of /proc/PID/stat): a
    # gateway that forks nft pays for its (waited-for) children too
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    awk '{print $12 + $13 + $14 + $15}' <<<"$rest"
}
drops() { nft list chain inet ftpsgate input | sed -n 's/.*counter packets \([0-9]*\) .*drop.*/\1/p'; }
declare -A RATES CPUS ERRS
DROPS0=$(drops)
for round in $(seq "$ROUNDS"); do
    for mode in off on; do
        port=$USER_PORT
        [[ $mode == on ]] && port=$GW_PORT
        c0=$(cpu_all "$GW_PID")
        churn "$port" "$TMP/churn.out" || log "loadgen churn exited with $?"
        c1=$(cpu_all "$GW_PID")
        gw_alive
        line=$(grep '^churn ' "$TMP/churn.out" || echo "churn missing")
        ok=$(kv ok <<<"$line"); r=$(kv sessions_per_s <<<"$line"); e=$(kv errors <<<"$line")
        ms=$(awk -v d="$((c1 - c0))" -v t="$CLK_TCK" -v n="${ok:-0}" 'BEGIN { if (n > 0) printf "%.3f", d / t * 1000 / n; else print "nan" }')
        log "round $round kernel_pinholes=$mode: ${r:-?} sessions/s, errors=${e:-?}, gateway cpu ${ms} ms/session"
        RATES[$mode]+="${r:-nan} " CPUS[$mode]+="$ms " ERRS[$mode]+="${e:-nan} "
        sleep 1
    done
done
DROPS1=$(drops)
wait_no_sessions 100 || true
sleep 1
nft list set inet ftpsgate pinholes >"$TMP/set-after.txt"
LEFT=$(grep -o "expires" "$TMP/set-after.txt" | wc -l || true)

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
R_OFF=$(median <<<"${RATES[off]}"); R_ON=$(median <<<"${RATES[on]}")
C_OFF=$(median <<<"${CPUS[off]}"); C_ON=$(median <<<"${CPUS[on]}")

# ---------------------------------------------------------------- 5. report
header_line pinholes "" "rounds=$ROUNDS churn=${CHURN_SECS}s inflight=$INFLIGHT"
echo "$FORK_LINE"
echo "$NL_LINE"
echo "churn kernel_pinholes=off sessions_per_s=$R_OFF cpu_ms_per_session=$C_OFF runs_sessions_per_s=[${RATES[off]% }] runs_cpu_ms=[${CPUS[off]% }] errors=[${ERRS[off]% }]"
echo "churn kernel_pinholes=on  sessions_per_s=$R_ON cpu_ms_per_session=$C_ON runs_sessions_per_s=[${RATES[on]% }] runs_cpu_ms=[${CPUS[on]% }] errors=[${ERRS[on]% }]"
awk -v a="$R_ON" -v b="$R_OFF" -v c="$C_ON" -v d="$C_OFF" \
    'BEGIN { printf "ratio_on_off sessions_per_s=%.3f cpu_per_session=%.3f\n", a / b, c / d }'
echo "kernel drops_during_churn=$((DROPS1 - DROPS0)) elements_left=$LEFT"
gateway_log_report
FAILED=0
