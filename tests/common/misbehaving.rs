//! A scripted plain-FTP backend that misbehaves on purpose: it answers a small command set
//! like a real server and, at points a test chooses, sends lines nobody asked for (after the
//! greeting, after `230`, after a transfer's `226`, inside a multi-line reply, late), and it
//! aborts transfers the way vsftpd, pure-ftpd or ProFTPD do. It records every command line.
//!
//! Plain TCP on 127.0.0.1:0, one task per connection, all aborted on drop.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How the backend answers `ABOR` (and a transfer whose data connection the peer cut).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortStyle {
    /// `426` for the transfer, then `226` for `ABOR`.
    Vsftpd,
    /// No final reply for the aborted transfer, one `226` for `ABOR`.
    PureFtpd,
    /// `226` for `ABOR` first, then `426` for the transfer.
    Proftpd,
}

/// Where the backend misbehaves; every field is raw bytes (CRLF included) or empty.
#[derive(Clone, Debug, Default)]
pub struct Misbehaviour {
    pub after_greeting: &'static str,
    pub after_230: &'static str,
    pub after_226: &'static str,
    pub after_noop: &'static str,
    /// The `STAT` reply's inner lines (between `211-` and `211 End`).
    pub stat_inner: &'static str,
    /// Sent 300 ms after the reply to `SIZE`, when nothing is outstanding.
    pub late: &'static str,
    /// A verb never answered (a backend that hangs on it).
    pub silent_verb: &'static str,
}

#[derive(Clone, Debug)]
pub struct Script {
    pub misbehave: Misbehaviour,
    pub abort: AbortStyle,
    /// Size of every file `RETR` sends (sent in 16 KiB chunks, 2 ms apart).
    pub file_size: usize,
}

impl Script {
    pub fn new(misbehave: Misbehaviour) -> Script {
        Script {
            misbehave,
            abort: AbortStyle::Vsftpd,
            file_size: 100_000,
        }
    }
}

/// The contents of every file the backend serves (`file_size` bytes).
pub fn file_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

pub struct ScriptedBackend {
    pub addr: SocketAddr,
    commands: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl ScriptedBackend {
    pub async fn start(script: Script) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let log = commands.clone();
        let task = tokio::spawn(async move {
            let mut sessions = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (script, log) = (script.clone(), log.clone());
                sessions.spawn(async move {
                    let _ = session(tcp, script, log).await;
                });
                while sessions.try_join_next().is_some() {}
            }
        });
        ScriptedBackend {
            addr,
            commands,
            task,
        }
    }

    /// Every command line received so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(
    tcp: TcpStream,
    script: Script,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let m = &script.misbehave;
    let (r, w) = tcp.into_split();
    let w = Arc::new(tokio::sync::Mutex::new(w));
    let mut lines = BufReader::new(r).lines();
    send(&w, &format!("220 scripted ready\r\n{}", m.after_greeting)).await?;
    let mut data: Option<TcpListener> = None;
    // A running download; it sends its own final reply.
    let mut running: Option<JoinHandle<()>> = None;
    while let Some(line) = lines.next_line().await? {
        log.lock().unwrap().push(line.clone());
        let verb = line
            .split(' ')
            .next()
            .unwrap_or("")
            .trim_start_matches(|c: char| !c.is_ascii_alphabetic())
            .to_ascii_uppercase();
        if !m.silent_verb.is_empty() && verb == m.silent_verb {
            continue;
        }
        let reply: String = match verb.as_str() {
            "USER" => "331 Password required\r\n".into(),
            "PASS" => format!("230 Logged in\r\n{}", m.after_230),
            "TYPE" => "200 Type set\r\n".into(),
            "PWD" => "257 \"/\" is the current directory\r\n".into(),
            "CWD" => "250 OK\r\n".into(),
            "SYST" => "215 UNIX Type: L8\r\n".into(),
            "NOOP" => format!("200 NOOP ok\r\n{}", m.after_noop),
            "SIZE" => {
                let late = m.late;
                if !late.is_empty() {
                    let w = w.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = send(&w, late).await;
                    });
                }
                format!("213 {}\r\n", script.file_size)
            }
            "STAT" => format!("211-Status\r\n{}211 End\r\n", m.stat_inner),
            "FEAT" => "211-Features:\r\n SIZE\r\n211 End\r\n".into(),
            "PASV" => {
                let l = TcpListener::bind("127.0.0.1:0").await?;
                let port = l.local_addr()?.port();
                data = Some(l);
                format!(
                    "227 Entering Passive Mode (127,0,0,1,{},{})\r\n",
                    port / 256,
                    port % 256
                )
            }
            "RETR" | "STOR" | "LIST" => match data.take() {
                None => "425 Use PASV first\r\n".into(),
                Some(l) => {
                    send(&w, "150 Opening data connection\r\n").await?;
                    let Ok(Ok((d, _))) =
                        tokio::time::timeout(Duration::from_secs(10), l.accept()).await
                    else {
                        send(&w, "425 No data connection\r\n").await?;
                        continue;
                    };
                    if verb == "STOR" {
                        let mut d = d;
                        let mut sink = Vec::new();
                        let _ = d.read_to_end(&mut sink).await;
                        format!("226 Transfer complete\r\n{}", m.after_226)
                    } else {
                        running = Some(tokio::spawn(download(
                            d,
                            file_bytes(script.file_size),
                            w.clone(),
                            script.abort,
                            m.after_226,
                        )));
                        continue;
                    }
                }
            },
            "ABOR" => match running.take().filter(|t| !t.is_finished()) {
                Some(t) => {
                    t.abort();
                    match script.abort {
                        AbortStyle::Vsftpd => {
                            "426 Transfer aborted\r\n226 ABOR successful\r\n".into()
                        }
                        AbortStyle::PureFtpd => "226 ABOR successful\r\n".into(),
                        AbortStyle::Proftpd => {
                            "226 Abort successful\r\n426 Transfer aborted\r\n".into()
                        }
                    }
                }
                None => "225 No transfer to ABOR\r\n".into(),
            },
            "QUIT" => {
                send(&w, "221 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 Not implemented\r\n".into(),
        };
        send(&w, &reply).await?;
    }
    Ok(())
}

type Writer = Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>;

/// Sends `bytes` in chunks, then the final reply: `226`, or for a connection the peer
/// cut `426` (none at all in pure-ftpd's style).
async fn download(
    mut d: TcpStream,
    bytes: Vec<u8>,
    w: Writer,
    style: AbortStyle,
    after: &'static str,
) {
    let mut cut = false;
    for chunk in bytes.chunks(16 * 1024) {
        if d.write_all(chunk).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cut = cut || d.shutdown().await.is_err();
    let reply = match (cut, style) {
        (true, AbortStyle::PureFtpd) => String::new(),
        (true, _) => "426 Connection closed; transfer aborted\r\n".into(),
        (false, _) => format!("226 Transfer complete\r\n{after}"),
    };
    let _ = send(&w, &reply).await;
}

async fn send(w: &Writer, text: &str) -> std::io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let mut w = w.lock().await;
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}
