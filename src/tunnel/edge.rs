//! The edge (DMZ) end of a tunnel: a QUIC endpoint or (`transport: h2`) a TCP
//! listener that accepts connectors (client certificate required, verified
//! against `tunnels[].tls.client_ca`), keeps the list of connected ones, and
//! opens streams over them on behalf of backend legs: least streams first, the
//! next connector when one is gone. HTTP/2 specifics are in [`super::http2`].
//!
//! It never connects anywhere itself: what a stream reaches is the
//! connector's decision ([`super::proto::decide`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::proto::{self, Answer, Request};
use super::{http2, Meter, StreamIo, TunnelError, TunnelStream};
use crate::config;
use crate::metrics::Metrics;

/// One tunnel (`tunnels[i]`) at run time.
pub struct Edge {
    pub name: Arc<str>,
    listen: SocketAddr,
    server: Server,
    conns: Mutex<Vec<Link>>,
    /// The address actually bound (port 0 resolved), once bound.
    bound: std::sync::OnceLock<SocketAddr>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// How the edge accepts connectors, per transport.
enum Server {
    Quic(quinn::ServerConfig),
    H2(Arc<rustls::ServerConfig>),
}

/// A bound edge socket, per transport ([`Edge::bind`], [`Edge::serve`]).
pub enum Bound {
    /// The UDP endpoint.
    Quic(quinn::Endpoint),
    /// The TCP listener (made a tokio one when served).
    H2(std::net::TcpListener),
}

/// One connected connector (one QUIC or HTTP/2 connection).
#[derive(Clone)]
pub struct Link {
    id: u64,
    conn: Conn,
    peer: SocketAddr,
    /// Streams open over this connection now.
    open: Arc<AtomicUsize>,
}

/// A connector's connection, per transport.
#[derive(Clone)]
enum Conn {
    Quic(quinn::Connection),
    /// Opens streams; `drop_conn` ends the connection (the connector dials
    /// again): after a failed stream open, e.g. when the 2^30 stream ids of
    /// one HTTP/2 connection are used up.
    H2 {
        client: h2::client::SendRequest<bytes::Bytes>,
        drop_conn: Arc<tokio::sync::Notify>,
    },
}

impl Link {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no connector is connected to tunnel {0}")]
    NoConnector(Arc<str>),
    #[error("tunnel connection lost: {0}")]
    Lost(String),
    #[error("connector refused: {0}")]
    Refused(String),
    #[error("connector could not connect: {0}")]
    Unreachable(String),
    #[error("bad answer from connector: {0}")]
    Protocol(String),
}

/// A stream that reached the backend, with the addresses the connector saw.
pub struct Opened {
    pub stream: TunnelStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The connection it went over (data connections follow their control
    /// connection: the backend sees them from the same connector address).
    pub link: Link,
}

impl Edge {
    /// Builds the TLS config for its transport (reads the cert, key and
    /// CA); binds nothing.
    pub fn new(cfg: &config::Tunnel, metrics: Arc<Metrics>) -> Result<Arc<Edge>, TunnelError> {
        let server = match cfg.transport {
            config::Transport::Quic => Server::Quic(super::server_config(&cfg.tls)?),
            config::Transport::H2 => Server::H2(http2::acceptor(&cfg.tls)?),
        };
        metrics.tunnel_connectors(&cfg.name, 0);
        Ok(Arc::new(Edge {
            name: Arc::from(cfg.name.as_str()),
            listen: cfg.listen,
            server,
            conns: Mutex::new(Vec::new()),
            bound: std::sync::OnceLock::new(),
            next_id: AtomicU64::new(0),
            metrics,
        }))
    }

    /// Binds the UDP endpoint (QUIC) or the TCP listener (HTTP/2).
    pub fn bind(&self) -> Result<Bound, TunnelError> {
        let (bound, addr) = match &self.server {
            Server::Quic(server) => {
                let endpoint = super::endpoint(self.listen, Some(server.clone()))?;
                let addr = endpoint.local_addr()?;
                (Bound::Quic(endpoint), addr)
            }
            Server::H2(_) => {
                let listener = http2::bind(self.listen)?;
                let addr = listener.local_addr()?;
                (Bound::H2(listener), addr)
            }
        };
        let _ = self.bound.set(addr);
        Ok(bound)
    }

    /// The address connectors reach, once bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.get().copied()
    }

    /// Accepts connectors until `stop`; then closes the endpoint (every
    /// connection with it).
    pub async fn serve(self: Arc<Self>, bound: Bound, stop: watch::Receiver<bool>) {
        match bound {
            Bound::Quic(endpoint) => self.serve_quic(endpoint, stop).await,
            Bound::H2(listener) => self.serve_h2(listener, stop).await,
        }
    }

    async fn serve_quic(
        self: Arc<Self>,
        endpoint: quinn::Endpoint,
        mut stop: watch::Receiver<bool>,
    ) {
        info!(tunnel = %self.name, addr = ?endpoint.local_addr().ok(), "tunnel edge listening for connectors (QUIC)");
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => i,
                _ = stop.changed() => break,
            };
            let Some(incoming) = incoming else { break };
            let edge = self.clone();
            tokio::spawn(async move { edge.handshake(incoming).await });
        }
        endpoint.close(0u32.into(), b"edge stopping");
        // Until the UDP socket is released (a restart may bind it again).
        endpoint.wait_idle().await;
    }

    async fn serve_h2(
        self: Arc<Self>,
        listener: std::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(tunnel = %self.name, error = %e, "tunnel edge cannot listen");
                return;
            }
        };
        http2::log_listening(&self.name, listener.local_addr().ok());
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => break,
            };
            match accepted {
                Ok((tcp, from)) => {
                    let edge = self.clone();
                    let stop = stop.clone();
                    conns.spawn(async move { edge.handshake_h2(tcp, from, stop).await });
                }
                Err(e) => {
                    // Out of descriptors and the like: do not spin.
                    warn!(tunnel = %self.name, error = %e, "tunnel accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            while conns.try_join_next().is_some() {}
        }
        drop(listener);
        // Every connection ends on `stop` (its task sees it too).
        while conns.join_next().await.is_some() {}
    }

    async fn handshake_h2(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        from: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let Server::H2(acceptor) = &self.server else {
            return;
        };
        let conn = tokio::select! {
            c = http2::edge_handshake(acceptor, tcp) => c,
            _ = stop.changed() => return,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                self.metrics.tunnel_connector_refused(&self.name);
                warn!(tunnel = %self.name, peer = %from, error = %e, "connector refused: tunnel handshake failed (untrusted or missing client certificate?)");
                return;
            }
        };
        let drop_conn = Arc::new(tokio::sync::Notify::new());
        let link = Link {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            conn: Conn::H2 {
                client: conn.client,
                drop_conn: drop_conn.clone(),
            },
            peer: from,
            open: Arc::new(AtomicUsize::new(0)),
        };
        let id = link.id;
        self.connected(link, from, conn.suite);
        let why = tokio::select! {
            why = conn.driver => why,
            _ = drop_conn.notified() => "a stream could not be opened on it".to_string(),
            _ = stop.changed() => "edge stopping".to_string(),
        };
        self.gone(id, from, &why);
    }

    async fn handshake(self: Arc<Self>, incoming: quinn::Incoming) {
        let from = incoming.remote_address();
        let conn = match incoming.await {
            Ok(c) => c,
            Err(e) => {
                self.metrics.tunnel_connector_refused(&self.name);
                warn!(tunnel = %self.name, peer = %from, error = %e, "connector refused: tunnel handshake failed (untrusted or missing client certificate?)");
                return;
            }
        };
        let link = Link {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            conn: Conn::Quic(conn.clone()),
            peer: from,
            open: Arc::new(AtomicUsize::new(0)),
        };
        let id = link.id;
        self.connected(link, from, None);
        let why = conn.closed().await;
        self.gone(id, from, &why.to_string());
    }

    /// Adds a connected connector.
    fn connected(&self, link: Link, from: SocketAddr, suite: Option<&str>) {
        let up = {
            let mut conns = crate::gateway::lock(&self.conns);
            conns.push(link);
            conns.len()
        };
        self.metrics.tunnel_connectors(&self.name, up);
        // The QUIC edge has no suite to report (quinn's TLS is its own).
        let suite = suite.unwrap_or("-");
        info!(tunnel = %self.name, peer = %from, connectors = up, suite, "connector connected");
    }

    /// Removes a connector whose connection ended.
    fn gone(&self, id: u64, from: SocketAddr, why: &str) {
        let up = {
            let mut conns = crate::gateway::lock(&self.conns);
            conns.retain(|l| l.id != id);
            conns.len()
        };
        self.metrics.tunnel_connectors(&self.name, up);
        warn!(tunnel = %self.name, peer = %from, connectors = up, reason = %why, "connector gone");
    }

    /// Connected connectors: (peer address, streams open).
    pub fn connectors(&self) -> Vec<(SocketAddr, usize)> {
        crate::gateway::lock(&self.conns)
            .iter()
            .map(|l| (l.peer(), l.open.load(Ordering::SeqCst)))
            .collect()
    }

    /// Opens a stream for `req` over the connector with the fewest streams;
    /// a connector whose connection fails is skipped for the next.
    pub async fn open(&self, req: &Request, limit: Duration) -> Result<Opened, OpenError> {
        let mut links = crate::gateway::lock(&self.conns).clone();
        links.sort_by_key(|l| l.open.load(Ordering::SeqCst));
        let mut last = OpenError::NoConnector(self.name.clone());
        for link in links {
            match self.open_on(&link, req, limit).await {
                Ok(o) => return Ok(o),
                // Another connector may still be up (or reach the backend).
                Err(e @ (OpenError::Lost(_) | OpenError::Unreachable(_))) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Opens a stream for `req` over this very connection.
    pub async fn open_on(
        &self,
        link: &Link,
        req: &Request,
        limit: Duration,
    ) -> Result<Opened, OpenError> {
        let header = proto::encode_request(req).map_err(|e| OpenError::Protocol(e.to_string()))?;
        let work = async {
            let conn = match &link.conn {
                Conn::Quic(c) => c,
                Conn::H2 { client, drop_conn } => {
                    let meter =
                        Meter::new(self.name.clone(), link.open.clone(), self.metrics.clone());
                    let (send, recv, answer) = http2::open(client, drop_conn, header).await?;
                    return self.opened(link, StreamIo::H2(send, recv), meter, answer);
                }
            };
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| OpenError::Lost(e.to_string()))?;
            let meter = Meter::new(self.name.clone(), link.open.clone(), self.metrics.clone());
            send.write_all(&header)
                .await
                .map_err(|e| OpenError::Lost(e.to_string()))?;
            send.flush()
                .await
                .map_err(|e| OpenError::Lost(e.to_string()))?;
            let answer = read_answer(&mut recv).await?;
            self.opened(link, StreamIo::Quic(send, recv), meter, answer)
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(OpenError::Unreachable(
                "no answer from connector in time".into(),
            )),
        }
    }
}

impl Edge {
    /// The stream of an ok answer, or the error of another.
    fn opened(
        &self,
        link: &Link,
        io: StreamIo,
        meter: Meter,
        answer: Answer,
    ) -> Result<Opened, OpenError> {
        match answer {
            Answer::Ok { peer, local } => Ok(Opened {
                stream: TunnelStream::new(io, meter),
                peer,
                local,
                link: link.clone(),
            }),
            Answer::Refused(why) => Err(OpenError::Refused(why)),
            Answer::Unreachable(why) => Err(OpenError::Unreachable(why)),
        }
    }
}

/// Reads exactly one answer header (nothing after it: relayed bytes follow).
async fn read_answer(recv: &mut quinn::RecvStream) -> Result<Answer, OpenError> {
    let lost = |e: quinn::ReadExactError| OpenError::Lost(e.to_string());
    let mut head = [0u8; 3];
    recv.read_exact(&mut head).await.map_err(lost)?;
    let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
    if len > proto::MAX_TEXT {
        return Err(OpenError::Protocol("answer text too long".into()));
    }
    let mut buf = head.to_vec();
    buf.resize(3 + len, 0);
    recv.read_exact(&mut buf[3..]).await.map_err(lost)?;
    match proto::decode_answer(&buf) {
        Ok(Some((a, _))) => Ok(a),
        Ok(None) => Err(OpenError::Protocol("short answer".into())),
        Err(e) => Err(OpenError::Protocol(e.to_string())),
    }
}
