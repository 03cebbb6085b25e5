//! `UTls`: a TLS stream for data connections (both legs: the gateway as TLS
//! server toward clients, as TLS client toward backends, and the DMZ
//! tunnel's HTTP/2 connection). rustls does the handshake, on its
//! *unbuffered* API; after it, the records are sealed and opened here
//! ([`record`], [`own`]) with the traffic secrets rustls hands over, and
//! rustls keeps what it still owns: new secrets on a KeyUpdate, TLS 1.3
//! tickets into the resumption store. Control connections stay on
//! tokio-rustls (they upgrade and downgrade in place: `AUTH TLS`, `CCC`).
//!
//! Why: per byte relayed this is the user-space work left besides the
//! cipher. The transport is read straight into this stream's own incoming
//! buffer (one `recv` of up to 256 KiB, grown on demand from 4 KiB: most data
//! connections carry a few KiB); each record is decrypted there in place and
//! its plaintext copied once, to the caller. A write is copied once, into the
//! outgoing buffer, sealed there record by record, and goes out with one
//! `send`. rustls 0.23's own record layer, even on its unbuffered API, adds
//! two copies and two allocations per record (each decrypted record queued
//! as a new `Vec`; each sealed one built in a new `Vec` and copied out). See
//! bench/README.md, "rustls's unbuffered API in the relay" and "records
//! sealed by utls", for the measurements.
//!
//! Configs given to `UTls` must set `enable_secret_extraction` (the
//! gateway's all do); the secrets never leave this stream.
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
//! it). Post-handshake messages are processed as they are read (see
//! [`own`]): TLS 1.3 tickets reach the client config's resumption store, a
//! peer's KeyUpdate request is answered (the answer goes out with the next
//! write, flush, or right away when the transport takes it), alerts end the
//! stream.
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
use rustls::kernel::KernelConnection;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError, UnbufferedStatus};
use rustls::{
    ClientConfig, CommonState, ExtractedSecrets, HandshakeKind, ProtocolVersion, ServerConfig,
    SupportedCipherSuite,
};
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
    type Data: own::Side;
    /// `process_tls_records` of the side.
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// `dangerous_into_kernel_connection` of the side: the traffic secrets
    /// and what rustls keeps after the handshake (see [`own`]).
    fn into_kernel(self)
        -> Result<(ExtractedSecrets, KernelConnection<Self::Data>), rustls::Error>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
    fn into_kernel(
        self,
    ) -> Result<(ExtractedSecrets, KernelConnection<Self::Data>), rustls::Error> {
        self.dangerous_into_kernel_connection()
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
    fn into_kernel(
        self,
    ) -> Result<(ExtractedSecrets, KernelConnection<Self::Data>), rustls::Error> {
        self.dangerous_into_kernel_connection()
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
pub(crate) struct UTls<IO, C: Unbuffered> {
    io: IO,
    mode: Mode<C>,
    /// What the handshake settled (complete once it is done).
    info: Handshaken,
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

/// Who has the connection's state.
enum Mode<C: Unbuffered> {
    /// rustls, through the handshake.
    Handshake(C),
    /// The record layer, with the secrets rustls handed over ([`own`]).
    Own(Box<own::Own<C::Data>>),
    /// During the hand-over, and after one that failed.
    Gone,
}

/// rustls's connection, during the handshake.
fn rustls_conn<C: Unbuffered>(mode: &mut Mode<C>) -> io::Result<&mut C> {
    match mode {
        Mode::Handshake(c) => Ok(c),
        _ => Err(io::Error::other("TLS handshake already done")),
    }
}

/// `UTls` seals its own records: its configs must let rustls hand the
/// secrets over.
fn check_extraction(allowed: bool) -> io::Result<()> {
    if allowed {
        return Ok(());
    }
    Err(io::Error::other(
        "stream::utls needs a config with enable_secret_extraction",
    ))
}

/// What a handshake settled, as rustls's `CommonState` tells it: kept here
/// because the state itself goes when the records are handed over.
#[derive(Debug, Default)]
pub(crate) struct Handshaken {
    version: Option<ProtocolVersion>,
    suite: Option<SupportedCipherSuite>,
    kind: Option<HandshakeKind>,
    peer: Option<Vec<CertificateDer<'static>>>,
}

impl Handshaken {
    fn of(c: &CommonState) -> Self {
        Handshaken {
            version: c.protocol_version(),
            suite: c.negotiated_cipher_suite(),
            kind: c.handshake_kind(),
            peer: c
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect()),
        }
    }

    /// As `CommonState::protocol_version`.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// As `CommonState::negotiated_cipher_suite`.
    pub fn negotiated_cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.suite
    }

    /// As `CommonState::handshake_kind`.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// As `CommonState::peer_certificates`.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.peer.as_deref()
    }
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
            mode: Mode::Handshake(conn),
            info: Handshaken::default(),
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

    /// The transport and what the handshake settled (version, suite,
    /// resumption, peer certificates), as tokio-rustls's `get_ref`.
    pub fn get_ref(&self) -> (&IO, &Handshaken) {
        (&self.io, &self.info)
    }

    /// The transport and what the handshake settled.
    pub fn get_mut(&mut self) -> (&mut IO, &Handshaken) {
        (&mut self.io, &self.info)
    }

    /// After the handshake: notes what it settled and hands the records
    /// over from rustls to [`own`].
    fn handshake_done(&mut self) -> io::Result<()> {
        let conn = rustls_conn(&mut self.mode)?;
        self.info = Handshaken::of(conn);
        let Mode::Handshake(conn) = std::mem::replace(&mut self.mode, Mode::Gone) else {
            return Ok(());
        };
        let (secrets, kernel) = conn.into_kernel().map_err(tls_error)?;
        self.mode = Mode::Own(Box::new(own::Own::new(secrets, kernel).map_err(tls_error)?));
        Ok(())
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
        r?;
        self.handshake_done()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Our flight goes out before we wait for the peer's.
            ready!(self.out.poll_flush(&mut self.io, cx))?;
            let status = rustls_conn(&mut self.mode)?.process(self.inb.pending());
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
                Next::Done if !rustls_conn(&mut self.mode)?.is_handshaking() => {
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
            let Mode::Handshake(conn) = &mut self.mode else {
                return;
            };
            let status = conn.process(self.inb.pending());
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
        self.seal_own(Some(data))?;
        // Accepted: out it goes now as far as the transport takes it, the
        // rest before the next write, flush or shutdown.
        if let Poll::Ready(Err(e)) = self.out.poll_flush(&mut self.io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
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
        check_extraction(config.enable_secret_extraction)?;
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
        check_extraction(config.enable_secret_extraction)?;
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
        let Mode::Own(own) = &mut self.mode else {
            return Err(io::Error::other("not writable"));
        };
        own.update_tx(&mut self.out).map_err(tls_error)
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
                let r = this.seal_own(None);
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

mod own;
mod record;

pub(crate) use own::Records;

#[cfg(test)]
pub(crate) mod tests;
