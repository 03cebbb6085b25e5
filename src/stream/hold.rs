//! `HoldIo`: the TCP stream under a client-side TLS connection, able to hold
//! back what rustls writes after a TLS 1.3 handshake (the NewSessionTicket
//! messages) until the gateway knows what the data connection is for.
//!
//! Why: FTPS clients such as curl start the data connection's handshake
//! before they send the transfer command, and wait for it. A download wants
//! fresh tickets (the client resumes the next data connection from them); an
//! upload must not get any while it sends: the client never reads them, and
//! closing a socket with unread data makes its kernel reset the connection and
//! drop the upload's last unsent bytes. Holding the tickets lets the handshake
//! finish at once whatever the direction; the transfer releases them as soon as
//! it has the connection, before the backend's `150` can reach the client. A download reads them before its first byte. An upload gets them
//! too: curl (OpenSSL) uses each TLS 1.3 ticket once and, without a fresh one,
//! offers no ticket at all on its next data connection (a full handshake,
//! refused under `require_data_reuse`); it reads what has arrived just before
//! it sends its close_notify, so tickets sent at the start are consumed and
//! leave nothing unread (measured: 20 of 20 curl upload-then-download sessions
//! intact, tests/interop_clients.rs).
//!
//! Arming: when `armed` is set (the direction was unknown at ClientHello), the
//! first TLS record of type application data (0x17) read from the client — in
//! TLS 1.3 its encrypted Finished — switches to holding: every later write is
//! buffered until [`HoldIo::release`]. TLS 1.2 handshakes end with handshake
//! records (0x16), so they never arm during the handshake; the caller
//! releases right after a TLS 1.2 handshake.
//!
//! On data connections it sits under `stream::utls` (which also keeps the
//! client's ClientHello for `tls::SessionAcceptors::await_ticket_owner`), on
//! control connections under tokio-rustls, never holding.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// TLS record content type of application data (and of every encrypted
/// TLS 1.3 record).
const APPLICATION_DATA: u8 = 0x17;
const HEADER: usize = 5;

pub struct HoldIo {
    /// Read straight through, never ahead: control connections may be
    /// unwrapped (`CCC`), data connections' `utls` reads in large chunks itself.
    io: TcpStream,
    /// Hold writes once the client's first application-data record is read.
    armed: Arc<AtomicBool>,
    holding: bool,
    released: bool,
    held: Vec<u8>,
    /// Record framing of what the client sent, while armed and not holding.
    header: [u8; HEADER],
    header_len: usize,
    body_left: usize,
}

impl HoldIo {
    /// Never holds (control connections, data connections whose direction is known).
    pub fn pass(io: TcpStream) -> HoldIo {
        let mut h = HoldIo::with(io, Arc::new(AtomicBool::new(false)));
        h.released = true;
        h
    }

    /// Holds once `armed` is set and the client's first application-data
    /// record has been read. For data connections, under `utls`, which reads
    /// in large chunks itself: no read-ahead here.
    pub fn new(io: TcpStream, armed: Arc<AtomicBool>) -> HoldIo {
        HoldIo::with(io, armed)
    }

    fn with(io: TcpStream, armed: Arc<AtomicBool>) -> HoldIo {
        HoldIo {
            io,
            armed,
            holding: false,
            released: false,
            held: Vec::new(),
            header: [0; HEADER],
            header_len: 0,
            body_left: 0,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.io
    }

    /// The socket (nothing is ever read ahead, so nothing read is lost).
    pub fn into_inner(self) -> TcpStream {
        self.io
    }

    /// Bytes held back so far (the tickets).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Stop holding; what was held goes out before the next write, flush or
    /// shutdown.
    pub fn release(&mut self) {
        self.released = true;
        self.holding = false;
    }

    /// Follow the record framing of bytes read from the client; hold from the
    /// first application-data record on, when armed.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.holding {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == HEADER {
                self.header_len = 0;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if self.header[0] == APPLICATION_DATA && self.armed.load(Ordering::Relaxed) {
                    self.holding = true;
                }
            }
        }
    }

    /// Write out what was held (after `release`).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held.is_empty() {
            // The usual case on every write: nothing was held.
            return Poll::Ready(Ok(()));
        }
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        // Give the buffer back once it has gone out.
        self.held = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for HoldIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if !this.released && !this.holding {
            this.scan(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HoldIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    /// rustls hands over all the records it has ready at once: one `writev`
    /// instead of one `write` per 16 KiB record.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding {
            let mut n = 0;
            for b in bufs {
                this.held.extend_from_slice(b);
                n += b.len();
            }
            return Poll::Ready(Ok(n));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.holding {
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.holding {
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// Read from `h` until `want` bytes in total came through.
    async fn read_n(h: &mut HoldIo, want: usize) {
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < want {
            let n = h.read(&mut buf).await.expect("read");
            assert!(n > 0, "eof");
            got += n;
        }
    }

    #[tokio::test]
    async fn holds_writes_after_the_first_application_data_record_until_released() {
        let (mut peer, ours) = pair().await;
        let mut h = HoldIo::new(ours, Arc::new(AtomicBool::new(true)));
        // A handshake record (split header), then our flight goes out.
        peer.write_all(&[0x16, 3]).await.expect("w");
        read_n(&mut h, 2).await;
        peer.write_all(&[3, 0, 2, 1, 2]).await.expect("w");
        read_n(&mut h, 5).await;
        h.write_all(b"flight").await.expect("w");
        assert_eq!(h.held(), 0);
        // The client's Finished (application data): from now on we hold.
        peer.write_all(&[0x17, 3, 3, 0, 1, 9]).await.expect("w");
        read_n(&mut h, 6).await;
        h.write_all(b"tickets").await.expect("held write");
        h.flush().await.expect("flush while holding");
        assert_eq!(h.held(), 7);
        let mut first = [0u8; 6];
        peer.read_exact(&mut first).await.expect("flight");
        assert_eq!(&first, b"flight");
        h.release();
        h.write_all(b"data").await.expect("w");
        let mut rest = [0u8; 11];
        peer.read_exact(&mut rest).await.expect("rest");
        assert_eq!(&rest, b"ticketsdata");
    }

    #[tokio::test]
    async fn never_holds_unless_armed() {
        let (mut peer, ours) = pair().await;
        let mut h = HoldIo::new(ours, Arc::new(AtomicBool::new(false)));
        peer.write_all(&[0x17, 3, 3, 0, 1, 9]).await.expect("w");
        read_n(&mut h, 6).await;
        h.write_all(b"x").await.expect("w");
        assert_eq!(h.held(), 0);
        let mut one = [0u8; 1];
        peer.read_exact(&mut one).await.expect("r");
    }

    #[tokio::test]
    async fn vectored_writes_are_held_whole_and_pass_through_after_release() {
        let (mut peer, ours) = pair().await;
        let mut h = HoldIo::new(ours, Arc::new(AtomicBool::new(true)));
        assert!(h.is_write_vectored());
        peer.write_all(&[0x17, 3, 3, 0, 1, 9]).await.expect("w");
        read_n(&mut h, 6).await;
        let bufs = [io::IoSlice::new(b"tick"), io::IoSlice::new(b"ets")];
        let n = h.write_vectored(&bufs).await.expect("held writev");
        assert_eq!((n, h.held()), (7, 7));
        h.release();
        // The held bytes go out first, then the vector (4 bytes fit a
        // loopback socket buffer in one writev).
        let bufs = [io::IoSlice::new(b"da"), io::IoSlice::new(b"ta")];
        assert_eq!(h.write_vectored(&bufs).await.expect("writev"), 4);
        let mut rest = [0u8; 11];
        peer.read_exact(&mut rest).await.expect("rest");
        assert_eq!(&rest, b"ticketsdata");
    }
}
