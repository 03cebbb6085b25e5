#!/usr/bin/env bash
# DMZ mode benchmark (issue 22): curl -> ftpsgate -> vsftpd (GATEWAY, the gateway
# connects directly) versus curl -> edge -> tunnel -> connector -> vsftpd (TUNNEL,
# once per transport: QUIC and HTTP/2), explicit FTPS with require_ssl_reuse on
# both legs, loopback only. Rounds interleave the cases (gateway, each transport,
# gateway, ...), every case's processes started afresh per round. Reports MiB/s
# (median of BENCH_RUNS) for a big download and upload and the CPU seconds the
# gateway processes (edge + connector for TUNNEL) spent per GiB.
#
# Needs root (creates the local user `ftpsgatebench`), vsftpd, curl, openssl.
#   FTPSGATE_BIN   use this binary instead of `cargo build --release`
#   BENCH_RUNS     runs per case (default 3)
#   BENCH_MIB      size of the big file in MiB (default 256)
#   DMZ_TRANSPORTS tunnel transports measured (default "quic h2")
#   DMZ_PORTS      first of 1000 ports to use (passive ranges and free_port
#                  inside them); default: passive 51000-51299/52000-52299, the
#                  rest from free_port's default range
#   DMZ_PASV_PORTS passive ports per side (default 300, at most 300)
#   DMZ_SESSIONS   sessions held over the one connector while a fast download
#                  runs (default 200; 0 skips this part): DMZ_SLOW of them
#                  download a DMZ_SLOW_MIB file at DMZ_SLOW_RATE (curl
#                  --limit-rate; default 80, 2 MiB, 64k: 300 passive ports
#                  per side are ours, see VS_PASV), the rest are logged in and idle
#                  (loadgen idle). Reports the fast download alone and under
#                  that load, and whether every slow download was complete;
#                  once per transport.
#   LOADGEN_BIN    loadgen binary (default target/package-test/examples/loadgen)
#   DMZ_BINS       A/B of tunnel builds in the same run: "LABEL=PATH ..." (each
#                  tunnel case runs once per binary, cases tunnel-T-LABEL,
#                  interleaved per round; the direct gateway runs FTPSGATE_BIN)
#   DMZ_PERF       a directory: `perf record -g` the edge and the connector of
#                  every tunnel case during its transfers (CASE-edge.data,
#                  CASE-connector.data, one pair per round, numbered);
#                  DMZ_PERF_TRACE=1: `perf stat` of syscalls (counts) instead
#   RELAY_FLOOR_BIN  examples/relay_floor (default target/release/examples/
#                  relay_floor): the floors priced in the dmz_floor lines
#
# The floor (dmz_floor lines, bench/README.md "The floor, counted"): what the
# direct gateway and the tunnel cannot avoid per byte, counted from the code and
# priced with examples/relay_floor.rs in the same run: AES-GCM passes (ring, 16 KiB
# records) and TCP relays (one recv + one send between two loopback sockets).
#   direct: client TLS + backend TLS = 2 AEAD passes, 1 relay (client <-> backend
#           socket, in the gateway);
#   tunnel: the edge's client TLS + backend TLS + tunnel TLS, the connector's
#           tunnel TLS = 4 AEAD passes; 2 relays (edge: client <-> tunnel socket;
#           connector: tunnel <-> backend socket).
set -euo pipefail

RUNS=${BENCH_RUNS:-3}
BIG_MIB=${BENCH_MIB:-256}
BIG_BYTES=$((BIG_MIB * 1024 * 1024))
BENCH_USER=ftpsgatebench
BENCH_PASS=ftpsgatebench-pw
# 300 passive ports per side for at most DMZ_SLOW + 1 concurrent transfers:
# vsftpd picks a random port of its range and gives up after 10 tries that
# find it in use ("500 OOPS: vsf_sysutil_bind, maximum number of attempts to
# find a listening port exceeded", sent in clear text on the TLS control
# connection: the edge's TLS client logs "received corrupt message of type
# InvalidContentType"). With 81 transfers in 100 ports that failed one PASV
# in a few hundred near the end (bench/README.md, DMZ fairness).
PASV_N=${DMZ_PASV_PORTS:-300}
((PASV_N >= 1 && PASV_N <= 300)) || { echo "DMZ_PASV_PORTS must be 1..300" >&2; exit 1; }
VS_PASV="51000-$((51000 + PASV_N - 1))"
GW_PASV="52000-$((52000 + PASV_N - 1))"
if [[ -n ${DMZ_PORTS:-} ]]; then
    VS_PASV="$DMZ_PORTS-$((DMZ_PORTS + PASV_N - 1))"
    GW_PASV="$((DMZ_PORTS + 300))-$((DMZ_PORTS + 300 + PASV_N - 1))"
fi
TRANSPORTS=${DMZ_TRANSPORTS:-quic h2}

BENCH_TAG=dmz
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
STOP_SECS=5
PORT_SPAN=20000
if [[ -n ${DMZ_PORTS:-} ]]; then
    PORT_BASE=$((DMZ_PORTS + 600))
    PORT_SPAN=400
fi
FAIL_LOGS=(gateway.log connector.log vsftpd.log)

[[ $(id -u) -eq 0 ]] || die "must run as root (creates user $BENCH_USER, runs vsftpd)"
need_tools "(apt-get install -y vsftpd curl)" vsftpd curl openssl sha256sum ss getconf useradd chpasswd

[[ -n ${FTPSGATE_BIN:-} ]] || cargo_build
BIN=${FTPSGATE_BIN:-$REPO/target/release/ftpsgate}
[[ -x $BIN ]] || die "no executable at $BIN"
DIRECT_BIN=$BIN
# Tunnel builds measured: "LABEL=PATH ..." (LABEL empty: the one binary).
read -ra BINS <<<"${DMZ_BINS:-=$BIN}"
for b in "${BINS[@]}"; do [[ -x ${b#*=} ]] || die "no executable at ${b#*=}"; done
case_name() { # case_name TRANSPORT LABEL_EQ_PATH -> tunnel-T or tunnel-T-LABEL
    local l=${2%%=*}
    echo "tunnel-$1${l:+-$l}"
}

make_tmp dmz
chmod 755 "$TMP"
id "$BENCH_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$BENCH_USER"
echo "$BENCH_USER:$BENCH_PASS" | chpasswd
FTPROOT=$TMP/ftp
mkdir -p "$FTPROOT" "$TMP/empty"
chmod 755 "$TMP/empty"
head -c "$BIG_BYTES" /dev/urandom >"$FTPROOT/big.bin"
SESSIONS=${DMZ_SESSIONS:-200}
SLOW=${DMZ_SLOW:-80}
((SLOW <= SESSIONS)) || SLOW=$SESSIONS
SLOW_RATE=${DMZ_SLOW_RATE:-64k}
head -c "$((${DMZ_SLOW_MIB:-2} * 1024 * 1024))" /dev/urandom >"$FTPROOT/slow.bin"
SLOW_SHA=$(sha256sum "$FTPROOT/slow.bin" | cut -d' ' -f1)
LOADGEN=${LOADGEN_BIN:-$REPO/target/package-test/examples/loadgen}
if ((SESSIONS > 0)); then [[ -x $LOADGEN ]] || die "no loadgen at $LOADGEN (cargo build --profile package-test --examples)"; fi
chown -R "$BENCH_USER:" "$FTPROOT"
BIG_SHA=$(sha256sum "$FTPROOT/big.bin" | cut -d' ' -f1)

make_certs dmz ec
# The connector's client certificate, from the same throw-away CA.
(
    cd "$TMP"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=connector" \
        -keyout conn.key -out conn.csr
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >conn.ext
    openssl x509 -req -in conn.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile conn.ext -out conn.pem
) >/dev/null 2>&1 || die "connector certificate failed"

VS_PORT=$(free_port)
GW_PORT=$(free_port "$VS_PORT")
TUNNEL_PORT=$(free_port "$VS_PORT" "$GW_PORT")
cat >"$TMP/vsftpd.conf" <<EOF
background=NO
listen=YES
listen_address=127.0.0.1
listen_port=$VS_PORT
isolate=NO
isolate_network=NO
seccomp_sandbox=NO
secure_chroot_dir=$TMP/empty
pam_service_name=vsftpd
local_enable=YES
write_enable=YES
local_root=$FTPROOT
pasv_min_port=${VS_PASV%-*}
pasv_max_port=${VS_PASV#*-}
ssl_enable=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
max_clients=0
max_per_ip=0
ssl_ciphers=HIGH
debug_ssl=YES
xferlog_enable=YES
xferlog_std_format=NO
rsa_cert_file=$TMP/leaf.pem
rsa_private_key_file=$TMP/leaf.key
vsftpd_log_file=$TMP/vsftpd.log
EOF
vsftpd "$TMP/vsftpd.conf" >"$TMP/vsftpd.stderr" 2>&1 &
VS_PID=$!
wait_listen "$VS_PORT" "$VS_PID" vsftpd

listener="limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000, max_unauthenticated_per_ip: 1000000 }
listeners:
  - name: edge
    bind: \"127.0.0.1:$GW_PORT\"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { ports: \"$GW_PASV\", advertise: \"127.0.0.1\", max_per_client: \"100%\" }
    backend: vs"
direct_yaml="$listener
backends:
  - name: vs
    address: \"127.0.0.1:$VS_PORT\"
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }"
tunnel_yaml() { # tunnel_yaml TRANSPORT
    echo "$listener
backends:
  - name: vs
    via: lan
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }
tunnels:
  - name: lan
    listen: \"127.0.0.1:$TUNNEL_PORT\"
    transport: $1
    tls: { cert: leaf.pem, key: leaf.key, client_ca: ca.pem }"
}
connector_yaml() { # connector_yaml TRANSPORT
    cat <<EOF
connect:
  - edge: "127.0.0.1:$TUNNEL_PORT"
    server_name: localhost
    transport: $1
    tls: { cert: conn.pem, key: conn.key, ca: ca.pem }
    backends:
      - { name: vs, address: "127.0.0.1:$VS_PORT" }
EOF
}

CURL=(curl --ssl-reqd --cacert "$TMP/ca.pem" -s -S --user "$BENCH_USER:$BENCH_PASS")
median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

# One round of CASE: a download and an upload of big.bin, SHA-256 checked; appends
# the MiB/s to $TMP/CASE.down / .up and the CPU ticks of PIDS to $TMP/CASE.ticks.
measure() { # measure CASE PIDS...
    local case=$1 out t0 t1 got down up j s0=() split=""
    shift
    for j in "$@"; do s0+=("$(cpu_ticks "$j")"); done
    local perf=() names=(edge connector)
    if [[ -n ${DMZ_PERF:-} && $# -eq 2 ]]; then
        mkdir -p "$DMZ_PERF"
        for j in 0 1; do
            local pids_=("$@")
            if [[ ${DMZ_PERF_TRACE:-0} == 1 ]]; then # syscall counts instead of a profile
                local ev=()
                for e in read readv recvfrom recvmsg recvmmsg write writev sendto sendmsg sendmmsg epoll_wait futex mmap munmap madvise brk; do
                    ev+=(-e "syscalls:sys_enter_$e")
                done
                perf stat "${ev[@]}" -p "${pids_[$j]}" -o "$DMZ_PERF/$case-${names[$j]}-$(date +%s).trace" 2>/dev/null &
            else
                perf record -q -g -p "${pids_[$j]}" -o "$DMZ_PERF/$case-${names[$j]}-$(date +%s).data" 2>/dev/null &
            fi
            perf+=($!)
        done
        sleep 0.5
    fi
    t0=$(ticks "$@")
    out=$("${CURL[@]}" -o "$TMP/got.bin" -w '%{speed_download}' "ftp://localhost:$GW_PORT/big.bin") || die "$case download failed"
    got=$(sha256sum "$TMP/got.bin" | cut -d' ' -f1)
    [[ $got == "$BIG_SHA" ]] || die "$case download corrupted"
    down=$(awk -v s="$out" 'BEGIN { print s / 1048576 }')
    out=$("${CURL[@]}" -T "$TMP/got.bin" -w '%{speed_upload}' "ftp://localhost:$GW_PORT/up-$case.bin") || die "$case upload failed"
    got=$(sha256sum "$FTPROOT/up-$case.bin" | cut -d' ' -f1)
    [[ $got == "$BIG_SHA" ]] || die "$case upload corrupted"
    rm -f "$FTPROOT/up-$case.bin"
    up=$(awk -v s="$out" 'BEGIN { print s / 1048576 }')
    t1=$(ticks "$@")
    for j in "${perf[@]}"; do kill -INT "$j" 2>/dev/null || true; done
    for j in "${perf[@]}"; do wait "$j" 2>/dev/null || true; done
    # Per process (edge, connector), to see which side pays.
    local pids=("$@")
    for j in "${!pids[@]}"; do
        split+=" $(($(cpu_ticks "${pids[$j]}") - s0[j]))"
        echo $(($(cpu_ticks "${pids[$j]}") - s0[j])) >>"$TMP/$case.ticks.$j"
    done
    echo "$down" >>"$TMP/$case.down"
    echo "$up" >>"$TMP/$case.up"
    echo $((t1 - t0)) >>"$TMP/$case.ticks"
    log "$case: down $down MiB/s, up $up MiB/s, $((t1 - t0)) ticks (per process:$split)"
}
summary() { # summary CASE -> "CASE down_mib_s=.. up_mib_s=.. cpu_s_per_gib=.."
    local case=$1
    awk -v c="$case" -v d="$(median <"$TMP/$case.down")" -v u="$(median <"$TMP/$case.up")" \
        -v t="$(awk '{ t += $1 } END { print t }' "$TMP/$case.ticks")" -v hz="$CLK_TCK" \
        -v gib="$(awk -v r="$RUNS" -v m="$BIG_MIB" 'BEGIN { print 2 * r * m / 1024 }')" \
        'BEGIN { printf "%s down_mib_s=%.1f up_mib_s=%.1f cpu_s_per_gib=%.2f\n", c, d, u, t / hz / gib }'
}

start_direct() {
    echo "$direct_yaml" >"$TMP/gateway.yaml"
    BIN=$DIRECT_BIN start_gateway
}
start_tunnel() { # start_tunnel TRANSPORT -> edge (GW_PID) and connector (BE_PID), a listing works
    tunnel_yaml "$1" >"$TMP/gateway.yaml"
    connector_yaml "$1" >"$TMP/connector.yaml"
    start_gateway
    "$BIN" run --config "$TMP/connector.yaml" 2>"$TMP/connector.log" &
    BE_PID=$!
    for _ in $(seq 50); do
        if "${CURL[@]}" "ftp://localhost:$GW_PORT/" >/dev/null 2>&1; then
            grep -o 'suite=[A-Z0-9_]\+' "$TMP/gateway.log" >>"$TMP/suites" || true
            return
        fi
        sleep 0.2
    done
    die "tunnel ($1) never carried a listing"
}
stop_all() {
    stop_pid "$BE_PID" connector
    BE_PID=
    stop_pid "$GW_PID" ftpsgate
    GW_PID=
}

for i in $(seq "$RUNS"); do
    log "round $i of $RUNS"
    start_direct
    measure gateway "$GW_PID"
    stop_all
    for t in $TRANSPORTS; do
        for b in "${BINS[@]}"; do
            BIN=${b#*=} start_tunnel "$t"
            measure "$(case_name "$t" "$b")" "$GW_PID" "$BE_PID"
            stop_all
        done
    done
done
DIRECT=$(summary gateway)
TUNNELS=()
for t in $TRANSPORTS; do
    for b in "${BINS[@]}"; do TUNNELS+=("$(summary "$(case_name "$t" "$b")")"); done
done

LOADS=()
for t in $TRANSPORTS; do
    if ((SESSIONS > 0)); then
        BIN=${BINS[-1]#*=} start_tunnel "$t" # the last of DMZ_BINS
        fast() { # one big download -> MiB/s
            local out got
            out=$("${CURL[@]}" -o "$TMP/got.bin" -w '%{speed_download}' "ftp://localhost:$GW_PORT/big.bin") || die "fast download failed"
            got=$(sha256sum "$TMP/got.bin" | cut -d' ' -f1)
            [[ $got == "$BIG_SHA" ]] || die "fast download corrupted"
            awk -v s="$out" 'BEGIN { printf "%.1f", s / 1048576 }'
        }
        logins() { grep -c "logged in" "$TMP/gateway.log" || true; }
        ALONE=$(fast)
        log "fast download alone: $ALONE MiB/s"
        BASE=$(logins)
        IDLE=$((SESSIONS - SLOW))
        if ((IDLE > 0)); then
            "$LOADGEN" idle --addr "127.0.0.1:$GW_PORT" --ca "$TMP/ca.pem" --user "$BENCH_USER" --pass "$BENCH_PASS" \
                --sessions "$IDLE" --connect-concurrency 50 >"$TMP/idle.out" 2>"$TMP/idle.err" &
            LG_PID=$!
        fi
        mkdir -p "$TMP/slow"
        SLOW_PIDS=()
        for i in $(seq "$SLOW"); do
            ("${CURL[@]}" --limit-rate "$SLOW_RATE" "ftp://localhost:$GW_PORT/slow.bin" | sha256sum | cut -d' ' -f1 >"$TMP/slow/$i") 2>"$TMP/slow/$i.err" &
            SLOW_PIDS+=($!)
        done
        # Until every session is logged in (the gateway's log counts them).
        for _ in $(seq 120); do
            (($(logins) - BASE >= SESSIONS)) && break
            sleep 0.5
        done
        LOGGED=$(($(logins) - BASE))
        log "$t: $LOGGED of $SESSIONS sessions logged in; fast download under load"
        LOADED=$(fast)
        log "fast download under load: $LOADED MiB/s"
        ok=0
        for i in "${!SLOW_PIDS[@]}"; do
            wait "${SLOW_PIDS[$i]}" || true
            if [[ $(cat "$TMP/slow/$((i + 1))") == "$SLOW_SHA" ]]; then
                ok=$((ok + 1))
            else
                log "$t: slow download $((i + 1)) incomplete: $(tr '\n' ' ' <"$TMP/slow/$((i + 1)).err")"
            fi
        done
        if [[ -n ${LG_PID:-} ]]; then
            kill -INT "$LG_PID" 2>/dev/null || true
            wait "$LG_PID" || true
            LG_PID=
        fi
        stop_all
        # Kept with BENCH_KEEP=1 (the next start overwrites gateway.log).
        cp "$TMP/gateway.log" "$TMP/load-$t.gateway.log"
        cp "$TMP/connector.log" "$TMP/load-$t.connector.log"
        cp -r "$TMP/slow" "$TMP/load-$t.slow"
        rm -rf "$TMP/slow"
        LOADS+=("load-$t sessions=$SESSIONS logged_in=$LOGGED slow=$SLOW slow_rate=$SLOW_RATE slow_ok=$ok fast_alone_mib_s=$ALONE fast_loaded_mib_s=$LOADED")
    fi
done

echo "# ftpsgate DMZ benchmark $(date -u +%FT%TZ) ${BIG_MIB} MiB x $RUNS, $(nproc) CPUs"
echo "$DIRECT"
printf '%s\n' "${TUNNELS[@]}"
kv() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
for line in "${TUNNELS[@]}"; do
    for k in down_mib_s up_mib_s cpu_s_per_gib; do
        awk -v c="${line%% *}" -v k="$k" -v a="$(kv "$k" <<<"$DIRECT")" -v b="$(kv "$k" <<<"$line")" \
            'BEGIN { printf "ratio %s %s/gateway=%.2f\n", k, c, b / a }'
    done
done
for line in "${LOADS[@]}"; do
    echo "$line"
    awk -v c="${line%% *}" -v a="$(kv fast_alone_mib_s <<<"$line")" -v b="$(kv fast_loaded_mib_s <<<"$line")" \
        'BEGIN { printf "ratio %s fast download loaded/alone=%.2f\n", c, b / a }'
done
# ---------------------------------------------------------------- the floor (same run)
# Priced with examples/relay_floor.rs: ring's AES-GCM (what rustls runs here; 16 KiB
# records, one core) and a plain read/write relay between two loopback sockets. The
# ciphers: curl -> listener TLS 1.3 AES-256-GCM (curl's order); gateway/edge ->
# vsftpd from vsftpd's debug_ssl log (AES-128-GCM first, tls::backend_provider);
# the tunnel's TLS 1.3 (both ends rustls + ring, the client's order honoured:
# AES-256-GCM; the edge logs the suite of an HTTP/2 tunnel, QUIC uses the same).
RELAY_FLOOR_BIN=${RELAY_FLOOR_BIN:-$REPO/target/release/examples/relay_floor}
gib_s() { awk -v m="$1" 'BEGIN { if (m + 0 > 0) printf "%.4f", 1024 / m; else print "nan" }'; } # MiB/s -> s/GiB
if [[ -x $RELAY_FLOOR_BIN ]]; then
    RING=$("$RELAY_FLOOR_BIN" --aead 2>/dev/null || true)
    A256=$(gib_s "$(sed -n 's/.*aes256gcm=\([0-9]*\).*/\1/p' <<<"$RING")")
    A128=$(gib_s "$(sed -n 's/.*aes128gcm=\([0-9]*\).*/\1/p' <<<"$RING")")
    RELAY=$("$RELAY_FLOOR_BIN" --mib 256 --runs 5 2>/dev/null | awk -F'median_cpu_s=' '/^relay_floor_tcp/ { printf "%.4f", $2 * 4 }')
    [[ -n $RELAY ]] || RELAY=nan
else
    log "no relay_floor at $RELAY_FLOOR_BIN (cargo build --release --example relay_floor): floor not priced"
    A256=nan A128=nan RELAY=nan
fi
BACKEND_CIPHER=$(grep -o 'SSL cipher: [A-Z0-9-]*' "$TMP/vsftpd.log" 2>/dev/null | tail -1 | awk '{ print $3 }' || true)
case $BACKEND_CIPHER in *AES128*) ABACK=$A128 ;; *) ABACK=$A256 ;; esac
TUNNEL_SUITE=$(tail -1 "$TMP/suites" 2>/dev/null | cut -d= -f2 || true)
case ${TUNNEL_SUITE:-TLS13_AES_256_GCM_SHA384} in *AES_128*) ATUN=$A128 ;; *) ATUN=$A256 ;; esac
floor() { # floor TUNNEL_AEAD_PASSES RELAYS -> s/GiB: client + backend AEAD, N tunnel AEAD, M relays
    awk -v c="$A256" -v b="$ABACK" -v t="$ATUN" -v n="$1" -v r="$RELAY" -v m="$2" \
        'BEGIN { if (c == "nan" || r == "nan") print "nan"; else printf "%.3f", c + b + n * t + m * r }'
}
FLOOR_DIRECT=$(floor 0 1)
FLOOR_TUNNEL=$(floor 2 2)
FLOOR_EDGE=$(floor 1 1)                                                  # client + backend + tunnel TLS, 1 relay
FLOOR_CONN=$(awk -v t="$ATUN" -v r="$RELAY" 'BEGIN { printf "%.3f", t + r }') # tunnel TLS, 1 relay
per_gib() { # per_gib TICKS_FILE -> CPU s per GiB moved (down + up, all rounds)
    awk -v hz="$CLK_TCK" -v gib="$(awk -v r="$RUNS" -v m="$BIG_MIB" 'BEGIN { print 2 * r * m / 1024 }')" \
        '{ t += $1 } END { printf "%.3f", t / hz / gib }' "$1"
}
r2() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || a == 0) print "nan"; else printf "%.2f", b / a }'; }

echo "aes-128-gcm $(openssl speed -evp aes-128-gcm -bytes 16384 -seconds 2 2>/dev/null | awk '/^AES-128-GCM/ { printf "cpu_s_per_gib=%.3f", 1024 * 1024 * 1024 / ($2 * 1000) }') (openssl speed, informational)"
echo "dmz_floor_prices aead=ring aes256gcm_s_per_gib=$A256 aes128gcm_s_per_gib=$A128 tcp_relay_s_per_gib=$RELAY client_cipher=AES-256-GCM backend_cipher=${BACKEND_CIPHER:-unknown} tunnel_suite=${TUNNEL_SUITE:-TLS13_AES_256_GCM_SHA384(assumed)} (examples/relay_floor.rs, same run)"
MEAS_DIRECT=$(kv cpu_s_per_gib <<<"$DIRECT")
echo "dmz_floor gateway aead_passes=2 relays=1 floor_s_per_gib=$FLOOR_DIRECT measured_s_per_gib=$MEAS_DIRECT measured_vs_floor=$(r2 "$FLOOR_DIRECT" "$MEAS_DIRECT")"
for line in "${TUNNELS[@]}"; do
    c=${line%% *}
    m=$(kv cpu_s_per_gib <<<"$line")
    # ratio_floor: the tunnel's floor over the direct path's floor (what no
    # implementation avoids); direct_plus_floor: the direct gateway as measured plus
    # only the tunnel's extra floor (2 AEAD passes + 1 relay), over the direct gateway;
    # measured: the tunnel's CPU per byte over the direct gateway's (goal <= 1.5).
    echo "dmz_floor $c aead_passes=4 relays=2 floor_s_per_gib=$FLOOR_TUNNEL measured_s_per_gib=$m measured_vs_floor=$(r2 "$FLOOR_TUNNEL" "$m") ratio_floor=$(r2 "$FLOOR_DIRECT" "$FLOOR_TUNNEL") ratio_direct_plus_floor=$(awk -v d="$MEAS_DIRECT" -v ft="$FLOOR_TUNNEL" -v fd="$FLOOR_DIRECT" 'BEGIN { if (ft == "nan") print "nan"; else printf "%.2f", (d + ft - fd) / d }') measured=$(r2 "$MEAS_DIRECT" "$m")"
    echo "dmz_floor_split $c edge_floor=$FLOOR_EDGE edge_measured=$(per_gib "$TMP/$c.ticks.0") connector_floor=$FLOOR_CONN connector_measured=$(per_gib "$TMP/$c.ticks.1") (s/GiB; edge: 3 AEAD + 1 relay, connector: 1 AEAD + 1 relay)"
done
FAILED=0
