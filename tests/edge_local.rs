//! Edge cases on loopback: in-process ftpsgate (port 0) in front of a real vsftpd on
//! 127.0.0.1 (or `::1`): ABOR mid-transfer, REST/APPE resume, backend keepalive NOOPs
//! during a slow transfer, active mode, IPv6 on either side, CCC / PROT C policy.
//! Gateway logs (`ftpsgate=debug`) go to the test's captured output, shown on failure.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::harness::init_test_writer_logs;
use common::netns::{LabVsftpd, NatLab, NsCurl, VsftpdSpec};
use common::raw::connect_from;
use common::*;
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsConnector;

/// One explicit-TLS listener block.
fn explicit_listener(name: &str, bind: &str, pasv: (u16, u16), tls_extra: &str) -> String {
    format!(
        r#"  - name: {name}
    bind: "{bind}"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key, require: true{tls_extra} }}
    passive: {{ ports: "{}-{}" }}
    backend: vs
"#,
        pasv.0, pasv.1
    )
}

/// A plain (`tls.mode: none`) listener block.
fn plain_listener(name: &str, bind: &str, pasv: (u16, u16)) -> String {
    format!(
        r#"  - name: {name}
    bind: "{bind}"
    tls: {{ mode: none }}
    passive: {{ ports: "{}-{}" }}
    backend: vs
"#,
        pasv.0, pasv.1
    )
}

/// Full config: `listeners` blocks, backend `vs` (explicit TLS, verified with `vs-ca.pem`)
/// with `backend_extra` keys, and a `timeouts` map.
fn config(listeners: &str, backend: SocketAddr, backend_extra: &str, timeouts: &str) -> String {
    format!(
        r#"listeners:
{listeners}backends:
  - name: vs
    address: "{backend}"
    tls: {{ mode: explicit, ca: vs-ca.pem, server_name: localhost }}
{backend_extra}timeouts: {{ {timeouts} }}
"#
    )
}

/// The in-process gateway with its dir and client-facing certs.
struct Gw {
    gateway: Option<ftpsgate::Gateway>,
    certs: Certs,
    yaml: String,
    _dir: tempfile::TempDir,
}

impl Gw {
    async fn start(yaml: String, backend_ca: &Path) -> Gw {
        init_test_writer_logs();
        let dir = temp_dir("edge-gw");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(backend_ca, dir.path().join("vs-ca.pem")).unwrap();
        let gateway = common::gateway::start_gateway(&yaml, dir.path()).await;
        Gw {
            gateway: Some(gateway),
            certs,
            yaml,
            _dir: dir,
        }
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.gateway
            .as_ref()
            .unwrap()
            .local_addr(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    fn ca(&self) -> &Path {
        &self.certs.ca_pem
    }

    async fn shutdown(mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
    }
}

/// The explicit listener `edge` with `tls_extra`, backend extras and timeouts.
async fn strict_pair_with(tls_extra: &str, backend_extra: &str, timeouts: &str) -> (Vsftpd, Gw) {
    let vs = Vsftpd::strict();
    let yaml = config(
        &explicit_listener("edge", "127.0.0.1:0", pasv_range(), tls_extra),
        vs.addr(),
        backend_extra,
        timeouts,
    );
    let gw = Gw::start(yaml, &vs.certs().ca_pem).await;
    (vs, gw)
}

fn ctx(vs_log: &str, gw: &Gw) -> String {
    let lines: Vec<&str> = vs_log.lines().collect();
    format!(
        "--- gateway config:\n{}\n--- vsftpd log (last 40 lines):\n{}",
        gw.yaml,
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

// ---------------------------------------------------------------------------------------
// 7. ABOR during a 64 MiB download.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_mid_download_then_full_download() {
    const BIG: usize = 64 * MIB;
    let (vs, gw) = strict_pair_with("", "", "pinhole: 10s").await;
    let sha = vs.make_file("big.bin", BIG);
    let tls = gw.certs.client_config();
    let mut ftp = RawFtp::ready_explicit(gw.addr("edge"), tls.clone()).await;

    let data_addr = ftp.pasv().await;
    let tcp = connect_from(None, data_addr).await.expect("data connect");
    let (got_mib_tx, got_mib_rx) = tokio::sync::oneshot::channel::<()>();
    let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let name = ServerName::try_from("localhost").unwrap().to_owned();
        let mut data = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("data TLS: {e}"))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while total < MIB {
            match data.read(&mut buf).await {
                Ok(0) => return Err(format!("data closed after {total} bytes")),
                Ok(n) => total += n,
                Err(e) => return Err(format!("data read after {total} bytes: {e}")),
            }
        }
        let _ = got_mib_tx.send(());
        // Stop reading until ABOR has been sent, then drain until the gateway closes.
        let _ = resume_rx.await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, data.read(&mut buf)).await {
                Err(_) => {
                    return Err(format!(
                        "data leg still open 15 s after ABOR ({total} bytes)"
                    ))
                }
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(total),
                Ok(Ok(n)) => total += n,
            }
        }
    });

    let first = ftp.cmd("RETR big.bin").await.expect("RETR");
    assert_eq!(first.code, 150, "RETR: {first}\n{}", ctx(&vs.log(), &gw));
    tokio::time::timeout(Duration::from_secs(15), got_mib_rx)
        .await
        .expect("1 MiB within 15 s")
        .expect("data reader failed before 1 MiB");
    // TELNET IAC IP, IAC DM, then ABOR (RFC 959 §4.1.3), written in-band.
    ftp.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n")
        .await
        .expect("send ABOR");
    let _ = resume_tx.send(());

    // Replies: the transfer's 426 (optional) and ABOR's 225/226.
    let mut replies = Vec::new();
    loop {
        let r = ftp.read_reply().await.unwrap_or_else(|e| {
            panic!(
                "no reply after ABOR ({replies:?}): {e}\n{}",
                ctx(&vs.log(), &gw)
            )
        });
        let done = (200..300).contains(&r.code);
        assert!(
            done || r.code == 426 || r.code == 451,
            "unexpected reply after ABOR: {r} (before: {replies:?})\n{}",
            ctx(&vs.log(), &gw)
        );
        replies.push(r);
        if done {
            break;
        }
        assert!(replies.len() < 4, "too many replies: {replies:?}");
    }
    let received = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("data reader stuck")
        .expect("data reader panicked")
        .unwrap_or_else(|e| panic!("{e}\n{}", ctx(&vs.log(), &gw)));
    assert!(
        received < BIG,
        "ABOR did not abort: all {received} bytes were delivered (replies {replies:?})"
    );

    // No stray replies queued: the next command gets its own answer.
    let noop = ftp.cmd("NOOP").await.expect("NOOP");
    assert_eq!(
        noop.code, 200,
        "NOOP after ABOR: {noop} (ABOR replies {replies:?})"
    );
    // And the session still transfers correctly.
    let data = ftp.retr("big.bin").await;
    assert_eq!(data.len(), BIG, "second download length");
    assert_eq!(sha256_bytes(&data), sha, "second download corrupted");
    ftp.quit().await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 8. REST resume (download and upload).
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_resume_download_and_upload() {
    const SIZE: usize = 4 * MIB + 777;
    let half = SIZE / 2 + 3;
    let (vs, gw) = strict_pair_with("", "", "pinhole: 10s").await;
    let content = pseudo_random(SIZE, 8);
    let sha = sha256_bytes(&content);
    vs.put_file("resume.bin", &content);
    let work = temp_dir("resume");

    // Raw: PASV, REST n, RETR → the tail from n.
    let mut ftp = RawFtp::ready_explicit(gw.addr("edge"), gw.certs.client_config()).await;
    let addr = ftp.pasv().await;
    let rest = ftp.cmd(&format!("REST {half}")).await.expect("REST");
    assert_eq!(rest.code, 350, "REST: {rest}\n{}", ctx(&vs.log(), &gw));
    let plan = ftp.data_plan();
    let t = ftp.transfer_at(addr, "RETR resume.bin", plan).await;
    let tail = t.assert_ok();
    assert_eq!(
        tail.len(),
        SIZE - half,
        "REST+RETR returned the wrong length"
    );
    assert!(
        tail == &content[half..],
        "REST+RETR returned the wrong bytes"
    );
    ftp.quit().await;

    // curl -C - on a partial local file.
    let curl = Curl::new(gw.addr("edge"), Security::Explicit, Some(gw.ca()));
    let local = work.path().join("resume-curl.bin");
    std::fs::write(&local, &content[..half]).unwrap();
    let out = curl
        .raw(
            &["-C", "-", "-o", &local.display().to_string()],
            "resume.bin",
        )
        .await;
    out.assert_ok();
    assert_eq!(sha256_file(&local), sha, "curl -C - download corrupted");

    // Upload resume: curl -C - -T (SIZE + APPE) onto a partial remote file.
    let up = work.path().join("up.bin");
    std::fs::write(&up, &content).unwrap();
    vs.put_file("up-curl.bin", &content[..half]);
    let out = curl
        .raw(&["-C", "-", "-T", &up.display().to_string()], "up-curl.bin")
        .await;
    out.assert_ok();
    assert_eq!(
        sha256_file(&vs.root().join("up-curl.bin")),
        sha,
        "curl -C - -T upload resume corrupted\n{}",
        ctx(&vs.log(), &gw)
    );

    // lftp put -c (REST + STOR, or APPE) onto a partial remote file.
    vs.put_file("up-lftp.bin", &content[..half]);
    let lftp = Lftp::new(gw.addr("edge"), Security::Explicit, Some(gw.ca()));
    let out = lftp
        .script(&format!("put -c {} -o up-lftp.bin", up.display()))
        .await;
    out.assert_ok();
    assert_eq!(
        sha256_file(&vs.root().join("up-lftp.bin")),
        sha,
        "lftp put -c upload resume corrupted\n{}",
        ctx(&vs.log(), &gw)
    );
    let log = vs.log();
    assert!(
        log.contains(&format!("\"REST {half}\"")) || log.contains("\"APPE "),
        "lftp did not resume (no REST {half}/APPE at the backend)\n{}",
        ctx(&log, &gw)
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 9. Backend keepalive NOOPs during a slow transfer with a short idle timeout.
// ---------------------------------------------------------------------------------------

/// A rate-limited curl download (`--limit-rate 100k`, 2 MiB: ~20 s) with the backend's
/// `keepalive_noop: 1s` and `timeouts.idle: 5s`: neither control leg may be dropped, the
/// keepalive NOOPs must reach the backend, and their replies must not leak to the client
/// (curl fetches a second file on the same control connection afterwards).
///
/// Runs on the loopback of its own network namespace with small TCP buffers
/// (`tcp_rmem`/`tcp_wmem` max 128 KiB there): with the host's defaults the kernel buffers
/// the whole 2 MiB, the gateway finishes relaying in ~15 ms, and its control legs are
/// then really idle while curl drains its socket — the idle timeout rightly fires.
/// Even with small buffers the gateway finishes before curl does: what is still in
/// the kernel's buffers and in curl drains at curl's 200 KB/s, and a loaded CI run with
/// `idle: 3s` saw curl's next command arrive more than 3 s after the gateway's `226`
/// (the idle timeout won the race). The idle limit is 5 s, still well below the
/// transfer's length. So the gateway runs as a process (`ftpsgate run`) in that
/// namespace, with its log.
///
/// curl's `--limit-rate` is an average that restarts whenever curl is behind it, so a
/// curl that is descheduled on a loaded machine catches up in bursts: at 200k the 2 MiB
/// took 3.9–6.8 s instead of ~10 s in loaded runs (file intact), shorter than the idle
/// limit, which proves nothing. At 100k the same speed-up still leaves it over 7 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_noop_during_slow_download() {
    let lab = NatLab::single("ka");
    lab.exec_ok(
        "ka",
        "sysctl",
        &["-qw", "net.ipv4.tcp_wmem=4096 16384 131072"],
    );
    lab.exec_ok(
        "ka",
        "sysctl",
        &["-qw", "net.ipv4.tcp_rmem=4096 32768 131072"],
    );
    let vs = lab.vsftpd_in(
        "ka",
        VsftpdSpec {
            mode: VsftpdMode::Explicit {
                require_reuse: true,
            },
            listen: "127.0.0.1:2100".parse().unwrap(),
            pasv_address: None,
            pasv: (30000, 30049),
        },
    );
    let front: SocketAddr = "127.0.0.1:2021".parse().unwrap();
    let yaml = config(
        &explicit_listener("edge", &front.to_string(), (50000, 50049), ""),
        vs.addr(),
        "    keepalive_noop: 1s\n",
        "idle: 5s",
    )
    .replace("vs-ca.pem", "ca.pem");
    let gw = lab.gateway_in("ka", &yaml, vs.ca(), "ka", front);
    let ctx = || {
        let log = vs.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "{}\n--- vsftpd log (last 40 lines):\n{}",
            gw.describe(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    };
    let slow_sha = vs.make_file("slow.bin", 2 * MIB);
    let after_sha = vs.make_file("after.bin", 100 * KIB);
    let slow = lab.dir().join("slow.bin");
    let after = lab.dir().join("after.bin");
    let curl = NsCurl::new("ka", front, Security::Explicit, gw.ca());
    let first_url = format!("ftp://{TEST_USER}:{TEST_PASS}@{front}/slow.bin");
    let started = Instant::now();
    let out = curl
        .raw(
            &lab,
            &[
                "--limit-rate",
                "100k",
                "-o",
                &slow.display().to_string(),
                &first_url,
                "-o",
                &after.display().to_string(),
            ],
            "after.bin",
        )
        .await;
    let took = started.elapsed();
    assert!(
        out.success(),
        "slow download failed after {took:?}: {out}\n{}",
        ctx()
    );
    assert!(
        took >= Duration::from_secs(7),
        "rate limit not effective ({took:?})"
    );
    assert_eq!(sha256_file(&slow), slow_sha, "slow download corrupted");
    assert_eq!(
        sha256_file(&after),
        after_sha,
        "download after the slow one corrupted"
    );
    let noops = vs.log().matches("\"NOOP\"").count();
    assert!(
        noops >= 2,
        "expected keepalive NOOPs at the backend during a {took:?} transfer, saw {noops}\n{}",
        ctx()
    );
    drop(gw);
    drop(vs);
    drop(lab);
}

// ---------------------------------------------------------------------------------------
// 10. Active mode on loopback.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_loopback_lftp_ftps_and_curl_plain() {
    let vs = Vsftpd::strict();
    let listeners = format!(
        "{}{}",
        explicit_listener("edge", "127.0.0.1:0", pasv_range(), ""),
        plain_listener("plain", "127.0.0.1:0", pasv_range())
    );
    let gw = Gw::start(
        config(&listeners, vs.addr(), "", "pinhole: 10s"),
        &vs.certs().ca_pem,
    )
    .await;
    let work = temp_dir("active");
    let down_sha = vs.make_file("active.bin", 3 * MIB);

    // lftp, explicit FTPS, ftp:passive-mode off.
    let lftp = Lftp::new(gw.addr("edge"), Security::Explicit, Some(gw.ca()));
    let local = work.path().join("active-lftp.bin");
    let up = work.path().join("active-lftp-up.bin");
    let up_sha = make_file(&up, 3 * MIB);
    let out = lftp
        .script(&format!(
            "set ftp:passive-mode off; debug 5; get active.bin -o {}; put {} -o active-lftp-up.bin",
            local.display(),
            up.display()
        ))
        .await;
    assert!(out.success(), "lftp active: {out}\n{}", ctx(&vs.log(), &gw));
    assert!(
        out.stderr.contains("---> PORT") || out.stderr.contains("---> EPRT"),
        "lftp did not use active mode: {out}"
    );
    assert!(
        !out.stderr.contains("---> PASV") && !out.stderr.contains("---> EPSV"),
        "lftp fell back to passive mode: {out}\n{}",
        ctx(&vs.log(), &gw)
    );
    assert_eq!(
        sha256_file(&local),
        down_sha,
        "lftp active download corrupted"
    );
    assert_eq!(
        sha256_file(&vs.root().join("active-lftp-up.bin")),
        up_sha,
        "lftp active upload corrupted"
    );

    // curl --ftp-port toward the plain listener (curl 7.88 cannot do active FTPS).
    let curl = Curl::new(gw.addr("plain"), Security::Plain, None);
    let local = work.path().join("active-curl.bin");
    let out = curl
        .raw(
            &[
                "-v",
                "--ftp-port",
                "127.0.0.1",
                "-o",
                &local.display().to_string(),
            ],
            "active.bin",
        )
        .await;
    assert!(
        out.success(),
        "curl active download: {out}\n{}",
        ctx(&vs.log(), &gw)
    );
    assert!(
        out.stderr.contains("> EPRT") || out.stderr.contains("> PORT"),
        "curl did not use active mode: {out}"
    );
    assert_eq!(
        sha256_file(&local),
        down_sha,
        "curl active download corrupted"
    );
    let up = work.path().join("active-curl-up.bin");
    let up_sha = make_file(&up, 3 * MIB);
    let out = curl
        .raw(
            &["--ftp-port", "127.0.0.1", "-T", &up.display().to_string()],
            "active-curl-up.bin",
        )
        .await;
    assert!(
        out.success(),
        "curl active upload: {out}\n{}",
        ctx(&vs.log(), &gw)
    );
    assert_eq!(
        sha256_file(&vs.root().join("active-curl-up.bin")),
        up_sha,
        "curl active upload corrupted"
    );
    let log = vs.log();
    assert!(
        !log.contains("\"PORT ") && !log.contains("\"EPRT "),
        "the backend saw active mode (default data_mode is passive)\n{}",
        ctx(&log, &gw)
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 11. IPv6 on the client side and on the backend side.
// ---------------------------------------------------------------------------------------

/// curl download + upload of `size` bytes through `addr`, sha256 both ways.
async fn curl_both_ways(
    curl: &Curl,
    root: &Path,
    make: impl Fn(&str, usize) -> String,
    tag: &str,
    expect_epsv: bool,
) {
    let work = temp_dir("v6");
    let name = format!("{tag}.bin");
    let sha = make(&name, 2 * MIB);
    let local = work.path().join(&name);
    let out = curl
        .raw(&["-v", "-o", &local.display().to_string()], &name)
        .await;
    out.assert_ok();
    assert_eq!(sha256_file(&local), sha, "{tag}: download corrupted");
    assert!(
        !expect_epsv || out.stderr.contains("< 229 "),
        "{tag}: curl did not use EPSV: {out}"
    );
    let up = work.path().join(format!("{tag}-up.bin"));
    let up_sha = make_file(&up, 2 * MIB);
    let remote = format!("{tag}-up.bin");
    curl.put(&up, &remote).await.assert_ok();
    assert_eq!(
        sha256_file(&root.join(&remote)),
        up_sha,
        "{tag}: upload corrupted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_listener_to_ipv4_backend() {
    let vs = Vsftpd::strict();
    let yaml = config(
        &explicit_listener("edge6", "[::1]:0", pasv_range(), ""),
        vs.addr(),
        "",
        "pinhole: 10s",
    );
    let gw = Gw::start(yaml, &vs.certs().ca_pem).await;
    let addr = gw.addr("edge6");
    assert!(addr.is_ipv6(), "listener not on IPv6: {addr}");
    let curl = Curl::new(addr, Security::Explicit, Some(gw.ca()));
    curl_both_ways(
        &curl,
        vs.root(),
        |n, s| vs.make_file(n, s),
        "v6client",
        true,
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_listener_to_ipv6_backend() {
    ensure_tools();
    let port = std::net::TcpListener::bind("[::1]:0")
        .expect("bind [::1]:0 (is IPv6 loopback available?)")
        .local_addr()
        .unwrap()
        .port();
    let vs = LabVsftpd::start_host(VsftpdSpec {
        mode: VsftpdMode::Explicit {
            require_reuse: true,
        },
        listen: SocketAddr::new("::1".parse().unwrap(), port),
        pasv_address: None,
        pasv: pasv_range(),
    });
    let yaml = config(
        &explicit_listener("edge", "127.0.0.1:0", pasv_range(), ""),
        vs.addr(),
        "",
        "pinhole: 10s",
    );
    let gw = Gw::start(yaml, vs.ca()).await;
    let curl = Curl::new(gw.addr("edge"), Security::Explicit, Some(gw.ca()));
    curl_both_ways(
        &curl,
        vs.root(),
        |n, s| vs.make_file(n, s),
        "v6backend",
        true,
    )
    .await;
    // Also PASV (not only EPSV) from the client while the backend is IPv6.
    let mut ftp = RawFtp::ready_explicit(gw.addr("edge"), gw.certs.client_config()).await;
    let data = ftp.retr("v6backend.bin").await;
    assert_eq!(data.len(), 2 * MIB);
    ftp.quit().await;
    gw.shutdown().await;
    drop(vs);
}

// ---------------------------------------------------------------------------------------
// 12. CCC and PROT C policy.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccc_refused_by_default() {
    let (vs, gw) = strict_pair_with("", "", "pinhole: 10s").await;
    let sha = vs.make_file("ccc.bin", 100 * KIB);
    let mut ftp = RawFtp::ready_explicit(gw.addr("edge"), gw.certs.client_config()).await;
    let r = ftp.cmd("CCC").await.expect("CCC");
    assert!(
        r.code == 534 || r.code == 502,
        "CCC must be refused (534/502) by default: {r}"
    );
    // Still TLS, still working.
    let data = ftp.retr("ccc.bin").await;
    assert_eq!(sha256_bytes(&data), sha);
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prot_c_refused_when_clear_data_disallowed() {
    let (vs, gw) = strict_pair_with(", allow_clear_data: false", "", "pinhole: 10s").await;
    let sha = vs.make_file("protc.bin", 100 * KIB);
    let (user, pass) = test_user();
    let mut ftp = RawFtp::connect_explicit(gw.addr("edge"), gw.certs.client_config()).await;
    ftp.login(user, pass).await;
    let r = ftp.cmd("PBSZ 0").await.expect("PBSZ");
    assert_eq!(r.code, 200, "PBSZ: {r}");
    let r = ftp.cmd("PROT C").await.expect("PROT C");
    assert!(
        r.code == 534 || r.code == 536,
        "PROT C must be refused (534/536) with allow_clear_data: false: {r}"
    );
    let r = ftp.cmd("PROT P").await.expect("PROT P");
    assert_eq!(r.code, 200, "PROT P: {r}");
    ftp.binary().await;
    let data = ftp.retr("protc.bin").await;
    assert_eq!(sha256_bytes(&data), sha);
    ftp.quit().await;

    // With allow_clear_data: true (no longer the default) PROT C is fine.
    let yaml_ok = config(
        &explicit_listener(
            "edge",
            "127.0.0.1:0",
            pasv_range(),
            ", allow_clear_data: true",
        ),
        vs.addr(),
        "",
        "pinhole: 10s",
    );
    let gw_ok = Gw::start(yaml_ok, &vs.certs().ca_pem).await;
    let mut ftp = RawFtp::connect_explicit(gw_ok.addr("edge"), gw_ok.certs.client_config()).await;
    ftp.login(user, pass).await;
    ftp.prot(false).await;
    ftp.binary().await;
    let plan = common::raw::DataPlan {
        tls: None,
        ..Default::default()
    };
    let t = ftp.transfer("RETR protc.bin", plan).await;
    assert_eq!(
        sha256_bytes(t.assert_ok()),
        sha,
        "PROT C download corrupted"
    );
    ftp.quit().await;
    gw_ok.shutdown().await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Backend data_mode: the gateway sends PORT/EPRT to the backend and the backend connects
// to the gateway (TLS client role stays with the gateway, session resumed, strict vsftpd).
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_data_mode_active_and_same_as_client() {
    for mode in ["active", "same-as-client"] {
        let (vs, gw) = strict_pair_with("", &format!("    data_mode: {mode}\n"), "").await;
        let work = temp_dir("bdm");
        // curl uses passive mode toward the gateway; lftp below uses active mode.
        let curl = Curl::new(gw.addr("edge"), Security::Explicit, Some(gw.ca()));
        curl_both_ways(
            &curl,
            vs.root(),
            |n, s| vs.make_file(n, s),
            &format!("bdm-{mode}"),
            false,
        )
        .await;
        let lftp = Lftp::new(gw.addr("edge"), Security::Explicit, Some(gw.ca()));
        let down_sha = vs.make_file("bdm-lftp.bin", MIB);
        let local = work.path().join("bdm-lftp.bin");
        let up = work.path().join("bdm-lftp-up.bin");
        let up_sha = make_file(&up, MIB);
        let out = lftp
            .script(&format!(
                "set ftp:passive-mode off; get bdm-lftp.bin -o {}; put {} -o bdm-lftp-up.bin",
                local.display(),
                up.display()
            ))
            .await;
        assert!(out.success(), "lftp {mode}: {out}\n{}", ctx(&vs.log(), &gw));
        assert_eq!(
            sha256_file(&local),
            down_sha,
            "{mode}: lftp download corrupted"
        );
        assert_eq!(
            sha256_file(&vs.root().join("bdm-lftp-up.bin")),
            up_sha,
            "{mode}: lftp upload corrupted"
        );
        let log = vs.log();
        if mode == "active" {
            // Every transfer reached the backend in active mode.
            assert!(
                log.contains("\"PORT ") || log.contains("\"EPRT "),
                "{mode}: backend never saw PORT\n{log}"
            );
            assert!(!log.contains("\"PASV\""), "{mode}: backend saw PASV\n{log}");
        } else {
            // curl's passive transfers stay passive, lftp's active ones become active.
            assert!(
                log.contains("\"PASV\""),
                "{mode}: backend never saw PASV\n{log}"
            );
            assert!(
                log.contains("\"PORT ") || log.contains("\"EPRT "),
                "{mode}: backend never saw PORT\n{log}"
            );
        }
        gw.shutdown().await;
    }
}
