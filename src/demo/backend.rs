//! An in-process, plain-FTP "legacy backend" for demos and integration tests.
//!
//! [`DemoBackend`] runs a `libunftp` server with the `unftp-sbe-fs` filesystem storage on
//! `127.0.0.1` and an OS-chosen port. Every login is accepted (anonymous or any
//! user/password), passive mode advertises `127.0.0.1`, and there is no TLS: this is the
//! cleartext server that ftpsgate sits in front of.
//!
//! The backend accepts control connections itself and hands each to libunftp
//! (`Server::service`) with `TCP_NODELAY` set: libunftp's own `listen` leaves Nagle's
//! algorithm on, so its `226` after a transfer waited for the client's delayed ACK of
//! the `150` (about 40 ms per transfer on Linux, which dominated the latency of the
//! benchmarks' short sessions).
//!
//! When started without a root directory it serves a fresh temporary directory seeded with
//! `hello.txt` ([`HELLO_TXT_CONTENTS`]) and `sample.bin` ([`sample_bin_contents`], 1 MiB of
//! deterministic pseudo-random bytes). The directory is removed when the backend is stopped
//! or dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use libunftp::options::{FtpsRequired, PassiveHost};
use libunftp::ServerBuilder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use unftp_sbe_fs::Filesystem;

/// Contents of the seeded `hello.txt`.
pub const HELLO_TXT_CONTENTS: &str = "Hello from the ftpsgate demo backend\n";

/// Size in bytes of the seeded `sample.bin`.
pub const SAMPLE_BIN_LEN: usize = 1024 * 1024;

/// Passive data ports the backend picks from (libunftp binds a random free one per PASV/EPSV).
pub const PASSIVE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The 220 greeting text.
const GREETING: &str = "ftpsgate demo backend ready";

/// Grace period given to sessions to close on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A running demo FTP server. Stop it with [`DemoBackend::stop`]; dropping it also stops
/// it (the same shutdown), but without waiting for it.
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
    /// The accept loop (ends on shutdown, after the sessions).
    task: JoinHandle<()>,
}

impl DemoBackend {
    /// Starts on 127.0.0.1 with an OS-chosen free port. If `root` is `None`, a temporary
    /// directory seeded with `hello.txt` and `sample.bin` is served. The port is bound
    /// (and listening) when this returns.
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

        let std_listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the demo backend's control port")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = TcpListener::from_std(std_listener)?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(accept_loop(listener, root.clone(), shutdown_rx));
        tracing::debug!(%addr, root = %root.display(), "demo FTP backend ready");
        Ok(DemoBackend {
            addr,
            root,
            tempdir,
            shutdown_tx: Some(shutdown_tx),
            task,
        })
    }

    /// Stops accepting, closes the open sessions (libunftp's shutdown signal, with a
    /// short grace period) and waits for the accept loop to end. Removes the
    /// temporary root if `start` created one.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        let wait = SHUTDOWN_GRACE + Duration::from_secs(1);
        match tokio::time::timeout(wait, &mut self.task).await {
            Ok(Ok(())) => tracing::debug!(addr = %self.addr, "demo FTP backend stopped"),
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

/// Accepts control connections until `shutdown_rx` resolves (or its sender is
/// dropped), each served by its own libunftp `Server` (one is cheap: options and
/// `Arc`s) with `TCP_NODELAY` set. On shutdown the session futures are dropped,
/// which drops their libunftp shutdown notifiers: each control loop then closes its
/// connection. Waits for them at most [`SHUTDOWN_GRACE`].
async fn accept_loop(listener: TcpListener, root: PathBuf, mut shutdown_rx: oneshot::Receiver<()>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown_rx => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Replies are single small writes; with Nagle on, the 226 after a
                    // transfer waits for the ACK of the 150 (see the module doc).
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, error = %e, "demo FTP backend: TCP_NODELAY");
                    }
                    match session(&root, stream, peer) {
                        Ok(run) => {
                            sessions.spawn(run);
                        }
                        Err(e) => tracing::warn!(error = %e, "demo FTP backend: building the session"),
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "demo FTP backend: accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
    drop(listener);
    sessions.abort_all();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
}

/// Builds the libunftp server for one control connection; the future serves it.
fn session(
    root: &Path,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
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
    .build()
    .map_err(|e| anyhow!("building libunftp server: {e}"))?;
    Ok(async move {
        if let Err(e) = server.service(stream).await {
            tracing::debug!(%peer, error = %e, "demo FTP backend session ended with error");
        }
    })
}
