//! A [`UTls`] after its handshake, when its config allows rustls to hand
//! over the traffic secrets (`enable_secret_extraction`): records are sealed
//! and opened here ([`record`]), in the stream's own buffers, and rustls keeps
//! only what it still owns after a handshake through its kernel-connection
//! API — new traffic secrets on a KeyUpdate, TLS 1.3 tickets into the
//! client's resumption store.
//!
//! What may arrive after the handshake, and what is done with it:
//! - application data: to the reader;
//! - `close_notify`: clean end of stream; TLS 1.2 warning alerts and
//!   `user_canceled`: ignored, as rustls does; any other alert ends the
//!   connection with that error;
//! - handshake messages, reassembled across records (at most
//!   [`MAX_HANDSHAKE`] bytes): a TLS 1.3 `NewSessionTicket` to a client
//!   (into its store), `KeyUpdate` (new receive keys; when the peer asks,
//!   ours is sent and the send keys move on too), a TLS 1.2 `HelloRequest`
//!   (ignored: no renegotiation); anything else is `unexpected_message`;
//! - a record that does not open is `bad_record_mac`, one too large
//!   `record_overflow`: fatal, with that alert sent to the peer (best effort).
//!
//! Sending: a TLS 1.3 connection moves its send keys on (a `KeyUpdate`)
//! before the cipher suite's confidentiality limit; a TLS 1.2 one ends with
//! an error there, as rustls does.

use std::io;
use std::task::{ready, Context, Poll};

use rustls::client::ClientConnectionData;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{AlertDescription, Error, ProtocolVersion, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::record::{self, Keys, ALERT, APPLICATION_DATA, HANDSHAKE};
use super::{tls_error, truncated, InBuf, OutBuf, RawRead, ReadEnd, UTls, Unbuffered};

/// The largest post-handshake message accepted (a ticket is a few hundred
/// bytes; rustls allows 64 KiB for any handshake message).
pub(super) const MAX_HANDSHAKE: usize = 64 * 1024;

/// Records sealed before the confidentiality limit at which a TLS 1.3
/// connection updates its send keys (rustls's own margin is similar).
const REFRESH_MARGIN: u64 = 1 << 12;

/// Handshake message types handled after the handshake.
const HELLO_REQUEST: u8 = 0;
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;

/// The side-specific part: what a peer may send after the handshake.
pub(crate) trait Side: Sized {
    /// A TLS 1.3 `NewSessionTicket` from the peer.
    fn ticket(kernel: &mut KernelConnection<Self>, body: &[u8]) -> Result<(), Error>;
}

impl Side for ClientConnectionData {
    fn ticket(kernel: &mut KernelConnection<Self>, body: &[u8]) -> Result<(), Error> {
        kernel.handle_new_session_ticket(body)
    }
}

impl Side for ServerConnectionData {
    fn ticket(_: &mut KernelConnection<Self>, _: &[u8]) -> Result<(), Error> {
        Err(unexpected("a NewSessionTicket from a client"))
    }
}

fn unexpected(what: &str) -> Error {
    Error::General(format!("unexpected message after the handshake: {what}"))
}

/// The record layer of one connection after its handshake.
pub(super) struct Own<D> {
    kernel: KernelConnection<D>,
    version: ProtocolVersion,
    tx: Keys,
    rx: Keys,
    /// Records sealed under one send key, at most (TLS 1.3 then updates it).
    tx_limit: u64,
    /// A post-handshake message not complete yet.
    hs: Vec<u8>,
}

/// What the next record in the incoming buffer was.
pub(super) enum Event {
    /// Application data at `inb.buf[range]`; the record is `len` bytes of
    /// the pending input, to be discarded once the data is taken.
    Data {
        range: std::ops::Range<usize>,
        len: usize,
    },
    /// A record handled here (and discarded): look at the next.
    Handled,
    /// `close_notify`.
    Closed,
    /// Its plaintext may be longer than the room the reader has left.
    TooBig,
    /// No complete record: read more.
    Need,
}

impl<D: Side> Own<D> {
    /// Takes over from rustls: `secrets` and the kernel connection of a
    /// handshake just completed with nothing left to send.
    pub(super) fn new(
        secrets: rustls::ExtractedSecrets,
        kernel: KernelConnection<D>,
    ) -> Result<Self, Error> {
        let version = kernel.protocol_version();
        let tx_limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        Ok(Own {
            tx: Keys::new(version, secrets.tx)?,
            rx: Keys::new(version, secrets.rx)?,
            kernel,
            version,
            tx_limit: tx_limit.saturating_sub(REFRESH_MARGIN),
            hs: Vec::new(),
        })
    }

    /// The sequence number of the next record sealed.
    #[cfg(test)]
    pub(super) fn tx_seq(&self) -> u64 {
        self.tx.seq()
    }

    /// Lowers the number of records sealed before the send keys move on.
    #[cfg(test)]
    pub(super) fn set_tx_limit(&mut self, limit: u64) {
        self.tx_limit = limit;
    }

    /// Looks at the next record of `inb` and handles all but application
    /// data. With `room`, a record whose plaintext could be longer than
    /// `room` is left unopened (`TooBig`).
    pub(super) fn next(
        &mut self,
        inb: &mut InBuf,
        out: &mut OutBuf,
        room: Option<usize>,
    ) -> Result<Event, Error> {
        let start = inb.start;
        let pending = inb.pending();
        let Some(len) = self.rx.complete_record(pending)? else {
            return Ok(Event::Need);
        };
        if room.is_some_and(|room| len.saturating_sub(self.rx.sealed_len(0)) > room) {
            return Ok(Event::TooBig);
        }
        let (typ, plain) = self.rx.open_in_place(&mut pending[..len])?;
        if typ == APPLICATION_DATA {
            if !self.hs.is_empty() {
                return Err(unexpected("data inside a handshake message"));
            }
            return Ok(Event::Data {
                range: start + plain.start..start + plain.end,
                len,
            });
        }
        let body = &pending[plain];
        let event = match typ {
            ALERT => self.alert(body)?,
            HANDSHAKE => {
                if self.hs.len() + body.len() > MAX_HANDSHAKE {
                    return Err(unexpected("a handshake message too large"));
                }
                self.hs.extend_from_slice(body);
                self.handshake_messages(out)?;
                Event::Handled
            }
            _ => return Err(unexpected("a record of an unknown type")),
        };
        inb.discard(len);
        Ok(event)
    }

    fn alert(&mut self, body: &[u8]) -> Result<Event, Error> {
        let &[level, desc] = body else {
            return Err(unexpected("a malformed alert"));
        };
        let desc = AlertDescription::from(desc);
        match desc {
            AlertDescription::CloseNotify => Ok(Event::Closed),
            AlertDescription::UserCanceled => Ok(Event::Handled),
            _ if level == 1 && self.version == ProtocolVersion::TLSv1_2 => Ok(Event::Handled),
            _ => Err(Error::AlertReceived(desc)),
        }
    }

    /// Handles the complete messages at the front of `hs`.
    fn handshake_messages(&mut self, out: &mut OutBuf) -> Result<(), Error> {
        let tls13 = self.version == ProtocolVersion::TLSv1_3;
        loop {
            let Some(&[typ, a, b, c]) = self.hs.get(..4) else {
                return Ok(());
            };
            let body_len = u32::from_be_bytes([0, a, b, c]) as usize;
            if 4 + body_len > MAX_HANDSHAKE {
                return Err(unexpected("a handshake message too large"));
            }
            if self.hs.len() < 4 + body_len {
                return Ok(());
            }
            let msg: Vec<u8> = self.hs.drain(..4 + body_len).collect();
            let body = &msg[4..];
            match typ {
                NEW_SESSION_TICKET if tls13 => D::ticket(&mut self.kernel, body)?,
                KEY_UPDATE if tls13 => {
                    // RFC 8446 §5.1: a KeyUpdate ends its record.
                    if !self.hs.is_empty() {
                        return Err(unexpected("data behind a KeyUpdate"));
                    }
                    let requested = match body {
                        [0] => false,
                        [1] => true,
                        _ => return Err(unexpected("a malformed KeyUpdate")),
                    };
                    self.rx = Keys::new(self.version, self.kernel.update_rx_secret()?)?;
                    if requested {
                        self.update_tx(out)?;
                    }
                }
                HELLO_REQUEST if !tls13 && body.is_empty() => {}
                _ => return Err(unexpected("a handshake message")),
            }
        }
    }

    /// Sends a `KeyUpdate` (not asking for the peer's) and moves the send
    /// keys on.
    pub(super) fn update_tx(&mut self, out: &mut OutBuf) -> Result<(), Error> {
        self.seal(out, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0])?;
        self.tx = Keys::new(self.version, self.kernel.update_tx_secret()?)?;
        Ok(())
    }

    /// Appends `data` to `out` sealed as records of type `typ` (at most
    /// 16 KiB of plaintext each).
    pub(super) fn seal(&mut self, out: &mut OutBuf, typ: u8, data: &[u8]) -> Result<(), Error> {
        if typ == APPLICATION_DATA && self.tx.seq() >= self.tx_limit {
            if self.version != ProtocolVersion::TLSv1_3 {
                return Err(Error::EncryptError);
            }
            self.update_tx(out)?;
        }
        let chunks = data.len().div_ceil(record::MAX_PLAIN).max(1);
        let total = data.len() + chunks * self.tx.sealed_len(0);
        let room = out.room(total);
        let mut at = 0;
        for chunk in data.chunks(record::MAX_PLAIN) {
            at += self.tx.seal(typ, chunk, &mut room[at..])?;
        }
        if data.is_empty() {
            at += self.tx.seal(typ, data, &mut room[at..])?;
        }
        out.end += at;
        Ok(())
    }

    /// A fatal alert for `e`, sealed for the peer (best effort).
    pub(super) fn fatal_alert(&mut self, out: &mut OutBuf, e: &Error) {
        let desc = match e {
            Error::DecryptError => AlertDescription::BadRecordMac,
            Error::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
            Error::AlertReceived(_) => return,
            _ => AlertDescription::UnexpectedMessage,
        };
        let _ = self.seal(out, ALERT, &[2, u8::from(desc)]);
    }
}

impl<IO, C> UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    C: Unbuffered,
    C::Data: Side,
{
    /// `poll_read`: opens records in the incoming buffer, in place, and
    /// copies their plaintext to `buf`; reads the transport when no record
    /// is complete.
    pub(super) fn poll_read_plain(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let limit = buf.remaining();
        let mut copy = |p: &[u8]| {
            let n = buf.remaining().min(p.len());
            buf.put_slice(&p[..n]);
            n
        };
        self.poll_open(cx, limit, true, &mut copy).map_ok(|_| ())
    }

    /// Opens the complete records received and hands each one's plaintext
    /// to `sink`, which takes what it can (the rest is kept for the next
    /// call), until `limit` bytes went or no record is complete; reads the
    /// transport only while nothing went. With `whole`, a record that may
    /// not fit in what is left of `limit` stays unopened once something
    /// went. The bytes handed over; `Ok(0)` at the end of the stream
    /// (close_notify); a bare close is `UnexpectedEof`, a TLS failure
    /// `InvalidData` (both once the bytes before them are handed over).
    fn poll_open(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
        whole: bool,
        sink: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Poll<io::Result<usize>> {
        let mut passed = 0;
        if self.plain_pos < self.plain.len() {
            let n = sink(&self.plain[self.plain_pos..]);
            passed += n;
            self.plain_pos += n;
            if self.plain_pos == self.plain.len() {
                self.plain.clear();
                self.plain_pos = 0;
            }
        }
        loop {
            if passed >= limit {
                return Poll::Ready(Ok(passed));
            }
            match self.read_end {
                ReadEnd::Open => {}
                ReadEnd::Closed => return Poll::Ready(Ok(passed)),
                ReadEnd::Truncated if passed > 0 => return Poll::Ready(Ok(passed)),
                ReadEnd::Truncated => return Poll::Ready(Err(truncated())),
            }
            if let Some(e) = &self.failed {
                if passed > 0 {
                    return Poll::Ready(Ok(passed));
                }
                return Poll::Ready(Err(tls_error(e.clone())));
            }
            let super::Mode::Own(own) = &mut self.mode else {
                return Poll::Ready(Err(io::Error::other("TLS record layer not set up")));
            };
            let room = (whole && passed > 0).then(|| limit - passed);
            match own.next(&mut self.inb, &mut self.out, room) {
                Ok(Event::Data { range, len }) => {
                    let data = &self.inb.buf[range];
                    let n = sink(data);
                    passed += n;
                    // Only a first record longer than the sink takes.
                    self.plain.extend_from_slice(&data[n..]);
                    self.inb.discard(len);
                }
                Ok(Event::Handled) => {}
                Ok(Event::Closed) => self.read_end = ReadEnd::Closed,
                Ok(Event::TooBig) => return Poll::Ready(Ok(passed)),
                Ok(Event::Need) => {
                    if passed > 0 {
                        return Poll::Ready(Ok(passed));
                    }
                    if ready!(self.inb.poll_fill(&mut self.io, cx))? == 0 {
                        self.read_end = ReadEnd::Truncated;
                    }
                }
                Err(e) => {
                    own.fatal_alert(&mut self.out, &e);
                    self.failed = Some(e);
                }
            }
            if !self.out.is_empty() {
                // A KeyUpdate (or an alert): out as far as the transport
                // takes it now.
                if let Poll::Ready(Err(e)) = self.out.poll_flush(&mut self.io, cx) {
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// Seals `data` (application data, or a close_notify with `None`) into
    /// the outgoing buffer.
    pub(super) fn seal_own(&mut self, data: Option<&[u8]>) -> io::Result<()> {
        let super::Mode::Own(own) = &mut self.mode else {
            return Err(io::Error::other("TLS record layer not set up"));
        };
        let r = match data {
            Some(data) => own.seal(&mut self.out, APPLICATION_DATA, data),
            None => own.seal(&mut self.out, ALERT, &[1, 0]),
        };
        r.map_err(|e| {
            self.failed = Some(e.clone());
            tls_error(e)
        })
    }

    /// Processes what the transport has ready now, without waiting (a
    /// noop-woken poll) or, with `raw`, what `raw` reads without waiting, so
    /// post-handshake messages (TLS 1.3 tickets) reach the session store of
    /// a connection about to be dropped. Plaintext is discarded. Returns the
    /// number of bytes taken from the transport (at most `limit`).
    pub fn salvage(&mut self, limit: usize, mut raw: Option<RawRead<'_, IO>>) -> usize {
        let waker = std::task::Waker::from(std::sync::Arc::new(super::NoWake));
        let mut cx = Context::from_waker(&waker);
        let mut taken = 0;
        loop {
            loop {
                let super::Mode::Own(own) = &mut self.mode else {
                    return taken;
                };
                match own.next(&mut self.inb, &mut self.out, None) {
                    Ok(Event::Data { len, .. }) => self.inb.discard(len),
                    Ok(Event::Handled) => {}
                    Ok(Event::Need) => break,
                    Ok(Event::Closed | Event::TooBig) | Err(_) => return taken,
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

/// Record-level access for the relay (`data::relay`): each record's
/// plaintext is handed over where it was decrypted and sealed straight into
/// the other stream's outgoing buffer, one copy per byte instead of two
/// (through the relay's buffer).
pub(crate) trait Records: Send {
    /// Opens the complete records received and hands each one's plaintext
    /// to `sink`, until `budget` bytes went (a record is never split) or
    /// none is complete; reads the transport only while nothing went. The
    /// bytes handed over; `Ok(0)` at the end of the stream (close_notify),
    /// the errors of `poll_read` otherwise (a bare close is
    /// `UnexpectedEof`).
    fn poll_records(
        &mut self,
        cx: &mut Context<'_>,
        budget: usize,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>>;

    /// Seals `data` into the outgoing buffer (sent by [`Records::poll_send`]).
    fn seal(&mut self, data: &[u8]) -> io::Result<()>;

    /// Sends everything sealed.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<IO, C> Records for UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    C: Unbuffered + Send,
    C::Data: Send,
{
    fn poll_records(
        &mut self,
        cx: &mut Context<'_>,
        budget: usize,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        let mut all = |p: &[u8]| {
            sink(p);
            p.len()
        };
        self.poll_open(cx, budget, false, &mut all)
    }

    fn seal(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(tls_error(e.clone()));
        }
        if self.closing {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.seal_own(Some(data))
    }

    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.out.poll_flush(&mut self.io, cx)
    }
}

impl<IO, C> crate::data::relay::Leg for UTls<IO, C>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    C: Unbuffered + Send,
    C::Data: Send,
{
    fn records(&mut self) -> Option<&mut dyn Records> {
        Some(self)
    }
}
