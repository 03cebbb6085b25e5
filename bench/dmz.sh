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
#                  inside them); default: passive 51000-51099/52000-52099, the
#                  rest from free_port's default range
#   DMZ_SESSIONS   sessions held over the one connector while a fast download
#                  runs (default 200; 0 skips this part): DMZ_SLOW of them
#                  download a DMZ_SLOW_MIB file at DMZ_SLOW_RATE (curl
#                  --limit-rate; default 80, 2 MiB, 64k: about 100 passive
#                  ports per side are ours), the rest are logged in and idle
#                  (loadgen idle). Reports the fast download alone and under
#                  that load, and whether every slow download was complete;
#                  once per transport.
#   LOADGEN_BIN    loadgen binary (default target/package-test/examples/loadgen)
set -euo pipefail

RUNS=${BENCH_RUNS:-3}
BIG_MIB=${BENCH_MIB:-256}
BIG_BYTES=$((BIG_MIB * 1024 * 1024))
BENCH_USER=ftpsgatebench
BENCH_PASS=ftpsgatebench-pw
VS_PASV="51000-51099"
GW_PASV="52000-52099"
if [[ -n ${DMZ_PORTS:-} ]]; then
    VS_PASV="$DMZ_PORTS-$((DMZ_PORTS + 99))"
    GW_PASV="$((DMZ_PORTS + 100))-$((DMZ_PORTS + 199))"
fi
TRANSPORTS=${DMZ_TRANSPORTS:-quic h2}

BENCH_TAG=dmz
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
STOP_SECS=5
PORT_SPAN=20000
if [[ -n ${DMZ_PORTS:-} ]]; then
    PORT_BASE=$((DMZ_PORTS + 200))
    PORT_SPAN=800
fi
FAIL_LOGS=(gateway.log connector.log vsftpd.log)

[[ $(id -u) -eq 0 ]] || die "must run as root (creates user $BENCH_USER, runs vsftpd)"
need_tools "(apt-get install -y vsftpd curl)" vsftpd curl openssl sha256sum ss getconf useradd chpasswd

[[ -n ${FTPSGATE_BIN:-} ]] || cargo_build
BIN=${FTPSGATE_BIN:-$REPO/target/release/ftpsgate}
[[ -x $BIN ]] || die "no executable at $BIN"

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
    # Per process (edge, connector), to see which side pays.
    local pids=("$@")
    for j in "${!pids[@]}"; do split+=" $(($(cpu_ticks "${pids[$j]}") - s0[j]))"; done
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
    start_gateway
}
start_tunnel() { # start_tunnel TRANSPORT -> edge (GW_PID) and connector (BE_PID), a listing works
    tunnel_yaml "$1" >"$TMP/gateway.yaml"
    connector_yaml "$1" >"$TMP/connector.yaml"
    start_gateway
    "$BIN" run --config "$TMP/connector.yaml" 2>"$TMP/connector.log" &
    BE_PID=$!
    for _ in $(seq 50); do
        "${CURL[@]}" "ftp://localhost:$GW_PORT/" >/dev/null 2>&1 && return
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
        start_tunnel "$t"
        measure "tunnel-$t" "$GW_PID" "$BE_PID"
        stop_all
    done
done
DIRECT=$(summary gateway)
TUNNELS=()
for t in $TRANSPORTS; do TUNNELS+=("$(summary "tunnel-$t")"); done

LOADS=()
for t in $TRANSPORTS; do
    if ((SESSIONS > 0)); then
        start_tunnel "$t"
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
            [[ $(cat "$TMP/slow/$((i + 1))") == "$SLOW_SHA" ]] && ok=$((ok + 1))
        done
        if [[ -n ${LG_PID:-} ]]; then
            kill -INT "$LG_PID" 2>/dev/null || true
            wait "$LG_PID" || true
            LG_PID=
        fi
        stop_all
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
echo "aes-128-gcm $(openssl speed -evp aes-128-gcm -bytes 16384 -seconds 2 2>/dev/null | awk '/^AES-128-GCM/ { printf "cpu_s_per_gib=%.3f", 1024 * 1024 * 1024 / ($2 * 1000) }')"
FAILED=0
