//! Client certificates (issue 19 §1): `listeners[].tls.client_auth` with real
//! clients (curl `--cert/--key` explicit and implicit, lftp `ssl:cert-file`,
//! Python ftplib `load_cert_chain`), refusals (expired, revoked by CRL, wrong
//! CA, missing) logged with their reason and counted in /metrics,
//! `require_user_match`, `mode: optional`, the data connection bound to the
//! control connection's certificate, and `backends[].tls.cert/key` toward a
//! vsftpd with `require_cert=YES` + `validate_cert=YES`. Every transfer is
//! checked by SHA-256 both ways.

mod common;

use std::path::Path;
use std::time::Duration;

use common::certs::{ClientCertFiles, ClientPki};
use common::clients::{run, FileClient};
use common::gateway::gateway_yaml;
use common::harness::{captured_logs, init_logs};
use common::raw::DataPlan;
use common::*;

const KIB: usize = 1024;

/// A gateway `edge` → vsftpd `vs` whose listener asks for client certificates.
struct Mtls {
    vs: Vsftpd,
    gw: GwEnv,
    pki: ClientPki,
}

impl Mtls {
    /// `client_auth` holds the keys after `ca:` and `crl:` (e.g. `mode: optional`).
    async fn start(front: Frontend, client_auth: &str) -> Mtls {
        Mtls::start_on(Vsftpd::strict(), front, client_auth, |y| y).await
    }

    /// As [`Mtls::start`] with `vs` as the backend and `edit` applied to the YAML.
    async fn start_on(
        vs: Vsftpd,
        front: Frontend,
        client_auth: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Mtls {
        init_logs();
        let dir = temp_dir("mtls");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
        let pki = ClientPki::generate(dir.path(), "client", TEST_USER);
        let base = gateway_yaml(&front, &Backend::for_vsftpd(&vs), pasv_range(), "5s");
        let auth = format!(
            ", client_auth: {{ ca: client-ca.pem, crl: [client-ca.crl]{sep}{client_auth} }} }}",
            sep = if client_auth.is_empty() { "" } else { ", " },
        );
        let yaml = edit(
            base.replacen(
                "require_data_reuse: true }",
                &format!("require_data_reuse: true{auth}"),
                1,
            )
            .replacen(
                "require_data_reuse: false }",
                &format!("require_data_reuse: false{auth}"),
                1,
            ) + "metrics: { bind: \"127.0.0.1:0\" }\n",
        );
        assert!(yaml.contains("client_auth"), "{yaml}");
        let gateway = start_gateway(&yaml, dir.path()).await;
        Mtls {
            vs,
            gw: GwEnv {
                gateway: Some(gateway),
                dir,
                certs,
                yaml,
            },
            pki,
        }
    }

    fn curl(&self, security: Security, cert: Option<&ClientCertFiles>) -> Curl {
        let curl = Curl::new(self.gw.addr(), security, Some(&self.gw.certs.ca_pem));
        match cert {
            Some(c) => curl.with_client_cert(&c.cert, &c.key),
            None => curl,
        }
    }

    /// `ftpsgate_client_cert_refused_total{reason}` as served on /metrics.
    async fn refused(&self, reason: &str) -> f64 {
        let addr = self.gw.gateway.as_ref().unwrap().metrics_addr().unwrap();
        let out = run(
            "curl",
            &["-sS".into(), format!("http://{addr}/metrics")],
            Duration::from_secs(10),
        )
        .await;
        out.assert_ok();
        let series = format!("ftpsgate_client_cert_refused_total{{reason=\"{reason}\"}} ");
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{}", out.stdout))
    }

    async fn shutdown(self) {
        self.gw.shutdown().await;
        drop(self.vs);
    }
}

/// Upload, download and list with `client`, checking SHA-256 both ways.
async fn round_trip(m: &Mtls, client: &impl FileClient, tag: &str) {
    let work = temp_dir("mtls-work");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 300 * KIB);
    let remote = format!("up-{tag}.bin");
    client.store(&up, &remote).await.assert_ok();
    let stored = m.vs.root().join(&remote);
    assert_eq!(sha256_file(&stored), up_sha, "{tag}: upload stored intact");
    let down_name = format!("down-{tag}.bin");
    let down_sha = m.vs.make_file(&down_name, 200 * KIB);
    let local = work.path().join("down.bin");
    client.fetch(&down_name, &local).await.assert_ok();
    assert_eq!(sha256_file(&local), down_sha, "{tag}: download intact");
    let listing = client.listing().await;
    listing.assert_ok();
    assert!(listing.stdout.contains(&down_name), "{tag}: {listing}");
}

/// Whether a captured log line says a certificate was refused for `reason`.
fn logged_refusal(reason: &str) -> bool {
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    logs.lines()
        .any(|l| l.contains("client certificate refused") && l.contains(reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_valid_certificate_explicit_and_implicit() {
    ensure_tools();
    for (front, security) in [
        (Frontend::explicit(), Security::Explicit),
        (Frontend::implicit(), Security::Implicit),
    ] {
        let m = Mtls::start(front, "require_user_match: true").await;
        let curl = m.curl(security, Some(&m.pki.good));
        round_trip(&m, &curl, &format!("curl-{security:?}")).await;
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_with_a_valid_certificate() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit(), "").await;
    let lftp = Lftp::new(m.gw.addr(), Security::Explicit, Some(&m.gw.certs.ca_pem))
        .with_client_cert(&m.pki.good.cert, &m.pki.good.key);
    round_trip(&m, &lftp, "lftp").await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ftplib_with_a_valid_certificate() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit(), "require_user_match: true").await;
    let work = temp_dir("mtls-py");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 300 * KIB);
    let down_sha = m.vs.make_file("py-down.bin", 200 * KIB);
    let got = work.path().join("got.bin");
    let out = python(
        &m,
        Some(&m.pki.good),
        &[
            format!("put~~{}~~py-up.bin", up.display()),
            format!("get~~py-down.bin~~{}", got.display()),
        ],
    )
    .await;
    out.assert_ok();
    assert!(out.stdout.contains("DONE"), "{out}");
    assert_eq!(sha256_file(&m.vs.root().join("py-up.bin")), up_sha);
    assert_eq!(sha256_file(&got), down_sha);
    m.shutdown().await;
}

/// tests/py/ftpclient.py (explicit FTPS, resuming data connections) as the test user.
async fn python(m: &Mtls, cert: Option<&ClientCertFiles>, steps: &[String]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ftpclient.py");
    let addr = m.gw.addr();
    let mut args = vec![
        script.display().to_string(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        addr.port().to_string(),
        "--ca".into(),
        m.gw.certs.ca_pem.display().to_string(),
    ];
    if let Some(c) = cert {
        args.extend([
            "--cert".into(),
            c.cert.display().to_string(),
            "--key".into(),
            c.key.display().to_string(),
        ]);
    }
    args.extend(steps.iter().cloned());
    run("python3", &args, Duration::from_secs(45)).await
}

/// Expired, revoked (CRL), wrong-CA and missing certificates: no session, the
/// reason in the log and in /metrics, and vsftpd never sees a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_logged_and_counted() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit(), "").await;
    let cases: [(&str, Option<&ClientCertFiles>); 4] = [
        ("expired", Some(&m.pki.expired)),
        ("revoked", Some(&m.pki.revoked)),
        ("unknown_ca", Some(&m.pki.other_ca)),
        ("missing", None),
    ];
    for (reason, cert) in cases {
        let before = m.refused(reason).await;
        let out = m.curl(Security::Explicit, cert).list().await;
        out.assert_failed();
        assert_eq!(m.refused(reason).await, before + 1.0, "{reason}: {out}");
        assert!(logged_refusal(reason), "{reason}: no log line");
    }
    // Python ssl too: the wrong CA is refused.
    let before = m.refused("unknown_ca").await;
    python(&m, Some(&m.pki.other_ca), &[]).await.assert_failed();
    assert_eq!(m.refused("unknown_ca").await, before + 1.0);
    // lftp too: a revoked certificate is refused.
    let before = m.refused("revoked").await;
    Lftp::new(m.gw.addr(), Security::Explicit, Some(&m.gw.certs.ca_pem))
        .with_client_cert(&m.pki.revoked.cert, &m.pki.revoked.key)
        .cls()
        .await
        .assert_failed();
    assert_eq!(m.refused("revoked").await, before + 1.0);
    assert!(
        !m.vs.log().contains("OK LOGIN"),
        "a refused client reached the backend:\n{}",
        m.vs.log()
    );
    m.shutdown().await;
}

/// Implicit listener: the same refusal before the first FTP byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_listener_refuses_a_missing_certificate() {
    ensure_tools();
    let m = Mtls::start(Frontend::implicit(), "").await;
    let before = m.refused("missing").await;
    m.curl(Security::Implicit, None)
        .list()
        .await
        .assert_failed();
    assert_eq!(m.refused("missing").await, before + 1.0);
    m.shutdown().await;
}

/// `require_user_match`: `USER` other than the certificate's CN gets 530 and
/// never reaches the backend; the matching name logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_user_match_refuses_another_name() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit(), "require_user_match: true").await;
    let tls = m.gw.certs.client_config_with_cert(&m.pki.alice);
    let mut ftp = RawFtp::connect_explicit(m.gw.addr(), tls).await;
    let r = ftp.cmd(&format!("USER {TEST_USER}")).await.unwrap();
    assert_eq!(r.code, 530, "{r}");
    let r = ftp.cmd("USER alice").await.unwrap();
    // alice is not a user of vsftpd, but the gateway let USER through to it.
    assert!(r.code == 331 || r.code == 530, "{r}");
    ftp.quit().await;
    assert!(
        !m.vs.log().contains(&format!("USER {TEST_USER}")),
        "USER {TEST_USER} reached vsftpd:\n{}",
        m.vs.log()
    );
    // curl with alice's certificate logging in as the test user: 530.
    let out = m.curl(Security::Explicit, Some(&m.pki.alice)).list().await;
    out.assert_failed();
    assert!(out.stderr.contains("530"), "{out}");
    m.shutdown().await;
}

/// `mode: optional`: a client without a certificate gets a session; an invalid
/// certificate is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mode_lets_a_client_without_a_certificate_in() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit(), "mode: optional").await;
    let curl = m.curl(Security::Explicit, None);
    round_trip(&m, &curl, "optional-none").await;
    let curl = m.curl(Security::Explicit, Some(&m.pki.good));
    round_trip(&m, &curl, "optional-good").await;
    let before = m.refused("revoked").await;
    m.curl(Security::Explicit, Some(&m.pki.revoked))
        .list()
        .await
        .assert_failed();
    assert_eq!(m.refused("revoked").await, before + 1.0);
    m.shutdown().await;
}

/// A data connection must present the control connection's certificate: a
/// resumed one carries it (and works), a full handshake with another valid
/// certificate of the same CA is refused (with `require_data_reuse: false`,
/// so only the certificate check stands in the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_connection_must_present_the_control_certificate() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit().data_reuse(false), "").await;
    m.vs.put_file("data.bin", &[7u8; 4096]);
    let tls = m.gw.certs.client_config_with_cert(&m.pki.good);
    let mut ftp = RawFtp::ready_explicit(m.gw.addr(), tls).await;
    // Resumed: the session's certificate comes with it.
    let t = ftp.transfer("RETR data.bin", ftp.data_plan()).await;
    assert_eq!(t.assert_ok(), &[7u8; 4096][..]);
    assert_eq!(t.resumed, Some(true), "the data connection resumed");
    // Another certificate (a full handshake): refused.
    let before = m.refused("mismatch").await;
    let plan = DataPlan {
        tls: Some(m.gw.certs.client_config_with_cert(&m.pki.alice)),
        ..DataPlan::default()
    };
    let t = ftp.transfer("RETR data.bin", plan).await;
    assert!(!t.succeeded(), "{:?}", t.replies);
    assert_eq!(m.refused("mismatch").await, before + 1.0);
    assert!(logged_refusal("mismatch"));
    ftp.quit().await;
    m.shutdown().await;
}

/// `backends[].tls.cert/key`: vsftpd with `require_cert=YES`, `validate_cert=YES`
/// and `ca_certs_file` takes the gateway's sessions only with the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_requiring_a_client_certificate() {
    ensure_tools();
    let pki_dir = temp_dir("mtls-backend-pki");
    let pki = ClientPki::generate(pki_dir.path(), "gwclient", "ftpsgate-gateway");
    let extra = format!(
        "require_cert=YES\nvalidate_cert=YES\nca_certs_file={}\n",
        pki.ca_pem.display()
    );
    let vs = Vsftpd::start_with(
        VsftpdMode::Explicit {
            require_reuse: true,
        },
        &extra,
    );
    let with_cert = |y: String| {
        y.replacen(
            "server_name: localhost",
            &format!(
                "server_name: localhost, cert: {}, key: {}",
                pki.good.cert.display(),
                pki.good.key.display()
            ),
            1,
        )
    };
    let m = Mtls::start_on(vs, Frontend::explicit(), "mode: optional", with_cert).await;
    let curl = m.curl(Security::Explicit, None);
    round_trip(&m, &curl, "backend-cert").await;
    let m_vs = m.vs;
    m.gw.shutdown().await;

    // The same backend without the gateway's certificate: no login.
    let m = Mtls::start_on(m_vs, Frontend::explicit(), "mode: optional", |y| y).await;
    let out = m.curl(Security::Explicit, None).list().await;
    out.assert_failed();
    m.shutdown().await;
}

/// A route with `cert_identity` applies to sessions whose certificate matches
/// it: alice's certificate gets the read-only route, the test user's does not
/// (both log in as the test user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_by_certificate_identity() {
    ensure_tools();
    let routes = |y: String| {
        y.replacen(
            "    backend: vs\n",
            "    backend: vs\n    routes:\n      - { user: \"*\", cert_identity: alice, backends: [vs], commands: { deny: [STOR] } }\n",
            1,
        )
    };
    let m = Mtls::start_on(Vsftpd::strict(), Frontend::explicit(), "", routes).await;
    let work = temp_dir("mtls-route");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 64 * KIB);
    let out = m
        .curl(Security::Explicit, Some(&m.pki.alice))
        .put(&up, "by-alice.bin")
        .await;
    out.assert_failed();
    assert!(out.stderr.contains("550"), "{out}");
    assert!(!m.vs.root().join("by-alice.bin").exists());
    m.curl(Security::Explicit, Some(&m.pki.good))
        .put(&up, "by-user.bin")
        .await
        .assert_ok();
    assert_eq!(sha256_file(&m.vs.root().join("by-user.bin")), up_sha);
    m.shutdown().await;
}

/// The verifier is rebuilt with the config: a CRL renewed to revoke the good
/// certificate refuses it after a reload (sessions before it were let in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_crl_applies_after_a_reload() {
    ensure_tools();
    let m = Mtls::start(Frontend::explicit(), "").await;
    let curl = m.curl(Security::Explicit, Some(&m.pki.good));
    curl.list().await.assert_ok();
    m.pki
        .write_crl(&[common::certs::REVOKED_SERIAL, common::certs::GOOD_SERIAL]);
    let config = ftpsgate::config::Config::from_yaml_str(&m.gw.yaml, m.gw.dir.path())
        .expect("config reloads");
    m.gw.gateway
        .as_ref()
        .unwrap()
        .reload(config)
        .expect("reload applies");
    let before = m.refused("revoked").await;
    curl.list().await.assert_failed();
    assert_eq!(m.refused("revoked").await, before + 1.0);
    m.shutdown().await;
}

/// `ftpsgate check`: the new keys pass with real files and `--print` shows
/// them with absolute paths (and checks again); a mode typo and a broken CRL
/// are reported at their own lines in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_and_prints_the_client_certificate_keys() {
    const BIN: &str = env!("CARGO_BIN_EXE_ftpsgate");
    let dir = temp_dir("mtls-check");
    Certs::generate(dir.path(), "gw");
    ClientPki::generate(dir.path(), "client", TEST_USER);
    let yaml = |mode: &str| {
        format!(
            r#"listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls:
      mode: implicit
      cert: gw.pem
      key: gw.key
      client_auth:
        ca: client-ca.pem
        mode: {mode}
        crl: [client-ca.crl]
        identity: san_email
        require_user_match: true
    passive: {{ ports: "50000-50010" }}
    backend: legacy
    routes:
      - {{ user: "*", cert_identity: "*@example.org", backends: [legacy] }}
backends:
  - name: legacy
    address: "127.0.0.1:2120"
    tls: {{ mode: explicit, ca: gw-ca.pem, cert: client-good.pem, key: client-good.key }}
"#
        )
    };
    let file = dir.path().join("ftpsgate.yaml");
    let f = file.display().to_string();
    std::fs::write(&file, yaml("required")).unwrap();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let printed = run(
        BIN,
        &args(&["check", "--print", "--config", &f]),
        Duration::from_secs(20),
    )
    .await;
    printed.assert_ok();
    for name in [
        "client-ca.pem",
        "client-ca.crl",
        "client-good.pem",
        "client-good.key",
    ] {
        let absolute = dir.path().join(name).display().to_string();
        assert!(printed.stdout.contains(&absolute), "{name}: {printed}");
    }
    assert!(printed.stdout.contains("cert_identity"), "{printed}");
    let saved = dir.path().join("printed.yaml");
    std::fs::write(&saved, &printed.stdout).unwrap();
    let s = saved.display().to_string();
    run(
        BIN,
        &args(&["check", "--config", &s]),
        Duration::from_secs(20),
    )
    .await
    .assert_ok();

    std::fs::write(dir.path().join("client-ca.crl"), "not a CRL").unwrap();
    std::fs::write(&file, yaml("requierd")).unwrap();
    let out = run(
        BIN,
        &args(&["check", "--config", &f]),
        Duration::from_secs(20),
    )
    .await;
    out.assert_failed();
    assert!(
        out.stderr.contains(&format!("{f}:10:")) && out.stderr.contains("client_auth.mode"),
        "{out}"
    );
    // The CRL is checked once the rest of the file is valid.
    std::fs::write(&file, yaml("required")).unwrap();
    let out = run(
        BIN,
        &args(&["check", "--config", &f]),
        Duration::from_secs(20),
    )
    .await;
    out.assert_failed();
    assert!(
        out.stderr.contains(&format!("{f}:11:"))
            && out.stderr.contains("listeners[0].tls.client_auth.crl[0]"),
        "{out}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "reported once: {out}");
}

/// `ftpsgate ctl sessions` shows each session's certificate identity and who
/// checked its password: alice (certificate CN `alice`) logged in through an
/// `auth: gateway` route, the test user (its own certificate) through the
/// backend, and a client without a certificate (`mode: optional`) has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_sessions_show_the_certificate_identity_and_gateway_auth() {
    use std::os::unix::fs::PermissionsExt;
    const ALICE_PW: &str = "alice-ctl-Pw-19c";
    ensure_tools();
    // The password file and the service account's secret, outside the
    // gateway's dir (named by absolute path).
    let side = temp_dir("mtls-ctl");
    let passwd = side.path().join("passwd");
    ftpsgate::auth::passwd::update(
        &passwd,
        "alice",
        &ftpsgate::auth::Secret(ALICE_PW.as_bytes().to_vec()),
    )
    .expect("write the password file");
    let secret = side.path().join("svc.secret");
    std::fs::write(&secret, format!("{TEST_PASS}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let socket = side.path().join("control.sock");
    let edit = |y: String| {
        let routes = format!(
            "    backend: vs\n    routes:\n      - {{ user: alice, backends: [vs], auth: gateway, backend_login: {{ user: {TEST_USER}, password_file: \"{}\" }} }}\n      - {{ user: \"*\", backends: [vs] }}\n",
            secret.display()
        );
        format!(
            "{}auth:\n  providers:\n    - {{ name: local, passwd_file: \"{}\" }}\ncontrol: {{ socket: \"{}\", mode: \"0600\" }}\n",
            y.replacen("    backend: vs\n", &routes, 1),
            passwd.display(),
            socket.display()
        )
    };
    let m = Mtls::start_on(
        Vsftpd::strict(),
        Frontend::explicit(),
        "mode: optional",
        edit,
    )
    .await;
    // reload.watch polls the client_auth CA and CRL and the files gateway
    // authentication reads.
    let watched = m.gw.gateway.as_ref().unwrap().watched_files();
    let dir = m.gw.dir.path();
    for f in [
        dir.join("client-ca.pem"),
        dir.join("client-ca.crl"),
        passwd.clone(),
        secret.clone(),
    ] {
        assert!(
            watched.contains(&f),
            "{} not watched: {watched:?}",
            f.display()
        );
    }
    let tls = m.gw.certs.client_config_with_cert(&m.pki.alice);
    let mut alice = RawFtp::connect_explicit(m.gw.addr(), tls).await;
    alice.login("alice", ALICE_PW).await;
    let tls = m.gw.certs.client_config_with_cert(&m.pki.good);
    let mut user = RawFtp::connect_explicit(m.gw.addr(), tls).await;
    user.login(TEST_USER, TEST_PASS).await;
    let mut anon = RawFtp::connect_explicit(m.gw.addr(), m.gw.certs.client_config()).await;
    anon.login(TEST_USER, TEST_PASS).await;

    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
            .arg("ctl")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("run ftpsgate ctl");
        assert!(out.status.success(), "ctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8 output")
    };
    // The registry updates after each step: poll until all three logged in.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let json: serde_json::Value =
            serde_json::from_str(&ctl(&["--json", "sessions"])).expect("--json is JSON");
        let rows = json["sessions"].as_array().cloned().unwrap_or_default();
        if rows.len() == 3 && rows.iter().all(|r| r["user"].is_string()) {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sessions never logged in: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_client = |port: u16| {
        rows.iter()
            .find(|r| {
                r["client"]
                    .as_str()
                    .is_some_and(|c| c.ends_with(&format!(":{port}")))
            })
            .unwrap_or_else(|| panic!("no session from port {port}: {rows:?}"))
    };
    let a = by_client(alice.local_addr().expect("connected").port());
    assert_eq!(
        (a["user"].as_str(), a["identity"].as_str()),
        (Some("alice"), Some("alice")),
        "{a}"
    );
    assert_eq!(a["auth"].as_str(), Some("gateway"), "{a}");
    let u = by_client(user.local_addr().expect("connected").port());
    assert_eq!(u["identity"].as_str(), Some(TEST_USER), "{u}");
    assert_eq!(u["auth"].as_str(), Some("backend"), "{u}");
    let n = by_client(anon.local_addr().expect("connected").port());
    assert!(n["identity"].is_null(), "{n}");
    assert_eq!(n["auth"].as_str(), Some("backend"), "{n}");

    // The table for people: IDENTITY and AUTH columns, `-` without a certificate.
    let table = ctl(&["sessions"]);
    let mut lines = table.lines();
    let head: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&head[..4], ["ID", "USER", "IDENTITY", "AUTH"], "{table}");
    let cells: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(
        cells
            .iter()
            .any(|c| c[1..4] == ["alice", "alice", "gateway"]),
        "{table}"
    );
    assert!(
        cells
            .iter()
            .any(|c| c[1..4] == [TEST_USER, TEST_USER, "backend"]),
        "{table}"
    );
    assert!(
        cells.iter().any(|c| c[1..4] == [TEST_USER, "-", "backend"]),
        "{table}"
    );
    alice.quit().await;
    user.quit().await;
    anon.quit().await;
    m.shutdown().await;
}
