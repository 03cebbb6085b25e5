//! Copies one transfer's bytes from one data leg to the other, without
//! interpreting them (TYPE A/I, MODE S all pass through), then ends the
//! destination properly: TLS `close_notify` and FIN, so the receiver can tell
//! a complete file from a truncated one.
//!
//! Cost per byte is what matters here (a relay is two AES-GCM passes plus
//! copies), so the loop keeps the per-buffer work small:
//! - after a read, whatever else the source already has (further decrypted
//!   TLS records, bytes in the socket) is taken without waiting, so one write
//!   carries many 16 KiB records and the TLS layer sends them with one
//!   `writev` instead of one syscall and one loop turn per record;
//! - the idle limit is one timer for the whole relay, re-armed only when it
//!   fires (a coarse check against the time of the last progress) instead of
//!   a timer registered and cancelled around every read and every write;
//! - when both legs are TLS (and no bandwidth cap applies), records move
//!   without the relay's buffer: each one's plaintext, decrypted in place in
//!   the source's input buffer, is sealed straight into the destination's
//!   output buffer ([`Records`]), one copy per byte instead of two.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::stream::utls::Records;

/// A data leg: a byte stream whose TLS records, when it has them, the relay
/// may move itself.
pub(crate) trait Leg {
    /// The leg's record layer, when it is TLS.
    fn records(&mut self) -> Option<&mut dyn Records> {
        None
    }
}

/// Large enough that TLS records (16 KiB) are filled and syscalls amortised.
const RELAY_BUF: usize = 256 * 1024;

/// The buffer a relay starts with; it grows (×4, up to [`RELAY_BUF`]) each time
/// one turn fills it. Most transfers of a short session (a listing, a small
/// file) never fill 16 KiB: they no longer allocate and zero 256 KiB each
/// (a measurable part of a short session's CPU), and a thousand idle-ish
/// transfers hold 16 MiB rather than 256 MiB.
const RELAY_BUF_START: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("reading from {side}: {source}")]
    Read {
        side: &'static str,
        source: io::Error,
    },
    #[error("writing to {side}: {source}")]
    Write {
        side: &'static str,
        source: io::Error,
    },
    #[error("no data from {side} for {limit:?}")]
    Idle { side: &'static str, limit: Duration },
    #[error("{side} closed the TLS data connection without close_notify (truncated)")]
    Truncated { side: &'static str },
}

/// How one relay behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayOpts {
    /// Longest wait for a read or write.
    pub idle: Duration,
    /// A TLS source ending without `close_notify` is an error (see `relay`).
    pub strict_eof: bool,
    /// Bandwidth cap in bytes per second (listener `limits.bandwidth`).
    pub rate: Option<u64>,
}

/// The relay's idle limit: one sleep for the whole relay. Progress only
/// records the time (no timer work); when the sleep fires before `limit` has
/// passed since the last progress, it is moved to last progress + `limit`.
struct Watchdog {
    limit: Duration,
    last: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// What stopped an operation run under the [`Watchdog`].
enum Stop<E> {
    Idle,
    Err(E),
}

impl Watchdog {
    fn new(limit: Duration) -> Self {
        let last = Instant::now();
        Watchdog {
            limit,
            last,
            sleep: Box::pin(tokio::time::sleep_until(last + limit)),
        }
    }

    fn progress(&mut self) {
        self.last = Instant::now();
    }

    /// Polls `op` until it is ready, or fails with `Stop::Idle` when nothing
    /// progressed for `limit`.
    async fn run<T, E>(
        &mut self,
        mut op: impl FnMut(&mut std::task::Context<'_>) -> Poll<Result<T, E>>,
    ) -> Result<T, Stop<E>> {
        poll_fn(|cx| {
            if let Poll::Ready(r) = op(cx) {
                return Poll::Ready(r.map_err(Stop::Err));
            }
            while self.sleep.as_mut().poll(cx).is_ready() {
                let due = self.last + self.limit;
                if Instant::now() >= due {
                    return Poll::Ready(Err(Stop::Idle));
                }
                self.sleep.as_mut().reset(due);
            }
            Poll::Pending
        })
        .await
    }
}

/// Relay `src` → `dst` until `src` ends, then shut `dst` down. Returns the
/// number of bytes relayed.
///
/// A TLS peer that closes TCP without `close_notify` cannot be told apart from
/// a truncation (RFC 4217 §8 uses close_notify to mark the end of data). With
/// `strict_eof` that is an error — used for uploads from clients, where
/// passing the short file on as complete would lose data silently. Without it
/// (data from backends, which confirm completeness with their own `226`) it
/// is accepted and logged.
pub(crate) async fn relay<R, W>(
    src: &mut R,
    src_side: &'static str,
    dst: &mut W,
    dst_side: &'static str,
    opts: RelayOpts,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin + Leg,
    W: AsyncWrite + Unpin + Leg,
{
    let mut dog = Watchdog::new(opts.idle);
    let total = match (opts.rate, src.records(), dst.records()) {
        (None, Some(s), Some(d)) => {
            let ends = Ends {
                src_side,
                dst_side,
                strict_eof: opts.strict_eof,
            };
            relay_records(s, d, ends, &mut dog).await?
        }
        _ => relay_bytes(src, src_side, dst, dst_side, opts, &mut dog).await?,
    };
    dog.progress();
    match dog.run(|cx| Pin::new(&mut *dst).poll_shutdown(cx)).await {
        Ok(()) => Ok(total),
        Err(Stop::Err(source)) => Err(RelayError::Write {
            side: dst_side,
            source,
        }),
        Err(Stop::Idle) => Err(RelayError::Idle {
            side: dst_side,
            limit: opts.idle,
        }),
    }
}

/// Which leg is which, and how the source may end.
#[derive(Clone, Copy)]
struct Ends {
    src_side: &'static str,
    dst_side: &'static str,
    strict_eof: bool,
}

impl Ends {
    /// The source ended (`Ok`) or failed: whether that ends the relay
    /// cleanly (a lenient TLS end without close_notify does, see [`relay`]).
    fn source_end(&self, end: io::Result<()>) -> Result<(), RelayError> {
        match end {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                if self.strict_eof {
                    return Err(RelayError::Truncated {
                        side: self.src_side,
                    });
                }
                tracing::debug!(
                    side = self.src_side,
                    "data peer closed without TLS close_notify"
                );
                Ok(())
            }
            Err(source) => Err(RelayError::Read {
                side: self.src_side,
                source,
            }),
        }
    }
}

/// Both legs TLS: records' plaintext goes from the source's input buffer
/// straight into the destination's output buffer. Same turns as
/// [`relay_bytes`]: wait for some, take what else is ready (up to
/// [`RELAY_BUF`]), send it all.
async fn relay_records(
    src: &mut dyn Records,
    dst: &mut dyn Records,
    ends: Ends,
    dog: &mut Watchdog,
) -> Result<u64, RelayError> {
    let limit = dog.limit;
    let mut total = 0u64;
    let mut sealing: Option<io::Error> = None;
    loop {
        let mut sink = |p: &[u8]| {
            if sealing.is_none() {
                if let Err(e) = dst.seal(p) {
                    sealing = Some(e);
                }
            }
        };
        let first = dog
            .run(|cx| src.poll_records(cx, RELAY_BUF, &mut sink))
            .await;
        let mut n = match first {
            Err(Stop::Idle) => {
                return Err(RelayError::Idle {
                    side: ends.src_side,
                    limit,
                })
            }
            Err(Stop::Err(e)) => {
                ends.source_end(Err(e))?;
                return Ok(total);
            }
            Ok(0) => return Ok(total),
            Ok(n) => n,
        };
        // Take what else is ready, without waiting; an end or error seen
        // here comes back on the next turn's read.
        poll_fn(|cx| {
            while n < RELAY_BUF {
                match src.poll_records(cx, RELAY_BUF - n, &mut sink) {
                    Poll::Ready(Ok(m)) if m > 0 => n += m,
                    _ => break,
                }
            }
            Poll::Ready(())
        })
        .await;
        if let Some(source) = sealing.take() {
            return Err(RelayError::Write {
                side: ends.dst_side,
                source,
            });
        }
        dog.progress();
        dog.run(|cx| dst.poll_send(cx)).await.map_err(|s| match s {
            Stop::Idle => RelayError::Idle {
                side: ends.dst_side,
                limit,
            },
            Stop::Err(source) => RelayError::Write {
                side: ends.dst_side,
                source,
            },
        })?;
        dog.progress();
        total += n as u64;
    }
}

/// Any legs: through the relay's own buffer.
async fn relay_bytes<R, W>(
    src: &mut R,
    src_side: &'static str,
    dst: &mut W,
    dst_side: &'static str,
    opts: RelayOpts,
    dog: &mut Watchdog,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let RelayOpts {
        idle,
        strict_eof,
        rate,
    } = opts;
    let ends = Ends {
        src_side,
        dst_side,
        strict_eof,
    };
    // Under a bandwidth cap, read at most a tenth of a second's worth at a
    // time so the pace is smooth rather than bursts of 256 KiB.
    let chunk = rate.map_or(RELAY_BUF, |r| {
        (r / 10).clamp(1024, RELAY_BUF as u64) as usize
    });
    let mut buf = vec![0u8; chunk.min(RELAY_BUF_START)];
    let started = Instant::now();
    let mut total = 0u64;
    // The end of the source (or its error) seen while gathering, to act on
    // once the bytes before it are written.
    let mut deferred: Option<io::Result<()>> = None;
    loop {
        let mut n = 0;
        let end = match deferred.take() {
            Some(end) => Some(end),
            None => match dog.run(|cx| read_some(src, cx, &mut buf)).await {
                Err(Stop::Idle) => {
                    return Err(RelayError::Idle {
                        side: src_side,
                        limit: idle,
                    })
                }
                Err(Stop::Err(e)) => Some(Err(e)),
                Ok(0) => Some(Ok(())),
                Ok(got) => {
                    n = got;
                    // Take what else is ready, without waiting.
                    deferred = gather(src, &mut buf, &mut n).await;
                    None
                }
            },
        };
        if let Some(end) = end {
            ends.source_end(end)?;
            return Ok(total);
        }
        dog.progress();
        write_all(dst, &buf[..n], dst_side, dog).await?;
        total += n as u64;
        if n == buf.len() && n < chunk {
            // A full turn: the source is fast, give it room.
            buf.resize((n * 4).min(chunk), 0);
        }
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
            dog.progress();
        }
    }
}

/// One `poll_read` into `buf`: the number of bytes read (0 at the end).
fn read_some<R: AsyncRead + Unpin>(
    src: &mut R,
    cx: &mut std::task::Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut rb = ReadBuf::new(buf);
    match Pin::new(src).poll_read(cx, &mut rb) {
        Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Reads more into `buf[*n..]` while the source has bytes ready, without
/// waiting. Returns the end of the source (`Ok`) or its error when one came
/// up, for the caller to act on after writing `buf[..*n]`.
async fn gather<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut [u8],
    n: &mut usize,
) -> Option<io::Result<()>> {
    poll_fn(|cx| {
        while *n < buf.len() {
            match read_some(src, cx, &mut buf[*n..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Some(Ok(()))),
                Poll::Ready(Ok(m)) => *n += m,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => break,
            }
        }
        Poll::Ready(None)
    })
    .await
}

/// Writes all of `data` (what a TLS stream still buffers goes out at the
/// latest with the shutdown). Every partial write counts as progress.
async fn write_all<W: AsyncWrite + Unpin>(
    dst: &mut W,
    mut data: &[u8],
    side: &'static str,
    dog: &mut Watchdog,
) -> Result<(), RelayError> {
    while !data.is_empty() {
        let limit = dog.limit;
        let n = dog
            .run(|cx| Pin::new(&mut *dst).poll_write(cx, data))
            .await
            .map_err(|s| match s {
                Stop::Idle => RelayError::Idle { side, limit },
                Stop::Err(source) => RelayError::Write { side, source },
            })?;
        if n == 0 {
            return Err(RelayError::Write {
                side,
                source: io::ErrorKind::WriteZero.into(),
            });
        }
        data = &data[n..];
        dog.progress();
    }
    Ok(())
}

/// After an upload: read whatever the backend still sends on the data
/// connection until it closes. vsftpd sends TLS 1.3 session tickets there;
/// closing with them unread makes the kernel send a reset, and vsftpd then
/// drops the end of the file (see real-servers.md). Reading also picks up
/// those tickets for the next data connection's resumption.
pub(crate) async fn drain<R: AsyncRead + Unpin>(src: &mut R, limit: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(limit, async {
        loop {
            match src.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::task::Context;

    /// A source with a script of poll results: bytes, an error, or pending
    /// (wakes itself at once, like a socket that got more data).
    enum Step {
        Bytes(usize),
        Err(io::ErrorKind),
        Pending,
    }

    struct Script(VecDeque<Step>);

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                None => Poll::Ready(Ok(())),
                Some(Step::Bytes(n)) => {
                    let n = n.min(buf.remaining());
                    buf.put_slice(&vec![7u8; n]);
                    Poll::Ready(Ok(()))
                }
                Some(Step::Err(k)) => Poll::Ready(Err(k.into())),
                Some(Step::Pending) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }

    /// Records the size of every write.
    #[derive(Default)]
    struct Sink {
        writes: Vec<usize>,
        shut: bool,
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    impl Leg for Script {}
    impl Leg for Sink {}
    impl Leg for tokio::io::DuplexStream {}

    fn opts(idle_ms: u64, strict_eof: bool) -> RelayOpts {
        RelayOpts {
            idle: Duration::from_millis(idle_ms),
            strict_eof,
            rate: None,
        }
    }

    #[tokio::test]
    async fn records_ready_together_go_out_in_one_write() {
        let mut steps: VecDeque<Step> = (0..8).map(|_| Step::Bytes(16 * 1024)).collect();
        steps.push_back(Step::Pending);
        steps.extend((0..2).map(|_| Step::Bytes(16 * 1024)));
        let mut src = Script(steps);
        let mut dst = Sink::default();
        let n = relay(&mut src, "backend", &mut dst, "client", opts(5_000, false))
            .await
            .unwrap();
        assert_eq!(n, 10 * 16 * 1024);
        // The buffer starts at 16 KiB and grows ×4 each time a turn fills it:
        // 16 KiB, then four records at once, then the three left before the
        // source paused, then the last two.
        let k = 16 * 1024;
        assert_eq!(dst.writes, vec![k, 4 * k, 3 * k, 2 * k]);
        assert!(dst.shut);
    }

    #[tokio::test]
    async fn the_buffer_grows_to_its_limit_only_for_a_fast_source() {
        // A small transfer never fills the first buffer.
        let mut src = Script(VecDeque::from([Step::Bytes(1000), Step::Bytes(24)]));
        let mut dst = Sink::default();
        relay(&mut src, "backend", &mut dst, "client", opts(5_000, false))
            .await
            .unwrap();
        assert_eq!(dst.writes, vec![1024]);
        // A fast one reaches RELAY_BUF per write and no more.
        let steps: VecDeque<Step> = (0..64).map(|_| Step::Bytes(16 * 1024)).collect();
        let mut src = Script(steps);
        let mut dst = Sink::default();
        relay(&mut src, "backend", &mut dst, "client", opts(5_000, false))
            .await
            .unwrap();
        assert_eq!(dst.writes.iter().max(), Some(&RELAY_BUF));
        assert_eq!(dst.writes.iter().sum::<usize>(), 64 * 16 * 1024);
    }

    #[tokio::test]
    async fn bytes_before_a_truncation_are_written_then_it_is_an_error() {
        let steps = VecDeque::from([
            Step::Bytes(100),
            Step::Bytes(50),
            Step::Err(io::ErrorKind::UnexpectedEof),
        ]);
        let mut dst = Sink::default();
        let r = relay(
            &mut Script(steps),
            "client",
            &mut dst,
            "backend",
            opts(5_000, true),
        )
        .await;
        assert!(
            matches!(r, Err(RelayError::Truncated { side: "client" })),
            "{r:?}"
        );
        assert_eq!(dst.writes, vec![150]);
        assert!(!dst.shut, "a truncated upload must not be ended cleanly");
    }

    #[tokio::test]
    async fn lenient_eof_ends_the_relay_normally() {
        let steps = VecDeque::from([Step::Bytes(10), Step::Err(io::ErrorKind::UnexpectedEof)]);
        let mut dst = Sink::default();
        let n = relay(
            &mut Script(steps),
            "backend",
            &mut dst,
            "client",
            opts(5_000, false),
        )
        .await
        .unwrap();
        assert_eq!(n, 10);
        assert!(dst.shut);
    }

    #[tokio::test]
    async fn a_silent_source_times_out_after_the_idle_limit() {
        let (mut quiet, _keep) = tokio::io::duplex(64);
        let mut dst = Sink::default();
        let t = std::time::Instant::now();
        let r = relay(&mut quiet, "backend", &mut dst, "client", opts(150, false)).await;
        assert!(matches!(
            r,
            Err(RelayError::Idle {
                side: "backend",
                ..
            })
        ));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }

    #[tokio::test]
    async fn a_slow_but_steady_source_is_not_idle() {
        // A byte every 60 ms for 0.6 s under a 200 ms limit: the one timer
        // fires at 200 ms, sees recent progress and moves on.
        let (mut rx, mut tx) = tokio::io::duplex(64);
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                tx.write_all(b"x").await.unwrap();
            }
        });
        let mut dst = Sink::default();
        let n = relay(&mut rx, "backend", &mut dst, "client", opts(200, false))
            .await
            .unwrap();
        assert_eq!(n, 10);
        feeder.await.unwrap();
    }

    /// Both legs TLS: the records path, every byte through, the end passed
    /// on as close_notify; a source that ends without one, under
    /// `strict_eof`, is a truncation and the destination gets no
    /// close_notify either.
    #[tokio::test]
    async fn tls_legs_relay_record_by_record() {
        use crate::stream::utls::tests::{configs, pair, pattern};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (c, s) = configs(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        let data = pattern(3 << 20);
        let (mut a_client, mut a_server) = pair(&c, &s, 64 * 1024).await;
        let (mut b_client, mut b_server) = pair(&c, &s, 64 * 1024).await;
        let write = async {
            a_client.write_all(&data).await.unwrap();
            a_client.shutdown().await.unwrap();
        };
        let read = async {
            let mut got = Vec::new();
            b_server.read_to_end(&mut got).await.unwrap();
            got
        };
        let relayed = relay(
            &mut a_server,
            "client",
            &mut b_client,
            "backend",
            opts(5_000, true),
        );
        let (_, got, n) = tokio::join!(write, read, relayed);
        assert_eq!(n.unwrap(), data.len() as u64);
        assert!(got == data);

        let (a_client, mut a_server) = pair(&c, &s, 64 * 1024).await;
        let (mut b_client, mut b_server) = pair(&c, &s, 64 * 1024).await;
        let write = async move {
            let mut a_client = a_client;
            a_client.write_all(&data[..100_000]).await.unwrap();
            a_client.flush().await.unwrap();
            // The transport closes under TLS.
            a_client.get_mut().0.shutdown().await.unwrap();
        };
        let relayed = async move {
            let r = relay(
                &mut a_server,
                "client",
                &mut b_client,
                "backend",
                opts(5_000, true),
            )
            .await;
            drop(b_client);
            r
        };
        let read = async {
            let mut got = Vec::new();
            let e = b_server.read_to_end(&mut got).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            got
        };
        let (_, r, got) = tokio::join!(write, relayed, read);
        assert!(
            matches!(r, Err(RelayError::Truncated { side: "client" })),
            "{r:?}"
        );
        assert_eq!(got.len(), 100_000);
    }
}
