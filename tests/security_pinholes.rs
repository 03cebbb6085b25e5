//! Issue 17, section D: pinholes are fair and cannot be taken. A same-address
//! interloper (carrier-NAT neighbour, local process) that reaches the pinhole
//! first — silent, with bad TLS, or with a fresh TLS session — is dropped, counted
//! and logged, and the real client's transfer still arrives intact; clear data is
//! off by default; ports are random and one client holds only its share.
//! Real vsftpd (`require_ssl_reuse=YES`) behind an in-process gateway.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use common::harness::{captured_logs, init_logs};
use common::raw::DataPlan;
use common::*;

/// Strict vsftpd and a gateway with `tls_extra` on the listener's TLS line and
/// `passive_extra` on its passive line.
async fn pair(
    tls_extra: &str,
    passive_extra: &str,
    pasv: (u16, u16),
) -> (Vsftpd, ftpsgate::Gateway, Certs, tempfile::TempDir) {
    init_logs();
    ensure_tools();
    let vs = Vsftpd::start(VsftpdMode::Explicit {
        require_reuse: true,
    });
    let dir = temp_dir("gw");
    let certs = Certs::generate(dir.path(), "gw");
    std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    let yaml = format!(
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:0"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key{tls_extra} }}
    passive: {{ ports: "{}-{}", advertise: "127.0.0.1"{passive_extra} }}
    backend: vs
backends:
  - name: vs
    address: "{}"
    tls: {{ mode: explicit, ca: vs-ca.pem, server_name: localhost }}
timeouts: {{ pinhole: 20s }}
"#,
        pasv.0,
        pasv.1,
        vs.addr()
    );
    let gw = start_gateway(&yaml, dir.path()).await;
    (vs, gw, certs, dir)
}

fn refusals(gw: &ftpsgate::Gateway, reason: &str) -> f64 {
    let key = format!("ftpsgate_pinhole_refusals_total{{reason=\"{reason}\"}} ");
    gw.metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn logs() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// How the interloper from the client's own address behaves on the pinhole.
#[derive(Debug, Clone, Copy)]
enum Interloper {
    /// Connects and says nothing (past the handshake timeout).
    Silent,
    /// Sends something that is not a TLS ClientHello.
    BadTls,
    /// A complete TLS handshake, but a fresh session (cannot resume the control one).
    FreshTls,
}

/// The interloper reaches the pinhole first; the real client transfers after it.
async fn interloper_first(kind: Interloper) {
    let (vs, gw, certs, _dir) = pair("", "", pasv_range()).await;
    let addr = gw.local_addr("edge").unwrap();
    let sha = vs.make_file("target.bin", 512 * KIB);
    let mut ftp = RawFtp::ready_explicit(addr, certs.client_config()).await;
    let pinhole = ftp.pasv().await;
    let mut tcp = TcpStream::connect(pinhole)
        .await
        .expect("interloper connects");
    let (_held, reason) = match kind {
        Interloper::Silent => {
            // Past the 5 s handshake timeout, so its drop is counted before the client comes.
            tokio::time::sleep(Duration::from_millis(5600)).await;
            (Some(tcp), "silent")
        }
        Interloper::BadTls => {
            tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            (Some(tcp), "handshake_failed")
        }
        Interloper::FreshTls => {
            let tls = TlsConnector::from(certs.client_config_no_resumption())
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await;
            assert!(tls.is_ok(), "the fresh handshake itself completes: {tls:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(tls);
            (None, "no_reuse")
        }
    };
    let plan = ftp.data_plan();
    let t = ftp.transfer_at(pinhole, "RETR target.bin", plan).await;
    assert_eq!(
        sha256_bytes(t.assert_ok()),
        sha,
        "{kind:?} interloper: real transfer"
    );
    assert_eq!(t.resumed, Some(true));
    assert!(
        refusals(&gw, reason) >= 1.0,
        "{kind:?}: refusal {reason} not counted:\n{}",
        gw.metrics().encode()
    );
    let log = logs();
    assert!(
        log.contains("dropped data connection from the client's address")
            && log.contains(&format!("reason=\"{reason}\"")),
        "{kind:?}: not logged:\n{log}"
    );
    // The session goes on.
    assert_eq!(ftp.cmd("NOOP").await.unwrap().code, 200);
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_interloper_first_real_client_still_transfers() {
    interloper_first(Interloper::Silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_interloper_first_real_client_still_transfers() {
    interloper_first(Interloper::BadTls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_tls_interloper_first_real_client_still_transfers() {
    interloper_first(Interloper::FreshTls).await;
}

/// A silent interloper does not delay the real client either: handshakes run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_interlopers_do_not_stall_the_transfer() {
    let (vs, gw, certs, _dir) = pair("", "", pasv_range()).await;
    let addr = gw.local_addr("edge").unwrap();
    let sha = vs.make_file("quick.bin", 64 * KIB);
    let mut ftp = RawFtp::ready_explicit(addr, certs.client_config()).await;
    let pinhole = ftp.pasv().await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(pinhole).await.unwrap());
    }
    let started = std::time::Instant::now();
    let plan = ftp.data_plan();
    let t = ftp.transfer_at(pinhole, "RETR quick.bin", plan).await;
    assert_eq!(sha256_bytes(t.assert_ok()), sha);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "transfer waited for the silent connections: {:?}",
        started.elapsed()
    );
    drop(silent);
    ftp.quit().await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 13. Clear data is off unless enabled (and `check` warns when it is).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prot_c_refused_by_default_and_warned_when_enabled() {
    let (vs, gw, certs, dir) = pair("", "", pasv_range()).await;
    let addr = gw.local_addr("edge").unwrap();
    let mut ftp = RawFtp::connect_explicit(addr, certs.client_config()).await;
    let (user, pass) = test_user();
    ftp.login(user, pass).await;
    assert_eq!(ftp.cmd("PBSZ 0").await.unwrap().code, 200);
    let r = ftp.cmd("PROT C").await.unwrap();
    assert!(r.code == 534 || r.code == 536, "PROT C by default: {r}");
    ftp.quit().await;
    gw.shutdown().await;

    let yaml = std::fs::read_to_string(dir.path().join("ftpsgate.yaml")).unwrap();
    let on = yaml.replace("key: gw.key", "key: gw.key, allow_clear_data: true");
    std::fs::write(dir.path().join("on.yaml"), on).unwrap();
    let check = |file: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
            .args(["check", "--config"])
            .arg(dir.path().join(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = check("on.yaml");
    assert!(
        out.contains("warning: ") && out.contains("listeners[0].tls.allow_clear_data: true"),
        "{out}"
    );
    assert!(!check("ftpsgate.yaml").contains("allow_clear_data"));
    drop(vs);
}

// ---------------------------------------------------------------------------------------
// 14. Random ports; one address and one user hold at most their share.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ports_are_random() {
    let range = pasv_range();
    let (vs, gw, certs, _dir) = pair("", "", range).await;
    let addr = gw.local_addr("edge").unwrap();
    let mut ftp = RawFtp::ready_explicit(addr, certs.client_config()).await;
    let mut ports = Vec::new();
    for _ in 0..16 {
        ports.push(ftp.pasv().await.port());
    }
    let width = range.1 - range.0 + 1;
    let steps = ports
        .windows(2)
        .filter(|w| (w[1] + width - w[0]) % width == 1)
        .count();
    assert!(steps < 5, "ports look sequential: {ports:?}");
    ftp.quit().await;
    gw.shutdown().await;
    drop(vs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_and_one_user_hold_only_their_share() {
    let (first, _) = pasv_range();
    let range = (first, first + 9);
    let (vs, gw, certs, _dir) = pair("", ", max_per_client: \"30%\"", range).await;
    let addr = gw.local_addr("edge").unwrap();
    let sha = vs.make_file("fair.bin", 128 * KIB);
    // Three sessions from 127.0.0.1 hold 3 of 10 ports: its share.
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut ftp = RawFtp::ready_explicit(addr, certs.client_config()).await;
        ftp.pasv().await;
        holders.push(ftp);
    }
    let mut fourth = RawFtp::ready_explicit(addr, certs.client_config()).await;
    let r = fourth.cmd("PASV").await.unwrap();
    assert_eq!(r.code, 425, "a 4th port for one address: {r}");
    assert!(r.text.contains("address"), "{r}");
    // Another address with the same user: the user's share is used up too.
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut ftp = RawFtp::connect_from(Some(other), addr).await.unwrap();
    assert_eq!(ftp.auth_tls(certs.client_config()).await.unwrap().code, 234);
    let (user, pass) = test_user();
    ftp.login(user, pass).await;
    ftp.prot(true).await;
    ftp.binary().await;
    let r = ftp.cmd("PASV").await.unwrap();
    assert_eq!(r.code, 425, "the user's 4th port: {r}");
    assert!(r.text.contains("user"), "{r}");
    assert!(refusals(&gw, "share") >= 2.0);
    assert_eq!(
        refusals(&gw, "exhausted"),
        0.0,
        "the range itself never ran out"
    );
    // A holder leaves: the port share comes back and the other address transfers.
    holders.pop().unwrap().quit().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let plan = DataPlan {
        bind: Some(other),
        ..ftp.data_plan()
    };
    let t = ftp.transfer("RETR fair.bin", plan).await;
    assert_eq!(sha256_bytes(t.assert_ok()), sha);
    ftp.quit().await;
    fourth.quit().await;
    for h in holders {
        h.quit().await;
    }
    gw.shutdown().await;
    drop(vs);
}
