//! Policy, reload and drain, end to end: CIDR access rules, user routing over two
//! backends (`user@backend`, globs, round-robin), command filters, failed-login
//! throttling, per-IP session limits, bandwidth caps and SNI certificates — all against
//! real vsftpd with real clients (curl and the scripted raw client), every transfer
//! checked by SHA-256 — plus in-process `Gateway::reload`, and the binary's SIGTERM
//! drain, SIGHUP / file-watch reload and `check` on broken policies.
//!
//! Clients from another address use 127.0.0.2 / 127.0.0.3 (all of 127/8 is loopback on
//! Linux): curl with `--interface`, the raw client with a bound source address.
//! `RUST_LOG=ftpsgate=debug` prints the in-process gateway's log.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clients::{Curl, Output, Security};
use common::harness::{bounded, init_stderr_logs, own_range};
use common::raw::RawFtp;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_ftpsgate");
const LO1: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LO2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LO3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

// ---------------------------------------------------------------------------------------
// Helpers

/// A gateway config dir: `gw.pem`/`gw.key` for the listeners (CA in the returned
/// `Certs`), and `{name}-ca.pem` for each backend.
fn gw_dir(backends: &[(&str, &Vsftpd)]) -> (tempfile::TempDir, Certs) {
    let dir = temp_dir("policy");
    let certs = Certs::generate(dir.path(), "gw");
    for (name, vs) in backends {
        std::fs::copy(
            &vs.certs().ca_pem,
            dir.path().join(format!("{name}-ca.pem")),
        )
        .unwrap();
    }
    (dir, certs)
}

/// One explicit-TLS listener entry (own passive range); `extra` are further keys of the
/// listener, one per line, written without indentation.
fn listener(name: &str, bind: &str, backend: &str, extra: &str) -> String {
    let (a, b) = own_range(20);
    let mut s = format!(
        "  - name: {name}\n    bind: \"{bind}\"\n    tls: {{ mode: explicit, cert: gw.pem, key: gw.key }}\n    passive: {{ ports: \"{a}-{b}\" }}\n    backend: {backend}\n"
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// One backend entry for `vs`, verified with `{name}-ca.pem`.
fn backend(name: &str, vs: &Vsftpd) -> String {
    format!(
        "  - name: {name}\n    address: \"{}\"\n    tls: {{ mode: explicit, ca: {name}-ca.pem, server_name: localhost }}\n",
        vs.addr()
    )
}

/// `top` (global sections), then the listeners and backends.
fn config(top: &str, listeners: &[&String], backends: &[&String]) -> String {
    let l: String = listeners.iter().map(|s| s.as_str()).collect();
    let b: String = backends.iter().map(|s| s.as_str()).collect();
    format!("{top}listeners:\n{l}backends:\n{b}")
}

/// A gateway with one listener `edge` on `127.0.0.1:0` (further listener keys `extra`) in
/// front of `vs` as backend `vs`; `top` are global config sections.
async fn single_gw(vs: &Vsftpd, top: &str, extra: &str) -> Gw {
    let (dir, certs) = gw_dir(&[("vs", vs)]);
    let yaml = config(
        top,
        &[&listener("edge", "127.0.0.1:0", "vs", extra)],
        &[&backend("vs", vs)],
    );
    Gw::start(dir, certs, &yaml).await
}

/// The preamble of the binary's tests: a config dir for backend `vs` (see [`gw_dir`]) and
/// listener `edge` on a concrete free port of 127.0.0.1, as `(dir, certs, addr, entry)`
/// (the test waits for the binary on `addr`, so it cannot bind port 0).
fn binary_edge(vs: &Vsftpd) -> (tempfile::TempDir, Certs, SocketAddr, String) {
    let (dir, certs) = gw_dir(&[("vs", vs)]);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let edge = listener("edge", &addr.to_string(), "vs", "");
    (dir, certs, addr, edge)
}

/// An in-process gateway with its config dir.
struct Gw {
    gw: Option<ftpsgate::Gateway>,
    dir: tempfile::TempDir,
    certs: Certs,
}

impl Gw {
    async fn start(dir: tempfile::TempDir, certs: Certs, yaml: &str) -> Gw {
        init_stderr_logs();
        let gw = start_gateway(yaml, dir.path()).await;
        Gw {
            gw: Some(gw),
            dir,
            certs,
        }
    }

    fn gw(&self) -> &ftpsgate::Gateway {
        self.gw.as_ref().unwrap()
    }

    fn addr(&self, listener: &str) -> SocketAddr {
        self.gw()
            .local_addr(listener)
            .unwrap_or_else(|| panic!("listener {listener} is not running"))
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.certs.client_config()
    }

    fn curl(&self, listener: &str) -> Curl {
        Curl::new(
            self.addr(listener),
            Security::Explicit,
            Some(&self.certs.ca_pem),
        )
    }

    fn parse(&self, yaml: &str) -> ftpsgate::config::Config {
        ftpsgate::config::Config::from_yaml_str(yaml, self.dir.path())
            .unwrap_or_else(|e| panic!("config rejected:\n{e}\n--- yaml:\n{yaml}"))
    }

    async fn shutdown(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown_with(Duration::from_secs(2)).await;
        }
    }
}

/// Connects from `bind`, `AUTH TLS`, logs in as `user`, `PBSZ 0`/`PROT P`, `TYPE I`.
async fn session(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    tls: Arc<rustls::ClientConfig>,
    user: &str,
) -> RawFtp {
    let mut ftp = RawFtp::connect_from(bind, addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr} from {bind:?}: {e}"));
    assert_eq!(ftp.greeting.code, 220, "greeting: {}", ftp.greeting);
    let r = ftp.auth_tls(tls).await.expect("AUTH TLS");
    assert_eq!(r.code, 234, "AUTH TLS: {r}");
    ftp.login(user, TEST_PASS).await;
    ftp.prot(true).await;
    ftp.binary().await;
    ftp
}

/// `RETR name` with the data connection from `bind`; panics unless it succeeds.
async fn retr_from(ftp: &mut RawFtp, name: &str, bind: Option<IpAddr>) -> Vec<u8> {
    let mut plan = ftp.data_plan();
    plan.bind = bind;
    ftp.transfer(&format!("RETR {name}"), plan)
        .await
        .assert_ok()
        .to_vec()
}

/// curl download of `remote` into `local` with extra options (e.g. `--interface`).
async fn curl_get(curl: &Curl, extra: &[&str], remote: &str, local: &Path) -> Output {
    let _ = std::fs::remove_file(local);
    let l = local.display().to_string();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["-o", l.as_str()]);
    curl.raw(&args, remote).await
}

/// Connects from `bind` and returns the greeting's code, or why there was none.
async fn greeting(bind: Option<IpAddr>, addr: SocketAddr) -> Result<u16, String> {
    match RawFtp::connect_from(bind, addr).await {
        Ok(f) => Ok(f.greeting.code),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls until a connection from `bind` gets greeting `want`; returns it, still open.
async fn poll_greeting(
    bind: Option<IpAddr>,
    addr: SocketAddr,
    want: u16,
    within: Duration,
) -> RawFtp {
    let deadline = Instant::now() + within;
    loop {
        let last = match RawFtp::connect_from(bind, addr).await {
            Ok(f) if f.greeting.code == want => return f,
            Ok(f) => format!("greeting {:?}", f.greeting.text),
            Err(e) => format!("no greeting: {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "{addr} from {bind:?}: no {want} greeting within {within:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until nothing accepts at `addr` any more.
async fn poll_refused(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match RawFtp::connect_from(None, addr).await {
            Err(_) => return,
            Ok(f) => assert!(
                Instant::now() < deadline,
                "{addr} still accepts after {within:?}: {}",
                f.greeting
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `ftpsgate` binary as a child process, killed on drop; stderr goes to a file.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn run(config: &Path) -> Proc {
        let stderr = config.with_extension("stderr");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "ftpsgate=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn ftpsgate run");
        Proc { child, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Polls until the control port answers `220`.
    async fn wait_ready(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(f) = RawFtp::connect_from(None, addr).await {
                if f.greeting.code == 220 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("ftpsgate exited early: {status}\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ftpsgate not ready at {addr}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `log()` until it contains `needle`.
async fn wait_log(p: &Proc, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !p.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "log has no {needle:?} after {within:?}:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. CIDR access rules

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cidr_access_global_and_listener_rules() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 256 * KIB);
    let (dir, certs) = gw_dir(&[("vs", &vs)]);
    let yaml = config(
        "access:\n  - deny: [\"127.0.0.2/32\"]\n  - allow: [\"127.0.0.0/8\"]\n",
        &[
            &listener("edge", "127.0.0.1:0", "vs", ""),
            // Listener rules come first: 127.0.0.2 is let in here.
            &listener(
                "vip",
                "127.0.0.1:0",
                "vs",
                "access: [ { allow: [\"127.0.0.2/32\"] } ]",
            ),
            // ... and 127.0.0.1 is kept out here although the global list allows it.
            &listener(
                "strict",
                "127.0.0.1:0",
                "vs",
                "access: [ { deny: [\"127.0.0.1/32\"] } ]",
            ),
        ],
        &[&backend("vs", &vs)],
    );
    let gw = Gw::start(dir, certs, &yaml).await;
    let out = gw.dir.path().join("out.bin");
    bounded(55, "cidr access", async {
        // edge: 127.0.0.1 (global allow) downloads.
        curl_get(&gw.curl("edge"), &[], "file.bin", &out)
            .await
            .assert_ok();
        assert_eq!(sha256_file(&out), sha);

        // edge: 127.0.0.2 (global deny) is refused by curl and by the raw client.
        let o = curl_get(
            &gw.curl("edge"),
            &["--interface", "127.0.0.2"],
            "file.bin",
            &out,
        )
        .await;
        o.assert_failed();
        assert!(!out.exists(), "refused client got a file: {o}");
        let mut raw = RawFtp::connect_from(Some(LO2), gw.addr("edge"))
            .await
            .expect("a refused client still reads the 421");
        assert_eq!(raw.greeting.code, 421, "greeting: {}", raw.greeting);
        raw.expect_closed(Duration::from_secs(5))
            .await
            .expect("closed after 421");

        // edge: 127.0.0.3 (in 127/8) is allowed.
        assert_eq!(greeting(Some(LO3), gw.addr("edge")).await, Ok(220));

        // vip: the listener's allow for 127.0.0.2 wins over the global deny.
        curl_get(
            &gw.curl("vip"),
            &["--interface", "127.0.0.2"],
            "file.bin",
            &out,
        )
        .await
        .assert_ok();
        assert_eq!(sha256_file(&out), sha);
        let mut ftp = session(gw.addr("vip"), Some(LO2), gw.tls(), TEST_USER).await;
        assert_eq!(
            sha256_bytes(&retr_from(&mut ftp, "file.bin", Some(LO2)).await),
            sha
        );
        ftp.quit().await;
        // ... and 127.0.0.1 falls through to the global allow.
        assert_eq!(greeting(Some(LO1), gw.addr("vip")).await, Ok(220));

        // strict: the listener's deny for 127.0.0.1 wins over the global allow; the
        // global deny still applies to 127.0.0.2; 127.0.0.3 is let in.
        assert_eq!(greeting(Some(LO1), gw.addr("strict")).await, Ok(421));
        curl_get(&gw.curl("strict"), &[], "file.bin", &out)
            .await
            .assert_failed();
        assert_eq!(greeting(Some(LO2), gw.addr("strict")).await, Ok(421));
        assert_eq!(greeting(Some(LO3), gw.addr("strict")).await, Ok(220));
        let mut ftp = session(gw.addr("strict"), Some(LO3), gw.tls(), TEST_USER).await;
        assert_eq!(
            sha256_bytes(&retr_from(&mut ftp, "file.bin", Some(LO3)).await),
            sha
        );
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 2. User routing over two backends

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_routing_to_two_backends() {
    let (va, vb) = (Vsftpd::strict(), Vsftpd::strict());
    va.put_file("which.txt", b"A");
    vb.put_file("which.txt", b"B");
    let (sha_a, sha_b) = (sha256_bytes(b"A"), sha256_bytes(b"B"));
    let (dir, certs) = gw_dir(&[("a", &va), ("b", &vb)]);
    let yaml = config(
        "",
        &[
            &listener(
                "edge",
                "127.0.0.1:0",
                "a",
                "user_at_backend: true\nroutes:\n  - { user: \"ftpsgatetest\", backends: [a] }\n  - { user: \"archive-?\", backends: [b] }",
            ),
            &listener(
                "glob",
                "127.0.0.1:0",
                "a",
                "routes:\n  - { user: \"ftpsgate*\", backends: [b] }",
            ),
            &listener(
                "rr",
                "127.0.0.1:0",
                "a",
                "routes:\n  - { user: \"ftps?ate*\", backends: [a, b], balance: round-robin }",
            ),
        ],
        &[&backend("a", &va), &backend("b", &vb)],
    );
    let gw = Gw::start(dir, certs, &yaml).await;
    let out = gw.dir.path().join("which.txt");
    bounded(55, "user routing", async {
        // The exact route: backend a.
        curl_get(&gw.curl("edge"), &[], "which.txt", &out)
            .await
            .assert_ok();
        assert_eq!(sha256_file(&out), sha_a, "ftpsgatetest must reach a");

        // user@b: backend b, logged in as the stripped name (vsftpd knows no
        // "ftpsgatetest@b").
        let mut curl = gw.curl("edge");
        curl.user = format!("{TEST_USER}%40b");
        curl_get(&curl, &[], "which.txt", &out).await.assert_ok();
        assert_eq!(sha256_file(&out), sha_b, "ftpsgatetest@b must reach b");
        let mut ftp = session(gw.addr("edge"), None, gw.tls(), &format!("{TEST_USER}@b")).await;
        assert_eq!(sha256_bytes(&ftp.retr("which.txt").await), sha_b);
        ftp.quit().await;
        let mut ftp = session(gw.addr("edge"), None, gw.tls(), &format!("{TEST_USER}@a")).await;
        assert_eq!(sha256_bytes(&ftp.retr("which.txt").await), sha_a);
        ftp.quit().await;
        let log_b = vb.log();
        assert!(
            log_b.contains(&format!("\"USER {TEST_USER}\"")) && !log_b.contains("@b"),
            "backend b must see the stripped login:\n{log_b}"
        );

        // user@x where x is no backend of this listener (and has no dot): 530.
        let mut ftp = RawFtp::connect_explicit(gw.addr("edge"), gw.tls()).await;
        let r = ftp.cmd(&format!("USER {TEST_USER}@nowhere")).await.unwrap();
        assert_eq!(r.code, 530, "USER {TEST_USER}@nowhere: {r}");
        ftp.quit().await;

        // A glob route: "ftpsgate*" sends ftpsgatetest to b on listener glob.
        curl_get(&gw.curl("glob"), &[], "which.txt", &out)
            .await
            .assert_ok();
        assert_eq!(sha256_file(&out), sha_b, "glob route must reach b");

        // Round-robin over [a, b]: two sessions in a row see both backends.
        let mut seen = Vec::new();
        for _ in 0..2 {
            let mut ftp = session(gw.addr("rr"), None, gw.tls(), TEST_USER).await;
            let data = ftp.retr("which.txt").await;
            let sha = sha256_bytes(&data);
            assert!(sha == sha_a || sha == sha_b, "unexpected content {data:?}");
            seen.push(String::from_utf8(data).unwrap());
            ftp.quit().await;
        }
        seen.sort();
        assert_eq!(seen, ["A", "B"], "round-robin must alternate");
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 3. Command filter

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_commands_get_550() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 300 * KIB);
    let gw = single_gw(
        &vs,
        "",
        "routes:\n  - { user: \"ftpsgatetest\", backends: [vs], commands: { deny: [STOR, DELE] } }",
    )
    .await;
    let out = gw.dir.path().join("out.bin");
    let up = gw.dir.path().join("up.bin");
    make_file(&up, 100 * KIB);
    bounded(55, "command filter", async {
        // Download still works.
        curl_get(&gw.curl("edge"), &[], "file.bin", &out)
            .await
            .assert_ok();
        assert_eq!(sha256_file(&out), sha);

        // Upload is refused with 550 and nothing lands on the backend.
        let o = gw.curl("edge").put(&up, "up.bin").await;
        o.assert_failed();
        assert!(o.stderr.contains("550"), "curl should report the 550: {o}");
        assert!(
            !vs.root().join("up.bin").exists(),
            "upload reached the backend"
        );

        // DELE is refused; the file stays.
        let mut ftp = session(gw.addr("edge"), None, gw.tls(), TEST_USER).await;
        let r = ftp.cmd("DELE file.bin").await.unwrap();
        assert_eq!(r.code, 550, "DELE: {r}");
        assert!(
            vs.root().join("file.bin").exists(),
            "DELE reached the backend"
        );
        // STOR through the raw client, too (no data connection is served).
        let r = ftp.cmd("STOR x.bin").await.unwrap();
        assert_eq!(r.code, 550, "STOR: {r}");
        // Unfiltered commands and downloads go on in the same session.
        assert_eq!(ftp.cmd("NOOP").await.unwrap().code, 200);
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        let r = ftp.cmd("SIZE file.bin").await.unwrap();
        assert_eq!(r.code, 213, "SIZE: {r}");
        ftp.quit().await;
        assert!(
            !vs.log().contains("DELE file.bin"),
            "the backend saw the DELE:\n{}",
            vs.log()
        );
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 4. Failed-login throttling

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_cool_down_the_address() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 64 * KIB);
    let gw = single_gw(
        &vs,
        "limits:\n  failed_logins: { max: 2, window: 60s, cooldown: 30s }\n",
        "",
    )
    .await;
    let addr = gw.addr("edge");
    bounded(55, "failed-login throttle", async {
        // First failure: an ordinary 530.
        let mut ftp = RawFtp::connect_explicit(addr, gw.tls()).await;
        assert_eq!(
            ftp.cmd(&format!("USER {TEST_USER}")).await.unwrap().code,
            331
        );
        let r = ftp.cmd("PASS wrong-1").await.unwrap();
        assert_eq!(r.code, 530, "PASS wrong-1: {r}");
        ftp.quit().await;

        // Second failure (max 2): the 530, then 421 and the connection is closed.
        let mut ftp = RawFtp::connect_explicit(addr, gw.tls()).await;
        assert_eq!(
            ftp.cmd(&format!("USER {TEST_USER}")).await.unwrap().code,
            331
        );
        let r = ftp.cmd("PASS wrong-2").await.unwrap();
        assert_eq!(r.code, 530, "PASS wrong-2: {r}");
        let r = ftp
            .read_reply()
            .await
            .expect("421 after the second failure");
        assert_eq!(r.code, 421, "after the second failure: {r}");
        ftp.expect_closed(Duration::from_secs(5))
            .await
            .expect("closed after 421");

        // Cool-down: even the right password gets no chance — 421 at connect.
        let mut raw = RawFtp::connect_from(Some(LO1), addr).await.unwrap();
        assert_eq!(raw.greeting.code, 421, "during cool-down: {}", raw.greeting);
        raw.expect_closed(Duration::from_secs(5)).await.unwrap();
        let o = gw.curl("edge").list().await;
        o.assert_failed();

        // Another address is not affected.
        let mut ftp = session(addr, Some(LO2), gw.tls(), TEST_USER).await;
        assert_eq!(
            sha256_bytes(&retr_from(&mut ftp, "file.bin", Some(LO2)).await),
            sha
        );
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 5. Per-IP session limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_session_limit() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 64 * KIB);
    let gw = single_gw(&vs, "", "limits: { max_sessions_per_ip: 2 }").await;
    let addr = gw.addr("edge");
    bounded(55, "per-IP session limit", async {
        let mut first = session(addr, None, gw.tls(), TEST_USER).await;
        let second = RawFtp::connect_from(None, addr).await.unwrap();
        assert_eq!(second.greeting.code, 220);

        // The third from the same address: 421.
        let mut third = RawFtp::connect_from(None, addr).await.unwrap();
        assert_eq!(
            third.greeting.code, 421,
            "third session: {}",
            third.greeting
        );
        third.expect_closed(Duration::from_secs(5)).await.unwrap();
        // Another address has its own count.
        let other = RawFtp::connect_from(Some(LO2), addr).await.unwrap();
        assert_eq!(other.greeting.code, 220);
        // The admitted sessions work.
        assert_eq!(sha256_bytes(&first.retr("file.bin").await), sha);

        // Closing one frees its slot once the session task ends.
        second.quit().await;
        let replacement = poll_greeting(None, addr, 220, Duration::from_secs(5)).await;
        assert_eq!(greeting(None, addr).await, Ok(421), "limit is 2 again");
        drop(replacement);
        assert_eq!(sha256_bytes(&first.retr("file.bin").await), sha);
        first.quit().await;
        drop(other);
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 6. In-process reload during a transfer; broken reloads change nothing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_during_transfer_and_refused_reloads() {
    let vs = Vsftpd::strict();
    let big = vs.make_file("big.bin", 64 * MIB);
    let small = vs.make_file("small.bin", 32 * KIB);
    let (dir, certs) = gw_dir(&[("vs", &vs)]);
    let edge = listener("edge", "127.0.0.1:0", "vs", "");
    let back = backend("vs", &vs);
    let v1 = config("", &[&edge], &[&back]);
    let v2 = config(
        "access:\n  - deny: [\"127.0.0.2/32\"]\n",
        &[&edge],
        &[&back],
    );
    let gw = Gw::start(dir, certs, &v1).await;
    let addr = gw.addr("edge");
    let out = gw.dir.path().join("big.out");
    bounded(58, "reload during transfer", async {
        assert_eq!(greeting(Some(LO2), addr).await, Ok(220), "before reload");

        // 64 MiB at 16 MB/s: about 4 s, so the reload lands mid-transfer.
        let curl = gw.curl("edge");
        let o = out.clone();
        let download =
            tokio::spawn(
                async move { curl_get(&curl, &["--limit-rate", "16M"], "big.bin", &o).await },
            );
        let t0 = Instant::now();
        while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < 2 * MIB as u64 {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "download did not start"
            );
            assert!(!download.is_finished(), "curl ended early");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gw.gw()
            .reload(gw.parse(&v2))
            .unwrap_or_else(|e| panic!("reload refused: {e:?}"));
        assert!(
            !download.is_finished(),
            "the download must still run when the reload is applied"
        );
        // New sessions see the new policy; the old one keeps going.
        assert_eq!(greeting(Some(LO2), addr).await, Ok(421), "after reload");
        let mut ftp = session(addr, None, gw.tls(), TEST_USER).await;
        assert_eq!(sha256_bytes(&ftp.retr("small.bin").await), small);
        ftp.quit().await;

        // Broken reload 1: a certificate that vanished after the config was loaded.
        let d = gw.dir.path();
        std::fs::copy(d.join("gw.pem"), d.join("gone.pem")).unwrap();
        std::fs::copy(d.join("gw.key"), d.join("gone.key")).unwrap();
        let v3 = config(
            "",
            &[&edge.replace("cert: gw.pem, key: gw.key", "cert: gone.pem, key: gone.key")],
            &[&back],
        );
        let cfg3 = gw.parse(&v3);
        std::fs::remove_file(d.join("gone.pem")).unwrap();
        let errs = gw
            .gw()
            .reload(cfg3)
            .expect_err("reload with a missing certificate must fail");
        assert!(
            errs.iter()
                .any(|e| e.to_string().contains("listeners[0].tls")),
            "errors: {errs:?}"
        );

        // Broken reload 2: a new listener on an address that is taken.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let extra = listener("extra", &taken.local_addr().unwrap().to_string(), "vs", "");
        let v4 = config("", &[&edge, &extra], &[&back]);
        let errs = gw
            .gw()
            .reload(gw.parse(&v4))
            .expect_err("reload onto a taken address must fail");
        assert!(
            errs.iter().any(|e| e.to_string().contains("cannot bind")),
            "errors: {errs:?}"
        );
        assert!(gw.gw().local_addr("extra").is_none());

        // The v2 policy is still in force.
        assert_eq!(gw.gw().config().access.len(), 1);
        assert_eq!(greeting(Some(LO2), addr).await, Ok(421), "old policy stays");
        let mut ftp = session(addr, Some(LO3), gw.tls(), TEST_USER).await;
        assert_eq!(
            sha256_bytes(&retr_from(&mut ftp, "small.bin", Some(LO3)).await),
            small
        );
        ftp.quit().await;

        let o = download.await.unwrap();
        o.assert_ok();
        assert_eq!(sha256_file(&out), big, "download across the reload");
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 7. Listeners added and removed by reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 200 * KIB);
    let (dir, certs) = gw_dir(&[("vs", &vs)]);
    let edge = listener("edge", "127.0.0.1:0", "vs", "");
    let old = listener("old", "127.0.0.1:0", "vs", "");
    // A concrete port: a port-0 listener cannot be added next to running port-0 ones
    // (see `reload_adds_port0_listener_beside_port0_listeners`).
    let new_port = free_port();
    let new = listener("new", &format!("127.0.0.1:{new_port}"), "vs", "");
    let back = backend("vs", &vs);
    let gw = Gw::start(dir, certs, &config("", &[&edge, &old], &[&back])).await;
    let old_addr = gw.addr("old");
    bounded(55, "listener add/remove", async {
        let mut on_old = session(old_addr, None, gw.tls(), TEST_USER).await;
        assert_eq!(sha256_bytes(&on_old.retr("file.bin").await), sha);
        assert!(gw.gw().local_addr("new").is_none());

        gw.gw()
            .reload(gw.parse(&config("", &[&edge, &new], &[&back])))
            .unwrap_or_else(|e| panic!("reload refused: {e:?}"));

        // The new listener accepts and serves.
        let new_addr = gw.addr("new");
        assert_eq!(new_addr.port(), new_port);
        let mut on_new = session(new_addr, None, gw.tls(), TEST_USER).await;
        assert_eq!(sha256_bytes(&on_new.retr("file.bin").await), sha);
        on_new.quit().await;
        // The removed one refuses new connections ...
        assert!(gw.gw().local_addr("old").is_none());
        poll_refused(old_addr, Duration::from_secs(5)).await;
        // ... while its session goes on.
        let r = on_old.cmd("NOOP").await.unwrap();
        assert_eq!(r.code, 200, "NOOP on the removed listener's session: {r}");
        assert_eq!(sha256_bytes(&on_old.retr("file.bin").await), sha);
        on_old.quit().await;
        // The unchanged listener kept its address.
        let mut ftp = session(gw.addr("edge"), None, gw.tls(), TEST_USER).await;
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

/// `start` and `check` accept several listeners on `127.0.0.1:0` (port 0 is exempt from
/// the distinct-bind rule), and `reload` must too: port 0 is never "held" by a running
/// listener (regression test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_port0_listener_beside_port0_listeners() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 64 * KIB);
    let (dir, certs) = gw_dir(&[("vs", &vs)]);
    let edge = listener("edge", "127.0.0.1:0", "vs", "");
    let new = listener("new", "127.0.0.1:0", "vs", "");
    let back = backend("vs", &vs);
    let gw = Gw::start(dir, certs, &config("", &[&edge], &[&back])).await;
    let both = config("", &[&edge, &new], &[&back]);
    // The same config starts fine as a fresh gateway ...
    let (dir2, certs2) = gw_dir(&[("vs", &vs)]);
    Gw::start(dir2, certs2, &both).await.shutdown().await;
    bounded(30, "port-0 listener on reload", async {
        // ... but is refused as a reload.
        gw.gw()
            .reload(gw.parse(&both))
            .unwrap_or_else(|e| panic!("reload refused: {e:?}"));
        let mut ftp = session(gw.addr("new"), None, gw.tls(), TEST_USER).await;
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 8. SIGTERM drain of the binary

/// Writes a one-listener config for the binary (`top`, listener `edge`, backend `vs`) to
/// `dir/ftpsgate.yaml`; returns its path.
fn binary_config(dir: &Path, top: &str, vs: &Vsftpd, edge: &str) -> PathBuf {
    let yaml = format!("{top}listeners:\n{edge}backends:\n{}", backend("vs", vs));
    let path = dir.join("ftpsgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_transfer_and_exits_0() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("big16.bin", 16 * MIB);
    let (dir, certs, addr, edge) = binary_edge(&vs);
    let cfg = binary_config(dir.path(), "", &vs, &edge);
    let mut p = Proc::run(&cfg);
    let out = dir.path().join("big16.out");
    bounded(58, "SIGTERM drain", async {
        p.wait_ready(addr).await;
        let tls = certs.client_config();
        let mut idle = session(addr, None, tls.clone(), TEST_USER).await;

        // 16 MiB at 2 MB/s: about 8 s.
        let curl = Curl::new(addr, Security::Explicit, Some(&certs.ca_pem));
        let o = out.clone();
        let download =
            tokio::spawn(
                async move { curl_get(&curl, &["--limit-rate", "2M"], "big16.bin", &o).await },
            );
        let t0 = Instant::now();
        while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < MIB as u64 {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "download did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.signal("TERM");

        // The idle session is told 421 and closed; no new connections.
        let r = idle.read_reply().await.expect("421 to the idle session");
        assert_eq!(r.code, 421, "idle session on SIGTERM: {r}");
        idle.expect_closed(Duration::from_secs(5)).await.unwrap();
        poll_refused(addr, Duration::from_secs(5)).await;
        assert!(!download.is_finished(), "download ended before the drain");

        // The transfer completes, then the process exits 0.
        let o = download.await.unwrap();
        o.assert_ok();
        assert_eq!(sha256_file(&out), sha, "download during drain");
        let status = p.wait_exit(Duration::from_secs(15)).await;
        let status = status.unwrap_or_else(|| panic!("still running after drain\n{}", p.log()));
        assert_eq!(status.code(), Some(0), "exit status\n{}", p.log());
        assert!(
            p.log().contains("drained: all sessions finished"),
            "{}",
            p.log()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_grace_cuts_slow_transfer() {
    let vs = Vsftpd::strict();
    vs.make_file("big16.bin", 16 * MIB);
    let (dir, certs, addr, edge) = binary_edge(&vs);
    let cfg = binary_config(dir.path(), "shutdown: { grace: 1s }\n", &vs, &edge);
    let mut p = Proc::run(&cfg);
    let out = dir.path().join("big16.out");
    bounded(58, "SIGTERM grace", async {
        p.wait_ready(addr).await;
        // 16 MiB at 1 MB/s: about 16 s, far beyond the grace.
        let curl = Curl::new(addr, Security::Explicit, Some(&certs.ca_pem));
        let o = out.clone();
        let download =
            tokio::spawn(
                async move { curl_get(&curl, &["--limit-rate", "1M"], "big16.bin", &o).await },
            );
        let t0 = Instant::now();
        while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) < MIB as u64 {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "download did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let term = Instant::now();
        p.signal("TERM");
        let status = p.wait_exit(Duration::from_secs(20)).await;
        let status =
            status.unwrap_or_else(|| panic!("still running 20 s after SIGTERM\n{}", p.log()));
        assert_eq!(status.code(), Some(0), "exit status\n{}", p.log());
        assert!(term.elapsed() < Duration::from_secs(20));
        assert!(
            p.log().contains("drain deadline passed"),
            "log:\n{}",
            p.log()
        );
        let o = download.await.unwrap();
        o.assert_failed();
        let got = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        assert!(
            got < 16 * MIB as u64,
            "the cut transfer got all {got} bytes: {o}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 9. SIGHUP and file-watch reload of the binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_watch_reload_the_policy_file() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 128 * KIB);
    let (dir, certs, addr, edge) = binary_edge(&vs);
    let deny2 = "access:\n  - deny: [\"127.0.0.2/32\"]\n";
    let watch = "reload: { watch: true, interval: 1s }\n";
    let cfg = binary_config(dir.path(), "", &vs, &edge);
    let write = |top: &str| {
        binary_config(dir.path(), top, &vs, &edge);
    };
    let mut p = Proc::run(&cfg);
    let out = dir.path().join("out.bin");
    bounded(58, "SIGHUP / watch reload", async {
        p.wait_ready(addr).await;
        assert_eq!(greeting(Some(LO2), addr).await, Ok(220), "at start");

        // SIGHUP applies an edited file.
        write(deny2);
        p.signal("HUP");
        poll_greeting(Some(LO2), addr, 421, Duration::from_secs(10)).await;
        let curl = Curl::new(addr, Security::Explicit, Some(&certs.ca_pem));
        curl_get(&curl, &[], "file.bin", &out).await.assert_ok();
        assert_eq!(sha256_file(&out), sha);

        // A broken file on SIGHUP keeps the running policy.
        let path = dir.path().join("ftpsgate.yaml");
        std::fs::write(&path, "listeners: [ { name: edge, bogus: 1 } ]\n").unwrap();
        p.signal("HUP");
        wait_log(&p, "reload refused", Duration::from_secs(10)).await;
        assert_eq!(greeting(Some(LO2), addr).await, Ok(421), "old policy kept");
        curl_get(&curl, &[], "file.bin", &out).await.assert_ok();
        assert_eq!(sha256_file(&out), sha);

        // SIGHUP to a file without the deny and with watch on ...
        write(watch);
        p.signal("HUP");
        poll_greeting(Some(LO2), addr, 220, Duration::from_secs(10)).await;
        // ... then an edit alone is picked up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&format!("{watch}{deny2}"));
        poll_greeting(Some(LO2), addr, 421, Duration::from_secs(10)).await;
        let mut ftp = session(addr, Some(LO3), certs.client_config(), TEST_USER).await;
        assert_eq!(
            sha256_bytes(&retr_from(&mut ftp, "file.bin", Some(LO3)).await),
            sha
        );
        ftp.quit().await;
        assert!(
            p.log().contains("configuration files changed"),
            "log:\n{}",
            p.log()
        );

        p.signal("TERM");
        let status = p.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.log());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_on_included_file_change() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 64 * KIB);
    let (dir, certs, addr, edge) = binary_edge(&vs);
    let acl = dir.path().join("acl.yaml");
    std::fs::write(&acl, "access:\n  - deny: [\"127.0.0.3/32\"]\n").unwrap();
    let cfg = binary_config(
        dir.path(),
        "include: [\"acl.yaml\"]\nreload: { watch: true, interval: 1s }\n",
        &vs,
        &edge,
    );
    let mut p = Proc::run(&cfg);
    bounded(45, "watch on an included file", async {
        p.wait_ready(addr).await;
        assert_eq!(greeting(Some(LO3), addr).await, Ok(421));
        assert_eq!(greeting(Some(LO2), addr).await, Ok(220));
        // Only the included file changes.
        std::fs::write(&acl, "access:\n  - deny: [\"127.0.0.2/32\"]\n").unwrap();
        poll_greeting(Some(LO2), addr, 421, Duration::from_secs(10)).await;
        let mut ftp = session(addr, Some(LO3), certs.client_config(), TEST_USER).await;
        assert_eq!(
            sha256_bytes(&retr_from(&mut ftp, "file.bin", Some(LO3)).await),
            sha
        );
        ftp.quit().await;
        // A broken included file is not applied.
        std::fs::write(&acl, "access:\n  - deny: [\"127.0.0.300/32\"]\n").unwrap();
        wait_log(&p, "reload refused", Duration::from_secs(10)).await;
        assert_eq!(greeting(Some(LO2), addr).await, Ok(421), "old policy kept");
        assert_eq!(greeting(Some(LO3), addr).await, Ok(220), "old policy kept");
        p.signal("TERM");
        let status = p.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.log());
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 10. `check` on broken and valid policies

fn check(path: &Path, print: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config"]).arg(path);
    if print {
        cmd.arg("--print");
    }
    let out = cmd.output().expect("run ftpsgate check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_reports_broken_policies() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let cases: &[(&str, &[&str])] = &[
        (
            "bad_cidr.yaml",
            &[
                "access[0].allow[0] (line 3): \"10.0.0.0/33\" is not a CIDR network",
                "listeners[0].access[0].deny[0] (line 11): \"not-a-net\" is not a CIDR network",
            ],
        ),
        (
            "undefined_route_backend.yaml",
            &["listeners[0].routes[0].backends[1] (line 10): backend \"nowhere\" is not defined"],
        ),
        (
            "allow_and_deny.yaml",
            &["access[0] (line 3): a rule has allow or deny, not both"],
        ),
        (
            "include_cycle.yaml",
            &[
                "include[0]: include cycle:",
                "include_cycle_b.yaml -> include_cycle.yaml",
            ],
        ),
        (
            "unknown_key.yaml",
            &["unknown_key.yaml:3:3: unknown field `max_sesions`"],
        ),
        (
            "bad_command_filter.yaml",
            &[
                "listeners[0].routes[0].commands (line 13): allow and deny cannot both be set",
                "listeners[0].limits.max_sessions_per_ip (line 9): \"0\" must be at least 1",
            ],
        ),
    ];
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let (code, out) = check(&path, false);
        assert_eq!(code, Some(1), "{}: exit code\n{out}", path.display());
        assert!(out.contains("error: "), "{}: {out}", path.display());
        let name = path.file_name().unwrap().to_str().unwrap();
        if let Some((_, wanted)) = cases.iter().find(|(n, _)| *n == name) {
            seen += 1;
            for w in *wanted {
                assert!(out.contains(w), "{name}: missing {w:?} in\n{out}");
            }
        }
    }
    assert_eq!(seen, cases.len(), "every expected fixture exists");
}

#[test]
fn check_print_shows_resolved_routes() {
    let dir = temp_dir("check");
    let d = dir.path();
    std::fs::write(
        d.join("more.yaml"),
        r#"listeners:
  - name: partners
    bind: "127.0.0.1:2022"
    tls: { mode: none }
    passive: { ports: "50100-50199" }
    backend: srv-b
    access: [ { allow: ["198.51.100.0/24"] } ]
"#,
    )
    .unwrap();
    std::fs::write(
        d.join("top.yaml"),
        r#"include: ["more.yaml"]
access:
  - deny: ["127.0.0.2"]
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls: { mode: none }
    passive: { ports: "50000-50099" }
    backend: srv-a
    user_at_backend: true
    routes:
      - { user: "archive-*", backends: [srv-b] }
      - user: "ro-*"
        backends: [srv-a, srv-b]
        balance: least-connections
        commands: { deny: [stor, DELE] }
backends:
  - { name: srv-a, address: "127.0.0.1:2120" }
  - { name: srv-b, address: "127.0.0.1:2121" }
"#,
    )
    .unwrap();
    let (code, out) = check(&d.join("top.yaml"), true);
    assert_eq!(code, Some(0), "{out}");
    for w in [
        "user: \"archive-*\"",
        "user: \"ro-*\"",
        "LeastConnections",
        "RoundRobin",
        "\"STOR\"",
        "\"DELE\"",
        "user_at_backend: true",
        "name: \"partners\"",
        "127.0.0.2/32",
        "198.51.100.0/24",
        "more.yaml",
        "top.yaml: ok",
    ] {
        assert!(out.contains(w), "check --print lacks {w:?}:\n{out}");
    }
}

// ---------------------------------------------------------------------------------------
// 11. SNI certificate selection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", 100 * KIB);
    let (dir, certs) = gw_dir(&[("vs", &vs)]);
    let alt = Certs::generate_for(dir.path(), "alt", &["alt.test"]);
    let edge = listener("edge", "127.0.0.1:0", "vs", "").replace(
        "cert: gw.pem, key: gw.key }",
        "cert: gw.pem, key: gw.key, sni: [ { names: [\"ALT.test\"], cert: alt.pem, key: alt.key } ] }",
    );
    assert!(edge.contains("sni:"));
    let gw = Gw::start(dir, certs, &config("", &[&edge], &[&backend("vs", &vs)])).await;
    let addr = gw.addr("edge");
    bounded(55, "SNI", async {
        // "alt.test": the alt certificate, verified against the alt CA only.
        for name in ["alt.test", "Alt.Test"] {
            let mut ftp = RawFtp::connect(addr).await.unwrap();
            ftp.set_server_name(name);
            let r = ftp
                .auth_tls(alt.client_config())
                .await
                .expect("alt handshake");
            assert_eq!(r.code, 234);
            let chain = ftp.peer_certificates().expect("TLS");
            assert_eq!(sha256_bytes(&chain[0]), alt.leaf_sha256_hex, "{name}");
            ftp.login(TEST_USER, TEST_PASS).await;
            ftp.prot(true).await;
            ftp.binary().await;
            assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
            ftp.quit().await;
        }

        // "localhost": the default certificate.
        let mut ftp = RawFtp::connect(addr).await.unwrap();
        let r = ftp.auth_tls(gw.tls()).await.expect("default handshake");
        assert_eq!(r.code, 234);
        let chain = ftp.peer_certificates().expect("TLS");
        assert_eq!(sha256_bytes(&chain[0]), gw.certs.leaf_sha256_hex);
        ftp.login(TEST_USER, TEST_PASS).await;
        ftp.prot(true).await;
        ftp.binary().await;
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        ftp.quit().await;

        // "alt.test" is not served the default certificate: a client trusting only the
        // default CA fails.
        let mut ftp = RawFtp::connect(addr).await.unwrap();
        ftp.set_server_name("alt.test");
        assert!(
            ftp.auth_tls(gw.tls()).await.is_err(),
            "alt.test must not get the default certificate"
        );
        // curl (SNI "localhost" is not sent for an IP; no SNI): default certificate.
        let out = gw.dir.path().join("out.bin");
        curl_get(&gw.curl("edge"), &[], "file.bin", &out)
            .await
            .assert_ok();
        assert_eq!(sha256_file(&out), sha);
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 12. Bandwidth cap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_cap_keeps_data_intact() {
    let vs = Vsftpd::strict();
    let sha = vs.make_file("file.bin", MIB);
    let gw = single_gw(&vs, "", "limits: { bandwidth: \"512KiB\" }").await;
    let out = gw.dir.path().join("out.bin");
    let up = gw.dir.path().join("up.bin");
    let up_sha = make_file(&up, 600 * KIB);
    bounded(55, "bandwidth cap", async {
        let t0 = Instant::now();
        curl_get(&gw.curl("edge"), &[], "file.bin", &out)
            .await
            .assert_ok();
        assert_eq!(sha256_file(&out), sha);
        eprintln!("1 MiB at 512 KiB/s took {:?}", t0.elapsed());
        gw.curl("edge").put(&up, "up.bin").await.assert_ok();
        assert_eq!(sha256_file(&vs.root().join("up.bin")), up_sha);
    })
    .await;
    gw.shutdown().await;
}
