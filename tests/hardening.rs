//! Fault injection and hostile clients: a fault proxy between the gateway and the backend
//! control port (reset, stall, truncation, slow lines), clients that reset, stall, dribble,
//! never finish TLS, flood connections or send huge lines, and a leak check around ~200
//! such sessions (fds of this process — the gateway runs in-process —, open pinholes and
//! active sessions back to their baseline).
//!
//! Every gateway here uses short timeouts ([`TIMEOUTS`]), so each failure must show as the
//! right reply (421/425/426/451) or a clean close within seconds, never as a hang; a good
//! transfer (curl, SHA-256 checked) runs next to each attack. An upload that failed must
//! never be answered `226`.
//!
//! Tests that measure the whole process (fd count, RSS) take [`exclusive`]; all others take
//! [`shared`], so nothing else runs in this binary while a measurement is in progress.
//! For gateway logs of a failing case: `RUST_LOG=ftpsgate=debug cargo test --test hardening`.

mod common;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use common::faultproxy::{Dir, Fault, FaultProxy};
use common::harness::{bounded, init_stderr_logs, own_range};
use common::*;

/// The gateway's timeouts in every test of this file.
const TIMEOUTS: &str = "{ connect: 2s, idle: 5s, data_idle: 2s, pinhole: 2s, login: 3s }";
const CONNECT: Duration = Duration::from_secs(2);
const DATA_IDLE: Duration = Duration::from_secs(2);
const PINHOLE: Duration = Duration::from_secs(2);
const LOGIN: Duration = Duration::from_secs(3);
/// Scheduling slack on top of a timeout (debug build, two worker threads, parallel tests).
const SLACK: Duration = Duration::from_millis(2500);

/// What curl downloads next to every attack, and its size.
const GOOD: &str = "good.bin";
const GOOD_SIZE: usize = 12 * MIB;
/// What the raw good sessions download.
const SMALL: &str = "small.bin";

// ---------------------------------------------------------------------------------------
// Serialisation of process-wide measurements

static GATE: RwLock<()> = RwLock::const_new(());

/// Taken by every test that does not measure the process.
async fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().await
}

/// Taken by tests that measure fds or RSS of this process: nothing else runs meanwhile.
async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Waits (3 s at most) for the gateway to close `ftp` after its 421.
async fn expect_closed_after_421(ftp: &mut RawFtp) {
    ftp.expect_closed(Duration::from_secs(3))
        .await
        .expect("closed after 421");
}

/// `USER`/`PASS` as the gateway relays them for the test user: the bytes a backend control
/// connection carries toward the backend before the first post-login command.
fn login_cmds() -> String {
    format!("USER {TEST_USER}\r\nPASS {TEST_PASS}\r\n")
}

/// Byte lengths of the plain vsftpd's replies, measured through a transparent proxy.
#[derive(Debug, Clone, Copy)]
struct Lens {
    /// Greeting + `331` + `230`.
    login: u64,
    /// The reply to `TYPE I`.
    type_i: u64,
    /// The (multi-line) reply to `FEAT`.
    feat: u64,
}

async fn measure(vs: &Vsftpd) -> Lens {
    let probe = FaultProxy::start(vs.addr(), Fault::None).await;
    let settled = || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        probe.forwarded(Dir::ToClient)
    };
    let mut ftp = RawFtp::connect(probe.addr).await.expect("probe connect");
    ftp.login(TEST_USER, TEST_PASS).await;
    let login = settled().await;
    ftp.binary().await;
    let after_type = settled().await;
    let feat = ftp.cmd("FEAT").await.expect("FEAT");
    assert_eq!(feat.code, 211, "vsftpd FEAT: {feat}");
    assert!(feat.text.lines().count() > 2, "FEAT not multi-line: {feat}");
    let after_feat = settled().await;
    ftp.quit().await;
    Lens {
        login,
        type_i: after_type - login,
        feat: after_feat - after_type,
    }
}

/// One plain vsftpd (the faults need predictable control bytes) with the files the good
/// transfers use.
fn plain_vsftpd() -> Vsftpd {
    ensure_tools();
    test_user();
    let vs = Vsftpd::start(VsftpdMode::Plain);
    vs.make_file(GOOD, GOOD_SIZE);
    vs.make_file(SMALL, 256 * KIB);
    vs
}

/// A gateway with two listeners — `edge` (explicit FTPS) and `imp` (implicit) — in front
/// of one plain vsftpd: backend `vs` directly, and `f0`, `f1`, … each through its own
/// [`FaultProxy`]. `TEST_USER` goes to `vs`; `TEST_USER@fN` to `fN` (`user_at_backend`).
struct Env {
    gw: Option<ftpsgate::Gateway>,
    proxies: Vec<FaultProxy>,
    certs: Certs,
    good_sha: String,
    small_sha: String,
    dir: tempfile::TempDir,
    vs: Vsftpd,
}

impl Env {
    /// The preamble of most tests here: the [`shared`] gate (hold the guard for the whole
    /// test), a [`plain_vsftpd`] and a gateway in front of it with one fault proxy per
    /// entry of `faults`.
    async fn scenario(faults: &[Fault]) -> (RwLockReadGuard<'static, ()>, Env) {
        let gate = shared().await;
        let env = Env::start(plain_vsftpd(), faults).await;
        (gate, env)
    }

    /// Like [`Env::scenario`], with faults placed by the plain vsftpd's reply
    /// lengths ([`measure`]d through a transparent proxy first).
    async fn scenario_measured(
        faults: impl FnOnce(Lens) -> Vec<Fault>,
    ) -> (RwLockReadGuard<'static, ()>, Env) {
        let gate = shared().await;
        let vs = plain_vsftpd();
        let lens = measure(&vs).await;
        let env = Env::start(vs, &faults(lens)).await;
        (gate, env)
    }

    /// Runs `attack` within `secs` (else fails as a hang, naming `what`), with a curl
    /// download next to it that must arrive intact (see [`with_curl`]; `tag` names its file).
    async fn beside_curl<T>(
        &self,
        secs: u64,
        what: &str,
        tag: &str,
        attack: impl Future<Output = T>,
    ) -> T {
        bounded(secs, what, with_curl(self, tag, attack)).await
    }

    async fn start(vs: Vsftpd, faults: &[Fault]) -> Env {
        init_stderr_logs();
        let mut proxies = Vec::new();
        for f in faults {
            proxies.push(FaultProxy::start(vs.addr(), *f).await);
        }
        let dir = temp_dir("hard");
        let certs = Certs::generate(dir.path(), "gw");
        let (e0, e1) = own_range(150);
        let (i0, i1) = own_range(20);
        let mut backends = format!("  - name: vs\n    address: \"{}\"\n", vs.addr());
        let mut names = Vec::new();
        for (i, p) in proxies.iter().enumerate() {
            backends.push_str(&format!("  - name: f{i}\n    address: \"{}\"\n", p.addr));
            names.push(format!("f{i}"));
        }
        let routes = if names.is_empty() {
            String::new()
        } else {
            format!(
                "    routes:\n      - {{ user: \"no-such-user-*\", backends: [{}] }}\n",
                names.join(", ")
            )
        };
        let yaml = format!(
            r#"listeners:
  - name: edge
    bind: "127.0.0.1:0"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key }}
    passive: {{ ports: "{e0}-{e1}", advertise: "127.0.0.1" }}
    backend: vs
    user_at_backend: true
{routes}  - name: imp
    bind: "127.0.0.1:0"
    tls: {{ mode: implicit, cert: gw.pem, key: gw.key }}
    passive: {{ ports: "{i0}-{i1}", advertise: "127.0.0.1" }}
    backend: vs
backends:
{backends}timeouts: {TIMEOUTS}
shutdown: {{ grace: 1s }}
"#
        );
        let gw = gateway::start_gateway(&yaml, dir.path()).await;
        let good_sha = sha256_file(&vs.root().join(GOOD));
        let small_sha = sha256_file(&vs.root().join(SMALL));
        Env {
            gw: Some(gw),
            proxies,
            certs,
            good_sha,
            small_sha,
            dir,
            vs,
        }
    }

    fn gw(&self) -> &ftpsgate::Gateway {
        self.gw.as_ref().expect("gateway running")
    }

    fn edge(&self) -> SocketAddr {
        self.gw().local_addr("edge").expect("edge")
    }

    fn imp(&self) -> SocketAddr {
        self.gw().local_addr("imp").expect("imp")
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.certs.client_config()
    }

    fn faulty_user(i: usize) -> String {
        format!("{TEST_USER}@f{i}")
    }

    fn pinholes_open(&self) -> f64 {
        metric(&self.gw().metrics().encode(), "ftpsgate_pinholes_open")
    }

    fn sessions(&self) -> usize {
        self.gw().active_sessions()
    }

    fn curl(&self) -> Curl {
        Curl::new(self.edge(), Security::Explicit, Some(&self.certs.ca_pem))
    }

    /// Waits until no session runs and no pinhole is open.
    async fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (s, p) = (self.sessions(), self.pinholes_open());
            if s == 0 && p == 0.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not settled after {within:?}: {s} sessions active, {p} pinholes open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (5 s at most) for the gateway to settle, then shuts everything down.
    async fn settle_and_shutdown(self) {
        self.settle(Duration::from_secs(5)).await;
        self.shutdown().await;
    }

    async fn shutdown(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown_with(Duration::from_secs(1)).await;
        }
    }
}

/// What a client task needs of an [`Env`], owned (for spawned tasks).
#[derive(Clone)]
struct Client {
    edge: SocketAddr,
    imp: SocketAddr,
    ca: rustls_pki_types::CertificateDer<'static>,
    small_sha: String,
}

impl Client {
    /// A fresh client TLS config (own session cache) trusting the gateway: one per control
    /// session, so its data connections resume that session and no other.
    fn tls(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

impl Env {
    fn client(&self) -> Client {
        Client {
            edge: self.edge(),
            imp: self.imp(),
            ca: self.certs.ca_der.clone(),
            small_sha: self.small_sha.clone(),
        }
    }
}

/// The value of an unlabelled metric in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}

/// A good session on `vs`: explicit TLS, login, RETR checked by SHA-256.
async fn good_session(env: &Env) {
    let mut ftp = RawFtp::ready_explicit(env.edge(), env.tls()).await;
    let got = ftp.retr(SMALL).await;
    assert_eq!(sha256_bytes(&got), env.small_sha, "good session: corrupted");
    ftp.quit().await;
}

/// Runs `attack` while curl downloads [`GOOD`] (rate-limited so the two overlap), then
/// checks curl's file.
async fn with_curl<T>(env: &Env, tag: &str, attack: impl Future<Output = T>) -> T {
    let curl = env.curl();
    let local = env.dir.path().join(format!("curl-{tag}.bin"));
    let out = local.display().to_string();
    let handle =
        tokio::spawn(async move { curl.raw(&["--limit-rate", "4M", "-o", &out], GOOD).await });
    let res = attack.await;
    let o = handle.await.expect("curl task");
    o.assert_ok();
    assert_eq!(
        sha256_file(&local),
        env.good_sha,
        "curl download next to {tag}: corrupted"
    );
    res
}

/// Reads `tcp` until the gateway closes it, no earlier than the login timeout after
/// `since`; what arrived must be nothing or a TLS alert (0x15). Returns it.
async fn closed_by_login_timeout(tcp: &mut TcpStream, since: Instant, what: &str) -> Vec<u8> {
    let got = read_until_closed(tcp, LOGIN + SLACK)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let at = since.elapsed();
    assert!(
        at >= LOGIN - Duration::from_millis(300),
        "{what}: closed early {at:?}"
    );
    assert!(got.is_empty() || got[0] == 0x15, "{what}: {got:?}");
    got
}

/// Reads until EOF or reset within `within`; returns what arrived.
async fn read_until_closed<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    within: Duration,
) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let res = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match res {
        Ok(()) => Ok(got),
        Err(_) => Err(format!(
            "still open after {within:?}; received {:?}",
            String::from_utf8_lossy(&got)
        )),
    }
}

/// One reply (multi-line joined) from a buffered reader: `(code, text)`.
async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<(u16, String)> {
    let inner = async {
        let mut text = String::new();
        let mut code: Option<u16> = None;
        loop {
            let mut raw = Vec::new();
            if r.read_until(b'\n', &mut raw).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            text.push_str(&line);
            text.push('\n');
            let c: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad line {line:?}"))
            })?;
            match code {
                None if line.as_bytes().get(3) == Some(&b'-') => code = Some(c),
                None => return Ok((c, text)),
                Some(first) if c == first && line.as_bytes().get(3) == Some(&b' ') => {
                    return Ok((c, text))
                }
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), inner)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))?
}

/// TCP + TLS (resuming `tls`'s session) to a pinhole, like curl: before the transfer command.
async fn data_tls(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = raw::connect_from(None, addr).await.expect("data connect");
    bounded(
        10,
        "data TLS handshake",
        TlsConnector::from(tls).connect(localhost(), tcp),
    )
    .await
    .expect("data TLS handshake")
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap().to_owned()
}

/// The first flight of a TLS handshake (the ClientHello record) for `tls`.
fn client_hello(tls: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(tls.clone(), localhost()).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Plain TCP to the explicit listener; returns it after the `220` greeting.
async fn greeted(addr: SocketAddr) -> BufReader<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut r = BufReader::new(tcp);
    let (code, text) = read_reply(&mut r).await.expect("greeting");
    assert_eq!(code, 220, "greeting: {text}");
    r
}

/// An explicit-FTPS control connection whose socket we keep, so we can reset it.
struct Ctl {
    s: BufReader<TlsStream<TcpStream>>,
    tls: Arc<rustls::ClientConfig>,
}

impl Ctl {
    /// Connect, `AUTH TLS`, log in as `user`, `PBSZ 0`, `PROT P`, `TYPE I`.
    async fn login(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, user: &str) -> Ctl {
        let mut r = greeted(addr).await;
        r.get_mut().write_all(b"AUTH TLS\r\n").await.unwrap();
        let (code, text) = read_reply(&mut r).await.expect("AUTH TLS");
        assert_eq!(code, 234, "AUTH TLS: {text}");
        assert!(r.buffer().is_empty());
        let t = TlsConnector::from(tls.clone())
            .connect(localhost(), r.into_inner())
            .await
            .expect("control TLS");
        let mut c = Ctl {
            s: BufReader::new(t),
            tls,
        };
        c.expect(&format!("USER {user}"), 331).await;
        c.expect(&format!("PASS {TEST_PASS}"), 230).await;
        c.expect("PBSZ 0", 200).await;
        c.expect("PROT P", 200).await;
        c.expect("TYPE I", 200).await;
        c
    }

    async fn send(&mut self, line: &str) -> io::Result<()> {
        self.s
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.s.get_mut().flush().await
    }

    async fn reply(&mut self) -> io::Result<(u16, String)> {
        read_reply(&mut self.s).await
    }

    async fn expect(&mut self, line: &str, code: u16) -> String {
        self.send(line).await.expect("send");
        let (c, text) = self.reply().await.unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(c, code, "{line}: {text}");
        text
    }

    async fn pasv(&mut self) -> SocketAddr {
        let text = self.expect("PASV", 227).await;
        raw::parse_227(&text).unwrap_or_else(|| panic!("cannot parse {text}"))
    }

    /// Drops the control connection with a TCP reset (no QUIT, no close_notify, no FIN).
    fn reset(self) {
        let _ = self.s.get_ref().get_ref().0.set_zero_linger();
        drop(self);
    }
}

/// Open file descriptors of this process (the gateway runs in it).
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The soft `RLIMIT_NOFILE` of this process.
fn nofile_soft_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// Polls until the fd count is at most `baseline + slack`; returns the last count.
async fn fds_back_to(baseline: usize, slack: usize, within: Duration) -> Result<usize, usize> {
    let deadline = Instant::now() + within;
    loop {
        let n = fd_count();
        if n <= baseline + slack {
            return Ok(n);
        }
        if Instant::now() >= deadline {
            return Err(n);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether vsftpd logged a successful upload of `name`.
fn vsftpd_ok_upload(vs: &Vsftpd, name: &str) -> Option<String> {
    vs.log()
        .lines()
        .find(|l| l.contains("OK UPLOAD") && l.contains(&format!("/{name}\"")))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// 1. Backend control reset mid-session

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_control_reset_mid_session_gives_421() {
    let (_g, env) = Env::scenario_measured(|lens| {
        vec![
            // The first command after login resets the backend connection …
            Fault::ResetAt {
                dir: Dir::ToUpstream,
                byte: login_cmds().len() as u64,
            },
            // … or the backend's first reply after login does.
            Fault::ResetAt {
                dir: Dir::ToClient,
                byte: lens.login,
            },
        ]
    })
    .await;
    env.beside_curl(55, "backend reset", "backend-reset", async {
        for i in 0..2 {
            let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
            ftp.login(&Env::faulty_user(i), TEST_PASS).await;
            let started = Instant::now();
            let r = ftp.cmd("TYPE I").await.expect("reply to TYPE I");
            assert_eq!(r.code, 421, "f{i}: backend reset: {r}");
            ftp.expect_closed(Duration::from_secs(3))
                .await
                .unwrap_or_else(|e| panic!("f{i}: not closed after 421: {e}"));
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "f{i}: 421 took {:?}",
                started.elapsed()
            );
            assert_eq!(env.proxies[i].fired(), 1, "f{i}: fault did not fire");
        }
        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 2. Backend control stalls around PASV

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_control_stall_at_pasv_gives_421_no_hang() {
    let (_g, env) = Env::scenario_measured(|lens| {
        vec![
            // The backend's 227 never arrives.
            Fault::StallAt {
                dir: Dir::ToClient,
                byte: lens.login + lens.type_i,
            },
            // The 227 arrives; nothing after PASV reaches the backend (RETR is lost).
            Fault::StallAt {
                dir: Dir::ToUpstream,
                byte: (login_cmds().len() + "TYPE I\r\nPASV\r\n".len()) as u64,
            },
        ]
    })
    .await;
    env.beside_curl(55, "backend stall", "backend-stall", async {
        // (a) the 227 stalls: 421 within the connect timeout.
        let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
        ftp.login(&Env::faulty_user(0), TEST_PASS).await;
        ftp.prot(true).await;
        ftp.binary().await;
        let started = Instant::now();
        let r = ftp.cmd("PASV").await.expect("reply to PASV");
        let took = started.elapsed();
        assert!(r.code == 421 || r.code == 425, "stalled 227: {r}");
        assert!(took < CONNECT + SLACK, "stalled 227: reply after {took:?}");
        if r.code == 421 {
            expect_closed_after_421(&mut ftp).await;
        }
        assert_eq!(env.proxies[0].fired(), 1);

        // (b) the 227 arrives but RETR never reaches the backend.
        let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
        ftp.login(&Env::faulty_user(1), TEST_PASS).await;
        ftp.prot(true).await;
        ftp.binary().await;
        let pinhole = ftp.pasv().await;
        let started = Instant::now();
        let plan = ftp.data_plan();
        let t = ftp
            .transfer_at(pinhole, &format!("RETR {GOOD}"), plan)
            .await;
        let took = started.elapsed();
        eprintln!("stalled RETR: {:?} after {took:?}", t.replies);
        assert!(
            t.replies
                .iter()
                .all(|r| r.code != 226 && r.code < 200 || r.code >= 400 || r.code == 0),
            "stalled RETR must fail: {:?}",
            t.replies
        );
        let last = t.last();
        assert!(
            last.code == 0 || (400..500).contains(&last.code),
            "stalled RETR: expected 421/425/426 or close, got {last}"
        );
        assert!(
            took < CONNECT + DATA_IDLE * 2 + SLACK,
            "stalled RETR: reply after {took:?}"
        );
        assert!(
            t.data.as_ref().map_or(true, |d| d.len() < GOOD_SIZE),
            "data complete?"
        );
        if last.code == 421 || last.code == 0 {
            expect_closed_after_421(&mut ftp).await;
        }
        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 3. Backend control truncated mid-reply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_control_truncated_gives_421() {
    let (_g, env) = Env::scenario_measured(|lens| {
        vec![
            // Inside FEAT's multi-line reply.
            Fault::TruncateAt {
                dir: Dir::ToClient,
                byte: lens.login + lens.type_i + (lens.feat / 2),
            },
            // Inside the greeting.
            Fault::TruncateAt {
                dir: Dir::ToClient,
                byte: 7,
            },
            // A command cut in the middle ("TYP").
            Fault::TruncateAt {
                dir: Dir::ToUpstream,
                byte: login_cmds().len() as u64 + 3,
            },
        ]
    })
    .await;
    env.beside_curl(55, "backend truncation", "backend-truncated", async {
        // (a) FEAT cut in the middle of its multi-line reply.
        let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
        ftp.login(&Env::faulty_user(0), TEST_PASS).await;
        ftp.binary().await;
        let started = Instant::now();
        let r = ftp.cmd("FEAT").await.expect("reply to FEAT");
        assert_eq!(r.code, 421, "truncated FEAT: {r}");
        assert!(started.elapsed() < CONNECT + SLACK);
        expect_closed_after_421(&mut ftp).await;
        assert_eq!(env.proxies[0].fired(), 1);

        // (b) the greeting cut: USER gets 421.
        let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
        let r = ftp
            .cmd(&format!("USER {}", Env::faulty_user(1)))
            .await
            .expect("reply to USER");
        assert_eq!(r.code, 421, "truncated greeting: {r}");
        expect_closed_after_421(&mut ftp).await;

        // (c) our own command cut, then the backend connection closed.
        let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
        ftp.login(&Env::faulty_user(2), TEST_PASS).await;
        let r = ftp.cmd("TYPE I").await.expect("reply to TYPE I");
        assert_eq!(r.code, 421, "truncated command: {r}");
        expect_closed_after_421(&mut ftp).await;

        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 4. Slow backend control: replies and commands at 1 byte per 10 ms

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_control_still_works() {
    let (_g, env) = Env::scenario(&[
        Fault::Slow {
            dir: Dir::ToClient,
            bytes_per_sec: 100,
        },
        Fault::Slow {
            dir: Dir::ToUpstream,
            bytes_per_sec: 100,
        },
    ])
    .await;
    let down_sha = env.vs.make_file("slow.bin", MIB);
    let session = |i: usize| {
        let env = &env;
        let down_sha = down_sha.clone();
        async move {
            let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
            ftp.login(&Env::faulty_user(i), TEST_PASS).await;
            ftp.prot(true).await;
            ftp.binary().await;
            let feat = ftp.cmd("FEAT").await.expect("FEAT");
            assert_eq!(feat.code, 211, "f{i}: FEAT: {feat}");
            for want in ["SIZE", "MDTM", "AUTH TLS", "EPSV"] {
                assert!(feat.text.contains(want), "f{i}: FEAT lacks {want}: {feat}");
            }
            let got = ftp.retr("slow.bin").await;
            assert_eq!(sha256_bytes(&got), down_sha, "f{i}: slow RETR corrupted");
            let up = pseudo_random(300 * KIB, 40 + i as u64);
            let name = format!("slow-up-{i}.bin");
            ftp.stor(&name, &up).await;
            assert_eq!(sha256_file(&env.vs.root().join(&name)), sha256_bytes(&up));
            let r = ftp.cmd("PWD").await.expect("PWD");
            assert_eq!(r.code, 257, "f{i}: {r}");
            ftp.quit().await;
            assert!(env.proxies[i].forwarded(Dir::ToClient) > 300);
        }
    };
    env.beside_curl(55, "slow backend", "slow-backend", async {
        tokio::join!(session(0), session(1));
    })
    .await;
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 5. Client control reset mid-transfer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_control_reset_mid_retr_cleans_up() {
    let (_g, env) = Env::scenario(&[]).await;
    env.vs.make_file("big16.bin", 16 * MIB);
    env.beside_curl(55, "control reset mid-RETR", "ctl-reset", async {
        let mut ctl = Ctl::login(env.edge(), env.tls(), TEST_USER).await;
        let pinhole = ctl.pasv().await;
        let mut data = data_tls(pinhole, ctl.tls.clone()).await;
        ctl.send("RETR big16.bin").await.unwrap();
        let (code, text) = ctl.reply().await.expect("reply to RETR");
        assert_eq!(code, 150, "{text}");
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * KIB];
        while got < MIB {
            let n = data.read(&mut buf).await.expect("read data");
            assert!(n > 0, "data ended after {got} bytes");
            got += n;
        }
        ctl.reset();
        // The gateway must abort the transfer: the data connection ends, and not with
        // the whole file and close_notify.
        let ended = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                match data.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => got += n,
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let ended = ended.expect("data connection still open 8 s after the control reset");
        assert!(
            !(ended.is_ok() && got == 16 * MIB),
            "the transfer completed cleanly although the client's control connection was reset"
        );
        eprintln!("data after control reset: {got} bytes, end: {ended:?}");
        env.settle(Duration::from_secs(5)).await;
        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

/// The client resets its control connection in the middle of an upload (its data
/// connection stays open, silent): the backend must not keep the short file as a complete
/// upload — the gateway has to end the backend data leg with a reset, not a FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_control_reset_mid_stor_is_not_a_complete_upload() {
    let (_g, env) = Env::scenario(&[]).await;
    bounded(55, "control reset mid-STOR", async {
        let mut ctl = Ctl::login(env.edge(), env.tls(), TEST_USER).await;
        let pinhole = ctl.pasv().await;
        let mut data = data_tls(pinhole, ctl.tls.clone()).await;
        ctl.send("STOR cut-by-ctl.bin").await.unwrap();
        let (code, text) = ctl.reply().await.expect("reply to STOR");
        assert_eq!(code, 150, "{text}");
        data.write_all(&pseudo_random(MIB, 5)).await.unwrap();
        data.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        ctl.reset();
        let _ = read_until_closed(&mut data, Duration::from_secs(8))
            .await
            .expect("data connection closed after the control reset");
        env.settle(Duration::from_secs(5)).await;
        // vsftpd logs the upload's end once its data connection is gone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(line) = vsftpd_ok_upload(&env.vs, "cut-by-ctl.bin") {
            panic!(
                "the backend stored the cut upload as complete: {line}\n(gateway closed the backend \
                 data leg with FIN instead of a reset)"
            );
        }
    })
    .await;
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 6. Data legs stalled by the client

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stalls_reading_download_gets_426() {
    let (_g, env) = Env::scenario(&[]).await;
    env.vs.make_file("stall32.bin", 32 * MIB);
    env.beside_curl(55, "download stall", "download-stall", async {
        let mut ctl = Ctl::login(env.edge(), env.tls(), TEST_USER).await;
        let pinhole = ctl.pasv().await;
        let data = data_tls(pinhole, ctl.tls.clone()).await;
        ctl.send("RETR stall32.bin").await.unwrap();
        let (code, text) = ctl.reply().await.expect("reply to RETR");
        assert_eq!(code, 150, "{text}");
        // Never read the data connection; keep reading control.
        let started = Instant::now();
        let (code, text) = ctl.reply().await.expect("final reply to a stalled RETR");
        let took = started.elapsed();
        assert_eq!(code, 426, "stalled download: {text}");
        assert!(took < DATA_IDLE * 2 + SLACK, "426 after {took:?}");
        assert!(
            took >= DATA_IDLE - Duration::from_millis(200),
            "426 after only {took:?}"
        );
        // The session goes on.
        ctl.expect("NOOP", 200).await;
        drop(data);
        ctl.expect("QUIT", 221).await;
        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

/// STOR through the gateway: `sent` bytes, then the client's data connection goes silent
/// (open, nothing more, no close). Returns the final reply and how long it took.
async fn stalled_upload(
    cl: &Client,
    name: &str,
    sent: usize,
    tls: bool,
) -> ((u16, String), Duration) {
    let mut ctl = Ctl::login(cl.edge, cl.tls(), TEST_USER).await;
    let pinhole = ctl.pasv().await;
    // Keep whichever data connection alive until the reply is in.
    let mut data_tls_conn = None;
    let mut data_tcp = None;
    if tls {
        let mut d = data_tls(pinhole, ctl.tls.clone()).await;
        ctl.send(&format!("STOR {name}")).await.unwrap();
        let (code, text) = ctl.reply().await.expect("reply to STOR");
        assert_eq!(code, 150, "{text}");
        if sent > 0 {
            d.write_all(&pseudo_random(sent, 9)).await.unwrap();
            d.flush().await.unwrap();
        }
        data_tls_conn = Some(d);
    } else {
        // TCP only: the TLS handshake never starts.
        data_tcp = Some(
            raw::connect_from(None, pinhole)
                .await
                .expect("data connect"),
        );
        ctl.send(&format!("STOR {name}")).await.unwrap();
    }
    let started = Instant::now();
    let mut r = ctl.reply().await.expect("reply");
    if r.0 == 150 {
        r = ctl.reply().await.expect("final reply");
    }
    let took = started.elapsed();
    if r.0 != 421 {
        ctl.expect("NOOP", 200).await;
    }
    drop((data_tls_conn, data_tcp));
    (r, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stops_sending_upload_is_not_226() {
    let (_g, env) = Env::scenario(&[]).await;
    env.beside_curl(55, "upload stall", "upload-stall", async {
        let ((code, text), took) = stalled_upload(&env.client(), "stall-up.bin", MIB, true).await;
        assert!(code == 426 || code == 451, "stalled upload: {text}");
        assert!(
            took < DATA_IDLE + SLACK,
            "stalled upload: reply after {took:?}"
        );
        good_session(&env).await;
    })
    .await;
    env.settle(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        vsftpd_ok_upload(&env.vs, "stall-up.bin").is_none(),
        "backend logged the stalled upload as complete"
    );
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 12. Data connections that never send

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_data_connection_on_stor_is_not_226() {
    let (_g, env) = Env::scenario(&[]).await;
    env.beside_curl(55, "silent data connection", "silent-data", async {
        // (a) TLS established, STOR, not one byte.
        let ((code, text), took) = stalled_upload(&env.client(), "silent-a.bin", 0, true).await;
        assert!(code == 426 || code == 451, "silent TLS data leg: {text}");
        assert!(took < DATA_IDLE + SLACK, "reply after {took:?}");
        // (b) TCP only, no ClientHello, STOR.
        let ((code, text), took) = stalled_upload(&env.client(), "silent-b.bin", 0, false).await;
        assert!(
            code == 425 || code == 426 || code == 451,
            "data leg without TLS handshake: {text}"
        );
        assert!(
            took < PINHOLE.max(DATA_IDLE) + SLACK,
            "reply after {took:?}"
        );
        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

/// The backend side of (12): an upload whose client data leg never delivered a byte must
/// not be logged by the backend as a successful (empty) upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_data_connection_on_stor_leaves_no_complete_upload_on_backend() {
    let (_g, env) = Env::scenario(&[]).await;
    bounded(55, "silent data connection, backend view", async {
        let ((code, text), _) = stalled_upload(&env.client(), "silent-c.bin", 0, true).await;
        assert!(code == 426 || code == 451, "silent TLS data leg: {text}");
        let ((code, text), _) = stalled_upload(&env.client(), "silent-d.bin", 0, false).await;
        assert!(
            code == 425 || code == 426 || code == 451,
            "no TLS handshake: {text}"
        );
    })
    .await;
    env.settle(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok: Vec<String> = ["silent-c.bin", "silent-d.bin"]
        .iter()
        .filter_map(|n| vsftpd_ok_upload(&env.vs, n))
        .collect();
    assert!(
        ok.is_empty(),
        "the backend logged failed uploads as complete:\n{}",
        ok.join("\n")
    );
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 7. Slowloris on control

/// Dribbles `bytes` one per second into `w` while reading `r` until the gateway closes;
/// returns what was read and when the close came (from `since`).
async fn dribble<R, W>(mut r: R, mut w: W, bytes: &[u8], since: Instant) -> (Vec<u8>, Duration)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let reader = async {
        let got = read_until_closed(&mut r, Duration::from_secs(10)).await;
        (got, since.elapsed())
    };
    let writer = async {
        for b in bytes.iter().cycle() {
            if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let (got, at) = tokio::select! {
        r = reader => r,
        _ = writer => unreachable!(),
    };
    (got.unwrap_or_else(|e| panic!("slowloris: {e}")), at)
}

fn assert_login_timeout(what: &str, got: &[u8], at: Duration, expect_421: bool) {
    let text = String::from_utf8_lossy(got);
    if expect_421 {
        assert!(
            text.contains("421"),
            "{what}: no 421 before the close: {text:?}"
        );
    }
    assert!(
        !text.contains("230") && !text.contains("331"),
        "{what}: {text:?}"
    );
    assert!(
        at >= LOGIN - Duration::from_millis(300) && at < LOGIN + SLACK,
        "{what}: closed after {at:?}, login timeout is {LOGIN:?}; got {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_closed_by_login_timeout() {
    let (_g, env) = Env::scenario(&[]).await;
    env.beside_curl(55, "slowloris", "slowloris", async {
        let before_tls = async {
            let since = Instant::now();
            let tcp = greeted(env.edge()).await.into_inner();
            let (r, w) = tcp.into_split();
            let (got, at) = dribble(r, w, b"USER someone\r\n", since).await;
            assert_login_timeout("dribbled USER before TLS", &got, at, true);
        };
        let after_tls = async {
            let since = Instant::now();
            let mut c = greeted(env.edge()).await;
            c.get_mut().write_all(b"AUTH TLS\r\n").await.unwrap();
            let (code, _) = read_reply(&mut c).await.unwrap();
            assert_eq!(code, 234);
            let t = TlsConnector::from(env.tls())
                .connect(localhost(), c.into_inner())
                .await
                .expect("TLS");
            let (r, w) = tokio::io::split(t);
            let (got, at) = dribble(r, w, b"USER someone\r\n", since).await;
            assert_login_timeout("dribbled USER after TLS", &got, at, true);
        };
        // Complete lines, one per second, but never a login.
        let busy = async {
            let since = Instant::now();
            let mut ftp = RawFtp::connect_explicit(env.edge(), env.tls()).await;
            let mut closed = None;
            for _ in 0..10 {
                match ftp.cmd("NOOP").await {
                    Ok(r) if r.code == 200 => {}
                    Ok(r) => {
                        closed = Some((r, since.elapsed()));
                        break;
                    }
                    Err(e) => panic!("NOOP loop: connection ended without 421: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let (r, at) = closed.expect("never closed by the login timeout");
            assert_eq!(r.code, 421, "{r}");
            assert_login_timeout("NOOP without login", b"421", at, true);
            expect_closed_after_421(&mut ftp).await;
        };
        tokio::join!(before_tls, after_tls, busy);
        good_session(&env).await;
    })
    .await;
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 8. TLS handshakes that never finish

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_tls_handshakes_closed_by_login_timeout() {
    let (_g, env) = Env::scenario(&[]).await;
    let hello = client_hello(&env.tls());
    let half = &hello[..hello.len() / 2];
    env.beside_curl(55, "unfinished handshakes", "tls-stall", async {
        let explicit_half = async {
            let mut c = greeted(env.edge()).await;
            c.get_mut().write_all(b"AUTH TLS\r\n").await.unwrap();
            let (code, _) = read_reply(&mut c).await.unwrap();
            assert_eq!(code, 234);
            let mut tcp = c.into_inner();
            let since = Instant::now();
            tcp.write_all(half).await.unwrap();
            closed_by_login_timeout(&mut tcp, since, "explicit: half a ClientHello").await;
        };
        let implicit_silent = async {
            let since = Instant::now();
            let mut tcp = TcpStream::connect(env.imp()).await.unwrap();
            let got = closed_by_login_timeout(&mut tcp, since, "implicit: silent client").await;
            assert!(got.is_empty(), "implicit silent: {got:?}");
        };
        let implicit_half = async {
            let since = Instant::now();
            let mut tcp = TcpStream::connect(env.imp()).await.unwrap();
            tcp.write_all(half).await.unwrap();
            closed_by_login_timeout(&mut tcp, since, "implicit: half a ClientHello").await;
        };
        tokio::join!(explicit_half, implicit_silent, implicit_half);
        good_session(&env).await;
        // The implicit listener still serves.
        let mut ftp = RawFtp::connect_implicit(env.imp(), env.tls())
            .await
            .expect("implicit");
        ftp.login(TEST_USER, TEST_PASS).await;
        ftp.prot(true).await;
        ftp.binary().await;
        assert_eq!(sha256_bytes(&ftp.retr(SMALL).await), env.small_sha);
        ftp.quit().await;
    })
    .await;
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 11. Plaintext pipelined after 234, before the ClientHello

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_after_234_before_client_hello_is_closed() {
    let (_g, env) = Env::scenario(&[Fault::None]).await;
    let evil = format!("USER {}\r\nPASS {TEST_PASS}\r\n", Env::faulty_user(0));
    let hello = client_hello(&env.tls());
    env.beside_curl(55, "plaintext after 234", "after-234", async {
        // (a) separate writes: 234 read, plaintext, a moment later the ClientHello.
        // (b) plaintext and ClientHello in one write right after 234.
        for variant in ["separate", "one-write"] {
            let mut c = greeted(env.edge()).await;
            c.get_mut().write_all(b"AUTH TLS\r\n").await.unwrap();
            let (code, _) = read_reply(&mut c).await.unwrap();
            assert_eq!(code, 234);
            let mut tcp = c.into_inner();
            if variant == "separate" {
                tcp.write_all(evil.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tcp.write_all(&hello).await;
            } else {
                let mut both = evil.clone().into_bytes();
                both.extend_from_slice(&hello);
                tcp.write_all(&both).await.unwrap();
            }
            let got = read_until_closed(&mut tcp, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{variant}: {e}"));
            let text = String::from_utf8_lossy(&got);
            assert!(
                !text.contains("331") && !text.contains("230") && !text.contains("530"),
                "{variant}: plaintext after 234 was answered: {text:?}"
            );
            assert!(
                got.is_empty() || got[0] == 0x15,
                "{variant}: expected nothing or a TLS alert, got {text:?}"
            );
        }
        assert_eq!(
            env.proxies[0].connections(),
            0,
            "pipelined USER opened a backend connection"
        );
        good_session(&env).await;
    })
    .await;
    assert!(
        !env.vs.log().contains(&Env::faulty_user(0)),
        "the backend saw the injected USER"
    );
    env.settle_and_shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 9. Thousands of connections that never speak (measures fds: exclusive)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_flood_closed_and_fds_return() {
    let _g = exclusive().await;
    let vs = plain_vsftpd();
    let env = Env::start(vs, &[]).await;
    let n = 2000.min(nofile_soft_limit() / 3);
    bounded(58, "connection flood", async {
        // Warm up everything that opens fds once (curl's process machinery, TLS, pinholes).
        env.curl().list().await.assert_ok();
        good_session(&env).await;
        env.settle(Duration::from_secs(5)).await;
        let baseline = fd_count();

        let addr = env.edge();
        let mut conns = JoinSet::new();
        for _ in 0..n {
            conns.spawn(async move {
                let mut tcp = match TcpStream::connect(addr).await {
                    Ok(t) => t,
                    Err(e) => return Err(format!("connect: {e}")),
                };
                let since = Instant::now();
                let got = read_until_closed(&mut tcp, LOGIN + Duration::from_secs(12)).await?;
                let at = since.elapsed();
                let text = String::from_utf8_lossy(&got).into_owned();
                if !text.starts_with("220") || !text.contains("\n421 ") {
                    return Err(format!("unexpected dialogue {text:?}"));
                }
                Ok(at)
            });
        }
        // Meanwhile real clients are served.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let real = async {
            with_curl(&env, "flood", good_session(&env)).await;
        };
        real.await;
        let mut worst = Duration::ZERO;
        let mut failures = Vec::new();
        while let Some(r) = conns.join_next().await {
            match r.expect("task") {
                Ok(at) => worst = worst.max(at),
                Err(e) => failures.push(e),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {n} silent connections misbehaved, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        eprintln!("{n} silent connections closed; latest close {worst:?} after connect");
        assert!(
            worst < LOGIN + Duration::from_secs(8),
            "slowest close {worst:?}"
        );
        env.settle(Duration::from_secs(10)).await;
        match fds_back_to(baseline, 8, Duration::from_secs(10)).await {
            Ok(now) => eprintln!("fds: baseline {baseline}, after {now}"),
            Err(now) => panic!("fd leak: baseline {baseline}, now {now}"),
        }
    })
    .await;
    env.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 10. Oversized lines (measures RSS: exclusive)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_lines_get_500_once_and_memory_stays_bounded() {
    let _g = exclusive().await;
    let vs = plain_vsftpd();
    let env = Env::start(vs, &[]).await;
    let one_mib: Arc<Vec<u8>> = Arc::new(vec![b'A'; MIB]);
    let cl = env.client();
    bounded(58, "oversized lines", async {
        // Warm-up (allocator arenas, TLS, pinholes), then the baseline.
        oversized_plain(cl.clone(), one_mib.clone()).await;
        oversized_tls(cl.clone(), one_mib.clone()).await;
        env.settle(Duration::from_secs(5)).await;
        let baseline = rss_kib();

        let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let mut all = JoinSet::new();
        for _ in 0..6 {
            all.spawn(oversized_tls(cl.clone(), one_mib.clone()));
        }
        for _ in 0..4 {
            all.spawn(oversized_plain(cl.clone(), one_mib.clone()));
        }
        while let Some(r) = all.join_next().await {
            r.expect("oversized-line session");
        }
        sampler.abort();
        env.settle(Duration::from_secs(5)).await;
        let after = rss_kib();
        let peak = peak.load(Ordering::SeqCst).max(after);
        eprintln!(
            "RSS: baseline {baseline} KiB, peak {peak} KiB (+{}), after {after} KiB; 28 MiB of \
             line data sent",
            peak.saturating_sub(baseline)
        );
        assert!(
            peak.saturating_sub(baseline) < 12 * 1024,
            "RSS grew by {} KiB while 28 MiB of overlong lines arrived",
            peak - baseline
        );
    })
    .await;
    env.shutdown().await;
}

/// Before TLS (not logged in): one 1 MiB line, `500` once, the session goes on.
async fn oversized_plain(cl: Client, payload: Arc<Vec<u8>>) {
    let mut c = greeted(cl.edge).await;
    c.get_mut().write_all(&payload).await.unwrap();
    c.get_mut().write_all(b"\r\nNOOP\r\n").await.unwrap();
    let (code, text) = read_reply(&mut c).await.expect("reply to 1 MiB line");
    assert_eq!(code, 500, "{text}");
    let (code, text) = read_reply(&mut c).await.expect("reply to NOOP");
    assert_eq!(
        code, 200,
        "second reply must answer NOOP (500 only once): {text}"
    );
}

/// Logged in, under TLS: 4 MiB without LF (four writes), `500` once, then a transfer.
async fn oversized_tls(cl: Client, payload: Arc<Vec<u8>>) {
    let mut ftp = RawFtp::ready_explicit(cl.edge, cl.tls()).await;
    for _ in 0..4 {
        ftp.send_raw(&payload).await.unwrap();
    }
    ftp.send_raw(b"\r\n").await.unwrap();
    let r = ftp.read_reply().await.expect("reply to 4 MiB line");
    assert_eq!(r.code, 500, "{r}");
    let r = ftp.cmd("NOOP").await.expect("NOOP");
    assert_eq!(
        r.code, 200,
        "second reply must answer NOOP (500 only once): {r}"
    );
    assert_eq!(sha256_bytes(&ftp.retr(SMALL).await), cl.small_sha);
    ftp.quit().await;
}

// ---------------------------------------------------------------------------------------
// Leak check around 1000 faulty sessions (measures fds: exclusive)

#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Connects and never speaks (login timeout).
    Silent,
    /// Half a ClientHello on the implicit listener (login timeout).
    HalfHello,
    /// Plaintext `USER`/`PASS` right after `234`.
    Injection,
    /// 1 MiB without LF, then a reset.
    HugeLineReset,
    /// Login, `PASV`, then a control reset (pinhole left open).
    PasvReset,
    /// Login, `PASV`, TCP to the pinhole without TLS, `STOR`, then a control reset.
    StorTcpReset,
    /// `RETR` of 16 MiB, 256 KiB read, then a control reset.
    RetrReset,
    /// The backend control connection is reset after login (proxy `f0`): `421`.
    BackendReset,
    /// The client's upload stops sending: `426`/`451`.
    UploadStall,
    /// The client stops reading its download: `426`.
    DownloadStall,
}

impl Misbehave {
    fn uses_backend(self) -> bool {
        matches!(
            self,
            Misbehave::BackendReset
                | Misbehave::PasvReset
                | Misbehave::StorTcpReset
                | Misbehave::RetrReset
                | Misbehave::UploadStall
                | Misbehave::DownloadStall
        )
    }
}

async fn misbehave(
    kind: Misbehave,
    id: usize,
    cl: Client,
    hello_half: Arc<Vec<u8>>,
    line: Arc<Vec<u8>>,
) {
    match kind {
        Misbehave::Silent => {
            let mut tcp = TcpStream::connect(cl.edge).await.unwrap();
            let got = read_until_closed(&mut tcp, LOGIN + SLACK * 2)
                .await
                .expect("silent connection");
            assert!(String::from_utf8_lossy(&got).contains("\n421 "), "{got:?}");
        }
        Misbehave::HalfHello => {
            let mut tcp = TcpStream::connect(cl.imp).await.unwrap();
            tcp.write_all(&hello_half).await.unwrap();
            read_until_closed(&mut tcp, LOGIN + SLACK * 2)
                .await
                .expect("half ClientHello");
        }
        Misbehave::Injection => {
            let mut c = greeted(cl.edge).await;
            c.get_mut().write_all(b"AUTH TLS\r\n").await.unwrap();
            let (code, _) = read_reply(&mut c).await.unwrap();
            assert_eq!(code, 234);
            let mut tcp = c.into_inner();
            let _ = tcp.write_all(b"USER x\r\nPASS y\r\n").await;
            read_until_closed(&mut tcp, Duration::from_secs(5))
                .await
                .expect("plaintext after 234");
        }
        Misbehave::HugeLineReset => {
            let c = greeted(cl.edge).await;
            let mut tcp = c.into_inner();
            let _ = tcp.write_all(&line).await;
            let _ = tcp.set_zero_linger();
        }
        Misbehave::PasvReset => {
            let mut ctl = Ctl::login(cl.edge, cl.tls(), TEST_USER).await;
            ctl.pasv().await;
            ctl.reset();
        }
        Misbehave::StorTcpReset => {
            let mut ctl = Ctl::login(cl.edge, cl.tls(), TEST_USER).await;
            let pinhole = ctl.pasv().await;
            let tcp = raw::connect_from(None, pinhole)
                .await
                .expect("data connect");
            ctl.send(&format!("STOR leak-stor-{id}.bin")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            ctl.reset();
            drop(tcp);
        }
        Misbehave::RetrReset => {
            let mut ctl = Ctl::login(cl.edge, cl.tls(), TEST_USER).await;
            let pinhole = ctl.pasv().await;
            let mut data = data_tls(pinhole, ctl.tls.clone()).await;
            ctl.send("RETR big32.bin").await.unwrap();
            let (code, text) = ctl.reply().await.expect("reply to RETR");
            assert_eq!(code, 150, "{text}");
            let mut buf = vec![0u8; 64 * KIB];
            let mut got = 0;
            while got < 256 * KIB {
                let n = data.read(&mut buf).await.expect("data");
                assert!(n > 0);
                got += n;
            }
            ctl.reset();
            let _ = read_until_closed(&mut data, Duration::from_secs(8))
                .await
                .expect("data connection after control reset");
        }
        Misbehave::BackendReset => {
            let mut ftp = RawFtp::connect_explicit(cl.edge, cl.tls()).await;
            ftp.login(&Env::faulty_user(0), TEST_PASS).await;
            let r = ftp.cmd("TYPE I").await.expect("reply");
            assert_eq!(r.code, 421, "{r}");
            ftp.expect_closed(Duration::from_secs(3))
                .await
                .expect("closed");
        }
        Misbehave::UploadStall => {
            let ((code, text), _) =
                stalled_upload(&cl, &format!("leak-up-{id}.bin"), 256 * KIB, true).await;
            assert!(code == 426 || code == 451, "{text}");
        }
        Misbehave::DownloadStall => {
            let mut ctl = Ctl::login(cl.edge, cl.tls(), TEST_USER).await;
            let pinhole = ctl.pasv().await;
            let data = data_tls(pinhole, ctl.tls.clone()).await;
            ctl.send("RETR big32.bin").await.unwrap();
            let (code, text) = ctl.reply().await.expect("reply to RETR");
            assert_eq!(code, 150, "{text}");
            let (code, text) = ctl.reply().await.expect("final reply");
            assert_eq!(code, 426, "{text}");
            drop(data);
            ctl.reset();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaks_after_1000_faulty_sessions() {
    let _g = exclusive().await;
    let vs = plain_vsftpd();
    vs.make_file("big32.bin", 32 * MIB);
    let env = Env::start(
        vs,
        &[Fault::ResetAt {
            dir: Dir::ToUpstream,
            byte: login_cmds().len() as u64,
        }],
    )
    .await;
    let cl = env.client();
    let hello = client_hello(&env.tls());
    let half = Arc::new(hello[..hello.len() / 2].to_vec());
    let line = Arc::new(vec![b'B'; MIB]);
    use Misbehave as M;
    // 200 of each mix, five times: 1000 faulty sessions (issue #10).
    const ROUNDS: usize = 5;
    let mix = [
        (M::Silent, 40 * ROUNDS),
        (M::HalfHello, 20 * ROUNDS),
        (M::Injection, 20 * ROUNDS),
        (M::HugeLineReset, 10 * ROUNDS),
        (M::PasvReset, 30 * ROUNDS),
        (M::StorTcpReset, 20 * ROUNDS),
        (M::RetrReset, 10 * ROUNDS),
        (M::BackendReset, 30 * ROUNDS),
        (M::UploadStall, 10 * ROUNDS),
        (M::DownloadStall, 10 * ROUNDS),
    ];
    let total: usize = mix.iter().map(|(_, n)| n).sum();
    bounded(240, "1000 faulty sessions", async {
        env.curl().list().await.assert_ok();
        good_session(&env).await;
        env.settle(Duration::from_secs(5)).await;
        let fds0 = fd_count();
        let started = Instant::now();

        // At most 16 sessions with a backend at once (vsftpd refuses more than ~50 per IP,
        // and has 50 passive ports).
        let pasv_slots = Arc::new(Semaphore::new(16));
        let mut all = JoinSet::new();
        for (kind, n) in mix {
            for i in 0..n {
                let (cl, half, line, slots) =
                    (cl.clone(), half.clone(), line.clone(), pasv_slots.clone());
                all.spawn(async move {
                    let _slot = if kind.uses_backend() {
                        Some(slots.acquire_owned().await.unwrap())
                    } else {
                        None
                    };
                    misbehave(kind, i, cl, half, line).await;
                    kind
                });
            }
        }
        // Real clients meanwhile.
        with_curl(&env, "leak-mix", good_session(&env)).await;
        let mut failed = Vec::new();
        while let Some(r) = all.join_next().await {
            if let Err(e) = r {
                failed.push(e.to_string());
            }
        }
        assert!(
            failed.is_empty(),
            "{} of {total} faulty sessions did not behave as expected: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        eprintln!("{total} faulty sessions done in {:?}", started.elapsed());

        env.settle(Duration::from_secs(15)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while env.proxies[0].open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            env.proxies[0].open(),
            0,
            "backend control connections left open"
        );
        match fds_back_to(fds0, 8, Duration::from_secs(10)).await {
            Ok(now) => eprintln!("fds: baseline {fds0}, after {now}"),
            Err(now) => panic!("fd leak after {total} faulty sessions: baseline {fds0}, now {now}"),
        }
        // And the gateway still serves.
        good_session(&env).await;
    })
    .await;
    env.shutdown().await;
}
