//! Authentication at the gateway (issue 19 §2): routes with `auth: gateway`
//! check `PASS` with a password file (hashes written by `ftpsgate passwd`) or
//! a real slapd before any backend connection exists; then the gateway logs
//! in to vsftpd with the same credentials or a mapped service account.
//!
//! A counting TCP proxy in front of vsftpd proves that failed logins never
//! reach the backend; transfers go through curl, lftp and Python ftplib with
//! sha256 checked both ways.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::faultproxy::{Fault, FaultProxy};
use common::gateway::gateway_yaml;
use common::harness::{bounded, captured_logs, init_logs};
use common::process::GwProcess;
use common::slapd::{Slapd, ADMIN_DN, ADMIN_PW};
use common::{
    clients, free_port, make_file, pasv_range, sha256_file, start_gateway, temp_dir, Backend,
    Certs, Curl, Frontend, Lftp, RawFtp, Security, Vsftpd, TEST_PASS, TEST_USER,
};

const ALICE_PW: &str = "alice-gw-Pw-81x";
const LDAP_ALICE_PW: &str = "alice-ldap-Pw-27q";
const LDAP_BOB_PW: &str = "bob-ldap-Pw-55z";

/// vsftpd behind a connection-counting proxy, the gateway in front.
struct Env {
    gw: Option<ftpsgate::Gateway>,
    dir: tempfile::TempDir,
    certs: Certs,
    proxy: FaultProxy,
    vs: Vsftpd,
}

impl Env {
    /// `files(dir)` writes what the policy names (password file, secrets)
    /// before the gateway starts; `routes` are YAML list items under the
    /// listener, `top` extra top-level YAML (auth, limits).
    async fn start(routes: &str, top: &str, files: impl FnOnce(&Path)) -> Env {
        init_logs();
        let vs = Vsftpd::strict();
        let proxy = FaultProxy::start(vs.addr(), Fault::None).await;
        let dir = temp_dir("gwauth");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
        files(dir.path());
        let mut back = Backend::for_vsftpd(&vs);
        back.addr = proxy.addr;
        let yaml = gateway_yaml(&Frontend::explicit(), &back, pasv_range(), "5s").replace(
            "    backend: vs\n",
            &format!("    backend: vs\n    routes:\n{routes}"),
        );
        let gw = start_gateway(&format!("{yaml}{top}"), dir.path()).await;
        Env {
            gw: Some(gw),
            dir,
            certs,
            proxy,
            vs,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.as_ref().unwrap().local_addr("edge").unwrap()
    }

    /// The value of `ftpsgate_gateway_auth_total{provider,result}` (0 if absent).
    fn auth_count(&self, provider: &str, result: &str) -> u64 {
        let text = self.gw.as_ref().unwrap().metrics().encode();
        let series =
            format!("ftpsgate_gateway_auth_total{{provider=\"{provider}\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    fn curl(&self, user: &str, pass: &str) -> Client {
        let mut c = Curl::new(self.addr(), Security::Explicit, Some(&self.certs.ca_pem));
        (c.user, c.pass) = (user.into(), pass.into());
        Client::Curl(c)
    }

    fn lftp(&self, user: &str, pass: &str) -> Client {
        let mut l = Lftp::new(self.addr(), Security::Explicit, Some(&self.certs.ca_pem));
        (l.user, l.pass) = (user.into(), pass.into());
        Client::Lftp(l)
    }

    fn python(&self, user: &str, pass: &str) -> Client {
        Client::Python {
            addr: self.addr(),
            ca: self.certs.ca_pem.clone(),
            user: user.into(),
            pass: pass.into(),
        }
    }

    async fn raw(&self) -> RawFtp {
        RawFtp::connect_explicit(self.addr(), self.certs.client_config()).await
    }

    /// Upload a fresh file as `name` with `client`, check it on vsftpd's disk,
    /// download it again and compare: sha256 both ways.
    async fn round_trip(&self, client: &Client, name: &str, size: usize) {
        let local = self.dir.path().join(format!("{name}.up"));
        let sha = make_file(&local, size);
        client.put(&local, name).await.assert_ok();
        assert_eq!(
            sha256_file(&self.vs.root().join(name)),
            sha,
            "upload {name}"
        );
        let back = self.dir.path().join(format!("{name}.down"));
        client.get(name, &back).await.assert_ok();
        assert_eq!(sha256_file(&back), sha, "download {name}");
    }

    async fn shutdown(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
    }
}

/// curl, lftp or Python ftplib, each logging in as one user.
enum Client {
    Curl(Curl),
    Lftp(Lftp),
    Python {
        addr: SocketAddr,
        ca: PathBuf,
        user: String,
        pass: String,
    },
}

impl Client {
    async fn put(&self, local: &Path, remote: &str) -> clients::Output {
        match self {
            Client::Curl(c) => c.put(local, remote).await,
            Client::Lftp(l) => l.put(local, remote).await,
            Client::Python { .. } => {
                self.py(&format!("put~~{}~~{remote}", local.display()))
                    .await
            }
        }
    }

    async fn get(&self, remote: &str, local: &Path) -> clients::Output {
        match self {
            Client::Curl(c) => c.get(remote, local).await,
            Client::Lftp(l) => l.get(remote, local).await,
            Client::Python { .. } => {
                self.py(&format!("get~~{remote}~~{}", local.display()))
                    .await
            }
        }
    }

    async fn py(&self, step: &str) -> clients::Output {
        let Client::Python {
            addr,
            ca,
            user,
            pass,
        } = self
        else {
            unreachable!("py() on another client");
        };
        let args: Vec<String> = vec![
            common::netns::py_script("ftpclient.py")
                .display()
                .to_string(),
            "--host".into(),
            addr.ip().to_string(),
            "--port".into(),
            addr.port().to_string(),
            "--ca".into(),
            ca.display().to_string(),
            "--user".into(),
            user.clone(),
            "--password".into(),
            pass.clone(),
            step.into(),
        ];
        clients::run("python3", &args, clients::CLIENT_TIMEOUT).await
    }
}

/// Writes `user`'s entry into `file` with the real `ftpsgate passwd` (password on stdin).
fn passwd(file: &Path, user: &str, password: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["passwd", "--file"])
        .arg(file)
        .arg(user)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ftpsgate passwd");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ftpsgate passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        !text.contains(password),
        "the password file holds the password"
    );
}

/// A root-only secrets file (mode 0600) holding `secret`.
fn secret_file(path: &Path, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The password file with `ftpsgatetest` (vsftpd's own password: same
/// credentials) and `alice` (mapped to the service account), and the
/// service account's secrets file.
fn local_files(dir: &Path) {
    passwd(&dir.join("passwd"), TEST_USER, TEST_PASS);
    passwd(&dir.join("passwd"), "alice", ALICE_PW);
    secret_file(&dir.join("svc.secret"), TEST_PASS);
}

const LOCAL_AUTH: &str = "auth:\n  providers:\n    - { name: local, passwd_file: passwd }\n";

/// alice → the service account; every other name → its own credentials.
const LOCAL_ROUTES: &str = "      - { user: alice, backends: [vs], auth: gateway, backend_login: { user: ftpsgatetest, password_file: svc.secret } }
      - { user: \"*\", backends: [vs], auth: gateway }
";

/// The gateway's own `USER` and `PASS` answers, on a fresh connection.
async fn try_login(env: &Env, user: &str, pass: &str) -> (u16, Duration, RawFtp) {
    let mut ftp = env.raw().await;
    let r = ftp.cmd(&format!("USER {user}")).await.expect("USER");
    assert_eq!(r.code, 331, "USER {user}: {r}");
    let started = Instant::now();
    let r = ftp.cmd(&format!("PASS {pass}")).await.expect("PASS");
    (r.code, started.elapsed(), ftp)
}

fn assert_not_logged(secrets: &[&str]) {
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    for s in secrets {
        assert!(!logs.contains(s), "a password reached the logs: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_file_logins_reach_vsftpd_same_and_mapped() {
    let env = Env::start(LOCAL_ROUTES, LOCAL_AUTH, local_files).await;
    // Same credentials: the gateway checked them, vsftpd checks them again.
    env.round_trip(&env.curl(TEST_USER, TEST_PASS), "curl-same.bin", 300_000)
        .await;
    // Mapped: alice never learns the service account's password.
    env.round_trip(&env.lftp("alice", ALICE_PW), "lftp-mapped.bin", 200_000)
        .await;
    env.round_trip(&env.python("alice", ALICE_PW), "py-mapped.bin", 150_000)
        .await;
    assert!(env.proxy.connections() >= 3, "logins reached vsftpd");
    assert!(env.auth_count("local", "ok") >= 3);
    assert_eq!(env.auth_count("local", "bad_credentials"), 0);
    let log = env.vs.log();
    assert!(
        !log.contains("alice"),
        "vsftpd saw the gateway user:\n{log}"
    );
    assert_not_logged(&[ALICE_PW, TEST_PASS]);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_never_reach_the_backend_and_are_throttled() {
    let throttle = "limits:\n  failed_logins: { max: 3, window: 60s, cooldown: 60s }\n";
    let env = Env::start(
        LOCAL_ROUTES,
        &format!("{LOCAL_AUTH}{throttle}"),
        local_files,
    )
    .await;
    let wrong = "wrong-Pw-for-alice-3";
    let (code, _, _) = try_login(&env, "alice", wrong).await;
    assert_eq!(code, 530, "wrong password");
    let (code, _, _) = try_login(&env, "nobody-here", "whatever-Pw-9").await;
    assert_eq!(code, 530, "unknown user");
    // A session parked after USER before the cool-down begins.
    let mut parked = env.raw().await;
    assert_eq!(parked.cmd("USER alice").await.unwrap().code, 331);
    // The third failure starts the cool-down: 530, then 421 and the close.
    let (code, _, mut ftp) = try_login(&env, "alice", wrong).await;
    assert_eq!(code, 530);
    let r = ftp.read_reply().await.expect("421 after the third failure");
    assert_eq!(r.code, 421, "{r}");
    // Even the right password is refused (unchecked) while the address cools down.
    let r = parked.cmd(&format!("PASS {ALICE_PW}")).await.unwrap();
    assert_eq!(r.code, 421, "{r}");
    // New connections are turned away at the greeting.
    let refused = RawFtp::connect(env.addr()).await.expect("connect");
    assert_eq!(refused.greeting.code, 421, "{}", refused.greeting);
    assert_eq!(
        env.proxy.connections(),
        0,
        "a failed login reached the backend"
    );
    assert_eq!(env.auth_count("local", "bad_credentials"), 3);
    assert_eq!(
        env.auth_count("local", "ok"),
        0,
        "the cool-down refuses unchecked"
    );
    assert_not_logged(&[wrong, "whatever-Pw-9", ALICE_PW]);
    env.shutdown().await;
}

/// An unknown user's `530` costs an argon2id verification too: its answer
/// takes about as long as a wrong password's (medians of alternating tries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_take_equal_time() {
    let env = Env::start(LOCAL_ROUTES, LOCAL_AUTH, local_files).await;
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..7 {
        let (code, t, _) = try_login(&env, "alice", &format!("bad-{i}")).await;
        assert_eq!(code, 530);
        wrong.push(t);
        let (code, t, _) = try_login(&env, &format!("ghost{i}"), &format!("bad-{i}")).await;
        assert_eq!(code, 530);
        unknown.push(t);
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[3], unknown[3]);
    assert!(
        u * 2 >= w && w * 2 >= u,
        "median wrong password {w:?}, unknown user {u:?} (all: {wrong:?} / {unknown:?})"
    );
    assert_eq!(env.proxy.connections(), 0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_binds_check_logins_and_a_down_server_makes_no_backend_connection() {
    let mut slapd = Slapd::start(&[("alice", LDAP_ALICE_PW), ("bob", LDAP_BOB_PW)]);
    let (url, ca) = (slapd.url(), slapd.certs.ca_pem.clone());
    let starttls = slapd.starttls_url();
    let auth = format!(
        "auth:
  providers:
    - name: corp
      ldap: {{ url: \"{url}\", ca: ldap-ca.pem, user_dn: \"uid={{user}},ou=people,dc=example,dc=org\" }}
    - name: corpsearch
      ldap:
        url: \"{starttls}\"
        ca: ldap-ca.pem
        search: {{ base: \"ou=people,dc=example,dc=org\", filter: \"(uid={{user}})\", bind_dn: \"{ADMIN_DN}\", bind_password_file: admin.secret }}
"
    );
    let routes = "      - { user: alice, backends: [vs], auth: gateway, provider: corp, backend_login: { user: ftpsgatetest, password_file: svc.secret } }
      - { user: \"*\", backends: [vs], auth: gateway, provider: corpsearch, backend_login: { user: ftpsgatetest, password_file: svc.secret } }
";
    let env = Env::start(routes, &auth, |dir| {
        std::fs::copy(&ca, dir.join("ldap-ca.pem")).unwrap();
        secret_file(&dir.join("svc.secret"), TEST_PASS);
        secret_file(&dir.join("admin.secret"), ADMIN_PW);
    })
    .await;
    // A DN template bind over LDAPS, a search then bind after StartTLS.
    env.round_trip(&env.curl("alice", LDAP_ALICE_PW), "ldap-alice.bin", 120_000)
        .await;
    env.round_trip(&env.python("bob", LDAP_BOB_PW), "ldap-bob.bin", 90_000)
        .await;
    let before = env.proxy.connections();
    assert!(before >= 2);
    for (user, pass) in [
        ("alice", "not-alice-Pw"),
        ("bob", LDAP_ALICE_PW),
        ("carol", "x-Pw-1"),
    ] {
        let (code, _, _) = try_login(&env, user, pass).await;
        assert_eq!(code, 530, "{user} with a wrong password:\n{}", slapd.log());
    }
    // An empty password would be an unauthenticated bind: refused.
    let mut ftp = env.raw().await;
    assert_eq!(ftp.cmd("USER alice").await.unwrap().code, 331);
    assert_eq!(ftp.cmd("PASS").await.unwrap().code, 530);
    assert_eq!(
        env.proxy.connections(),
        before,
        "a failed login reached the backend"
    );
    // LDAP down: 421, still no backend connection.
    slapd.stop();
    let (code, _, _) = try_login(&env, "alice", LDAP_ALICE_PW).await;
    assert_eq!(code, 421, "LDAP down");
    assert_eq!(env.proxy.connections(), before);
    assert_eq!(env.auth_count("corp", "unavailable"), 1);
    assert_eq!(
        env.auth_count("corpsearch", "ok"),
        2,
        "bob: upload and download"
    );
    assert_eq!(env.auth_count("corpsearch", "bad_credentials"), 2);
    assert_not_logged(&[LDAP_ALICE_PW, LDAP_BOB_PW, ADMIN_PW, "not-alice-Pw"]);
    env.shutdown().await;
}

/// `reload.watch` polls the password file too: a user added with
/// `ftpsgate passwd` can log in without a SIGHUP (the real binary, its own
/// watch loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_with_ftpsgate_passwd_is_picked_up_by_reload_watch() {
    const CAROL_PW: &str = "carol-watch-Pw-64k";
    let vs = Vsftpd::strict();
    let dir = temp_dir("gwauth-watch");
    let certs = Certs::generate(dir.path(), "gw");
    std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    passwd(&dir.path().join("passwd"), "alice", ALICE_PW);
    secret_file(&dir.path().join("svc.secret"), TEST_PASS);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let yaml = gateway_yaml(
        &Frontend::explicit(),
        &Backend::for_vsftpd(&vs),
        pasv_range(),
        "5s",
    )
    .replace("127.0.0.1:0", &addr.to_string())
    .replace(
        "    backend: vs\n",
        "    backend: vs\n    routes:\n      - { user: \"*\", backends: [vs], auth: gateway, backend_login: { user: ftpsgatetest, password_file: svc.secret } }\n",
    );
    let yaml = format!("{yaml}{LOCAL_AUTH}reload: {{ watch: true, interval: 1s }}\n");
    let gw = GwProcess::start(&yaml, dir.path(), None, addr);
    let login = |user: &'static str, pass: &'static str| {
        let tls = certs.client_config();
        async move {
            let mut ftp = RawFtp::connect_explicit(addr, tls).await;
            let r = ftp.cmd(&format!("USER {user}")).await.expect("USER");
            assert_eq!(r.code, 331, "USER {user}: {r}");
            ftp.cmd(&format!("PASS {pass}")).await.expect("PASS").code
        }
    };
    bounded(90, "password file watch", async {
        // alice is in the file; carol is not yet.
        assert_eq!(login("alice", ALICE_PW).await, 230, "{}", gw.log());
        assert_eq!(login("carol", CAROL_PW).await, 530, "{}", gw.log());
        passwd(&dir.path().join("passwd"), "carol", CAROL_PW);
        // No signal: the watch sees the file change and reloads.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if login("carol", CAROL_PW).await == 230 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "carol was never accepted\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let log = gw.log();
        assert!(log.contains("configuration files changed"), "{log}");
        assert!(log.contains("configuration reloaded"), "{log}");
        // alice still logs in; the passwords never reached the log.
        assert_eq!(login("alice", ALICE_PW).await, 230, "{}", gw.log());
        let log = gw.log();
        for secret in [ALICE_PW, CAROL_PW, TEST_PASS] {
            assert!(!log.contains(secret), "a password reached the log");
        }
    })
    .await;
}
