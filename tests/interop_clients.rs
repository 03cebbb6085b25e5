//! Interoperability with real clients beyond the basic curl/lftp suites: behaviours of
//! particular clients that once failed through the gateway while they passed against a
//! strict server directly (issue 20). Every stored file is compared by SHA-256.

mod common;

use common::*;

/// Upload sessions per run of the curl test (issue 20: "20 sessions, 0 failures").
const CURL_SESSIONS: usize = 20;

/// curl (OpenSSL) uploads, then downloads on the same control connection, over TLS 1.3
/// with the default `require_data_reuse`. OpenSSL uses each TLS 1.3 ticket once, so the
/// download's data connection can only resume if curl got a fresh ticket on the upload's
/// data connection — where it reads only just before it closes. Every session must pass
/// and every stored file must be byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_upload_then_download_on_tls13() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = GwEnv::start(Frontend::explicit(), Backend::for_vsftpd(&vs), Some(&vs)).await;
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    let work = temp_dir("curl-updown");
    let down_sha = vs.make_file("down.bin", 256 * KIB);
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 4 * MIB);
    let mut failures = Vec::new();
    for i in 0..CURL_SESSIONS {
        let remote = format!("up-{i}.bin");
        let local = work.path().join(format!("down-{i}.bin"));
        let out = curl
            .session(&[
                (vec!["-T".into(), up.display().to_string()], &remote),
                (vec!["-o".into(), local.display().to_string()], "down.bin"),
            ])
            .await;
        let stored = vs.root().join(&remote);
        let stored_ok = stored.is_file() && sha256_file(&stored) == up_sha;
        let fetched_ok = local.is_file() && sha256_file(&local) == down_sha;
        if !out.success() || !stored_ok || !fetched_ok {
            failures.push(format!(
                "session {i}: stored intact {stored_ok}, fetched intact {fetched_ok}: {out}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CURL_SESSIONS} curl upload-then-download sessions failed:\n{}\n--- vsftpd log:\n{}",
        failures.len(),
        failures.join("\n"),
        vs.log()
    );
    gw.shutdown().await;
}

/// rclone keeps one TLS session cache for all its connections to a host, so with
/// `--transfers 4` a data connection offers a ticket that another of its control
/// sessions received. The default `data_reuse_scope: user` accepts it (same user, same
/// address); every file must arrive intact, then list and download back.
async fn rclone_copy_through_gateway(disable_tls13: bool) {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = GwEnv::start(Frontend::explicit(), Backend::for_vsftpd(&vs), Some(&vs)).await;
    let mut rclone = interop::Rclone::new(gw.addr(), Security::Explicit);
    rclone.disable_tls13 = disable_tls13;
    let work = temp_dir("rclone");
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut shas = Vec::new();
    for i in 0..8 {
        let name = format!("r{i}.bin");
        shas.push((name.clone(), make_file(&src.join(&name), MIB + i * 4099)));
    }
    let out = rclone.upload_dir(&src, "", 4).await;
    let stored: Vec<_> = shas
        .iter()
        .filter(|(name, sha)| {
            let p = vs.root().join(name);
            p.is_file() && sha256_file(&p) == *sha
        })
        .collect();
    assert!(
        out.success() && stored.len() == shas.len(),
        "rclone (disable_tls13={disable_tls13}) stored {} of {} files intact: {out}\n--- vsftpd log:\n{}",
        stored.len(),
        shas.len(),
        vs.log()
    );

    let list = rclone.list().await;
    list.assert_ok();
    assert!(list.stdout.contains("r7.bin"), "listing: {list}");
    let down_sha = vs.make_file("down.bin", 3 * MIB);
    let back = work.path().join("back");
    rclone.download("down.bin", &back).await.assert_ok();
    assert_eq!(sha256_file(&back.join("down.bin")), down_sha);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copy_transfers_4_tls13() {
    rclone_copy_through_gateway(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copy_transfers_4_tls12() {
    rclone_copy_through_gateway(true).await;
}
