//! More real clients for tests/interop_clients.rs (issue 20 §5): rclone (Go crypto/tls,
//! one TLS session cache for all its connections) and wget, each driven as a child
//! process with a time limit, like curl and lftp in `clients`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::clients::{run, Output, Security};

/// rclone 1.60's FTP backend, configured through environment variables (no config file
/// is read or written: `RCLONE_CONFIG=/dev/null`). The remote is called `gw:`.
#[derive(Clone, Debug)]
pub struct Rclone {
    pub addr: SocketAddr,
    pub security: Security,
    /// `--ftp-disable-tls13`: TLS 1.2 only.
    pub disable_tls13: bool,
    pub timeout: Duration,
}

impl Rclone {
    pub fn new(addr: SocketAddr, security: Security) -> Rclone {
        Rclone {
            addr,
            security,
            disable_tls13: false,
            timeout: Duration::from_secs(90),
        }
    }

    fn env(&self) -> Vec<String> {
        let (user, pass) = super::test_user();
        let obscured = std::process::Command::new("rclone")
            .args(["obscure", pass])
            .output()
            .expect("rclone obscure (apt-get install rclone)");
        let obscured = String::from_utf8_lossy(&obscured.stdout).trim().to_string();
        let mut env = vec![
            "RCLONE_CONFIG=/dev/null".to_string(),
            "RCLONE_CONFIG_GW_TYPE=ftp".into(),
            format!("RCLONE_CONFIG_GW_HOST={}", self.addr.ip()),
            format!("RCLONE_CONFIG_GW_PORT={}", self.addr.port()),
            format!("RCLONE_CONFIG_GW_USER={user}"),
            format!("RCLONE_CONFIG_GW_PASS={obscured}"),
        ];
        match self.security {
            Security::Plain => {}
            Security::Explicit | Security::ExplicitClearData => {
                env.push("RCLONE_CONFIG_GW_EXPLICIT_TLS=true".into());
            }
            Security::Implicit => env.push("RCLONE_CONFIG_GW_TLS=true".into()),
        }
        if self.security != Security::Plain {
            // rclone's FTP backend ignores --ca-cert.
            env.push("RCLONE_CONFIG_GW_NO_CHECK_CERTIFICATE=true".into());
        }
        if self.disable_tls13 {
            env.push("RCLONE_CONFIG_GW_DISABLE_TLS13=true".into());
        }
        env
    }

    /// `rclone ARGS…` with the remote's environment.
    pub async fn raw(&self, args: &[&str]) -> Output {
        let mut all = self.env();
        all.push("rclone".into());
        all.extend(args.iter().map(|s| s.to_string()));
        run("env", &all, self.timeout).await
    }

    /// `rclone copy DIR gw:REMOTE --transfers N`.
    pub async fn upload_dir(&self, dir: &Path, remote: &str, transfers: usize) -> Output {
        let dir = dir.display().to_string();
        let target = format!("gw:{remote}");
        let n = transfers.to_string();
        self.raw(&["copy", &dir, &target, "--transfers", &n, "--retries", "1"])
            .await
    }

    /// `rclone copy gw:REMOTE DIR` (one file or a directory).
    pub async fn download(&self, remote: &str, dir: &Path) -> Output {
        let src = format!("gw:{remote}");
        let dir = dir.display().to_string();
        self.raw(&["copy", &src, &dir, "--retries", "1"]).await
    }

    /// `rclone lsf gw:` (names, one a line).
    pub async fn list(&self) -> Output {
        self.raw(&["lsf", "gw:", "--retries", "1"]).await
    }
}
