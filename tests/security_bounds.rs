//! Issue 17, sections C and E: every session is bounded whatever the client does,
//! and what a client controls reaches the logs escaped. Real vsftpd behind the
//! gateway (a recording backend where the count of backend connections matters);
//! the fd-limit and log tests run the `ftpsgate` binary itself (`prlimit`, stderr).
//! Each test is named in SECURITY.md beside the promise it proves.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use common::harness::{bounded, captured_logs, init_logs};
use common::process::GwProcess;
use common::raw::DataPlan;
use common::*;

const STRICT_BACKEND: &str = "mode: explicit, ca: vs-ca.pem, server_name: localhost";

/// One explicit-TLS listener `edge` on `bind` → backend `vs` at `backend`.
/// `listener` is appended to the listener, `top` to the file.
fn config(
    bind: &str,
    backend: SocketAddr,
    backend_tls: &str,
    listener: &str,
    timeouts: &str,
    top: &str,
) -> String {
    let (p0, p1) = pasv_range();
    format!(
        r#"listeners:
  - name: edge
    bind: "{bind}"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key }}
    passive: {{ ports: "{p0}-{p1}", advertise: "127.0.0.1" }}
    backend: vs
{listener}backends:
  - name: vs
    address: "{backend}"
    tls: {{ {backend_tls} }}
timeouts: {{ pinhole: 10s{timeouts} }}
{top}"#
    )
}

/// Strict vsftpd and an in-process gateway in front of it.
struct Env {
    vs: Vsftpd,
    gw: ftpsgate::Gateway,
    certs: Certs,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(timeouts: &str, top: &str) -> Env {
        init_logs();
        ensure_tools();
        let vs = Vsftpd::start(VsftpdMode::Explicit {
            require_reuse: true,
        });
        let dir = temp_dir("gw");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
        let yaml = config("127.0.0.1:0", vs.addr(), STRICT_BACKEND, "", timeouts, top);
        let gw = start_gateway(&yaml, dir.path()).await;
        Env {
            vs,
            gw,
            certs,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.local_addr("edge").unwrap()
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 7. A client that pipelines and never reads is closed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_noops_never_read_end_the_session() {
    let env = Env::start(", control_write: 2s", "").await;
    let socket = TcpSocket::new_v4().unwrap();
    // A small receive window, so the replies back up at once.
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(env.addr()).await.unwrap();
    let (_read_half, mut write_half) = tcp.into_split();
    wait_for("session started", Duration::from_secs(5), || {
        env.gw.active_sessions() == 1
    })
    .await;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = b"NOOP\r\n".repeat(1000);
        for _ in 0..500 {
            if write_half.write_all(&chunk).await.is_err() {
                break;
            }
        }
        write_half
    });
    // The login deadline (60 s) is far: only the write timeout can end it.
    wait_for("session closed", Duration::from_secs(30), || {
        env.gw.active_sessions() == 0
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "closed only after {took:?}");
    let log = logs();
    assert!(
        log.contains("client does not read its replies"),
        "log does not say why:\n{log}"
    );
    assert!(log.contains("client not reading"), "closing line: {log}");
    writer.abort();
    env.gw.shutdown().await;
    drop(env.vs);
}

// ---------------------------------------------------------------------------------------
// 8. The login deadline is absolute; no backend connection before USER under TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_deadline_is_absolute_rein_does_not_restart_it() {
    let env = Env::start(", login: 2s", "").await;
    let started = Instant::now();
    let mut ftp = RawFtp::connect_explicit(env.addr(), env.certs.client_config()).await;
    // USER reaches vsftpd (331), then REIN again and again: the deadline holds.
    let r = ftp.cmd(&format!("USER {}", test_user().0)).await.unwrap();
    assert_eq!(r.code, 331, "USER: {r}");
    let mut last = None;
    while started.elapsed() < Duration::from_secs(10) {
        match ftp.cmd("REIN").await {
            Ok(r) if r.code == 421 => {
                last = Some(r);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "session outlived its 2 s login deadline by REINs: {took:?} ({last:?})"
    );
    if let Some(r) = last {
        assert!(r.text.contains("Timeout (login)"), "{r}");
    }
    ftp.expect_closed(Duration::from_secs(2)).await.unwrap();
    env.gw.shutdown().await;
    drop(env.vs);
}

/// A backend that greets, answers `USER` with 331 and everything else with 530,
/// and counts its connections.
async fn recording_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 recording backend\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.starts_with("USER") {
                        b"331 password please\r\n"
                    } else {
                        b"530 not here\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_sessions_pin_no_backend_connections() {
    init_logs();
    let (backend, count) = recording_backend().await;
    let dir = temp_dir("gw");
    let certs = Certs::generate(dir.path(), "gw");
    let yaml = config("127.0.0.1:0", backend, "mode: none", "", "", "");
    let gw = start_gateway(&yaml, dir.path()).await;
    let addr = gw.local_addr("edge").unwrap();
    let mut held = Vec::new();
    for i in 0..100 {
        let mut ftp = RawFtp::connect(addr).await.expect("connect");
        assert_eq!(ftp.greeting.code, 220, "session {i}: {}", ftp.greeting);
        match i % 4 {
            0 => {} // connects and says nothing
            1 => {
                // Login and pre-auth commands in clear: refused by the gateway.
                for cmd in [
                    "USER root",
                    "PASS x",
                    "SITE CPFR /etc/passwd",
                    "DELE secret",
                ] {
                    let r = ftp.cmd(cmd).await.unwrap();
                    assert!(r.code >= 500, "{cmd} before AUTH TLS: {r}");
                }
                assert_eq!(ftp.cmd("REIN").await.unwrap().code, 220);
            }
            2 => {
                // TLS, but no USER.
                let r = ftp.auth_tls(certs.client_config()).await.unwrap();
                assert_eq!(r.code, 234);
                assert_eq!(ftp.cmd("NOOP").await.unwrap().code, 200);
            }
            _ => {
                let r = ftp.cmd("NOOP").await.unwrap();
                assert_eq!(r.code, 200, "{r}");
            }
        }
        held.push(ftp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "100 unauthenticated sessions opened backend connections"
    );
    // The counter works: USER under TLS is what opens the backend leg.
    let mut ftp = RawFtp::connect_explicit(addr, certs.client_config()).await;
    assert_eq!(ftp.cmd("USER someone").await.unwrap().code, 331);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    drop(held);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 9. Safe defaults from the fd limit: a flood of idle connections under 1 024 fds.

/// `GET path` over a fresh connection; the whole response (`Connection: close`).
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_limit_flood_leaves_healthz_and_a_client_served() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Explicit {
        require_reuse: true,
    });
    let sha = vs.make_file("flood.bin", 256 * KIB);
    let dir = temp_dir("gw");
    let certs = Certs::generate(dir.path(), "gw");
    std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    let (port, mport) = (free_port(), free_port());
    let yaml = config(
        &format!("127.0.0.1:{port}"),
        vs.addr(),
        STRICT_BACKEND,
        "",
        "",
        &format!("metrics: {{ bind: \"127.0.0.1:{mport}\" }}\n"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));

    // No limits configured: `check --print` shows the caps derived from 1 024 fds.
    std::fs::write(dir.path().join("ftpsgate.yaml"), &yaml).unwrap();
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["check", "--print", "--config"])
        .arg(dir.path().join("ftpsgate.yaml"))
        .output()
        .expect("run check");
    // The YAML on stdout is the operator's; the derived caps are a note on stderr.
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains(
            "derived from the open-files limit 1024: limits.max_sessions: 240, \
             limits.max_sessions_per_ip: 180, limits.max_unauthenticated_per_ip: 120"
        ),
        "check --print lacks the derived caps:\n{note}"
    );

    let gw = GwProcess::start(&yaml, dir.path(), Some(1024), addr);
    // 1 100 idle connections from one address, none of them ever speaks.
    let mut flood = Vec::new();
    for _ in 0..1100u32 {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));
        if let Ok(tcp) = common::raw::connect_from(Some(from), addr).await {
            flood.push(tcp);
        }
    }
    assert!(
        flood.len() >= 1000,
        "only {} flood connections",
        flood.len()
    );

    // The health probe answers at once...
    let t0 = Instant::now();
    let health = bounded(5, "/healthz under the flood", http_get(maddr, "/healthz"))
        .await
        .expect("/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "/healthz took {:?}",
        t0.elapsed()
    );
    // ...and a legitimate client from another address is served in full.
    let client = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut ftp = bounded(
        10,
        "greeting under the flood",
        RawFtp::connect_from(Some(client), addr),
    )
    .await
    .expect("connect");
    assert_eq!(ftp.greeting.code, 220, "greeting: {}", ftp.greeting);
    assert_eq!(ftp.auth_tls(certs.client_config()).await.unwrap().code, 234);
    let (user, pass) = test_user();
    ftp.login(user, pass).await;
    ftp.prot(true).await;
    ftp.binary().await;
    let plan = DataPlan {
        bind: Some(client),
        ..ftp.data_plan()
    };
    let t = ftp.transfer("RETR flood.bin", plan).await;
    assert_eq!(sha256_bytes(t.assert_ok()), sha);
    ftp.quit().await;
    let log = gw.log();
    assert!(
        log.contains("max_unauthenticated_per_ip"),
        "flood was not refused by the unauthenticated cap:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    assert!(
        !log.contains("accept failed"),
        "the gateway ran out of descriptors:\n{}",
        &log[log.len().saturating_sub(4000)..]
    );
    drop(flood);
    drop(gw);
    drop(vs);
}

// ---------------------------------------------------------------------------------------
// 10. /healthz answers while the metrics port is full of keep-alives.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_with_64_keepalives_open() {
    let env = Env::start("", "metrics: { bind: \"127.0.0.1:0\" }\n").await;
    let maddr = env.gw.metrics_addr().expect("metrics endpoint");
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut tcp = TcpStream::connect(maddr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = bounded(5, "keep-alive scrape", tcp.read(&mut buf))
            .await
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "scrape answered");
        held.push(tcp);
    }
    // And a few that connect and never send a request.
    for _ in 0..16 {
        held.push(TcpStream::connect(maddr).await.unwrap());
    }
    let t0 = Instant::now();
    let health = bounded(5, "/healthz", http_get(maddr, "/healthz"))
        .await
        .expect("/healthz");
    let took = t0.elapsed();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    drop(held);
    env.gw.shutdown().await;
    drop(env.vs);
}

// ---------------------------------------------------------------------------------------
// 11. Optional per-address connection rate.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_rate_limit_refuses_a_burst() {
    let env = Env::start("", "limits: { connection_rate_per_ip: 5 }\n").await;
    let addr = env.addr();
    let (mut ok, mut refused) = (0, 0);
    let mut held = Vec::new();
    for _ in 0..10 {
        let ftp = RawFtp::connect(addr).await.expect("connect");
        match ftp.greeting.code {
            220 => ok += 1,
            421 => {
                assert!(ftp.greeting.text.contains("per second"), "{}", ftp.greeting);
                refused += 1;
            }
            c => panic!("unexpected greeting {c}: {}", ftp.greeting),
        }
        held.push(ftp);
    }
    assert!((5..=6).contains(&ok), "{ok} of 10 admitted at 5/s");
    assert!(refused >= 4, "{refused} refused");
    // Another address has its own budget; the first one's refills.
    let other = RawFtp::connect_from(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))), addr)
        .await
        .unwrap();
    assert_eq!(other.greeting.code, 220, "{}", other.greeting);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = RawFtp::connect(addr).await.unwrap();
    assert_eq!(again.greeting.code, 220, "{}", again.greeting);
    assert!(logs().contains("connection_rate"));
    drop(held);
    env.gw.shutdown().await;
    drop(env.vs);
}

// ---------------------------------------------------------------------------------------
// 15. A hostile user name reaches the log escaped.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_user_name_is_escaped_in_the_log() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Explicit {
        require_reuse: true,
    });
    let dir = temp_dir("gw");
    let certs = Certs::generate(dir.path(), "gw");
    std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let yaml = config(
        &format!("127.0.0.1:{port}"),
        vs.addr(),
        STRICT_BACKEND,
        "",
        "",
        "",
    );
    let gw = GwProcess::start(&yaml, dir.path(), None, addr);
    let mut ftp = RawFtp::connect_explicit(addr, certs.client_config()).await;
    // ESC sequences (colour, window title), RLO (U+202E), a C1 CSI and a line separator.
    ftp.send_raw("USER evil\x1b[31m\x1b]0;owned\x07\u{202E}txt\u{9b}2J\u{2028}x\r\n".as_bytes())
        .await
        .unwrap();
    let r = ftp.read_reply().await.unwrap();
    assert!(r.code == 331 || r.code >= 500, "{r}");
    ftp.quit().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = gw.log();
        if log.contains("login attempt") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = log
        .lines()
        .find(|l| l.contains("login attempt"))
        .unwrap_or_else(|| panic!("no login line:\n{log}"));
    assert!(
        line.contains(r"evil\u001b[31m\u001b]0;owned\u0007\u202etxt\u009b2J\u2028x"),
        "{line}"
    );
    for bad in ['\x1b', '\x07', '\u{202E}', '\u{9b}', '\u{2028}', '\r'] {
        assert!(!log.contains(bad), "raw {bad:?} in the log:\n{log}");
    }
    drop(gw);
    drop(vs);
}

// ---------------------------------------------------------------------------------------
// 16. `check` warns about a private key others can read.

#[test]
fn check_warns_when_the_private_key_is_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("check");
    let _certs = Certs::generate(dir.path(), "gw");
    std::fs::write(dir.path().join("vs-ca.pem"), "").unwrap();
    let yaml = config(
        "127.0.0.1:0",
        "127.0.0.1:2120".parse().unwrap(),
        "mode: none",
        "",
        "",
        "",
    );
    let path = dir.path().join("ftpsgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let key = dir.path().join("gw.key");
    let check = |path: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
            .args(["check", "--config"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&path);
    assert!(
        out.contains("warning: ")
            && out.contains("listeners[0].tls.key: private key")
            && out.contains("readable by group or others (mode 644)"),
        "{out}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = check(&path);
    assert!(!out.contains("private key"), "{out}");
}
