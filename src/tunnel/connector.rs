//! The connector (inside) end of a tunnel: dials the edge (`connect[i]`), keeps
//! the connection up — reconnecting with capped exponential backoff and
//! jitter — and serves the streams the edge opens: each is one TCP
//! connection to one of *its own* backends, decided by [`proto::decide`];
//! anything else is answered "refused", logged and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::proto::{self, Allowed, Answer, Request};
use super::TunnelError;
use crate::config::{self, ConnectBackend, Transport};
use crate::metrics::Metrics;

/// First wait after a failed or lost connection.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a TCP connect to a backend may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// How long the edge may take to send a stream's request header.
pub(super) const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// Backend-to-edge read buffer per stream (a connector may carry thousands);
/// the edge-to-backend direction writes quinn's own received chunks.
const RELAY_BUF: usize = 64 * 1024;
/// Longest request header (magic, kind, name, data address).
const MAX_REQUEST: usize = 4 + 2 + 255 + 1 + 16 + 2;

/// The wait before attempt `failures + 1`: doubling from [`BACKOFF_MIN`],
/// capped at [`BACKOFF_MAX`], then reduced by up to half by `jitter` (0..1)
/// so connectors restarted together do not hammer the edge in step. Pure.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.min(16));
    let capped = exp.min(BACKOFF_MAX);
    capped.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

/// A jitter value in 0..1 from the clock (no cryptographic quality needed).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// One `connect[i]` at run time.
pub struct Connector {
    cfg: config::Connect,
    client: Client,
    /// The `edge` metric label: as configured.
    label: Arc<str>,
    metrics: Arc<Metrics>,
}

/// How a connector dials, per transport.
enum Client {
    Quic(quinn::ClientConfig),
    H2(Arc<rustls::ClientConfig>),
}

impl Connector {
    /// Builds the TLS config for its transport (reads the cert, key and CA).
    pub fn new(cfg: &config::Connect, metrics: Arc<Metrics>) -> Result<Connector, TunnelError> {
        let client = match cfg.transport {
            Transport::Quic => Client::Quic(super::client_config(&cfg.tls)?),
            Transport::H2 => Client::H2(super::http2::tls_connector(&cfg.tls)?),
        };
        let label = Arc::from(display(&cfg.edge_host, cfg.edge_port).as_str());
        Ok(Connector {
            cfg: cfg.clone(),
            client,
            label,
            metrics,
        })
    }

    /// Dials and serves until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let mut failures = 0u32;
        loop {
            let started = tokio::time::Instant::now();
            let session = match &me.client {
                Client::Quic(c) => me.clone().session(c, stop.clone()).await,
                Client::H2(c) => me.clone().session_h2(c, stop.clone()).await,
            };
            let result = match session {
                Some(r) => r,
                None => return,
            };
            me.metrics.tunnel_edge_up(&me.label, false);
            match result {
                Ok(why) => {
                    warn!(edge = %me.label, reason = %why, "tunnel to edge lost; reconnecting")
                }
                Err(e) => warn!(edge = %me.label, error = %e, "cannot connect to edge"),
            }
            // A connection that lasted resets the backoff.
            if started.elapsed() > BACKOFF_MAX {
                failures = 0;
            }
            let wait = backoff(failures, jitter());
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One connection: dial, then serve streams until it closes (`Some`) or
    /// `stop` turns true (`None`: the connection is closed, which ends every
    /// stream on it at once).
    async fn session(
        self: Arc<Self>,
        client: &quinn::ClientConfig,
        mut stop: watch::Receiver<bool>,
    ) -> Option<Result<String, String>> {
        let dial = self.clone().dial(client);
        let conn = tokio::select! {
            c = dial => match c {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            },
            _ = stop.changed() => return None,
        };
        loop {
            tokio::select! {
                s = conn.accept_bi() => match s {
                    Ok((send, recv)) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.serve(send, recv).await });
                    }
                    Err(e) => return Some(Ok(e.to_string())),
                },
                _ = stop.changed() => {
                    conn.close(0u32.into(), b"connector stopping");
                    return None;
                }
            }
        }
    }

    /// Resolves the edge and completes the QUIC + mutual TLS handshake.
    async fn dial(
        self: Arc<Self>,
        client: &quinn::ClientConfig,
    ) -> Result<quinn::Connection, String> {
        let addr = tokio::net::lookup_host((self.cfg.edge_host.as_str(), self.cfg.edge_port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.label))?
            .next()
            .ok_or_else(|| format!("{} resolves to nothing", self.label))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = super::endpoint(bind, None).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(client.clone());
        let connecting = endpoint
            .connect(addr, &self.cfg.server_name)
            .map_err(|e| e.to_string())?;
        let conn = match connecting.await {
            Ok(c) => c,
            Err(e) => {
                self.dial_failed();
                return Err(e.to_string());
            }
        };
        self.connected(addr);
        Ok(conn)
    }

    /// The edge's host and port, as configured.
    pub(super) fn edge(&self) -> (&str, u16) {
        (&self.cfg.edge_host, self.cfg.edge_port)
    }

    /// The name the edge's certificate must carry.
    pub(super) fn server_name(&self) -> &str {
        &self.cfg.server_name
    }

    /// The edge as logged and labelled in metrics.
    pub(super) fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// Records a completed handshake with the edge at `addr`.
    pub(super) fn connected(&self, addr: SocketAddr) {
        self.metrics.tunnel_connect(&self.label, true);
        self.metrics.tunnel_edge_up(&self.label, true);
        info!(edge = %self.label, addr = %addr, transport = %self.cfg.transport, "connected to edge");
    }

    /// Records a failed handshake.
    pub(super) fn dial_failed(&self) {
        self.metrics.tunnel_connect(&self.label, false);
    }

    /// Decides `req` and connects: the TCP connection and the ok answer, or
    /// the answer to send instead (refused: logged and counted; unreachable).
    pub(super) async fn reach(&self, req: &Request) -> Result<(TcpStream, Answer), Answer> {
        let resolved = resolve(&self.cfg.backends, req.backend()).await;
        let allowed: Vec<Allowed<'_>> = self
            .cfg
            .backends
            .iter()
            .map(|b| Allowed {
                name: &b.name,
                resolved: if b.name == req.backend() {
                    &resolved
                } else {
                    &[]
                },
            })
            .collect();
        let targets = match proto::decide(req, &allowed) {
            Ok(t) => t,
            Err(refusal) => {
                self.metrics.tunnel_request_refused(&self.label, refusal);
                warn!(
                    edge = %self.label,
                    request = ?req,
                    reason = refusal.as_str(),
                    "refused an edge request for an address that is not one of this connector's backends"
                );
                return Err(Answer::Refused(format!(
                    "{} ({})",
                    req.backend(),
                    refusal.as_str()
                )));
            }
        };
        let tcp = match connect_any(&targets).await {
            Ok(t) => t,
            Err(why) => {
                debug!(edge = %self.label, request = ?req, error = %why, "backend unreachable");
                return Err(Answer::Unreachable(why));
            }
        };
        crate::net::tune(&tcp);
        match (tcp.peer_addr(), tcp.local_addr()) {
            (Ok(peer), Ok(local)) => Ok((tcp, Answer::Ok { peer, local })),
            _ => Err(Answer::Unreachable("connection lost at once".into())),
        }
    }

    /// Serves one stream: read the request, decide, connect, answer, relay.
    async fn serve(&self, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let req = match tokio::time::timeout(REQUEST_LIMIT, read_request(&mut recv)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(edge = %self.label, error = %e, "bad tunnel request");
                let _ = send.reset(super::CODE_ABORT.into());
                return;
            }
            Err(_) => {
                let e = "no request header in time";
                warn!(edge = %self.label, error = %e, "bad tunnel request");
                let _ = send.reset(super::CODE_ABORT.into());
                return;
            }
        };
        let (tcp, answer) = match self.reach(&req).await {
            Ok(r) => r,
            Err(answer) => {
                let _ = send.write_all(&proto::encode_answer(&answer)).await;
                let _ = send.finish();
                return;
            }
        };
        if send
            .write_all(&proto::encode_answer(&answer))
            .await
            .is_err()
        {
            return;
        }
        relay(tcp, send, recv).await;
    }
}

/// `host:port`, bracketing an IPv6 literal.
fn display(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The addresses of the backend named `name` (empty when unknown or when it
/// does not resolve: the decision then refuses).
async fn resolve(backends: &[ConnectBackend], name: &str) -> Vec<SocketAddr> {
    let Some(b) = backends.iter().find(|b| b.name == name) else {
        return Vec::new();
    };
    match tokio::net::lookup_host((b.host.as_str(), b.port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            warn!(backend = %b.name, error = %e, "cannot resolve backend");
            Vec::new()
        }
    }
}

async fn connect_any(targets: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("no address");
    for t in targets {
        match tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(t)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = format!("{t}: {e}"),
            Err(_) => last = format!("{t}: timed out"),
        }
    }
    Err(last)
}

/// Reads the request header byte-exactly (the edge sends nothing after it
/// before our answer).
async fn read_request(recv: &mut quinn::RecvStream) -> Result<Request, String> {
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    loop {
        if let Some((r, _)) = proto::decode_request(&buf).map_err(|e| e.to_string())? {
            return Ok(r);
        }
        if buf.len() >= MAX_REQUEST {
            return Err("request header too long".into());
        }
        recv.read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        buf.push(byte[0]);
    }
}

/// Most received chunks written to a backend in one `writev`.
const GATHER: usize = 32;

/// Writes every byte of `chunks` to `wr`, vectored (as few `writev`s as the
/// socket allows); the chunks are consumed (left empty, their buffers
/// released).
async fn write_all_chunks<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    chunks: &mut [Bytes],
) -> std::io::Result<()> {
    let mut i = 0;
    loop {
        while i < chunks.len() && chunks[i].is_empty() {
            chunks[i] = Bytes::new();
            i += 1;
        }
        if i == chunks.len() {
            return Ok(());
        }
        let mut slices = [std::io::IoSlice::new(&[]); GATHER];
        let mut k = 0;
        for c in chunks[i..].iter().filter(|c| !c.is_empty()).take(GATHER) {
            slices[k] = std::io::IoSlice::new(c);
            k += 1;
        }
        let mut n = wr.write_vectored(&slices[..k]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && i < chunks.len() {
            let take = n.min(chunks[i].len());
            chunks[i].advance(take);
            n -= take;
            if chunks[i].is_empty() {
                // Not kept: an empty `Bytes` still holds its buffer.
                chunks[i] = Bytes::new();
                i += 1;
            }
        }
    }
}

/// How one direction of a connector relay (QUIC or HTTP/2) ended.
pub(super) enum End {
    /// Clean end of stream (FIN / finish / END_STREAM).
    Eof,
    /// The other side aborted: reset ours too.
    Abort,
}

/// Runs both directions of a relay until both end cleanly (`false`) or one
/// aborts (`true`, at once: the caller resets both sides).
pub(super) async fn both_or_abort(
    up: impl std::future::Future<Output = End>,
    down: impl std::future::Future<Output = End>,
) -> bool {
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            e = &mut up, if !up_done => {
                if matches!(e, End::Abort) { return true; }
                up_done = true;
            }
            e = &mut down, if !down_done => {
                if matches!(e, End::Abort) { return true; }
                down_done = true;
            }
        }
        if up_done && down_done {
            return false;
        }
    }
}

/// Relays between the backend TCP connection and the stream until both
/// directions end. A reset stream from the edge resets the TCP connection
/// (an aborted upload stays visibly incomplete to the backend); a TCP error
/// from the backend resets the stream.
async fn relay(mut tcp: TcpStream, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let aborted = {
        let (mut rd, mut wr) = tcp.split();
        let up = async {
            let mut chunks: [Bytes; GATHER] = Default::default();
            loop {
                // Every chunk quinn holds (one per received STREAM frame, a
                // packet's worth): no copy, one `writev` for all of them
                // rather than one `send` per packet.
                match recv.read_chunks(&mut chunks).await {
                    Ok(Some(n)) => {
                        if write_all_chunks(&mut wr, &mut chunks[..n]).await.is_err() {
                            let _ = recv.stop(super::CODE_ABORT.into());
                            return End::Abort;
                        }
                    }
                    Ok(None) => {
                        let _ = wr.shutdown().await;
                        return End::Eof;
                    }
                    Err(_) => return End::Abort,
                }
            }
        };
        let down = async {
            let mut buf = BytesMut::new();
            loop {
                // Read straight into a buffer that quinn's send buffer takes
                // over (`write_chunk`: no copy); a new allocation only when
                // the rest of the last one is too small.
                if buf.capacity() < RELAY_BUF / 4 {
                    buf = BytesMut::with_capacity(RELAY_BUF);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        let _ = send.finish();
                        return End::Eof;
                    }
                    Ok(_) => {
                        if send.write_chunk(buf.split().freeze()).await.is_err() {
                            // The edge stopped reading: nothing more to do.
                            return End::Eof;
                        }
                    }
                    Err(_) => {
                        let _ = send.reset(super::CODE_ABORT.into());
                        return End::Abort;
                    }
                }
            }
        };
        both_or_abort(up, down).await
    };
    if aborted {
        crate::net::abort(&tcp);
    } else {
        // Wait until the edge has every byte (dropping earlier may lose the tail).
        let _ = send.stopped().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most 5 bytes per write (partial writes), not vectored.
    struct Trickle(Vec<u8>);

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn write_all_chunks_writes_every_byte_in_order_through_partial_writes() {
        let mut chunks = [
            Bytes::from_static(b"abcdefg"),
            Bytes::new(),
            Bytes::from_static(b"hi"),
            Bytes::from_static(b"jklmnopqrstuvwxyz"),
        ];
        let mut w = Trickle(Vec::new());
        write_all_chunks(&mut w, &mut chunks).await.unwrap();
        assert_eq!(w.0, b"abcdefghijklmnopqrstuvwxyz");
        assert!(chunks.iter().all(|c| c.is_empty()));
        // More chunks than one writev takes.
        let mut many: Vec<Bytes> = (0..3 * GATHER as u8)
            .map(|i| Bytes::from(vec![i; 3]))
            .collect();
        let mut v = Vec::new();
        write_all_chunks(&mut v, &mut many).await.unwrap();
        let want: Vec<u8> = (0..3 * GATHER as u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(v, want);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_down() {
        assert_eq!(backoff(0, 0.0), BACKOFF_MIN);
        assert_eq!(backoff(1, 0.0), BACKOFF_MIN * 2);
        assert_eq!(backoff(3, 0.0), BACKOFF_MIN * 8);
        assert_eq!(backoff(30, 0.0), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_MAX);
        assert_eq!(backoff(30, 1.0), BACKOFF_MAX / 2);
        assert!(backoff(2, 0.5) < backoff(2, 0.0));
        // Out-of-range jitter is clamped.
        assert_eq!(backoff(0, 7.0), BACKOFF_MIN / 2);
    }
}
