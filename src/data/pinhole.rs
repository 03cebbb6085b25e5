//! A pinhole: a listener on one port of the passive range, opened for one
//! transfer. It accepts exactly one connection, only from the control
//! client's IP, finishes the TLS handshake at once (clients such as curl
//! start it before sending `RETR`) and, when the policy requires it, only if
//! the handshake resumed this session's TLS session. Anything else — another
//! address (RFC 2577 port stealing), a fresh handshake, a second connection —
//! is refused without disturbing the legitimate transfer. Unused, it closes
//! after its deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::LazyConfigAcceptor;

use crate::config::PortRange;
use crate::metrics::{Metrics, PinholeRefusal, Side};
use crate::stream::{ClientStream, MaybeTls};
use crate::tls::{self, SessionAcceptors};

#[derive(Debug, thiserror::Error)]
pub enum PinholeError {
    #[error("no free port in passive range {0}")]
    Exhausted(PortRange),
    #[error("bind failed: {0}")]
    Bind(io::Error),
    #[error("no data connection within {0:?}")]
    Expired(Duration),
    #[error("data connection TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("data connection did not resume the control TLS session")]
    ReuseRequired,
    #[error("pinhole closed")]
    Closed,
    #[error("cannot connect to the client's data port: {0}")]
    Connect(io::Error),
}

impl PinholeError {
    /// Short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PinholeError::Exhausted(_) => "exhausted",
            PinholeError::Bind(_) => "bind",
            PinholeError::Expired(_) => "expired",
            PinholeError::Tls(_) => "tls",
            PinholeError::ReuseRequired => "reuse_required",
            PinholeError::Closed => "closed",
            PinholeError::Connect(_) => "connect",
        }
    }
}

/// What a pinhole accepts.
pub struct PinholeSpec {
    pub bind_ip: IpAddr,
    pub ports: PortRange,
    /// The control connection's peer IP: the only address allowed in.
    pub client_ip: IpAddr,
    /// Some for `PROT P`: the session's acceptor, and whether resumption is required.
    pub tls: Option<DataTls>,
    pub lifetime: Duration,
    pub metrics: Arc<Metrics>,
    /// Kernel pinholes: the element to delete when this pinhole is done.
    pub kernel: Option<Arc<super::nft::KernelPinholes>>,
}

/// TLS on a client data connection (`PROT P`).
#[derive(Clone)]
pub struct DataTls {
    pub acceptors: SessionAcceptors,
    /// Refuse handshakes that do not resume the control session.
    pub require_reuse: bool,
}

/// How long a pinhole holds a client's ClientHello waiting for the transfer
/// command, to learn the direction (download: fresh TLS 1.3 tickets; upload:
/// none). Clients like curl send the command while their handshake is in
/// flight; a client that finishes the handshake first only waits this long.
/// curl sends `TYPE`, `SIZE` and then `RETR`, each a round trip to the
/// backend, after starting its data handshake: 300 ms proved too short under
/// load (the download then got no tickets and the next data connection could
/// not resume).
const DIRECTION_WAIT: Duration = Duration::from_millis(1500);

/// After a weak hint (`SIZE`, `MDTM`: sent before downloads *and* before
/// resumed uploads, `curl -C - -T`), how long the handshake still waits for
/// the transfer command before it is taken as a download. Answering an upload
/// as a download sends TLS 1.3 tickets the client never reads, and its close
/// then resets the connection, losing the upload's last bytes.
const HINT_GRACE: Duration = Duration::from_millis(500);

/// What the session knows of the next transfer's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Unknown,
    /// `SIZE`/`MDTM`: probably a download, but wait a little for the command.
    Likely,
    Download,
    Upload,
}

/// Choose the data handshake's mode (`true`: download) from what the
/// session learns while the client's ClientHello waits.
async fn decide(rx: &mut watch::Receiver<Direction>) -> bool {
    let deadline = tokio::time::Instant::now() + DIRECTION_WAIT;
    let mut likely_since = None;
    loop {
        match *rx.borrow_and_update() {
            Direction::Download => return true,
            Direction::Upload => return false,
            Direction::Likely => {
                likely_since.get_or_insert_with(tokio::time::Instant::now);
            }
            Direction::Unknown => {}
        }
        let until = likely_since.map_or(deadline, |t| (t + HINT_GRACE).min(deadline));
        match tokio::time::timeout_at(until, rx.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out, or the session is gone: a hint means download.
            _ => return likely_since.is_some(),
        }
    }
}

/// An open pinhole. Dropping it closes the port and cancels its task.
pub struct Pinhole {
    pub local: SocketAddr,
    rx: Option<oneshot::Receiver<Result<ClientStream, PinholeError>>>,
    task: JoinHandle<()>,
    used: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// What is known of the transfer's direction.
    direction: watch::Sender<Direction>,
    /// Kernel pinhole to close if this one is dropped before its task ends
    /// (replaced by a new PASV, session over), with the client it was for.
    kernel: Option<(Arc<super::nft::KernelPinholes>, IpAddr)>,
    /// Set by the task once it has closed the kernel pinhole itself.
    kernel_closed: Arc<AtomicBool>,
}

impl Drop for Pinhole {
    fn drop(&mut self) {
        self.task.abort();
        self.metrics
            .pinhole_closed(self.used.load(Ordering::Relaxed));
        if let Some((k, ip)) = self.kernel.take() {
            if !self.kernel_closed.load(Ordering::SeqCst) {
                let port = self.local.port();
                // Drop cannot wait; the delete runs on its own (pinholes
                // only exist inside the runtime).
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move { k.remove(ip, port).await });
                }
            }
        }
    }
}

/// Rotates the starting port so consecutive transfers do not all fight over
/// the bottom of the range (and a just-closed port has time to clear).
static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

impl Pinhole {
    pub fn open(spec: PinholeSpec) -> Result<Pinhole, PinholeError> {
        let listener = match bind_in_range(spec.bind_ip, spec.ports) {
            Ok(l) => l,
            Err(e) => {
                if let PinholeError::Exhausted(_) = e {
                    spec.metrics.pinhole_refused(PinholeRefusal::Exhausted);
                }
                return Err(e);
            }
        };
        let local = listener.local_addr().map_err(PinholeError::Bind)?;
        let metrics = spec.metrics.clone();
        metrics.pinhole_opened();
        let used = Arc::new(AtomicBool::new(false));
        let used_in_task = used.clone();
        let kernel = spec.kernel.clone();
        let client_ip = spec.client_ip;
        let kernel_closed = Arc::new(AtomicBool::new(false));
        let closed_in_task = kernel_closed.clone();
        let (tx, rx) = oneshot::channel();
        let (direction, direction_rx) = watch::channel(Direction::Unknown);
        let task = tokio::spawn(async move {
            let res =
                tokio::time::timeout(spec.lifetime, accept_one(&listener, &spec, direction_rx))
                    .await;
            if matches!(res, Ok(Ok(_))) {
                used_in_task.store(true, Ordering::Relaxed);
            }
            drop(listener);
            if let Some(k) = &spec.kernel {
                k.remove(spec.client_ip, local.port()).await;
                closed_in_task.store(true, Ordering::SeqCst);
            }
            let res = match res {
                Ok(r) => r,
                Err(_) => {
                    tracing::info!(port = local.port(), "pinhole expired unused");
                    Err(PinholeError::Expired(spec.lifetime))
                }
            };
            let _ = tx.send(res);
        });
        Ok(Pinhole {
            local,
            rx: Some(rx),
            task,
            used,
            metrics,
            direction,
            kernel: kernel.map(|k| (k, client_ip)),
            kernel_closed,
        })
    }

    /// The transfer command arrived: tell the pending handshake its direction.
    pub fn set_direction(&self, download: bool) {
        let _ = self.direction.send(if download {
            Direction::Download
        } else {
            Direction::Upload
        });
    }

    /// A command that usually precedes a download arrived before the transfer
    /// command (curl: `TYPE A` before `LIST`, `SIZE` before `RETR`; it may
    /// wait for the data handshake in between). `strong` (`TYPE A`): answer
    /// the handshake as a download now; weak (`SIZE`, `MDTM`, which also come
    /// before resumed uploads): wait up to `HINT_GRACE` for the command first.
    /// Ignored once the direction is known.
    pub fn hint_download(&self, strong: bool) {
        self.direction.send_if_modified(|d| match d {
            Direction::Unknown | Direction::Likely => {
                *d = if strong {
                    Direction::Download
                } else {
                    Direction::Likely
                };
                true
            }
            Direction::Download | Direction::Upload => false,
        });
    }

    /// Wait for the client's data connection (already TLS-accepted if `PROT P`).
    pub async fn connection(&mut self) -> Result<ClientStream, PinholeError> {
        match self.rx.take() {
            Some(rx) => rx.await.unwrap_or(Err(PinholeError::Closed)),
            None => Err(PinholeError::Closed),
        }
    }
}

fn bind_in_range(ip: IpAddr, range: PortRange) -> Result<TcpListener, PinholeError> {
    let len = range.len().max(1);
    let start = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % len;
    for i in 0..len {
        let offset = (start + i) % len;
        let Ok(port) = u16::try_from(usize::from(range.first) + offset) else {
            continue;
        };
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(PinholeError::Bind)?;
        // Lets a port whose previous transfer left TIME_WAIT entries be reused.
        let _ = socket.set_reuseaddr(true);
        if socket.bind(SocketAddr::new(ip, port)).is_err() {
            continue;
        }
        if let Ok(l) = socket.listen(8) {
            return Ok(l);
        }
    }
    Err(PinholeError::Exhausted(range))
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

async fn accept_one(
    listener: &TcpListener,
    spec: &PinholeSpec,
    mut direction: watch::Receiver<Direction>,
) -> Result<ClientStream, PinholeError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (tcp, peer) = listener.accept().await.map_err(PinholeError::Bind)?;
        if canonical(peer.ip()) != canonical(spec.client_ip) {
            // RFC 2577 §5 port stealing: drop the intruder, keep waiting for the client.
            tracing::warn!(
                port,
                intruder = %peer,
                client = %spec.client_ip,
                reason = "stealing",
                "refused data connection from foreign address"
            );
            spec.metrics.pinhole_refused(PinholeRefusal::Stealing);
            drop(tcp);
            continue;
        }
        crate::net::tune(&tcp);
        return match &spec.tls {
            None => Ok(MaybeTls::Plain(tcp)),
            Some(DataTls {
                acceptors,
                require_reuse,
            }) => {
                let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let start = hello.await.map_err(PinholeError::Tls)?;
                let download = decide(&mut direction).await;
                tracing::debug!(port, download, "data handshake mode");
                let t = match start.into_stream(acceptors.data(download)).await {
                    Ok(t) => t,
                    Err(e) => {
                        spec.metrics
                            .tls_handshake(Side::Client, "none", false, false);
                        return Err(PinholeError::Tls(e));
                    }
                };
                let conn = t.get_ref().1;
                let resumed = tls::was_resumed(conn.handshake_kind());
                let version = tls::version_name(conn.protocol_version());
                spec.metrics
                    .tls_handshake(Side::Client, version, true, resumed);
                if *require_reuse && !resumed {
                    tracing::warn!(
                        port,
                        client = %peer,
                        reason = "no_reuse",
                        "refused data connection: TLS session not resumed"
                    );
                    spec.metrics.pinhole_refused(PinholeRefusal::NoReuse);
                    return Err(PinholeError::ReuseRequired);
                }
                Ok(MaybeTls::Tls(Box::new(t)))
            }
        };
    }
}
