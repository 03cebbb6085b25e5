//! The control socket (`control.socket`, `ftpsgate ctl`) against real sessions
//! through the gateway to a strict vsftpd: the session list, kill (421 and
//! `outcome=killed`), backend drain with a transfer running, and reload via
//! the `ftpsgate ctl` binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::harness::{bounded, captured_logs, init_logs_capturing};
use common::*;
use ftpsgate::ctl::{request, BackendAction, Request, Response, SessionRow};

const MIB: usize = 1 << 20;

/// The standard test YAML plus a control socket in `dir` and extra listener keys.
fn yaml_with_control(vs: &Vsftpd, dir: &Path, listener_extra: &str) -> (String, PathBuf) {
    let socket = dir.join("control.sock");
    let mut yaml = common::gateway::gateway_yaml(
        &Frontend::explicit(),
        &Backend::for_vsftpd(vs),
        pasv_range(),
        "5s",
    );
    yaml = yaml.replace(
        "    backend: vs\n",
        &format!("    backend: vs\n{listener_extra}"),
    );
    yaml.push_str(&format!(
        "control: {{ socket: \"{}\", mode: \"0600\" }}\n",
        socket.display()
    ));
    (yaml, socket)
}

async fn start(
    vs: &Vsftpd,
    listener_extra: &str,
) -> (ftpsgate::Gateway, tempfile::TempDir, Certs, PathBuf) {
    let dir = temp_dir("ctl");
    let certs = Certs::generate(dir.path(), "gw");
    std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    let (yaml, socket) = yaml_with_control(vs, dir.path(), listener_extra);
    let gw = start_gateway(&yaml, dir.path()).await;
    (gw, dir, certs, socket)
}

async fn ask(socket: &Path, req: Request) -> Response {
    request(socket, &req).await.expect("control socket answers")
}

async fn sessions(socket: &Path) -> Vec<SessionRow> {
    let r = ask(socket, Request::Sessions).await;
    assert!(r.ok, "{r:?}");
    r.sessions.expect("sessions list")
}

/// Polls until `pred` holds for the session list (sessions update after each step).
async fn wait_sessions(
    socket: &Path,
    what: &str,
    pred: impl Fn(&[SessionRow]) -> bool,
) -> Vec<SessionRow> {
    for _ in 0..100 {
        let s = sessions(socket).await;
        if pred(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: sessions now {:?}", sessions(socket).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_a_killed_one_gets_421() {
    init_logs_capturing("info");
    ensure_tools();
    let vs = Vsftpd::strict();
    let (gw, _dir, certs, socket) = start(&vs, "").await;
    let (user, _) = test_user();
    bounded(60, "sessions and kill", async {
        let mut ftp =
            RawFtp::ready_explicit(gw.local_addr("edge").unwrap(), certs.client_config()).await;
        // From another loopback address, so the two clients are told apart.
        let anon =
            RawFtp::connect_from(Some([127, 0, 0, 2].into()), gw.local_addr("edge").unwrap())
                .await
                .expect("connect");
        let list = wait_sessions(&socket, "two sessions", |s| {
            s.len() == 2 && s.iter().any(|r| r.user.is_some())
        })
        .await;
        let me = list.iter().find(|r| r.user.is_some()).unwrap();
        assert_eq!(me.user.as_deref(), Some(user));
        assert!(me.client.starts_with("127.0.0.1:"), "{me:?}");
        assert_eq!(me.listener, "edge");
        assert_eq!(me.backend.as_deref(), Some("vs"));
        assert_eq!(me.state, "idle");
        assert!(me.age_seconds < 60);
        // No client certificate on this listener; vsftpd checked the password.
        assert_eq!(me.identity, None);
        assert_eq!(me.auth.as_deref(), Some("backend"));
        let other = list.iter().find(|r| r.user.is_none()).unwrap();
        assert_eq!(other.state, "login");
        assert_eq!(other.auth, None);
        assert_eq!(other.backend, None);
        assert!(other.client.starts_with("127.0.0.2:"), "{other:?}");

        // Bytes of finished transfers are counted.
        let sha = vs.make_file("small.bin", 100_000);
        let got = ftp.retr("small.bin").await;
        assert_eq!(sha256_bytes(&got), sha);
        let list = wait_sessions(&socket, "bytes counted", |s| {
            s.iter().any(|r| r.bytes == 100_000)
        })
        .await;
        let id = list.iter().find(|r| r.user.is_some()).unwrap().id;

        let r = ask(&socket, Request::Kill { id }).await;
        assert!(r.ok, "{r:?}");
        let bye = ftp
            .read_reply()
            .await
            .expect("a reply to the killed session");
        assert_eq!(bye.code, 421, "{bye}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("closed after 421");
        wait_sessions(&socket, "killed session gone", |s| s.len() == 1).await;
        let r = ask(&socket, Request::Kill { id }).await;
        assert!(
            !r.ok && r.error.as_deref() == Some(&*format!("no session {id}")),
            "{r:?}"
        );
        drop(anon);
    })
    .await;
    let text = gw.metrics().encode();
    assert!(
        text.contains("outcome=\"killed\"} 1"),
        "killed session counted: {text}"
    );
    assert!(
        text.contains("ftpsgate_control_requests_total{command=\"kill\",result=\"ok\"} 1"),
        "{text}"
    );
    gw.shutdown_with(Duration::from_secs(2)).await;
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    assert!(logs.contains("control: session killed"), "{logs}");
    assert!(logs.contains("uid=Some("), "caller's uid logged: {logs}");
    assert!(logs.contains("closed outcome=killed"), "{logs}");
    assert!(!socket.exists(), "socket removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_takes_no_new_sessions_while_a_transfer_completes() {
    ensure_tools();
    let vs = Vsftpd::strict();
    // 8 MiB at 2 MB/s: about four seconds of transfer to drain under.
    let (gw, _dir, certs, socket) = start(&vs, "    limits: { bandwidth: 2M }\n").await;
    let addr = gw.local_addr("edge").unwrap();
    let sha = vs.make_file("big.bin", 8 * MIB);
    bounded(90, "drain", async {
        let mut ftp = RawFtp::ready_explicit(addr, certs.client_config()).await;
        let download = tokio::spawn(async move {
            let data = ftp.retr("big.bin").await;
            (ftp, data)
        });
        wait_sessions(&socket, "transfer running", |s| {
            s.iter().any(|r| r.state == "transfer")
        })
        .await;
        let r = ask(
            &socket,
            Request::Backend {
                action: BackendAction::Drain,
                name: "vs".into(),
            },
        )
        .await;
        assert!(r.ok, "{r:?}");
        assert!(
            r.message.as_deref().unwrap_or("").contains("1 running"),
            "{r:?}"
        );

        // A new session: the backend is out of rotation, so USER is refused.
        let (user, _) = test_user();
        let mut late = RawFtp::connect_explicit(addr, certs.client_config()).await;
        let reply = late.cmd(&format!("USER {user}")).await.expect("USER");
        assert_eq!(
            reply.code, 421,
            "drained backend must not take a session: {reply}"
        );
        assert!(sessions(&socket)
            .await
            .iter()
            .all(|r| r.backend.is_some() || r.user.is_none()),);

        let (_ftp, data) = download.await.expect("download task");
        assert_eq!(
            sha256_bytes(&data),
            sha,
            "running transfer intact through the drain"
        );

        let r = ask(
            &socket,
            Request::Backend {
                action: BackendAction::Enable,
                name: "vs".into(),
            },
        )
        .await;
        assert!(r.ok, "{r:?}");
        let _back = RawFtp::ready_explicit(addr, certs.client_config()).await;

        let r = ask(
            &socket,
            Request::Backend {
                action: BackendAction::Disable,
                name: "nope".into(),
            },
        )
        .await;
        assert!(!r.ok, "unknown backend refused: {r:?}");
    })
    .await;
    gw.shutdown_with(Duration::from_secs(2)).await;
}

const BIN: &str = env!("CARGO_BIN_EXE_ftpsgate");

fn ctl(socket: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run ftpsgate ctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Kills the `ftpsgate run` child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctl_binary_lists_sessions_and_reloads_with_errors() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let dir = temp_dir("ctl-bin");
    Certs::generate(dir.path(), "gw");
    std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    let port = free_port();
    let (yaml, socket) = yaml_with_control(&vs, dir.path(), "");
    let yaml = yaml.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let config = dir.path().join("ftpsgate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let _gw = Child(
        std::process::Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ftpsgate run"),
    );
    let mut up = false;
    for _ in 0..100 {
        if socket.exists() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "control socket appears");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control.mode applied");

    let (code, out, err) = ctl(&socket, &["sessions"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ID  USER  IDENTITY  AUTH  CLIENT"), "{out}");
    let (code, out, _) = ctl(&socket, &["--json", "sessions"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json is JSON");
    assert_eq!(v["ok"], true);
    assert!(
        v["sessions"].as_array().is_some_and(|a| a.is_empty()),
        "{out}"
    );

    let (code, out, err) = ctl(&socket, &["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("configuration reloaded"), "{out}");

    // A broken config is refused with its errors; the running one stays.
    std::fs::write(&config, yaml.replace("mode: explicit", "mode: sideways")).unwrap();
    let (code, out, _) = ctl(&socket, &["reload"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reload refused"), "{out}");
    assert!(out.contains("listeners[0].tls.mode"), "{out}");
    let (code, out, _) = ctl(&socket, &["pinholes"]);
    assert_eq!(code, Some(0), "still serving: {out}");

    let (code, _, err) = ctl(&dir.path().join("absent.sock"), &["sessions"]);
    assert_eq!(code, Some(69), "{err}");
}
