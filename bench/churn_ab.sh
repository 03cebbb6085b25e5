#!/usr/bin/env bash
# A/B of two gateway binaries (or one binary under two environments, through wrapper
# scripts) in front of one bench_backend, no root needed: gateway A = $BIN_A, gateway
# B = $BIN_B, the same YAML apart from ports, runs interleaved A, B, A, B, …
#
#   MODE=churn (default): closed-loop short sessions (login, PBSZ/PROT, LIST, RETR
#     1 KiB, QUIT), INFLIGHT (64) in flight for SECS (15) s, ROUNDS (3) rounds:
#     `churn A|B cpu_ms_per_session=… <loadgen churn line>`
#   MODE=xfer: 20 downloads of 1 MiB at once, then one of 256 MiB, per round:
#     `xfer20|xfer1 A|B cpu_ms_per_MiB=… <loadgen transfers line>`
# Gateway CPU: the sum of its threads' sum_exec_runtime (/proc/PID/task/*/schedstat),
# as bench/guard.sh. Binaries: LOADGEN_BIN, BACKEND (default target/release/examples/).
#
#   BIN_A=/tmp/ftpsgate.before BIN_B=target/release/ftpsgate ./bench/churn_ab.sh
set -euo pipefail
CONNECT_CONCURRENCY=50; LG_TLS=any; LG_TIMEOUT=60; KEY_ALG=${KEY_ALG:-ec}; SIZE=1024
GW_PASV=${GW_PASV:-55200-55999}
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-15}; INFLIGHT=${INFLIGHT:-64}
BENCH_TAG=churn_ab
BENCH_PROFILE=release
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[[ -x ${BIN_A:-} && -x ${BIN_B:-} ]] || die "set BIN_A and BIN_B to two ftpsgate executables"
init_loadgen_bench
raise_nofile
BIN=$BIN_A
LOADGEN=${LOADGEN_BIN:-$REPO/target/release/examples/loadgen}
BACKEND=${BACKEND:-$REPO/target/release/examples/bench_backend}
BIN_NOTE=ab
make_tmp churnab
seed_ftproot
make_certs churnab "$KEY_ALG"
start_backend
start_gateway_demo
A_PID=$GW_PID; A_PORT=$GW_PORT
B_PORT=$(free_port "$GW_PORT" "$METRICS_PORT"); BM=$(free_port "$GW_PORT" "$METRICS_PORT" "$B_PORT")
sed -e "s/127.0.0.1:$GW_PORT/127.0.0.1:$B_PORT/" -e "s/127.0.0.1:$METRICS_PORT/127.0.0.1:$BM/" "$TMP/gateway.yaml" >"$TMP/gateway_b.yaml"
"$BIN_B" --log-format json run --config "$TMP/gateway_b.yaml" 2>"$TMP/gateway_b.log" &
B_PID=$!
wait_listen "$B_PORT" "$B_PID" "gateway B"
cleanup_extra() { stop_pid "$B_PID" "gateway B"; }
loadgen_sanity
cpu() { local ns=0 t v; for t in /proc/"$1"/task/*; do read -r v _ <"$t/schedstat" 2>/dev/null || continue; ns=$((ns+v)); done; echo $ns; }
one() { # one NAME PID PORT
  local a b out
  a=$(cpu "$2")
  out=$("$LOADGEN" churn --addr "127.0.0.1:$3" --ca "$TMP/ca.pem" --server-name localhost --connect-concurrency 50 --timeout 60 \
     --rate 0 --max-inflight "$INFLIGHT" --secs "$SECS" --file small.bin --size 1024 --sha256 "$SMALL_SHA" --progress 0 2>>"$TMP/loadgen.err")
  sleep 0.5; b=$(cpu "$2")
  echo "churn $1 $(awk -v d=$((b-a)) -v n="$(kv ok <<<"$out")" 'BEGIN{printf "cpu_ms_per_session=%.3f", d/1e6/n}') $out"
}
xfer() { # xfer NAME PID PORT SESSIONS FILE SIZE SHA
  local a b out
  a=$(cpu "$2")
  out=$("$LOADGEN" transfers --addr "127.0.0.1:$3" --ca "$TMP/ca.pem" --server-name localhost --connect-concurrency 50 --timeout 120 \
     --sessions "$4" --file "$5" --size "$6" --sha256 "$7" 2>>"$TMP/loadgen.err")
  sleep 0.5; b=$(cpu "$2")
  echo "xfer$4 $1 $(awk -v d=$((b-a)) -v m="$(( $4 * $6 / 1048576 ))" 'BEGIN{printf "cpu_ms_per_MiB=%.3f", d/1e6/m}') $out"
}
if [[ ${MODE:-churn} == churn ]]; then
  for r in $(seq "$ROUNDS"); do one A "$A_PID" "$A_PORT"; one B "$B_PID" "$B_PORT"; done
else
  head -c $((1024*1024)) /dev/urandom >"$FTPROOT/m1.bin"; M1=$(sha256sum "$FTPROOT/m1.bin" | cut -d' ' -f1)
  head -c $((256*1024*1024)) /dev/urandom >"$FTPROOT/big.bin"; BIG=$(sha256sum "$FTPROOT/big.bin" | cut -d' ' -f1)
  for r in $(seq "$ROUNDS"); do
    xfer A "$A_PID" "$A_PORT" 20 m1.bin 1048576 "$M1"; xfer B "$B_PID" "$B_PORT" 20 m1.bin 1048576 "$M1"
    xfer A "$A_PID" "$A_PORT" 1 big.bin $((256*1024*1024)) "$BIG"; xfer B "$B_PID" "$B_PORT" 1 big.bin $((256*1024*1024)) "$BIG"
  done
fi
FAILED=0
