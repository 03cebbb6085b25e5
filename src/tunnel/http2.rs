//! The HTTP/2 transport of a tunnel (`transport: h2`): one HTTP/2 stream per
//! relayed TCP connection, over mutual TLS 1.3 over one TCP connection.
//!
//! Roles are the reverse of the TCP/TLS ones: the edge opens the streams, so
//! the **edge is the HTTP/2 client** on the connection it accepted and the
//! **connector is the HTTP/2 server** on the connection it dialled. Each
//! stream is `POST /` with a streaming request body (edge → connector) and a
//! streaming response body (connector → edge, always status 200); the first
//! bytes of the request body are the [`proto`] request header, the first bytes
//! of the response body its answer — the same bytes as on a QUIC stream.
//!
//! Mapping of QUIC's behaviour:
//! - windows: [`STREAM_RWND`] per stream, [`CONN_RWND`] per connection (the
//!   same constants as QUIC), receive capacity released as the bytes are
//!   consumed (written to TCP or read by the edge's TLS client), send
//!   capacity reserved and waited for, at most [`SEND_BUF`] buffered per stream;
//! - at most [`MAX_STREAMS`] concurrent streams (the connector's setting);
//! - DATA frames up to [`MAX_FRAME`] (64 KiB) both ways, the tunnel's TLS on
//!   rustls's unbuffered API ([`crate::stream::utls`]: large reads, records
//!   decrypted in place, writes sealed into one buffer), the edge's reads
//!   releasing window once per frame and its TLS records written vectored
//!   (measured in bench/README.md, "Cutting the tunnel's copies");
//! - liveness: a PING every [`KEEP_ALIVE`], the connection dropped when its
//!   PONG takes longer than [`PONG_LIMIT`] (a dead peer is noticed within
//!   [`KEEP_ALIVE`] + [`PONG_LIMIT`] = QUIC's idle timeout);
//! - END_STREAM is QUIC's finish (a TCP half-close on the other side),
//!   RST_STREAM(CANCEL) is QUIC's reset with [`super::CODE_ABORT`] (the other
//!   side resets its TCP connection); any reset received is an abort.
//!
//! What lives here: the halves of a stream ([`H2Send`], [`H2Recv`]), the TCP
//! listener and TLS configs, the edge's handshake and stream opening
//! ([`edge_handshake`], [`open`]) and the connector's session, stream service
//! and relay ([`Connector::session_h2`]). Which connector gets a stream and
//! what it may reach stay in [`super::edge`] and [`super::connector`].

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::Reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::connector::{both_or_abort, Connector, End};
use super::edge::OpenError;
use super::proto::{self, Answer, Request};
use super::{TunnelError, CONN_RWND, IDLE_TIMEOUT, KEEP_ALIVE, MAX_STREAMS, STREAM_RWND};
use crate::stream::utls::{ClientTls, ServerTls};

/// The ALPN protocol of an HTTP/2 tunnel connection.
pub(crate) const ALPN_H2: &[u8] = b"ftpsgate-tunnel-h2/1";
/// Bytes buffered in h2 per stream, waiting for window or the socket.
const SEND_BUF: usize = 1024 * 1024;
/// Largest DATA frame either end accepts (HTTP/2's default is 16 KiB): fewer
/// frames, wake-ups and window releases per byte.
const MAX_FRAME: u32 = 64 * 1024;
/// Largest piece the edge's writes hand to h2 at once.
const WRITE_CHUNK: usize = 256 * 1024;
/// How long a PONG may take before the peer counts as gone.
const PONG_LIMIT: Duration = IDLE_TIMEOUT.saturating_sub(KEEP_ALIVE);
/// TCP connect + TLS + HTTP/2 handshake, either side.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Longest request header (as in the connector's QUIC path).
const MAX_REQUEST: usize = 4 + 2 + 255 + 1 + 16 + 2;
/// Longest answer header.
const MAX_ANSWER: usize = 3 + proto::MAX_TEXT;
/// Backend-to-edge read buffer per stream (as over QUIC).
const RELAY_BUF: usize = 64 * 1024;
/// The request every stream is (the header is in the body).
const URI: &str = "https://ftpsgate-tunnel/";

/// The connector's TLS stream to the edge. Both ends run the tunnel's TLS on
/// rustls's unbuffered API ([`crate::stream::utls`]): records are read in
/// large chunks (up to 256 KiB per `recv`) and decrypted in place, and what
/// h2 writes is sealed straight into the outgoing buffer, two plaintext
/// copies fewer per byte than tokio-rustls.
type TlsClientStream = ClientTls<TcpStream>;

/// `h2::Error` as an I/O error: a reset (the other side aborted) is
/// `ConnectionReset`, so the relayed connection counts as aborted.
fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    if e.is_reset() || e.is_go_away() {
        return io::Error::new(io::ErrorKind::ConnectionReset, e);
    }
    io::Error::other(e)
}

/// The sending half of a stream (request body on the edge, response body on
/// the connector).
pub(crate) struct H2Send {
    body: h2::SendStream<Bytes>,
    /// END_STREAM or RST_STREAM sent.
    done: bool,
}

impl H2Send {
    fn new(body: h2::SendStream<Bytes>) -> H2Send {
        H2Send { body, done: false }
    }

    /// Waits for send capacity (asks for `want` bytes); the bytes assigned.
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.body.reserve_capacity(want);
        loop {
            let cap = self.body.capacity();
            if cap > 0 {
                return Poll::Ready(Ok(cap));
            }
            match ready!(self.body.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(_)) => {}
            }
        }
    }

    /// `AsyncWrite::poll_write`: copies up to the capacity h2 gives.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.done {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let want = buf.len().min(WRITE_CHUNK);
        if want == 0 {
            return Poll::Ready(Ok(0));
        }
        let cap = ready!(self.poll_capacity(cx, want))?;
        let n = cap.min(want);
        self.body
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    /// `AsyncWrite::poll_write_vectored`: the slices (a TLS client's queued
    /// records) copied into one piece, up to the capacity h2 gives: one
    /// `send_data` per batch of records, not one per record.
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.done {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        let want = total.min(WRITE_CHUNK);
        if want == 0 {
            return Poll::Ready(Ok(0));
        }
        let cap = ready!(self.poll_capacity(cx, want))?;
        let n = cap.min(want);
        let mut piece = BytesMut::with_capacity(n);
        for b in bufs {
            let take = b.len().min(n - piece.len());
            piece.extend_from_slice(&b[..take]);
            if piece.len() == n {
                break;
            }
        }
        self.body
            .send_data(piece.freeze(), false)
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    /// Sends `data` as it gets capacity (no copy: pieces of `data`).
    async fn send_all(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let want = data.len();
            let cap = poll_fn(|cx| self.poll_capacity(cx, want)).await?;
            let piece = data.split_to(cap.min(data.len()));
            self.body.send_data(piece, false).map_err(io_error)?;
        }
        Ok(())
    }

    /// END_STREAM (once): the other side half-closes its TCP connection.
    pub(crate) fn finish(&mut self) {
        if !self.done {
            self.done = true;
            let _ = self.body.send_data(Bytes::new(), true);
        }
    }

    /// RST_STREAM(CANCEL): the other side resets its TCP connection.
    pub(crate) fn reset(&mut self) {
        self.done = true;
        self.body.send_reset(Reason::CANCEL);
    }
}

/// The receiving half of a stream: h2's `Bytes` frames, flow-control
/// capacity released as the bytes are consumed.
pub(crate) struct H2Recv {
    body: h2::RecvStream,
    /// Received, not yet consumed (nor released).
    pending: Bytes,
    /// Consumed from the current chunk, not yet released: released when the
    /// chunk is used up (a reader taking 4 KiB at a time, like rustls, gives
    /// the window back once per frame, not once per read).
    unreleased: usize,
}

impl H2Recv {
    fn new(body: h2::RecvStream) -> H2Recv {
        H2Recv {
            body,
            pending: Bytes::new(),
            unreleased: 0,
        }
    }

    /// The next received bytes (not yet released; see [`Self::consumed`]);
    /// `None` at END_STREAM.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Some(Ok(std::mem::take(&mut self.pending))));
        }
        loop {
            match ready!(self.body.poll_data(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(io_error(e)))),
                Some(Ok(b)) if b.is_empty() => {}
                Some(Ok(b)) => return Poll::Ready(Some(Ok(b))),
            }
        }
    }

    /// Gives `n` bytes of window back to the sender.
    fn consumed(&mut self, n: usize) {
        if n > 0 {
            let _ = self.body.flow_control().release_capacity(n);
        }
    }

    /// `AsyncRead::poll_read`.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut chunk = match ready!(self.poll_chunk(cx)) {
            None => return Poll::Ready(Ok(())),
            Some(Err(e)) => return Poll::Ready(Err(e)),
            Some(Ok(c)) => c,
        };
        let n = chunk.len().min(buf.remaining());
        buf.put_slice(&chunk[..n]);
        chunk.advance(n);
        self.pending = chunk;
        self.unreleased += n;
        if self.pending.is_empty() {
            let n = std::mem::take(&mut self.unreleased);
            self.consumed(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads one header of at most `max` bytes with `decode`; the bytes after
    /// it stay for the relay.
    async fn header<T>(
        &mut self,
        max: usize,
        decode: impl Fn(&[u8]) -> proto::Decoded<T>,
    ) -> Result<T, String> {
        let mut buf = BytesMut::new();
        loop {
            let chunk = match poll_fn(|cx| self.poll_chunk(cx)).await {
                None => return Err("stream ended before its header".into()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(c)) => c,
            };
            let before = buf.len();
            buf.extend_from_slice(&chunk);
            match decode(&buf).map_err(|e| e.to_string())? {
                Some((h, used)) => {
                    let used_here = used.saturating_sub(before).min(chunk.len());
                    self.pending = chunk.slice(used_here..);
                    self.consumed(used_here);
                    return Ok(h);
                }
                None if buf.len() >= max => return Err("header too long".into()),
                None => self.consumed(chunk.len()),
            }
        }
    }
}

/// Closes the connection when the peer stops answering PINGs: resolves with
/// the reason once it does (never while it answers).
async fn keepalive(mut pp: Option<h2::PingPong>) -> String {
    let Some(pp) = pp.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEP_ALIVE).await;
        match tokio::time::timeout(PONG_LIMIT, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("PING failed: {e}"),
            Err(_) => return format!("no PING answer within {PONG_LIMIT:?}"),
        }
    }
}

// ---- the edge (HTTP/2 client) -------------------------------------------------

/// The edge's TCP listener on `addr` (address reuse on: a restarted edge binds
/// again while old connections linger in TIME_WAIT).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The edge's TLS config: [`super::server_tls`] with [`ALPN_H2`].
pub(crate) fn acceptor(
    t: &crate::config::TunnelServerTls,
) -> Result<Arc<rustls::ServerConfig>, TunnelError> {
    let mut cfg = super::server_tls(t, ALPN_H2)?;
    // Records sealed by `stream::utls` itself after the handshake.
    cfg.enable_secret_extraction = true;
    Ok(Arc::new(cfg))
}

/// An accepted connector's connection, ready for streams.
pub(crate) struct EdgeConn {
    /// Opens streams.
    pub(crate) client: h2::client::SendRequest<Bytes>,
    /// Drives the connection; resolves with the reason it ended.
    pub(crate) driver: std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>,
    /// The tunnel TLS cipher suite (logged: it is one of the AEAD passes a
    /// tunnel byte costs, bench/dmz.sh prices it).
    pub(crate) suite: Option<&'static str>,
}

/// TLS (client certificate verified) and the HTTP/2 client handshake on an
/// accepted TCP connection.
pub(crate) async fn edge_handshake(
    acceptor: &Arc<rustls::ServerConfig>,
    tcp: TcpStream,
) -> Result<EdgeConn, String> {
    let work = async {
        crate::net::tune(&tcp);
        let tls = ServerTls::accept_with(acceptor.clone(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let suite = tls
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str());
        let (client, mut conn) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_RWND)
            .initial_connection_window_size(CONN_RWND)
            .initial_max_send_streams(MAX_STREAMS as usize)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(SEND_BUF)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| e.to_string())?;
        let pp = conn.ping_pong();
        let driver = Box::pin(async move {
            tokio::select! {
                r = conn => match r {
                    Ok(()) => "connection closed".to_string(),
                    Err(e) => e.to_string(),
                },
                why = keepalive(pp) => why,
            }
        });
        Ok(EdgeConn {
            client,
            driver,
            suite,
        })
    };
    match tokio::time::timeout(HANDSHAKE_LIMIT, work).await {
        Ok(r) => r,
        Err(_) => Err("handshake timed out".into()),
    }
}

/// Opens one stream: sends `header` and reads the answer. When no stream can
/// be created on the connection (it is gone, or its stream ids are used up),
/// `drop_conn` is notified: the edge drops it and the connector dials again.
pub(crate) async fn open(
    client: &h2::client::SendRequest<Bytes>,
    drop_conn: &tokio::sync::Notify,
    header: Vec<u8>,
) -> Result<(H2Send, H2Recv, Answer), OpenError> {
    let lost = |e: h2::Error| OpenError::Lost(e.to_string());
    let unusable = |e: h2::Error| {
        drop_conn.notify_one();
        OpenError::Lost(e.to_string())
    };
    let mut client = client.clone().ready().await.map_err(unusable)?;
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(URI)
        .body(())
        .map_err(|e| OpenError::Protocol(e.to_string()))?;
    let (resp, body) = client.send_request(req, false).map_err(unusable)?;
    let mut send = H2Send::new(body);
    // Tiny: sent without waiting for capacity (h2 buffers it).
    send.body
        .send_data(Bytes::from(header), false)
        .map_err(lost)?;
    let resp = resp.await.map_err(lost)?;
    if resp.status() != http::StatusCode::OK {
        return Err(OpenError::Protocol(format!("status {}", resp.status())));
    }
    let mut recv = H2Recv::new(resp.into_body());
    let answer = recv
        .header(MAX_ANSWER, proto::decode_answer)
        .await
        .map_err(OpenError::Protocol)?;
    Ok((send, recv, answer))
}

// ---- the connector (HTTP/2 server) ----------------------------------------------

/// The connector's TLS config: [`super::client_tls`] with [`ALPN_H2`].
pub(crate) fn tls_connector(
    t: &crate::config::TunnelClientTls,
) -> Result<Arc<rustls::ClientConfig>, TunnelError> {
    let mut cfg = super::client_tls(t, ALPN_H2)?;
    // Records sealed by `stream::utls` itself after the handshake.
    cfg.enable_secret_extraction = true;
    Ok(Arc::new(cfg))
}

impl Connector {
    /// One HTTP/2 connection: dial, then serve streams until it closes
    /// (`Some`) or `stop` turns true (`None`).
    pub(super) async fn session_h2(
        self: Arc<Self>,
        tls: &Arc<rustls::ClientConfig>,
        mut stop: watch::Receiver<bool>,
    ) -> Option<Result<String, String>> {
        let dial = self.clone().dial_h2(tls);
        let mut conn = tokio::select! {
            c = dial => match c {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            },
            _ = stop.changed() => return None,
        };
        let alive = keepalive(conn.ping_pong());
        tokio::pin!(alive);
        loop {
            tokio::select! {
                s = conn.accept() => match s {
                    Some(Ok((req, respond))) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.serve_h2(req, respond).await });
                    }
                    Some(Err(e)) => return Some(Ok(e.to_string())),
                    None => return Some(Ok("closed by the edge".into())),
                },
                why = &mut alive => return Some(Ok(why)),
                _ = stop.changed() => {
                    // Dropping the connection closes it (and every stream).
                    return None;
                }
            }
        }
    }

    /// TCP connect, TLS (the edge verified) and the HTTP/2 server handshake
    /// (which reads the edge's preface: an edge that refused our certificate
    /// fails here, not later).
    async fn dial_h2(
        self: Arc<Self>,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<h2::server::Connection<TlsClientStream, Bytes>, String> {
        let (host, port) = self.edge();
        let work = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.label()))?;
            crate::net::tune(&tcp);
            let addr = tcp.peer_addr().map_err(|e| e.to_string())?;
            let name = rustls::pki_types::ServerName::try_from(self.server_name().to_string())
                .map_err(|e| e.to_string())?;
            let stream = ClientTls::connect(tls.clone(), name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let conn = h2::server::Builder::new()
                .initial_window_size(STREAM_RWND)
                .initial_connection_window_size(CONN_RWND)
                .max_concurrent_streams(MAX_STREAMS)
                .max_frame_size(MAX_FRAME)
                .max_send_buffer_size(SEND_BUF)
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((conn, addr))
        };
        let r = match tokio::time::timeout(HANDSHAKE_LIMIT, work).await {
            Ok(r) => r,
            Err(_) => Err("handshake timed out".into()),
        };
        match r {
            Ok((conn, addr)) => {
                self.connected(addr);
                Ok(conn)
            }
            Err(e) => {
                self.dial_failed();
                Err(e)
            }
        }
    }

    /// Serves one stream: read the request, decide, connect, answer, relay.
    async fn serve_h2(
        &self,
        req: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) {
        let mut recv = H2Recv::new(req.into_body());
        let header = recv.header(MAX_REQUEST, proto::decode_request);
        let req: Request = match tokio::time::timeout(super::connector::REQUEST_LIMIT, header).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(edge = %self.label(), error = %e, "bad tunnel request");
                respond.send_reset(Reason::PROTOCOL_ERROR);
                return;
            }
            Err(_) => {
                let e = "no request header in time";
                warn!(edge = %self.label(), error = %e, "bad tunnel request");
                respond.send_reset(Reason::CANCEL);
                return;
            }
        };
        let reached = self.reach(&req).await;
        let Ok(body) = respond.send_response(http::Response::new(()), false) else {
            return;
        };
        let mut send = H2Send::new(body);
        let (tcp, answer) = match reached {
            Ok(r) => r,
            Err(answer) => {
                let _ = send
                    .send_all(Bytes::from(proto::encode_answer(&answer)))
                    .await;
                send.finish();
                return;
            }
        };
        if send
            .send_all(Bytes::from(proto::encode_answer(&answer)))
            .await
            .is_err()
        {
            return;
        }
        debug!(edge = %self.label(), request = ?req, "relaying (h2)");
        relay(tcp, send, recv).await;
    }
}

/// Relays between the backend TCP connection and the stream until both
/// directions end, as the QUIC relay: a reset from the edge resets the TCP
/// connection, a TCP error resets the stream.
async fn relay(mut tcp: TcpStream, mut send: H2Send, mut recv: H2Recv) {
    let aborted = {
        let (mut rd, mut wr) = tcp.split();
        let up = async {
            loop {
                // h2's received frame: no copy before the TCP write; its window
                // goes back once written.
                match poll_fn(|cx| recv.poll_chunk(cx)).await {
                    Some(Ok(chunk)) => {
                        if wr.write_all(&chunk).await.is_err() {
                            return End::Abort;
                        }
                        recv.consumed(chunk.len());
                    }
                    None => {
                        let _ = wr.shutdown().await;
                        return End::Eof;
                    }
                    Some(Err(_)) => return End::Abort,
                }
            }
        };
        let down = async {
            let mut buf = BytesMut::new();
            loop {
                if buf.capacity() < RELAY_BUF / 4 {
                    buf = BytesMut::with_capacity(RELAY_BUF);
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        send.finish();
                        return End::Eof;
                    }
                    Ok(_) => {
                        if send.send_all(buf.split().freeze()).await.is_err() {
                            // The edge reset the stream: nothing more to do.
                            return End::Eof;
                        }
                    }
                    Err(_) => return End::Abort,
                }
            }
        };
        both_or_abort(up, down).await
    };
    if aborted {
        send.reset();
        crate::net::abort(&tcp);
    }
    // Otherwise both directions ended: h2 still sends what it buffered.
}

/// Logs the edge listening (one place for both roles' wording).
pub(crate) fn log_listening(tunnel: &str, addr: Option<SocketAddr>) {
    info!(tunnel = %tunnel, addr = ?addr, "tunnel edge listening for connectors (HTTP/2 over TLS/TCP)");
}
