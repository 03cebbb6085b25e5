//! `ReadAhead`: reads a socket in large chunks for the tokio-rustls layer
//! above it. Today: the HTTP/2 tunnel's own TLS connection (`bulk`), and
//! pass-through under control connections; data connections run on
//! `stream::utls`, which reads in large chunks itself.
//!
//! rustls asks its transport for at most 4 KiB more than it holds, and shrinks
//! its buffer back to 4 KiB whenever it has consumed everything; a relay that
//! takes every ready record (see `data::relay`) therefore made rustls read
//! 16 KiB records in 4 KiB `recv`s. Under this layer one `recv` takes up to
//! [`CHUNK`] and rustls' small reads are served from memory. Control
//! connections do not use it (`cap` 0 passes every call through), so nothing is
//! ever buffered where the stream may be unwrapped (`CCC`). The HTTP/2 tunnel's
//! own TLS connection reads its TCP socket through it too; the edge's backend
//! TLS over a tunnel stream does not (the stream holds its bytes already).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One `recv` of a data connection takes at most this much.
pub const CHUNK: usize = 64 * 1024;

pub struct ReadAhead<T> {
    io: T,
    /// Read-ahead size; 0 = pass through.
    cap: usize,
    /// Allocated on the first read.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<T> ReadAhead<T> {
    /// Reads through a buffer of [`CHUNK`] bytes.
    pub fn bulk(io: T) -> Self {
        Self::with_cap(io, CHUNK)
    }

    /// Passes every call straight through (control connections).
    pub fn pass(io: T) -> Self {
        Self::with_cap(io, 0)
    }

    fn with_cap(io: T, cap: usize) -> Self {
        ReadAhead {
            io,
            cap,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// The transport; bytes read ahead and not handed on are dropped (a
    /// `pass` stream never has any).
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Bytes read from the socket and not yet handed on.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Mark `n` buffered bytes as handed on.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            if this.cap == 0 || out.remaining() >= this.cap {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            if this.buf.len() < this.cap {
                this.buf = vec![0; this.cap];
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            this.pos = 0;
            this.end = rb.filled().len();
        }
        let n = out.remaining().min(this.end - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the reads that reach the transport.
    struct Counted<T> {
        io: T,
        reads: usize,
    }

    impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = &mut *self;
            let r = Pin::new(&mut this.io).poll_read(cx, buf);
            if r.is_ready() {
                this.reads += 1;
            }
            r
        }
    }

    #[tokio::test]
    async fn bulk_serves_small_reads_from_one_large_read_and_keeps_order() {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.expect("write");
        drop(tx);
        let mut ra = ReadAhead::bulk(Counted { io: rx, reads: 0 });
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = ra.read(&mut small).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, data);
        // 40 000 bytes in 4 KiB reads: one transport read with the data, one
        // for the end (not ten or more).
        assert!(ra.get_ref().reads <= 3, "{} reads", ra.get_ref().reads);
    }

    #[tokio::test]
    async fn pass_buffers_nothing_and_consume_hands_on_buffered_bytes() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        tx.write_all(b"abcdef").await.expect("write");
        let mut p = ReadAhead::pass(rx);
        let mut two = [0u8; 2];
        p.read_exact(&mut two).await.expect("read");
        assert!(p.buffered().is_empty());
        let mut rest = [0u8; 4];
        p.into_inner().read_exact(&mut rest).await.expect("rest");
        assert_eq!(&rest, b"cdef");

        let (mut tx, rx) = tokio::io::duplex(1024);
        tx.write_all(b"abcdef").await.expect("write");
        let mut b = ReadAhead::bulk(rx);
        b.read_exact(&mut two).await.expect("read");
        assert_eq!(b.buffered(), b"cdef");
        b.consume(3);
        assert_eq!(b.buffered(), b"f");
        b.consume(10);
        assert!(b.buffered().is_empty());
    }
}
