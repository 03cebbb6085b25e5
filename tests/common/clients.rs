//! Real FTP clients (curl, lftp) run as subprocesses with a hard timeout.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// What a client process did.
pub struct Output {
    pub what: String,
    /// Exit code; `None` if killed (timeout or signal).
    pub status: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }

    /// Panics with the full output unless the process exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "client failed: {self}");
        self
    }

    /// Panics unless the process failed (non-zero exit) without hanging.
    #[track_caller]
    pub fn assert_failed(&self) -> &Self {
        assert!(!self.timed_out, "client hung instead of failing: {self}");
        assert!(
            self.status != Some(0),
            "client unexpectedly succeeded: {self}"
        );
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` status={:?} timed_out={}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.what, self.status, self.timed_out, self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Runs `program args…`; kills it after `timeout`.
pub async fn run(program: &str, args: &[String], timeout: Duration) -> Output {
    let what = format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spawn {program}: {e} (run .ci/run or apt-get install vsftpd curl lftp)")
        });
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Output {
            what,
            status: out.status.code(),
            timed_out: false,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for {what}: {e}"),
        // Dropping the future drops the child, and kill_on_drop kills it.
        Err(_) => Output {
            what,
            status: None,
            timed_out: true,
            stdout: String::new(),
            stderr: String::new(),
        },
    }
}

/// How a client secures its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain FTP, no TLS at all.
    Plain,
    /// `AUTH TLS`, then `PROT P` (TLS on data too).
    Explicit,
    /// `AUTH TLS`, then `PROT C` (control encrypted, data in clear).
    ExplicitClearData,
    /// TLS from the first byte (`ftps://`), data protected.
    Implicit,
}

/// The default time limit for one client run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);

/// curl 7.88 as an FTP/FTPS client.
#[derive(Clone, Debug)]
pub struct Curl {
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
    pub security: Security,
    /// CA file to verify the server with (`--cacert`).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (`--cert`/`--key`). Default none.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub timeout: Duration,
}

impl Curl {
    pub fn new(addr: SocketAddr, security: Security, ca: Option<&Path>) -> Curl {
        let (user, pass) = super::test_user();
        Curl {
            addr,
            user: user.into(),
            pass: pass.into(),
            security,
            ca: ca.map(Path::to_path_buf),
            client_cert: None,
            timeout: CLIENT_TIMEOUT,
        }
    }

    /// Presents `cert`/`key` as its client certificate.
    pub fn with_client_cert(mut self, cert: &Path, key: &Path) -> Curl {
        self.client_cert = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.security == Security::Implicit {
            "ftps"
        } else {
            "ftp"
        };
        format!(
            "{scheme}://{}:{}@{}/{}",
            self.user,
            self.pass,
            self.addr,
            path.trim_start_matches('/')
        )
    }

    fn base_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["-sS".into(), "--connect-timeout".into(), "10".into()];
        args.push("--max-time".into());
        args.push(
            self.timeout
                .saturating_sub(Duration::from_secs(2))
                .as_secs()
                .max(1)
                .to_string(),
        );
        match self.security {
            Security::Plain => {}
            Security::Explicit => args.push("--ssl-reqd".into()),
            Security::ExplicitClearData => args.push("--ftp-ssl-control".into()),
            Security::Implicit => {}
        }
        if let Some(ca) = &self.ca {
            args.push("--cacert".into());
            args.push(ca.display().to_string());
        }
        if let Some((cert, key)) = &self.client_cert {
            args.push("--cert".into());
            args.push(cert.display().to_string());
            args.push("--key".into());
            args.push(key.display().to_string());
        }
        args
    }

    /// Runs curl with the common options plus `extra` and the URL for `path`.
    pub async fn raw(&self, extra: &[&str], path: &str) -> Output {
        let mut args = self.base_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.url(path));
        run("curl", &args, self.timeout).await
    }

    /// Several transfers on one control connection: each step is (extra
    /// options, path), joined with `--next` (curl keeps its connections, and
    /// its TLS session cache, across `--next`).
    pub async fn session(&self, steps: &[(Vec<String>, &str)]) -> Output {
        let mut args = Vec::new();
        for (i, (extra, path)) in steps.iter().enumerate() {
            if i > 0 {
                args.push("--next".to_string());
            }
            args.extend(self.base_args());
            args.extend(extra.iter().cloned());
            args.push(self.url(path));
        }
        run("curl", &args, self.timeout).await
    }

    /// Downloads `remote` into `local`.
    pub async fn get(&self, remote: &str, local: &Path) -> Output {
        self.raw(&["-o", &local.display().to_string()], remote)
            .await
    }

    /// Uploads `local` as `remote`.
    pub async fn put(&self, local: &Path, remote: &str) -> Output {
        self.raw(&["-T", &local.display().to_string()], remote)
            .await
    }

    /// Lists the root directory (LIST); the listing is in `stdout`.
    pub async fn list(&self) -> Output {
        self.raw(&[], "/").await
    }
}

/// lftp 4.9 (GnuTLS) as an FTP/FTPS client.
#[derive(Clone, Debug)]
pub struct Lftp {
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
    pub security: Security,
    pub ca: Option<PathBuf>,
    /// `ssl:check-hostname` (the test certs have SANs localhost, 127.0.0.1, ::1).
    pub check_hostname: bool,
    /// Client certificate and key (`ssl:cert-file`/`ssl:key-file`). Default none.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub timeout: Duration,
}

impl Lftp {
    pub fn new(addr: SocketAddr, security: Security, ca: Option<&Path>) -> Lftp {
        let (user, pass) = super::test_user();
        Lftp {
            addr,
            user: user.into(),
            pass: pass.into(),
            security,
            ca: ca.map(Path::to_path_buf),
            check_hostname: true,
            client_cert: None,
            timeout: CLIENT_TIMEOUT,
        }
    }

    /// Presents `cert`/`key` as its client certificate.
    pub fn with_client_cert(mut self, cert: &Path, key: &Path) -> Lftp {
        self.client_cert = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// The settings and `open` that precede every script.
    pub fn preamble(&self) -> String {
        let mut s = String::from(
            "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
             set net:reconnect-interval-base 1; set xfer:clobber on; set ftp:passive-mode on; ",
        );
        match &self.ca {
            Some(ca) => s.push_str(&format!(
                "set ssl:ca-file {}; set ssl:verify-certificate yes; ",
                ca.display()
            )),
            None => s.push_str("set ssl:verify-certificate no; "),
        }
        s.push_str(&format!(
            "set ssl:check-hostname {}; ",
            if self.check_hostname { "yes" } else { "no" }
        ));
        if let Some((cert, key)) = &self.client_cert {
            s.push_str(&format!(
                "set ssl:cert-file {}; set ssl:key-file {}; ",
                cert.display(),
                key.display()
            ));
        }
        match self.security {
            Security::Plain => s.push_str("set ftp:ssl-allow no; "),
            Security::Explicit => s.push_str(
                "set ftp:ssl-allow yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; ",
            ),
            Security::ExplicitClearData => s.push_str(
                "set ftp:ssl-allow yes; set ftp:ssl-force true; set ftp:ssl-protect-data false; set ftp:ssl-protect-list false; ",
            ),
            Security::Implicit => s.push_str("set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; "),
        }
        let scheme = if self.security == Security::Implicit {
            "ftps"
        } else {
            "ftp"
        };
        s.push_str(&format!(
            "open -u {},{} {scheme}://{}:{}; ",
            self.user,
            self.pass,
            self.addr.ip(),
            self.addr.port()
        ));
        s
    }

    /// Runs `commands` (separated by `;` or newlines) after the preamble.
    pub async fn script(&self, commands: &str) -> Output {
        let script = format!("{}{}", self.preamble(), commands);
        run("lftp", &["-c".to_string(), script], self.timeout).await
    }

    pub async fn get(&self, remote: &str, local: &Path) -> Output {
        self.script(&format!("get {remote} -o {}", local.display()))
            .await
    }

    pub async fn put(&self, local: &Path, remote: &str) -> Output {
        self.script(&format!("put {} -o {remote}", local.display()))
            .await
    }

    /// `cls -1` of the root; names in `stdout`.
    pub async fn cls(&self) -> Output {
        self.script("cls -1").await
    }
}

/// What the transfer suites need from a command-line client.
#[allow(async_fn_in_trait, dead_code)]
pub trait FileClient {
    async fn fetch(&self, remote: &str, local: &Path) -> Output;
    async fn store(&self, local: &Path, remote: &str) -> Output;
    /// A listing of the current directory (names in stdout).
    async fn listing(&self) -> Output;
}

impl FileClient for Curl {
    async fn fetch(&self, remote: &str, local: &Path) -> Output {
        self.get(remote, local).await
    }
    async fn store(&self, local: &Path, remote: &str) -> Output {
        self.put(local, remote).await
    }
    async fn listing(&self) -> Output {
        self.list().await
    }
}

impl FileClient for Lftp {
    async fn fetch(&self, remote: &str, local: &Path) -> Output {
        self.get(remote, local).await
    }
    async fn store(&self, local: &Path, remote: &str) -> Output {
        self.put(local, remote).await
    }
    async fn listing(&self) -> Output {
        self.cls().await
    }
}
