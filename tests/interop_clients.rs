//! Interoperability with real clients beyond the basic curl/lftp suites: behaviours of
//! particular clients that once failed through the gateway while they passed against a
//! strict server directly (issue 20). Every stored file is compared by SHA-256.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::clients::run;
use common::gateway::gateway_yaml;
use common::proftpd::Proftpd;
use common::pureftpd::PureFtpd;
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

/// A refused upload leaves no file behind (issue 20 §3). curl with its TLS session cache
/// off handshakes the data connection before it sends `STOR`; the gateway refuses that
/// handshake (it does not resume the control session). vsftpd creates the file as soon
/// as `STOR` arrives, before it waits for its data connection, so the gateway must not
/// forward the command: the client gets `425`, vsftpd never sees `STOR`, and the session
/// after it uploads normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upload_leaves_no_file_on_the_backend() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let gw = GwEnv::start(Frontend::explicit(), Backend::for_vsftpd(&vs), Some(&vs)).await;
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    let work = temp_dir("refused-upload");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 64 * KIB);
    let src = up.display().to_string();
    let refused = curl
        .raw(&["--no-sessionid", "-T", &src], "refused.bin")
        .await;
    refused.assert_failed();
    assert!(
        !vs.root().join("refused.bin").exists() && !vs.log().contains("STOR"),
        "the refused upload reached vsftpd: {refused}\n--- vsftpd log:\n{}",
        vs.log()
    );
    curl.put(&up, "accepted.bin").await.assert_ok();
    let stored = vs.root().join("accepted.bin");
    assert!(
        stored.is_file() && sha256_file(&stored) == up_sha,
        "upload after the refused one missing or corrupted\n--- vsftpd log:\n{}",
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

// ---------------------------------------------------------------------------------------
// The client matrix (issue 20 §5): each client against each backend through the gateway
// with default settings (the gateway's listener speaks the backend's mode: explicit,
// implicit or plain). A cell: login + LIST, download (SHA-256), upload (byte-exact),
// second download — in one session where the client can.

/// A backend server of a cell.
enum Origin {
    Vs(Vsftpd),
    Pro(Proftpd),
    Pure(PureFtpd),
}

impl Origin {
    fn vsftpd(mode: VsftpdMode) -> Origin {
        ensure_tools();
        Origin::Vs(Vsftpd::start(mode))
    }
    fn addr(&self) -> SocketAddr {
        match self {
            Origin::Vs(s) => s.addr(),
            Origin::Pro(s) => s.addr(),
            Origin::Pure(s) => s.addr(),
        }
    }
    fn root(&self) -> &Path {
        match self {
            Origin::Vs(s) => s.root(),
            Origin::Pro(s) => s.root(),
            Origin::Pure(s) => s.root(),
        }
    }
    fn ca(&self) -> &Path {
        match self {
            Origin::Vs(s) => &s.certs().ca_pem,
            Origin::Pro(s) => &s.certs().ca_pem,
            Origin::Pure(s) => &s.certs().ca_pem,
        }
    }
    fn output(&self) -> String {
        match self {
            Origin::Vs(s) => s.output(),
            Origin::Pro(s) => s.output(),
            Origin::Pure(s) => s.output(),
        }
    }
    /// `none`, `explicit` or `implicit`: the backend's mode, and the listener's.
    fn mode(&self) -> &'static str {
        match self {
            Origin::Vs(s) => match s.mode() {
                VsftpdMode::Plain => "none",
                VsftpdMode::Explicit { .. } => "explicit",
                VsftpdMode::Implicit => "implicit",
            },
            Origin::Pro(_) | Origin::Pure(_) => "explicit",
        }
    }
    fn security(&self) -> Security {
        match self.mode() {
            "none" => Security::Plain,
            "implicit" => Security::Implicit,
            _ => Security::Explicit,
        }
    }
    fn make_file(&self, name: &str, size: usize) -> String {
        let path = self.root().join(name);
        let sha = make_file(&path, size);
        chown_to_test_user(&path);
        sha
    }
}

/// The gateway in front of one origin, with default settings except `require_data_reuse`.
struct Cell {
    origin: Origin,
    gw: Option<ftpsgate::Gateway>,
    dir: tempfile::TempDir,
    certs: Certs,
    work: tempfile::TempDir,
    down_sha: String,
}

impl Cell {
    async fn start(origin: Origin, require_data_reuse: bool) -> Cell {
        let dir = temp_dir("cell-gw");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(origin.ca(), dir.path().join("vs-ca.pem")).unwrap();
        let mode = origin.mode();
        let mut front = match mode {
            "none" => Frontend::none(),
            "implicit" => Frontend::implicit(),
            _ => Frontend::explicit(),
        };
        if mode != "none" {
            front = front.data_reuse(require_data_reuse);
        }
        let back = Backend {
            addr: origin.addr(),
            mode,
            auth: BackendAuth::Ca,
            min_version: None,
            max_version: None,
            data_protection: None,
        };
        let yaml = gateway_yaml(&front, &back, pasv_range(), "5s");
        let gw = start_gateway(&yaml, dir.path()).await;
        let down_sha = origin.make_file("down.bin", 2 * MIB + 17);
        Cell {
            origin,
            gw: Some(gw),
            dir,
            certs,
            work: temp_dir("cell-work"),
            down_sha,
        }
    }
    fn addr(&self) -> SocketAddr {
        self.gw
            .as_ref()
            .and_then(|g| g.local_addr("edge"))
            .expect("listener edge")
    }
    fn local(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
    /// A local file to upload.
    fn upload_source(&self) -> (PathBuf, String) {
        let p = self.local("up-src.bin");
        let sha = make_file(&p, MIB + 4093);
        (p, sha)
    }
    fn assert_downloaded(&self, local: &Path, what: &str) {
        assert!(
            local.is_file() && sha256_file(local) == self.down_sha,
            "{what}: download missing or corrupted\n--- server:\n{}",
            self.origin.output()
        );
    }
    fn assert_stored(&self, remote: &str, sha: &str, what: &str) {
        let p = self.origin.root().join(remote);
        assert!(
            p.is_file() && sha256_file(&p) == sha,
            "{what}: upload missing or corrupted\n--- server:\n{}",
            self.origin.output()
        );
    }
    async fn finish(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
        drop(self.dir);
    }
}

fn proftpd() -> Option<Origin> {
    proftpd::proftpd_paths()?;
    Some(Origin::Pro(Proftpd::start()))
}

fn pureftpd() -> Option<Origin> {
    pureftpd::pureftpd_paths()?;
    Some(Origin::Pure(PureFtpd::start()))
}

// --- rclone ----------------------------------------------------------------------------

/// rclone: list, download, upload, download again (each its own rclone run; rclone
/// keeps no session between runs).
async fn rclone_cell(origin: Origin) {
    let cell = Cell::start(origin, true).await;
    let rclone = interop::Rclone::new(cell.addr(), cell.origin.security());
    let list = rclone.list().await;
    list.assert_ok();
    assert!(list.stdout.contains("down.bin"), "listing: {list}");
    let first = cell.local("first");
    rclone.download("down.bin", &first).await.assert_ok();
    cell.assert_downloaded(&first.join("down.bin"), "rclone");
    let (src, sha) = cell.upload_source();
    let updir = cell.local("updir");
    std::fs::create_dir(&updir).unwrap();
    std::fs::copy(&src, updir.join("rclone-up.bin")).unwrap();
    rclone.upload_dir(&updir, "", 1).await.assert_ok();
    cell.assert_stored("rclone-up.bin", &sha, "rclone");
    let second = cell.local("second");
    rclone.download("down.bin", &second).await.assert_ok();
    cell.assert_downloaded(&second.join("down.bin"), "rclone second");
    cell.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_vsftpd_explicit() {
    rclone_cell(Origin::vsftpd(VsftpdMode::Explicit {
        require_reuse: true,
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_vsftpd_implicit() {
    rclone_cell(Origin::vsftpd(VsftpdMode::Implicit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_vsftpd_plain() {
    rclone_cell(Origin::vsftpd(VsftpdMode::Plain)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_proftpd() {
    if let Some(o) = proftpd() {
        rclone_cell(o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_pureftpd() {
    if let Some(o) = pureftpd() {
        rclone_cell(o).await;
    }
}

// --- wget ------------------------------------------------------------------------------

/// wget (GnuTLS; `--ftps-resume-ssl` is on by default): listing and two downloads in one
/// run. wget cannot upload.
async fn wget_cell(origin: Origin) {
    let cell = Cell::start(origin, true).await;
    let (user, pass) = test_user();
    let scheme = match cell.origin.security() {
        Security::Plain => "ftp",
        _ => "ftps",
    };
    let base = format!("{scheme}://{user}:{pass}@{}", cell.addr());
    let out_dir = cell.local("wget");
    let mut args: Vec<String> = vec![
        "-nv".into(),
        "--tries=1".into(),
        "--timeout=20".into(),
        "--no-remove-listing".into(),
        "-P".into(),
        out_dir.display().to_string(),
        format!("--ca-certificate={}", cell.certs.ca_pem.display()),
    ];
    if cell.origin.security() == Security::Implicit {
        args.push("--ftps-implicit".into());
    }
    args.push(format!("{base}/"));
    args.push(format!("{base}/down.bin"));
    args.push(format!("{base}/down.bin"));
    let out = run("wget", &args, Duration::from_secs(60)).await;
    out.assert_ok();
    let listing = std::fs::read_to_string(out_dir.join(".listing")).unwrap_or_default();
    assert!(
        listing.contains("down.bin"),
        "wget listing: {listing:?} {out}"
    );
    cell.assert_downloaded(&out_dir.join("down.bin"), "wget");
    cell.assert_downloaded(&out_dir.join("down.bin.1"), "wget second");
    cell.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_vsftpd_explicit() {
    wget_cell(Origin::vsftpd(VsftpdMode::Explicit {
        require_reuse: true,
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_vsftpd_implicit() {
    wget_cell(Origin::vsftpd(VsftpdMode::Implicit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_vsftpd_plain() {
    wget_cell(Origin::vsftpd(VsftpdMode::Plain)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_proftpd() {
    if let Some(o) = proftpd() {
        wget_cell(o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_pureftpd() {
    if let Some(o) = pureftpd() {
        wget_cell(o).await;
    }
}

// --- gftp-text -------------------------------------------------------------------------

/// gftp-text 2.9 (OpenSSL; `ftps` is AUTH TLS with PROT P, `ftpsi` implicit) reads its
/// commands from stdin: listing, download, upload, second download in one session. Its
/// settings go to `$HOME/.gftp`, so `HOME` is a temp dir; Debian's default does not
/// verify the server certificate (`verify_ssl_peer=0`).
async fn gftp_cell(origin: Origin) {
    if !Path::new("/usr/bin/gftp-text").is_file() {
        eprintln!("skipped: gftp-text missing (apt-get install gftp-text)");
        return;
    }
    let cell = Cell::start(origin, true).await;
    let (user, pass) = test_user();
    let scheme = match cell.origin.security() {
        Security::Plain => "ftp",
        Security::Implicit => "ftpsi",
        _ => "ftps",
    };
    let (src, up_sha) = cell.upload_source();
    let (first, second, home) = (cell.local("g1"), cell.local("g2"), cell.local("home"));
    for d in [&first, &second, &home] {
        std::fs::create_dir(d).unwrap();
    }
    let script = cell.local("gftp.cmds");
    std::fs::write(
        &script,
        format!(
            "ls\nlcd {}\nget down.bin\nlcd {}\nput {}\nlcd {}\nget down.bin\nquit\n",
            first.display(),
            src.parent().unwrap().display(),
            src.file_name().unwrap().to_string_lossy(),
            second.display(),
        ),
    )
    .unwrap();
    let cmd = format!(
        "HOME={} exec gftp-text {scheme}://{user}:{pass}@{} < {}",
        home.display(),
        cell.addr(),
        script.display()
    );
    let out = run("sh", &["-c".into(), cmd], Duration::from_secs(60)).await;
    assert!(!out.timed_out, "gftp-text hung: {out}");
    eprintln!("{out}");
    assert!(out.stdout.contains("down.bin"), "gftp listing: {out}");
    cell.assert_downloaded(&first.join("down.bin"), "gftp");
    cell.assert_stored("up-src.bin", &up_sha, "gftp");
    cell.assert_downloaded(&second.join("down.bin"), "gftp second");
    cell.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gftp_vsftpd_explicit() {
    gftp_cell(Origin::vsftpd(VsftpdMode::Explicit {
        require_reuse: true,
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gftp_vsftpd_implicit() {
    gftp_cell(Origin::vsftpd(VsftpdMode::Implicit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gftp_vsftpd_plain() {
    gftp_cell(Origin::vsftpd(VsftpdMode::Plain)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gftp_proftpd() {
    if let Some(o) = proftpd() {
        gftp_cell(o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gftp_pureftpd() {
    if let Some(o) = pureftpd() {
        gftp_cell(o).await;
    }
}

// --- Java Apache Commons Net 3.9 -------------------------------------------------------

const COMMONS_NET: &str = "/usr/share/java/commons-net.jar";

/// Commons Net in one session: login, LIST, RETR, STOR, RETR. `reuse`: with the session
/// reuse workaround (TLS 1.2, JSSE session cache filled by reflection); stock Commons Net
/// never resumes TLS on data connections and needs `require_data_reuse: false`.
async fn java_cell(origin: Origin, reuse: bool) {
    if !Path::new(COMMONS_NET).is_file() {
        eprintln!("skipped: {COMMONS_NET} missing (apt-get install libcommons-net-java)");
        return;
    }
    let cell = Cell::start(origin, reuse).await;
    let (user, pass) = test_user();
    let (src, sha) = cell.upload_source();
    let mode = match cell.origin.security() {
        Security::Plain => "plain",
        Security::Implicit => "implicit",
        _ => "explicit",
    };
    let program =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/java/CommonsNetClient.java");
    let mut args: Vec<String> = Vec::new();
    if reuse {
        args.extend([
            "--add-opens=java.base/sun.security.ssl=ALL-UNNAMED".into(),
            "--add-opens=java.base/sun.security.util=ALL-UNNAMED".into(),
            "-Djdk.tls.client.protocols=TLSv1.2".into(),
            "-Djdk.tls.client.enableSessionTicketExtension=false".into(),
        ]);
    }
    args.extend([
        "-cp".into(),
        COMMONS_NET.into(),
        program.display().to_string(),
        mode.into(),
        cell.addr().ip().to_string(),
        cell.addr().port().to_string(),
        user.into(),
        pass.into(),
        if reuse { "reuse" } else { "stock" }.into(),
        "down.bin".into(),
        cell.local("j1.bin").display().to_string(),
        cell.local("j2.bin").display().to_string(),
        src.display().to_string(),
        "java-up.bin".into(),
    ]);
    let out = run("java", &args, Duration::from_secs(90)).await;
    assert!(
        out.success(),
        "Commons Net ({}): {out}\n--- server:\n{}",
        if reuse { "reuse" } else { "stock" },
        cell.origin.output()
    );
    cell.assert_downloaded(&cell.local("j1.bin"), "java");
    cell.assert_stored("java-up.bin", &sha, "java");
    cell.assert_downloaded(&cell.local("j2.bin"), "java second");
    cell.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_stock_vsftpd_explicit() {
    java_cell(
        Origin::vsftpd(VsftpdMode::Explicit {
            require_reuse: false,
        }),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_reuse_vsftpd_explicit() {
    java_cell(
        Origin::vsftpd(VsftpdMode::Explicit {
            require_reuse: true,
        }),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_reuse_vsftpd_implicit() {
    java_cell(Origin::vsftpd(VsftpdMode::Implicit), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_stock_vsftpd_plain() {
    java_cell(Origin::vsftpd(VsftpdMode::Plain), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_reuse_proftpd() {
    if let Some(o) = proftpd() {
        java_cell(o, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_stock_pureftpd() {
    if let Some(o) = pureftpd() {
        java_cell(o, false).await;
    }
}

/// `listeners[].tls.prefer_aes128` seen by a real client: curl (OpenSSL) offers
/// AES-256-GCM first, and gets it from a listener without the option; with the option
/// the same curl gets AES-128-GCM, on TLS 1.3 and on TLS 1.2, and its transfers on the
/// resumed data connections are byte-exact both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_aes128_from_a_listener_that_prefers_it() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let down_sha = vs.make_file("down.bin", 256 * KIB);
    let work = temp_dir("prefer-aes128");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, 256 * KIB);
    for prefer in [false, true] {
        let dir = temp_dir("gw-aes128");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
        let mut yaml = gateway_yaml(
            &Frontend::explicit(),
            &Backend::for_vsftpd(&vs),
            pasv_range(),
            "5s",
        );
        if prefer {
            yaml = yaml.replace(
                "require_data_reuse: true",
                "require_data_reuse: true, prefer_aes128: true",
            );
            assert!(yaml.contains("prefer_aes128"), "{yaml}");
        }
        let gw = GwEnv {
            gateway: Some(start_gateway(&yaml, dir.path()).await),
            dir,
            certs,
            yaml,
        };
        let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
        for (tls, want) in [
            (
                "1.3",
                if prefer {
                    "TLS_AES_128_GCM_SHA256"
                } else {
                    "TLS_AES_256_GCM_SHA384"
                },
            ),
            ("1.2", if prefer { "AES128-GCM" } else { "AES256-GCM" }),
        ] {
            let local = work.path().join(format!("down-{prefer}-{tls}.bin"));
            let remote = format!("up-{prefer}-{tls}.bin");
            let max = vec!["-v".to_string(), "--tls-max".into(), tls.into()];
            let mut put = max.clone();
            put.extend(["-T".into(), up.display().to_string()]);
            let mut get = max;
            get.extend(["-o".into(), local.display().to_string()]);
            let out = curl.session(&[(put, &remote), (get, "down.bin")]).await;
            out.assert_ok();
            let negotiated: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| l.contains("SSL connection using"))
                .collect();
            assert!(
                !negotiated.is_empty() && negotiated.iter().all(|l| l.contains(want)),
                "prefer_aes128 {prefer}, TLS {tls}: wanted {want} on every connection, \
                 curl said {negotiated:?}"
            );
            let stored = vs.root().join(&remote);
            assert!(
                stored.is_file() && sha256_file(&stored) == up_sha,
                "upload {remote}"
            );
            assert!(
                local.is_file() && sha256_file(&local) == down_sha,
                "download"
            );
        }
        gw.shutdown().await;
    }
}
