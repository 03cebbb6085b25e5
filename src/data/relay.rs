//! Copies one transfer's bytes from one data leg to the other, without
//! interpreting them (TYPE A/I, MODE S all pass through), then ends the
//! destination properly: TLS `close_notify` and FIN, so the receiver can tell
//! a complete file from a truncated one.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Large enough that TLS records (16 KiB) are filled and syscalls amortised.
const RELAY_BUF: usize = 256 * 1024;

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
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let RelayOpts {
        idle,
        strict_eof,
        rate,
    } = opts;
    // Under a bandwidth cap, read at most a tenth of a second's worth at a
    // time so the pace is smooth rather than bursts of 256 KiB.
    let chunk = rate.map_or(RELAY_BUF, |r| {
        (r / 10).clamp(1024, RELAY_BUF as u64) as usize
    });
    let mut buf = vec![0u8; chunk];
    let started = tokio::time::Instant::now();
    let mut total = 0u64;
    loop {
        let n = match tokio::time::timeout(idle, src.read(&mut buf)).await {
            Err(_) => {
                return Err(RelayError::Idle {
                    side: src_side,
                    limit: idle,
                })
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                if strict_eof {
                    return Err(RelayError::Truncated { side: src_side });
                }
                tracing::debug!(side = src_side, "data peer closed without TLS close_notify");
                0
            }
            Ok(Err(source)) => {
                return Err(RelayError::Read {
                    side: src_side,
                    source,
                })
            }
        };
        if n == 0 {
            break;
        }
        write_all(dst, &buf[..n], dst_side, idle).await?;
        total += n as u64;
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
    }
    match tokio::time::timeout(idle, dst.shutdown()).await {
        Ok(Ok(())) => Ok(total),
        Ok(Err(source)) => Err(RelayError::Write {
            side: dst_side,
            source,
        }),
        Err(_) => Err(RelayError::Idle {
            side: dst_side,
            limit: idle,
        }),
    }
}

async fn write_all<W: AsyncWrite + Unpin>(
    dst: &mut W,
    data: &[u8],
    side: &'static str,
    idle: Duration,
) -> Result<(), RelayError> {
    match tokio::time::timeout(idle, dst.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(RelayError::Write { side, source }),
        Err(_) => Err(RelayError::Idle { side, limit: idle }),
    }
}

/// After an upload: read whatever the backend still sends on the data
/// connection until it closes. vsftpd sends TLS 1.3 session tickets there;
/// closing with them unread makes the kernel send a reset, and vsftpd then
/// drops the end of the file (see real-servers.md). Reading also picks up
/// those tickets for the next data connection's resumption.
pub(crate) async fn drain<R: AsyncRead + Unpin>(src: &mut R, limit: Duration) {
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
