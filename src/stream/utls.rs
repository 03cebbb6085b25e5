//! `UTls`: a TLS stream on rustls's *unbuffered* API, for data connections
//! (both legs: the gateway as TLS server toward clients, as TLS client toward
//! backends). Control connections stay on tokio-rustls (they upgrade and
//! downgrade in place: `AUTH TLS`, `CCC`).
//!
//! Why: tokio-rustls over rustls's buffered API copies every byte four times
//! in user space (transport → deframer buffer, plaintext → received queue →
//! caller, caller → record buffer). Here the transport is read straight into
//! this stream's own incoming buffer (one `recv` of up to 256 KiB, grown on
//! demand from 4 KiB: most data connections carry a few KiB), rustls decrypts
//! there in place, the plaintext is copied to the caller (rustls 0.23 still
//! queues each record once on the way); writes are sealed straight from the
//! caller's buffer into the outgoing buffer, all records of one call, and go
//! out in one write. See bench/README.md, "rustls's unbuffered API in the
//! relay", for the measurements.
//!
//! The handshake is driven here too ([`UTls::connect`], [`accept`] and
//! [`StartServer::into_stream`]): rustls cannot turn a buffered connection
//! into an unbuffered one. The server side first reads the ClientHello
//! (judged complete by a [`rustls::server::Acceptor`] fed a copy of the
//! bytes) so the caller can look at it and pick the config, as
//! `LazyConfigAcceptor` allows, then hands the same bytes to the connection.
//!
//! End of stream as tokio-rustls reports it: a close_notify is a clean EOF
//! (`Ok(0)`); the transport closing without one is
//! [`io::ErrorKind::UnexpectedEof`] (the relay's truncation check depends on
//! it). Post-handshake messages are processed as they are read: TLS 1.3
//! tickets reach the client config's resumption store, a peer's KeyUpdate
//! request is answered (the answer goes out with the next write, flush, or
//! right away when the transport takes it), alerts end the stream.
//!
//! Handshake failures come back as `io::ErrorKind::InvalidData` wrapping the
//! `rustls::Error`, as tokio-rustls does, after the alert rustls queued has
//! been sent (best effort).

use std::future::poll_fn;
use std::io;
use std::ops::DerefMut;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The incoming buffer's first size (a ClientHello, a small transfer).
const IN_START: usize = 4 * 1024;
/// The incoming buffer's largest size (one `recv` takes at most this).
pub(crate) const IN_MAX: usize = 256 * 1024;
/// The largest TLS record on the wire: 2^14 plaintext + 2048 expansion
/// (TLS 1.2's limit) + the 5-byte header. A buffer whose free tail is
/// smaller than this is compacted before a read.
const MAX_RECORD: usize = 16 * 1024 + 2048 + 5;
/// Plaintext taken from the caller per `poll_write`, at most.
const WRITE_MAX: usize = 256 * 1024;

/// The two unbuffered connection types, so one stream serves both sides.
pub(crate) trait Unbuffered:
    DerefMut<Target = rustls::unbuffered::UnbufferedConnectionCommon<Self::Data>>
{
    /// `ServerConnectionData` or `ClientConnectionData`.
    type Data;
    /// `process_tls_records` of the side.
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
}

/// The gateway as TLS server (client leg).
pub(crate) type ServerTls<IO> = UTls<IO, UnbufferedServerConnection>;
/// The gateway as TLS client (backend leg).
pub(crate) type ClientTls<IO> = UTls<IO, UnbufferedClientConnection>;

/// Received TLS bytes not yet processed: `buf[start..end]`.
struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    fn new() -> Self {
        InBuf {
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    fn pending(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    fn discard(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into: compacted when less than a record fits
    /// behind the pending bytes, grown when the pending bytes fill it.
    fn space(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf.resize(IN_START, 0);
        }
        if self.buf.len() - self.end < MAX_RECORD && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Full of one incomplete record, or a fast source.
            self.grow();
        }
        &mut self.buf[self.end..]
    }

    fn grow(&mut self) {
        let len = (self.buf.len() * 4).clamp(IN_START, IN_MAX);
        if len > self.buf.len() {
            self.buf.resize(len, 0);
        }
    }

    /// One read from `io` into the free space: the byte count (0 at EOF).
    fn poll_fill<IO: AsyncRead + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let space = self.space();
        let room = space.len();
        if room == 0 {
            // 256 KiB pending and rustls still wants more: no record or
            // handshake message is that large (rustls refuses handshake
            // messages over 64 KiB), so the peer is not speaking TLS.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS input larger than the incoming buffer",
            )));
        }
        let mut rb = ReadBuf::new(space);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.end += n;
        if n == room && self.buf.len() < IN_MAX {
            // The read filled all there was: the source is fast, give it room.
            self.grow();
        }
        Poll::Ready(Ok(n))
    }
}

/// Encrypted bytes not yet written: `buf[pos..end]`. The buffer keeps its
/// size (zero-filled once, when it grows), so sealing into it costs no
/// clearing per write.
struct OutBuf {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

/// `Ok(size needed)` for a buffer too small, else the error.
type Short = Result<usize, io::Error>;

fn encode_short(e: EncodeError) -> Short {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Ok(required_size),
        e => Err(io::Error::other(e.to_string())),
    }
}

fn encrypt_short(e: EncryptError) -> Short {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Ok(required_size)
        }
        e => Err(io::Error::other(e.to_string())),
    }
}

impl OutBuf {
    fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// At least `want` bytes of room behind the pending bytes.
    fn room(&mut self, want: usize) -> &mut [u8] {
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Appends what `write` puts into a slice, growing the buffer to the
    /// size it asks for until it fits.
    fn append(
        &mut self,
        first: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>,
    ) -> io::Result<()> {
        let mut want = first;
        loop {
            match write(self.room(want)) {
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(Ok(required)) if required > want => want = required,
                Err(Ok(_)) => return Err(io::Error::other("TLS output does not fit")),
                Err(Err(e)) => return Err(e),
            }
        }
    }

    /// Writes until empty.
    fn poll_flush<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pos < self.end {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.pos..self.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.pos = 0;
        self.end = 0;
        Poll::Ready(Ok(()))
    }

    /// Appends a handshake or alert record rustls has ready.
    fn encode<D>(&mut self, e: &mut rustls::unbuffered::EncodeTlsData<'_, D>) -> io::Result<()> {
        self.append(1024, |dst| e.encode(dst).map_err(encode_short))
    }

    /// Appends `data` sealed in as many records as it takes.
    fn encrypt<D>(
        &mut self,
        w: &mut rustls::unbuffered::WriteTraffic<'_, D>,
        data: &[u8],
    ) -> io::Result<()> {
        // Room for every record's overhead (header, type, tag, TLS 1.2 nonce).
        let first = data.len() + (data.len() / (16 * 1024) + 1) * 64;
        self.append(first, |dst| w.encrypt(data, dst).map_err(encrypt_short))
    }

    /// Appends a close_notify alert.
    fn close_notify<D>(
        &mut self,
        w: &mut rustls::unbuffered::WriteTraffic<'_, D>,
    ) -> io::Result<()> {
        self.append(64, |dst| w.queue_close_notify(dst).map_err(encrypt_short))
    }
}

/// How the read side ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    Open,
    /// close_notify received: clean EOF.
    Closed,
    /// The transport ended without close_notify.
    Truncated,
}

/// A TLS stream over `IO` on rustls's unbuffered API; `C` is
/// [`UnbufferedServerConnection`] or [`UnbufferedClientConnection`].
pub(crate) struct UTls<IO, C> {
    io: IO,
    conn: C,
    inb: InBuf,
    out: OutBuf,
    /// Plaintext of a record the caller had no room for: `plain[plain_pos..]`.
    plain: Vec<u8>,
    plain_pos: usize,
    read_end: ReadEnd,
    /// Our close_notify is queued.
    closing: bool,
    /// A fatal TLS error ended the connection.
    failed: Option<rustls::Error>,
}

/// What to do once rustls's state (borrowing the buffers) is handled.
enum Next {
    /// Process again.
    Again,
    /// Read more from the transport.
    Read,
    /// The handshake (or the read) is done for now.
    Done,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<IO, C> UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: Unbuffered,
{
    fn with(io: IO, conn: C, inb: InBuf) -> Self {
        UTls {
            io,
            conn,
            inb,
            out: OutBuf {
                buf: Vec::new(),
                pos: 0,
                end: 0,
            },
            plain: Vec::new(),
            plain_pos: 0,
            read_end: ReadEnd::Open,
            closing: false,
            failed: None,
        }
    }

    /// The transport and the TLS state (version, suite, resumption, peer
    /// certificates), as tokio-rustls's `get_ref`.
    pub fn get_ref(&self) -> (&IO, &CommonState) {
        (&self.io, &self.conn)
    }

    /// The transport and the TLS state.
    pub fn get_mut(&mut self) -> (&mut IO, &CommonState) {
        (&mut self.io, &self.conn)
    }

    /// Runs the handshake to its end (both Finished messages exchanged, so
    /// the peer's certificates and the resumption are known).
    async fn handshake(&mut self) -> io::Result<()> {
        let r = poll_fn(|cx| self.poll_handshake(cx)).await;
        if let Err(e) = &r {
            if e.kind() == io::ErrorKind::InvalidData {
                // The alert rustls queued for the peer, best effort.
                self.queue_pending();
                let _ = poll_fn(|cx| self.out.poll_flush(&mut self.io, cx)).await;
            }
        }
        r
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Our flight goes out before we wait for the peer's.
            ready!(self.out.poll_flush(&mut self.io, cx))?;
            let status = self.conn.process(self.inb.pending());
            let discard = status.discard;
            let next = match status.state {
                Err(e) => {
                    self.inb.discard(discard);
                    return Poll::Ready(Err(tls_error(e)));
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    self.out.encode(&mut e)?;
                    Next::Again
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // Sent at the top of the loop, before anything else.
                    t.done();
                    Next::Again
                }
                Ok(ConnectionState::BlockedHandshake) => Next::Read,
                Ok(ConnectionState::WriteTraffic(_)) => Next::Done,
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    // Application data right behind the handshake.
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(tls_error)?;
                        self.plain.extend_from_slice(rec.payload);
                    }
                    Next::Again
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    self.read_end = ReadEnd::Closed;
                    Next::Done
                }
                Ok(_) => {
                    self.inb.discard(discard);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS state in the handshake (early data)",
                    )));
                }
            };
            self.inb.discard(discard);
            match next {
                Next::Again => {}
                // A TLS 1.3 server may send before the client's Finished;
                // wait for it all the same.
                Next::Done if !self.conn.is_handshaking() => {
                    ready!(self.out.poll_flush(&mut self.io, cx))?;
                    return Poll::Ready(Ok(()));
                }
                Next::Done if self.read_end == ReadEnd::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed during the TLS handshake",
                    )));
                }
                Next::Done | Next::Read => {
                    if ready!(self.inb.poll_fill(&mut self.io, cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
            }
        }
    }

    /// Encodes what rustls has queued to send (an alert after an error, a
    /// KeyUpdate) into the outgoing buffer, reading nothing more.
    fn queue_pending(&mut self) {
        for _ in 0..16 {
            let status = self.conn.process(self.inb.pending());
            let discard = status.discard;
            let more = match status.state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => self.out.encode(&mut e).is_ok(),
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    true
                }
                _ => false,
            };
            self.inb.discard(discard);
            if !more {
                return;
            }
        }
    }

    /// Copies plaintext kept from an earlier record into `buf`.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.plain.len() - self.plain_pos);
        buf.put_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain.clear();
            self.plain_pos = 0;
        }
    }

    fn poll_write_plain(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = &self.failed {
            return Poll::Ready(Err(tls_error(e.clone())));
        }
        if self.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // What is still waiting goes first; nothing more is taken meanwhile.
        ready!(self.out.poll_flush(&mut self.io, cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(WRITE_MAX)];
        self.with_write_traffic(|out, w| out.encrypt(w, data))?;
        // Accepted: out it goes now as far as the transport takes it, the
        // rest before the next write, flush or shutdown.
        if let Poll::Ready(Err(e)) = self.out.poll_flush(&mut self.io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    /// Runs `f` with rustls in its `WriteTraffic` state (after encoding what
    /// it had queued).
    fn with_write_traffic(
        &mut self,
        f: impl FnOnce(
            &mut OutBuf,
            &mut rustls::unbuffered::WriteTraffic<'_, C::Data>,
        ) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut f = Some(f);
        loop {
            // Never an empty slice in place of the pending bytes: rustls may
            // keep a partial handshake message in them (a ticket split over
            // records) and index into them.
            let status = self.conn.process(self.inb.pending());
            let discard = status.discard;
            let done = match status.state {
                Err(e) => {
                    self.failed = Some(e.clone());
                    Some(Err(tls_error(e)))
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => self.out.encode(&mut e).err().map(Err),
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => match f.take() {
                    Some(f) => Some(f(&mut self.out, &mut w)),
                    None => Some(Ok(())),
                },
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    // Records the reader has not asked for yet: kept for it.
                    let mut res = None;
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => self.plain.extend_from_slice(rec.payload),
                            Err(e) => {
                                res = Some(Err(tls_error(e)));
                                break;
                            }
                        }
                    }
                    res
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.read_end = ReadEnd::Closed;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Err(io::ErrorKind::BrokenPipe.into())),
                Ok(_) => Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS connection not writable",
                ))),
            };
            self.inb.discard(discard);
            if let Some(r) = done {
                return r;
            }
        }
    }

    fn poll_read_plain(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if self.plain_pos < self.plain.len() {
            self.take_plain(buf);
        }
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match self.read_end {
                ReadEnd::Open => {}
                ReadEnd::Closed => return Poll::Ready(Ok(())),
                ReadEnd::Truncated if buf.filled().len() > before => return Poll::Ready(Ok(())),
                ReadEnd::Truncated => return Poll::Ready(Err(truncated())),
            }
            if let Some(e) = &self.failed {
                if buf.filled().len() > before {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(tls_error(e.clone())));
            }
            let status = self.conn.process(self.inb.pending());
            let discard = status.discard;
            let next = match status.state {
                Err(e) => {
                    self.failed = Some(e);
                    Next::Again
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    let mut extra = 0;
                    let mut kept = false;
                    loop {
                        // A record that does not fit behind what this call
                        // already gave stays with rustls for the next call
                        // (no copy into `plain` and out again).
                        if buf.filled().len() > before
                            && r.peek_len().is_some_and(|len| len.get() > buf.remaining())
                        {
                            kept = true;
                            break;
                        }
                        let Some(rec) = r.next_record() else {
                            break;
                        };
                        let rec = match rec {
                            Ok(rec) => rec,
                            Err(e) => {
                                self.failed = Some(e);
                                break;
                            }
                        };
                        extra += rec.discard;
                        let n = buf.remaining().min(rec.payload.len());
                        buf.put_slice(&rec.payload[..n]);
                        // The rest waits for the next read (rustls lends
                        // each record once).
                        self.plain.extend_from_slice(&rec.payload[n..]);
                    }
                    self.inb.discard(extra);
                    if kept || self.plain_pos < self.plain.len() {
                        Next::Done
                    } else {
                        Next::Again
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    self.out.encode(&mut e)?;
                    Next::Again
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    Next::Again
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    self.read_end = ReadEnd::Closed;
                    Next::Again
                }
                Ok(ConnectionState::WriteTraffic(_)) | Ok(ConnectionState::BlockedHandshake) => {
                    Next::Read
                }
                Ok(_) => {
                    self.failed = Some(rustls::Error::General("unexpected early data".into()));
                    Next::Again
                }
            };
            self.inb.discard(discard);
            if !self.out.is_empty() {
                // A KeyUpdate answer (or an alert): out as far as the
                // transport takes it now.
                if let Poll::Ready(Err(e)) = self.out.poll_flush(&mut self.io, cx) {
                    return Poll::Ready(Err(e));
                }
            }
            match next {
                Next::Again => {}
                Next::Done => return Poll::Ready(Ok(())),
                Next::Read => {
                    if buf.filled().len() > before {
                        // Some plaintext for the caller; the next call reads on.
                        return Poll::Ready(Ok(()));
                    }
                    if ready!(self.inb.poll_fill(&mut self.io, cx))? == 0 {
                        self.read_end = ReadEnd::Truncated;
                    }
                }
            }
        }
    }

    /// Processes what the transport has ready now, without waiting (a
    /// noop-woken poll) or, with `raw`, what `raw` reads without waiting,
    /// so post-handshake messages (TLS 1.3 tickets) reach the session store
    /// of a connection about to be dropped. Plaintext is discarded. Returns
    /// the number of bytes taken from the transport (at most `limit`).
    pub fn salvage(&mut self, limit: usize, mut raw: Option<RawRead<'_, IO>>) -> usize {
        let waker = std::task::Waker::from(Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        let mut taken = 0;
        loop {
            // Everything complete in the buffer first.
            loop {
                let status = self.conn.process(self.inb.pending());
                let discard = status.discard;
                let more = match status.state {
                    Ok(ConnectionState::ReadTraffic(mut r)) => {
                        while let Some(Ok(_)) = r.next_record() {}
                        true
                    }
                    Ok(ConnectionState::EncodeTlsData(mut e)) => self.out.encode(&mut e).is_ok(),
                    Ok(ConnectionState::TransmitTlsData(t)) => {
                        t.done();
                        true
                    }
                    Ok(ConnectionState::WriteTraffic(_)) => false,
                    Ok(_) | Err(_) => {
                        self.inb.discard(discard);
                        return taken;
                    }
                };
                self.inb.discard(discard);
                if !more {
                    break;
                }
            }
            if taken >= limit {
                return taken;
            }
            let n = match raw.as_mut() {
                Some(read) => {
                    let space = self.inb.space();
                    let cap = space.len().min(limit - taken);
                    match read(&mut self.io, &mut space[..cap]) {
                        Some(n) => {
                            self.inb.end += n;
                            n
                        }
                        None => 0,
                    }
                }
                None => match self.inb.poll_fill(&mut self.io, &mut cx) {
                    Poll::Ready(Ok(n)) => n,
                    _ => 0,
                },
            };
            if n == 0 {
                return taken;
            }
            taken += n;
        }
    }
}

/// Reads the transport under TLS without waiting: `None` when nothing is
/// ready (or at its end).
pub(crate) type RawRead<'a, IO> = &'a mut dyn FnMut(&mut IO, &mut [u8]) -> Option<usize>;

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed connection without sending TLS close_notify",
    )
}

/// A waker for one look at what is ready now (`Waker::noop` needs Rust 1.85).
struct NoWake;

impl std::task::Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

impl<IO> ClientTls<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Connects as TLS client over `io`: the whole handshake.
    pub async fn connect(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        io: IO,
    ) -> io::Result<Self> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        let mut s = UTls::with(io, conn, InBuf::new());
        s.handshake().await?;
        Ok(s)
    }
}

/// A server handshake whose ClientHello has been read, before a config is
/// chosen (see [`accept`]).
pub(crate) struct StartServer<IO> {
    io: IO,
    inb: InBuf,
}

impl<IO> StartServer<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// The bytes the client sent so far (its ClientHello, and whatever
    /// came with it).
    pub fn client_hello(&self) -> &[u8] {
        &self.inb.buf[self.inb.start..self.inb.end]
    }

    /// Finishes the handshake with `config`.
    pub async fn into_stream(self, config: Arc<ServerConfig>) -> io::Result<ServerTls<IO>> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut s = UTls::with(self.io, conn, self.inb);
        s.handshake().await?;
        Ok(s)
    }
}

/// Reads the client's ClientHello from `io` (complete when a
/// [`rustls::server::Acceptor`] fed the same bytes says so). A malformed
/// hello gets rustls's alert and is an `InvalidData` error.
pub(crate) async fn accept<IO>(mut io: IO) -> io::Result<StartServer<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let mut inb = InBuf::new();
    let mut acceptor = rustls::server::Acceptor::default();
    loop {
        let at = inb.end;
        let n = poll_fn(|cx| inb.poll_fill(&mut io, cx)).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tls handshake eof",
            ));
        }
        let mut new = &inb.buf[at..at + n];
        while !new.is_empty() {
            acceptor.read_tls(&mut new)?;
        }
        match acceptor.accept() {
            Ok(Some(_)) => return Ok(StartServer { io, inb }),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let mut bytes = Vec::new();
                let _ = alert.write_all(&mut bytes);
                let _ = io.write_all(&bytes).await;
                return Err(tls_error(e));
            }
        }
    }
}

impl<IO> ServerTls<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Accepts as TLS server over `io` with `config`: the whole handshake.
    pub async fn accept_with(config: Arc<ServerConfig>, io: IO) -> io::Result<Self> {
        accept(io).await?.into_stream(config).await
    }
}

impl<IO, C> UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: Unbuffered,
{
    /// Sends a TLS 1.3 KeyUpdate (with the next write or flush).
    #[cfg(test)]
    pub fn refresh_traffic_keys(&mut self) -> io::Result<()> {
        let status = self.conn.process(self.inb.pending());
        let discard = status.discard;
        let r = match status.state {
            Ok(ConnectionState::WriteTraffic(w)) => w.refresh_traffic_keys().map_err(tls_error),
            _ => Err(io::Error::other("not writable")),
        };
        self.inb.discard(discard);
        r
    }
}

impl<IO, C> AsyncRead for UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: Unbuffered + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_plain(cx, buf)
    }
}

impl<IO, C> AsyncWrite for UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: Unbuffered + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plain(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing && this.failed.is_none() {
            // A queued KeyUpdate answer goes out too.
            this.with_write_traffic(|_, _| Ok(()))?;
        }
        ready!(this.out.poll_flush(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Queues close_notify, sends it, then shuts the transport down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            if this.failed.is_none() {
                // A connection already closed both ways has nothing to send.
                let r = this.with_write_traffic(|out, w| out.close_notify(w));
                if let Err(e) = r {
                    if e.kind() != io::ErrorKind::BrokenPipe {
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
        ready!(this.out.poll_flush(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
