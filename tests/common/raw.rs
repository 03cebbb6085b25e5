//! A minimal, fully scripted FTP/FTPS client on tokio + tokio-rustls, for tests that need
//! control over every step: which address a data connection comes from, which TLS config
//! (and so which session) it uses, what is sent before or after the transfer command.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// How long any single reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// One FTP reply (all lines of a multi-line reply joined by `\n`).
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        (100..400).contains(&self.code)
    }
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.text)
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

enum Conn {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<tokio_rustls::client::TlsStream<TcpStream>>>),
    Closed,
}

/// Outcome of one transfer command with its data connection.
#[derive(Debug)]
pub struct Transfer {
    /// Every reply to the transfer command (`150 …`, then `226 …`; or just `425 …`).
    pub replies: Vec<Reply>,
    /// Data received (downloads/lists), or the data-connection error.
    pub data: Result<Vec<u8>, String>,
    /// Whether the data-connection TLS handshake resumed a session (`None` = no TLS).
    pub resumed: Option<bool>,
}

impl Transfer {
    pub fn last(&self) -> &Reply {
        self.replies.last().expect("at least one reply")
    }
    /// True if the server finished with a 2xx after a 1xx.
    pub fn succeeded(&self) -> bool {
        self.data.is_ok()
            && self
                .replies
                .last()
                .map(|r| (200..300).contains(&r.code))
                .unwrap_or(false)
    }
    #[track_caller]
    pub fn assert_ok(&self) -> &[u8] {
        assert!(self.succeeded(), "transfer failed: {self:?}");
        self.data.as_ref().unwrap()
    }
}

/// How to open the data connection of one transfer.
#[derive(Clone, Default)]
pub struct DataPlan {
    /// TLS config for the data connection; `None` = clear data (PROT C).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Bind the data socket to this source address first.
    pub bind: Option<IpAddr>,
    /// Bytes to upload (STOR/APPE); `None` = read until EOF (RETR/LIST).
    pub upload: Option<Vec<u8>>,
}

/// A scripted FTP control connection.
pub struct RawFtp {
    conn: Conn,
    peer: SocketAddr,
    server_name: ServerName<'static>,
    /// The TLS config used on the control connection (reused for data by default).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The greeting (`220 …`, or whatever came first).
    pub greeting: Reply,
}

impl RawFtp {
    /// A control connection over an already connected socket; reads the greeting.
    async fn from_plain(tcp: TcpStream, addr: SocketAddr) -> io::Result<RawFtp> {
        let mut ftp = RawFtp {
            conn: Conn::Plain(BufReader::new(tcp)),
            peer: addr,
            server_name: ServerName::try_from("localhost").unwrap().to_owned(),
            tls: None,
            greeting: Reply {
                code: 0,
                text: String::new(),
            },
        };
        ftp.greeting = ftp.read_reply().await?;
        Ok(ftp)
    }

    /// Plain TCP connect; reads the greeting (whatever its code).
    pub async fn connect(addr: SocketAddr) -> io::Result<RawFtp> {
        let tcp = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        RawFtp::from_plain(tcp, addr).await
    }

    /// Like [`RawFtp::connect`], from source address `bind` (e.g. 127.0.0.2) if given.
    /// A connection the server closes before any greeting is an `Err`.
    pub async fn connect_from(bind: Option<IpAddr>, addr: SocketAddr) -> io::Result<RawFtp> {
        let tcp = connect_from(bind, addr).await?;
        RawFtp::from_plain(tcp, addr).await
    }

    /// Like [`RawFtp::connect_from`], but writes `preamble` (e.g. a PROXY protocol header)
    /// right after the TCP connect, before reading the greeting.
    /// A connection the server closes before any greeting is an `Err`.
    pub async fn connect_with_preamble(
        bind: Option<IpAddr>,
        addr: SocketAddr,
        preamble: &[u8],
    ) -> io::Result<RawFtp> {
        let mut tcp = connect_from(bind, addr).await?;
        tcp.write_all(preamble).await?;
        tcp.flush().await?;
        RawFtp::from_plain(tcp, addr).await
    }

    /// Implicit FTPS after a `preamble` (e.g. a PROXY protocol header), from source
    /// address `bind` if given. The preamble and the TLS ClientHello leave in one TCP
    /// segment (`TCP_CORK` until the handshake's first flight is written), so a server
    /// that reads past the end of the preamble would swallow part of the ClientHello.
    pub async fn connect_implicit_with_preamble(
        bind: Option<IpAddr>,
        addr: SocketAddr,
        preamble: &[u8],
        tls: Arc<rustls::ClientConfig>,
    ) -> io::Result<RawFtp> {
        let mut tcp = connect_from(bind, addr).await?;
        socket2::SockRef::from(&tcp).set_tcp_cork(true)?;
        tcp.write_all(preamble).await?;
        // The kernel sends a corked partial segment after at most 200 ms; the handshake
        // proceeds then (uncorking from here would race with the ClientHello write).
        RawFtp::implicit_over(tcp, addr, tls, |tcp| {
            socket2::SockRef::from(tcp).set_tcp_cork(false)
        })
        .await
    }

    /// The TLS server name (SNI, and the name verified) for the next `AUTH TLS` and for
    /// data connections; default `localhost`.
    pub fn set_server_name(&mut self, name: &str) {
        self.server_name = ServerName::try_from(name.to_string()).expect("valid server name");
    }

    /// The certificate chain the server presented on the control connection.
    pub fn peer_certificates(&self) -> Option<Vec<rustls_pki_types::CertificateDer<'static>>> {
        match &self.conn {
            Conn::Tls(s) => s
                .get_ref()
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect()),
            _ => None,
        }
    }

    /// Implicit FTPS: TLS handshake first, then the greeting.
    pub async fn connect_implicit(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> io::Result<RawFtp> {
        let tcp = TcpStream::connect(addr).await?;
        RawFtp::implicit_over(tcp, addr, tls, |_| Ok(())).await
    }

    /// The TLS handshake (server name `localhost`) on `tcp` to `addr`, then `settled` on
    /// the socket, then the greeting.
    async fn implicit_over(
        tcp: TcpStream,
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        settled: impl FnOnce(&TcpStream) -> io::Result<()>,
    ) -> io::Result<RawFtp> {
        let server_name = ServerName::try_from("localhost").unwrap().to_owned();
        let stream = tokio::time::timeout(
            REPLY_TIMEOUT,
            TlsConnector::from(tls.clone()).connect(server_name.clone(), tcp),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        settled(stream.get_ref().0)?;
        let mut ftp = RawFtp {
            conn: Conn::Tls(Box::new(BufReader::new(stream))),
            peer: addr,
            server_name,
            tls: Some(tls),
            greeting: Reply {
                code: 0,
                text: String::new(),
            },
        };
        ftp.greeting = ftp.read_reply().await?;
        Ok(ftp)
    }

    /// Explicit FTPS connect + `AUTH TLS` + handshake; panics on any failure.
    pub async fn connect_explicit(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> RawFtp {
        let mut ftp = RawFtp::connect(addr).await.expect("connect");
        assert_eq!(ftp.greeting.code, 220, "greeting: {}", ftp.greeting);
        let reply = ftp.auth_tls(tls).await.expect("AUTH TLS");
        assert_eq!(reply.code, 234, "AUTH TLS: {reply}");
        ftp
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends `AUTH TLS`; on `234` performs the handshake with `tls`.
    pub async fn auth_tls(&mut self, tls: Arc<rustls::ClientConfig>) -> io::Result<Reply> {
        let reply = self.cmd("AUTH TLS").await?;
        if reply.code != 234 {
            return Ok(reply);
        }
        let Conn::Plain(reader) = std::mem::replace(&mut self.conn, Conn::Closed) else {
            panic!("AUTH TLS on a TLS connection");
        };
        assert!(reader.buffer().is_empty(), "server sent data after 234");
        let tcp = reader.into_inner();
        let stream = tokio::time::timeout(
            REPLY_TIMEOUT,
            TlsConnector::from(tls.clone()).connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        self.conn = Conn::Tls(Box::new(BufReader::new(stream)));
        self.tls = Some(tls);
        Ok(reply)
    }

    /// TLS version negotiated on the control connection.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.conn {
            Conn::Tls(s) => s.get_ref().get_ref().1.protocol_version(),
            _ => None,
        }
    }

    /// Writes raw bytes (no CRLF added).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.conn {
            Conn::Plain(s) => {
                s.get_mut().write_all(bytes).await?;
                s.get_mut().flush().await
            }
            Conn::Tls(s) => {
                s.get_mut().write_all(bytes).await?;
                s.get_mut().flush().await
            }
            Conn::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send_raw(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    async fn read_line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        let n = match &mut self.conn {
            Conn::Plain(s) => s.read_until(b'\n', &mut buf).await?,
            Conn::Tls(s) => s.read_until(b'\n', &mut buf).await?,
            Conn::Closed => return Err(io::ErrorKind::NotConnected.into()),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "control connection closed",
            ));
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string())
    }

    /// Reads one (possibly multi-line) reply, with [`REPLY_TIMEOUT`].
    pub async fn read_reply(&mut self) -> io::Result<Reply> {
        tokio::time::timeout(REPLY_TIMEOUT, self.read_reply_inner())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply within timeout"))?
    }

    async fn read_reply_inner(&mut self) -> io::Result<Reply> {
        let first = self.read_line().await?;
        let code: u16 = first.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad reply line {first:?}"),
            )
        })?;
        let mut text = first.clone();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let line = self.read_line().await?;
                text.push('\n');
                text.push_str(&line);
                if line.starts_with(&end) {
                    break;
                }
            }
        }
        Ok(Reply { code, text })
    }

    /// Waits until the server closes the control connection; `Ok(())` on EOF/reset,
    /// `Err` if it stays open past `within` or sends something (returned in the error).
    pub async fn expect_closed(&mut self, within: Duration) -> Result<(), String> {
        let mut buf = [0u8; 512];
        let read = async {
            match &mut self.conn {
                Conn::Plain(s) => s.read(&mut buf).await,
                Conn::Tls(s) => s.read(&mut buf).await,
                Conn::Closed => Ok(0),
            }
        };
        match tokio::time::timeout(within, read).await {
            Err(_) => Err(format!("connection still open after {within:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => Err(format!(
                "unexpected data: {:?}",
                String::from_utf8_lossy(&buf[..n])
            )),
        }
    }

    /// `USER` + `PASS`; panics unless logged in (230).
    pub async fn login(&mut self, user: &str, pass: &str) {
        let r = self.cmd(&format!("USER {user}")).await.expect("USER");
        assert_eq!(r.code, 331, "USER: {r}");
        let r = self.cmd(&format!("PASS {pass}")).await.expect("PASS");
        assert_eq!(r.code, 230, "PASS: {r}");
    }

    /// `PBSZ 0` + `PROT P` (or `PROT C` if `private` is false); panics on refusal.
    pub async fn prot(&mut self, private: bool) {
        let r = self.cmd("PBSZ 0").await.expect("PBSZ");
        assert_eq!(r.code, 200, "PBSZ: {r}");
        let r = self
            .cmd(if private { "PROT P" } else { "PROT C" })
            .await
            .expect("PROT");
        assert_eq!(r.code, 200, "PROT: {r}");
    }

    /// `TYPE I`.
    pub async fn binary(&mut self) {
        let r = self.cmd("TYPE I").await.expect("TYPE");
        assert_eq!(r.code, 200, "TYPE I: {r}");
    }

    /// Explicit FTPS session ready for transfers: connect, AUTH TLS, login, PBSZ/PROT P, TYPE I.
    pub async fn ready_explicit(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> RawFtp {
        let (user, pass) = super::test_user();
        let mut ftp = RawFtp::connect_explicit(addr, tls).await;
        ftp.login(user, pass).await;
        ftp.prot(true).await;
        ftp.binary().await;
        ftp
    }

    /// `PASV`; returns the address from the `227` reply.
    pub async fn pasv(&mut self) -> SocketAddr {
        let r = self.cmd("PASV").await.expect("PASV");
        assert_eq!(r.code, 227, "PASV: {r}");
        parse_227(&r.text).unwrap_or_else(|| panic!("cannot parse {r}"))
    }

    /// The default data plan: TLS with the control connection's config (resumes), no bind.
    pub fn data_plan(&self) -> DataPlan {
        DataPlan {
            tls: self.tls.clone(),
            bind: None,
            upload: None,
        }
    }

    /// `PASV` + one transfer command (`RETR x`, `STOR x`, `LIST`) with its data connection.
    pub async fn transfer(&mut self, command: &str, plan: DataPlan) -> Transfer {
        let addr = self.pasv().await;
        self.transfer_at(addr, command, plan).await
    }

    /// One transfer command over a data connection to `addr` (from an earlier `PASV`).
    ///
    /// Like curl, it connects the data socket before sending the command, and starts the
    /// TLS handshake at once; the data side runs concurrently with the control replies.
    pub async fn transfer_at(
        &mut self,
        addr: SocketAddr,
        command: &str,
        plan: DataPlan,
    ) -> Transfer {
        let tcp = match connect_from(plan.bind, addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                return Transfer {
                    replies: vec![Reply {
                        code: 0,
                        text: format!("(data connect to {addr} failed: {e})"),
                    }],
                    data: Err(format!("connect: {e}")),
                    resumed: None,
                }
            }
        };
        let server_name = self.server_name.clone();
        let data_task = tokio::spawn(run_data(tcp, server_name, plan));
        let mut replies = Vec::new();
        match self.cmd(command).await {
            Ok(first) => {
                let prelim = first.is_preliminary();
                replies.push(first);
                if prelim {
                    match self.read_reply().await {
                        Ok(r) => replies.push(r),
                        Err(e) => replies.push(Reply {
                            code: 0,
                            text: format!("(no final reply: {e})"),
                        }),
                    }
                }
            }
            Err(e) => replies.push(Reply {
                code: 0,
                text: format!("(no reply to {command}: {e})"),
            }),
        }
        let final_is_error = replies
            .last()
            .map(|r| r.code == 0 || r.is_error())
            .unwrap_or(true);
        let (data, resumed) = if final_is_error {
            // Give the data side a moment to observe the close, then stop it.
            match tokio::time::timeout(Duration::from_secs(3), data_task).await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => (Err(format!("data task: {e}")), None),
                Err(_) => (
                    Err("data connection left open after error reply".into()),
                    None,
                ),
            }
        } else {
            match tokio::time::timeout(REPLY_TIMEOUT, data_task).await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => (Err(format!("data task: {e}")), None),
                Err(_) => (Err("data connection did not finish".into()), None),
            }
        };
        Transfer {
            replies,
            data,
            resumed,
        }
    }

    /// `RETR name` with the default plan; panics unless it succeeds; returns the bytes.
    pub async fn retr(&mut self, name: &str) -> Vec<u8> {
        let plan = self.data_plan();
        self.transfer(&format!("RETR {name}"), plan)
            .await
            .assert_ok()
            .to_vec()
    }

    /// `count` transfers in this session: even ones `RETR down`, whose data leg must resume
    /// the control session's TLS and bring SHA-256 `down_sha`; odd ones `STOR` a fresh
    /// `{prefix}{i}.bin` of `base + i` pseudo-random bytes, which must land intact in
    /// `server`'s root. `what` names the run in failure messages.
    pub async fn alternate_resumed(
        &mut self,
        (down, down_sha): (&str, &str),
        count: usize,
        (prefix, base): (&str, usize),
        server: &super::Vsftpd,
        what: &str,
    ) {
        for i in 0..count {
            if i % 2 == 0 {
                let plan = self.data_plan();
                let t = self.transfer(&format!("RETR {down}"), plan).await;
                assert_eq!(
                    t.resumed,
                    Some(true),
                    "{what}: data leg {i} not resumed: {t:?}"
                );
                assert_eq!(
                    super::sha256_bytes(t.assert_ok()),
                    down_sha,
                    "{what}: download {i}"
                );
            } else {
                let data = super::pseudo_random(base + i, i as u64);
                let name = format!("{prefix}{i}.bin");
                self.stor(&name, &data).await;
                assert_eq!(
                    super::sha256_file(&server.root().join(&name)),
                    super::sha256_bytes(&data),
                    "{what}: upload {i}\n{}",
                    server.log()
                );
            }
        }
    }

    /// `STOR name` with the default plan; panics unless it succeeds.
    pub async fn stor(&mut self, name: &str, data: &[u8]) {
        let mut plan = self.data_plan();
        plan.upload = Some(data.to_vec());
        self.transfer(&format!("STOR {name}"), plan)
            .await
            .assert_ok();
    }

    /// The client side's address of the control connection (how the gateway
    /// lists this session); `None` once closed.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.conn {
            Conn::Plain(s) => s.get_ref().local_addr().ok(),
            Conn::Tls(s) => s.get_ref().get_ref().0.local_addr().ok(),
            Conn::Closed => None,
        }
    }

    /// `QUIT` (best effort) and close.
    pub async fn quit(mut self) {
        let _ = self.cmd("QUIT").await;
        if let Conn::Tls(s) = &mut self.conn {
            let _ = s.get_mut().shutdown().await;
        }
    }
}

async fn run_data(
    tcp: TcpStream,
    server_name: ServerName<'static>,
    plan: DataPlan,
) -> (Result<Vec<u8>, String>, Option<bool>) {
    match plan.tls {
        None => (
            io_transfer(tcp, plan.upload)
                .await
                .map_err(|e| e.to_string()),
            None,
        ),
        Some(cfg) => {
            let tls = match TlsConnector::from(cfg).connect(server_name, tcp).await {
                Ok(tls) => tls,
                Err(e) => return (Err(format!("data TLS handshake: {e}")), None),
            };
            let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            (
                io_transfer(tls, plan.upload)
                    .await
                    .map_err(|e| e.to_string()),
                Some(resumed),
            )
        }
    }
}

async fn io_transfer<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    upload: Option<Vec<u8>>,
) -> io::Result<Vec<u8>> {
    let mut received = Vec::new();
    if let Some(bytes) = upload {
        s.write_all(&bytes).await?;
        // close_notify (TLS) / FIN (TCP), then drain until the server closes, so TLS 1.3
        // tickets are read and no reset truncates the upload.
        s.shutdown().await?;
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
        return Ok(received);
    }
    s.read_to_end(&mut received).await?;
    Ok(received)
}

/// TCP connect to `addr`, from `bind` (e.g. 127.0.0.2) if given.
pub async fn connect_from(bind: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Connects to a data port that must NOT serve us: `Ok(how)` if the connection is refused,
/// or closed/reset without any data within `within`; `Err` if it stays open or sends data.
pub async fn expect_refused(
    bind: Option<IpAddr>,
    addr: SocketAddr,
    within: Duration,
) -> Result<String, String> {
    let mut tcp = match connect_from(bind, addr).await {
        Err(e) => return Ok(format!("connect failed: {e}")),
        Ok(tcp) => tcp,
    };
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, tcp.read(&mut buf)).await {
        Err(_) => Err(format!(
            "connection to {addr} accepted and held open for {within:?}"
        )),
        Ok(Ok(0)) => Ok("closed without data".into()),
        Ok(Err(e)) => Ok(format!("reset: {e}")),
        Ok(Ok(n)) => Err(format!(
            "received {n} bytes on a connection that must be refused"
        )),
    }
}

/// Parses `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`.
pub fn parse_227(text: &str) -> Option<SocketAddr> {
    let start = text.find('(')? + 1;
    let end = start + text[start..].find(')')?;
    let nums: Vec<u16> = text[start..end]
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 6 || nums.iter().any(|n| *n > 255) {
        return None;
    }
    let ip = std::net::Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    Some(SocketAddr::from((ip, nums[4] * 256 + nums[5])))
}
