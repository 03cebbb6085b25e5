//! A TCP stream that is either clear or wrapped in TLS, for both legs and both
//! channels (control and data). Explicit FTPS upgrades a clear control stream
//! in place (`AUTH TLS`), so the session holds this enum rather than a type
//! fixed at accept time. Control connections' TLS is tokio-rustls
//! ([`ClientStream`], [`BackendStream`]); data connections' is [`utls`], on
//! rustls's unbuffered API ([`ClientDataStream`], [`BackendDataStream`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::backend::io::BackendIo;

mod backend;
mod hold;
pub(crate) mod utls;

pub(crate) use backend::{BackendDataTls, BackendTlsStream};
pub(crate) use hold::HoldIo;

/// Client-side (gateway is the TLS server) stream.
pub(crate) type ClientStream = MaybeTls<tokio_rustls::server::TlsStream<HoldIo>>;
/// Backend-side (gateway is the TLS client) stream, over TCP or a tunnel.
pub(crate) type BackendStream = MaybeTls<BackendTlsStream, BackendIo>;
/// Client-side data connection: TLS on rustls's unbuffered API (see
/// [`utls`]); control connections keep [`ClientStream`].
pub(crate) type ClientDataStream = MaybeTls<utls::ServerTls<HoldIo>>;
/// Backend-side data connection, over TCP or a tunnel (see [`utls`]).
pub(crate) type BackendDataStream = MaybeTls<BackendDataTls, BackendIo>;

/// `P`: the plain transport (TCP, or for backends `BackendIo`).
pub enum MaybeTls<T, P = TcpStream> {
    Plain(P),
    Tls(Box<T>),
}

impl<T, P> MaybeTls<T, P> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl ClientDataStream {
    /// Let held TLS 1.3 tickets go out (see [`HoldIo`]); no-op otherwise.
    pub fn release_held(&mut self) {
        if let MaybeTls::Tls(t) = self {
            t.get_mut().0.release();
        }
    }
}

impl crate::data::relay::Leg for ClientDataStream {
    fn records(&mut self) -> Option<&mut dyn utls::Records> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(t) => t.records(),
        }
    }
}

impl crate::data::relay::Leg for BackendDataStream {
    fn records(&mut self) -> Option<&mut dyn utls::Records> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(t) => t.records(),
        }
    }
}

impl BackendDataStream {
    /// The transport under TLS (if any).
    pub fn io(&self) -> &BackendIo {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(t) => t.get_ref().0,
        }
    }
}

impl<T: AsyncRead + Unpin, P: AsyncRead + Unpin> AsyncRead for MaybeTls<T, P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin, P: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T, P> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}
