//! Explicit-FTPS load generator for the ftpsgate scale and soak benchmarks
//! (`bench/scale.sh`, `bench/soak.sh`). Not a general FTP client: it speaks exactly
//! the dialogue below, over TLS (rustls, ring) on control and data.
//!
//! ```text
//! loadgen idle      --addr A --sessions N [--hold SECS]
//! loadgen transfers --addr A --sessions N --size BYTES [--file NAME] [--sha256 HEX]
//! loadgen churn     --addr A --rate R --secs S [--max-inflight C] [--max-sessions N]
//! loadgen noop      --addr A --sessions N --secs S [--interval SECS]
//! loadgen relay     --listen A --to B
//! common: --ca FILE | --insecure, --server-name NAME, --user U --pass P,
//!         --connect-concurrency K, --tls any|1.2|1.3, --timeout SECS
//! ```
//!
//! Every session: read `220`, `AUTH TLS`, TLS handshake, `USER`/`PASS`. Every session
//! has its own `ClientConfig` with its own in-memory session store, and data
//! connections use the same server name, so a data connection can (and must, with
//! `require_data_reuse`) resume its own control session.
//!
//! Figures go to stdout, one line each, as `name key=value ...`; progress and error
//! details go to stderr. The exit status is 0 whenever the run completed, errors
//! included (they are counted, not asserted); it is non-zero only for bad arguments
//! or an unusable CA file.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Barrier, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
#[command(about = "explicit-FTPS load generator for the ftpsgate benchmarks")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Log N sessions in and hold them idle until SIGTERM/SIGINT/SIGUSR1 or --hold.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Number of control sessions.
        #[arg(long)]
        sessions: usize,
        /// Hold the sessions this many seconds (default: until a signal).
        #[arg(long)]
        hold: Option<f64>,
    },
    /// N concurrent sessions, each PBSZ 0 / PROT P / PASV / RETR of one file.
    Transfers {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        sessions: usize,
        /// Expected size of the downloaded file in bytes.
        #[arg(long)]
        size: u64,
        /// File to RETR (default: size-<BYTES>.bin).
        #[arg(long)]
        file: Option<String>,
        /// Expected SHA-256 (hex) of the file; without it only the size is checked.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Short sessions (login, LIST, RETR of a small file, QUIT) at a target rate.
    Churn {
        #[command(flatten)]
        common: Common,
        /// Sessions started per second; 0 = closed loop (as fast as --max-inflight allows).
        #[arg(long)]
        rate: f64,
        /// Seconds during which new sessions are started.
        #[arg(long)]
        secs: f64,
        /// Most sessions in flight at once; the start schedule waits when reached.
        #[arg(long, default_value_t = 200)]
        max_inflight: usize,
        /// Stop starting sessions after this many (0 = only --secs limits).
        #[arg(long, default_value_t = 0)]
        max_sessions: u64,
        /// File to RETR.
        #[arg(long, default_value = "small.bin")]
        file: String,
        /// Expected size of that file.
        #[arg(long, default_value_t = 1024)]
        size: u64,
        /// Expected SHA-256 (hex) of that file.
        #[arg(long)]
        sha256: Option<String>,
        /// Print a progress line to stderr every this many seconds (0 = never).
        #[arg(long, default_value_t = 10.0)]
        progress: f64,
    },
    /// Control latency: N logged-in sessions each send `NOOP` every --interval
    /// seconds for --secs; prints the round-trip quantiles in microseconds.
    Noop {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// Seconds of NOOPs after every session has logged in.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Pause between one session's NOOPs (each session starts at a random offset).
        #[arg(long, default_value_t = 0.01)]
        interval: f64,
    },
    /// A plain TCP relay (no TLS, no FTP): every connection to --listen is copied
    /// to and from a new connection to --to, both with TCP_NODELAY. The floor of
    /// what one more process on the path adds (bench/latency.sh). Prints
    /// `relay listening=ADDR`, then runs until killed.
    Relay {
        /// Address to listen on (port 0: any).
        #[arg(long)]
        listen: SocketAddr,
        /// Address every connection is relayed to.
        #[arg(long)]
        to: SocketAddr,
        /// Tokio worker threads (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Gateway control address (IPv4:port).
    #[arg(long)]
    addr: SocketAddr,
    /// PEM CA file the gateway certificate must verify against.
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (benchmarks only).
    #[arg(long)]
    insecure: bool,
    /// SNI and certificate name, on control and data connections.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[arg(long, default_value = "bench")]
    user: String,
    #[arg(long, default_value = "bench")]
    pass: String,
    /// Sessions in their connect/login phase at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// TLS versions offered.
    #[arg(long, value_enum, default_value_t = TlsVer::Any)]
    tls: TlsVer,
    /// Limit in seconds for a login and for each transfer (connect phase excluded
    /// from waiting in the queue).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TlsVer {
    Any,
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

impl Common {
    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.mode {
        Mode::Idle { common, .. }
        | Mode::Transfers { common, .. }
        | Mode::Churn { common, .. }
        | Mode::Noop { common, .. } => common.threads,
        Mode::Relay { threads, .. } => *threads,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().context("starting the tokio runtime")?;
    rt.block_on(async move {
        match cli.mode {
            Mode::Idle {
                common,
                sessions,
                hold,
            } => idle(Ctx::new(common)?, sessions, hold).await,
            Mode::Transfers {
                common,
                sessions,
                size,
                file,
                sha256,
            } => {
                let file = file.unwrap_or_else(|| format!("size-{size}.bin"));
                let expect = Expect::new(size, sha256)?;
                transfers(Ctx::new(common)?, sessions, file, expect).await
            }
            Mode::Churn {
                common,
                rate,
                secs,
                max_inflight,
                max_sessions,
                file,
                size,
                sha256,
                progress,
            } => {
                let expect = Expect::new(size, sha256)?;
                churn(
                    Ctx::new(common)?,
                    Schedule {
                        rate,
                        secs,
                        max_inflight,
                        max_sessions,
                    },
                    file,
                    expect,
                    progress,
                )
                .await
            }
            Mode::Noop {
                common,
                sessions,
                secs,
                interval,
            } => noop(Ctx::new(common)?, sessions, secs, interval).await,
            Mode::Relay { listen, to, .. } => relay(listen, to).await,
        }
    })
}

// ------------------------------------------------------------------ shared state

/// What every session needs: options, the base TLS config, the error tally.
struct Ctx {
    common: Common,
    base: Arc<ClientConfig>,
    name: ServerName<'static>,
    errors: Errors,
    /// Data connections whose TLS handshake was a full one (did not resume).
    data_full_handshakes: AtomicU64,
    /// Data connections whose TLS handshake resumed the control session.
    data_resumed: AtomicU64,
}

impl Ctx {
    fn new(common: Common) -> Result<Arc<Ctx>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match common.tls {
            TlsVer::Any => rustls::ALL_VERSIONS,
            TlsVer::V12 => &[&rustls::version::TLS12],
            TlsVer::V13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .context("TLS versions")?;
        let config = if common.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let path = common
                .ca
                .as_ref()
                .ok_or_else(|| anyhow!("give --ca FILE or --insecure"))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow!("reading CA file {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| anyhow!("CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("CA file {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("no certificate in CA file {}", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let name = ServerName::try_from(common.server_name.clone())
            .map_err(|e| anyhow!("--server-name {:?}: {e}", common.server_name))?;
        Ok(Arc::new(Ctx {
            common,
            base: Arc::new(config),
            name,
            errors: Errors::default(),
            data_full_handshakes: AtomicU64::new(0),
            data_resumed: AtomicU64::new(0),
        }))
    }

    /// A config for one session: the base settings with a session store of its own,
    /// so control and data connections of this session (and only they) share tickets
    /// and session ids.
    fn session_config(&self) -> Arc<ClientConfig> {
        let mut c = (*self.base).clone();
        c.resumption = Resumption::in_memory_sessions(8);
        Arc::new(c)
    }
}

/// Error tally by kind (the message with digits stripped, so ports and counts do not
/// make every message unique), plus the first full message of each kind.
#[derive(Default)]
struct Errors {
    by_kind: Mutex<BTreeMap<String, (u64, String)>>,
    total: AtomicU64,
}

impl Errors {
    fn record(&self, phase: &str, e: &anyhow::Error) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let full = format!("{phase}: {e:#}");
        let kind: String = full.chars().filter(|c| !c.is_ascii_digit()).collect();
        let mut map = self.by_kind.lock().unwrap();
        map.entry(kind).or_insert_with(|| (0, full)).0 += 1;
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Error kinds, most frequent first, to stderr.
    fn report(&self) {
        let map = self.by_kind.lock().unwrap();
        let mut v: Vec<_> = map.values().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (n, example) in v.iter().take(15) {
            eprintln!("loadgen: error x{n}: {example}");
        }
        if v.len() > 15 {
            eprintln!("loadgen: ... and {} more error kinds", v.len() - 15);
        }
    }
}

/// What a download must match.
#[derive(Clone)]
struct Expect {
    size: u64,
    sha256: Option<[u8; 32]>,
}

impl Expect {
    fn new(size: u64, sha256: Option<String>) -> Result<Expect> {
        let sha256 = match sha256 {
            None => None,
            Some(h) => {
                let h = h.trim();
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("--sha256 must be 64 hex digits");
                }
                let mut out = [0u8; 32];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16)?;
                }
                Some(out)
            }
        };
        Ok(Expect { size, sha256 })
    }
}

// ------------------------------------------------------------------ FTP dialogue

type Ctrl = BufReader<TlsStream<TcpStream>>;

struct Reply {
    code: u16,
    text: String,
}

/// Reads one reply, multi-line replies (`123-` … `123 `) included.
async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply> {
    let mut line = String::new();
    let mut text = String::new();
    let mut code: Option<u16> = None;
    for _ in 0..1000 {
        line.clear();
        let n = r.read_line(&mut line).await.context("reading reply")?;
        if n == 0 {
            bail!("connection closed while waiting for a reply");
        }
        text.push_str(&line);
        let b = line.as_bytes();
        let this: Option<u16> = if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) {
            line[..3].parse().ok()
        } else {
            None
        };
        match (code, this) {
            (None, Some(c)) if b[3] == b'-' => code = Some(c),
            (None, Some(c)) if b[3] == b' ' || b.len() == 4 => {
                return Ok(Reply { code: c, text });
            }
            (None, _) => bail!("malformed reply line {:?}", line.trim_end()),
            (Some(c), Some(t)) if t == c && b[3] == b' ' => return Ok(Reply { code: c, text }),
            _ => {} // continuation line
        }
    }
    bail!("reply longer than 1000 lines")
}

fn expect(r: &Reply, ok: &[u16], what: &str) -> Result<()> {
    if ok.contains(&r.code) {
        Ok(())
    } else {
        bail!("{what}: unexpected reply {}", r.text.trim_end())
    }
}

async fn command(c: &mut Ctrl, line: &str) -> Result<Reply> {
    c.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .with_context(|| format!("sending {}", line.split(' ').next().unwrap_or("")))?;
    read_reply(c).await
}

/// TCP connect, 220, AUTH TLS, handshake, USER, PASS.
async fn login(ctx: &Ctx, cfg: &Arc<ClientConfig>) -> Result<Ctrl> {
    let tcp = TcpStream::connect(ctx.common.addr)
        .await
        .context("connect")?;
    tcp.set_nodelay(true).ok();
    let mut plain = BufReader::with_capacity(512, tcp);
    let r = read_reply(&mut plain).await.context("greeting")?;
    expect(&r, &[220], "greeting")?;
    plain.get_mut().write_all(b"AUTH TLS\r\n").await?;
    let r = read_reply(&mut plain).await.context("AUTH TLS")?;
    expect(&r, &[234], "AUTH TLS")?;
    if !plain.buffer().is_empty() {
        bail!("plaintext after 234 (STARTTLS injection?)");
    }
    let tls = TlsConnector::from(cfg.clone())
        .connect(ctx.name.clone(), plain.into_inner())
        .await
        .context("control TLS handshake")?;
    let mut c = BufReader::with_capacity(1024, tls);
    let r = command(&mut c, &format!("USER {}", ctx.common.user)).await?;
    if r.code != 230 {
        expect(&r, &[331], "USER")?;
        let r = command(&mut c, &format!("PASS {}", ctx.common.pass)).await?;
        expect(&r, &[230], "PASS")?;
    }
    Ok(c)
}

/// TYPE I, PBSZ 0, PROT P.
async fn protect(c: &mut Ctrl) -> Result<()> {
    let r = command(c, "TYPE I").await?;
    expect(&r, &[200], "TYPE I")?;
    let r = command(c, "PBSZ 0").await?;
    expect(&r, &[200], "PBSZ 0")?;
    let r = command(c, "PROT P").await?;
    expect(&r, &[200], "PROT P")?;
    Ok(())
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` → address.
fn parse_227(text: &str) -> Result<SocketAddr> {
    let inner = text
        .find('(')
        .and_then(|a| text[a + 1..].find(')').map(|b| &text[a + 1..a + 1 + b]))
        .ok_or_else(|| anyhow!("malformed 227: {}", text.trim_end()))?;
    let n: Vec<u8> = inner
        .split(',')
        .map(|s| s.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("malformed 227: {}", text.trim_end()))?;
    if n.len() != 6 {
        bail!("malformed 227: {}", text.trim_end());
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(n[0], n[1], n[2], n[3]),
        u16::from(n[4]) << 8 | u16::from(n[5]),
    )))
}

/// Result of one data transfer.
struct Got {
    bytes: u64,
    sha256: [u8; 32],
}

/// PASV, connect, send `cmd` (LIST / RETR x), then concurrently: the preliminary and
/// final replies on control, and the TLS handshake plus read-to-close_notify on data.
async fn download(ctx: &Ctx, cfg: &Arc<ClientConfig>, c: &mut Ctrl, cmd: &str) -> Result<Got> {
    let verb = cmd.split(' ').next().unwrap_or(cmd).to_string();
    let r = command(c, "PASV").await?;
    expect(&r, &[227], "PASV")?;
    let addr = parse_227(&r.text)?;
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("{verb}: data connect"))?;
    tcp.set_nodelay(true).ok();
    c.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .with_context(|| format!("sending {verb}"))?;
    let control = async {
        let r = read_reply(c).await?;
        expect(&r, &[125, 150], &verb)?;
        let r = read_reply(c).await?;
        expect(&r, &[226, 250], &format!("{verb} (final)"))?;
        Ok::<_, anyhow::Error>(())
    };
    let data = async {
        let mut tls = TlsConnector::from(cfg.clone())
            .connect(ctx.name.clone(), tcp)
            .await
            .with_context(|| format!("{verb}: data TLS handshake"))?;
        if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
            ctx.data_resumed.fetch_add(1, Ordering::Relaxed);
        } else {
            ctx.data_full_handshakes.fetch_add(1, Ordering::Relaxed);
        }
        let mut hash = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // rustls reports a close without close_notify as an error: a truncation.
            let n = tls
                .read(&mut buf)
                .await
                .with_context(|| format!("{verb}: data read"))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            hash.update(&buf[..n]);
        }
        Ok::<_, anyhow::Error>(Got {
            bytes,
            sha256: hash.finalize().into(),
        })
    };
    let ((), got) = tokio::try_join!(control, data)?;
    Ok(got)
}

fn check(got: &Got, want: &Expect, what: &str) -> Result<()> {
    if got.bytes != want.size {
        bail!("{what}: got {} bytes, expected {}", got.bytes, want.size);
    }
    if let Some(h) = want.sha256 {
        if got.sha256 != h {
            bail!("{what}: sha256 mismatch");
        }
    }
    Ok(())
}

async fn quit(c: &mut Ctrl) -> Result<()> {
    let r = command(c, "QUIT").await?;
    expect(&r, &[221], "QUIT")?;
    // close_notify; the server may already have closed.
    let _ = c.get_mut().shutdown().await;
    Ok(())
}

async fn with_timeout<T>(
    d: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r,
        Err(_) => bail!("{what}: timed out after {:.0} s", d.as_secs_f64()),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ------------------------------------------------------------------ idle

async fn idle(ctx: Arc<Ctx>, n: usize, hold: Option<f64>) -> Result<()> {
    let sem = Arc::new(Semaphore::new(ctx.common.connect_concurrency.max(1)));
    let (close_tx, close_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let dropped = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (ctx, sem, done_tx, mut close_rx, dropped) = (
            ctx.clone(),
            sem.clone(),
            done_tx.clone(),
            close_rx.clone(),
            dropped.clone(),
        );
        tasks.spawn(async move {
            let cfg = ctx.session_config();
            let permit = sem.acquire_owned().await.expect("semaphore closed");
            let res = with_timeout(ctx.common.timeout(), "login", login(&ctx, &cfg)).await;
            drop(permit);
            let mut c = match res {
                Ok(c) => {
                    let _ = done_tx.send(true);
                    c
                }
                Err(e) => {
                    ctx.errors.record("login", &e);
                    let _ = done_tx.send(false);
                    return;
                }
            };
            drop(done_tx);
            // Hold: wait for the close signal, noticing if the server drops us.
                        let mut buf = [0u8; 256];
            tokio::select! {
                _ = close_rx.wait_for(|v| *v) => {}
                r = c.read(&mut buf) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    let e = match r {
                        Ok(0) => anyhow!("server closed the idle session"),
                        Ok(k) => anyhow!("server sent during idle hold: {}", String::from_utf8_lossy(&buf[..k]).trim_end()),
                        Err(e) => anyhow!("idle session read error: {e}"),
                    };
                    ctx.errors.record("hold", &e);
                    return;
                }
            }
            if let Err(e) = with_timeout(Duration::from_secs(30), "QUIT", quit(&mut c)).await {
                ctx.errors.record("close", &e);
            }
        });
    }
    drop(done_tx);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut last_report = Instant::now();
    while let Some(v) = done_rx.recv().await {
        if v {
            ok += 1
        } else {
            failed += 1
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "loadgen: idle t={:.0}s logged_in={ok} failed={failed}",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let t_login = t0.elapsed();
    println!(
        "idle_login sessions={n} ok={ok} errors={failed} secs={} rate={:.1}/s",
        secs(t_login),
        ok as f64 / t_login.as_secs_f64().max(1e-9)
    );
    // The line the scripts wait for before measuring.
    println!("ready held={ok}");
    use std::io::Write;
    std::io::stdout().flush().ok();

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let hold = async {
        match hold {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = usr1.recv() => {}
        _ = hold => {}
    }
    let t1 = Instant::now();
    let _ = close_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let dropped = dropped.load(Ordering::Relaxed);
    println!(
        "idle_close sessions={ok} dropped_during_hold={dropped} secs={} errors_total={}",
        secs(t1.elapsed()),
        ctx.errors.total()
    );
    ctx.errors.report();
    Ok(())
}

// ------------------------------------------------------------------ transfers

async fn transfers(ctx: Arc<Ctx>, n: usize, file: String, want: Expect) -> Result<()> {
    let sem = Arc::new(Semaphore::new(ctx.common.connect_concurrency.max(1)));
    let barrier = Arc::new(Barrier::new(n.max(1)));
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let bytes = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (ctx, sem, barrier, start, bytes, file, want) = (
            ctx.clone(),
            sem.clone(),
            barrier.clone(),
            start.clone(),
            bytes.clone(),
            file.clone(),
            want.clone(),
        );
        tasks.spawn(async move {
            let cfg = ctx.session_config();
            let permit = sem.acquire_owned().await.expect("semaphore closed");
            let res = with_timeout(ctx.common.timeout(), "login", async {
                let mut c = login(&ctx, &cfg).await?;
                protect(&mut c).await?;
                Ok(c)
            })
            .await;
            drop(permit);
            // Every task reaches the barrier, failed logins included.
            if barrier.wait().await.is_leader() {
                let _ = start.set(Instant::now());
            }
            let mut c = match res {
                Ok(c) => c,
                Err(e) => {
                    ctx.errors.record("login", &e);
                    return (false, None);
                }
            };
            let res = with_timeout(ctx.common.timeout(), "transfer", async {
                let got = download(&ctx, &cfg, &mut c, &format!("RETR {file}")).await?;
                check(&got, &want, "RETR")?;
                Ok(got.bytes)
            })
            .await;
            let end = Instant::now();
            match res {
                Ok(b) => {
                    bytes.fetch_add(b, Ordering::Relaxed);
                    if let Err(e) =
                        with_timeout(Duration::from_secs(30), "QUIT", quit(&mut c)).await
                    {
                        ctx.errors.record("close", &e);
                    }
                    (true, Some(end))
                }
                Err(e) => {
                    ctx.errors.record("transfer", &e);
                    (false, Some(end))
                }
            }
        });
    }
    let (mut ok, mut last_end) = (0u64, None::<Instant>);
    while let Some(r) = tasks.join_next().await {
        let (good, end) = r.unwrap_or((false, None));
        ok += u64::from(good);
        if let Some(e) = end {
            last_end = Some(last_end.map_or(e, |l: Instant| l.max(e)));
        }
    }
    let total = t0.elapsed();
    let phase = match (start.get(), last_end) {
        (Some(s), Some(e)) => e.saturating_duration_since(*s),
        _ => Duration::ZERO,
    };
    let b = bytes.load(Ordering::Relaxed);
    println!(
        "transfers sessions={n} size={} ok={ok} errors={} transfer_secs={} total_secs={} MiB_per_s={:.1} data_resumed={} data_full_handshake={}",
        want.size,
        n as u64 - ok,
        secs(phase),
        secs(total),
        b as f64 / 1048576.0 / phase.as_secs_f64().max(1e-9),
        ctx.data_resumed.load(Ordering::Relaxed),
        ctx.data_full_handshakes.load(Ordering::Relaxed),
    );
    ctx.errors.report();
    Ok(())
}

// ------------------------------------------------------------------ churn

/// One short session: login, PBSZ/PROT, LIST, RETR small file, QUIT.
async fn short_session(ctx: &Ctx, file: &str, want: &Expect) -> Result<()> {
    let cfg = ctx.session_config();
    let mut c = login(ctx, &cfg).await?;
    protect(&mut c).await?;
    let list = download(ctx, &cfg, &mut c, "LIST").await?;
    if list.bytes == 0 {
        bail!("LIST: empty listing");
    }
    let got = download(ctx, &cfg, &mut c, &format!("RETR {file}")).await?;
    check(&got, want, "RETR")?;
    quit(&mut c).await
}

/// When churn starts sessions.
struct Schedule {
    /// Sessions per second; 0 = closed loop.
    rate: f64,
    /// Seconds during which sessions are started.
    secs: f64,
    max_inflight: usize,
    /// Sessions to start at most (0 = no limit).
    max_sessions: u64,
}

async fn churn(
    ctx: Arc<Ctx>,
    sched: Schedule,
    file: String,
    want: Expect,
    progress: f64,
) -> Result<()> {
    let Schedule {
        rate,
        secs: run_secs,
        max_inflight,
        max_sessions,
    } = sched;
    let sem = Arc::new(Semaphore::new(max_inflight.max(1)));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let lat: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let file = Arc::new(file);
    let want = Arc::new(want);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(run_secs);
    let gap = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut next = t0;
    let mut started = 0u64;
    let mut behind_waits = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_progress = t0;
    let (mut last_ok, mut last_t) = (0u64, t0);
    loop {
        if let Some(g) = gap {
            tokio::time::sleep_until(next.into()).await;
            next += g;
            // Never burst more than 1 s of backlog after a stall.
            let now = Instant::now();
            if next + Duration::from_secs(1) < now {
                next = now;
            }
        }
        if Instant::now() >= end || (max_sessions > 0 && started >= max_sessions) {
            break;
        }
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                behind_waits += u64::from(gap.is_some());
                sem.clone().acquire_owned().await.expect("semaphore closed")
            }
        };
        if Instant::now() >= end {
            break;
        }
        started += 1;
        {
            let (ctx, ok, failed, lat, file, want) = (
                ctx.clone(),
                ok.clone(),
                failed.clone(),
                lat.clone(),
                file.clone(),
                want.clone(),
            );
            let task = async move {
                let s = Instant::now();
                let r = with_timeout(
                    ctx.common.timeout(),
                    "session",
                    short_session(&ctx, &file, &want),
                )
                .await;
                match r {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.lock().unwrap().push(s.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        ctx.errors.record("session", &e);
                    }
                }
                drop(permit);
            };
            tasks.spawn(task);
        }
        // Reap finished tasks so the JoinSet does not grow for the whole run.
        while tasks.try_join_next().is_some() {}
        if progress > 0.0 && last_progress.elapsed().as_secs_f64() >= progress {
            let now = Instant::now();
            let o = ok.load(Ordering::Relaxed);
            eprintln!(
                "loadgen: churn t={:.0}s ok={o} errors={} inflight={} rate_now={:.1}/s",
                (now - t0).as_secs_f64(),
                failed.load(Ordering::Relaxed),
                max_inflight - sem.available_permits(),
                (o - last_ok) as f64 / (now - last_t).as_secs_f64()
            );
            (last_ok, last_t, last_progress) = (o, now, now);
        }
    }
    let t_spawn = t0.elapsed();
    while tasks.join_next().await.is_some() {}
    let elapsed = t0.elapsed();
    let mut l = std::mem::take(&mut *lat.lock().unwrap());
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "churn target_rate={} secs={} started={started} ok={ok} errors={} elapsed={} sessions_per_s={:.1} lat_p50_ms={:.1} lat_p99_ms={:.1} lat_max_ms={:.1} inflight_cap_waits={behind_waits} max_inflight={max_inflight} data_resumed={} data_full_handshake={}",
        if rate > 0.0 { format!("{rate}") } else { "closed-loop".into() },
        secs(t_spawn),
        failed.load(Ordering::Relaxed),
        secs(elapsed),
        ok as f64 / elapsed.as_secs_f64().max(1e-9),
        quantile(&l, 0.5) * 1000.0,
        quantile(&l, 0.99) * 1000.0,
        l.last().copied().unwrap_or(f64::NAN) * 1000.0,
        ctx.data_resumed.load(Ordering::Relaxed),
        ctx.data_full_handshakes.load(Ordering::Relaxed),
    );
    ctx.errors.report();
    Ok(())
}

// ------------------------------------------------------------------ relay

/// Copies every accepted connection to and from a new connection to `to`.
async fn relay(listen: SocketAddr, to: SocketAddr) -> Result<()> {
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    println!("relay listening={}", l.local_addr()?);
    loop {
        let (mut a, _) = l.accept().await.context("accept")?;
        tokio::spawn(async move {
            let Ok(mut b) = TcpStream::connect(to).await else {
                return;
            };
            a.set_nodelay(true).ok();
            b.set_nodelay(true).ok();
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
    }
}

// ------------------------------------------------------------------ noop

/// Logs `n` sessions in; once all are in, each sends `NOOP` every `interval`
/// (starting at an offset spread over the interval, so the load is even) for
/// `run_secs`, timing each round trip from just before the write to the
/// complete reply.
async fn noop(ctx: Arc<Ctx>, n: usize, run_secs: f64, interval: f64) -> Result<()> {
    let sem = Arc::new(Semaphore::new(ctx.common.connect_concurrency.max(1)));
    let barrier = Arc::new(Barrier::new(n.max(1)));
    let lat: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let gap = Duration::from_secs_f64(interval.max(0.0));
    let run = Duration::from_secs_f64(run_secs.max(0.0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (ctx, sem, barrier, lat) = (ctx.clone(), sem.clone(), barrier.clone(), lat.clone());
        tasks.spawn(async move {
            let cfg = ctx.session_config();
            let permit = sem.acquire_owned().await.expect("semaphore closed");
            let res = with_timeout(ctx.common.timeout(), "login", login(&ctx, &cfg)).await;
            drop(permit);
            barrier.wait().await;
            let mut c = match res {
                Ok(c) => c,
                Err(e) => return ctx.errors.record("login", &e),
            };
            let offset = gap.mul_f64(i as f64 / n.max(1) as f64);
            let start = Instant::now() + offset;
            let end = start + run;
            let mut next = start;
            let mut mine = Vec::new();
            loop {
                tokio::time::sleep_until(next.into()).await;
                if Instant::now() >= end {
                    break;
                }
                let t = Instant::now();
                let r = with_timeout(ctx.common.timeout(), "NOOP", command(&mut c, "NOOP")).await;
                match r.and_then(|r| expect(&r, &[200], "NOOP")) {
                    Ok(()) => mine.push(t.elapsed().as_secs_f64() * 1e6),
                    Err(e) => return ctx.errors.record("noop", &e),
                }
                next += gap;
            }
            lat.lock().unwrap().extend(mine);
            if let Err(e) = with_timeout(Duration::from_secs(30), "QUIT", quit(&mut c)).await {
                ctx.errors.record("close", &e);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut l = std::mem::take(&mut *lat.lock().unwrap());
    l.sort_by(|a, b| a.total_cmp(b));
    println!(
        "noop sessions={n} interval_s={interval} secs={run_secs} samples={} errors={} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        l.len(),
        ctx.errors.total(),
        quantile(&l, 0.5),
        quantile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN),
    );
    ctx.errors.report();
    Ok(())
}

// ------------------------------------------------------------------ --insecure

/// Accepts any certificate but still checks the handshake signatures with the
/// provider's algorithms (so the key exchange is real). Benchmarks only.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
