//! Hostile or broken peers around ftpsgate: a scripted fake backend that misbehaves, clients
//! that send garbage, leave mid-transfer or cut uploads, resource exhaustion, and secrets in
//! the logs. Every test is bounded by timeouts, checks the reply (or a clean close) and then
//! proves that the gateway still serves a good session, with SHA-256 checked transfers.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use common::gateway::gateway_yaml;
use common::harness::{bounded, captured_logs, init_logs, own_range};
use common::raw::connect_from;
use common::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// Starts listener `edge` → backend `vs` with passive `ports` and `timeouts: { pinhole: 5s
/// <extra_timeouts> }` (e.g. `", connect: 1s"`).
async fn start_gw(
    front: Frontend,
    back: Backend,
    vs: Option<&Vsftpd>,
    ports: (u16, u16),
    extra_timeouts: &str,
) -> GwEnv {
    let dir = temp_dir("gw");
    let certs = Certs::generate(dir.path(), "gw");
    if let Some(vs) = vs {
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    }
    let yaml = gateway_yaml(&front, &back, ports, &format!("5s{extra_timeouts}"));
    let gateway = start_gateway(&yaml, dir.path()).await;
    GwEnv {
        gateway: Some(gateway),
        dir,
        certs,
        yaml,
    }
}

/// A plain (`mode: none`) backend at `addr`.
fn plain_backend(addr: SocketAddr) -> Backend {
    Backend {
        addr,
        mode: "none",
        auth: BackendAuth::NoVerify,
        min_version: None,
        max_version: None,
        data_protection: None,
    }
}

/// Strict vsftpd (explicit, require_ssl_reuse=YES) behind an explicit-TLS gateway.
async fn strict_pair(ports: (u16, u16)) -> (Vsftpd, GwEnv) {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = start_gw(
        Frontend::explicit(),
        Backend::for_vsftpd(&vs),
        Some(&vs),
        ports,
        "",
    )
    .await;
    (vs, gw)
}

/// TCP + TLS (resuming `tls`'s session) to a pinhole, like curl: before the transfer command.
async fn data_tls(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = connect_from(None, addr).await.expect("data connect");
    let name = ServerName::try_from("localhost").unwrap().to_owned();
    bounded(
        10,
        "data TLS handshake",
        TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .expect("data TLS handshake")
}

/// Reads until EOF (or reset) within `within`; returns what arrived. Panics if the peer
/// keeps the connection open.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let res = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "{what}: connection still open after {within:?}; received {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

/// Random bytes without `\n` (so the gateway never sees a complete command line).
fn garbage(size: usize, seed: u64) -> Vec<u8> {
    pseudo_random(size, seed)
        .into_iter()
        .map(|b| if b == b'\n' { b'x' } else { b })
        .collect()
}

/// TCP ports in `range` with a socket in LISTEN state (from `ss -ltnH`).
fn listening_in(range: (u16, u16)) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH"])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let Some(local) = line.split_whitespace().nth(3) else {
                return false;
            };
            let port = local.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
            port.is_some_and(|p| (range.0..=range.1).contains(&p))
        })
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// A scripted fake FTP backend

/// The file every RETR of the fake backend serves.
fn fake_file() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| pseudo_random(300 * KIB, 0xFA4E))
}

/// How one control connection of the fake backend behaves.
#[derive(Clone, Debug)]
enum Script {
    /// A working server; these `227` lines answer the first PASVs, then real ones follow.
    Good { bad_pasv: Vec<&'static str> },
    /// Answers `PASS` with 230, then closes the control connection at once.
    CloseAfterLogin,
    /// Logs in normally, then closes instead of answering `PASV`.
    CloseOnPasv,
    /// Greets with this line, then closes.
    Greeting(&'static str),
    /// Accepts and never sends a byte.
    Silent,
}

/// A fake FTP server on 127.0.0.1: connection `i` follows `scripts[i]`, later ones are
/// [`Script::Good`]. Dropping it stops the server and all its connections.
struct FakeBackend {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    commands: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakeBackend {
    async fn start(scripts: Vec<Script>) -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (conns, cmds) = (connections.clone(), commands.clone());
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops (and so aborts) every connection.
            let mut sessions = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let i = conns.fetch_add(1, Ordering::SeqCst);
                let script = scripts.get(i).cloned().unwrap_or(Script::Good {
                    bad_pasv: Vec::new(),
                });
                sessions.spawn(fake_session(tcp, script, cmds.clone()));
                while sessions.try_join_next().is_some() {}
            }
        });
        FakeBackend {
            addr,
            connections,
            commands,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_session(tcp: TcpStream, script: Script, log: Arc<Mutex<Vec<String>>>) {
    let _ = fake_session_inner(tcp, script, log).await;
}

async fn fake_session_inner(
    tcp: TcpStream,
    script: Script,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    match &script {
        Script::Greeting(line) => {
            w.write_all(format!("{line}\r\n").as_bytes()).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        Script::Silent => {
            std::future::pending::<()>().await;
            return Ok(());
        }
        _ => w.write_all(b"220 fake backend ready\r\n").await?,
    }
    let mut bad_pasv: VecDeque<&str> = match &script {
        Script::Good { bad_pasv } => bad_pasv.iter().copied().collect(),
        _ => VecDeque::new(),
    };
    let mut data: Option<TcpListener> = None;
    loop {
        let mut raw = Vec::new();
        if r.read_until(b'\n', &mut raw).await? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        log.lock().unwrap().push(line.clone());
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            "USER" => "331 Password please".into(),
            "PASS" if arg.starts_with("bad") => "530 Login incorrect".into(),
            "PASS" => {
                if let Script::CloseAfterLogin = script {
                    w.write_all(b"230 Logged in\r\n").await?;
                    return Ok(());
                }
                "230 Logged in".into()
            }
            "ACCT" => "202 ACCT not needed".into(),
            "TYPE" => "200 Type set".into(),
            "NOOP" => "200 NOOP from fake backend".into(),
            "PASV" => {
                if let Script::CloseOnPasv = script {
                    return Ok(());
                }
                match bad_pasv.pop_front() {
                    Some(bad) => bad.into(),
                    None => {
                        let l = TcpListener::bind("127.0.0.1:0").await?;
                        let port = l.local_addr()?.port();
                        data = Some(l);
                        format!(
                            "227 Entering Passive Mode (127,0,0,1,{},{})",
                            port / 256,
                            port % 256
                        )
                    }
                }
            }
            "RETR" | "STOR" => match data.take() {
                None => "425 Use PASV first".into(),
                Some(l) => {
                    w.write_all(b"150 Opening data connection\r\n").await?;
                    match tokio::time::timeout(Duration::from_secs(10), l.accept()).await {
                        Ok(Ok((mut d, _))) => {
                            if verb.eq_ignore_ascii_case("RETR") {
                                d.write_all(fake_file()).await?;
                                d.shutdown().await?;
                            } else {
                                let mut sink = Vec::new();
                                d.read_to_end(&mut sink).await?;
                            }
                            "226 Transfer complete".into()
                        }
                        _ => "425 No data connection".into(),
                    }
                }
            },
            "QUIT" => {
                w.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 Not implemented by the fake backend".into(),
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// A good session through a gateway in front of the fake backend: explicit TLS, login,
/// PROT P, one RETR checked by SHA-256.
async fn fake_good_session(gw: &GwEnv) {
    let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
    ftp.login("someone", "secret").await;
    ftp.prot(true).await;
    ftp.binary().await;
    let got = ftp.retr("file.bin").await;
    assert_eq!(
        sha256_bytes(&got),
        sha256_bytes(fake_file()),
        "good session after the bad one: download corrupted"
    );
    ftp.quit().await;
}

/// Logs in through the gateway to the fake backend (explicit TLS).
async fn fake_login(gw: &GwEnv) -> RawFtp {
    let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
    ftp.login("someone", "secret").await;
    ftp
}

async fn fake_pair(scripts: Vec<Script>, extra_timeouts: &str) -> (FakeBackend, GwEnv) {
    init_logs();
    let fake = FakeBackend::start(scripts).await;
    let gw = start_gw(
        Frontend::explicit(),
        plain_backend(fake.addr),
        None,
        own_range(20),
        extra_timeouts,
    )
    .await;
    (fake, gw)
}

// ---------------------------------------------------------------------------------------
// 1. Malformed 227 from the backend

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_malformed_227_gives_425_and_session_survives() {
    let (fake, gw) = fake_pair(
        vec![Script::Good {
            bad_pasv: vec![
                "227 Entering Passive Mode (garbage)",
                "227 Entering Passive Mode (127,0,0,1,300,1)",
            ],
        }],
        "",
    )
    .await;
    bounded(60, "malformed 227", async {
        let mut ftp = fake_login(&gw).await;
        ftp.prot(true).await;
        for what in ["(garbage)", "(127,0,0,1,300,1)"] {
            let r = ftp.cmd("PASV").await.expect("reply to PASV");
            assert!(
                (400..500).contains(&r.code),
                "PASV with backend 227 {what}: expected 4xx, got {r}"
            );
            assert_eq!(r.code, 425, "PASV with backend 227 {what}: {r}");
        }
        let r = ftp.cmd("NOOP").await.expect("NOOP after bad 227");
        assert_eq!(r.code, 200, "{r}");
        assert!(
            r.text.contains("fake backend"),
            "NOOP must reach the backend: {r}"
        );
        // The same session can still transfer once the backend behaves.
        let got = ftp.retr("file.bin").await;
        assert_eq!(sha256_bytes(&got), sha256_bytes(fake_file()));
        ftp.quit().await;
        fake_good_session(&gw).await;
    })
    .await;
    assert_eq!(fake.connections(), 2);
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 2. Backend closes mid-session

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_after_login_gives_421_and_close() {
    let (_fake, gw) = fake_pair(vec![Script::CloseAfterLogin], "").await;
    bounded(60, "backend closes after login", async {
        let mut ftp = fake_login(&gw).await;
        // Unsolicited: the client sends nothing and must still hear about it.
        let started = Instant::now();
        let r = ftp.read_reply().await.expect("421 after the backend left");
        assert_eq!(r.code, 421, "{r}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("gateway closes the client after 421");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "421 took {:?}",
            started.elapsed()
        );
        fake_good_session(&gw).await;
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_on_pasv_gives_421_and_close() {
    let (_fake, gw) = fake_pair(vec![Script::CloseOnPasv], "").await;
    bounded(60, "backend closes on PASV", async {
        let mut ftp = fake_login(&gw).await;
        ftp.prot(true).await;
        let started = Instant::now();
        let r = ftp.cmd("PASV").await.expect("reply to PASV");
        assert_eq!(r.code, 421, "{r}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("gateway closes the client after 421");
        assert!(started.elapsed() < Duration::from_secs(5));
        fake_good_session(&gw).await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 3. Backend refuses in its greeting

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_greeting_421_gives_421_at_user() {
    let (_fake, gw) = fake_pair(vec![Script::Greeting("421 Too many users")], "").await;
    bounded(60, "backend greets 421", async {
        let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
        let r = ftp.cmd("USER someone").await.expect("reply to USER");
        assert_eq!(r.code, 421, "{r}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("gateway closes the client after 421");
        fake_good_session(&gw).await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 4. Backend never answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_gives_421_within_connect_timeout() {
    let (_fake, gw) = fake_pair(vec![Script::Silent], ", connect: 1s").await;
    bounded(60, "silent backend", async {
        let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
        let started = Instant::now();
        let r = ftp.cmd("USER someone").await.expect("reply to USER");
        let took = started.elapsed();
        assert_eq!(r.code, 421, "{r}");
        assert!(took < Duration::from_secs(3), "421 took {took:?}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("gateway closes the client after 421");
        fake_good_session(&gw).await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 5. Client leaves in the middle of a download

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_download_frees_everything() {
    init_logs();
    let range = own_range(20);
    let (vs, gw) = strict_pair(range).await;
    let sha = vs.make_file("big.bin", 64 * MIB);
    bounded(120, "client leaves mid-transfer", async {
        let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
        let pinhole = ftp.pasv().await;
        let mut data = data_tls(pinhole, ftp.tls.clone().unwrap()).await;
        ftp.send_raw(b"RETR big.bin\r\n").await.unwrap();
        let r = ftp.read_reply().await.expect("reply to RETR");
        assert_eq!(r.code, 150, "{r}");
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * KIB];
        while got < MIB {
            let n = data.read(&mut buf).await.expect("read data");
            assert!(n > 0, "data ended after {got} bytes");
            got += n;
        }
        // Abrupt: no ABOR, no QUIT, no close_notify on either connection.
        drop(data);
        drop(ftp);

        let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
        let full = ftp.retr("big.bin").await;
        assert_eq!(full.len(), 64 * MIB);
        assert_eq!(sha256_bytes(&full), sha, "download after the abandoned one");
        ftp.quit().await;
    })
    .await;
    // Nothing of the abandoned transfer (nor of the good one) may keep a pinhole open.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = listening_in(range);
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pinhole ports still listening: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 6. Upload cut by the client

/// STOR through the gateway: 1 MiB, then `cut` the data connection; returns what the
/// control connection says afterwards (`Err` = closed or no reply).
async fn cut_upload(
    gw: &GwEnv,
    name: &str,
    cut: impl FnOnce(TlsStream<TcpStream>) -> Option<TlsStream<TcpStream>>,
) -> Result<Reply, String> {
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let pinhole = ftp.pasv().await;
    let mut data = data_tls(pinhole, ftp.tls.clone().unwrap()).await;
    ftp.send_raw(format!("STOR {name}\r\n").as_bytes())
        .await
        .unwrap();
    let r = ftp.read_reply().await.expect("reply to STOR");
    assert_eq!(r.code, 150, "{r}");
    data.write_all(&pseudo_random(MIB, 61)).await.unwrap();
    data.flush().await.unwrap();
    // Let the gateway relay what was sent before the cut.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keep = cut(data);
    let res = match tokio::time::timeout(Duration::from_secs(15), ftp.read_reply()).await {
        Err(_) => Err("no reply within 15s".to_string()),
        Ok(Err(e)) => Err(format!("control connection: {e}")),
        Ok(Ok(r)) => Ok(r),
    };
    drop(keep);
    res
}

async fn upload_cut_case(tag: &str, cut: fn(TlsStream<TcpStream>) -> Option<TlsStream<TcpStream>>) {
    init_logs();
    let (vs, gw) = strict_pair(own_range(20)).await;
    bounded(90, tag, async {
        let res = cut_upload(&gw, &format!("{tag}.bin"), cut).await;
        match &res {
            Ok(r) => assert!(
                r.code == 426 || r.code == 451,
                "{tag}: truncated upload must not be reported as {r}; expected 426/451 or close\n\
                 vsftpd log (end):\n{}",
                log_tail(&vs.log(), 12)
            ),
            Err(e) => eprintln!("{tag}: control connection ended: {e}"),
        }
        // The gateway still takes a complete upload and serves it back.
        let data = pseudo_random(2 * MIB + 17, 62);
        let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
        ftp.stor("after-cut.bin", &data).await;
        assert_eq!(
            sha256_file(&vs.root().join("after-cut.bin")),
            sha256_bytes(&data)
        );
        assert_eq!(
            sha256_bytes(&ftp.retr("after-cut.bin").await),
            sha256_bytes(&data)
        );
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// SO_LINGER 0: the data connection ends with a TCP reset, no close_notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_cut_by_reset_is_not_226() {
    upload_cut_case("cut-rst", |data| {
        let (tcp, _) = data.get_ref();
        tcp.set_zero_linger().expect("SO_LINGER 0");
        drop(data);
        None
    })
    .await;
}

/// FIN without close_notify (TLS truncation): the gateway cannot tell this from the end of
/// the file unless it insists on close_notify, so it must not confirm the upload with 226.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_cut_by_fin_without_close_notify_is_not_226() {
    upload_cut_case("cut-fin", |mut data| {
        let (tcp, _) = data.get_mut();
        // shutdown(2) on the raw socket: FIN, but no TLS alert before it.
        let std_tcp = socket_shutdown_write(tcp);
        assert!(std_tcp, "shutdown(Write) failed");
        Some(data)
    })
    .await;
}

/// `shutdown(SHUT_WR)` on a tokio TcpStream without going through TLS.
fn socket_shutdown_write(tcp: &mut TcpStream) -> bool {
    use std::os::fd::AsFd;
    let Ok(fd) = tcp.as_fd().try_clone_to_owned() else {
        return false;
    };
    let std_tcp = std::net::TcpStream::from(fd);
    std_tcp.shutdown(std::net::Shutdown::Write).is_ok()
}

// ---------------------------------------------------------------------------------------
// 7. Garbage before TLS and inside TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_and_inside_tls_is_closed() {
    let (_fake, gw) = fake_pair(Vec::new(), "").await;
    bounded(60, "garbage", async {
        // (a) binary bytes without CRLF, then close: no complete line, nothing happens.
        let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
        let mut greeting = [0u8; 64];
        let n = tcp.read(&mut greeting).await.unwrap();
        assert!(greeting[..n].starts_with(b"220"), "greeting");
        tcp.write_all(&garbage(3000, 71)).await.unwrap();
        tcp.shutdown().await.unwrap();
        let got = read_until_closed(&mut tcp, Duration::from_secs(5), "garbage, then FIN").await;
        assert!(
            got.is_empty(),
            "reply to garbage: {:?}",
            String::from_utf8_lossy(&got)
        );
        drop(tcp);

        // (a') more garbage than a line may hold: 500, and the session goes on.
        let mut ftp = RawFtp::connect(gw.addr()).await.unwrap();
        ftp.send_raw(&garbage(10_000, 72)).await.unwrap();
        ftp.send_raw(b"\r\n").await.unwrap();
        let r = ftp
            .read_reply()
            .await
            .expect("reply to an overlong garbage line");
        assert_eq!(r.code, 500, "{r}");
        let r = ftp.cmd("NOOP").await.expect("NOOP after garbage");
        assert_eq!(r.code, 200, "{r}");
        drop(ftp);

        // (b) AUTH TLS, then garbage instead of a ClientHello.
        let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
        let n = tcp.read(&mut greeting).await.unwrap();
        assert!(greeting[..n].starts_with(b"220"), "greeting");
        tcp.write_all(b"AUTH TLS\r\n").await.unwrap();
        let mut reply = [0u8; 64];
        let n = bounded(10, "234", tcp.read(&mut reply)).await.unwrap();
        assert!(
            reply[..n].starts_with(b"234"),
            "{:?}",
            String::from_utf8_lossy(&reply[..n])
        );
        tcp.write_all(&garbage(500, 73)).await.unwrap();
        read_until_closed(&mut tcp, Duration::from_secs(5), "garbage ClientHello").await;
        drop(tcp);

        fake_good_session(&gw).await;
    })
    .await;
    gw.shutdown().await;

    // (c) plaintext on an implicit listener.
    let fake = FakeBackend::start(Vec::new()).await;
    let gw = start_gw(
        Frontend::implicit(),
        plain_backend(fake.addr),
        None,
        own_range(20),
        "",
    )
    .await;
    bounded(60, "plaintext on implicit", async {
        let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
        tcp.write_all(b"USER x\r\n").await.unwrap();
        let got = read_until_closed(&mut tcp, Duration::from_secs(5), "plaintext USER").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("220") && !text.contains("331") && !text.contains("530"),
            "implicit listener answered plaintext: {text:?}"
        );
        assert_eq!(fake.connections(), 0, "plaintext USER reached the backend");

        let tls = gw.certs.client_config();
        let mut ftp = RawFtp::connect_implicit(gw.addr(), tls)
            .await
            .expect("implicit");
        assert_eq!(ftp.greeting.code, 220);
        ftp.login("someone", "secret").await;
        ftp.prot(true).await;
        ftp.binary().await;
        assert_eq!(
            sha256_bytes(&ftp.retr("f.bin").await),
            sha256_bytes(fake_file())
        );
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 8. STARTTLS command injection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_injection_closes_connection() {
    let (fake, gw) = fake_pair(Vec::new(), "").await;
    bounded(60, "STARTTLS injection", async {
        let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
        let mut greeting = [0u8; 64];
        let n = tcp.read(&mut greeting).await.unwrap();
        assert!(greeting[..n].starts_with(b"220"), "greeting");
        tcp.write_all(b"AUTH TLS\r\nUSER evil\r\n").await.unwrap();
        let got = read_until_closed(&mut tcp, Duration::from_secs(5), "injection").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("331") && !text.contains("530"),
            "USER after AUTH TLS was answered: {text:?}"
        );
        assert_eq!(
            fake.connections(),
            0,
            "injected USER opened a backend connection"
        );
        fake_good_session(&gw).await;
        assert!(
            !fake.commands().iter().any(|c| c.contains("evil")),
            "injected USER reached the backend: {:?}",
            fake.commands()
        );
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 9. Malformed commands

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_get_errors_and_session_survives() {
    init_logs();
    let (vs, gw) = strict_pair(own_range(20)).await;
    let sha = vs.make_file("m.bin", 200 * KIB);
    bounded(60, "malformed commands", async {
        let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
        let r = ftp.cmd("PASV").await.unwrap();
        assert_eq!(r.code, 530, "PASV before login: {r}");
        let (user, pass) = test_user();
        ftp.login(user, pass).await;
        ftp.prot(true).await;
        ftp.binary().await;

        let r = ftp.cmd("PORT 1,2,3").await.unwrap();
        assert!(r.code == 501 || r.code == 502, "PORT 1,2,3: {r}");
        let r = ftp.cmd("PROT X").await.unwrap();
        assert!(r.code == 501 || r.code == 504, "PROT X: {r}");
        let long = format!("STAT {}", "B".repeat(4995));
        assert_eq!(long.len(), 5000);
        let r = ftp.cmd(&long).await.unwrap();
        assert_eq!(r.code, 500, "5000-byte line: {r}");
        let r = ftp.cmd("").await.unwrap();
        assert_eq!(r.code, 500, "empty line: {r}");
        let r = ftp.cmd("RETR m.bin").await.unwrap();
        assert_eq!(r.code, 425, "RETR without PASV: {r}");
        ftp.send_raw(b"\xc3\x28\xa0\xe9 \xfe\xc0\r\n")
            .await
            .unwrap();
        let r = ftp.read_reply().await.unwrap();
        assert_eq!(r.code, 500, "non-UTF8 command: {r}");

        // PROT X changed nothing: still PROT P, and the session transfers.
        let r = ftp.cmd("NOOP").await.unwrap();
        assert_eq!(r.code, 200, "{r}");
        let plan = ftp.data_plan();
        let t = ftp.transfer("RETR m.bin", plan).await;
        assert_eq!(sha256_bytes(t.assert_ok()), sha);
        assert_eq!(t.resumed, Some(true), "data leg not under TLS");
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 10. Passive range exhausted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_range_exhausted_then_freed() {
    init_logs();
    let range = own_range(1);
    assert_eq!(range.0, range.1);
    let (vs, gw) = strict_pair(range).await;
    let sha = vs.make_file("x.bin", 512 * KIB);
    bounded(60, "pinhole range exhausted", async {
        let mut a = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
        let pinhole = a.pasv().await;
        assert_eq!(pinhole.port(), range.0);

        let mut b = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
        let r = b.cmd("PASV").await.expect("reply to PASV");
        assert_eq!(r.code, 425, "PASV with the only port taken: {r}");

        let plan = a.data_plan();
        let t = a.transfer_at(pinhole, "RETR x.bin", plan).await;
        assert_eq!(sha256_bytes(t.assert_ok()), sha, "first transfer");

        let second = b.pasv().await;
        assert_eq!(second.port(), range.0);
        let plan = b.data_plan();
        let t = b.transfer_at(second, "RETR x.bin", plan).await;
        assert_eq!(
            sha256_bytes(t.assert_ok()),
            sha,
            "second session after the port freed"
        );
        a.quit().await;
        b.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 11. Passwords never reach the log

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_logged() {
    let nonce = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let marker = format!("Pw-Marker-{nonce}");
    let user = format!("logcheck-{nonce}");
    let (fake, gw) = fake_pair(Vec::new(), "").await;
    bounded(60, "password logging", async {
        let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
        let r = ftp.cmd(&format!("PASS {marker}")).await.unwrap();
        assert!(r.is_error(), "PASS before USER: {r}");
        let r = ftp.cmd(&format!("USER {user}")).await.unwrap();
        assert_eq!(r.code, 331, "{r}");
        let r = ftp.cmd(&format!("PASS bad-{marker}")).await.unwrap();
        assert_eq!(r.code, 530, "{r}");
        let r = ftp.cmd(&format!("USER {user}")).await.unwrap();
        assert_eq!(r.code, 331, "{r}");
        let r = ftp.cmd(&format!("pass {marker}")).await.unwrap();
        assert_eq!(r.code, 230, "{r}");
        let r = ftp.cmd(&format!("ACCT {marker}")).await.unwrap();
        assert_eq!(r.code, 202, "{r}");
        ftp.send_raw(format!("PASS {marker}\0tail\r\n").as_bytes())
            .await
            .unwrap();
        let r = ftp.read_reply().await.unwrap();
        assert_eq!(r.code, 501, "PASS with NUL: {r}");
        ftp.prot(true).await;
        assert_eq!(
            sha256_bytes(&ftp.retr("f.bin").await),
            sha256_bytes(fake_file())
        );
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
    assert!(
        fake.commands().iter().any(|c| c.contains(&marker)),
        "the password must reach the backend (test sanity)"
    );
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains(&format!("USER {user}")),
        "USER {user} not in the debug log (is the capture working?)"
    );
    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&marker)).collect();
    assert!(
        leaks.is_empty(),
        "password in the log:\n{}",
        leaks.join("\n")
    );
}
