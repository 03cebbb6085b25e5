//! Transport microbenchmark for the DMZ tunnel (issue 22): the same bytes
//! through QUIC (quinn, configured like `src/tunnel/mod.rs`) and through
//! HTTP/2 (h2) over one TLS-over-TCP connection, both mutual TLS 1.3 with
//! rustls + ring, over loopback, in one process.
//!
//! The stream-opening side ("client", like the edge opening streams) runs on
//! the main thread's current-thread tokio runtime; the accepting side
//! ("server") on its own thread and current-thread runtime. CPU is read per
//! side from `/proc/self/task/<tid>/schedstat` (ns on CPU) and for the whole
//! process as the sum over all its threads; wall time from the client.
//!
//! Each tunnel stream is one QUIC bidirectional stream, or one HTTP/2
//! request/response with a streaming body (request body for uploads,
//! response body for downloads). The payload is a fixed PRNG pattern; the
//! receiver compares every byte with it (a mismatch aborts the run).
//!
//! ```text
//! cargo build --profile package-test --example tunnel_transport
//! target/package-test/examples/tunnel_transport [--runs 3] [--scale 1] [--only quic,h2-16k,h2-1024k]
//! ```
//!
//! `--scale` divides the workload sizes (for a quick check). Runs are
//! interleaved: QUIC, H2 (16 KiB frames), H2 (1 MiB frames), QUIC, ...; the
//! summary gives the median of the runs per transport and workload.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

// ---- QUIC settings: copied from src/tunnel/mod.rs (branch `gate`) ----------
/// Idle timeout of a tunnel connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// Keep-alive interval.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// UDP socket buffers asked for.
const UDP_BUF: usize = 8 * 1024 * 1024;
/// Per-stream receive window (QUIC and HTTP/2 alike).
const STREAM_RWND: u32 = 4 * 1024 * 1024;
/// Per-connection receive window (QUIC and HTTP/2 alike): 1 GiB.
const CONN_RWND: u32 = 256 * STREAM_RWND;
/// QUIC send window.
const SEND_WINDOW: u64 = 64 * 1024 * 1024;
/// Concurrent streams accepted per connection.
const MAX_STREAMS: u32 = 4096;

/// ALPN of the benchmark's QUIC connection.
const ALPN_QUIC: &[u8] = b"ftpsgate-tunnel/1";
/// ALPN of the benchmark's HTTP/2 connection.
const ALPN_H2: &[u8] = b"h2";

/// Length of the repeating payload pattern.
const PATTERN_LEN: usize = 1 << 20;
/// Largest piece a sender hands to the transport at once.
const CHUNK: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;
const GIB: f64 = (1u64 << 30) as f64;

const UP: u8 = 1;
const DOWN: u8 = 2;

/// The payload: `PATTERN_LEN` PRNG bytes followed by the first `CHUNK` of
/// them again, so that any piece of at most `CHUNK` bytes is one slice.
struct Pattern(Bytes);

impl Pattern {
    fn new() -> Pattern {
        let mut v = vec![0u8; PATTERN_LEN + CHUNK];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in v[..PATTERN_LEN].chunks_mut(8) {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            b.copy_from_slice(&r[..b.len()]);
        }
        v.copy_within(..CHUNK, PATTERN_LEN);
        Pattern(Bytes::from(v))
    }

    /// Bytes `pos..pos+n` (n <= CHUNK) of stream `id`'s payload.
    fn piece(&self, id: u64, pos: u64, n: usize) -> Bytes {
        let start = ((id.wrapping_mul(40_961) + pos) % PATTERN_LEN as u64) as usize;
        self.0.slice(start..start + n)
    }

    fn expect(&self, id: u64, pos: u64, n: usize) -> &[u8] {
        let start = ((id.wrapping_mul(40_961) + pos) % PATTERN_LEN as u64) as usize;
        &self.0[start..start + n]
    }
}

/// Checks received bytes of one stream against the pattern.
struct Verifier<'a> {
    pat: &'a Pattern,
    id: u64,
    pos: u64,
}

impl Verifier<'_> {
    fn check(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(CHUNK) {
            if piece != self.pat.expect(self.id, self.pos, piece.len()) {
                bail!(
                    "stream {}: payload mismatch near byte {}",
                    self.id,
                    self.pos
                );
            }
            self.pos += piece.len() as u64;
        }
        Ok(())
    }

    fn finish(&self, len: u64) -> Result<()> {
        if self.pos != len {
            bail!("stream {}: got {} bytes, expected {len}", self.id, self.pos);
        }
        Ok(())
    }
}

// ---- certificates and TLS ---------------------------------------------------

struct Pki {
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, Vec<u8>),
    client: (CertificateDer<'static>, Vec<u8>),
}

fn pki() -> Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tunnel bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, usage: rcgen::ExtendedKeyUsagePurpose| -> Result<_> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![name.to_string()])?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::ExplicitNoCa;
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.der().clone(), key.serialize_der()))
    };
    Ok(Pki {
        ca: ca.der().clone(),
        server: leaf("localhost", rcgen::ExtendedKeyUsagePurpose::ServerAuth)?,
        client: leaf("connector", rcgen::ExtendedKeyUsagePurpose::ClientAuth)?,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pki: &Pki) -> Result<Arc<rustls::RootCertStore>> {
    let mut r = rustls::RootCertStore::empty();
    r.add(pki.ca.clone())?;
    Ok(Arc::new(r))
}

fn key(der: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec()))
}

fn server_tls(pki: &Pki, alpn: &[u8]) -> Result<rustls::ServerConfig> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(pki)?, provider())
            .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], key(&pki.server.1))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

fn client_tls(pki: &Pki, alpn: &[u8]) -> Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(pki)?)
        .with_client_auth_cert(vec![pki.client.0.clone()], key(&pki.client.1))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

// ---- QUIC ---------------------------------------------------------------------

fn quic_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_concurrent_bidi_streams(MAX_STREAMS.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window(STREAM_RWND.into());
    t.receive_window(CONN_RWND.into());
    t.send_window(SEND_WINDOW);
    Arc::new(t)
}

/// A UDP endpoint like `tunnel::endpoint`; returns it and the receive buffer got.
fn quic_endpoint(server: Option<quinn::ServerConfig>) -> Result<(quinn::Endpoint, usize)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(UDP_BUF);
    let _ = socket.set_send_buffer_size(UDP_BUF);
    let got = socket.recv_buffer_size().unwrap_or(0);
    socket.bind(&addr.into())?;
    let ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((ep, got))
}

async fn quic_serve(ep: quinn::Endpoint, pat: Arc<Pattern>) -> Result<()> {
    while let Some(inc) = ep.accept().await {
        let conn = inc.await?;
        let pat = pat.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                let pat = pat.clone();
                tokio::spawn(async move {
                    if let Err(e) = quic_serve_stream(send, recv, &pat).await {
                        eprintln!("quic server stream: {e:#}");
                        std::process::exit(1);
                    }
                });
            }
        });
    }
    Ok(())
}

async fn quic_recv(recv: &mut quinn::RecvStream, pat: &Pattern, id: u64, len: u64) -> Result<()> {
    let mut v = Verifier { pat, id, pos: 0 };
    while let Some(c) = recv.read_chunk(usize::MAX, true).await? {
        v.check(&c.bytes)?;
    }
    v.finish(len)
}

async fn quic_send(send: &mut quinn::SendStream, pat: &Pattern, id: u64, len: u64) -> Result<()> {
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(CHUNK as u64) as usize;
        send.write_chunk(pat.piece(id, pos, n)).await?;
        pos += n as u64;
    }
    send.finish()?;
    Ok(())
}

async fn quic_serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    pat: &Pattern,
) -> Result<()> {
    let mut hdr = [0u8; 17];
    recv.read_exact(&mut hdr).await?;
    let id = u64::from_be_bytes(hdr[1..9].try_into()?);
    let len = u64::from_be_bytes(hdr[9..17].try_into()?);
    match hdr[0] {
        UP => {
            quic_recv(&mut recv, pat, id, len).await?;
            send.write_all(b"k").await?;
            send.finish()?;
            // Keep the stream until the peer has the answer.
            let _ = send.stopped().await;
        }
        DOWN => {
            quic_send(&mut send, pat, id, len).await?;
            let _ = send.stopped().await;
        }
        d => bail!("bad direction {d}"),
    }
    Ok(())
}

async fn quic_stream(
    conn: &quinn::Connection,
    pat: &Pattern,
    dir: u8,
    id: u64,
    len: u64,
) -> Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut hdr = [0u8; 17];
    hdr[0] = dir;
    hdr[1..9].copy_from_slice(&id.to_be_bytes());
    hdr[9..17].copy_from_slice(&len.to_be_bytes());
    send.write_all(&hdr).await?;
    if dir == UP {
        quic_send(&mut send, pat, id, len).await?;
        let ack = recv.read_to_end(16).await?;
        if ack != b"k" {
            bail!("stream {id}: no acknowledgement");
        }
    } else {
        send.finish()?;
        quic_recv(&mut recv, pat, id, len).await?;
    }
    Ok(())
}

// ---- HTTP/2 -------------------------------------------------------------------

/// h2 settings of one variant (both sides alike).
#[derive(Clone, Copy)]
struct H2Opts {
    max_frame: u32,
}

const H2_SEND_BUF: usize = 1024 * 1024;

async fn h2_serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    opts: H2Opts,
    pat: Arc<Pattern>,
) -> Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let tls = acceptor.accept(tcp).await?;
        let mut conn = h2::server::Builder::new()
            .initial_window_size(STREAM_RWND)
            .initial_connection_window_size(CONN_RWND)
            .max_frame_size(opts.max_frame)
            .max_concurrent_streams(MAX_STREAMS)
            .max_send_buffer_size(H2_SEND_BUF)
            .handshake::<_, Bytes>(tls)
            .await?;
        let pat = pat.clone();
        tokio::spawn(async move {
            while let Some(r) = conn.accept().await {
                let Ok((req, respond)) = r else { break };
                let pat = pat.clone();
                tokio::spawn(async move {
                    if let Err(e) = h2_serve_stream(req, respond, &pat).await {
                        eprintln!("h2 server stream: {e:#}");
                        std::process::exit(1);
                    }
                });
            }
        });
    }
}

fn header_u64(h: &http::HeaderMap, name: &str) -> Result<u64> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("missing header {name}"))
}

async fn h2_recv(body: &mut h2::RecvStream, pat: &Pattern, id: u64, len: u64) -> Result<()> {
    let mut v = Verifier { pat, id, pos: 0 };
    while let Some(d) = body.data().await {
        let d = d?;
        v.check(&d)?;
        body.flow_control().release_capacity(d.len())?;
    }
    v.finish(len)
}

async fn h2_send(body: &mut h2::SendStream<Bytes>, pat: &Pattern, id: u64, len: u64) -> Result<()> {
    let mut pos = 0;
    while pos < len {
        let want = (len - pos).min(CHUNK as u64) as usize;
        body.reserve_capacity(want);
        let cap = std::future::poll_fn(|cx| body.poll_capacity(cx))
            .await
            .ok_or_else(|| anyhow!("stream {id}: closed while sending"))??;
        if cap == 0 {
            continue;
        }
        let n = cap.min(want);
        body.send_data(pat.piece(id, pos, n), false)?;
        pos += n as u64;
    }
    body.send_data(Bytes::new(), true)?;
    Ok(())
}

async fn h2_serve_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    pat: &Pattern,
) -> Result<()> {
    let id = header_u64(req.headers(), "x-id")?;
    let len = header_u64(req.headers(), "x-len")?;
    let dir = header_u64(req.headers(), "x-dir")? as u8;
    let mut body = req.into_body();
    match dir {
        UP => {
            h2_recv(&mut body, pat, id, len).await?;
            respond.send_response(http::Response::new(()), true)?;
        }
        DOWN => {
            let mut send = respond.send_response(http::Response::new(()), false)?;
            h2_send(&mut send, pat, id, len).await?;
        }
        d => bail!("bad direction {d}"),
    }
    Ok(())
}

async fn h2_stream(
    client: &h2::client::SendRequest<Bytes>,
    pat: &Pattern,
    dir: u8,
    id: u64,
    len: u64,
) -> Result<()> {
    let req = http::Request::builder()
        .method(if dir == UP { "POST" } else { "GET" })
        .uri("https://localhost/stream")
        .header("x-id", id)
        .header("x-len", len)
        .header("x-dir", u64::from(dir))
        .body(())?;
    let mut sr = client.clone().ready().await?;
    if dir == UP {
        let (resp, mut body) = sr.send_request(req, false)?;
        h2_send(&mut body, pat, id, len).await?;
        let resp = resp.await?;
        if !resp.status().is_success() {
            bail!("stream {id}: status {}", resp.status());
        }
    } else {
        let (resp, _) = sr.send_request(req, true)?;
        let resp = resp.await?;
        let mut body = resp.into_body();
        h2_recv(&mut body, pat, id, len).await?;
    }
    Ok(())
}

// ---- the two sides ------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Transport {
    Quic,
    H2 { max_frame: u32 },
}

impl Transport {
    fn name(self) -> String {
        match self {
            Transport::Quic => "quic".into(),
            Transport::H2 { max_frame } => format!("h2-{}k", max_frame / 1024),
        }
    }
}

enum Client {
    Quic(quinn::Endpoint, quinn::Connection),
    H2(
        h2::client::SendRequest<Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ),
}

/// The accepting side: its thread, its id (for schedstat) and how to stop it.
struct Server {
    tid: u32,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

fn start_server(t: Transport, pki: Arc<Pki>, pat: Arc<Pattern>) -> Result<Server> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<(u32, SocketAddr, usize)>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let join = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let serve = async {
                    match t {
                        Transport::Quic => {
                            let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(
                                server_tls(&pki, ALPN_QUIC)?,
                            )?;
                            let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
                            sc.transport_config(quic_transport());
                            let (ep, got) = quic_endpoint(Some(sc))?;
                            let _ = tx.send(Ok((thread_id(), ep.local_addr()?, got)));
                            quic_serve(ep, pat).await
                        }
                        Transport::H2 { max_frame } => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls(
                                &pki, ALPN_H2,
                            )?));
                            let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
                            let _ = tx.send(Ok((thread_id(), l.local_addr()?, 0)));
                            h2_serve(l, acceptor, H2Opts { max_frame }, pat).await
                        }
                    }
                };
                tokio::select! {
                    r = serve => if let Err(e) = r {
                        eprintln!("server: {e:#}");
                        std::process::exit(1);
                    },
                    _ = stop_rx => {}
                }
            });
        })?;
    let (tid, addr, udp_buf) = rx.recv()??;
    if t == Transport::Quic && udp_buf < UDP_BUF {
        eprintln!(
            "note: UDP receive buffer {udp_buf} bytes (asked {UDP_BUF}; net.core.rmem_max caps it)"
        );
    }
    Ok(Server {
        tid,
        addr,
        stop: Some(stop_tx),
        join: Some(join),
    })
}

async fn connect(t: Transport, pki: &Pki, addr: SocketAddr) -> Result<Client> {
    match t {
        Transport::Quic => {
            let crypto =
                quinn::crypto::rustls::QuicClientConfig::try_from(client_tls(pki, ALPN_QUIC)?)?;
            let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
            cc.transport_config(quic_transport());
            let (mut ep, _) = quic_endpoint(None)?;
            ep.set_default_client_config(cc);
            let conn = ep.connect(addr, "localhost")?.await?;
            Ok(Client::Quic(ep, conn))
        }
        Transport::H2 { max_frame } => {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(pki, ALPN_H2)?));
            let tls = connector
                .connect(ServerName::try_from("localhost")?, tcp)
                .await?;
            if let Some(cs) = tls.get_ref().1.negotiated_cipher_suite() {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| eprintln!("note: TLS suite {:?}", cs.suite()));
            }
            let (send, conn) = h2::client::Builder::new()
                .initial_window_size(STREAM_RWND)
                .initial_connection_window_size(CONN_RWND)
                .max_frame_size(max_frame)
                .max_concurrent_streams(MAX_STREAMS)
                .max_send_buffer_size(H2_SEND_BUF)
                .handshake::<_, Bytes>(tls)
                .await?;
            Ok(Client::H2(send, tokio::spawn(conn)))
        }
    }
}

// ---- workloads and measurement --------------------------------------------------

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    streams: usize,
    bytes: u64,
    dir: u8,
}

fn workloads(scale: u64) -> Vec<Workload> {
    let w = |name, streams, mib: u64, dir| Workload {
        name,
        streams,
        bytes: (mib * MIB / scale).max(1),
        dir,
    };
    vec![
        w("1x256MiB up", 1, 256, UP),
        w("1x256MiB down", 1, 256, DOWN),
        w("20x16MiB up", 20, 16, UP),
        w("20x16MiB down", 20, 16, DOWN),
        w("200x1MiB up", 200, 1, UP),
        w("200x1MiB down", 200, 1, DOWN),
    ]
}

/// Seconds of first and last stream completion.
async fn run_workload(client: &Client, w: Workload, pat: &Arc<Pattern>) -> Result<(f64, f64)> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..w.streams {
        let id = i as u64;
        let pat = pat.clone();
        match client {
            Client::Quic(_, conn) => {
                let conn = conn.clone();
                set.spawn(async move {
                    quic_stream(&conn, &pat, w.dir, id, w.bytes).await?;
                    Ok::<_, anyhow::Error>(start.elapsed())
                });
            }
            Client::H2(send, _) => {
                let send = send.clone();
                set.spawn(async move {
                    h2_stream(&send, &pat, w.dir, id, w.bytes).await?;
                    Ok::<_, anyhow::Error>(start.elapsed())
                });
            }
        }
    }
    let mut first = f64::MAX;
    let mut last: f64 = 0.0;
    while let Some(r) = set.join_next().await {
        let t = r??.as_secs_f64();
        first = first.min(t);
        last = last.max(t);
    }
    Ok((first, last))
}

/// ns on CPU of one thread of this process.
fn thread_cpu_ns(tid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// ns on CPU of all live threads of this process.
fn process_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(thread_cpu_ns)
        .sum()
}

#[derive(Clone, Copy, Default)]
struct Sample {
    mib_s: f64,
    client: f64,
    server: f64,
    total: f64,
    first: f64,
    last: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// CPU seconds per GiB sealing 256 MiB with ring AES-GCM in 16 KiB records.
fn aead_floor(alg: &'static ring::aead::Algorithm) -> Result<f64> {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(alg, &vec![7u8; alg.key_len()]).map_err(|_| anyhow!("key"))?,
    );
    let mut rec = vec![0x5au8; 16 * 1024];
    let total = 256 * MIB;
    let tid = thread_id();
    let c0 = thread_cpu_ns(tid);
    let mut n = 0u64;
    let mut done = 0;
    while done < total {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut rec,
            )
            .map_err(|_| anyhow!("seal"))?;
        std::hint::black_box(tag.as_ref());
        n += 1;
        done += rec.len() as u64;
    }
    let cpu = (thread_cpu_ns(tid) - c0) as f64 / 1e9;
    Ok(cpu / (total as f64 / GIB))
}

fn main() -> Result<()> {
    let mut runs = 3usize;
    let mut scale = 1u64;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val()?.parse()?,
            "--scale" => scale = val()?.parse::<u64>()?.max(1),
            "--only" => only = Some(val()?.split(',').map(str::to_string).collect()),
            _ => bail!(
                "usage: tunnel_transport [--runs N] [--scale D] [--only quic,h2-16k,h2-1024k]"
            ),
        }
    }
    let transports: Vec<Transport> = [
        Transport::Quic,
        Transport::H2 {
            max_frame: 16 * 1024,
        },
        Transport::H2 {
            max_frame: 1024 * 1024,
        },
    ]
    .into_iter()
    .filter(|t| only.as_ref().map_or(true, |o| o.contains(&t.name())))
    .collect();

    let pki = Arc::new(pki()?);
    let pat = Arc::new(Pattern::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // quinn's endpoint needs the runtime also when dropped.
    let _enter = rt.enter();
    let client_tid = thread_id();

    println!(
        "# AES-GCM floor (ring, seal 256 MiB in 16 KiB records, one thread): \
         AES-128-GCM {:.3} CPU s/GiB, AES-256-GCM {:.3} CPU s/GiB",
        aead_floor(&ring::aead::AES_128_GCM)?,
        aead_floor(&ring::aead::AES_256_GCM)?
    );
    println!(
        "# {:<8} {:<15} {:>8} {:>10} {:>10} {:>10} {:>7} {:>7}",
        "run", "workload", "MiB/s", "cpu_s/GiB", "client", "server", "first_s", "last_s"
    );

    let mut results: BTreeMap<(usize, Transport), Vec<Sample>> = BTreeMap::new();
    let wls = workloads(scale);
    for run in 1..=runs {
        for &t in &transports {
            let server = start_server(t, pki.clone(), pat.clone())?;
            let client = rt
                .block_on(connect(t, &pki, server.addr))
                .with_context(|| format!("connecting {}", t.name()))?;
            for (wi, w) in wls.iter().enumerate() {
                let bytes = w.bytes * w.streams as u64;
                let (c0, s0, p0) = (
                    thread_cpu_ns(client_tid),
                    thread_cpu_ns(server.tid),
                    process_cpu_ns(),
                );
                let t0 = Instant::now();
                let (first, last) = rt
                    .block_on(run_workload(&client, *w, &pat))
                    .with_context(|| format!("{} {}", t.name(), w.name))?;
                let wall = t0.elapsed().as_secs_f64();
                let (c1, s1, p1) = (
                    thread_cpu_ns(client_tid),
                    thread_cpu_ns(server.tid),
                    process_cpu_ns(),
                );
                let per_gib = |ns: u64| ns as f64 / 1e9 / (bytes as f64 / GIB);
                let s = Sample {
                    mib_s: bytes as f64 / MIB as f64 / wall,
                    client: per_gib(c1 - c0),
                    server: per_gib(s1 - s0),
                    total: per_gib(p1.saturating_sub(p0)),
                    first,
                    last,
                };
                println!(
                    "{:<2} {:<8} {:<15} {:>8.1} {:>10.3} {:>10.3} {:>10.3} {:>7.3} {:>7.3}",
                    run,
                    t.name(),
                    w.name,
                    s.mib_s,
                    s.total,
                    s.client,
                    s.server,
                    s.first,
                    s.last
                );
                results.entry((wi, t)).or_default().push(s);
            }
            // Close the client's end first, then stop the server.
            match client {
                Client::Quic(ep, conn) => {
                    conn.close(0u32.into(), b"done");
                    let _ =
                        rt.block_on(tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()));
                }
                Client::H2(send, conn) => {
                    drop(send);
                    match rt.block_on(tokio::time::timeout(Duration::from_secs(2), conn)) {
                        Ok(Ok(Ok(()))) => {}
                        other => eprintln!("h2 client connection did not end cleanly: {other:?}"),
                    }
                }
            }
            drop(server);
        }
    }

    println!("\n# median of {runs} run(s); ratio = cpu_s/GiB over QUIC's");
    println!(
        "{:<15} {:<8} {:>8} {:>10} {:>10} {:>10} {:>6}",
        "workload", "transport", "MiB/s", "cpu_s/GiB", "client", "server", "ratio"
    );
    for (wi, w) in wls.iter().enumerate() {
        let quic_total = results
            .get(&(wi, Transport::Quic))
            .map(|v| median(v.iter().map(|s| s.total).collect()));
        for &t in &transports {
            let Some(v) = results.get(&(wi, t)) else {
                continue;
            };
            let m = |f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
            let total = m(|s| s.total);
            println!(
                "{:<15} {:<8} {:>8.1} {:>10.3} {:>10.3} {:>10.3} {:>6}",
                w.name,
                t.name(),
                m(|s| s.mib_s),
                total,
                m(|s| s.client),
                m(|s| s.server),
                quic_total.map_or("-".into(), |q| format!("{:.2}", total / q)),
            );
        }
    }
    Ok(())
}
