//! A private pure-ftpd 1.0.50 in the foreground, one per test, killed (with its session
//! processes) on drop.
//!
//! `-Y 3`: TLS required on control and data (pure-ftpd does not require data connections to
//! resume the control session). The test user is a virtual user in a private PureDB (real
//! uid/gid, home = the per-test root), so nothing outside the temp dir is touched.
//!
//! pure-ftpd conflicts with vsftpd in dpkg, so `scripts/test` unpacks the Debian package
//! into [`PUREFTPD_PREFIX`]; a system-wide `/usr/sbin/pure-ftpd` is used when that is missing.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proftpd::{kill_group, wait_for_greeting};
use super::{chown_to_test_user, free_port, pasv_range, temp_dir, test_user, test_user_ids, Certs};

/// Where `scripts/test` unpacks pure-ftpd (`usr/sbin/pure-ftpd`, `usr/bin/pure-pw`).
pub const PUREFTPD_PREFIX: &str = "/opt/ftpsgate-test/pure-ftpd";

/// `pure-ftpd` and `pure-pw`: the unpacked copy, else a system install.
pub fn pureftpd_paths() -> Option<(PathBuf, PathBuf)> {
    let prefix = std::env::var_os("FTPSGATE_PUREFTPD_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PUREFTPD_PREFIX));
    [prefix, PathBuf::from("/")].into_iter().find_map(|p| {
        let bin = p.join("usr/sbin/pure-ftpd");
        let pw = p.join("usr/bin/pure-pw");
        (bin.is_file() && pw.is_file()).then_some((bin, pw))
    })
}

/// A running pure-ftpd. Dropping it kills it.
pub struct PureFtpd {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    root: PathBuf,
    certs: Certs,
    pasv: (u16, u16),
}

impl PureFtpd {
    /// Starts pure-ftpd (explicit FTPS, TLS required on control and data) and waits until
    /// it answers `220`; panics with its output otherwise.
    pub fn start() -> PureFtpd {
        test_user();
        let (bin, pure_pw) = pureftpd_paths().unwrap_or_else(|| {
            panic!("pure-ftpd not found under {PUREFTPD_PREFIX} or /usr: run ./scripts/test")
        });
        let dir = temp_dir("pureftpd");
        let certs = Certs::generate(dir.path(), "pure");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        chown_to_test_user(&root);
        let pdb = make_puredb(&pure_pw, dir.path(), &root);
        // pure-ftpd reads key and certificate from one PEM file.
        let pem = dir.path().join("pure-ftpd.pem");
        let key = std::fs::read_to_string(&certs.key_pem).unwrap();
        let cert = std::fs::read_to_string(&certs.cert_pem).unwrap();
        std::fs::write(&pem, format!("{key}{cert}")).unwrap();
        let pasv = pasv_range();
        let mut server = PureFtpd {
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
            let out = std::fs::File::create(d.join("stdout")).unwrap();
            let err = std::fs::File::create(d.join("stderr")).unwrap();
            let child = Command::new(&bin)
                .arg("-S")
                .arg(format!("127.0.0.1,{}", server.addr.port()))
                .arg("-p")
                .arg(format!("{}:{}", pasv.0, pasv.1))
                .args(["-P", "127.0.0.1"])
                .arg("-l")
                .arg(format!("puredb:{}", pdb.display()))
                .args(["-Y", "3"])
                .arg("-2")
                .arg(&pem)
                .arg("-O")
                .arg(format!("clf:{}", d.join("xfer.log").display()))
                .arg("-g")
                .arg(d.join("pure-ftpd.pid"))
                // No anonymous logins, no DNS, IPv4, many sessions from 127.0.0.1.
                .args(["-E", "-H", "-4", "-c", "200", "-C", "200"])
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
                    last_error = format!("{e}\n--- pure-ftpd output:\n{}", server.output());
                    kill_group(&mut server.child);
                }
            }
        }
        panic!("pure-ftpd did not start: {last_error}");
    }

    /// Control address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The virtual user's home: files here are downloadable, uploads land here.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// pure-ftpd's passive port range.
    pub fn pasv_range(&self) -> (u16, u16) {
        self.pasv
    }

    /// The certificates pure-ftpd presents (`certs().ca_pem` is what clients must trust).
    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The private working dir (PureDB, PEM, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Transfer log (CLF).
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

    /// pure-ftpd's stdout+stderr and transfer log (it logs the dialogue to syslog).
    pub fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "stdout: {}\nstderr: {}\nxfer.log:\n{}",
            read("stdout"),
            read("stderr"),
            self.log()
        )
    }
}

impl Drop for PureFtpd {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A PureDB holding the test user as a virtual user (its real uid/gid, home = `root`).
fn make_puredb(pure_pw: &Path, dir: &Path, root: &Path) -> PathBuf {
    let (user, pass) = test_user();
    let (uid, gid) = test_user_ids();
    let passwd = dir.join("pureftpd.passwd");
    let pdb = dir.join("pureftpd.pdb");
    let mut child = Command::new(pure_pw)
        .args(["useradd", user])
        .args(["-u", &uid.to_string(), "-g", &gid.to_string()])
        .arg("-d")
        .arg(root)
        .arg("-f")
        .arg(&passwd)
        .arg("-F")
        .arg(&pdb)
        .arg("-m")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", pure_pw.display()));
    // pure-pw asks for the password twice on stdin.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = write!(stdin, "{pass}\n{pass}\n");
    }
    let out = child.wait_with_output().expect("wait for pure-pw");
    assert!(
        out.status.success() && pdb.is_file(),
        "pure-pw useradd failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    pdb
}
