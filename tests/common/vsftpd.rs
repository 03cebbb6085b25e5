//! A private vsftpd 3.0.x in the foreground, one per test, killed (with its session
//! processes) on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::kill_group;
use super::{chown_to_test_user, free_port, pasv_range, temp_dir, test_user, Certs};

/// How the vsftpd instance speaks on its control port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VsftpdMode {
    /// No TLS at all (`ssl_enable=NO`).
    Plain,
    /// `AUTH TLS` required for login and data (`force_local_*_ssl=YES`).
    Explicit { require_reuse: bool },
    /// TLS from the first byte (`implicit_ssl=YES`), data TLS forced, reuse required.
    Implicit,
}

/// A running vsftpd. Dropping it kills it.
pub struct Vsftpd {
    child: Option<Child>,
    addr: SocketAddr,
    mode: VsftpdMode,
    dir: tempfile::TempDir,
    root: PathBuf,
    log: PathBuf,
    certs: Certs,
    pasv: (u16, u16),
}

impl Vsftpd {
    /// The strict server most tests face: explicit TLS with `require_ssl_reuse=YES`.
    pub fn strict() -> Vsftpd {
        super::ensure_tools();
        Vsftpd::start(VsftpdMode::Explicit {
            require_reuse: true,
        })
    }

    /// Starts vsftpd and waits (up to ~5 s per attempt) until it answers `220`.
    /// Panics with vsftpd's own output if it cannot start.
    pub fn start(mode: VsftpdMode) -> Vsftpd {
        Vsftpd::start_with(mode, "")
    }

    /// Like [`Vsftpd::start`], with `extra` lines appended to its config
    /// (e.g. `require_cert=YES`).
    pub fn start_with(mode: VsftpdMode, extra: &str) -> Vsftpd {
        test_user();
        let dir = temp_dir("vsftpd");
        let certs = Certs::generate(dir.path(), "vs");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        chown_to_test_user(&root);
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let log = dir.path().join("vsftpd.log");
        let pasv = pasv_range();

        let mut server = Vsftpd {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            mode,
            dir,
            root,
            log,
            certs,
            pasv,
        };
        let mut last_error = String::new();
        // A lost race for the "free" port is the usual start failure: retry on another one.
        for _attempt in 0..3 {
            let port = free_port();
            server.addr = SocketAddr::from(([127, 0, 0, 1], port));
            let dir = server.dir.path();
            let conf = dir.join("vsftpd.conf");
            let mut text = config_text(
                mode,
                server.addr,
                pasv,
                Some("127.0.0.1"),
                &server.root,
                &empty,
                &server.log,
                &server.certs,
            );
            text.push_str(extra);
            std::fs::write(&conf, text).unwrap();
            let out = std::fs::File::create(dir.join("stdout")).unwrap();
            let err = std::fs::File::create(dir.join("stderr")).unwrap();
            let child = Command::new("/usr/sbin/vsftpd")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Own process group: Drop kills the listener and its per-session children.
                .process_group(0)
                .spawn()
                .expect("spawn /usr/sbin/vsftpd (run ensure_tools first)");
            server.child = Some(child);
            match server.wait_ready(Duration::from_secs(5)) {
                Ok(()) => return server,
                Err(e) => {
                    last_error = format!("{e}\n--- vsftpd output:\n{}", server.output());
                    server.kill();
                }
            }
        }
        panic!("vsftpd ({mode:?}) did not start: {last_error}");
    }

    /// Control address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn mode(&self) -> VsftpdMode {
        self.mode
    }

    /// The directory the test user lands in: files here are downloadable, uploads land here.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// vsftpd's passive port range.
    pub fn pasv_range(&self) -> (u16, u16) {
        self.pasv
    }

    /// The certificates vsftpd presents (`certs().ca_pem` is what clients must trust).
    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The private working dir (config, log, certs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Contents of vsftpd's log (transfers and the FTP protocol dialogue).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Puts a file with `data` into the root, owned by the test user; returns its path.
    pub fn put_file(&self, name: &str, data: &[u8]) -> PathBuf {
        super::put_owned_file(&self.root, name, data)
    }

    /// Creates a deterministic pseudo-random file in the root; returns its SHA-256 hex.
    pub fn make_file(&self, name: &str, size: usize) -> String {
        super::make_owned_file(&self.root, name, size)
    }

    /// vsftpd's stdout+stderr plus its log (for failure messages).
    pub fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "stdout: {}\nstderr: {}\nlog:\n{}",
            read("stdout"),
            read("stderr"),
            self.log()
        )
    }

    fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("vsftpd exited early: {status}"));
            }
            match self.probe() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("vsftpd not ready after {within:?}: {last}"))
    }

    /// Connects, (for implicit mode) completes TLS, and reads the `220` greeting.
    fn probe(&self) -> Result<(), String> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500))
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let line = if self.mode == VsftpdMode::Implicit {
            let conn = rustls::ClientConnection::new(
                self.certs.client_config(),
                "localhost".try_into().unwrap(),
            )
            .unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut line = String::new();
            BufReader::new(&mut tls)
                .read_line(&mut line)
                .map_err(|e| format!("TLS read: {e}"))?;
            tls.conn.send_close_notify();
            let _ = tls.flush();
            line
        } else {
            let mut line = String::new();
            BufReader::new(tcp)
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            line
        };
        if line.starts_with("220") {
            Ok(())
        } else {
            Err(format!("unexpected greeting {line:?}"))
        }
    }

    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The whole group: vsftpd's listener and its session processes.
        kill_group(child.id(), Some(&mut child));
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The text of a private vsftpd config: listening on `listen` (IPv4 or IPv6), passive
/// ports `pasv` with `pasv_address` written into `227` (`None`: vsftpd's own choice),
/// local users rooted at `root`, TLS as `mode` says. Shared with the NAT lab
/// (`netns.rs`), whose vsftpd listens inside a namespace.
#[allow(clippy::too_many_arguments)]
pub fn config_text(
    mode: VsftpdMode,
    listen: SocketAddr,
    pasv: (u16, u16),
    pasv_address: Option<&str>,
    root: &Path,
    empty: &Path,
    log: &Path,
    certs: &Certs,
) -> String {
    let listen_lines = match listen.ip() {
        std::net::IpAddr::V4(ip) => format!("listen=YES\nlisten_ipv6=NO\nlisten_address={ip}\n"),
        std::net::IpAddr::V6(ip) => format!("listen=NO\nlisten_ipv6=YES\nlisten_address6={ip}\n"),
    };
    let pasv_address = pasv_address
        .map(|a| format!("pasv_address={a}\n"))
        .unwrap_or_default();
    let mut c = format!(
        "background=NO
{listen_lines}listen_port={port}
isolate=NO
isolate_network=NO
seccomp_sandbox=NO
secure_chroot_dir={empty}
pam_service_name=vsftpd
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root={root}
chroot_local_user=NO
pasv_enable=YES
pasv_min_port={pmin}
pasv_max_port={pmax}
{pasv_address}connect_from_port_20=NO
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file={log}
dual_log_enable=NO
syslog_enable=NO
",
        port = listen.port(),
        empty = empty.display(),
        root = root.display(),
        pmin = pasv.0,
        pmax = pasv.1,
        log = log.display(),
    );
    let tls = |reuse: bool, implicit: bool| {
        format!(
            "ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse={reuse}
implicit_ssl={implicit}
ssl_ciphers=HIGH
debug_ssl=YES
rsa_cert_file={cert}
rsa_private_key_file={key}
",
            reuse = if reuse { "YES" } else { "NO" },
            implicit = if implicit { "YES" } else { "NO" },
            cert = certs.cert_pem.display(),
            key = certs.key_pem.display(),
        )
    };
    match mode {
        VsftpdMode::Plain => c.push_str("ssl_enable=NO\n"),
        VsftpdMode::Explicit { require_reuse } => c.push_str(&tls(require_reuse, false)),
        VsftpdMode::Implicit => c.push_str(&tls(true, true)),
    }
    c
}
