//! DMZ mode: the inside dials out. An **edge** (in the DMZ, `tunnels:`) accepts
//! connections from **connectors** (inside, `connect:`), authenticated both
//! ways by certificate (mutual TLS 1.3): QUIC (`transport: quic`, the default)
//! or HTTP/2 over TLS over TCP (`transport: h2`). For a backend with `via`, the
//! edge opens one stream per backend TCP connection (control or data) over a
//! connector's connection; the connector connects to that backend — only to the
//! backends it was given, data only to their IPs on ports ≥ 1024 — and relays.
//! The edge's FTPS client to the backend (TLS, session reuse) runs end to end
//! inside the stream; the connector sees only ciphertext.
//!
//! - [`proto`]: the request/answer header of a stream and the connector's
//!   "may I connect there?" decision — pure, no I/O, both transports;
//! - [`edge`]: the edge's endpoint (QUIC endpoint or TCP listener), its
//!   connected connectors, opening streams (least streams first, failing over);
//! - [`connector`]: dialling the edge with capped exponential backoff and
//!   jitter, the decision and backend connect ([`connector::Connector::reach`],
//!   both transports), serving QUIC streams;
//! - [`http2`]: everything HTTP/2 — stream halves, the edge's handshake and
//!   stream opening, the connector's HTTP/2 session, stream service and relay;
//! - this file: the QUIC/TLS configs, the constants both transports share
//!   (windows, stream count, keep-alive) and [`TunnelStream`], the edge's end of
//!   a stream as one byte stream (the backend leg's transport beside TCP).
//!
//! Multiplexing, per-stream flow control and framing are QUIC's (`quinn`) or
//! HTTP/2's (`h2`); the only bytes of our own are the header in [`proto`].
//! Nothing here touches sessions, policy or files: the edge keeps nothing at
//! rest.

pub(crate) mod connector;
pub(crate) mod edge;
pub(crate) mod http2;
pub mod proto;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::{Metrics, TunnelDirection};
use crate::tls::{self, load_certs, load_key, TlsError};

/// The ALPN protocol of a tunnel connection.
pub(crate) const ALPN: &[u8] = b"ftpsgate-tunnel/1";
/// QUIC application error code: stream reset because the relayed TCP
/// connection was aborted (the other end resets its TCP connection too).
pub(crate) const CODE_ABORT: u32 = 1;
/// How long an idle tunnel connection lives without keep-alives answered.
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// Keep-alive interval (well under [`IDLE_TIMEOUT`] and NAT UDP timeouts).
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// UDP socket send and receive buffer size asked for (see [`endpoint`]).
const UDP_BUF: usize = 8 * 1024 * 1024;
/// Per-stream receive window: one fast transfer over a LAN/DMZ round trip
/// (4 MiB at 2 ms is 2 GiB/s).
const STREAM_RWND: u32 = 4 * 1024 * 1024;
/// Per-connection receive window. A slow reader (a client downloading at
/// modem speed) leaves up to [`STREAM_RWND`] unread in our buffers; with a
/// connection window below streams × stream window (it was 64 MiB: 16 slow
/// streams), slow streams use it up and every other stream of the connection
/// stalls. 256 full stream windows: memory stays bounded by the streams
/// actually open, one slow download cannot starve a fast one.
const CONN_RWND: u32 = 256 * STREAM_RWND;
/// Bytes written but not yet acknowledged, all streams of a connection.
const SEND_WINDOW: u64 = 64 * 1024 * 1024;
/// Concurrent streams a connector accepts per connection.
const MAX_STREAMS: u32 = 4096;

/// Errors setting up a tunnel endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The certificate, key or CA cannot be used.
    #[error("tunnel TLS: {0}")]
    Tls(#[from] TlsError),
    /// quinn refused the configuration.
    #[error("tunnel QUIC setup: {0}")]
    Quic(String),
    /// The UDP socket failed.
    #[error("tunnel endpoint: {0}")]
    Io(#[from] io::Error),
}

/// A UDP endpoint bound to `addr`, its socket buffers sized for bulk transfer.
pub(crate) fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // The kernel's default UDP buffers (~208 KiB) overflow at a few hundred
    // MiB/s: every drop is a lost packet to QUIC (a congestion event, and
    // enough of them trip MTU black-hole detection). Capped by
    // net.core.rmem_max / wmem_max.
    let want = UDP_BUF;
    let _ = socket.set_recv_buffer_size(want);
    let _ = socket.set_send_buffer_size(want);
    // Linux reports twice what it grants (the doubling covers its own
    // bookkeeping, socket(7)), so the usable size is half the reading.
    let got = socket.recv_buffer_size().unwrap_or(0) / 2;
    if got < want {
        tracing::info!(
            wanted = want,
            got,
            "tunnel UDP receive buffer smaller than wanted: raise net.core.rmem_max for fewer drops at high rates"
        );
    }
    socket.bind(&addr.into())?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Bounded by the constant above: always a valid VarInt/idle timeout.
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_concurrent_bidi_streams(MAX_STREAMS.into());
    t.max_concurrent_uni_streams(0u32.into());
    // MTU: quinn's defaults (start at 1200, DPLPMTUD up to 1452). A higher
    // upper bound is safe on any path per quinn-proto's docs, but measured on
    // loopback (bench/README.md, DMZ) it bought nothing: the few drops of
    // big datagrams tripped black-hole detection and left the path at 1200.
    t.stream_receive_window(STREAM_RWND.into());
    t.receive_window(CONN_RWND.into());
    t.send_window(SEND_WINDOW);
    Arc::new(t)
}

fn roots(ca: &std::path::Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// The edge's rustls config: its certificate, client certificates required
/// and verified against `client_ca`, TLS 1.3 only, ALPN `alpn`.
pub(crate) fn server_tls(
    t: &crate::config::TunnelServerTls,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, TunnelError> {
    let provider = tls::provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&t.client_ca)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Other(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::from)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&t.cert)?, load_key(&t.key)?)
        .map_err(TlsError::from)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// The connector's rustls config: the edge verified against `ca`, our client
/// certificate presented, TLS 1.3 only, ALPN `alpn`.
pub(crate) fn client_tls(
    t: &crate::config::TunnelClientTls,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TunnelError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::from)?
        .with_root_certificates(roots(&t.ca)?)
        .with_client_auth_cert(load_certs(&t.cert)?, load_key(&t.key)?)
        .map_err(TlsError::from)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// The edge's QUIC server config ([`server_tls`] with the QUIC transport).
pub(crate) fn server_config(
    t: &crate::config::TunnelServerTls,
) -> Result<quinn::ServerConfig, TunnelError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls(t, ALPN)?)
        .map_err(|e| TunnelError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport());
    Ok(server)
}

/// The connector's QUIC client config ([`client_tls`] with the QUIC transport).
pub(crate) fn client_config(
    t: &crate::config::TunnelClientTls,
) -> Result<quinn::ClientConfig, TunnelError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(t, ALPN)?)
        .map_err(|e| TunnelError::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport());
    Ok(client)
}

/// The edge's end of one tunnel stream: one backend TCP connection.
///
/// Closing: shutting down (or dropping) finishes the stream, and the
/// connector half-closes its TCP connection (a FIN to the backend). After
/// [`TunnelStream::arm_abort`] a drop resets the stream instead, and the
/// connector resets its TCP connection — what `net::abort` is for TCP (an
/// incomplete upload must not read as complete to the backend).
pub struct TunnelStream {
    io: StreamIo,
    abort: AtomicBool,
    /// Counts this stream as open while it lives; records bytes.
    meter: Meter,
}

/// The two halves of a stream, per transport.
pub(crate) enum StreamIo {
    /// A QUIC bidirectional stream.
    Quic(quinn::SendStream, quinn::RecvStream),
    /// An HTTP/2 stream: the request body out, the response body in.
    H2(http2::H2Send, http2::H2Recv),
}

/// Streams open and bytes of one tunnel (metrics and least-streams choice).
pub(crate) struct Meter {
    pub(crate) tunnel: Arc<str>,
    pub(crate) open: Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) metrics: Arc<Metrics>,
    /// `ftpsgate_tunnel_bytes_total` in and out, looked up once per stream.
    bytes_in: prometheus_client::metrics::counter::Counter,
    bytes_out: prometheus_client::metrics::counter::Counter,
}

impl Meter {
    pub(crate) fn new(
        tunnel: Arc<str>,
        open: Arc<std::sync::atomic::AtomicUsize>,
        metrics: Arc<Metrics>,
    ) -> Meter {
        open.fetch_add(1, Ordering::SeqCst);
        metrics.tunnel_stream_opened(&tunnel);
        let bytes_in = metrics.tunnel_bytes_counter(&tunnel, TunnelDirection::In);
        let bytes_out = metrics.tunnel_bytes_counter(&tunnel, TunnelDirection::Out);
        Meter {
            tunnel,
            open,
            metrics,
            bytes_in,
            bytes_out,
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.metrics.tunnel_stream_closed(&self.tunnel);
    }
}

impl TunnelStream {
    pub(crate) fn new(io: StreamIo, meter: Meter) -> Self {
        TunnelStream {
            io,
            abort: AtomicBool::new(false),
            meter,
        }
    }

    /// From now on a drop resets the stream (see the type's doc).
    pub fn arm_abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Undo [`Self::arm_abort`] (the upload completed).
    pub fn disarm_abort(&self) {
        self.abort.store(false, Ordering::SeqCst);
    }

    /// Whether the next stream is to be aborted (test hook).
    pub fn abort_armed(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        let abort = self.abort_armed();
        match &mut self.io {
            StreamIo::Quic(send, recv) => {
                if abort {
                    let _ = send.reset(CODE_ABORT.into());
                    let _ = recv.stop(CODE_ABORT.into());
                }
                // Otherwise quinn finishes the send side on drop.
            }
            StreamIo::H2(send, _) => {
                if abort {
                    send.reset();
                } else {
                    // Like quinn: a drop finishes (h2 would reset).
                    send.finish();
                }
            }
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.io {
            StreamIo::Quic(_, recv) => AsyncRead::poll_read(Pin::new(recv), cx, buf),
            StreamIo::H2(_, recv) => recv.poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        if n > 0 {
            this.meter.bytes_in.inc_by(n as u64);
        }
        r
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            StreamIo::Quic(send, _) => AsyncWrite::poll_write(Pin::new(send), cx, buf),
            StreamIo::H2(send, _) => send.poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = r {
            this.meter.bytes_out.inc_by(n as u64);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            StreamIo::Quic(send, _) => AsyncWrite::poll_write_vectored(Pin::new(send), cx, bufs),
            StreamIo::H2(send, _) => send.poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = r {
            this.meter.bytes_out.inc_by(n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self.io, StreamIo::H2(..))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            StreamIo::Quic(send, _) => AsyncWrite::poll_flush(Pin::new(send), cx),
            // h2's connection task writes (and flushes) what was sent.
            StreamIo::H2(..) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            StreamIo::Quic(send, _) => AsyncWrite::poll_shutdown(Pin::new(send), cx),
            StreamIo::H2(send, _) => {
                send.finish();
                Poll::Ready(Ok(()))
            }
        }
    }
}
