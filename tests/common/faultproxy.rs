//! A fault-injecting TCP proxy for tests: placed between two peers (e.g. the gateway and
//! a backend's control port), it forwards bytes both ways and misbehaves at a chosen point:
//! resets both connections, stops forwarding one direction, closes cleanly mid-stream, or
//! dribbles one direction at a fixed rate. The fault applies to every connection it accepts.
//! Dropping the proxy closes the listener and every connection it holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A direction of the proxied byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting peer to the upstream (e.g. gateway → backend: commands).
    ToUpstream,
    /// From the upstream back to the connecting peer (e.g. backend → gateway: replies).
    ToClient,
}

/// What goes wrong, per connection. `byte` counts the bytes of `dir` on that connection:
/// bytes `0..byte` are forwarded, and the fault fires when byte number `byte` (0-based)
/// arrives; if the stream never gets that far, nothing happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A transparent proxy.
    None,
    /// Both connections are reset (`SO_LINGER` 0: RST, no FIN).
    ResetAt { dir: Dir, byte: u64 },
    /// `dir` stops being forwarded (its bytes stay unread); the other direction goes on.
    StallAt { dir: Dir, byte: u64 },
    /// Both connections are closed cleanly (FIN) after `byte` bytes of `dir`.
    TruncateAt { dir: Dir, byte: u64 },
    /// `dir` is forwarded at `bytes_per_sec` (in slices of 1/100 s; 100 = 1 byte per 10 ms).
    Slow { dir: Dir, bytes_per_sec: u64 },
}

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    open: AtomicUsize,
    fired: AtomicUsize,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

/// A running proxy on 127.0.0.1.
pub struct FaultProxy {
    /// Where to connect instead of the upstream.
    pub addr: SocketAddr,
    pub upstream: SocketAddr,
    pub fault: Fault,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (any port); each accepted connection is forwarded to `upstream`
    /// with `fault` applied.
    pub async fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            // Owned by this task: aborting it drops (and so closes) every connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(tcp, upstream, fault, st.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        FaultProxy {
            addr,
            upstream,
            fault,
            stats,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Connections currently proxied (accepted and not yet finished).
    pub fn open(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    /// How many times the fault fired (over all connections).
    pub fn fired(&self) -> usize {
        self.stats.fired.load(Ordering::SeqCst)
    }

    /// Bytes forwarded in `dir`, over all connections.
    pub fn forwarded(&self, dir: Dir) -> u64 {
        match dir {
            Dir::ToUpstream => self.stats.to_upstream.load(Ordering::SeqCst),
            Dir::ToClient => self.stats.to_client.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one pump (one direction) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source closed; the destination got a FIN.
    Eof,
    /// A read or write failed (peer reset): pass the reset on.
    Error,
    Reset,
    Truncate,
}

#[derive(Clone, Copy)]
enum Cut {
    Reset,
    Stall,
    Truncate,
}

/// The part of a [`Fault`] that concerns one direction.
#[derive(Clone, Copy, Default)]
struct Rule {
    cut: Option<(u64, Cut)>,
    slow: Option<u64>,
}

fn rule(fault: Fault, dir: Dir) -> Rule {
    let mut r = Rule::default();
    match fault {
        Fault::None => {}
        Fault::ResetAt { dir: d, byte } if d == dir => r.cut = Some((byte, Cut::Reset)),
        Fault::StallAt { dir: d, byte } if d == dir => r.cut = Some((byte, Cut::Stall)),
        Fault::TruncateAt { dir: d, byte } if d == dir => r.cut = Some((byte, Cut::Truncate)),
        Fault::Slow {
            dir: d,
            bytes_per_sec,
        } if d == dir => r.slow = Some(bytes_per_sec.max(1)),
        _ => {}
    }
    r
}

struct OpenGuard(Arc<Stats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, fault: Fault, stats: Arc<Stats>) {
    stats.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(stats.clone());
    let mut up = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(_) => {
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let stalled = AtomicBool::new(false);
    let end = {
        let (cr, cw) = client.split();
        let (ur, uw) = up.split();
        let to_up = pump(
            cr,
            uw,
            rule(fault, Dir::ToUpstream),
            &stats.to_upstream,
            &stats.fired,
            &stalled,
        );
        let to_client = pump(
            ur,
            cw,
            rule(fault, Dir::ToClient),
            &stats.to_client,
            &stats.fired,
            &stalled,
        );
        tokio::pin!(to_up, to_client);
        let (mut up_done, mut client_done) = (false, false);
        loop {
            let end = tokio::select! {
                e = &mut to_up, if !up_done => { up_done = true; e }
                e = &mut to_client, if !client_done => { client_done = true; e }
            };
            match end {
                // One direction ended: keep the other going, unless it is stalled for good.
                End::Eof if !(up_done && client_done || stalled.load(Ordering::SeqCst)) => {}
                other => break other,
            }
        }
    };
    match end {
        End::Reset | End::Error => {
            let _ = client.set_zero_linger();
            let _ = up.set_zero_linger();
        }
        End::Truncate => {
            let _ = client.shutdown().await;
            let _ = up.shutdown().await;
        }
        End::Eof => {}
    }
}

async fn pump(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    rule: Rule,
    counter: &AtomicU64,
    fired: &AtomicUsize,
    stalled: &AtomicBool,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) => {
                let _ = dst.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
            Err(_) => return End::Error,
        };
        let mut chunk = &buf[..n];
        let mut cut_now = None;
        if let Some((at, cut)) = rule.cut {
            let room = at.saturating_sub(sent);
            if chunk.len() as u64 > room {
                chunk = &chunk[..room as usize];
                cut_now = Some(cut);
            }
        }
        let ok = match rule.slow {
            None => dst.write_all(chunk).await.is_ok(),
            Some(bps) => drip(&mut dst, chunk, bps, counter).await,
        };
        if !ok {
            return End::Error;
        }
        if rule.slow.is_none() {
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        sent += chunk.len() as u64;
        match cut_now {
            None => {}
            Some(cut) => {
                fired.fetch_add(1, Ordering::SeqCst);
                let _ = dst.flush().await;
                match cut {
                    Cut::Reset => return End::Reset,
                    Cut::Truncate => return End::Truncate,
                    Cut::Stall => {
                        stalled.store(true, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// Writes `data` in slices of `bps / 100` bytes (at least 1), pausing between them.
async fn drip(dst: &mut WriteHalf<'_>, data: &[u8], bps: u64, counter: &AtomicU64) -> bool {
    let slice = (bps / 100).max(1) as usize;
    let pause = Duration::from_secs_f64(slice as f64 / bps as f64);
    for part in data.chunks(slice) {
        if dst.write_all(part).await.is_err() {
            return false;
        }
        counter.fetch_add(part.len() as u64, Ordering::SeqCst);
        tokio::time::sleep(pause).await;
    }
    true
}
