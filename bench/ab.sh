#!/usr/bin/env bash
# A/B relay CPU of ftpsgate binaries in one run: curl -> ftpsgate -> vsftpd, explicit
# FTPS with PROT P on both legs, one gateway per binary in front of the same vsftpd.
# Downloads and uploads are interleaved (A, B, A, B, ... with the order rotated each
# round) so that load from other processes hits every binary alike. The figure is the
# gateway's CPU time per 256 MiB (`perf stat -e task-clock -p PID` around the transfer,
# ns; /proc/PID/stat clock ticks without perf), median over the rounds, next to the
# AES-GCM floor measured in the same run. See bench/README.md.
#
#   sudo ./bench/ab.sh old=/tmp/ftpsgate.old new=target/release/ftpsgate
#
# Environment: AB_ROUNDS (default 5), BENCH_MIB (default 256), BENCH_KEEP=1,
# AB_EVENTS (more perf events per transfer, logged; e.g. syscalls:sys_enter_writev),
# AB_PORT_BASE/AB_PORT_SPAN (listening ports, default 20000/20000), AB_VS_PASV
# (vsftpd's passive range, default 51000-51099), AB_GW_PASV_LO (first of the
# gateways' passive ports, 100 each, default 52000; AB_GW_PASV_SPAN ports kept
# free for them, default 1000): on a shared machine, e.g. AB_VS_PASV=30000-30099
# AB_GW_PASV_LO=30100 AB_GW_PASV_SPAN=200 AB_PORT_BASE=30400 AB_PORT_SPAN=600.
set -euo pipefail

ROUNDS=${AB_ROUNDS:-5}
BIG_MIB=${BENCH_MIB:-256}
BIG_BYTES=$((BIG_MIB * 1024 * 1024))
BENCH_USER=ftpsgatebench
BENCH_PASS=ftpsgatebench-pw
VS_PASV=${AB_VS_PASV:-51000-51099}
GW_PASV_LO=${AB_GW_PASV_LO:-52000}
GW_PASV="$GW_PASV_LO-$((GW_PASV_LO + ${AB_GW_PASV_SPAN:-1000} - 1))"   # each gateway gets 100 ports of it

BENCH_TAG=ab
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
STOP_SECS=5
PORT_BASE=${AB_PORT_BASE:-$PORT_BASE}
PORT_SPAN=${AB_PORT_SPAN:-20000}
FAIL_LOGS=(vsftpd.log vsftpd.stderr)

[[ $(id -u) -eq 0 ]] || die "must run as root (creates user $BENCH_USER, runs vsftpd)"
need_tools "(apt-get install -y vsftpd curl)" vsftpd curl openssl sha256sum ss useradd chpasswd
(($# >= 1)) || die "usage: $0 NAME=BINARY [NAME=BINARY...]"

NAMES=()
declare -A BINS PIDS PORTS
for arg in "$@"; do
    name=${arg%%=*}
    bin=${arg#*=}
    [[ -x $bin ]] || die "no executable at $bin"
    NAMES+=("$name")
    BINS[$name]=$(realpath "$bin")
done
BIN=${BINS[${NAMES[0]}]}

make_tmp ab
chmod 755 "$TMP"
bench_user_and_files
make_certs bench rsa
VS_PORT=$(free_port)
write_vsftpd_conf
start_vsftpd

GW_PIDS=()
cleanup_extra() {
    local p
    for p in "${GW_PIDS[@]}"; do stop_pid "$p" ftpsgate; done
    if [[ -n $VS_PID ]]; then
        for p in $(ps -o pid= --ppid "$VS_PID" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    fi
}

i=0
for name in "${NAMES[@]}"; do
    port=$(free_port "$VS_PORT" "${PORTS[@]}")
    lo=$((GW_PASV_LO + 100 * i))
    cat >"$TMP/gateway-$name.yaml" <<EOF
listeners:
  - name: edge
    bind: "127.0.0.1:$port"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { ports: "$lo-$((lo + 99))", advertise: "127.0.0.1" }
    backend: vs
backends:
  - name: vs
    address: "127.0.0.1:$VS_PORT"
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }
EOF
    "${BINS[$name]}" check --config "$TMP/gateway-$name.yaml" >&2 || die "$name: check rejected the config"
    "${BINS[$name]}" run --config "$TMP/gateway-$name.yaml" 2>"$TMP/gateway-$name.log" &
    PIDS[$name]=$!
    GW_PIDS+=("$!")
    PORTS[$name]=$port
    wait_listen "$port" "${PIDS[$name]}" "ftpsgate $name"
    FAIL_LOGS+=("gateway-$name.log")
    i=$((i + 1))
done

CURL=(curl --ssl-reqd --cacert "$TMP/ca.pem" -s -S --user "$BENCH_USER:$BENCH_PASS")
for name in "${NAMES[@]}"; do
    got=$("${CURL[@]}" "ftp://localhost:${PORTS[$name]}/big.bin" -o - | sha256sum | cut -d' ' -f1)
    [[ $got == "$BIG_SHA" ]] || die "$name: download checksum mismatch"
done

measure() { # measure NAME download|upload -> CPU seconds of that gateway for one transfer
    local name=$1 kind=$2 pid=${PIDS[$1]} c0 c1 got ms perf_pid=""
    if [[ $HAVE_PERF == 1 ]]; then
        perf stat -e "task-clock${AB_EVENTS:+,$AB_EVENTS}" -x, -p "$pid" -o "$TMP/task-clock" &
        perf_pid=$!
        sleep 0.3          # attached before the transfer starts
    fi
    c0=$(cpu_ns "$pid")
    if [[ $kind == download ]]; then
        "${CURL[@]}" -o /dev/null "ftp://localhost:${PORTS[$name]}/big.bin" || die "$name: download failed"
    else
        "${CURL[@]}" -T "$FTPROOT/big.bin" "ftp://localhost:${PORTS[$name]}/up-$name.bin" || die "$name: upload failed"
    fi
    c1=$(cpu_ns "$pid")
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        ms=$(awk -F, '$3 == "task-clock" { print $1 }' "$TMP/task-clock")
        # AB_EVENTS: further perf events counted per transfer, in the log.
        [[ -z ${AB_EVENTS:-} ]] || log "$name $kind events: $(awk -F, '$3 != "task-clock" && $3 != "" { printf "%s=%s ", $3, $1 }' "$TMP/task-clock")"
    else
        ms=$(awk -v d=$((c1 - c0)) 'BEGIN { print d / 1e6 }')
    fi
    kill -0 "$pid" 2>/dev/null || die "ftpsgate $name died"
    log "$name $kind: ${ms} ms"
    if [[ $kind == upload ]]; then
        got=$(sha256sum "$FTPROOT/up-$name.bin" | cut -d' ' -f1)
        [[ $got == "$BIG_SHA" ]] || die "$name: upload checksum mismatch"
        rm -f "$FTPROOT/up-$name.bin"
    fi
    awk -v ms="$ms" -v m="$BIG_MIB" 'BEGIN { printf "%.4f\n", ms / 1e3 * 256 / m }'
}

median() { sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }

HAVE_PERF=0
if command -v perf >/dev/null && perf stat -e task-clock -x, -o /dev/null true 2>/dev/null; then
    HAVE_PERF=1
fi
declare -A DL UL
AES256=$(aes_gcm_mibs 256)
AES128=$(aes_gcm_mibs 128)
for r in $(seq "$ROUNDS"); do
    n=${#NAMES[@]}
    for k in $(seq 0 $((n - 1))); do
        name=${NAMES[$(((k + r) % n))]}
        v=$(measure "$name" download) || exit 1
        DL[$name]+="$v "
        v=$(measure "$name" upload) || exit 1
        UL[$name]+="$v "
    done
    log "round $r done"
done
AES256_END=$(aes_gcm_mibs 256)
AES128_END=$(aes_gcm_mibs 128)

floor() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", 256 / ((a + b) / 2) * 2 }'; }
F256=$(floor "$AES256" "$AES256_END")
F128=$(floor "$AES128" "$AES128_END")
echo "# ftpsgate ab $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpus=$(nproc)  loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)  rounds=$ROUNDS  file=${BIG_MIB}MiB"
echo "aes_gcm_floor openssl_16KiB aes256=${AES256}/${AES256_END}MiB/s aes128=${AES128}/${AES128_END}MiB/s (start/end) relay_floor_per_256MiB aes256=${F256}s aes128=${F128}s (one decrypt + one encrypt)"
for name in "${NAMES[@]}"; do
    dl=$(printf '%s\n' ${DL[$name]} | median)
    ul=$(printf '%s\n' ${UL[$name]} | median)
    echo "ab $name download=${dl}s/256MiB upload=${ul}s/256MiB download_runs=[${DL[$name]% }] upload_runs=[${UL[$name]% }] bin=${BINS[$name]}"
done
FAILED=0
