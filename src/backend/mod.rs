//! The backend leg: connect to the legacy FTP server as plain FTP, explicit
//! FTPS (`AUTH TLS`) or implicit FTPS, read its greeting, set up data
//! protection, and open data connections to the port it announces.
//!
//! Data connections always go to the backend control peer's IP, never to the
//! address printed in a `227` reply: misconfigured servers behind NAT print
//! wrong ones, and following a printed address would let a backend steer the
//! gateway anywhere (RFC 2577 bounce, in reverse).
//!
//! A backend with `via` (DMZ mode) is reached through a tunnel instead: the
//! control connection is a stream "control to backend NAME" over a connector,
//! and its data connections are streams "data to that backend's IP, port P"
//! over the same connector connection; TLS and FTP run inside unchanged
//! ([`io::BackendIo`]).

pub(crate) mod io;
pub(crate) mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::net::TcpStream;

use crate::channel::{Channel, ReplyReadError};
use crate::config::{self, DataProtection, TlsMode};
use crate::control::Reply;
use crate::metrics::{BackendErrorKind, Handshake, Metrics, Resumption, Side};
use crate::stream::utls::ClientTls;
use crate::stream::{BackendDataStream, BackendDataTls, BackendStream, BackendTlsStream, MaybeTls};
use crate::tls::{self, BackendTls, SessionConnector};
use crate::tunnel::edge::{Edge, Link, OpenError, Opened};
use crate::tunnel::proto::Request;
use io::BackendIo;

/// A configured backend with its TLS built (shared by all sessions).
pub struct Backend {
    pub cfg: config::Backend,
    pub tls: Option<BackendTls>,
    pub metrics: Arc<Metrics>,
    /// Sessions currently using this backend (least-connections balancing).
    pub active: std::sync::atomic::AtomicUsize,
    /// The tunnel of `cfg.via`, set when the gateway starts its tunnels;
    /// unset with `via`: every connect fails (no connector).
    pub tunnel: std::sync::OnceLock<Arc<Edge>>,
}

impl Backend {
    pub fn new(cfg: config::Backend, metrics: Arc<Metrics>) -> Result<Self, tls::TlsError> {
        let tls = match cfg.tls.mode {
            TlsMode::None => None,
            TlsMode::Explicit | TlsMode::Implicit => {
                let (m, name) = (metrics.clone(), cfg.name.clone());
                let on_leaf: tls::OnLeaf = Arc::new(move |t| m.backend_certificate_seen(&name, t));
                Some(BackendTls::from_config_observed(&cfg.tls, Some(on_leaf))?)
            }
        };
        Ok(Backend {
            cfg,
            tls,
            metrics,
            active: std::sync::atomic::AtomicUsize::new(0),
            tunnel: std::sync::OnceLock::new(),
        })
    }
}

/// Errors on the backend leg; each maps to a `421` toward the client, whose
/// text says what went wrong (backend's fault, not the client's).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot resolve backend {0}")]
    Resolve(String),
    #[error("cannot connect to backend {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("backend {0} did not answer in time")]
    Timeout(String),
    #[error("TLS handshake with backend failed: {0}")]
    Tls(std::io::Error),
    #[error("backend refused: {0}")]
    Refused(String),
    #[error("backend control channel: {0}")]
    Channel(#[from] ReplyReadError),
    #[error("backend I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend through tunnel: {0}")]
    Tunnel(#[from] OpenError),
}

impl BackendError {
    /// Closed set for metrics labels.
    pub fn kind(&self) -> BackendErrorKind {
        match self {
            BackendError::Resolve(_) => BackendErrorKind::Resolve,
            BackendError::Connect { .. } => BackendErrorKind::Connect,
            BackendError::Timeout(_) => BackendErrorKind::Timeout,
            BackendError::Tls(_) => BackendErrorKind::Tls,
            BackendError::Refused(_) => BackendErrorKind::Refused,
            BackendError::Channel(ReplyReadError::Closed) => BackendErrorKind::Closed,
            BackendError::Channel(ReplyReadError::Timeout(_)) => BackendErrorKind::Timeout,
            BackendError::Channel(_) => BackendErrorKind::Protocol,
            BackendError::Io(_) => BackendErrorKind::Closed,
            BackendError::Tunnel(OpenError::Refused(_)) => BackendErrorKind::Refused,
            BackendError::Tunnel(_) => BackendErrorKind::Connect,
        }
    }
}

/// The backend control connection of one session.
pub struct BackendSession {
    pub chan: Channel<BackendStream>,
    pub peer: SocketAddr,
    /// Our end of the backend control connection: the address an active-mode
    /// backend is told to connect to.
    pub local: SocketAddr,
    pub data: DataTarget,
    pub tls_version: &'static str,
    pub connect_latency: Duration,
}

/// Everything needed to open a data connection to this session's backend;
/// cheap to clone into a transfer task.
#[derive(Clone)]
pub struct DataTarget {
    pub ip: std::net::IpAddr,
    /// The backend's configured name (metric label, logs).
    pub backend: Arc<str>,
    pub metrics: Arc<Metrics>,
    /// Some when data connections are TLS (`PROT P` toward the backend).
    pub tls: Option<SessionConnector>,
    /// Some for a backend reached through a tunnel: data connections go over
    /// the connector connection that carries the control connection.
    pub via: Option<(Arc<Edge>, Link)>,
}

impl DataTarget {
    pub async fn connect(
        &self,
        port: u16,
        limit: Duration,
    ) -> Result<BackendDataStream, BackendError> {
        let addr = SocketAddr::new(self.ip, port);
        if let Some((edge, link)) = &self.via {
            let req = Request::Data {
                backend: self.backend.to_string(),
                addr,
            };
            let opened = edge.open_on(link, &req, limit).await?;
            let io = BackendIo::Tunnel(Box::new(opened.stream));
            return self.secure(io, addr, limit).await;
        }
        let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(BackendError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => return Err(BackendError::Timeout(addr.to_string())),
        };
        crate::net::tune(&tcp);
        self.secure(BackendIo::Tcp(tcp), addr, limit).await
    }

    /// Listen for an active-mode backend (we send it `PORT`/`EPRT`), on an
    /// ephemeral port of `local_ip` (our side of the backend control connection).
    pub fn listen(&self, local_ip: std::net::IpAddr) -> Result<BackendListener, BackendError> {
        if self.via.is_some() {
            // `check` refuses `data_mode: active` with `via`.
            return Err(BackendError::Refused(
                "active mode toward a backend is not available through a tunnel".into(),
            ));
        }
        let std_listener = std::net::TcpListener::bind(SocketAddr::new(local_ip, 0))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let local = listener.local_addr()?;
        Ok(BackendListener { listener, local })
    }

    /// Accept the backend's data connection on `l`: only from the backend's
    /// own IP (anyone else is dropped and logged), then TLS as configured.
    pub async fn accept(
        &self,
        l: BackendListener,
        limit: Duration,
    ) -> Result<BackendDataStream, BackendError> {
        let addr = l.local.to_string();
        let accept = async {
            loop {
                let (tcp, peer) = l.listener.accept().await?;
                if peer.ip().to_canonical() == self.ip.to_canonical() {
                    return Ok::<_, std::io::Error>(tcp);
                }
                tracing::warn!(intruder = %peer, reason = "stealing", "refused backend data connection from foreign address");
            }
        };
        let tcp = match tokio::time::timeout(limit, accept).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(BackendError::Io(e)),
            Err(_) => return Err(BackendError::Timeout(addr)),
        };
        drop(l);
        crate::net::tune(&tcp);
        self.secure(BackendIo::Tcp(tcp), addr, limit).await
    }

    async fn secure(
        &self,
        tcp: BackendIo,
        addr: impl ToString,
        limit: Duration,
    ) -> Result<BackendDataStream, BackendError> {
        match &self.tls {
            None => Ok(MaybeTls::Plain(tcp)),
            Some(c) => {
                // Data connections run on rustls's unbuffered API, which
                // reads the transport in large chunks itself (`stream::utls`).
                let hs =
                    ClientTls::connect(c.connector.config().clone(), c.server_name.clone(), tcp);
                match tokio::time::timeout(limit, hs).await {
                    Ok(Ok(t)) => {
                        let conn = t.get_ref().1;
                        let version = tls::version_name(conn.protocol_version());
                        let resumed = tls::was_resumed(conn.handshake_kind());
                        self.metrics.tls_handshake(
                            Side::Backend,
                            version,
                            Handshake::Ok,
                            Resumption::from_resumed(resumed),
                        );
                        if !resumed {
                            self.not_resumed(c, version, &addr.to_string());
                        }
                        Ok(MaybeTls::Tls(Box::new(BackendDataTls::new(t))))
                    }
                    Ok(Err(e)) => {
                        self.metrics.tls_handshake(
                            Side::Backend,
                            "none",
                            Handshake::Failed,
                            Resumption::Full,
                        );
                        Err(BackendError::Tls(e))
                    }
                    Err(_) => Err(BackendError::Timeout(addr.to_string())),
                }
            }
        }
    }
}

impl DataTarget {
    /// A data handshake that did not resume the backend control session:
    /// strict servers (vsftpd `require_ssl_reuse`, ProFTPD mod_tls) refuse the
    /// connection. Counted and logged with the server's name unless the server
    /// never offered resumption at all (it then does not require it).
    fn not_resumed(&self, c: &SessionConnector, version: &'static str, addr: &str) {
        let why = c.store.why_not_resumed(version);
        if why.is_failure() {
            self.metrics.backend_tls_resumption_failed(&self.backend);
            tracing::warn!(
                backend = %self.backend,
                addr,
                version,
                reason = why.as_str(),
                tickets_left = c.store.tickets(),
                "backend data TLS handshake did not resume the control session; a server that requires reuse refuses it"
            );
        } else {
            tracing::debug!(
                backend = %self.backend,
                version,
                reason = why.as_str(),
                "backend data TLS handshake is a full one (the backend offers no resumption)"
            );
        }
    }
}

/// A one-shot listener for an active-mode backend data connection.
pub struct BackendListener {
    listener: tokio::net::TcpListener,
    pub local: SocketAddr,
}

/// Connect, read the greeting and set up TLS as configured. Returns the
/// session and the backend's greeting. `client` is (real client address,
/// gateway address it reached) for the PROXY header of a backend with
/// `send_proxy`; `None` for the gateway's own connections (health checks).
pub(crate) async fn connect(
    backend: &Backend,
    limit: Duration,
    client: Option<(SocketAddr, SocketAddr)>,
) -> Result<(BackendSession, Reply), BackendError> {
    let started = Instant::now();
    let res = match tokio::time::timeout(limit, connect_inner(backend, limit, client)).await {
        Ok(Ok((mut s, greeting))) => {
            s.connect_latency = started.elapsed();
            backend
                .metrics
                .backend_connected(&backend.cfg.name, s.connect_latency.as_secs_f64());
            Ok((s, greeting))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BackendError::Timeout(display_addr(&backend.cfg))),
    };
    if let Err(e) = &res {
        // Health checks (no client) count their failures apart.
        if client.is_some() {
            backend.metrics.backend_error(&backend.cfg.name, e.kind());
        }
        if matches!(e, BackendError::Tls(_)) {
            backend.metrics.tls_handshake(
                Side::Backend,
                "none",
                Handshake::Failed,
                Resumption::Full,
            );
        }
    }
    res
}

async fn connect_inner(
    backend: &Backend,
    limit: Duration,
    client: Option<(SocketAddr, SocketAddr)>,
) -> Result<(BackendSession, Reply), BackendError> {
    let mut session_tls = backend.tls.as_ref().map(|t| t.session_connector());
    loop {
        match connect_once(backend, limit, client, session_tls.clone()).await {
            Err(BackendError::Tls(e)) if tls::is_version_refusal(&e) => {
                // Only a TLS 1.2-only offer is retried (see `BackendTls`).
                let retry = match (&backend.tls, &session_tls) {
                    (Some(t), Some(c)) => t.fallback_connector(c),
                    _ => None,
                };
                let Some(retry) = retry else {
                    return Err(BackendError::Tls(e));
                };
                tracing::info!(
                    backend = %backend.cfg.name,
                    error = %e,
                    "backend refused TLS 1.2; using TLS 1.3 for this backend from now on"
                );
                session_tls = Some(retry);
            }
            other => return other,
        }
    }
}

/// One attempt: TCP, PROXY header, greeting, TLS (explicit or implicit) with
/// `session_tls`, PBSZ/PROT.
async fn connect_once(
    backend: &Backend,
    limit: Duration,
    client: Option<(SocketAddr, SocketAddr)>,
    session_tls: Option<SessionConnector>,
) -> Result<(BackendSession, Reply), BackendError> {
    let cfg = &backend.cfg;
    let (mut io, peer, local, via) = match &cfg.via {
        Some(_) => {
            let edge = backend.tunnel.get().ok_or_else(|| {
                BackendError::Resolve(format!("tunnel {:?} not started", cfg.via))
            })?;
            let req = Request::Control {
                backend: cfg.name.clone(),
            };
            let Opened {
                stream,
                peer,
                local,
                link,
            } = edge.open(&req, limit).await?;
            let via = Some((edge.clone(), link));
            (BackendIo::Tunnel(Box::new(stream)), peer, local, via)
        }
        None => {
            let (tcp, peer, local) = connect_tcp(cfg).await?;
            (BackendIo::Tcp(tcp), peer, local, None)
        }
    };
    if let Some(version) = cfg.send_proxy {
        // First bytes on the connection, before TLS and the greeting.
        let header = crate::proxy::header(version, client);
        tokio::io::AsyncWriteExt::write_all(&mut io, &header).await?;
    }

    let stream = match (cfg.tls.mode, &session_tls) {
        (TlsMode::Implicit, Some(c)) => MaybeTls::Tls(Box::new(BackendTlsStream::control(
            c.connector
                .connect(c.server_name.clone(), io)
                .await
                .map_err(BackendError::Tls)?,
        ))),
        _ => MaybeTls::Plain(io),
    };
    let mut chan = Channel::new(stream);
    let greeting = read_final(&mut chan, limit).await?;
    if greeting.code != 220 {
        return Err(BackendError::Refused(greeting.text()));
    }

    if let (TlsMode::Explicit, Some(c)) = (cfg.tls.mode, &session_tls) {
        chan.send_line(b"AUTH TLS").await?;
        let r = read_final(&mut chan, limit).await?;
        if r.code != 234 {
            return Err(BackendError::Refused(format!("AUTH TLS: {}", r.text())));
        }
        let MaybeTls::Plain(tcp) = chan.into_stream() else {
            return Err(BackendError::Refused("already TLS".into()));
        };
        let t = c
            .connector
            .connect(c.server_name.clone(), tcp)
            .await
            .map_err(BackendError::Tls)?;
        chan = Channel::new(MaybeTls::Tls(Box::new(BackendTlsStream::control(t))));
    }

    let mut tls_version = "none";
    let mut data_tls = None;
    if let (Some(c), MaybeTls::Tls(t)) = (&session_tls, &chan.stream) {
        tls_version = tls::version_name(t.get_ref().1.protocol_version());
        backend
            .metrics
            .tls_handshake(Side::Backend, tls_version, Handshake::Ok, Resumption::Full);
        // RFC 4217 §9: PBSZ 0 must precede PROT.
        chan.send_line(b"PBSZ 0").await?;
        let r = read_final(&mut chan, limit).await?;
        if !r.is_success() {
            return Err(BackendError::Refused(format!("PBSZ: {}", r.text())));
        }
        let private = cfg.tls.data_protection == DataProtection::Private;
        chan.send_line(if private { b"PROT P" } else { b"PROT C" })
            .await?;
        let r = read_final(&mut chan, limit).await?;
        if !r.is_success() {
            return Err(BackendError::Refused(format!("PROT: {}", r.text())));
        }
        if private {
            data_tls = Some(c.clone());
        }
    }
    Ok((
        BackendSession {
            chan,
            peer,
            local,
            data: DataTarget {
                ip: peer.ip(),
                backend: Arc::from(cfg.name.as_str()),
                metrics: backend.metrics.clone(),
                tls: data_tls,
                via,
            },
            tls_version,
            connect_latency: Duration::ZERO,
        },
        greeting,
    ))
}

/// The gateway's own TCP connection to the backend's address (the first of
/// its resolved addresses that accepts): the stream, its peer and our end.
async fn connect_tcp(
    cfg: &config::Backend,
) -> Result<(TcpStream, SocketAddr, SocketAddr), BackendError> {
    let target = display_addr(cfg);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|_| BackendError::Resolve(target.clone()))?
        .collect();
    let mut last_err = None;
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let tcp = match tcp {
        Some(t) => t,
        None => {
            return Err(match last_err {
                Some(source) => BackendError::Connect {
                    addr: target,
                    source,
                },
                None => BackendError::Resolve(target),
            })
        }
    };
    crate::net::tune(&tcp);
    let peer = tcp.peer_addr()?;
    let local = tcp.local_addr()?;
    Ok((tcp, peer, local))
}

/// Read replies until a final (non-1xx) one, e.g. `120` then `220`.
async fn read_final(
    chan: &mut Channel<BackendStream>,
    limit: Duration,
) -> Result<Reply, BackendError> {
    loop {
        let r = chan.read_reply_timeout(limit).await?;
        if r.is_final() {
            return Ok(r);
        }
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn display_addr(cfg: &config::Backend) -> String {
    if cfg.host.contains(':') {
        format!("[{}]:{}", cfg.host, cfg.port)
    } else {
        format!("{}:{}", cfg.host, cfg.port)
    }
}
