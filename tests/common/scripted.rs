//! A scripted FTP backend that records every byte it receives, for tests that
//! need a backend behaviour vsftpd does not have (`REIN` honoured, pure-ftpd's
//! answer to `PASS` after login, slow password checks) or must prove that a
//! command never reached the backend.
//!
//! It ends a command line at LF *or at a bare CR*, as some servers do: a CR
//! smuggled through the gateway would show up here as a second command.
//! Plain TCP only; one task per connection, aborted when the value drops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the backend answers.
#[derive(Clone, Debug)]
pub struct Script {
    /// The one password that logs in (any user name).
    pub password: &'static str,
    /// `REIN` logs out with `220` (else `502 REIN not implemented.`, as vsftpd).
    pub rein: bool,
    /// Reply to `PASS` on a logged-in connection (pure-ftpd:
    /// `530 We can't do that in the current session`).
    pub pass_after_login: &'static str,
    /// Reply to `USER` on a logged-in connection.
    pub user_after_login: &'static str,
    /// How long a `PASS` is thought about before its answer.
    pub pass_delay: Duration,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            password: "right",
            rein: false,
            pass_after_login: "230 Already logged in.",
            user_after_login: "530 Can't change to another user.",
            pass_delay: Duration::ZERO,
        }
    }
}

/// A running scripted backend.
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    commands: Arc<Mutex<Vec<Vec<u8>>>>,
    passwords: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ScriptedBackend {
    pub async fn start(script: Script) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let passwords = Arc::new(AtomicUsize::new(0));
        let shared = Conn {
            script,
            received: received.clone(),
            commands: commands.clone(),
            passwords: passwords.clone(),
        };
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = shared.clone();
                tokio::spawn(async move { conn.serve(tcp).await });
            }
        });
        ScriptedBackend {
            addr,
            received,
            commands,
            passwords,
            task,
        }
    }

    /// Every byte received on every connection, in arrival order.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Every command line as this backend cut it (at LF or bare CR).
    pub fn commands(&self) -> Vec<String> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    /// Whether any received command starts with `verb` (case-insensitive).
    pub fn saw(&self, verb: &str) -> bool {
        self.commands().iter().any(|c| {
            c.to_ascii_uppercase()
                .starts_with(&verb.to_ascii_uppercase())
        })
    }

    /// `PASS` lines received.
    pub fn passwords(&self) -> usize {
        self.passwords.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Conn {
    script: Script,
    received: Arc<Mutex<Vec<u8>>>,
    commands: Arc<Mutex<Vec<Vec<u8>>>>,
    passwords: Arc<AtomicUsize>,
}

impl Conn {
    async fn serve(self, mut tcp: TcpStream) {
        if tcp.write_all(b"220 scripted backend\r\n").await.is_err() {
            return;
        }
        let mut logged_in = false;
        let mut user = false;
        let mut line = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            self.received.lock().unwrap().extend_from_slice(&buf[..n]);
            for &b in &buf[..n] {
                if b != b'\r' && b != b'\n' {
                    line.push(b);
                    continue;
                }
                if line.is_empty() {
                    continue;
                }
                let cmd = std::mem::take(&mut line);
                self.commands.lock().unwrap().push(cmd.clone());
                let text = String::from_utf8_lossy(&cmd).into_owned();
                let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
                let verb = verb.to_ascii_uppercase();
                let reply: String = match verb.as_str() {
                    "USER" if logged_in => self.script.user_after_login.into(),
                    "USER" => {
                        user = true;
                        "331 Please specify the password.".into()
                    }
                    "PASS" => {
                        self.passwords.fetch_add(1, Ordering::SeqCst);
                        if logged_in {
                            self.script.pass_after_login.into()
                        } else {
                            tokio::time::sleep(self.script.pass_delay).await;
                            if user && arg == self.script.password {
                                logged_in = true;
                                "230 Login successful.".into()
                            } else {
                                user = false;
                                "530 Login incorrect.".into()
                            }
                        }
                    }
                    "REIN" if self.script.rein => {
                        logged_in = false;
                        user = false;
                        "220 Ready for a new user.".into()
                    }
                    "REIN" => "502 REIN not implemented.".into(),
                    "QUIT" => {
                        let _ = tcp.write_all(b"221 Goodbye.\r\n").await;
                        return;
                    }
                    "FEAT" => "211-Features:\r\n UTF8\r\n211 End".into(),
                    "SYST" => "215 UNIX Type: L8".into(),
                    "NOOP" => "200 NOOP ok.".into(),
                    "HELP" => "214 Help OK.".into(),
                    _ if !logged_in => "530 Please login with USER and PASS.".into(),
                    "DELE" | "MKD" | "RMD" | "SITE" => format!("250 {verb} done."),
                    _ => "200 OK.".into(),
                };
                if tcp
                    .write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
