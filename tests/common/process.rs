//! ftpsgate as its own process (the release path: `main` raises the fd limit
//! and escapes every log line), optionally under `prlimit`, with its stderr in
//! a file. Killed (SIGKILL) and reaped on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ftpsgate run` process.
pub struct GwProcess {
    child: Child,
    /// Its stderr (the log).
    pub log_path: PathBuf,
}

impl GwProcess {
    /// Writes `yaml` to `dir/ftpsgate.yaml` and runs the binary on it, under
    /// `prlimit --nofile=N:N` when `nofile` is given; returns once `ready`
    /// accepts TCP connections (panics with the log after 10 s).
    pub fn start(yaml: &str, dir: &Path, nofile: Option<u64>, ready: SocketAddr) -> GwProcess {
        let config = dir.join("ftpsgate.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log_path = dir.join("ftpsgate.log");
        let bin = env!("CARGO_BIN_EXE_ftpsgate");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "ftpsgate=debug")
            // Plain text: the only escape sequences left would be a client's.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("spawn ftpsgate");
        let p = GwProcess { child, log_path };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&ready, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ftpsgate did not listen on {ready}\n--- log:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The process id (of `prlimit`'s exec'd child: the same process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GwProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
