//! A private ProFTPD 1.3.8 with mod_tls in the foreground, one per test, killed (with its
//! session processes) on drop.
//!
//! TLS is required on control and data, and data connections must resume the control
//! connection's TLS session: mod_tls' default `TLSOptions` (no `NoSessionReuseRequired`),
//! the strictness real deployments have. Users come from a private `AuthUserFile` (the test
//! user's uid/gid, its home the per-test root), so nothing outside the temp dir is touched.
//!
//! ProFTPD conflicts with vsftpd in dpkg, so `scripts/test` unpacks the Debian packages
//! (`proftpd-core`, `proftpd-mod-crypto`) into [`PROFTPD_PREFIX`] instead of installing
//! them; a system-wide `/usr/sbin/proftpd` is used when that is missing.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{chown_to_test_user, free_port, pasv_range, temp_dir, test_user, test_user_ids, Certs};

/// Where `scripts/test` unpacks ProFTPD (`usr/sbin/proftpd`, `usr/lib/proftpd/mod_tls.so`).
pub const PROFTPD_PREFIX: &str = "/opt/ftpsgate-test/proftpd";

/// The ProFTPD binary and its module directory: the unpacked copy, else a system install.
pub fn proftpd_paths() -> Option<(PathBuf, PathBuf)> {
    let prefix = std::env::var_os("FTPSGATE_PROFTPD_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PROFTPD_PREFIX));
    [prefix, PathBuf::from("/")].into_iter().find_map(|p| {
        let bin = p.join("usr/sbin/proftpd");
        let modules = p.join("usr/lib/proftpd");
        (bin.is_file() && modules.join("mod_tls.so").is_file()).then_some((bin, modules))
    })
}

/// How ProFTPD handles data-connection TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProftpdReuse {
    /// mod_tls' default: a data connection must resume the control session.
    Required,
    /// `TLSOptions NoSessionReuseRequired`.
    NotRequired,
}

/// A running ProFTPD. Dropping it kills it.
pub struct Proftpd {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    root: PathBuf,
    certs: Certs,
    pasv: (u16, u16),
}

impl Proftpd {
    /// Explicit FTPS (`AUTH TLS` required, data TLS required, session reuse required).
    pub fn start() -> Proftpd {
        Proftpd::start_with(ProftpdReuse::Required)
    }

    /// Like [`Proftpd::start`], speaking TLS 1.3 only (`TLSProtocol TLSv1.3`).
    pub fn start_tls13_only() -> Proftpd {
        Proftpd::start_conf(ProftpdReuse::Required, "TLSv1.3")
    }

    /// Starts ProFTPD and waits until it answers `220`; panics with its output otherwise.
    pub fn start_with(reuse: ProftpdReuse) -> Proftpd {
        Proftpd::start_conf(reuse, "TLSv1.2 TLSv1.3")
    }

    fn start_conf(reuse: ProftpdReuse, protocols: &str) -> Proftpd {
        test_user();
        let (bin, modules) = proftpd_paths().unwrap_or_else(|| {
            panic!(
                "ProFTPD with mod_tls not found under {PROFTPD_PREFIX} or /usr: run ./scripts/test"
            )
        });
        let dir = temp_dir("proftpd");
        let certs = Certs::generate(dir.path(), "pro");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        chown_to_test_user(&root);
        write_auth_files(dir.path(), &root);
        let pasv = pasv_range();
        let mut server = Proftpd {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            root,
            certs,
            pasv,
        };
        let mut last_error = String::new();
        // A lost race for the "free" port is the usual start failure: retry on another one.
        for _attempt in 0..3 {
            server.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let d = server.dir.path();
            let conf = d.join("proftpd.conf");
            std::fs::write(&conf, server.config_text(&modules, reuse, protocols)).unwrap();
            let out = std::fs::File::create(d.join("stdout")).unwrap();
            let err = std::fs::File::create(d.join("stderr")).unwrap();
            let child = Command::new(&bin)
                .arg("-n")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Own process group: Drop kills the listener and its per-session children.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            server.child = Some(child);
            match wait_for_greeting(&mut server.child, server.addr, Duration::from_secs(5)) {
                Ok(()) => return server,
                Err(e) => {
                    last_error = format!("{e}\n--- proftpd output:\n{}", server.output());
                    kill_group(&mut server.child);
                }
            }
        }
        panic!("proftpd did not start: {last_error}");
    }

    fn config_text(&self, modules: &Path, reuse: ProftpdReuse, protocols: &str) -> String {
        let d = self.dir.path().display();
        let options = match reuse {
            ProftpdReuse::Required => "",
            ProftpdReuse::NotRequired => "TLSOptions NoSessionReuseRequired\n",
        };
        format!(
            "ServerType standalone
ServerName \"ftpsgate test ProFTPD\"
Port {port}
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
PidFile {d}/proftpd.pid
ScoreboardFile {d}/proftpd.scoreboard
DelayTable none
CapabilitiesEngine off
WtmpLog off
UseReverseDNS off
ModulePath {modules}
LoadModule mod_tls.c
AuthOrder mod_auth_file.c
AuthUserFile {d}/passwd
AuthGroupFile {d}/group
RequireValidShell off
User nobody
Group nogroup
Umask 022
PassivePorts {pmin} {pmax}
AllowOverwrite on
MaxInstances 200
MaxLoginAttempts 10
SystemLog {d}/system.log
TransferLog {d}/xfer.log
TLSEngine on
TLSLog {d}/tls.log
TLSProtocol {protocols}
TLSECCertificateFile {cert}
TLSECCertificateKeyFile {key}
TLSRequired on
TLSVerifyClient off
{options}",
            port = self.addr.port(),
            modules = modules.display(),
            pmin = self.pasv.0,
            pmax = self.pasv.1,
            cert = self.certs.cert_pem.display(),
            key = self.certs.key_pem.display(),
        )
    }

    /// Control address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test user's home: files here are downloadable, uploads land here.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// ProFTPD's passive port range.
    pub fn pasv_range(&self) -> (u16, u16) {
        self.pasv
    }

    /// The certificates ProFTPD presents (`certs().ca_pem` is what clients must trust).
    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The private working dir (config, logs, certs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// mod_tls' log: handshakes, and `client did not reuse TLS session` refusals.
    pub fn tls_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tls.log")).unwrap_or_default()
    }

    /// Transfer log (xferlog format).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xfer.log")).unwrap_or_default()
    }

    /// Puts a file with `data` into the root, owned by the test user; returns its path.
    pub fn put_file(&self, name: &str, data: &[u8]) -> PathBuf {
        super::put_owned_file(&self.root, name, data)
    }

    /// Creates a deterministic pseudo-random file in the root; returns its SHA-256 hex.
    pub fn make_file(&self, name: &str, size: usize) -> String {
        super::make_owned_file(&self.root, name, size)
    }

    /// ProFTPD's stdout+stderr and its system and TLS logs (for failure messages).
    pub fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "stdout: {}\nstderr: {}\nsystem.log:\n{}\ntls.log:\n{}",
            read("stdout"),
            read("stderr"),
            read("system.log"),
            self.tls_log()
        )
    }
}

impl Drop for Proftpd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// `passwd`/`group` in ProFTPD's `AuthUserFile` format: the test user (real uid/gid, so
/// files it writes belong to it) with a SHA-512 crypt of its password, home = `root`.
fn write_auth_files(dir: &Path, root: &Path) {
    let (user, pass) = test_user();
    let (uid, gid) = test_user_ids();
    let out = Command::new("openssl")
        .args(["passwd", "-6", pass])
        .output()
        .expect("run openssl passwd");
    assert!(out.status.success(), "openssl passwd failed: {out:?}");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let passwd = dir.join("passwd");
    let group = dir.join("group");
    std::fs::write(
        &passwd,
        format!("{user}:{hash}:{uid}:{gid}::{}:/bin/sh\n", root.display()),
    )
    .unwrap();
    std::fs::write(&group, format!("{user}:x:{gid}:\n")).unwrap();
    // mod_auth_file refuses world-readable password files.
    use std::os::unix::fs::PermissionsExt;
    for f in [&passwd, &group] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Waits until a fresh server on `addr` greets with `220` (plain TCP, explicit FTPS),
/// failing early when the process exits.
pub fn wait_for_greeting(
    child: &mut Option<Child>,
    addr: SocketAddr,
    within: Duration,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    let deadline = Instant::now() + within;
    let mut last = String::from("not tried");
    while Instant::now() < deadline {
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("server exited early: {status}"));
            }
        }
        let probe = || -> Result<String, String> {
            let tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .map_err(|e| format!("connect: {e}"))?;
            tcp.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            let mut line = String::new();
            BufReader::new(tcp)
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            Ok(line)
        };
        match probe() {
            Ok(line) if line.starts_with("220") => return Ok(()),
            Ok(line) => last = format!("unexpected greeting {line:?}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("not ready after {within:?}: {last}"))
}

/// SIGTERM the child's process group (listener and per-session processes), then SIGKILL
/// what is left, and reap the child.
pub fn kill_group(child: &mut Option<Child>) {
    let Some(mut child) = child.take() else {
        return;
    };
    let pgid = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-TERM", "--", &pgid])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}
