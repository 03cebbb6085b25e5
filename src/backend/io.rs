//! The transport under a backend connection: a TCP connection the gateway
//! opened itself, or a tunnel stream (DMZ mode, `backends[].via`) that a
//! connector connected on our behalf. TLS and FTP run over either alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tunnel::TunnelStream;

pub enum BackendIo {
    Tcp(TcpStream),
    Tunnel(Box<TunnelStream>),
}

impl BackendIo {
    /// The next close is an abort the backend cannot mistake for a complete
    /// upload (TCP: a reset, `net::abort`; tunnel: a stream reset, which the
    /// connector turns into a TCP reset).
    pub fn arm_abort(&self) {
        match self {
            BackendIo::Tcp(t) => crate::net::abort(t),
            BackendIo::Tunnel(t) => t.arm_abort(),
        }
    }

    /// Undo [`Self::arm_abort`].
    pub fn disarm_abort(&self) {
        match self {
            BackendIo::Tcp(t) => crate::net::unabort(t),
            BackendIo::Tunnel(t) => t.disarm_abort(),
        }
    }

    pub fn abort_armed(&self) -> bool {
        match self {
            BackendIo::Tcp(t) => matches!(
                socket2::SockRef::from(t).linger(),
                Ok(Some(d)) if d.is_zero()
            ),
            BackendIo::Tunnel(t) => t.abort_armed(),
        }
    }

    /// The TCP socket, when the gateway holds one.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            BackendIo::Tcp(t) => Some(t),
            BackendIo::Tunnel(_) => None,
        }
    }
}

impl AsyncRead for BackendIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            BackendIo::Tunnel(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            BackendIo::Tunnel(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            BackendIo::Tunnel(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            BackendIo::Tunnel(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendIo::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            BackendIo::Tunnel(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendIo::Tcp(s) => s.is_write_vectored(),
            BackendIo::Tunnel(s) => s.is_write_vectored(),
        }
    }
}
