//! A control channel over a stream: buffered reads framed into lines (client
//! side) or replies (backend side), and whole-message writes.
//!
//! Reads are cancel-safe — bytes read are pushed into the framer before the
//! future returns — so the session can `select!` over both legs and drop the
//! losing read without losing input.

use std::io;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::control::{Framed, LineFramer, Reply, ReplyAssembler, ReplyError, MAX_LINE};

/// Bytes taken from the stream per read. The buffer lives on the stack of one
/// poll only, so an idle channel holds no read buffer (20 000 idle sessions
/// have 40 000 channels).
const READ_CHUNK: usize = 4096;

pub struct Channel<S> {
    pub stream: S,
    framer: LineFramer,
    replies: ReplyAssembler,
}

/// Why reading a reply from the backend failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplyReadError {
    #[error("connection closed")]
    Closed,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Malformed(#[from] ReplyError),
    #[error("reply line longer than {MAX_LINE} bytes")]
    TooLong,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Channel<S> {
    pub fn new(stream: S) -> Self {
        Channel {
            stream,
            framer: LineFramer::new(MAX_LINE),
            replies: ReplyAssembler::new(),
        }
    }

    /// Replace the stream (after a TLS upgrade), keeping nothing buffered:
    /// callers check `buffered()` first, because plaintext that arrived
    /// before the TLS handshake must never be read as if it were protected.
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Bytes received but not yet returned.
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    /// Next line, or `None` at end of stream. Cancel-safe.
    pub async fn read_line(&mut self) -> io::Result<Option<Framed>> {
        loop {
            if let Some(f) = self.framer.next_line() {
                return Ok(Some(f));
            }
            if self.read_some().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// One read from the stream into the framer (0 at end of stream), through a
    /// buffer on the stack of the poll that completes it. Cancel-safe: the bytes
    /// are in the framer when the future resolves, and a pending poll keeps none.
    async fn read_some(&mut self) -> io::Result<usize> {
        let Channel { stream, framer, .. } = self;
        std::future::poll_fn(|cx| {
            // Uninitialised: the streams under a channel (TCP, tokio-rustls)
            // write into a `ReadBuf` without zeroing it first, so this saves a
            // 4 KiB memset per read poll (bench/README.md, latency section).
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut buf);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut rb))?;
            framer.push(rb.filled());
            Poll::Ready(Ok(rb.filled().len()))
        })
        .await
    }

    /// Read what has arrived into the framer without taking lines out:
    /// `Ok(false)` at end of stream. Lets the session see a client leave
    /// while its commands wait for the backend. Cancel-safe.
    pub async fn fill(&mut self) -> io::Result<bool> {
        Ok(self.read_some().await? > 0)
    }

    /// Next complete reply (multi-line assembled). Cancel-safe.
    pub async fn read_reply(&mut self) -> Result<Reply, ReplyReadError> {
        loop {
            match self.read_line().await? {
                None => return Err(ReplyReadError::Closed),
                Some(Framed::TooLong) => return Err(ReplyReadError::TooLong),
                Some(Framed::Line(line)) => {
                    if let Some(reply) = self.replies.push_line(line)? {
                        return Ok(reply);
                    }
                }
            }
        }
    }

    pub async fn read_reply_timeout(&mut self, limit: Duration) -> Result<Reply, ReplyReadError> {
        match tokio::time::timeout(limit, self.read_reply()).await {
            Ok(r) => r,
            Err(_) => Err(ReplyReadError::Timeout(limit)),
        }
    }

    /// Write bytes and flush (TLS streams hold records until flushed).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    pub async fn send_reply(&mut self, reply: &Reply) -> io::Result<()> {
        self.send(&reply.to_bytes()).await
    }

    /// Send a command line (CRLF appended).
    pub async fn send_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut v = Vec::with_capacity(line.len() + 2);
        v.extend_from_slice(line);
        v.extend_from_slice(b"\r\n");
        self.send(&v).await
    }
}
