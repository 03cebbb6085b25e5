//! Operations an admin relies on, against the real binary (issue 15): certificate
//! rotation by file watch and SIGHUP seen by `openssl s_client`, the expiry gauge,
//! a refused reload visible in sd_notify `STATUS=` and in a metric that stays set,
//! the drain cutting a session as `cut`, a second SIGTERM exiting at once, log
//! lines without colour or Rust debug text, and syslog priorities for journald.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::clients::{Curl, Security};
use common::harness::bounded;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ftpsgate");

// ---------------------------------------------------------------------------------------
// Helpers

/// The binary as a child, stderr in a file, killed on drop.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn run(config: &Path, args: &[&str], env: &[(&str, String)]) -> Proc {
        let stderr = config.with_extension("stderr");
        let file = std::fs::File::create(&stderr).unwrap();
        Proc::run_to(config, args, env, file, stderr)
    }

    fn run_to(
        config: &Path,
        args: &[&str],
        env: &[(&str, String)],
        file: std::fs::File,
        stderr: PathBuf,
    ) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"]).arg(config).args(args);
        cmd.env_remove("NOTIFY_SOCKET").env_remove("JOURNAL_STREAM");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .env("RUST_LOG", "ftpsgate=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn ftpsgate run");
        Proc { child, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn wait_log(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "ftpsgate exited ({status}) before logging {needle:?}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "log has no {needle:?} after {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A self-signed EC certificate for localhost/127.0.0.1 with `serial`, valid `days`,
/// written with `openssl req` to `cert`/`key` through temp files and renames (as a
/// renewal tool replaces them).
fn openssl_cert(dir: &Path, cert: &str, key: &str, serial: &str, days: u32) {
    let (tmp_cert, tmp_key) = (dir.join("new.pem"), dir.join("new.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=localhost", "-set_serial", serial])
        .args(["-days", &days.to_string()])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&tmp_key)
        .arg("-out")
        .arg(&tmp_cert)
        .output()
        .expect("run openssl req");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp_key, dir.join(key)).unwrap();
    std::fs::rename(&tmp_cert, dir.join(cert)).unwrap();
}

/// The serial of the certificate a new explicit-FTPS session gets, as
/// `openssl s_client -starttls ftp` sees it (`serial=1001`).
fn served_serial(addr: SocketAddr) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -starttls ftp -servername localhost </dev/null 2>/dev/null \
             | openssl x509 -noout -serial"
        ))
        .output()
        .expect("run openssl s_client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn poll_serial(addr: SocketAddr, want: &str, within: Duration, p: &Proc) {
    let deadline = Instant::now() + within;
    loop {
        let got = tokio::task::spawn_blocking(move || served_serial(addr))
            .await
            .unwrap();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "served {got:?}, not {want:?}, after {within:?}\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /metrics` with curl; the value of `series` (exact, labels included).
async fn metric(metrics: SocketAddr, series: &str) -> Option<f64> {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{metrics}/metrics"),
        ])
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_metric(metrics: SocketAddr, series: &str, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = metric(metrics, series).await {
            return v;
        }
        assert!(Instant::now() < deadline, "no {series} at {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A config dir whose one explicit listener `edge` (gw.pem/gw.key) fronts `backend`
/// (YAML of the backends list); returns (dir, config path, control addr, metrics addr).
fn lab(top: &str, backends: &str) -> (tempfile::TempDir, PathBuf, SocketAddr, SocketAddr) {
    let dir = temp_dir("ops");
    openssl_cert(dir.path(), "gw.pem", "gw.key", "0x1001", 400);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let path = dir.path().join("ftpsgate.yaml");
    write_config(&path, top, addr, metrics, backends);
    (dir, path, addr, metrics)
}

fn write_config(path: &Path, top: &str, addr: SocketAddr, metrics: SocketAddr, backends: &str) {
    let (a, b) = pasv_range();
    let yaml = format!(
        "{top}metrics: {{ bind: \"{metrics}\" }}\n\
         listeners:\n  - name: edge\n    bind: \"{addr}\"\n    \
         tls: {{ mode: explicit, cert: gw.pem, key: gw.key }}\n    \
         passive: {{ ports: \"{a}-{b}\" }}\n    backend: vs\n\
         backends:\n{backends}"
    );
    std::fs::write(path, yaml).unwrap();
}

/// A backend nobody answers at (sessions that log in would get 421).
const DEAD_BACKEND: &str = "  - name: vs\n    address: \"127.0.0.1:1\"\n    tls: { mode: none }\n";

fn vsftpd_backend(vs: &Vsftpd, dir: &Path) -> String {
    std::fs::copy(&vs.certs().ca_pem, dir.join("vs-ca.pem")).unwrap();
    format!(
        "  - name: vs\n    address: \"{}\"\n    tls: {{ mode: explicit, ca: vs-ca.pem, server_name: localhost }}\n",
        vs.addr()
    )
}

// ---------------------------------------------------------------------------------------
// 1. + 2. Certificate rotation and expiry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_served_after_watch_and_sighup() {
    let watch = "reload: { watch: true, interval: 1s }\n";
    let (dir, path, addr, metrics) = lab(watch, DEAD_BACKEND);
    let mut p = Proc::run(&path, &[], &[]);
    let expiry = "ftpsgate_certificate_expiry_timestamp_seconds{scope=\"listener\",name=\"edge\",cert=\"default\"}";
    bounded(58, "certificate rotation", async {
        p.wait_log("listening", Duration::from_secs(15)).await;
        poll_serial(addr, "serial=1001", Duration::from_secs(10), &p).await;
        let left = wait_metric(metrics, expiry, Duration::from_secs(5)).await - unix_now();
        assert!((399.0..=401.0).contains(&(left / 86400.0)), "{left} s left");

        // A session that is running over the old certificate.
        let mut old = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-starttls",
                "ftp",
                "-quiet",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_client");

        // Renewal replaces the files: the watch reloads, no signal needed.
        openssl_cert(dir.path(), "gw.pem", "gw.key", "0x2002", 10);
        poll_serial(addr, "serial=2002", Duration::from_secs(10), &p).await;
        assert!(
            p.log().contains("configuration files changed"),
            "{}",
            p.log()
        );
        // The gauge follows; 10 days left is inside the alert's 14-day window.
        let left = wait_metric(metrics, expiry, Duration::from_secs(5)).await - unix_now();
        assert!((9.0..=11.0).contains(&(left / 86400.0)), "{left} s left");

        // The running session goes on over its TLS.
        let mut stdin = old.stdin.take().unwrap();
        let stdout = old.stdout.take().unwrap();
        let reply = tokio::task::spawn_blocking(move || {
            stdin.write_all(b"NOOP\r\n").unwrap();
            stdin.flush().unwrap();
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            drop(stdin);
            line
        });
        let reply = tokio::time::timeout(Duration::from_secs(10), reply)
            .await
            .expect("reply on the old session")
            .unwrap();
        assert!(
            reply.len() >= 3 && reply.as_bytes()[..3].iter().all(u8::is_ascii_digit),
            "old session after rotation: {reply:?}\n{}",
            p.log()
        );
        let _ = old.kill();
        let _ = old.wait();

        // Without the watch, a renewal waits for SIGHUP.
        let reloads = p.log().matches("configuration reloaded").count();
        write_config(&path, "", addr, metrics, DEAD_BACKEND);
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.log().matches("configuration reloaded").count() == reloads {
            assert!(
                Instant::now() < deadline,
                "watch missed the config\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        openssl_cert(dir.path(), "gw.pem", "gw.key", "0x3003", 30);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            served_serial(addr),
            "serial=2002",
            "reloaded without a signal"
        );
        p.signal("HUP");
        poll_serial(addr, "serial=3003", Duration::from_secs(10), &p).await;

        p.signal("TERM");
        let status = p.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.log());
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. A refused reload stays visible

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reload_shows_in_status_and_metric_until_a_good_one() {
    let (dir, path, addr, metrics) = lab("", DEAD_BACKEND);
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut p = Proc::run(
        &path,
        &[],
        &[("NOTIFY_SOCKET", sock_path.display().to_string())],
    );
    let ok = "ftpsgate_config_last_reload_successful";
    bounded(58, "refused reload", async {
        let mut seen = String::new();
        let until = |needle: &str, seen: &mut String| {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut buf = [0u8; 4096];
            loop {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    seen.push_str(&msg);
                    seen.push_str("\n--\n");
                    if msg.contains(needle) {
                        return msg;
                    }
                }
                assert!(Instant::now() < deadline, "no {needle:?} in:\n{seen}");
            }
        };
        let ready = until("READY=1", &mut seen);
        assert!(ready.contains("STATUS=serving"), "{ready}");
        assert_eq!(wait_metric(metrics, ok, Duration::from_secs(5)).await, 1.0);

        // A file that does not parse ...
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, "listeners: [ { name: edge, bogus: 1 } ]\n").unwrap();
        p.signal("HUP");
        let status = until("reload refused", &mut seen);
        assert!(
            status.contains("READY=1")
                && status.contains("STATUS=serving the previous configuration; reload refused: "),
            "{status}"
        );
        assert_eq!(metric(metrics, ok).await, Some(0.0));
        // ... and one that parses but names a missing key file: refused as well.
        std::fs::write(&path, good.replace("key: gw.key", "key: missing.key")).unwrap();
        p.signal("HUP");
        let status = until("missing.key", &mut seen);
        assert!(status.contains("reload refused"), "{status}");
        // The old certificate and policy still serve, and the metric stays at 0.
        assert_eq!(served_serial(addr), "serial=1001");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(metric(metrics, ok).await, Some(0.0), "stays set");

        std::fs::write(&path, &good).unwrap();
        p.signal("HUP");
        let status = until("configuration reloaded", &mut seen);
        assert!(
            status.contains("STATUS=serving; configuration reloaded"),
            "{status}"
        );
        assert_eq!(metric(metrics, ok).await, Some(1.0));
        assert_eq!(
            metric(metrics, "ftpsgate_config_reloads_total{result=\"failed\"}").await,
            Some(2.0)
        );

        p.signal("TERM");
        until("STOPPING=1", &mut seen);
        let status = p.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.log());
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 4. + 6. Drain cut and second signal; the lines they leave

/// Starts a slow download of `file` with curl; returns once 1 MiB arrived.
async fn slow_download(addr: SocketAddr, dir: &Path, file: &str) -> tokio::task::JoinHandle<()> {
    let out = dir.join("slow.out");
    let curl = Curl::new(addr, Security::Explicit, Some(&dir.join("gw.pem")));
    let o = out.display().to_string();
    let remote = file.to_string();
    let task = tokio::spawn(async move {
        let _ = curl
            .raw(&["--limit-rate", "1M", "-o", o.as_str()], &remote)
            .await;
    });
    let t0 = Instant::now();
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < MIB as u64 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "download did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_cuts_as_cut_and_lines_are_readable() {
    let vs = Vsftpd::strict();
    vs.make_file("small.bin", 64 * KIB);
    vs.make_file("big16.bin", 16 * MIB);
    let dir0 = temp_dir("ops-be");
    let backends = vsftpd_backend(&vs, dir0.path());
    let (dir, path, addr, _metrics) = lab("shutdown: { grace: 1s }\n", "");
    std::fs::copy(dir0.path().join("vs-ca.pem"), dir.path().join("vs-ca.pem")).unwrap();
    write_config(
        &path,
        "shutdown: { grace: 1s }\n",
        addr,
        _metrics,
        &backends,
    );
    let mut p = Proc::run(&path, &[], &[]);
    bounded(58, "drain cut", async {
        p.wait_log("listening", Duration::from_secs(15)).await;
        // One complete transfer for the human-readable lines.
        let curl = Curl::new(addr, Security::Explicit, Some(&dir.path().join("gw.pem")));
        let small = dir.path().join("small.out");
        curl.get("small.bin", &small).await.assert_ok();
        p.wait_log("outcome=ok", Duration::from_secs(5)).await;

        let download = slow_download(addr, dir.path(), "big16.bin").await;
        p.signal("TERM");
        let status = p.wait_exit(Duration::from_secs(20)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.log());
        let _ = download.await;

        let log = p.log();
        let line = |needle: &str| {
            log.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle:?}:\n{log}"))
                .to_string()
        };
        let login = line("logged in");
        for want in [
            format!("user={TEST_USER}"),
            "backend=vs".into(),
            "client=127.0.0.1:".into(),
        ] {
            assert!(login.contains(&want), "{want} in {login}");
        }
        let done = line("transfer complete");
        for want in [
            "file=small.bin".to_string(),
            format!("bytes={}", 64 * KIB),
            "secs=".into(),
            "result=ok".into(),
            "backend=vs".into(),
        ] {
            assert!(done.contains(&want), "{want} in {done}");
        }
        let cut = line("closed outcome=cut");
        assert!(cut.contains("WARN") && cut.contains("secs="), "{cut}");
        assert!(log.contains("closing: drain deadline passed"), "{log}");
        for bad in ["Some(", "outcome=Ok", "outcome=Cut", "\u{1b}["] {
            assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_during_the_drain_exits_at_once() {
    let vs = Vsftpd::strict();
    vs.make_file("big16.bin", 16 * MIB);
    let dir0 = temp_dir("ops-be");
    let backends = vsftpd_backend(&vs, dir0.path());
    let (dir, path, addr, metrics) = lab("", "");
    std::fs::copy(dir0.path().join("vs-ca.pem"), dir.path().join("vs-ca.pem")).unwrap();
    write_config(
        &path,
        "shutdown: { grace: 60s }\n",
        addr,
        metrics,
        &backends,
    );
    let mut p = Proc::run(&path, &[], &[]);
    bounded(58, "second SIGTERM", async {
        p.wait_log("listening", Duration::from_secs(15)).await;
        let download = slow_download(addr, dir.path(), "big16.bin").await;
        p.signal("TERM");
        p.wait_log("draining", Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "drain waits for the transfer"
        );
        let second = Instant::now();
        p.signal("TERM");
        let status = p.wait_exit(Duration::from_secs(5)).await;
        let status = status.unwrap_or_else(|| panic!("still draining\n{}", p.log()));
        assert!(second.elapsed() < Duration::from_secs(3));
        assert_eq!(status.code(), Some(1), "{}", p.log());
        assert!(
            p.log().contains("second termination signal: exiting now"),
            "{}",
            p.log()
        );
        let _ = download.await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Colour and journald priorities

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_lines_carry_syslog_priorities() {
    // A backend no listener uses is a start-up warning.
    let spare = format!(
        "{DEAD_BACKEND}  - name: spare\n    address: \"127.0.0.1:1\"\n    tls: {{ mode: none }}\n"
    );
    let (_dir, path, _addr, _metrics) = lab("", &spare);
    let check = |log: &str| {
        let lines: Vec<&str> = log.lines().collect();
        assert!(!lines.is_empty());
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with('<') && l.as_bytes().get(2) == Some(&b'>')),
            "every line prefixed:\n{log}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("<4>") && l.contains("spare")),
            "warning at priority 4:\n{log}"
        );
        assert!(lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("listening")));
        assert!(!log.contains('\u{1b}'), "no colour:\n{log}");
    };
    bounded(40, "journald format", async {
        // Asked for.
        let mut p = Proc::run(&path, &["--log-format", "journald"], &[]);
        p.wait_log("listening", Duration::from_secs(15)).await;
        p.signal("TERM");
        p.wait_exit(Duration::from_secs(10)).await;
        check(&p.log());

        // Detected: systemd's JOURNAL_STREAM names the stderr it connected.
        let stderr = path.with_extension("journal");
        let file = std::fs::File::create(&stderr).unwrap();
        let m = file.metadata().unwrap();
        let stream = {
            use std::os::unix::fs::MetadataExt;
            format!("{}:{}", m.dev(), m.ino())
        };
        let mut p = Proc::run_to(&path, &[], &[("JOURNAL_STREAM", stream)], file, stderr);
        p.wait_log("listening", Duration::from_secs(15)).await;
        p.signal("TERM");
        p.wait_exit(Duration::from_secs(10)).await;
        check(&p.log());

        // Plain text into a file: no colour, no prefixes.
        let mut p = Proc::run(&path, &[], &[]);
        p.wait_log("listening", Duration::from_secs(15)).await;
        p.signal("TERM");
        p.wait_exit(Duration::from_secs(10)).await;
        let log = p.log();
        assert!(!log.contains('\u{1b}'), "colour in a file:\n{log}");
        assert!(log.lines().all(|l| !l.starts_with('<')), "{log}");
    })
    .await;
}
