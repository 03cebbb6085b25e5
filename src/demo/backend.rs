//! An in-process, plain-FTP "legacy backend" for demos and integration tests.
//!
//! [`DemoBackend`] runs a `libunftp` server with the `unftp-sbe-fs` filesystem storage on
//! `127.0.0.1` and an OS-chosen port. Every login is accepted (anonymous or any
//! user/password), passive mode advertises `127.0.0.1`, and there is no TLS: this is the
//! cleartext server that ftpsgate sits in front of.
//!
//! When started without a root directory it serves a fresh temporary directory seeded with
//! `hello.txt` ([`HELLO_TXT_CONTENTS`]) and `sample.bin` ([`sample_bin_contents`], 1 MiB of
//! deterministic pseudo-random bytes). The directory is removed when the backend is stopped
//! or dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use libunftp::options::{FtpsRequired, PassiveHost, Shutdown};
use libunftp::{ServerBuilder, ServerError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use unftp_sbe_fs::Filesystem;

/// Contents of the seeded `hello.txt`.
pub const HELLO_TXT_CONTENTS: &str = "Hello from the ftpsgate demo backend\n";

/// Size in bytes of the seeded `sample.bin`.
pub const SAMPLE_BIN_LEN: usize = 1024 * 1024;

/// Passive data ports the backend picks from (libunftp binds a random free one per PASV/EPSV).
pub const PASSIVE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The 220 greeting text; also used to recognise our own server while probing readiness.
const GREETING: &str = "ftpsgate demo backend ready";

/// How long `start` waits for the listener to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Grace period given to libunftp to close sessions on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How many fresh ports `start` tries if the one it picked was taken in the meantime.
const BIND_ATTEMPTS: usize = 5;

/// A running demo FTP server. Stop it with [`DemoBackend::stop`]; dropping it also triggers
/// libunftp's graceful shutdown, but without waiting for it.
#[derive(Debug)]
pub struct DemoBackend {
    /// Control-connection address (always `127.0.0.1:<port>`).
    pub addr: SocketAddr,
    /// Directory being served.
    pub root: PathBuf,
    /// Keeps the seeded temporary root alive; `None` when the caller supplied `root`.
    tempdir: Option<tempfile::TempDir>,
    /// Resolves libunftp's shutdown indicator. Dropping it has the same effect as sending.
    shutdown_tx: Option<oneshot::Sender<()>>,
    /// The task running `Server::listen`.
    task: JoinHandle<Result<(), ServerError>>,
}

impl DemoBackend {
    /// Starts on 127.0.0.1 with an OS-chosen free port. If `root` is `None`, a temporary
    /// directory seeded with `hello.txt` and `sample.bin` is served. Returns once the server
    /// answers with its 220 greeting (at most ~3 s).
    pub async fn start(root: Option<PathBuf>) -> Result<DemoBackend> {
        let (root, tempdir) = match root {
            Some(root) => (root, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("ftpsgate-demo-backend-")
                    .tempdir()
                    .context("creating temporary backend root")?;
                seed(dir.path())?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        // Fail here rather than inside the server task (where the storage factory can only
        // panic) if the root cannot be opened.
        Filesystem::new(&root)
            .with_context(|| format!("opening backend root {}", root.display()))?;

        // One deadline for all attempts, so `start` never waits much longer than READY_TIMEOUT.
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_err = None;
        for attempt in 1..=BIND_ATTEMPTS {
            // libunftp's `listen` only takes an address to bind itself (no pre-bound
            // listener), so reserve a port from the OS, release it and hand it over. Another
            // process may grab it in between; then the listen task fails or the probe sees a
            // foreign greeting, and we retry with a new port.
            let addr = free_local_port().context("reserving a local port")?;
            let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
            let mut task = spawn_server(&root, addr, shutdown_rx)?;

            match wait_ready(addr, &mut task, deadline).await {
                Ok(()) => {
                    tracing::debug!(%addr, root = %root.display(), "demo FTP backend ready");
                    return Ok(DemoBackend {
                        addr,
                        root,
                        tempdir,
                        shutdown_tx: Some(shutdown_tx),
                        task,
                    });
                }
                Err(e) => {
                    tracing::debug!(%addr, attempt, error = %e, "demo FTP backend failed to start");
                    task.abort();
                    last_err = Some(e);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context("demo FTP backend did not start"))
    }

    /// Stops the server through libunftp's shutdown indicator (open sessions are closed,
    /// with a short grace period) and waits for the server task to end. Removes the
    /// temporary root if `start` created one.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        let wait = SHUTDOWN_GRACE + Duration::from_secs(1);
        match tokio::time::timeout(wait, &mut self.task).await {
            Ok(Ok(Ok(()))) => tracing::debug!(addr = %self.addr, "demo FTP backend stopped"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(addr = %self.addr, error = %e, "demo FTP backend stopped with error")
            }
            Ok(Err(e)) => {
                tracing::warn!(addr = %self.addr, error = %e, "demo FTP backend task failed")
            }
            Err(_) => {
                tracing::warn!(addr = %self.addr, "demo FTP backend did not stop in time; aborting");
                self.task.abort();
                let _ = (&mut self.task).await;
            }
        }
        drop(self.tempdir.take());
    }
}

/// The deterministic 1 MiB payload written to `sample.bin` (SplitMix64 stream, fixed seed).
pub fn sample_bin_contents() -> Vec<u8> {
    let mut state: u64 = 0x0f7b_5a7e_de40_0001;
    let mut out = Vec::with_capacity(SAMPLE_BIN_LEN);
    while out.len() < SAMPLE_BIN_LEN {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(SAMPLE_BIN_LEN);
    out
}

fn seed(dir: &Path) -> Result<()> {
    let hello = dir.join("hello.txt");
    std::fs::write(&hello, HELLO_TXT_CONTENTS)
        .with_context(|| format!("writing {}", hello.display()))?;
    let sample = dir.join("sample.bin");
    std::fs::write(&sample, sample_bin_contents())
        .with_context(|| format!("writing {}", sample.display()))?;
    Ok(())
}

/// Builds the libunftp server and spawns `listen(addr)` on the current runtime.
fn spawn_server(
    root: &Path,
    addr: SocketAddr,
    shutdown_rx: oneshot::Receiver<()>,
) -> Result<JoinHandle<Result<(), ServerError>>> {
    let factory_root = root.to_path_buf();
    // `ServerBuilder::new` installs libunftp's `AnonymousAuthenticator`, which accepts every
    // user name with any (or no) password.
    let server = ServerBuilder::new(Box::new(move || {
        Filesystem::new(&factory_root).expect("demo backend root became unreadable")
    }))
    .greeting(GREETING)
    .passive_host(PassiveHost::Ip(Ipv4Addr::LOCALHOST))
    .passive_ports(PASSIVE_PORTS)
    .ftps_required(FtpsRequired::None, FtpsRequired::None)
    .idle_session_timeout(300)
    .shutdown_indicator(async move {
        // Either an explicit `stop` or the sender being dropped with the `DemoBackend`.
        let _ = shutdown_rx.await;
        Shutdown::new().grace_period(SHUTDOWN_GRACE)
    })
    .build()
    .map_err(|e| anyhow!("building libunftp server: {e}"))?;
    Ok(tokio::spawn(server.listen(addr.to_string())))
}

fn free_local_port() -> std::io::Result<SocketAddr> {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.local_addr()
}

/// Polls `addr` until our server greets us, the listen task dies, or `deadline` passes.
async fn wait_ready(
    addr: SocketAddr,
    task: &mut JoinHandle<Result<(), ServerError>>,
    deadline: Instant,
) -> Result<()> {
    loop {
        if task.is_finished() {
            return match task.await {
                Ok(Ok(())) => Err(anyhow!("listen task ended before accepting")),
                Ok(Err(e)) => Err(anyhow!("listening on {addr}: {e}")),
                Err(e) => Err(anyhow!("listen task failed: {e}")),
            };
        }
        if let Ok(Ok(greeting)) =
            tokio::time::timeout(Duration::from_millis(500), probe(addr)).await
        {
            if greeting.starts_with("220") && greeting.contains(GREETING) {
                return Ok(());
            }
            bail!(
                "port {} is served by something else: {greeting:?}",
                addr.port()
            );
        }
        if Instant::now() >= deadline {
            bail!("not accepting on {addr} after {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects and reads the first line the server sends.
async fn probe(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 128];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}
