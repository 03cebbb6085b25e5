# shellcheck shell=bash
# Shared parts of bench/run.sh, bench/scale.sh and bench/soak.sh. Sourced, never run:
#
#   BENCH_TAG=scale
#   source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
#
# The sourcing script sets BENCH_TAG (log prefix) and GW_PASV (gateway passive range,
# free_port stays out of it) before sourcing, and may change these afterwards:
#   STOP_SECS       SIGTERM grace in stop_pid before SIGKILL (default 10)
#   PORT_BASE       free_port picks from PORT_BASE .. PORT_BASE+PORT_SPAN-1 (default 20000)
#   PORT_SPAN       (default 12000)
#   FAIL_LOGS       files in $TMP whose tail is printed when the script fails
#   FAIL_LOG_LINES  lines printed of each (default 30)
#   cleanup_extra   optional function, called by the EXIT trap after the processes stop
#
# Sourcing sets REPO, installs the EXIT/INT/TERM traps and defines the helpers. Every
# process is started from the script (or a function here, in the same shell), so $! is
# the process itself; the trap stops them by PID: LG_PID, GW_PID, BE_PID, VS_PID.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

need_tools() { # need_tools HINT TOOL... -> die on the first missing tool; HINT ("" = none) follows the message
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "missing tool: $tool${hint:+ $hint}"
    done
}

# ---------------------------------------------------------------- cleanup
TMP=""
LG_PID=""
GW_PID=""
BE_PID=""
VS_PID=""
FAILED=1
STOP_SECS=10
PORT_BASE=20000
PORT_SPAN=12000
FAIL_LOGS=(gateway.log)
FAIL_LOG_LINES=30

stop_pid() { # stop_pid PID NAME -> SIGTERM, SIGKILL after STOP_SECS, reap
    local pid=$1 name=$2 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq $((STOP_SECS * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name ($pid) did not stop on SIGTERM within $STOP_SECS s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? f
    set +e
    if [[ $FAILED -ne 0 && -n $TMP ]]; then
        for f in "${FAIL_LOGS[@]}"; do
            if [[ -s $TMP/$f ]]; then
                log "---- last $FAIL_LOG_LINES lines of $f ----"
                tail -n "$FAIL_LOG_LINES" "$TMP/$f" >&2
            fi
        done
    fi
    stop_pid "$LG_PID" loadgen
    stop_pid "$GW_PID" ftpsgate
    stop_pid "$BE_PID" bench_backend
    stop_pid "$VS_PID" vsftpd
    if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then
            log "kept temp dir $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build, temp dir, certificates
# Cargo profile of the binaries the scripts build and run (target/$BENCH_PROFILE/).
BENCH_PROFILE=${BENCH_PROFILE:-release}
cargo_build() { # cargo_build [CARGO ARGS] -> cargo build --profile $BENCH_PROFILE --quiet ARGS in $REPO
    log "building (cargo build --profile $BENCH_PROFILE${*:+ $*})"
    (cd "$REPO" && cargo build --profile "$BENCH_PROFILE" --quiet "$@") >&2 \
        || die "cargo build --profile $BENCH_PROFILE${*:+ $*} failed"
}

bin_note() { # where BIN comes from, for the report header
    if [[ -n ${FTPSGATE_BIN:-} ]]; then
        echo "FTPSGATE_BIN=$BIN"
    else
        echo "built from $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$( [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo +dirty || true)"
    fi
}

make_tmp() { # make_tmp NAME -> TMP=/tmp/ftpsgate-NAME.XXXXXX
    TMP=$(mktemp -d "/tmp/ftpsgate-$1.XXXXXX")
    log "temp dir $TMP"
}

make_certs() { # make_certs LABEL rsa|ec -> $TMP/{ca.pem,ca.key,leaf.pem,leaf.key}
    # A throw-away CA and a leaf for localhost (CA:FALSE, SAN localhost/127.0.0.1/::1).
    local label=$1 alg=$2 newkey
    log "creating CA and leaf certificate ($alg)"
    case $alg in
        rsa) newkey=(-newkey rsa:2048) ;;
        ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
        *) die "KEY_ALG must be rsa or ec" ;;
    esac
    (
        cd "$TMP"
        openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj "/CN=ftpsgate $label CA" \
            -keyout ca.key -out ca.pem \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req "${newkey[@]}" -nodes -subj "/CN=localhost" -keyout leaf.key -out leaf.csr
        cat >leaf.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EOF
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile leaf.ext -out leaf.pem
        chmod 600 leaf.key ca.key
    ) >/dev/null 2>&1 || die "certificate generation failed"
}

# ---------------------------------------------------------------- ports, processes, /proc
free_port() { # free_port [PORT...] -> a TCP port nobody listens on, not PORT..., outside GW_PASV
    local p used x lo=${GW_PASV%-*} hi=${GW_PASV#*-}
    used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
    while :; do
        p=$((PORT_BASE + RANDOM % PORT_SPAN))
        ((p >= lo && p <= hi)) && continue
        for x in "$@"; do [[ $p == "$x" ]] && continue 2; done
        grep -qx "$p" <<<"$used" || { echo "$p"; return; }
    done
}

wait_listen() { # wait_listen PORT PID NAME
    local port=$1 pid=$2 name=$3 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup"
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name does not listen on 127.0.0.1:$port after 10 s"
}

check_gateway_config() { "$BIN" check --config "$TMP/gateway.yaml" >&2 || die "ftpsgate check rejected the config"; }

start_gateway() { # start_gateway [FTPSGATE GLOBAL OPTIONS] -> `ftpsgate run` on $TMP/gateway.yaml, GW_PID, waits for GW_PORT
    "$BIN" "$@" run --config "$TMP/gateway.yaml" 2>"$TMP/gateway.log" &
    GW_PID=$!
    wait_listen "$GW_PORT" "$GW_PID" ftpsgate
}

gw_alive() { kill -0 "$GW_PID" 2>/dev/null || die "ftpsgate died (see gateway.log)"; }

CLK_TCK=$(getconf CLK_TCK)
proc_stat_ticks() { # proc_stat_ticks PID AWK-EXPR: fields of /proc/PID/stat after "pid (comm) "
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }            # drop "pid (comm) " – comm may contain spaces
    # rest starts at field 3 (state): field 14 (utime) is word 12, field 15 (stime) word 13
    awk "{print $2}" <<<"$rest"
}
cpu_ticks() { proc_stat_ticks "$1" '$12 + $13'; }  # utime+stime of PID in clock ticks
cpu_ticks_user() { proc_stat_ticks "$1" '$12'; }   # utime of PID in clock ticks
ticks_s() { awk -v d="$1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", d / t }'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

header_line() { # header_line NAME [BEFORE_CPUS] [AFTER_LOADAVG] -> the "# ftpsgate NAME date version ..." line
    echo "# ftpsgate $1 $(date -u +%Y-%m-%dT%H:%M:%SZ)  $("$BIN" --version 2>/dev/null) ($BIN_NOTE)  ${2:+$2  }cpus=$(nproc)  loadavg_at_end=$(cut -d' ' -f1-3 /proc/loadavg)${3:+  $3}"
}

# ---------------------------------------------------------------- scale.sh and soak.sh
# ftpsgate (JSON log, /metrics) in front of the plain-FTP bench_backend, loadgen clients.

init_loadgen_bench() { # the scale/soak prologue: their logs on failure, their tools
    FAIL_LOGS=(gateway.log backend.log loadgen.err)
    need_tools "" openssl sha256sum ss getconf awk
}

raise_nofile() { # raise `ulimit -n` for this shell and its children -> NOFILE
    # As root, try the big limit first; in a container without CAP_SYS_RESOURCE only
    # the hard limit can be reached.
    if [[ $(id -u) -eq 0 ]]; then
        ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    else
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    fi
    NOFILE=$(ulimit -n)
}

build_loadgen_binaries() { # cargo build (unless BENCH_NO_BUILD=1) -> BIN, LOADGEN, BACKEND, BIN_NOTE
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        cargo_build --bins --examples
    fi
    BIN=${FTPSGATE_BIN:-$REPO/target/$BENCH_PROFILE/ftpsgate}
    LOADGEN=$REPO/target/$BENCH_PROFILE/examples/loadgen
    BACKEND=$REPO/target/$BENCH_PROFILE/examples/bench_backend
    local b
    for b in "$BIN" "$LOADGEN" "$BACKEND"; do [[ -x $b ]] || die "no executable at $b"; done
    BIN_NOTE=$(bin_note)
}

seed_ftproot() { # $TMP/ftp with small.bin (1 KiB) and size-$SIZE.bin -> FTPROOT, SMALL_SHA, FILE_SHA
    FTPROOT=$TMP/ftp
    mkdir -p "$FTPROOT"
    head -c 1024 /dev/urandom >"$FTPROOT/small.bin"
    head -c "$SIZE" /dev/urandom >"$FTPROOT/size-$SIZE.bin"
    SMALL_SHA=$(sha256sum "$FTPROOT/small.bin" | cut -d' ' -f1)
    FILE_SHA=$(sha256sum "$FTPROOT/size-$SIZE.bin" | cut -d' ' -f1)
}

start_backend() { # bench_backend --root $FTPROOT, which prints its address -> BE_PID, BE_ADDR
    log "starting bench_backend"
    "$BACKEND" --root "$FTPROOT" >"$TMP/backend.addr" 2>"$TMP/backend.log" &
    BE_PID=$!
    local _
    for _ in $(seq 100); do
        [[ -s $TMP/backend.addr ]] && break
        kill -0 "$BE_PID" 2>/dev/null || die "bench_backend exited during startup"
        sleep 0.1
    done
    BE_ADDR=$(head -n1 "$TMP/backend.addr")
    [[ $BE_ADDR =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "bench_backend printed no address"
}

start_gateway_demo() { # ftpsgate in front of bench_backend -> GW_PORT, METRICS_PORT, GW_PID
    GW_PORT=$(free_port)
    METRICS_PORT=$(free_port "$GW_PORT")
    cat >"$TMP/gateway.yaml" <<EOF
listeners:
  - name: edge
    bind: "127.0.0.1:$GW_PORT"
    tls: { mode: explicit, cert: leaf.pem, key: leaf.key, require: true }
    passive: { ports: "$GW_PASV", advertise: "127.0.0.1" }
    backend: demo
    limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
backends:
  - name: demo
    address: "$BE_ADDR"
    tls: { mode: none }
limits: { max_sessions: 1000000, max_sessions_per_ip: 1000000 }
# Generous: the login phase of many sessions on a busy 2-core machine can be slow.
timeouts: { connect: 60s, login: 300s, idle: 3600s, pinhole: 60s, data_idle: 300s }
metrics: { bind: "127.0.0.1:$METRICS_PORT" }
EOF
    check_gateway_config
    log "starting ftpsgate on 127.0.0.1:$GW_PORT (metrics :$METRICS_PORT, backend $BE_ADDR)"
    start_gateway --log-format json
    wait_listen "$METRICS_PORT" "$GW_PID" "ftpsgate metrics"
    log "bench_backend pid=$BE_PID ftpsgate pid=$GW_PID nofile=$NOFILE"
}

loadgen_sanity() { # LG_COMMON; one download of small.bin through the gateway (also warms it up)
    LG_COMMON=(--addr "127.0.0.1:$GW_PORT" --ca "$TMP/ca.pem" --server-name localhost
        --connect-concurrency "$CONNECT_CONCURRENCY" --tls "$LG_TLS" --timeout "$LG_TIMEOUT")
    if [[ -n ${LG_THREADS:-} ]]; then LG_COMMON+=(--threads "$LG_THREADS"); fi
    # Warms up allocator arenas, TLS and the first session before any baseline.
    local out
    out=$("$LOADGEN" transfers "${LG_COMMON[@]}" --sessions 1 --size 1024 --file small.bin --sha256 "$SMALL_SHA" 2>"$TMP/loadgen.err") \
        || die "sanity loadgen run failed"
    [[ $(kv ok <<<"$out") == 1 ]] || { cat "$TMP/loadgen.err" >&2; die "sanity download through the gateway failed: $out"; }
    sleep 1
    gw_alive
}

metrics() { # the /metrics text (HTTP/1.0 over bash's /dev/tcp, no curl needed)
    timeout 10 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        cat <&3' _ "$METRICS_PORT" 2>/dev/null | tr -d '\r' || true
}
metric_sum() { # metric_sum NAME -> sum over all label sets ("nan" if absent)
    metrics | awk -v n="$1" '
        $1 == n || index($1, n "{") == 1 { s += $NF; f = 1 }
        END { if (f) print s + 0; else print "nan" }'
}
wait_no_sessions() { # wait_no_sessions TRIES -> poll every 0.2 s until sessions_active is 0
    local a _
    for _ in $(seq "$1"); do
        a=$(metric_sum ftpsgate_sessions_active)
        [[ $a == 0 ]] && break
        sleep 0.2
    done
    return 0
}
kv() { # kv KEY < line  -> value of KEY=value
    tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { sub(/^[^=]*=/, ""); print; exit }'
}
gateway_log_report() { # the gateway_log line (stdout), then the most frequent WARN/ERROR messages (stderr)
    echo "gateway_log lines=$(wc -l <"$TMP/gateway.log") warn=$(grep -c '"level":"WARN"' "$TMP/gateway.log" || true) error=$(grep -c '"level":"ERROR"' "$TMP/gateway.log" || true)"
    grep -E '"level":"(WARN|ERROR)"' "$TMP/gateway.log" 2>/dev/null \
        | sed -E 's/"(timestamp|id|client|span|spans|peer|port|addr)":("[^"]*"|[0-9]+|\{[^}]*\}|\[[^]]*\]),?//g' \
        | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/[gateway.log] /' >&2 || true
}

# ---------------------------------------------------------------- run.sh and ab.sh
# curl (and ftpsgate) in front of vsftpd, explicit FTPS with PROT P on both legs. The
# caller sets BENCH_USER, BENCH_PASS, BIG_MIB, BIG_BYTES and VS_PASV first.

bench_user_and_files() { # local user, $TMP/ftp with big.bin and small.bin -> FTPROOT, BIG_SHA, SMALL_SHA
    if ! id "$BENCH_USER" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash "$BENCH_USER"
    fi
    echo "$BENCH_USER:$BENCH_PASS" | chpasswd
    grep -qx "$BENCH_USER" /etc/ftpusers 2>/dev/null && die "$BENCH_USER is listed in /etc/ftpusers"

    # FTP root = the user's download dir for this run (uploads land here too).
    FTPROOT=$TMP/ftp
    mkdir -p "$FTPROOT" "$TMP/empty"
    chmod 755 "$TMP/empty"            # vsftpd secure_chroot_dir: root-owned, empty
    log "creating ${BIG_MIB} MiB + 1 KiB test files"
    head -c "$BIG_BYTES" /dev/urandom >"$FTPROOT/big.bin"
    head -c 1024 /dev/urandom >"$FTPROOT/small.bin"
    chown -R "$BENCH_USER:" "$FTPROOT"
    BIG_SHA=$(sha256sum "$FTPROOT/big.bin" | cut -d' ' -f1)
    SMALL_SHA=$(sha256sum "$FTPROOT/small.bin" | cut -d' ' -f1)
}

write_vsftpd_conf() { # $TMP/vsftpd.conf: 127.0.0.1:$VS_PORT, TLS required on login and data, require_ssl_reuse
    cat >"$TMP/vsftpd.conf" <<EOF
background=NO
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$VS_PORT
isolate=NO
isolate_network=NO
seccomp_sandbox=NO
secure_chroot_dir=$TMP/empty
pam_service_name=vsftpd
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=$FTPROOT
connect_from_port_20=NO
pasv_enable=YES
pasv_min_port=${VS_PASV%-*}
pasv_max_port=${VS_PASV#*-}
ssl_enable=YES
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
ssl_ciphers=HIGH
max_clients=0
max_per_ip=0
debug_ssl=YES
rsa_cert_file=$TMP/leaf.pem
rsa_private_key_file=$TMP/leaf.key
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=$TMP/vsftpd.log
EOF
}

start_vsftpd() { # vsftpd in the foreground on $TMP/vsftpd.conf -> VS_PID, waits for VS_PORT
    log "starting vsftpd on 127.0.0.1:$VS_PORT"
    vsftpd "$TMP/vsftpd.conf" >"$TMP/vsftpd.stderr" 2>&1 &
    VS_PID=$!
    wait_listen "$VS_PORT" "$VS_PID" vsftpd
}

cpu_ns() { # CPU time of PID (all threads, exited ones included) in ns; clock-tick resolution
    # /proc/PID/stat utime+stime. (The threads' schedstat has ns resolution but is only
    # brought up to date when a thread is switched out, so a busy thread reads stale.)
    awk -v t="$(cpu_ticks "$1")" -v hz="$CLK_TCK" 'BEGIN { printf "%d\n", t * 1e9 / hz }'
}

aes_gcm_mibs() { # aes_gcm_mibs 128|256 -> MiB/s of `openssl speed -evp aes-N-gcm` at 16 KiB blocks, one core
    openssl speed -seconds 2 -bytes 16384 -evp "aes-$1-gcm" 2>/dev/null \
        | awk -v c="aes-$1-gcm" 'tolower($1) == c { v = $NF; sub(/k$/, "", v); printf "%.0f\n", v * 1000 / 1048576 }'
}
