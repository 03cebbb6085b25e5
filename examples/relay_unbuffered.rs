//! Issue 18 goal 1: does rustls's unbuffered API make the data relay cheaper?
//!
//! In one process, over loopback TCP: a TLS client sends N MiB → the relay
//! (TLS server towards the client, TLS client towards the server) → a TLS
//! server that reads and counts. Client, relay and server each run on their
//! own thread with a current-thread tokio runtime, so the relay thread's CPU
//! time (`/proc/thread-self/stat`, `schedstat`) is the relay's alone. The
//! relay is implemented twice:
//!
//! - `tokio`: tokio-rustls streams over a 64 KiB read-ahead layer (as
//!   ftpsgate's data legs had before `src/stream/utls.rs`) and the loop of
//!   `src/data/relay.rs` (read, take what else is ready, write all; buffer
//!   from 16 KiB growing ×4 to 256 KiB). Per byte: the socket read into the
//!   read-ahead buffer, a copy into rustls's deframer buffer, a decrypt in
//!   place, a copy into rustls's received-plaintext queue, a copy out into
//!   the relay's buffer, a copy into a new record buffer to encrypt in place,
//!   the socket write (`writev`). `tokio-noreadahead`: the same without the
//!   read-ahead layer (rustls then `recv`s at most ~4 KiB at a time).
//!   `RELAY_READAHEAD_KIB=256` sets the read-ahead size (default 64).
//! - `unbuffered`: `UnbufferedServerConnection`/`UnbufferedClientConnection`
//!   over plain `TcpStream`s. The socket reads into the relay's own buffer,
//!   rustls decrypts there in place (0.23 still copies each record into its
//!   plaintext queue, `next_record` lends it), `WriteTraffic::encrypt` copies
//!   it into the relay's output buffer and seals it there, one write. One
//!   user-space copy and two allocations per record fewer.
//!
//! Both use ring (ftpsgate's provider) and TLS 1.3 with its default suite
//! (AES-256-GCM). The handshakes are outside the measured span. No idle
//! timer in either (ftpsgate's is one timer per relay, not per buffer).
//!
//! ```text
//! cargo run --release --example relay_unbuffered -- tokio|tokio-noreadahead|unbuffered [MiB] [rounds]
//! ```
//!
//! Prints one line per round: relay thread user/sys seconds and
//! on-CPU seconds per GiB. Both counters move in scheduler ticks for a
//! running thread (a few ms), so relay 256 MiB or more. Under `valgrind --tool=callgrind
//! --separate-threads=yes` the relay thread is the second thread.

use std::io::{self, Read as _};
use std::sync::Arc;
use std::time::Instant;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The relay's largest buffer, as in `src/data/relay.rs`.
const RELAY_BUF: usize = 256 * 1024;
/// Room for one TLS 1.3 record's header, content type and tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "tokio".into());
    if !["tokio", "tokio-noreadahead", "unbuffered"].contains(&mode.as_str()) {
        eprintln!("usage: relay_unbuffered tokio|tokio-noreadahead|unbuffered [MiB] [rounds]");
        std::process::exit(64);
    }
    let mib: u64 = args.next().map_or(Ok(1024), |a| a.parse())?;
    let rounds: u32 = args.next().map_or(Ok(1), |a| a.parse())?;
    let (client_cfg, server_cfg) = configs()?;
    for _ in 0..rounds {
        round(&mode, mib << 20, &client_cfg, &server_cfg)?;
    }
    Ok(())
}

/// Self-signed P-256 certificate for `localhost`; ring; TLS 1.3 only; no
/// tickets (nothing arrives on the relay's write side while it relays).
fn configs() -> Res<(Arc<ClientConfig>, Arc<ServerConfig>)> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    server.send_tls13_tickets = 0;
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(client), Arc::new(server)))
}

/// This thread's CPU time: (user s, sys s) from `stat` (clock ticks) and
/// on-CPU ns from `schedstat`.
fn thread_cpu() -> (f64, f64, f64) {
    let mut stat = String::new();
    let mut sched = String::new();
    let ok = std::fs::File::open("/proc/thread-self/stat")
        .and_then(|mut f| f.read_to_string(&mut stat))
        .and_then(|_| std::fs::File::open("/proc/thread-self/schedstat"))
        .and_then(|mut f| f.read_to_string(&mut sched));
    if ok.is_err() {
        return (0.0, 0.0, 0.0);
    }
    // Fields after the command name's closing parenthesis: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ
    let ut = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    let st = f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    let on_cpu = sched
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9;
    (ut, st, on_cpu)
}

fn rt() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn round(
    mode: &str,
    bytes: u64,
    client_cfg: &Arc<ClientConfig>,
    server_cfg: &Arc<ServerConfig>,
) -> Res<()> {
    // Listeners first (port 0: loopback, any free port), so nobody races.
    let std_relay = std::net::TcpListener::bind("127.0.0.1:0")?;
    let std_server = std::net::TcpListener::bind("127.0.0.1:0")?;
    let relay_addr = std_relay.local_addr()?;
    let server_addr = std_server.local_addr()?;

    let label = mode.to_string();
    let mode = mode.to_string();
    let (ccfg, scfg) = (client_cfg.clone(), server_cfg.clone());
    // The relay thread is spawned first: under callgrind --separate-threads it is thread 2.
    let relay = std::thread::Builder::new().name("relay".into()).spawn(
        move || -> Res<(f64, f64, f64, u64)> {
            rt()?.block_on(async move {
                std_relay.set_nonblocking(true)?;
                let lis = TcpListener::from_std(std_relay)?;
                let (src, _) = lis.accept().await?;
                let dst = TcpStream::connect(server_addr).await?;
                src.set_nodelay(true)?;
                dst.set_nodelay(true)?;
                if mode == "tokio" {
                    tokio_relay(ReadAhead::new(src), ReadAhead::new(dst), scfg, ccfg).await
                } else if mode == "tokio-noreadahead" {
                    tokio_relay(src, dst, scfg, ccfg).await
                } else {
                    unbuffered_relay(src, dst, scfg, ccfg).await
                }
            })
        },
    )?;
    let (ccfg, scfg) = (client_cfg.clone(), server_cfg.clone());
    let server = std::thread::spawn(move || -> Res<u64> {
        rt()?.block_on(async move {
            std_server.set_nonblocking(true)?;
            let lis = TcpListener::from_std(std_server)?;
            let (tcp, _) = lis.accept().await?;
            let mut tls = tokio_rustls::TlsAcceptor::from(scfg).accept(tcp).await?;
            let mut buf = vec![0u8; RELAY_BUF];
            let mut got = 0u64;
            loop {
                match tls.read(&mut buf).await? {
                    0 => break,
                    n => got += n as u64,
                }
            }
            Ok(got)
        })
    });
    let client = std::thread::spawn(move || -> Res<()> {
        rt()?.block_on(async move {
            let tcp = TcpStream::connect(relay_addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("localhost")?;
            let mut tls = tokio_rustls::TlsConnector::from(ccfg)
                .connect(name, tcp)
                .await?;
            let chunk = vec![0x5au8; RELAY_BUF];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                tls.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            tls.shutdown().await?;
            Ok(())
        })
    });
    let started = Instant::now();
    client.join().map_err(|_| "client panicked")??;
    let (ut, st, on_cpu, relayed) = relay.join().map_err(|_| "relay panicked")??;
    let got = server.join().map_err(|_| "server panicked")??;
    if got != bytes || relayed != bytes {
        return Err(format!("sent {bytes}, relayed {relayed}, received {got}").into());
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!(
        "{:10} {} MiB relayed: user {:.3} s sys {:.3} s per GiB (user+sys {:.3}), on-CPU {:.3} s/GiB, wall {:.2} s",
        label,
        bytes >> 20,
        ut / gib,
        st / gib,
        (ut + st) / gib,
        on_cpu / gib,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The relay as ftpsgate runs it (`src/data/relay.rs` without the idle
/// timer). Returns the relay thread's (user, sys, on-CPU) seconds spent
/// relaying, and the byte count.
async fn tokio_relay<T: AsyncRead + AsyncWrite + Unpin>(
    src: T,
    dst: T,
    scfg: Arc<ServerConfig>,
    ccfg: Arc<ClientConfig>,
) -> Res<(f64, f64, f64, u64)> {
    let mut src = tokio_rustls::TlsAcceptor::from(scfg).accept(src).await?;
    let name = ServerName::try_from("localhost")?;
    let mut dst = tokio_rustls::TlsConnector::from(ccfg)
        .connect(name, dst)
        .await?;
    let t0 = thread_cpu();
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let mut n = read_some(&mut src, &mut buf).await?;
        if n == 0 {
            break;
        }
        let end = gather(&mut src, &mut buf, &mut n).await;
        dst.write_all(&buf[..n]).await?;
        total += n as u64;
        if n == buf.len() && n < RELAY_BUF {
            buf.resize((n * 4).min(RELAY_BUF), 0);
        }
        match end {
            Some(Ok(())) => break,
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    dst.shutdown().await?;
    let t1 = thread_cpu();
    Ok((t1.0 - t0.0, t1.1 - t0.1, t1.2 - t0.2, total))
}

/// What ftpsgate's read-ahead layer did for data legs before `stream::utls`: one `recv` of up to
/// 64 KiB, rustls's small reads served from memory.
struct ReadAhead {
    io: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

/// `RELAY_READAHEAD_KIB` (default 64, the removed read-ahead layer's chunk).
fn readahead_kib() -> usize {
    std::env::var("RELAY_READAHEAD_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

impl ReadAhead {
    fn new(io: TcpStream) -> Self {
        ReadAhead {
            io,
            buf: vec![0; readahead_kib() * 1024],
            pos: 0,
            end: 0,
        }
    }
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            if out.remaining() >= this.buf.len() {
                return std::pin::Pin::new(&mut this.io).poll_read(cx, out);
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            std::task::ready!(std::pin::Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            this.pos = 0;
            this.end = rb.filled().len();
        }
        let n = out.remaining().min(this.end - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReadAhead {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

async fn read_some<R: AsyncRead + Unpin>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(buf);
        std::pin::Pin::new(&mut *src)
            .poll_read(cx, &mut rb)
            .map_ok(|()| rb.filled().len())
    })
    .await
}

/// As `src/data/relay.rs`: read more while the source has bytes ready.
async fn gather<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut [u8],
    n: &mut usize,
) -> Option<io::Result<()>> {
    std::future::poll_fn(|cx| {
        while *n < buf.len() {
            let mut rb = ReadBuf::new(&mut buf[*n..]);
            match std::pin::Pin::new(&mut *src).poll_read(cx, &mut rb) {
                std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    return std::task::Poll::Ready(Some(Ok(())))
                }
                std::task::Poll::Ready(Ok(())) => *n += rb.filled().len(),
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Some(Err(e))),
                std::task::Poll::Pending => break,
            }
        }
        std::task::Poll::Ready(None)
    })
    .await
}

/// Both unbuffered connection types, so one driver serves both legs.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, tls: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(tls)
    }
}

/// Received TLS bytes not yet processed: `buf[start..end]`. Compacted only
/// when the free tail is too small for another record, so the partial record
/// left after a read is not moved on every turn.
struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    fn new() -> Self {
        InBuf {
            buf: vec![0u8; RELAY_BUF],
            start: 0,
            end: 0,
        }
    }

    fn pending(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    fn discard(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Free space to read into, after compacting if less than a record fits.
    fn space(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < 16 * 1024 + RECORD_OVERHEAD + 256 && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// One read (waiting), then whatever else the socket has (not waiting).
    async fn fill(&mut self, sock: &TcpStream) -> io::Result<usize> {
        let mut got = loop {
            sock.readable().await?;
            match sock.try_read(self.space()) {
                Ok(n) => {
                    self.end += n;
                    break n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if got == 0 {
            return Ok(0);
        }
        while self.buf.len() > self.end {
            match sock.try_read(self.space()) {
                Ok(0) => break,
                Ok(n) => {
                    self.end += n;
                    got += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

/// What the handshake driver does next, decided while rustls's state borrows
/// the buffers.
enum Next {
    Read,
    Send,
    Done,
}

/// Drives a handshake until application data may be written. Bytes that
/// arrived after it (early application data) stay in `inbuf`.
async fn handshake<C: Unbuffered>(
    conn: &mut C,
    sock: &mut TcpStream,
    inbuf: &mut InBuf,
) -> Res<()> {
    let mut out = vec![0u8; 16 * 1024];
    let mut out_len = 0;
    loop {
        let status = conn.process(inbuf.pending());
        let discard = status.discard;
        let next = match status.state? {
            ConnectionState::EncodeTlsData(mut e) => loop {
                match e.encode(&mut out[out_len..]) {
                    Ok(n) => {
                        out_len += n;
                        break None;
                    }
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        out.resize(out_len + required_size, 0)
                    }
                    Err(e) => return Err(e.into()),
                }
            },
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                Some(Next::Send)
            }
            ConnectionState::BlockedHandshake => Some(Next::Read),
            // Handshake complete (possibly with data already received).
            _ => Some(Next::Done),
        };
        inbuf.discard(discard);
        match next {
            None => {}
            Some(Next::Send) => {
                sock.write_all(&out[..out_len]).await?;
                out_len = 0;
            }
            Some(Next::Read) => {
                let got = inbuf.fill(sock).await?;
                if got == 0 {
                    return Err("peer closed during the handshake".into());
                }
            }
            Some(Next::Done) => {
                if out_len > 0 {
                    sock.write_all(&out[..out_len]).await?;
                }
                return Ok(());
            }
        }
    }
}

/// The same relay on rustls's unbuffered API.
async fn unbuffered_relay(
    mut src_sock: TcpStream,
    mut dst_sock: TcpStream,
    scfg: Arc<ServerConfig>,
    ccfg: Arc<ClientConfig>,
) -> Res<(f64, f64, f64, u64)> {
    let mut src = UnbufferedServerConnection::new(scfg)?;
    let mut dst = UnbufferedClientConnection::new(ccfg, ServerName::try_from("localhost")?)?;
    let mut inbuf = InBuf::new();
    let mut dst_in = InBuf::new();
    handshake(&mut src, &mut src_sock, &mut inbuf).await?;
    handshake(&mut dst, &mut dst_sock, &mut dst_in).await?;
    let t0 = thread_cpu();
    let mut out = vec![0u8; RELAY_BUF + 64 * RECORD_OVERHEAD];
    let mut total = 0u64;
    let mut peer_closed = false;
    loop {
        // Decrypt every complete record received, encrypting each into `out`.
        let mut out_len = 0;
        loop {
            let status = src.process(inbuf.pending());
            let discard = status.discard;
            let more = match status.state? {
                ConnectionState::ReadTraffic(mut records) => {
                    let status = dst.process(&mut []);
                    let ConnectionState::WriteTraffic(mut w) = status.state? else {
                        return Err("backend leg not writable".into());
                    };
                    while let Some(rec) = records.next_record() {
                        let payload = rec?.payload;
                        if out.len() - out_len < payload.len() + RECORD_OVERHEAD {
                            out.resize(out_len + payload.len() + RECORD_OVERHEAD, 0);
                        }
                        match w.encrypt(payload, &mut out[out_len..]) {
                            Ok(n) => out_len += n,
                            Err(EncryptError::InsufficientSize(_)) => {
                                return Err("record larger than expected".into())
                            }
                            Err(e) => return Err(e.into()),
                        }
                        total += payload.len() as u64;
                    }
                    true
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    peer_closed = true;
                    false
                }
                // Needs more bytes.
                _ => false,
            };
            inbuf.discard(discard);
            if !more {
                break;
            }
        }
        if out_len > 0 {
            dst_sock.write_all(&out[..out_len]).await?;
        }
        if peer_closed {
            break;
        }
        if inbuf.fill(&src_sock).await? == 0 {
            return Err("client closed without close_notify".into());
        }
    }
    // close_notify, then FIN.
    let status = dst.process(&mut []);
    if let ConnectionState::WriteTraffic(mut w) = status.state? {
        let n = w.queue_close_notify(&mut out)?;
        dst_sock.write_all(&out[..n]).await?;
    }
    dst_sock.shutdown().await?;
    let t1 = thread_cpu();
    Ok((t1.0 - t0.0, t1.1 - t0.1, t1.2 - t0.2, total))
}
