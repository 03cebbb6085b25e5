//! Reply pairing and the endings of a session, end to end (issues 24 §2, 20 §3–4, 23).
//!
//! A scripted backend (`common::misbehaving`) that misbehaves at every point of the dialogue
//! must never get a line of its own past the gateway (no backend `227`/`229` reaches the
//! client), ABOR and failed data legs must leave the session paired whatever the server
//! sends for them (vsftpd, pure-ftpd and ProFTPD styles), and sessions that just close —
//! without `QUIT`, or before saying anything — are counted as what they are.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use common::harness::{bounded, init_logs, PortRanges};
use common::misbehaving::{file_bytes, AbortStyle, Misbehaviour, Script, ScriptedBackend};
use common::raw::{self, connect_from};
use common::*;

/// Passive ranges of this binary's gateways, away from the other test binaries'.
fn own_range(width: u16) -> (u16, u16) {
    static RANGES: PortRanges = PortRanges::new(26000, 27999);
    RANGES.take(width)
}

/// A plain gateway `edge` in front of the scripted backend `vs` (plain too).
async fn plain_gateway(
    backend: SocketAddr,
    timeouts: &str,
) -> (ftpsgate::Gateway, tempfile::TempDir) {
    init_logs();
    let dir = temp_dir("replies-gw");
    let (p0, p1) = own_range(10);
    let yaml = format!(
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:0"
    tls: {{ mode: none }}
    passive: {{ ports: "{p0}-{p1}", advertise: "127.0.0.1" }}
    backend: vs
backends:
  - name: vs
    address: "{backend}"
    tls: {{ mode: none }}
timeouts: {{ {timeouts} }}
"#
    );
    let gw = start_gateway(&yaml, dir.path()).await;
    (gw, dir)
}

fn edge(gw: &ftpsgate::Gateway) -> SocketAddr {
    gw.local_addr("edge").expect("listener edge")
}

fn metric(gw: &ftpsgate::Gateway, series: &str) -> f64 {
    gw.metrics()
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

/// Waits until `series` reaches `want` (sessions end asynchronously).
async fn metric_reaches(gw: &ftpsgate::Gateway, series: &str, want: f64) {
    for _ in 0..100 {
        if metric(gw, series) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never reached {want}:\n{}", gw.metrics().encode());
}

/// Every line the client saw must not read as a backend passive reply.
#[track_caller]
fn assert_no_backend_passive(seen: &[Reply]) {
    for r in seen {
        // Inner lines of a multi-line reply are text when padded (RFC 959 §4.2).
        for line in r
            .text
            .lines()
            .filter(|l| l.starts_with("227") || l.starts_with("229"))
        {
            let bad = ["10,1,2,3", "127,0,0,66", "70000", "(|||2121|)"];
            assert!(
                !bad.iter().any(|b| line.contains(b)),
                "a backend passive reply reached the client: {r:?} (all: {seen:?})"
            );
        }
    }
}

/// PASV through the gateway: the 227 must carry the gateway's own pinhole.
async fn own_pasv(ftp: &mut RawFtp, seen: &mut Vec<Reply>) -> SocketAddr {
    let r = ftp.cmd("PASV").await.expect("PASV");
    seen.push(r.clone());
    assert_eq!(r.code, 227, "PASV: {r:?}");
    let addr = raw::parse_227(&r.text).expect("227 parses");
    let (p0, p1) = (26000, 27999);
    assert!(
        addr.ip().is_loopback() && (p0..=p1).contains(&addr.port()),
        "PASV answered with someone else's address: {r:?}"
    );
    addr
}

async fn cmd(ftp: &mut RawFtp, line: &str, seen: &mut Vec<Reply>) -> Reply {
    let r = ftp
        .cmd(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    seen.push(r.clone());
    r
}

/// `RETR` over a plain data connection to `addr`; returns (replies, bytes).
async fn retr_plain(ftp: &mut RawFtp, addr: SocketAddr, name: &str) -> (Vec<Reply>, Vec<u8>) {
    let mut tcp = connect_from(None, addr).await.expect("data connect");
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        buf
    });
    let mut replies = vec![ftp.cmd(&format!("RETR {name}")).await.expect("RETR")];
    if replies[0].is_preliminary() {
        replies.push(ftp.read_reply().await.expect("final reply"));
    }
    let data = bounded(20, "data", reader).await.expect("reader");
    (replies, data)
}

// ---------------------------------------------------------------------------------------
// 1. Unsolicited replies at every point (issue 24 §2)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_backend_replies_never_reach_the_client() {
    let backend = ScriptedBackend::start(Script::new(Misbehaviour {
        after_greeting: "200 extra\r\n",
        after_230: "227 Entering Passive Mode (10,1,2,3,4,5)\r\n",
        after_226: "227 Entering Passive Mode (127,0,0,66,1,2)\r\n",
        after_noop: "229 Entering Extended Passive Mode (|||70000|)\r\n",
        stat_inner: "227 Entering Passive Mode (10,1,2,3,4,5)\r\n229 (|||2121|)\r\n",
        late: "200 late\r\n",
        ..Misbehaviour::default()
    }))
    .await;
    let (gw, _dir) = plain_gateway(backend.addr, "pinhole: 5s").await;
    bounded(60, "misbehaving backend session", async {
        let mut seen = Vec::new();
        let mut ftp = RawFtp::connect(edge(&gw)).await.expect("connect");
        assert_eq!(cmd(&mut ftp, "USER u", &mut seen).await.code, 331);
        assert_eq!(cmd(&mut ftp, "PASS p", &mut seen).await.code, 230);
        // The 227 right after 230 must not answer PASV. (Had it come after the gateway
        // sent its own PASV, it would be indistinguishable from the answer — but even
        // then only its port is used, toward the backend's address.)
        tokio::time::sleep(Duration::from_millis(100)).await;
        let data = own_pasv(&mut ftp, &mut seen).await;
        let (replies, bytes) = retr_plain(&mut ftp, data, "f").await;
        seen.extend(replies.iter().cloned());
        assert_eq!(replies.last().map(|r| r.code), Some(226), "{replies:?}");
        assert_eq!(bytes, file_bytes(100_000));
        // The 227 after 226 must not answer NOOP; the 229 after NOOP must not answer TYPE.
        assert_eq!(cmd(&mut ftp, "NOOP", &mut seen).await.code, 200);
        assert_eq!(cmd(&mut ftp, "TYPE I", &mut seen).await.code, 200);
        // Inner lines of a multi-line reply that look like replies are padded.
        let stat = cmd(&mut ftp, "STAT", &mut seen).await;
        assert_eq!(stat.code, 211, "{stat:?}");
        assert!(
            stat.text.contains("\n 227 Entering") && stat.text.contains("\n 229 ("),
            "inner reply-like lines not padded: {stat:?}"
        );
        // A late line after SIZE's reply, with nothing outstanding.
        assert_eq!(cmd(&mut ftp, "SIZE f", &mut seen).await.code, 213);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(cmd(&mut ftp, "PWD", &mut seen).await.code, 257);
        let data = own_pasv(&mut ftp, &mut seen).await;
        let (replies, bytes) = retr_plain(&mut ftp, data, "f").await;
        assert_eq!(replies.last().map(|r| r.code), Some(226), "{replies:?}");
        assert_eq!(bytes.len(), 100_000);
        seen.extend(replies);
        assert_no_backend_passive(&seen);
        ftp.quit().await;
    })
    .await;
    // greeting+1, 230+1, 226+1 (twice), NOOP+1, late+1
    let series = "ftpsgate_backend_errors_total{backend=\"vs\",kind=\"unsolicited\"}";
    metric_reaches(&gw, series, 6.0).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_keeps_sending_unsolicited_replies_is_cut_with_421() {
    let backend = ScriptedBackend::start(Script::new(Misbehaviour {
        after_noop:
            "200 a\r\n200 b\r\n200 c\r\n200 d\r\n200 e\r\n200 f\r\n200 g\r\n200 h\r\n200 i\r\n",
        ..Misbehaviour::default()
    }))
    .await;
    let (gw, _dir) = plain_gateway(backend.addr, "pinhole: 5s").await;
    bounded(30, "noisy backend", async {
        let mut ftp = RawFtp::connect(edge(&gw)).await.expect("connect");
        assert_eq!(ftp.cmd("USER u").await.unwrap().code, 331);
        assert_eq!(ftp.cmd("PASS p").await.unwrap().code, 230);
        assert_eq!(ftp.cmd("NOOP").await.unwrap().code, 200);
        let r = ftp.read_reply().await.expect("421");
        assert_eq!(r.code, 421, "{r:?}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("closed after 421");
    })
    .await;
    metric_reaches(
        &gw,
        "ftpsgate_sessions_total{listener=\"edge\",outcome=\"backend_unavailable\"}",
        1.0,
    )
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 2. ABOR and failed data legs, per server style (issue 20 §3)

async fn abort_mid_download(style: AbortStyle) {
    let mut script = Script::new(Misbehaviour::default());
    script.abort = style;
    script.file_size = 16 * 1024 * 1024;
    let backend = ScriptedBackend::start(script).await;
    let (gw, _dir) = plain_gateway(backend.addr, "pinhole: 5s").await;
    bounded(60, "ABOR mid-download", async {
        let mut ftp = RawFtp::connect(edge(&gw)).await.expect("connect");
        ftp.cmd("USER u").await.unwrap();
        ftp.cmd("PASS p").await.unwrap();
        let mut seen = Vec::new();
        let data = own_pasv(&mut ftp, &mut seen).await;
        let mut tcp = connect_from(None, data).await.expect("data connect");
        let r = ftp.cmd("RETR big").await.expect("RETR");
        assert_eq!(r.code, 150, "{r:?}");
        let mut buf = vec![0u8; 64 * 1024];
        tcp.read_exact(&mut buf).await.expect("some data");
        ftp.send_raw(b"ABOR\r\n").await.expect("ABOR");
        let first = ftp.read_reply().await.expect("426");
        let second = ftp.read_reply().await.expect("226");
        assert_eq!(
            (first.code, second.code),
            (426, 226),
            "{style:?}: {first:?} {second:?}"
        );
        drop(tcp);
        // Every later reply pairs with its own command.
        assert_eq!(ftp.cmd("TYPE I").await.unwrap().code, 200, "{style:?}");
        assert_eq!(ftp.cmd("PWD").await.unwrap().code, 257, "{style:?}");
        assert_eq!(ftp.cmd("SIZE x").await.unwrap().code, 213, "{style:?}");
        ftp.quit().await;
    })
    .await;
    let cmds = backend.commands();
    assert!(
        cmds.windows(2).any(|w| w[0] == "ABOR" && w[1] == "NOOP"),
        "ABOR not followed by the gateway's NOOP: {cmds:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_with_a_vsftpd_style_backend() {
    abort_mid_download(AbortStyle::Vsftpd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_with_a_pure_ftpd_style_backend() {
    abort_mid_download(AbortStyle::PureFtpd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_with_a_proftpd_style_backend() {
    abort_mid_download(AbortStyle::Proftpd).await;
}

/// The client never connects to its pinhole: the gateway aborts the backend's transfer
/// (pure-ftpd then sends no final reply for the RETR) and the session stays paired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_client_data_leg_leaves_the_session_paired() {
    let mut script = Script::new(Misbehaviour::default());
    script.abort = AbortStyle::PureFtpd;
    script.file_size = 16 * 1024 * 1024;
    let backend = ScriptedBackend::start(script).await;
    let (gw, _dir) = plain_gateway(backend.addr, "pinhole: 1s").await;
    bounded(60, "failed data leg", async {
        let mut ftp = RawFtp::connect(edge(&gw)).await.expect("connect");
        ftp.cmd("USER u").await.unwrap();
        ftp.cmd("PASS p").await.unwrap();
        let mut seen = Vec::new();
        own_pasv(&mut ftp, &mut seen).await;
        let first = ftp.cmd("RETR big").await.expect("RETR");
        let last = if first.is_preliminary() {
            ftp.read_reply().await.expect("final")
        } else {
            first
        };
        assert!(last.code == 425 || last.code == 426, "{last:?}");
        assert_eq!(ftp.cmd("TYPE I").await.unwrap().code, 200);
        assert_eq!(ftp.cmd("PWD").await.unwrap().code, 257);
        // And a good transfer after it.
        let data = own_pasv(&mut ftp, &mut seen).await;
        let (replies, bytes) = retr_plain(&mut ftp, data, "f").await;
        assert_eq!(replies.last().map(|r| r.code), Some(226), "{replies:?}");
        assert_eq!(bytes.len(), 16 * 1024 * 1024);
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 3. Endings (issue 20 §4, issue 23 item 3)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_without_quit_and_a_probe_are_counted_apart() {
    let backend = ScriptedBackend::start(Script::new(Misbehaviour::default())).await;
    let (gw, _dir) = plain_gateway(backend.addr, "pinhole: 5s").await;
    bounded(30, "endings", async {
        // wget/gftp/rclone style: log in, then just close.
        let mut ftp = RawFtp::connect(edge(&gw)).await.expect("connect");
        ftp.cmd("USER u").await.unwrap();
        ftp.cmd("PASS p").await.unwrap();
        drop(ftp);
        // A load-balancer probe: connect, close at once.
        drop(TcpStream::connect(edge(&gw)).await.expect("probe"));
        // One that reads the greeting first, then closes.
        let mut tcp = TcpStream::connect(edge(&gw)).await.expect("probe 2");
        let mut b = [0u8; 64];
        let _ = tcp.read(&mut b).await;
        drop(tcp);
    })
    .await;
    metric_reaches(
        &gw,
        "ftpsgate_sessions_total{listener=\"edge\",outcome=\"closed_without_quit\"}",
        1.0,
    )
    .await;
    metric_reaches(
        &gw,
        "ftpsgate_sessions_total{listener=\"edge\",outcome=\"probe\"}",
        2.0,
    )
    .await;
    let text = gw.metrics().encode();
    assert!(
        !text.contains("outcome=\"client_error\""),
        "a normal end counted as client_error:\n{text}"
    );
    gw.shutdown().await;
}

/// A client that gives up while its command waits for a hanging backend is noticed at once
/// (not after the reply deadline, 300 s): the gateway keeps watching it for EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_while_its_commands_wait_ends_the_session_at_once() {
    let backend = ScriptedBackend::start(Script::new(Misbehaviour {
        silent_verb: "MKD",
        ..Misbehaviour::default()
    }))
    .await;
    let (gw, _dir) = plain_gateway(backend.addr, "pinhole: 5s").await;
    bounded(30, "client leaves while waiting", async {
        let mut ftp = RawFtp::connect(edge(&gw)).await.expect("connect");
        ftp.cmd("USER u").await.unwrap();
        ftp.cmd("PASS p").await.unwrap();
        ftp.send_raw(b"MKD x\r\nNOOP\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(ftp);
        metric_reaches(
            &gw,
            "ftpsgate_sessions_total{listener=\"edge\",outcome=\"closed_without_quit\"}",
            1.0,
        )
        .await;
        assert_eq!(gw.active_sessions(), 0);
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 4. `ftpsgate check` only checks (issue 23 item 3)

/// Every path under `dir` with its size and modification time.
fn listing(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((
                e.path().display().to_string(),
                m.len(),
                m.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

fn check_config(dir: &std::path::Path, xferlog: &str) -> std::path::PathBuf {
    Certs::generate(dir, "gw");
    let cfg = dir.join("ftpsgate.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"listeners:
  - name: edge
    bind: "127.0.0.1:0"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key }}
    passive: {{ ports: "50000-50010" }}
    backend: vs
backends:
  - name: vs
    address: "127.0.0.1:21"
    tls: {{ mode: none }}
transfer_log: {{ path: "{xferlog}" }}
"#
        ),
    )
    .unwrap();
    cfg
}

fn run_check(cfg: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["check", "--config"])
        .arg(cfg)
        .output()
        .expect("run ftpsgate check")
}

#[test]
fn check_creates_nothing_and_reports_errors_on_stderr() {
    let dir = temp_dir("check-nothing");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let cfg = check_config(dir.path(), &logs.join("xferlog").display().to_string());
    let before = listing(dir.path());
    let out = run_check(&cfg);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert_eq!(listing(dir.path()), before, "check changed the file system");
    assert!(!logs.join("xferlog").exists());

    // A transfer log in a directory that does not exist: an error, on stderr only.
    let cfg = check_config(
        dir.path(),
        &dir.path().join("nowhere/xferlog").display().to_string(),
    );
    let before = listing(dir.path());
    let out = run_check(&cfg);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("error: ") && stderr.contains("transfer_log.path"),
        "{stderr}"
    );
    assert!(!stdout.contains("error"), "errors on stdout:\n{stdout}");
    assert_eq!(listing(dir.path()), before, "check changed the file system");
}

// ---------------------------------------------------------------------------------------
// 5. CCC with real curl, both modes (issue 23 item 1), and ABOR during a drain (item 2)

/// Explicit-TLS gateway `edge` (listener `tls_extra`, route block `route`) in front of the
/// explicit-FTPS backend at `backend` whose CA is `ca`; pinhole timeout `pinhole`.
async fn tls_gateway(
    backend: SocketAddr,
    ca: &std::path::Path,
    tls_extra: &str,
    route: &str,
    pinhole: &str,
) -> (ftpsgate::Gateway, tempfile::TempDir, Certs) {
    init_logs();
    let dir = temp_dir("replies-tls-gw");
    let certs = Certs::generate(dir.path(), "gw");
    std::fs::copy(ca, dir.path().join("vs-ca.pem")).unwrap();
    let (p0, p1) = own_range(10);
    let yaml = format!(
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:0"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key, require: true{tls_extra} }}
    passive: {{ ports: "{p0}-{p1}", advertise: "127.0.0.1" }}
    backend: vs
{route}backends:
  - name: vs
    address: "{backend}"
    tls: {{ mode: explicit, ca: vs-ca.pem, server_name: localhost }}
timeouts: {{ pinhole: {pinhole} }}
"#
    );
    let gw = start_gateway(&yaml, dir.path()).await;
    (gw, dir, certs)
}

/// [`tls_gateway`] in front of strict vsftpd (explicit, require_ssl_reuse=YES).
async fn vsftpd_gateway(
    tls_extra: &str,
    route: &str,
) -> (Vsftpd, ftpsgate::Gateway, tempfile::TempDir) {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Explicit {
        require_reuse: true,
    });
    let (gw, dir, _) = tls_gateway(vs.addr(), &vs.certs().ca_pem, tls_extra, route, "10s").await;
    (vs, gw, dir)
}

fn curl_args(gw: &ftpsgate::Gateway, dir: &std::path::Path, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-sS",
        "--max-time",
        "40",
        "--ssl-reqd",
        "--cacert",
        &dir.join("gw-ca.pem").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (user, pass) = test_user();
    args.push("-u".into());
    args.push(format!("{user}:{pass}"));
    args.extend(extra.iter().cloned());
    let _ = gw;
    args
}

/// With `--ftp-ssl-ccc` curl 7.88 does not resume the control session on its data
/// connections (measured: a full handshake, refused with `reason="no_reuse"`), so the
/// listener allows data TLS without reuse here; the backend leg still requires it.
async fn ccc_mode(mode: &str) {
    let (vs, gw, dir) = vsftpd_gateway(
        ", allow_ccc: true, require_data_reuse: false",
        "    routes:\n      - { user: \"*\", backends: [vs], commands: { deny: [DELE] } }\n",
    )
    .await;
    let sha1 = vs.make_file("ccc1.bin", 1024 * 1024);
    let sha2 = vs.make_file("ccc2.bin", 300 * 1024);
    let work = temp_dir("ccc-work");
    let (a, b, up) = (
        work.path().join("a.bin"),
        work.path().join("b.bin"),
        work.path().join("up.bin"),
    );
    let up_sha = make_file(&up, 700 * 1024);
    let base = format!("ftp://{}", edge(&gw));
    let ccc = |mut v: Vec<String>| {
        let mut x = vec![
            "--ftp-ssl-ccc".to_string(),
            "--ftp-ssl-ccc-mode".to_string(),
            mode.to_string(),
        ];
        x.append(&mut v);
        x
    };
    // Two downloads on one connection: the second runs on the cleared control channel.
    let args = curl_args(
        &gw,
        dir.path(),
        &ccc(vec![
            format!("{base}/ccc1.bin"),
            "-o".into(),
            a.display().to_string(),
            format!("{base}/ccc2.bin"),
            "-o".into(),
            b.display().to_string(),
        ]),
    );
    let o = clients::run("curl", &args, Duration::from_secs(45)).await;
    assert!(o.success(), "curl CCC {mode} download: {o:?}");
    assert_eq!(sha256_file(&a), sha1, "CCC {mode}: first download");
    assert_eq!(sha256_file(&b), sha2, "CCC {mode}: second download");
    // Upload, then (`--next`, same connection) a download on the cleared channel.
    std::fs::remove_file(&a).unwrap();
    let mut args = curl_args(
        &gw,
        dir.path(),
        &ccc(vec![
            "-T".into(),
            up.display().to_string(),
            format!("{base}/ccc-up-{mode}.bin"),
            "--next".into(),
        ]),
    );
    args.extend(curl_args(
        &gw,
        dir.path(),
        &ccc(vec![
            format!("{base}/ccc1.bin"),
            "-o".into(),
            a.display().to_string(),
        ]),
    ));
    let o = clients::run("curl", &args, Duration::from_secs(45)).await;
    assert!(o.success(), "curl CCC {mode} upload: {o:?}");
    assert_eq!(
        sha256_file(&vs.root().join(format!("ccc-up-{mode}.bin"))),
        up_sha,
        "CCC {mode}: upload"
    );
    assert_eq!(sha256_file(&a), sha1, "CCC {mode}: download after upload");
    // Denied commands stay denied on the cleared channel.
    let args = curl_args(
        &gw,
        dir.path(),
        &ccc(vec![
            "-Q".into(),
            "-DELE ccc2.bin".into(),
            format!("{base}/ccc1.bin"),
            "-o".into(),
            a.display().to_string(),
        ]),
    );
    let o = clients::run("curl", &args, Duration::from_secs(45)).await;
    assert!(!o.success(), "DELE after CCC was not refused: {o:?}");
    assert!(
        vs.root().join("ccc2.bin").exists(),
        "DELE reached the backend"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccc_with_curl_passive_mode() {
    ccc_mode("passive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccc_with_curl_active_mode() {
    ccc_mode("active").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_download_through_a_draining_gateway_exits_0() {
    let (vs, gw, dir) = vsftpd_gateway("", "").await;
    vs.make_file("range.bin", 8 * 1024 * 1024);
    let whole = std::fs::read(vs.root().join("range.bin")).unwrap();
    let work = temp_dir("range-work");
    let out = work.path().join("range.out");
    let args = curl_args(
        &gw,
        dir.path(),
        &[
            "--limit-rate".into(),
            "400K".into(),
            "-r".into(),
            "0-1048575".into(),
            "-o".into(),
            out.display().to_string(),
            format!("ftp://{}/range.bin", edge(&gw)),
        ],
    );
    let curl = clients::run("curl", &args, Duration::from_secs(45));
    let drain = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        gw.drain(Duration::from_secs(30)).await
    };
    let (o, cut) = tokio::join!(curl, drain);
    assert!(o.success(), "curl -r through a draining gateway: {o:?}");
    assert_eq!(cut, 0, "sessions cut by the drain");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), 1024 * 1024);
    assert_eq!(sha256_bytes(&got), sha256_bytes(&whole[..1024 * 1024]));
}

// ---------------------------------------------------------------------------------------
// 6. ABOR and a failed client data leg against real servers (issue 20 §3)

/// ABOR mid-download, then a refused data leg (the client never connects to its
/// pinhole), then a good download: every reply pairs with its command.
async fn abort_and_failed_leg(
    backend: SocketAddr,
    ca: &std::path::Path,
    root: &std::path::Path,
    name: &str,
) {
    use tokio_rustls::TlsConnector;
    let (gw, _dir, certs) = tls_gateway(backend, ca, "", "", "2s").await;
    let big = pseudo_random(16 * 1024 * 1024, 5);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    chown_to_test_user(&root.join("big.bin"));
    let small = pseudo_random(50 * 1024, 6);
    std::fs::write(root.join("small.bin"), &small).unwrap();
    chown_to_test_user(&root.join("small.bin"));
    let tls = certs.client_config();
    bounded(90, name, async {
        let mut ftp = RawFtp::ready_explicit(edge(&gw), tls.clone()).await;
        // ABOR while the download runs.
        let data = ftp.pasv().await;
        let tcp = connect_from(None, data).await.expect("data connect");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (got_tx, got_rx) = tokio::sync::oneshot::channel::<()>();
        let tls2 = tls.clone();
        let reader = tokio::spawn(async move {
            let sn = rustls_pki_types::ServerName::try_from("localhost")
                .unwrap()
                .to_owned();
            let mut d = TlsConnector::from(tls2)
                .connect(sn, tcp)
                .await
                .expect("data TLS");
            let mut buf = vec![0u8; 256 * 1024];
            d.read_exact(&mut buf).await.expect("some data");
            let _ = got_tx.send(());
            let _ = stop_rx.await;
        });
        let r = ftp.cmd("RETR big.bin").await.expect("RETR");
        assert!(r.is_preliminary(), "{name}: RETR {r:?}");
        got_rx.await.expect("reader got data");
        ftp.send_raw(b"ABOR\r\n").await.expect("ABOR");
        let first = ftp.read_reply().await.expect("426");
        let second = ftp.read_reply().await.expect("226");
        assert_eq!(
            (first.code, second.code),
            (426, 226),
            "{name}: {first:?} {second:?}"
        );
        let _ = stop_tx.send(());
        let _ = reader.await;
        assert_eq!(
            ftp.cmd("TYPE I").await.unwrap().code,
            200,
            "{name}: after ABOR"
        );
        // A client data leg that never comes.
        ftp.pasv().await;
        let r = ftp.cmd("RETR big.bin").await.expect("RETR");
        let last = if r.is_preliminary() {
            ftp.read_reply().await.expect("final")
        } else {
            r
        };
        assert!(last.code == 425 || last.code == 426, "{name}: {last:?}");
        assert_eq!(
            ftp.cmd("TYPE I").await.unwrap().code,
            200,
            "{name}: after the failed leg"
        );
        assert_eq!(
            sha256_bytes(&ftp.retr("small.bin").await),
            sha256_bytes(&small),
            "{name}: download after"
        );
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_and_a_failed_data_leg_with_vsftpd() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Explicit {
        require_reuse: true,
    });
    abort_and_failed_leg(vs.addr(), &vs.certs().ca_pem, vs.root(), "vsftpd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_and_a_failed_data_leg_with_pure_ftpd() {
    ensure_tools();
    let pure = common::pureftpd::PureFtpd::start();
    abort_and_failed_leg(pure.addr(), &pure.certs().ca_pem, pure.root(), "pure-ftpd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_and_a_failed_data_leg_with_proftpd() {
    ensure_tools();
    let pro = common::proftpd::Proftpd::start();
    abort_and_failed_leg(pro.addr(), &pro.certs().ca_pem, pro.root(), "proftpd").await;
}
