//! The backend leg's TLS resumption (issue 24 §1, issue 20 §3): through the gateway, data
//! connections toward ProFTPD (mod_tls, reuse required), vsftpd (`require_ssl_reuse=YES`) and
//! pure-ftpd keep resuming for any number of transfers in one session, on TLS 1.2 and 1.3
//! toward the backend, and a session survives refused client data connections.
//! Every file is checked by SHA-256.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::clients::{run, Output};
use common::gateway::{gateway_yaml, start_gateway, Backend, BackendAuth, Frontend};
use common::proftpd::Proftpd;
use common::pureftpd::PureFtpd;
use common::*;

/// One real FTPS server behind the gateway.
enum Server {
    Pro(Proftpd),
    Vs(Vsftpd),
    Pure(PureFtpd),
}

impl Server {
    fn proftpd() -> Server {
        Server::Pro(Proftpd::start())
    }
    fn vsftpd() -> Server {
        Server::Vs(Vsftpd::start(VsftpdMode::Explicit {
            require_reuse: true,
        }))
    }
    fn pureftpd() -> Server {
        Server::Pure(PureFtpd::start())
    }
    fn addr(&self) -> SocketAddr {
        match self {
            Server::Pro(s) => s.addr(),
            Server::Vs(s) => s.addr(),
            Server::Pure(s) => s.addr(),
        }
    }
    fn root(&self) -> &Path {
        match self {
            Server::Pro(s) => s.root(),
            Server::Vs(s) => s.root(),
            Server::Pure(s) => s.root(),
        }
    }
    fn ca(&self) -> &Path {
        match self {
            Server::Pro(s) => &s.certs().ca_pem,
            Server::Vs(s) => &s.certs().ca_pem,
            Server::Pure(s) => &s.certs().ca_pem,
        }
    }
    /// The server's own logs, for failure messages.
    fn output(&self) -> String {
        match self {
            Server::Pro(s) => s.output(),
            Server::Vs(s) => s.output(),
            Server::Pure(s) => s.output(),
        }
    }
    fn make_file(&self, name: &str, size: usize) -> String {
        make_owned_file(self.root(), name, size)
    }
}

/// The gateway in front of `server`: explicit FTPS toward clients (data reuse required), and
/// toward the backend explicit FTPS verified with the server's CA, versions as given.
struct Gw {
    gateway: Option<ftpsgate::Gateway>,
    /// Holds the gateway's config and certificates while it runs.
    _dir: tempfile::TempDir,
    certs: Certs,
}

impl Gw {
    async fn start(server: &Server, min: Option<&'static str>, max: Option<&'static str>) -> Gw {
        let dir = temp_dir("gw");
        let certs = Certs::generate(dir.path(), "gw");
        std::fs::copy(server.ca(), dir.path().join("vs-ca.pem")).unwrap();
        let back = Backend {
            addr: server.addr(),
            mode: "explicit",
            auth: BackendAuth::Ca,
            min_version: min,
            max_version: max,
            data_protection: None,
        };
        let yaml = gateway_yaml(&Frontend::explicit(), &back, pasv_range(), "5s");
        let gateway = start_gateway(&yaml, dir.path()).await;
        Gw {
            gateway: Some(gateway),
            _dir: dir,
            certs,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gateway
            .as_ref()
            .unwrap()
            .local_addr("edge")
            .expect("listener edge")
    }

    async fn shutdown(mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
    }
}

/// Python ftplib (OpenSSL) whose data connections resume the control session, as in
/// tests/py/ftpclient.py: `N` rounds of STOR `up-i.bin` then RETR `down-i.bin`, every
/// failure counted (the session goes on after an error reply), at most 5 in a row.
const FTPLIB_ROUNDS: &str = r#"
import ftplib, ssl, sys
host, port, ca, work, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
user, password = sys.argv[6], sys.argv[7]

class ResumingFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

ftp = ResumingFTP_TLS(context=ssl.create_default_context(cafile=ca))
ftp.connect(host, port, timeout=20)
ftp.auth()
ftp.login(user, password)
ftp.prot_p()
ftp.voidcmd("TYPE I")
failures, in_a_row = 0, 0
for i in range(n):
    for op in ("put", "get"):
        try:
            if op == "put":
                with open(f"{work}/up-{i}.bin", "rb") as f:
                    ftp.storbinary(f"STOR up-{i}.bin", f)
            else:
                with open(f"{work}/got-{i}.bin", "wb") as f:
                    ftp.retrbinary(f"RETR down-{i}.bin", f.write)
            in_a_row = 0
        except Exception as e:
            failures += 1
            in_a_row += 1
            print(f"FAIL {op} {i}: {e!r}", flush=True)
            if in_a_row >= 5:
                print(f"FAILURES {failures} (gave up)", flush=True)
                sys.exit(1)
ftp.quit()
print(f"FAILURES {failures}", flush=True)
sys.exit(1 if failures else 0)
"#;

/// The last lines the gateway logged (all tests of this binary share the capture).
fn log_tail() -> String {
    let logs = harness::captured_logs().lock().unwrap().clone();
    let text = String::from_utf8_lossy(&logs);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Uploads and downloads per session in [`many_transfers`].
const ROUNDS: usize = 200;

/// `ROUNDS` uploads + `ROUNDS` downloads in one ftplib session through the gateway to
/// `server`, backend TLS capped at `max`: no failure, every file byte-exact both ways.
async fn many_transfers(server: Server, max: &'static str) {
    ensure_tools();
    harness::init_logs();
    let gw = Gw::start(&server, None, Some(max)).await;
    let work = temp_dir("client");
    let mut down = Vec::new();
    let mut up = Vec::new();
    for i in 0..ROUNDS {
        // Small and all different: 1–4 KiB.
        down.push(server.make_file(&format!("down-{i}.bin"), KIB + 13 * i));
        up.push(make_file(
            &work.path().join(format!("up-{i}.bin")),
            4 * KIB - 11 * i,
        ));
    }
    let script = work.path().join("rounds.py");
    std::fs::write(&script, FTPLIB_ROUNDS).unwrap();
    let args: Vec<String> = vec![
        script.display().to_string(),
        gw.addr().ip().to_string(),
        gw.addr().port().to_string(),
        gw.certs.ca_pem.display().to_string(),
        work.path().display().to_string(),
        ROUNDS.to_string(),
        test_user().0.to_string(),
        test_user().1.to_string(),
    ];
    let out: Output = run("python3", &args, Duration::from_secs(150)).await;
    assert!(
        out.success(),
        "ftplib through the gateway (backend max TLS {max}): {out}\n--- server:\n{}\n--- gateway log tail:\n{}",
        server.output(),
        log_tail()
    );
    for i in 0..ROUNDS {
        assert_eq!(
            sha256_file(&work.path().join(format!("got-{i}.bin"))),
            down[i],
            "download {i} (backend max TLS {max})"
        );
        assert_eq!(
            sha256_file(&server.root().join(format!("up-{i}.bin"))),
            up[i],
            "upload {i} (backend max TLS {max})"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proftpd_many_transfers_backend_tls13() {
    many_transfers(Server::proftpd(), "1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proftpd_many_transfers_backend_tls12() {
    many_transfers(Server::proftpd(), "1.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsftpd_many_transfers_backend_tls13() {
    many_transfers(Server::vsftpd(), "1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsftpd_many_transfers_backend_tls12() {
    many_transfers(Server::vsftpd(), "1.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pureftpd_many_transfers_backend_tls13() {
    many_transfers(Server::pureftpd(), "1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pureftpd_many_transfers_backend_tls12() {
    many_transfers(Server::pureftpd(), "1.2").await;
}

/// Issue 20 §3: three client data connections refused by the gateway (they do not resume
/// the control session), then a correct download and an upload: `226`, byte-exact, and the
/// session goes on. With TLS 1.3 forced toward the backend this needs the tickets the
/// backend sent on the dropped backend legs. `uploads`: rounds that also upload.
async fn survives_refused_client_legs(server: Server, min: Option<&'static str>, uploads: usize) {
    ensure_tools();
    harness::init_logs();
    let gw = Gw::start(&server, min, None).await;
    let sha = server.make_file("r.bin", 24 * KIB);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let fresh = gw.certs.client_config_no_resumption();
    for i in 0..3 {
        let mut plan = ftp.data_plan();
        plan.tls = Some(fresh.clone());
        let t = ftp.transfer("RETR r.bin", plan).await;
        assert!(
            !t.succeeded(),
            "refused data connection {i} succeeded: {:?}",
            t.replies
        );
    }
    for round in 0..3 {
        let plan = ftp.data_plan();
        let t = ftp.transfer("RETR r.bin", plan).await;
        assert_eq!(
            t.last().code,
            226,
            "round {round} after the refusals: {:?}\n--- server:\n{}",
            t.replies,
            server.output()
        );
        assert_eq!(sha256_bytes(t.assert_ok()), sha, "download {round}");
        if round >= uploads {
            continue;
        }
        let data = pseudo_random(10 * KIB + round, round as u64);
        let name = format!("after-{round}.bin");
        ftp.stor(&name, &data).await;
        assert_eq!(
            sha256_file(&server.root().join(&name)),
            sha256_bytes(&data),
            "upload {round}"
        );
    }
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsftpd_session_survives_refused_client_legs() {
    survives_refused_client_legs(Server::vsftpd(), None, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsftpd_session_survives_refused_client_legs_backend_tls13_only() {
    survives_refused_client_legs(Server::vsftpd(), Some("1.3"), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proftpd_session_survives_refused_client_legs() {
    survives_refused_client_legs(Server::proftpd(), None, 3).await;
}

/// ProFTPD with TLS 1.3 forced sends a ticket on each download data connection: the
/// tickets of the three dropped backend legs must not be lost. It sends none on uploads, so
/// a TLS 1.3 session toward it has two uploads in all (why 1.2 is preferred): one here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proftpd_session_survives_refused_client_legs_backend_tls13_only() {
    survives_refused_client_legs(Server::proftpd(), Some("1.3"), 1).await;
}

/// The measured limit the TLS 1.2 preference avoids, counted where it cannot be avoided:
/// with TLS 1.3 forced (`min_version: "1.3"`), ProFTPD sends no ticket on upload data
/// connections, so the third upload of a session finds none left and ProFTPD refuses it.
/// The gateway answers `425`/`426`, counts it in
/// `ftpsgate_backend_tls_resumption_failures_total{backend}`, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_tls13_toward_proftpd_counts_the_refusal() {
    ensure_tools();
    let server = Server::proftpd();
    let gw = Gw::start(&server, Some("1.3"), None).await;
    let metrics = gw.gateway.as_ref().unwrap().metrics().clone();
    let series = "ftpsgate_backend_tls_resumption_failures_total{backend=\"vs\"}";
    let count = || {
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
    };
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let mut plan = ftp.data_plan();
        plan.upload = Some(pseudo_random(3 * KIB, i));
        codes.push(
            ftp.transfer(&format!("STOR f-{i}.bin"), plan)
                .await
                .last()
                .code,
        );
    }
    // ProFTPD's own 425, or the gateway's 426 when the refusal cut the relay first.
    assert!(
        codes[..2] == [226, 226] && matches!(codes[2], 425 | 426),
        "{codes:?}\n{}",
        server.output()
    );
    assert_eq!(count(), 1.0, "{}", metrics.encode());
    assert_eq!(ftp.cmd("NOOP").await.unwrap().code, 200, "session goes on");
    ftp.quit().await;
    gw.shutdown().await;
}

/// A backend that speaks only TLS 1.3 refuses the TLS 1.2-only offer the gateway prefers:
/// the gateway retries with TLS 1.3 and remembers it, so every session logs in and transfers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_only_backend_gets_tls13() {
    ensure_tools();
    harness::init_logs();
    let server = Server::Pro(Proftpd::start_tls13_only());
    let gw = Gw::start(&server, None, None).await;
    let sha = server.make_file("t.bin", 8 * KIB);
    for session in 0..2 {
        let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
        assert_eq!(
            sha256_bytes(&ftp.retr("t.bin").await),
            sha,
            "session {session}"
        );
        let data = pseudo_random(5 * KIB + session, session as u64);
        let name = format!("t-up-{session}.bin");
        ftp.stor(&name, &data).await;
        assert_eq!(
            sha256_file(&server.root().join(&name)),
            sha256_bytes(&data),
            "upload in session {session}"
        );
        ftp.quit().await;
    }
    gw.shutdown().await;
}

/// `lftp mirror -R` (4 parallel transfers) of a tree of 300 small files to ProFTPD through
/// the gateway: every file arrives, byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_mirror_to_proftpd() {
    ensure_tools();
    let server = Server::proftpd();
    let gw = Gw::start(&server, None, None).await;
    let work = temp_dir("client");
    let tree = work.path().join("tree");
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for d in 0..3 {
        let dir = tree.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let rel = PathBuf::from(format!("d{d}/f{f}.bin"));
            let sha = make_file(&tree.join(&rel), 200 + 37 * f + 1000 * d);
            files.push((rel, sha));
        }
    }
    let mut lftp = Lftp::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    lftp.timeout = Duration::from_secs(150);
    let out = lftp
        .script(&format!("mirror -R --parallel=4 {} tree", tree.display()))
        .await;
    out.assert_ok();
    let mut bad = Vec::new();
    for (rel, sha) in &files {
        let remote = server.root().join("tree").join(rel);
        if !remote.is_file() || sha256_file(&remote) != *sha {
            bad.push(rel.display().to_string());
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} files missing or damaged: {bad:?}\n{out}",
        bad.len(),
        files.len()
    );
    gw.shutdown().await;
}

/// vsftpd that cannot bind a passive port gives up the session by writing `500 OOPS:
/// vsf_sysutil_bind` in clear text on the TLS control connection and exiting (seen in
/// bench/dmz.sh's 200-session run with too few passive ports). The gateway takes that for a
/// lost backend: the client gets `421` at once and the session is closed. curl reports a
/// `421` as "(28) Timeout was reached" (it maps 421 to CURLE_OPERATION_TIMEDOUT, servers send
/// it on idle timeouts), which is what made the bench's failed downloads look like hangs:
/// here it fails within a second, with the `421` in its dialogue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dying_in_clear_text_on_pasv_gives_the_client_421() {
    ensure_tools();
    harness::init_logs();
    // vsftpd's only passive port, held here: every bind attempt fails.
    let hold = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hold.local_addr().unwrap().port();
    let vs = Vsftpd::start_with(
        VsftpdMode::Explicit {
            require_reuse: true,
        },
        &format!("pasv_min_port={port}\npasv_max_port={port}\n"),
    );
    let server = Server::Vs(vs);
    server.make_file("f.bin", 4 * KIB);
    let gw = Gw::start(&server, None, None).await;
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    let started = std::time::Instant::now();
    let out = curl.raw(&["-v", "-o", "/dev/null"], "f.bin").await;
    out.assert_failed();
    assert!(
        out.stderr.contains("421"),
        "curl did not get the gateway's 421: {out}\n--- server:\n{}",
        server.output()
    );
    // Not a performance bound: a hang would last curl's whole --max-time.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "curl took {:?}: {out}",
        started.elapsed()
    );
    let logs = String::from_utf8_lossy(&harness::captured_logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("backend control connection lost"),
        "{}",
        log_tail()
    );
    drop(hold);
    gw.shutdown().await;
}
