//! A pinhole: a listener on one port of the passive range, picked at random
//! among the free ones, opened for one transfer. It accepts exactly one
//! connection, only from the control client's IP, finishes the TLS
//! handshake at once (clients such as curl start it before sending `RETR`)
//! and, when the policy requires it, only if the handshake resumed this
//! session's TLS session. Anything else — another address (RFC 2577 port
//! stealing), a same-address neighbour (carrier NAT, shared host) whose
//! handshake fails, does not resume, or stays silent past
//! [`HANDSHAKE_TIMEOUT`] — is dropped, counted and logged while the pinhole
//! keeps listening: handshakes run side by side, the first good one wins, so
//! a stranger that came first cannot take or stall the transfer. Unused, it
//! closes after its deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::PortRange;
use crate::control::Direction;
use crate::metrics::{Handshake, Metrics, PinholeRefusal, Resumption, Side};
use crate::stream::{utls, ClientDataStream, HoldIo, MaybeTls};
use crate::tls::{self, SessionAcceptors};

#[derive(Debug, thiserror::Error)]
pub(crate) enum PinholeError {
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
    pub(crate) fn kind(&self) -> &'static str {
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
pub(crate) struct PinholeSpec {
    pub bind_ip: IpAddr,
    pub ports: PortRange,
    /// The control connection's peer IP: the only address allowed in.
    pub client_ip: IpAddr,
    /// Some for `PROT P`: the session's acceptor, and whether resumption is required.
    pub tls: Option<DataTls>,
    pub lifetime: Duration,
    pub metrics: Arc<Metrics>,
    /// The listener whose passive range this is (`ftpsgate_passive_ports_in_use`).
    pub listener: String,
    /// Kernel pinholes: the element to delete when this pinhole is done.
    pub kernel: Option<Arc<super::nft::KernelPinholes>>,
    /// Released with the pinhole: the port counted against its client's share.
    pub share: Option<crate::shared::PortGuard>,
}

/// TLS on a client data connection (`PROT P`).
#[derive(Clone)]
pub(crate) struct DataTls {
    pub acceptors: SessionAcceptors,
    /// Refuse handshakes that do not resume the control session.
    pub require_reuse: bool,
}

/// An open pinhole. Dropping it closes the port and cancels its task.
pub(crate) struct Pinhole {
    pub local: SocketAddr,
    rx: Option<oneshot::Receiver<Result<ClientDataStream, PinholeError>>>,
    task: JoinHandle<()>,
    used: Arc<AtomicBool>,
    /// The client's ClientHello has arrived (its handshake may still run).
    accepted: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// The transfer's direction once its command arrived.
    direction: watch::Sender<Option<Direction>>,
    /// Kernel pinhole to close if this one is dropped before its task ends
    /// (replaced by a new PASV, session over), with the client it was for.
    kernel: Option<(Arc<super::nft::KernelPinholes>, IpAddr)>,
    /// Set by the task once it has closed the kernel pinhole itself.
    kernel_closed: Arc<AtomicBool>,
    /// The client's share of the range, given back when the pinhole goes.
    _share: Option<crate::shared::PortGuard>,
}

impl Drop for Pinhole {
    fn drop(&mut self) {
        self.task.abort();
        self.metrics
            .pinhole_closed(self.used.load(Ordering::Relaxed));
        if let Some((k, ip)) = self.kernel.take() {
            if !self.kernel_closed.load(Ordering::SeqCst) {
                // One netlink round trip (microseconds): done right here, so
                // it also happens while the runtime shuts down.
                k.remove(ip, self.local.port());
            }
        }
    }
}

/// A same-address connection must have completed its TLS handshake by then.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes run side by side at most; more connections wait in the backlog.
const MAX_CANDIDATES: usize = 8;
/// Random picks before the range is walked from a random offset.
const RANDOM_TRIES: usize = 8;

impl Pinhole {
    /// Bind a port of the range and, with kernel pinholes, open the kernel
    /// rule for it before returning (the client may connect as soon as it
    /// reads the reply). The pinhole closes its kernel twin itself, when its
    /// task ends or when it is dropped.
    pub(crate) async fn open(spec: PinholeSpec) -> Result<Pinhole, PinholeError> {
        let lifetime = spec.lifetime;
        let pinhole = Self::bind(spec)?;
        if let Some((k, ip)) = &pinhole.kernel {
            k.add(*ip, pinhole.local.port(), lifetime)
                .map_err(PinholeError::Kernel)?;
        }
        Ok(pinhole)
    }

    fn bind(mut spec: PinholeSpec) -> Result<Pinhole, PinholeError> {
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
        let share = spec.share.take();
        let metrics = spec.metrics.clone();
        metrics.pinhole_opened();
        // Counted while the port is bound: until the task drops the socket,
        // or the task is aborted (the pinhole dropped).
        let held = metrics.passive_port_held(&spec.listener);
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
            let res = accept_one(&listener, &spec, direction_rx, accepted_in_task).await;
            if res.is_ok() {
                used_in_task.store(true, Ordering::Relaxed);
            }
            drop(listener);
            drop(held);
            if let Some(k) = &spec.kernel {
                k.remove(spec.client_ip, local.port());
                closed_in_task.store(true, Ordering::SeqCst);
            }
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
            _share: share,
        })
    }

    /// True once the client's TLS handshake has begun (its ClientHello came):
    /// the handshake then finishes without waiting for the transfer command.
    /// Plain connections and clients that handshake only after the `150`
    /// (Go) stay false.
    pub(crate) fn client_connected(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The transfer command arrived: tell the pending handshake its direction.
    pub(crate) fn set_direction(&self, direction: Direction) {
        let _ = self.direction.send(Some(direction));
    }

    /// Wait for the client's data connection (already TLS-accepted if `PROT P`).
    pub(crate) async fn connection(&mut self) -> Result<ClientDataStream, PinholeError> {
        match self.rx.take() {
            Some(rx) => rx.await.unwrap_or(Err(PinholeError::Closed)),
            None => Err(PinholeError::Closed),
        }
    }
}

/// A free port of `range`, chosen at random (a sequential choice would tell
/// an observer which port the next client gets): a few random picks, then
/// the whole range from a random offset, so a nearly full range still finds
/// its last free port.
fn bind_in_range(ip: IpAddr, range: PortRange) -> Result<TcpListener, PinholeError> {
    let len = range.len().max(1);
    let random_offsets = (0..RANDOM_TRIES).map(|_| random_below(len));
    let start = random_below(len);
    let walk = (0..len).map(|i| (start + i) % len);
    for offset in random_offsets.chain(walk) {
        let Ok(port) = u16::try_from(usize::from(range.first) + offset) else {
            continue;
        };
        if let Some(l) = try_bind(ip, port)? {
            return Ok(l);
        }
    }
    Err(PinholeError::Exhausted(range))
}

fn try_bind(ip: IpAddr, port: u16) -> Result<Option<TcpListener>, PinholeError> {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(PinholeError::Bind)?;
    // Lets a port whose previous transfer left TIME_WAIT entries be reused.
    let _ = socket.set_reuseaddr(true);
    if socket.bind(SocketAddr::new(ip, port)).is_err() {
        return Ok(None);
    }
    Ok(socket.listen(8).ok())
}

/// A uniformly random number below `n` (n ≥ 1) from the system CSPRNG.
fn random_below(n: usize) -> usize {
    use ring::rand::SecureRandom;
    static RNG: std::sync::OnceLock<ring::rand::SystemRandom> = std::sync::OnceLock::new();
    let mut b = [0u8; 8];
    // On failure (no entropy source) the walk still finds a port, from 0.
    let _ = RNG.get_or_init(ring::rand::SystemRandom::new).fill(&mut b);
    // Modulo bias over 2^64 is negligible for port ranges.
    (u64::from_le_bytes(b) % n.max(1) as u64) as usize
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Accept the client's data connection before the pinhole's deadline.
/// Foreign addresses are dropped at once; same-address connections each get
/// a handshake of their own (bounded by [`HANDSHAKE_TIMEOUT`]), side by side,
/// and the first that passes wins. With clear data (no TLS) there is nothing
/// to tell a neighbour from the client: the first same-address connection
/// wins, which is why `allow_clear_data` defaults to false.
async fn accept_one(
    listener: &TcpListener,
    spec: &PinholeSpec,
    direction: watch::Receiver<Option<Direction>>,
    hello_seen: Arc<AtomicBool>,
) -> Result<ClientDataStream, PinholeError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let deadline = tokio::time::sleep(spec.lifetime);
    tokio::pin!(deadline);
    let mut candidates: JoinSet<(SocketAddr, Result<ClientDataStream, Refused>)> = JoinSet::new();
    // What the client is told if nobody good came: the last refusal, or expiry.
    let mut last: Option<PinholeError> = None;
    loop {
        tokio::select! {
            r = listener.accept(), if candidates.len() < MAX_CANDIDATES => {
                let (tcp, peer) = r.map_err(PinholeError::Bind)?;
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
                let Some(tls) = spec.tls.clone() else {
                    return Ok(MaybeTls::Plain(tcp));
                };
                let metrics = spec.metrics.clone();
                let direction = direction.clone();
                let hello_seen = hello_seen.clone();
                candidates.spawn(async move {
                    let r = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        handshake(tcp, port, peer, tls, direction, &metrics, &hello_seen),
                    )
                    .await
                    .unwrap_or(Err(Refused::Silent));
                    (peer, r)
                });
            }
            Some(joined) = candidates.join_next(), if !candidates.is_empty() => {
                let Ok((peer, r)) = joined else { continue };
                let refused = match r {
                    Ok(stream) => return Ok(stream),
                    Err(refused) => refused,
                };
                let (reason, metric, error) = match refused {
                    Refused::Tls(e) => ("handshake_failed", PinholeRefusal::Handshake, PinholeError::Tls(e)),
                    Refused::NoReuse => ("no_reuse", PinholeRefusal::NoReuse, PinholeError::ReuseRequired),
                    Refused::Silent => (
                        "silent",
                        PinholeRefusal::Silent,
                        PinholeError::Tls(io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time")),
                    ),
                    Refused::ClientCert(why) => (
                        "client_cert",
                        PinholeRefusal::Handshake,
                        PinholeError::Tls(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!("client certificate refused: {}", why.as_str()),
                        )),
                    ),
                };
                tracing::warn!(
                    port,
                    peer = %peer,
                    reason,
                    error = %error,
                    "dropped data connection from the client's address; pinhole keeps listening"
                );
                spec.metrics.pinhole_refused(metric);
                last = Some(error);
            }
            _ = &mut deadline => {
                return Err(match last {
                    Some(e) => e,
                    None => {
                        tracing::info!(port, "pinhole expired unused");
                        PinholeError::Expired(spec.lifetime)
                    }
                });
            }
        }
    }
}

/// Why a same-address data connection was not taken.
enum Refused {
    Tls(io::Error),
    NoReuse,
    Silent,
    /// Not the control connection's client certificate (`tls.client_auth`).
    ClientCert(crate::metrics::ClientCertRefusal),
}

/// The data TLS handshake of one same-address connection.
async fn handshake(
    tcp: tokio::net::TcpStream,
    port: u16,
    peer: SocketAddr,
    tls: DataTls,
    direction: watch::Receiver<Option<Direction>>,
    metrics: &Metrics,
    hello_seen: &AtomicBool,
) -> Result<ClientDataStream, Refused> {
    let DataTls {
        acceptors,
        require_reuse,
    } = tls;
    // The handshake is answered at once. When the transfer command has not
    // told the direction yet (curl waits for this handshake before sending
    // it), the handshake is a download's (TLS 1.3 tickets) and `HoldIo` keeps
    // the tickets back until the transfer has the connection and releases
    // them, whatever the direction (see `stream::HoldIo`).
    let armed = Arc::new(AtomicBool::new(false));
    let io = HoldIo::new(tcp, armed.clone());
    let start = match utls::accept(io).await {
        Ok(s) => s,
        Err(e) => {
            metrics.tls_handshake(Side::Client, "none", Handshake::Failed, Resumption::Full);
            return Err(Refused::Tls(e));
        }
    };
    hello_seen.store(true, Ordering::Relaxed);
    // A ticket of a session from this address still logging in (rclone opens
    // connections in parallel, one ticket cache): wait for that login before
    // resuming is decided.
    acceptors
        .await_ticket_owner(start.client_hello(), TICKET_OWNER_WAIT)
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
            metrics.tls_handshake(Side::Client, "none", Handshake::Failed, Resumption::Full);
            tls::client_auth::note_failed_handshake(&e, "data", metrics);
            return Err(Refused::Tls(e));
        }
    };
    let conn = t.get_ref().1;
    let resumed = tls::was_resumed(conn.handshake_kind());
    let version = tls::version_name(conn.protocol_version());
    if known.is_some() || conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        // Nothing to hold (TLS 1.2 ends its handshake with our own flight,
        // and a known direction chose its config).
        t.get_mut().0.release();
    }
    metrics.tls_handshake(
        Side::Client,
        version,
        Handshake::Ok,
        Resumption::from_resumed(resumed),
    );
    if require_reuse && !resumed {
        tracing::debug!(port, client = %peer, "data TLS session not resumed");
        return Err(Refused::NoReuse);
    }
    if let Err(reason) = acceptors.check_data_cert(t.get_ref().1.peer_certificates(), metrics) {
        return Err(Refused::ClientCert(reason));
    }
    Ok(MaybeTls::Tls(Box::new(t)))
}
