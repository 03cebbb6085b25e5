//! The gateway's TLS client streams toward a backend — control
//! ([`BackendTlsStream`], tokio-rustls) and data ([`BackendDataTls`], on
//! rustls's unbuffered API, see [`super::utls`]) — which keep the TLS 1.3
//! tickets a backend sent even when the connection is dropped unread.
//!
//! TLS 1.3 tickets are single-use and servers hand out the replacement on each
//! data connection (vsftpd: one per connection, right after the handshake).
//! A transfer whose client leg failed drops its backend leg without reading
//! it; the ticket waiting in the socket buffer was lost with it, and after two
//! such failures the next data connection could not resume (vsftpd `522`,
//! ProFTPD `425`, both ending the session). On drop, whatever the kernel
//! already holds is fed through rustls (no waiting, no I/O beyond one
//! non-blocking read per record batch), so those tickets reach the session's
//! store. Plaintext that comes along is discarded with the stream.
//!
//! A data connection dropped while the backend still sends (a download whose
//! client leg failed) is not closed under the backend's feet either: ProFTPD's
//! mod_tls ends the whole session when a data write fails (`SSL_ERROR_SYSCALL
//! … Broken pipe`, "unexpected OpenSSL error, disconnecting"). It is read to
//! its end in the background instead, bounded in bytes and time, so the
//! backend finishes, answers on the control connection and its session goes
//! on; the tickets it sends arrive the normal way. A connection armed to be
//! reset (an incomplete upload, `net::abort`) is reset at once as intended.
//!
//! The transport under TLS is TCP or a tunnel stream ([`BackendIo`]); over a
//! tunnel the salvage polls the stream once without waiting instead of
//! reading the socket.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::utls::ClientTls;
use crate::backend::io::BackendIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The TLS client stream over the backend control transport.
pub type TlsStream = tokio_rustls::client::TlsStream<BackendIo>;

/// Upper bound of bytes read from the socket on drop (the tickets come first;
/// a download's data behind them is not needed).
const SALVAGE_LIMIT: usize = 64 * 1024;
/// How much of a dropped data connection is read in the background, at most.
const LINGER_BYTES: usize = 8 * 1024 * 1024;
/// How long a dropped data connection is read in the background, at most.
const LINGER_TIME: Duration = Duration::from_secs(5);

/// A client-side TLS stream to a backend (control connection).
pub struct BackendTlsStream {
    /// Always `Some` until dropped.
    inner: Option<TlsStream>,
}

impl BackendTlsStream {
    /// The backend control connection.
    pub fn control(inner: TlsStream) -> Self {
        BackendTlsStream { inner: Some(inner) }
    }

    pub fn get_ref(&self) -> (&BackendIo, &rustls::ClientConnection) {
        match &self.inner {
            Some(s) => s.get_ref(),
            // Only `drop` takes it.
            None => unreachable!("backend TLS stream used after drop"),
        }
    }

    fn io(&mut self) -> io::Result<&mut TlsStream> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

/// Processes TLS records already received by the kernel, without waiting, so
/// post-handshake messages (session tickets) reach the session store.
/// Returns the number of bytes taken from the socket.
fn salvage_tickets(stream: &mut TlsStream) -> usize {
    if stream.get_ref().1.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        // TLS 1.2 resumes by session id, which stays in the store.
        return 0;
    }
    if matches!(stream.get_ref().0, BackendIo::Tunnel(_)) {
        return salvage_polled(stream);
    }
    let (io, conn) = stream.get_mut();
    let mut buf = [0u8; 16 * 1024];
    let mut taken = 0;
    while taken < SALVAGE_LIMIT {
        let Some(n) = read_now(io, &mut buf) else {
            break;
        };
        taken += n;
        if !feed(conn, &buf[..n]) {
            break;
        }
    }
    taken
}

/// Passes TLS bytes through rustls, discarding plaintext. False when rustls
/// refused them (a full plaintext buffer, a bad record): the salvage ends
/// there; tickets come before any data, so they are in.
fn feed(conn: &mut rustls::ClientConnection, mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        if conn.read_tls(&mut rest).is_err() || conn.process_new_packets().is_err() {
            return false;
        }
        // Plaintext is not wanted here; drain it so rustls keeps room.
        let mut sink = [0u8; 4096];
        while matches!(conn.reader().read(&mut sink), Ok(m) if m > 0) {}
    }
    true
}

/// [`salvage_tickets`] over a transport without a socket: reads through TLS
/// with a waker that is never woken, until nothing more is ready.
fn salvage_polled(stream: &mut TlsStream) -> usize {
    let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
    let mut cx = Context::from_waker(&waker);
    let mut buf = [0u8; 16 * 1024];
    let mut taken = 0;
    while taken < SALVAGE_LIMIT {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut *stream).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => taken += rb.filled().len(),
            _ => break,
        }
    }
    taken
}

/// A waker for one look at what is ready now (`Waker::noop` needs Rust 1.85).
struct NoWake;

impl std::task::Wake for NoWake {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// Reads a dropped data connection until the backend closes it (bounded).
async fn linger(mut stream: ClientTls<BackendIo>) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

impl Drop for BackendTlsStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.inner.take() else {
            return;
        };
        salvage_tickets(&mut stream);
    }
}

/// A client-side TLS stream to a backend's data connection: read to its end
/// in the background when dropped (see the module docs).
pub struct BackendDataTls {
    /// Always `Some` until dropped.
    inner: Option<ClientTls<BackendIo>>,
}

impl BackendDataTls {
    /// A backend data connection.
    pub(crate) fn new(inner: ClientTls<BackendIo>) -> Self {
        BackendDataTls { inner: Some(inner) }
    }

    pub(crate) fn get_ref(&self) -> (&BackendIo, &super::utls::Handshaken) {
        match &self.inner {
            Some(s) => s.get_ref(),
            // Only `drop` takes it.
            None => unreachable!("backend TLS stream used after drop"),
        }
    }

    fn io(&mut self) -> io::Result<&mut ClientTls<BackendIo>> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// The stream's record layer, for the relay.
    pub(crate) fn records(&mut self) -> Option<&mut dyn super::utls::Records> {
        self.inner
            .as_mut()
            .map(|s| s as &mut dyn super::utls::Records)
    }
}

/// [`salvage_tickets`] for a data connection: the socket is read directly
/// (without waiting: an empty buffer is `WouldBlock`), a tunnel stream
/// polled once per batch.
fn salvage_data(stream: &mut ClientTls<BackendIo>) -> usize {
    if stream.get_ref().1.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        // TLS 1.2 resumes by session id, which stays in the store.
        return 0;
    }
    if matches!(stream.get_ref().0, BackendIo::Tunnel(_)) {
        return stream.salvage(SALVAGE_LIMIT, None);
    }
    stream.salvage(SALVAGE_LIMIT, Some(&mut read_now))
}

/// What the kernel already holds for a TCP backend transport, read without
/// waiting (tokio's sockets are non-blocking: an empty buffer is
/// `WouldBlock`); `None` when nothing is ready, at the end, or for a tunnel
/// stream (salvaged by polling instead). Both salvages read through it.
fn read_now(io: &mut BackendIo, buf: &mut [u8]) -> Option<usize> {
    let BackendIo::Tcp(tcp) = io else {
        return None;
    };
    let sock = socket2::SockRef::from(&*tcp);
    match (&*sock).read(buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

impl Drop for BackendDataTls {
    fn drop(&mut self) {
        let Some(mut stream) = self.inner.take() else {
            return;
        };
        salvage_data(&mut stream);
        if stream.get_ref().0.abort_armed() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// `AsyncRead` + `AsyncWrite` of a wrapper whose `io()` lends the TLS stream
/// it holds until it is dropped (both backend stream types).
macro_rules! via_inner_stream {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(self.get_mut().io()?).poll_read(cx, buf)
            }
        }

        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(self.get_mut().io()?).poll_write(cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(self.get_mut().io()?).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(self.get_mut().io()?).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(self.get_mut().io()?).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
            }
        }
    };
}

via_inner_stream!(BackendTlsStream);
via_inner_stream!(BackendDataTls);
