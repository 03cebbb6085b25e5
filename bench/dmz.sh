#!/usr/bin/env bash
# DMZ mode benchmark (issue 22): curl -> ftpsgate -> vsftpd (GATEWAY, the gateway
# connects directly) versus curl -> edge -> tunnel (QUIC) -> connector -> vsftpd
# (TUNNEL), explicit FTPS with require_ssl_reuse on both legs, loopback only.
# Reports MiB/s (median of BENCH_RUNS) for a big download and upload and the CPU
# seconds the gateway processes (edge + connector for TUNNEL) spent per GiB.
#
# Needs root (creates the local user `ftpsgatebench`), vsftpd, curl, openssl.
#   FTPSGATE_BIN   use this binary instead of `cargo build --release`
#   BENCH_RUNS     runs per case (default 3)
#   BENCH_MIB      size of the big file in MiB (default 256)
set -euo pipefail

RUNS=${BENCH_RUNS:-3}
BIG_MIB=${BENCH_MIB:-256}
BIG_BYTES=$((BIG_MIB * 1024 * 1024))
BENCH_USER=ftpsgatebench
BENCH_PASS=ftpsgatebench-pw
VS_PASV="51000-51099"
GW_PASV="52000-52099"

BENCH_TAG=dmz
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
STOP_SECS=5
PORT_SPAN=20000
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
ssl_ciphers=HIGH
rsa_cert_file=$TMP/leaf.pem
rsa_private_key_file=$TMP/leaf.key
vsftpd_log_file=$TMP/vsftpd.log
EOF
vsftpd "$TMP/vsftpd.conf" >"$TMP/vsftpd.stderr" 2>&1 &
VS_PID=$!
wait_listen "$VS_PORT" "$VS_PID" vsftpd

listener="listeners:
  - name: edge
    bind: \"127.0.0.1:$GW_PORT\"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { ports: \"$GW_PASV\", advertise: \"127.0.0.1\" }
    backend: vs"
direct_yaml="$listener
backends:
  - name: vs
    address: \"127.0.0.1:$VS_PORT\"
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }"
tunnel_yaml="$listener
backends:
  - name: vs
    via: lan
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }
tunnels:
  - name: lan
    listen: \"127.0.0.1:$TUNNEL_PORT\"
    tls: { cert: leaf.pem, key: leaf.key, client_ca: ca.pem }"
cat >"$TMP/connector.yaml" <<EOF
connect:
  - edge: "127.0.0.1:$TUNNEL_PORT"
    server_name: localhost
    tls: { cert: conn.pem, key: conn.key, ca: ca.pem }
    backends:
      - { name: vs, address: "127.0.0.1:$VS_PORT" }
EOF

CURL=(curl --ssl-reqd --cacert "$TMP/ca.pem" -s -S --user "$BENCH_USER:$BENCH_PASS")
median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) { print "nan"; exit } if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

measure() { # measure CASE PIDS... -> "CASE down_mibs up_mibs cpu_s_per_gib"
    local case=$1 i out down=() up=() t0 t1 got
    shift
    t0=$(ticks "$@")
    for i in $(seq "$RUNS"); do
        out=$("${CURL[@]}" -o "$TMP/got.bin" -w '%{speed_download}' "ftp://localhost:$GW_PORT/big.bin") || die "$case download failed"
        got=$(sha256sum "$TMP/got.bin" | cut -d' ' -f1)
        [[ $got == "$BIG_SHA" ]] || die "$case download corrupted"
        down+=("$(awk -v s="$out" 'BEGIN { print s / 1048576 }')")
        out=$("${CURL[@]}" -T "$TMP/got.bin" -w '%{speed_upload}' "ftp://localhost:$GW_PORT/up-$case-$i.bin") || die "$case upload failed"
        got=$(sha256sum "$FTPROOT/up-$case-$i.bin" | cut -d' ' -f1)
        [[ $got == "$BIG_SHA" ]] || die "$case upload corrupted"
        rm -f "$FTPROOT/up-$case-$i.bin"
        up+=("$(awk -v s="$out" 'BEGIN { print s / 1048576 }')")
        log "$case run $i: down ${down[-1]} MiB/s, up ${up[-1]} MiB/s"
    done
    t1=$(ticks "$@")
    awk -v c="$case" -v d="$(printf '%s\n' "${down[@]}" | median)" -v u="$(printf '%s\n' "${up[@]}" | median)" \
        -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v gib="$(awk -v r="$RUNS" -v m="$BIG_MIB" 'BEGIN { print 2 * r * m / 1024 }')" \
        'BEGIN { printf "%s down_mib_s=%.1f up_mib_s=%.1f cpu_s_per_gib=%.2f\n", c, d, u, t / hz / gib }'
}

echo "$direct_yaml" >"$TMP/gateway.yaml"
start_gateway
DIRECT=$(measure gateway "$GW_PID")
stop_pid "$GW_PID" ftpsgate
GW_PID=

echo "$tunnel_yaml" >"$TMP/gateway.yaml"
start_gateway
"$BIN" run --config "$TMP/connector.yaml" 2>"$TMP/connector.log" &
BE_PID=$!
for _ in $(seq 50); do
    "${CURL[@]}" "ftp://localhost:$GW_PORT/" >/dev/null 2>&1 && break
    sleep 0.2
done
TUNNEL=$(measure tunnel "$GW_PID" "$BE_PID")

echo "# ftpsgate DMZ benchmark $(date -u +%FT%TZ) ${BIG_MIB} MiB x $RUNS, $(nproc) CPUs"
echo "$DIRECT"
echo "$TUNNEL"
kv() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
for k in down_mib_s up_mib_s cpu_s_per_gib; do
    awk -v k="$k" -v a="$(kv "$k" <<<"$DIRECT")" -v b="$(kv "$k" <<<"$TUNNEL")" \
        'BEGIN { printf "ratio %s tunnel/gateway=%.2f\n", k, b / a }'
done
