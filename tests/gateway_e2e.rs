//! End-to-end tests through ftpsgate: real clients → gateway (in-process, port 0) → real
//! vsftpd. Every transfer is checked by SHA-256 on both ends.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::clients::FileClient;
use common::raw::{expect_refused, DataPlan};
use common::suppa::Suppa;
use common::*;

const SMALL: usize = KIB;
const BIG: usize = 64 * MIB;

/// Strict vsftpd (explicit, require_ssl_reuse=YES) behind an explicit-TLS gateway.
async fn strict_pair(front: Frontend) -> (Vsftpd, GwEnv) {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = GwEnv::start(front, Backend::for_vsftpd(&vs), Some(&vs)).await;
    (vs, gw)
}

/// Download and upload of each size, then a listing; SHA-256 checked both ways.
async fn client_suite(client: &impl FileClient, vs: &Vsftpd, sizes: &[usize], tag: &str) {
    let work = temp_dir("client");
    for &size in sizes {
        let name = format!("{tag}-down-{size}.bin");
        let sha = vs.make_file(&name, size);
        let local = work.path().join(&name);
        client.fetch(&name, &local).await.assert_ok();
        assert_eq!(
            sha256_file(&local),
            sha,
            "{tag}: download of {size} bytes corrupted"
        );

        let up = work.path().join(format!("{tag}-up-{size}.bin"));
        let up_sha = make_file(&up, size);
        let remote = format!("{tag}-up-{size}.bin");
        client.store(&up, &remote).await.assert_ok();
        assert_eq!(
            sha256_file(&vs.root().join(&remote)),
            up_sha,
            "{tag}: upload of {size} bytes corrupted\n{}",
            vs.log()
        );
    }
    let list = client.listing().await;
    list.assert_ok();
    assert!(
        list.stdout.contains(&format!("{tag}-down-")),
        "{tag}: listing incomplete: {list}"
    );
}

// ---------------------------------------------------------------------------------------
// Explicit frontend → strict vsftpd (require_ssl_reuse=YES)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_explicit_to_strict_vsftpd() {
    let (vs, gw) = strict_pair(Frontend::explicit()).await;
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    client_suite(&curl, &vs, &[SMALL, BIG], "curl").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_explicit_to_strict_vsftpd() {
    let (vs, gw) = strict_pair(Frontend::explicit()).await;
    let lftp = Lftp::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    client_suite(&lftp, &vs, &[SMALL, BIG], "lftp").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppaftp_explicit_to_strict_vsftpd() {
    let (vs, gw) = strict_pair(Frontend::explicit()).await;
    let small_sha = vs.make_file("s-small.bin", SMALL);
    let big_sha = vs.make_file("s-big.bin", BIG);
    let (addr, tls, root) = (gw.addr(), gw.certs.client_config(), vs.root().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut ftp = Suppa::connect_explicit(addr, tls).expect("login through gateway");
        let names = ftp.list().expect("LIST");
        assert!(
            names.iter().any(|l| l.contains("s-big.bin")),
            "LIST: {names:?}"
        );
        assert_eq!(
            sha256_bytes(&ftp.get("s-small.bin").expect("RETR small")),
            small_sha
        );
        assert_eq!(
            sha256_bytes(&ftp.get("s-big.bin").expect("RETR big")),
            big_sha
        );
        for (name, size) in [("s-up-small.bin", SMALL), ("s-up-big.bin", BIG)] {
            let data = pseudo_random(size, 99);
            ftp.put(name, &data).expect("STOR");
            assert_eq!(
                sha256_file(&root.join(name)),
                sha256_bytes(&data),
                "upload {name}"
            );
        }
        ftp.quit();
    })
    .await
    .unwrap();
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Many transfers in one control session (TLS session tickets must not run out)

async fn many_transfers_one_session(backend_max: &'static str) {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = GwEnv::start(
        Frontend::explicit(),
        Backend::for_vsftpd(&vs).max_version(backend_max),
        Some(&vs),
    )
    .await;
    let down_sha = vs.make_file("m.bin", 20 * KIB);
    let work = temp_dir("client");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 12 * KIB);

    // lftp: 24 transfers, one control session.
    let mut script = String::new();
    for i in 0..12 {
        script.push_str(&format!(
            "get m.bin -o {}/got-{i}.bin; ",
            work.path().display()
        ));
        script.push_str(&format!("put {} -o up-{i}.bin; ", up.display()));
    }
    let lftp = Lftp::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    lftp.script(&script).await.assert_ok();
    for i in 0..12 {
        assert_eq!(
            sha256_file(&work.path().join(format!("got-{i}.bin"))),
            down_sha,
            "lftp download {i}"
        );
        assert_eq!(
            sha256_file(&vs.root().join(format!("up-{i}.bin"))),
            up_sha,
            "lftp upload {i}\n{}",
            vs.log()
        );
    }

    // Scripted client: 24 transfers, and every client-side data leg must resume.
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    ftp.alternate_resumed(
        ("m.bin", &down_sha),
        24,
        ("raw-up-", 9 * KIB),
        &vs,
        "raw client",
    )
    .await;
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_transfers_one_session_backend_tls13() {
    many_transfers_one_session("1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_transfers_one_session_backend_tls12() {
    many_transfers_one_session("1.2").await;
}

// ---------------------------------------------------------------------------------------
// Implicit frontend

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_implicit_frontend() {
    let (vs, gw) = strict_pair(Frontend::implicit()).await;
    let curl = Curl::new(gw.addr(), Security::Implicit, Some(&gw.certs.ca_pem));
    client_suite(&curl, &vs, &[SMALL], "curl-imp").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_implicit_frontend() {
    let (vs, gw) = strict_pair(Frontend::implicit()).await;
    let lftp = Lftp::new(gw.addr(), Security::Implicit, Some(&gw.certs.ca_pem));
    client_suite(&lftp, &vs, &[SMALL], "lftp-imp").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Backend kinds (explicit-TLS client leg in each case)

async fn backend_kind(mode: VsftpdMode, tag: &str) {
    ensure_tools();
    let vs = Vsftpd::start(mode);
    let gw = GwEnv::start(Frontend::explicit(), Backend::for_vsftpd(&vs), Some(&vs)).await;
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    client_suite(&curl, &vs, &[SMALL], tag).await;
    let lftp = Lftp::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    client_suite(&lftp, &vs, &[SMALL], &format!("{tag}-l")).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_plain_vsftpd() {
    backend_kind(VsftpdMode::Plain, "bk-plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_explicit_vsftpd() {
    backend_kind(
        VsftpdMode::Explicit {
            require_reuse: true,
        },
        "bk-explicit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_implicit_vsftpd() {
    backend_kind(VsftpdMode::Implicit, "bk-implicit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_pinned_by_leaf_sha256() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let pin = BackendAuth::Pin(vs.certs().leaf_sha256_hex.clone());
    let gw = GwEnv::start(
        Frontend::explicit(),
        Backend::for_vsftpd(&vs).auth(pin),
        Some(&vs),
    )
    .await;
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    client_suite(&curl, &vs, &[SMALL], "pinned").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Clear data on the client leg, PROT P toward the backend

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prot_c_client_leg_prot_p_backend() {
    // vsftpd forces data TLS (it refuses PROT C itself, see direct_servers), so success
    // proves the gateway protects the backend leg on its own.
    let (vs, gw) = strict_pair(Frontend::explicit().clear_data(true)).await;
    let curl = Curl::new(
        gw.addr(),
        Security::ExplicitClearData,
        Some(&gw.certs.ca_pem),
    );
    client_suite(&curl, &vs, &[SMALL], "protc-curl").await;
    let lftp = Lftp::new(
        gw.addr(),
        Security::ExplicitClearData,
        Some(&gw.certs.ca_pem),
    );
    client_suite(&lftp, &vs, &[SMALL], "protc-lftp").await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Plain frontend to a TLS backend

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_frontend_to_tls_backend() {
    let (vs, gw) = strict_pair(Frontend::none()).await;
    let curl = Curl::new(gw.addr(), Security::Plain, None);
    client_suite(&curl, &vs, &[SMALL], "plainfe-curl").await;
    let lftp = Lftp::new(gw.addr(), Security::Plain, None);
    client_suite(&lftp, &vs, &[SMALL], "plainfe-lftp").await;
    let sha = vs.make_file("plainfe-s.bin", SMALL);
    let addr = gw.addr();
    tokio::task::spawn_blocking(move || {
        let mut ftp = Suppa::connect_plain(addr).expect("plain login");
        assert_eq!(sha256_bytes(&ftp.get("plainfe-s.bin").expect("RETR")), sha);
        ftp.quit();
    })
    .await
    .unwrap();
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Negative cases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_plain_login() {
    let (vs, gw) = strict_pair(Frontend::explicit()).await;
    let mut ftp = RawFtp::connect(gw.addr()).await.expect("connect");
    assert_eq!(ftp.greeting.code, 220, "greeting: {}", ftp.greeting);
    let reply = ftp.cmd("USER x").await.expect("reply to USER");
    assert!(
        reply.code == 530 || reply.code == 534,
        "plain USER before AUTH must get 530/534, got {reply}"
    );

    vs.make_file("secret.bin", SMALL);
    let work = temp_dir("client");
    let curl = Curl::new(gw.addr(), Security::Plain, None);
    let out = curl
        .get("secret.bin", &work.path().join("secret.bin"))
        .await;
    out.assert_failed();
    assert!(
        !work.path().join("secret.bin").exists()
            || std::fs::metadata(work.path().join("secret.bin"))
                .unwrap()
                .len()
                == 0
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinhole_is_bound_to_client_ip_and_single_use() {
    let (vs, gw) = strict_pair(Frontend::explicit()).await;
    let sha = vs.make_file("p.bin", 256 * KIB);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let pinhole = ftp.pasv().await;
    assert_eq!(
        pinhole.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "advertised address"
    );

    // A thief from another source address races to the pinhole first.
    let thief = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    expect_refused(Some(thief), pinhole, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("pinhole served 127.0.0.2: {e}"));

    // The legitimate client still gets its transfer.
    let plan = ftp.data_plan();
    let t = ftp.transfer_at(pinhole, "RETR p.bin", plan).await;
    assert_eq!(
        sha256_bytes(t.assert_ok()),
        sha,
        "legit transfer after theft attempt"
    );

    // The pinhole is single-use: a second connection from the right address is refused.
    expect_refused(None, pinhole, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("pinhole reusable after the transfer: {e}"));
    assert_eq!(ftp.cmd("NOOP").await.unwrap().code, 200);
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_without_resumption_refused_when_reuse_required() {
    let (vs, gw) = strict_pair(Frontend::explicit().data_reuse(true)).await;
    vs.make_file("r.bin", SMALL);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let plan = DataPlan {
        tls: Some(gw.certs.client_config_no_resumption()),
        ..Default::default()
    };
    let t = ftp.transfer("RETR r.bin", plan).await;
    assert!(
        !t.succeeded(),
        "non-resumed data connection was served: {t:?}"
    );
    let code = t.last().code;
    assert!(
        (400..600).contains(&code),
        "expected a 4xx (425/522) reply, got {t:?}"
    );
    assert!(
        t.data.as_ref().map(|d| d.is_empty()).unwrap_or(true),
        "data leaked: {t:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_without_resumption_allowed_when_reuse_not_required() {
    let (vs, gw) = strict_pair(Frontend::explicit().data_reuse(false)).await;
    let sha = vs.make_file("r.bin", SMALL);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let plan = DataPlan {
        tls: Some(gw.certs.client_config_no_resumption()),
        ..Default::default()
    };
    let t = ftp.transfer("RETR r.bin", plan).await;
    assert_eq!(t.resumed, Some(false));
    assert_eq!(sha256_bytes(t.assert_ok()), sha);
    // Upload too: the backend leg still resumes toward strict vsftpd on its own.
    let data = pseudo_random(3 * KIB, 5);
    let plan = DataPlan {
        tls: Some(gw.certs.client_config_no_resumption()),
        bind: None,
        upload: Some(data.clone()),
    };
    ftp.transfer("STOR r-up.bin", plan).await.assert_ok();
    assert_eq!(
        sha256_file(&vs.root().join("r-up.bin")),
        sha256_bytes(&data)
    );
    ftp.quit().await;
    gw.shutdown().await;
}

/// Walks an explicit-TLS login through the gateway and returns the first refusal
/// (greeting, AUTH TLS, USER or PASS), panicking if everything succeeds.
async fn first_refusal(
    addr: SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> (Reply, RawFtp) {
    let (user, pass) = test_user();
    let mut ftp = RawFtp::connect(addr).await.expect("connect to gateway");
    if ftp.greeting.is_error() {
        let g = ftp.greeting.clone();
        return (g, ftp);
    }
    let r = ftp.auth_tls(tls).await.expect("AUTH TLS reply");
    if r.is_error() {
        return (r, ftp);
    }
    for line in [format!("USER {user}"), format!("PASS {pass}")] {
        let r = ftp
            .cmd(&line)
            .await
            .unwrap_or_else(|e| panic!("no reply to {line}: {e}"));
        if r.is_error() {
            return (r, ftp);
        }
    }
    panic!("login succeeded although the backend is unusable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_backend_pin_fails_login_cleanly() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let pin = BackendAuth::Pin("0".repeat(64));
    let gw = GwEnv::start(
        Frontend::explicit(),
        Backend::for_vsftpd(&vs).auth(pin),
        Some(&vs),
    )
    .await;
    let (reply, mut ftp) = tokio::time::timeout(
        Duration::from_secs(30),
        first_refusal(gw.addr(), gw.certs.client_config()),
    )
    .await
    .expect("gateway hung instead of refusing");
    assert!(reply.is_error(), "{reply}");
    // The client learns that the service is unavailable, not why: the backend's
    // name and the certificate error go to the log only (issue 15, no internals).
    let text = reply.text.to_lowercase();
    assert!(
        !text.contains("certificate") && !text.contains("pin") && !text.contains("127.0.0.1"),
        "reply leaks backend internals: {reply}"
    );
    if reply.code == 421 {
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("closed after 421");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_gives_421_and_close() {
    ensure_tools();
    test_user();
    let back = Backend {
        addr: dead_addr(),
        mode: "explicit",
        auth: BackendAuth::NoVerify,
        min_version: None,
        max_version: None,
        data_protection: None,
    };
    let gw = GwEnv::start(Frontend::explicit(), back, None).await;
    let (reply, mut ftp) = tokio::time::timeout(
        Duration::from_secs(30),
        first_refusal(gw.addr(), gw.certs.client_config()),
    )
    .await
    .expect("gateway hung instead of refusing");
    assert_eq!(reply.code, 421, "backend down must give 421: {reply}");
    ftp.expect_closed(Duration::from_secs(5))
        .await
        .expect("closed after 421");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_command_gets_500_and_session_survives() {
    let (vs, gw) = strict_pair(Frontend::explicit()).await;
    let sha = vs.make_file("o.bin", SMALL);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let long = format!("NOOP {}\r\n", "A".repeat(5000));
    ftp.send_raw(long.as_bytes()).await.unwrap();
    let r = ftp.read_reply().await.expect("reply to overlong line");
    assert_eq!(r.code, 500, "overlong command: {r}");
    let r = ftp.cmd("NOOP").await.expect("NOOP after overlong line");
    assert_eq!(r.code, 200, "{r}");
    assert_eq!(
        sha256_bytes(&ftp.retr("o.bin").await),
        sha,
        "transfer after overlong line"
    );
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_pinhole_expires() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = GwEnv::start_with_pinhole(
        Frontend::explicit(),
        Backend::for_vsftpd(&vs),
        Some(&vs),
        "1s",
    )
    .await;
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let pinhole = ftp.pasv().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    expect_refused(None, pinhole, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("pinhole still open after its timeout: {e}"));
    assert_eq!(ftp.cmd("NOOP").await.expect("control survives").code, 200);
    ftp.quit().await;
    gw.shutdown().await;
}
