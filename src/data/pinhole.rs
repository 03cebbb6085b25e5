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
use crate::control::Direction;
use crate::metrics::{Handshake, Metrics, PinholeRefusal, Resumption, Side};
use crate::stream::{ClientStream, HoldIo, MaybeTls};
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
    #[error("cannot open kernel pinhole: {0}")]
    Kernel(String),
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
            PinholeError::Kernel(_) => "kernel",
        }
    }
}

/// How long a data handshake waits for the login of the session whose ticket
/// it offers (see `tls::SessionAcceptors::await_ticket_owner`).
const TICKET_OWNER_WAIT: Duration = Duration::from_secs(5);

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

/// An open pinhole. Dropping it closes the port and cancels its task.
pub struct Pinhole {
    pub local: SocketAddr,
    rx: Option<oneshot::Receiver<Result<ClientStream, PinholeError>>>,
    task: JoinHandle<()>,
    used: Arc<AtomicBool>,
    /// The client's connection has been accepted (its handshake may still run).
    accepted: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// The transfer's direction once its command arrived.
    direction: watch::Sender<Option<Direction>>,
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
    /// Bind a port of the range and, with kernel pinholes, open the kernel
    /// rule for it before returning (the client may connect as soon as it
    /// reads the reply). The pinhole closes its kernel twin itself, when its
    /// task ends or when it is dropped.
    pub async fn open(spec: PinholeSpec) -> Result<Pinhole, PinholeError> {
        let lifetime = spec.lifetime;
        let pinhole = Self::bind(spec)?;
        if let Some((k, ip)) = &pinhole.kernel {
            k.add(*ip, pinhole.local.port(), lifetime)
                .await
                .map_err(PinholeError::Kernel)?;
        }
        Ok(pinhole)
    }

    fn bind(spec: PinholeSpec) -> Result<Pinhole, PinholeError> {
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
        let accepted = Arc::new(AtomicBool::new(false));
        let accepted_in_task = accepted.clone();
        let kernel = spec.kernel.clone();
        let client_ip = spec.client_ip;
        let kernel_closed = Arc::new(AtomicBool::new(false));
        let closed_in_task = kernel_closed.clone();
        let (tx, rx) = oneshot::channel();
        let (direction, direction_rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let res = tokio::time::timeout(
                spec.lifetime,
                accept_one(&listener, &spec, direction_rx, &accepted_in_task),
            )
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
            accepted,
            metrics,
            direction,
            kernel: kernel.map(|k| (k, client_ip)),
            kernel_closed,
        })
    }

    /// True once the client has connected (before or during its TLS handshake).
    pub fn client_connected(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The transfer command arrived: tell the pending handshake its direction.
    pub fn set_direction(&self, direction: Direction) {
        let _ = self.direction.send(Some(direction));
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
    direction: watch::Receiver<Option<Direction>>,
    accepted: &AtomicBool,
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
        accepted.store(true, Ordering::Relaxed);
        crate::net::tune(&tcp);
        return match &spec.tls {
            None => Ok(MaybeTls::Plain(tcp)),
            Some(DataTls {
                acceptors,
                require_reuse,
            }) => {
                // The handshake is answered at once. When the transfer command
                // has not told the direction yet (curl waits for this handshake
                // before sending it), the handshake is a download's (TLS 1.3
                // tickets) and `HoldIo` keeps the tickets back until the
                // transfer knows: a download releases them before its data, an
                // upload after it (see `stream::HoldIo`).
                let armed = Arc::new(AtomicBool::new(false));
                let io = HoldIo::new(tcp, armed.clone());
                let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
                let mut start = hello.await.map_err(PinholeError::Tls)?;
                // A ticket of a session from this address still logging in
                // (rclone opens connections in parallel, one ticket cache):
                // wait for that login before resuming is decided.
                let first = start.io.take_first_bytes();
                acceptors
                    .await_ticket_owner(&first, TICKET_OWNER_WAIT)
                    .await;
                let known = *direction.borrow();
                if known.is_none() {
                    armed.store(true, Ordering::Relaxed);
                }
                tracing::debug!(port, ?known, "data handshake");
                let mut t = match start
                    .into_stream(acceptors.data(known.unwrap_or(Direction::Download)))
                    .await
                {
                    Ok(t) => t,
                    Err(e) => {
                        spec.metrics.tls_handshake(
                            Side::Client,
                            "none",
                            Handshake::Failed,
                            Resumption::Full,
                        );
                        return Err(PinholeError::Tls(e));
                    }
                };
                let conn = t.get_ref().1;
                let resumed = tls::was_resumed(conn.handshake_kind());
                let version = tls::version_name(conn.protocol_version());
                if known.is_some()
                    || conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
                {
                    // Nothing to hold (TLS 1.2 ends its handshake with our own
                    // flight, and a known direction chose its config).
                    t.get_mut().0.release();
                }
                spec.metrics.tls_handshake(
                    Side::Client,
                    version,
                    Handshake::Ok,
                    Resumption::from_resumed(resumed),
                );
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
