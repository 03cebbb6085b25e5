//! The `ftpsgate` binary: `check`, `demo` and `run` as an operator uses them.

mod common;

use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::clients::{run, Output};
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ftpsgate");

/// A child process killed (SIGKILL) on drop unless it already exited.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Proc {
    fn wait_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Runs the binary to completion (killed after `within`).
fn ftpsgate(args: &[&str], cwd: &Path, within: Duration) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn ftpsgate");
    let mut p = Proc(child);
    let status = p.wait_within(within);
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        status.is_some(),
        "ftpsgate {args:?} still running after {within:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        read(&out),
        read(&err)
    );
    (status.unwrap().code(), read(&out), read(&err))
}

/// A config with one explicit-TLS listener `edge` and one plain backend `legacy`.
fn config(bind: &str, cert: &str, key: &str, ports: &str, backend_ref: &str) -> String {
    format!(
        r#"listeners:
  - name: edge
    bind: "{bind}"
    tls: {{ mode: explicit, cert: {cert}, key: {key} }}
    passive: {{ ports: "{ports}", advertise: "127.0.0.1" }}
    backend: {backend_ref}
backends:
  - name: legacy
    address: "127.0.0.1:2100"
    tls: {{ mode: none }}
"#
    )
}

// ---------------------------------------------------------------------------------------
// check

/// Writes `yaml` as `name` into `dir` and runs `ftpsgate check --config` on it from `/`
/// (relative paths in it must follow the config file, not the working directory).
fn check(dir: &tempfile::TempDir, name: &str, yaml: String) -> (Option<i32>, String, String) {
    let cfg = dir.path().join(name);
    std::fs::write(&cfg, yaml).unwrap();
    ftpsgate(
        &["check", "--config", cfg.to_str().unwrap()],
        Path::new("/"),
        Duration::from_secs(20),
    )
}

#[test]
fn check_valid_config_prints_ok() {
    let dir = temp_dir("cli");
    Certs::generate(dir.path(), "gw");
    // From another working directory: relative paths follow the config file.
    let (code, stdout, stderr) = check(
        &dir,
        "ftpsgate.yaml",
        config(
            "127.0.0.1:2121",
            "gw.pem",
            "gw.key",
            "50000-50010",
            "legacy",
        ),
    );
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ok"), "stdout:\n{stdout}");
    assert!(!stdout.contains("error"), "stdout:\n{stdout}");
}

#[test]
fn check_reports_every_error_with_its_key_path() {
    let dir = temp_dir("cli");
    Certs::generate(dir.path(), "gw");
    let (code, stdout, stderr) = check(
        &dir,
        "bad.yaml",
        config(
            "127.0.0.1:2121",
            "missing.pem",
            "gw.key",
            "5000-400",
            "nowhere",
        ),
    );
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for (path, detail) in [
        ("listeners[0].passive.ports", "5000-400"),
        ("listeners[0].backend", "nowhere"),
        ("listeners[0].tls.cert", "missing.pem"),
    ] {
        let line = stderr.lines().find(|l| l.contains(path));
        assert!(
            line.is_some_and(|l| l.contains(detail)),
            "no error for {path} mentioning {detail:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_rejects_key_not_matching_cert() {
    let dir = temp_dir("cli");
    Certs::generate(dir.path(), "gw");
    Certs::generate(dir.path(), "other");
    let (code, stdout, stderr) = check(
        &dir,
        "mismatch.yaml",
        config(
            "127.0.0.1:2121",
            "gw.pem",
            "other.key",
            "50000-50010",
            "legacy",
        ),
    );
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("listeners[0].tls"),
        "error must name listeners[0].tls:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// run

#[test]
fn run_exits_64_when_a_listener_cannot_bind() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = temp_dir("cli");
    Certs::generate(dir.path(), "gw");
    let cfg = dir.path().join("ftpsgate.yaml");
    std::fs::write(
        &cfg,
        config(
            &addr.to_string(),
            "gw.pem",
            "gw.key",
            "50000-50010",
            "legacy",
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = ftpsgate(
        &["run", "--config", cfg.to_str().unwrap()],
        dir.path(),
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(64), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("edge") && stderr.contains(&addr.to_string()),
        "message must name the listener and its address:\n{stderr}"
    );
    drop(taken);
}

// ---------------------------------------------------------------------------------------
// demo

/// What `ftpsgate demo` prints for the operator.
#[derive(Debug)]
struct DemoInfo {
    explicit: SocketAddr,
    implicit: SocketAddr,
    backend: SocketAddr,
    ca: PathBuf,
    curl: Vec<Vec<String>>,
    lftp_script: String,
    lftp_rest: Vec<String>,
}

fn parse_demo(lines: &[String]) -> DemoInfo {
    let find = |needle: &str| -> &String {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in demo output:\n{lines:#?}"))
    };
    let addr_after = |line: &str, marker: &str| -> SocketAddr {
        let rest = &line[line.find(marker).unwrap() + marker.len()..];
        let token = rest.split_whitespace().next().unwrap();
        token
            .parse()
            .unwrap_or_else(|e| panic!("bad address {token:?} in {line:?}: {e}"))
    };
    let curl: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("curl "))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(curl.len(), 3, "curl commands: {curl:#?}");
    let ca = curl[0]
        .iter()
        .skip_while(|a| *a != "--cacert")
        .nth(1)
        .expect("--cacert PATH");
    let lftp = find("lftp -e").trim();
    let open = lftp.find('\'').unwrap();
    let close = lftp.rfind('\'').unwrap();
    DemoInfo {
        explicit: addr_after(find("explicit FTPS:"), "explicit FTPS:"),
        implicit: addr_after(find("implicit FTPS:"), "implicit FTPS:"),
        backend: addr_after(find("in-process):"), "in-process):"),
        ca: PathBuf::from(ca),
        lftp_script: lftp[open + 1..close].to_owned(),
        lftp_rest: lftp[close + 1..]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        curl,
    }
}

/// Runs a printed curl command with output bounded and errors shown.
async fn curl(args: &[String], extra: &[&str]) -> Output {
    let mut all: Vec<String> = vec!["-sS".into(), "--max-time".into(), "30".into()];
    all.extend(extra.iter().map(|s| s.to_string()));
    all.extend(args.iter().skip(1).cloned());
    run("curl", &all, Duration::from_secs(40)).await
}

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_its_printed_commands_and_stops_on_sigint() {
    ensure_tools();
    let work = temp_dir("demo");
    let stderr = work.path().join("demo.stderr");
    let child = Command::new(BIN)
        .args(["demo", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn ftpsgate demo");
    let mut demo = Proc(child);
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Everything up to the blank line that ends the "Try:" block.
    let mut lines = Vec::new();
    let mut in_try = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|e| {
            panic!(
                "demo output incomplete ({e}):\n{lines:#?}\n--- stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        if line.trim() == "Try:" {
            in_try = true;
        } else if in_try && line.trim().is_empty() {
            break;
        }
        lines.push(line);
    }
    let info = parse_demo(&lines);
    let show = |o: &Output| {
        format!(
            "{o}\n--- demo stderr:\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };

    // 1. Explicit download of hello.txt.
    let out = curl(&info.curl[0], &[]).await;
    assert!(out.success(), "{}", show(&out));
    assert_eq!(out.stdout, "Hello from the ftpsgate demo backend\n");

    // 2. Implicit listing.
    let out = curl(&info.curl[1], &[]).await;
    assert!(out.success(), "{}", show(&out));
    assert!(
        out.stdout.contains("hello.txt") && out.stdout.contains("sample.bin"),
        "{}",
        show(&out)
    );

    // 3. Upload (our own file instead of /etc/hostname), then download it back.
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 300 * KIB + 7);
    let mut upload = info.curl[2].clone();
    let t = upload
        .iter()
        .position(|a| a == "-T")
        .expect("-T in the upload command");
    upload[t + 1] = up.display().to_string();
    let url = upload.last().unwrap().clone();
    let out = curl(&upload, &[]).await;
    assert!(out.success(), "{}", show(&out));
    let back = work.path().join("back.bin");
    let mut download = info.curl[0].clone();
    *download.last_mut().unwrap() = url;
    let out = curl(&download, &["-o", back.to_str().unwrap()]).await;
    assert!(out.success(), "{}", show(&out));
    assert_eq!(sha256_file(&back), up_sha, "upload/download round trip");

    // 4. The printed lftp command, bounded, with its output file in our temp dir.
    let got = work.path().join("hello.txt");
    assert!(
        info.lftp_script.contains("/tmp/hello.txt"),
        "{}",
        info.lftp_script
    );
    let script = format!(
        "set net:max-retries 1; set net:timeout 10; set cmd:fail-exit yes; {}",
        info.lftp_script
            .replace("/tmp/hello.txt", got.to_str().unwrap())
    );
    let mut args = vec!["-e".to_string(), script];
    args.extend(info.lftp_rest.iter().cloned());
    let out = run("lftp", &args, Duration::from_secs(45)).await;
    assert!(out.success(), "{}", show(&out));
    assert!(out.stdout.contains("hello.txt"), "ls: {}", show(&out));
    assert_eq!(
        std::fs::read_to_string(&got).unwrap_or_default(),
        "Hello from the ftpsgate demo backend\n"
    );
    assert!(
        info.ca.is_file(),
        "{} missing while running",
        info.ca.display()
    );

    // 5. SIGINT: clean exit within 10 s, every port closed.
    let pid = demo.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = demo.wait_within(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| {
        panic!(
            "demo still running 10 s after SIGINT\n--- stderr:\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "demo exit after SIGINT: {status}\n--- stderr:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    for (what, addr) in [
        ("explicit", info.explicit),
        ("implicit", info.implicit),
        ("backend", info.backend),
    ] {
        assert!(
            refused(addr),
            "{what} {addr} still accepts after the demo exited"
        );
    }
}

// ------------------------------------------------ packaging additions (issue 16)

fn ftpsgate_stdout(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(args)
        .output()
        .expect("run ftpsgate");
    assert!(
        out.status.success(),
        "ftpsgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_names_version_commit_and_tls_provider() {
    let v = ftpsgate_stdout(&["--version"]);
    assert!(
        v.starts_with(&format!("ftpsgate {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("rustls 0.23") && v.contains("ring"), "{v}");
    assert!(
        v.contains("git ") || v.contains("no git commit recorded"),
        "{v}"
    );
}

#[test]
fn completions_for_bash_zsh_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ftpsgate_stdout(&["completions", shell]);
        assert!(script.contains("check"), "{shell}: {script}");
        assert!(script.contains("config"), "{shell}: {script}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["completions", "powershell-9"])
        .output()
        .expect("run ftpsgate");
    assert!(!bad.status.success());
}

#[test]
fn man_pages_are_roff() {
    let one = ftpsgate_stdout(&["man", "ftpsgate.1"]);
    assert!(
        one.starts_with(".ie") || one.contains(".TH ftpsgate 1"),
        "{one}"
    );
    let five = ftpsgate_stdout(&["man", "ftpsgate.yaml.5"]);
    assert!(five.starts_with(".TH FTPSGATE.YAML 5"), "{five}");
}
