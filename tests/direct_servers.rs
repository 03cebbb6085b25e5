//! Harness self-tests: real clients straight against vsftpd, no gateway involved.
//! If these fail, the environment (vsftpd, curl, lftp, test user) is broken, not ftpsgate.

mod common;

use common::raw::DataPlan;
use common::suppa::Suppa;
use common::*;

/// Download `remote` and upload a fresh 1 KiB file with the given client; check SHA-256
/// both ways (downloaded file vs. server file, server copy of the upload vs. local file).
async fn curl_roundtrip(vs: &Vsftpd, security: Security) {
    let work = temp_dir("client");
    let down_sha = vs.make_file("down.bin", KIB);
    let ca = (security != Security::Plain).then(|| vs.certs().ca_pem.clone());
    let curl = Curl::new(vs.addr(), security, ca.as_deref());

    let local = work.path().join("got.bin");
    curl.get("down.bin", &local).await.assert_ok();
    assert_eq!(sha256_file(&local), down_sha, "download corrupted");

    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, KIB);
    curl.put(&up, "up-curl.bin").await.assert_ok();
    assert_eq!(
        sha256_file(&vs.root().join("up-curl.bin")),
        up_sha,
        "upload corrupted\n{}",
        vs.log()
    );

    let list = curl.list().await;
    list.assert_ok();
    assert!(
        list.stdout.contains("down.bin"),
        "LIST lacks down.bin: {list}"
    );
}

async fn lftp_roundtrip(vs: &Vsftpd, security: Security) {
    let work = temp_dir("client");
    let down_sha = vs.make_file("down-l.bin", KIB);
    let ca = (security != Security::Plain).then(|| vs.certs().ca_pem.clone());
    let lftp = Lftp::new(vs.addr(), security, ca.as_deref());

    let local = work.path().join("got.bin");
    lftp.get("down-l.bin", &local).await.assert_ok();
    assert_eq!(sha256_file(&local), down_sha, "download corrupted");

    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, KIB);
    lftp.put(&up, "up-lftp.bin").await.assert_ok();
    assert_eq!(
        sha256_file(&vs.root().join("up-lftp.bin")),
        up_sha,
        "upload corrupted\n{}",
        vs.log()
    );

    let cls = lftp.cls().await;
    cls.assert_ok();
    assert!(
        cls.stdout.contains("down-l.bin"),
        "cls lacks down-l.bin: {cls}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_plain() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Plain);
    curl_roundtrip(&vs, Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_explicit_require_reuse() {
    ensure_tools();
    let vs = Vsftpd::strict();
    curl_roundtrip(&vs, Security::Explicit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_implicit() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Implicit);
    curl_roundtrip(&vs, Security::Implicit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_plain() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Plain);
    lftp_roundtrip(&vs, Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_explicit_require_reuse() {
    ensure_tools();
    let vs = Vsftpd::strict();
    lftp_roundtrip(&vs, Security::Explicit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_implicit() {
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Implicit);
    lftp_roundtrip(&vs, Security::Implicit).await;
}

/// The scripted client resumes the control session on data connections, as strict vsftpd
/// demands, with TLS 1.3 and 1.2, over many transfers in one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_resumes_against_strict_vsftpd() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let down_sha = vs.make_file("raw.bin", 64 * KIB);
    for version in ["1.3", "1.2"] {
        let mut ftp =
            RawFtp::ready_explicit(vs.addr(), vs.certs().client_config_version(version)).await;
        let up = format!("raw-up-{version}-");
        ftp.alternate_resumed(
            ("raw.bin", &down_sha),
            12,
            (&up, 10 * KIB),
            &vs,
            &format!("TLS {version}"),
        )
        .await;
        ftp.quit().await;
    }
}

/// A data connection that does not resume the control session is refused by vsftpd
/// `require_ssl_reuse=YES`: this is the behaviour the gateway must reproduce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_without_resumption_is_refused_by_strict_vsftpd() {
    ensure_tools();
    let vs = Vsftpd::strict();
    vs.make_file("f.bin", KIB);
    let mut ftp = RawFtp::ready_explicit(vs.addr(), vs.certs().client_config()).await;
    let plan = DataPlan {
        tls: Some(vs.certs().client_config_no_resumption()),
        ..Default::default()
    };
    let t = ftp.transfer("RETR f.bin", plan).await;
    assert!(
        !t.succeeded(),
        "vsftpd accepted a non-resumed data connection: {t:?}"
    );
    assert!(t.last().code == 522, "expected 522, got {t:?}");
    eprintln!(
        "vsftpd answered a non-resumed data connection with {:?}",
        t.replies
    );
    // vsftpd then ends the whole session (it closes the control connection).
    let after = ftp.cmd("NOOP").await;
    eprintln!("NOOP after the refusal: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_implicit() {
    ensure_tools();
    let (user, pass) = test_user();
    let vs = Vsftpd::start(VsftpdMode::Implicit);
    let sha = vs.make_file("i.bin", KIB);
    let mut ftp = RawFtp::connect_implicit(vs.addr(), vs.certs().client_config())
        .await
        .unwrap();
    assert_eq!(ftp.greeting.code, 220);
    ftp.login(user, pass).await;
    ftp.prot(true).await;
    ftp.binary().await;
    assert_eq!(sha256_bytes(&ftp.retr("i.bin").await), sha);
    ftp.stor("i-up.bin", b"hello implicit").await;
    assert_eq!(
        std::fs::read(vs.root().join("i-up.bin")).unwrap(),
        b"hello implicit"
    );
    ftp.quit().await;
}

/// suppaftp reuses its ClientConfig for data connections, so it resumes; 24 mixed
/// transfers in one session against strict vsftpd.
///
/// Limited to TLS 1.2 on purpose: with TLS 1.3, suppaftp never reads an upload's data
/// connection, so the single-use tickets vsftpd sends there are lost; OpenSSL issues two
/// tickets per handshake, and measured here the 6th transfer (LIST, RETR, STOR, RETR, STOR,
/// RETR) finds no ticket left: `522 SSL connection failed: session reuse required`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppaftp_many_transfers_against_strict_vsftpd() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let down_sha = vs.make_file("s.bin", 32 * KIB);
    let addr = vs.addr();
    let tls = vs.certs().client_config_version("1.2");
    let root = vs.root().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut ftp = Suppa::connect_explicit(addr, tls).expect("suppaftp login");
        let names = ftp.list().expect("LIST");
        assert!(names.iter().any(|l| l.contains("s.bin")), "{names:?}");
        for i in 0..24 {
            if i % 2 == 0 {
                assert_eq!(
                    sha256_bytes(&ftp.get("s.bin").unwrap_or_else(|e| panic!("RETR {i}: {e}"))),
                    down_sha,
                    "download {i}"
                );
            } else {
                let data = pseudo_random(8 * KIB + i, i as u64);
                let name = format!("s-up-{i}.bin");
                ftp.put(&name, &data)
                    .unwrap_or_else(|e| panic!("STOR {i}: {e}"));
                assert_eq!(
                    sha256_file(&root.join(&name)),
                    sha256_bytes(&data),
                    "upload {i}"
                );
            }
        }
        ftp.quit();
    })
    .await
    .unwrap();
}

/// vsftpd with force_local_data_ssl=YES refuses PROT C: curl --ftp-ssl-control fails.
/// (Through the gateway the same client must succeed: the gateway protects the backend leg.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_clear_data_is_refused_by_vsftpd_forcing_data_tls() {
    ensure_tools();
    let vs = Vsftpd::strict();
    vs.make_file("c.bin", KIB);
    let work = temp_dir("client");
    let curl = Curl::new(
        vs.addr(),
        Security::ExplicitClearData,
        Some(&vs.certs().ca_pem),
    );
    let out = curl.get("c.bin", &work.path().join("c.bin")).await;
    out.assert_failed();
}

/// lftp (GnuTLS) keeps resuming over many mixed transfers in one session (TLS 1.3 included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_many_transfers_against_strict_vsftpd() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let down_sha = vs.make_file("m.bin", 16 * KIB);
    let work = temp_dir("client");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 12 * KIB);
    let mut script = String::new();
    for i in 0..12 {
        script.push_str(&format!(
            "get m.bin -o {}/got-{i}.bin; ",
            work.path().display()
        ));
        script.push_str(&format!("put {} -o up-{i}.bin; ", up.display()));
    }
    let lftp = Lftp::new(vs.addr(), Security::Explicit, Some(&vs.certs().ca_pem));
    lftp.script(&script).await.assert_ok();
    for i in 0..12 {
        assert_eq!(
            sha256_file(&work.path().join(format!("got-{i}.bin"))),
            down_sha,
            "download {i}"
        );
        assert_eq!(
            sha256_file(&vs.root().join(format!("up-{i}.bin"))),
            up_sha,
            "upload {i}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// ProFTPD (mod_tls, session reuse required) and pure-ftpd (TLS required): the harness of
// tests/common/{proftpd,pureftpd}.rs proven with curl straight against each server.

/// curl download + upload + listing against a server rooted at `root`, trusting `ca`.
async fn curl_roundtrip_at(
    addr: std::net::SocketAddr,
    root: &std::path::Path,
    ca: &std::path::Path,
) {
    let work = temp_dir("client");
    let down = root.join("down.bin");
    let down_sha = make_file(&down, 20 * KIB);
    chown_to_test_user(&down);
    let curl = Curl::new(addr, Security::Explicit, Some(ca));

    let local = work.path().join("got.bin");
    curl.get("down.bin", &local).await.assert_ok();
    assert_eq!(sha256_file(&local), down_sha, "download corrupted");

    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 20 * KIB);
    curl.put(&up, "up-curl.bin").await.assert_ok();
    assert_eq!(
        sha256_file(&root.join("up-curl.bin")),
        up_sha,
        "upload corrupted"
    );

    let list = curl.list().await;
    list.assert_ok();
    assert!(
        list.stdout.contains("down.bin"),
        "LIST lacks down.bin: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_explicit_against_proftpd() {
    ensure_tools();
    let pro = proftpd::Proftpd::start();
    curl_roundtrip_at(pro.addr(), pro.root(), &pro.certs().ca_pem).await;
    assert!(
        pro.tls_log()
            .contains("client reused TLS session for data connection"),
        "{}",
        pro.output()
    );
}

/// The harness's ProFTPD really requires reuse: curl with its session cache off is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proftpd_refuses_data_connection_that_does_not_resume() {
    ensure_tools();
    let pro = proftpd::Proftpd::start();
    pro.make_file("n.bin", KIB);
    let work = temp_dir("client");
    let curl = Curl::new(pro.addr(), Security::Explicit, Some(&pro.certs().ca_pem));
    let out = curl
        .raw(
            &[
                "--no-sessionid",
                "-o",
                &work.path().join("n.bin").display().to_string(),
            ],
            "n.bin",
        )
        .await;
    out.assert_failed();
    assert!(
        pro.tls_log().contains("client did not reuse TLS session"),
        "{}",
        pro.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_explicit_against_pureftpd() {
    ensure_tools();
    let pure = pureftpd::PureFtpd::start();
    curl_roundtrip_at(pure.addr(), pure.root(), &pure.certs().ca_pem).await;
}

/// pure-ftpd with `-Y 3` refuses clear data (PROT C).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pureftpd_refuses_clear_data() {
    ensure_tools();
    let pure = pureftpd::PureFtpd::start();
    pure.make_file("c.bin", KIB);
    let work = temp_dir("client");
    let curl = Curl::new(
        pure.addr(),
        Security::ExplicitClearData,
        Some(&pure.certs().ca_pem),
    );
    curl.get("c.bin", &work.path().join("c.bin"))
        .await
        .assert_failed();
}
