//! SECURITY.md, "Login and command filter": the promises that keep a client from
//! talking its way around the policy (issue 17 A1–A4 and B5–B6, issue 23 item 4),
//! each proved against real vsftpd or, where a backend behaviour vsftpd lacks is
//! needed, against `common::scripted` — a backend that records every byte it gets
//! and ends lines at a bare CR as some servers do.
//!
//! `RUST_LOG=ftpsgate=debug` prints the in-process gateway's log.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::harness::{bounded, init_logs, PortRanges};
use common::raw::RawFtp;
use common::scripted::{Script, ScriptedBackend};
use common::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// Passive ranges for this binary's gateways, away from every other test binary's.
fn own_range(width: u16) -> (u16, u16) {
    static RANGES: PortRanges = PortRanges::new(2200, 2999);
    RANGES.take(width)
}

/// A read-only route for the test user: nothing that changes the backend's files.
const READ_ONLY: &str = "routes:\n  - { user: \"ftpsgatetest\", backends: [vs], commands: { allow: [RETR, LIST, NLST, MLSD, SIZE, MDTM, MLST, CWD, CDUP, PWD, STAT] } }";

/// Listener `edge` on 127.0.0.1:0 with TLS `tls` (further listener keys `extra`, one
/// per line) in front of backend `vs` at `addr` with TLS `backend_tls`; `top` are
/// global sections.
fn config(tls: &str, addr: SocketAddr, backend_tls: &str, top: &str, extra: &str) -> String {
    let (a, b) = own_range(10);
    let mut s = format!(
        "{top}listeners:\n  - name: edge\n    bind: \"127.0.0.1:0\"\n    tls: {tls}\n    passive: {{ ports: \"{a}-{b}\", advertise: \"127.0.0.1\" }}\n    backend: vs\n"
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str(&format!(
        "backends:\n  - name: vs\n    address: \"{addr}\"\n    tls: {backend_tls}\n"
    ));
    s
}

/// An in-process gateway with its config dir.
struct Gw {
    gw: Option<ftpsgate::Gateway>,
    dir: tempfile::TempDir,
    certs: Certs,
}

impl Gw {
    /// Explicit FTPS in front of strict vsftpd.
    async fn vsftpd(vs: &Vsftpd, top: &str, extra: &str) -> Gw {
        Gw::explicit(vs.addr(), &vs.certs().ca_pem, top, extra).await
    }

    /// Explicit FTPS in front of an explicit-FTPS backend at `addr` signed by `ca`.
    async fn explicit(addr: SocketAddr, ca: &std::path::Path, top: &str, extra: &str) -> Gw {
        let yaml = config(
            "{ mode: explicit, cert: gw.pem, key: gw.key }",
            addr,
            "{ mode: explicit, ca: vs-ca.pem, server_name: localhost }",
            top,
            extra,
        );
        Gw::start(&yaml, Some(ca)).await
    }

    /// Plain FTP in front of a scripted backend (the raw client can send any byte).
    async fn scripted(b: &ScriptedBackend, top: &str, extra: &str) -> Gw {
        let yaml = config("{ mode: none }", b.addr, "{ mode: none }", top, extra);
        Gw::start(&yaml, None).await
    }

    async fn start(yaml: &str, backend_ca: Option<&std::path::Path>) -> Gw {
        init_logs();
        let dir = temp_dir("seclogin");
        let certs = Certs::generate(dir.path(), "gw");
        if let Some(ca) = backend_ca {
            std::fs::copy(ca, dir.path().join("vs-ca.pem")).unwrap();
        }
        let gw = start_gateway(yaml, dir.path()).await;
        Gw {
            gw: Some(gw),
            dir,
            certs,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw
            .as_ref()
            .unwrap()
            .local_addr("edge")
            .expect("listener edge is running")
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.certs.client_config()
    }

    /// AUTH TLS, login, PROT P, TYPE I.
    async fn session(&self) -> RawFtp {
        let mut ftp = RawFtp::connect_explicit(self.addr(), self.tls()).await;
        ftp.login(TEST_USER, TEST_PASS).await;
        ftp.prot(true).await;
        ftp.binary().await;
        ftp
    }

    /// A plain connection with USER sent (331), as an attacker parks it.
    async fn parked(&self, user: &str) -> RawFtp {
        let mut ftp = RawFtp::connect(self.addr()).await.expect("connect");
        assert_eq!(ftp.greeting.code, 220, "greeting: {}", ftp.greeting);
        let r = ftp.cmd(&format!("USER {user}")).await.unwrap();
        assert_eq!(r.code, 331, "USER: {r}");
        ftp
    }

    async fn shutdown(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown_with(Duration::from_secs(2)).await;
        }
    }
}

fn strict_vsftpd() -> Vsftpd {
    Vsftpd::start(VsftpdMode::Explicit {
        require_reuse: true,
    })
}

const THROTTLE_3: &str = "limits:\n  failed_logins: { max: 3, window: 60s, cooldown: 60s }\n";

/// Polls `path` until it contains `needle` (the transfer log is written as the
/// transfer ends, the test may read first).
async fn wait_file_contains(path: &std::path::Path, needle: &str) -> String {
    for _ in 0..50 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// A1. A second USER after login changes nothing until the backend says 230

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_user_refused_by_vsftpd_keeps_the_read_only_route() {
    let vs = strict_vsftpd();
    let sha = vs.make_file("file.bin", 64 * KIB);
    std::fs::create_dir(vs.root().join("keep")).unwrap();
    chown_to_test_user(&vs.root().join("keep"));
    let gw = Gw::vsftpd(
        &vs,
        "transfer_log: { path: xferlog, format: xferlog }\n",
        READ_ONLY,
    )
    .await;
    bounded(55, "second USER", async {
        let mut ftp = gw.session().await;
        // vsftpd keeps the first login and says so.
        let r = ftp.cmd("USER root").await.unwrap();
        assert_eq!(r.code, 530, "USER root: {r}");
        assert!(r.text.contains("Can't change"), "from vsftpd: {r}");
        // The read-only route still holds: the gateway refuses, vsftpd never sees them.
        for line in [
            "MKD newdir",
            "STOR x.bin",
            "DELE file.bin",
            "RMD keep",
            "XMKD d2",
        ] {
            let r = ftp.cmd(line).await.unwrap();
            assert_eq!(r.code, 550, "{line}: {r}");
        }
        assert!(!vs.root().join("newdir").exists());
        assert!(vs.root().join("file.bin").exists());
        assert!(vs.root().join("keep").exists());
        // PASS now is not a login: answered by the gateway, the session goes on.
        let r = ftp.cmd("PASS whatever").await.unwrap();
        assert_eq!(r.code, 230, "PASS after login: {r}");
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        ftp.quit().await;
        let log = vs.log();
        assert!(!log.contains("MKD newdir"), "vsftpd saw MKD:\n{log}");
        assert!(!log.contains("DELE file.bin"), "vsftpd saw DELE:\n{log}");
        // The transfer log names the user vsftpd has logged in, not the new name.
        let xferlog = wait_file_contains(&gw.dir.path().join("xferlog"), "file.bin").await;
        assert!(xferlog.contains(" ftpsgatetest "), "xferlog: {xferlog}");
        assert!(!xferlog.contains(" root "), "xferlog names root: {xferlog}");
    })
    .await;
    gw.shutdown().await;
}

/// A re-login the backend accepts (vsftpd: `USER` with the same name → 331, `PASS`
/// → 230) is a login like any other: its PASS is counted, but it is not a fresh login
/// and does not reset the failed-login count (issue 17 B5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relogin_on_a_logged_in_session_does_not_reset_the_throttle() {
    let vs = strict_vsftpd();
    let gw = Gw::vsftpd(&vs, THROTTLE_3, "").await;
    bounded(55, "re-login and the throttle", async {
        let mut good = gw.session().await;
        for i in 1..=2 {
            let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.tls()).await;
            assert_eq!(
                ftp.cmd(&format!("USER {TEST_USER}")).await.unwrap().code,
                331
            );
            let r = ftp.cmd(&format!("PASS wrong-{i}")).await.unwrap();
            assert_eq!(r.code, 530, "wrong-{i}: {r}");
            ftp.quit().await;
        }
        // vsftpd: "331 Any password will do." then "230 Already logged in."
        let r = good.cmd(&format!("USER {TEST_USER}")).await.unwrap();
        assert_eq!(r.code, 331, "USER again: {r}");
        let r = good.cmd("PASS not-the-password").await.unwrap();
        assert_eq!(r.code, 230, "PASS again: {r}");
        // Third failure: the count was not reset, so this one starts the cool-down.
        let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.tls()).await;
        assert_eq!(
            ftp.cmd(&format!("USER {TEST_USER}")).await.unwrap().code,
            331
        );
        let r = ftp.cmd("PASS wrong-3").await.unwrap();
        assert_eq!(r.code, 530, "wrong-3: {r}");
        let r = ftp.read_reply().await.expect("421 after the third failure");
        assert_eq!(r.code, 421, "after wrong-3: {r}");
        let raw = RawFtp::connect(gw.addr()).await.unwrap();
        assert_eq!(raw.greeting.code, 421, "cool-down: {}", raw.greeting);
        // The logged-in session itself goes on.
        assert_eq!(good.cmd("NOOP").await.unwrap().code, 200);
        good.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// A2. REIN changes the state only on the backend's 220

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rein_refused_by_vsftpd_changes_nothing() {
    let vs = strict_vsftpd();
    let sha = vs.make_file("file.bin", 32 * KIB);
    let gw = Gw::vsftpd(&vs, "", READ_ONLY).await;
    bounded(55, "REIN with vsftpd", async {
        let mut ftp = gw.session().await;
        let r = ftp.cmd("REIN").await.unwrap();
        assert_eq!(r.code, 502, "vsftpd does not implement REIN: {r}");
        let r = ftp.cmd("DELE file.bin").await.unwrap();
        assert_eq!(r.code, 550, "the filter is still on: {r}");
        assert!(vs.root().join("file.bin").exists());
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rein_honoured_by_the_backend_logs_out() {
    let back = ScriptedBackend::start(Script {
        rein: true,
        ..Script::default()
    })
    .await;
    let gw = Gw::scripted(&back, "", "").await;
    bounded(30, "REIN honoured", async {
        let mut ftp = gw.parked("alice").await;
        assert_eq!(ftp.cmd("PASS right").await.unwrap().code, 230);
        assert_eq!(ftp.cmd("DELE before").await.unwrap().code, 250);
        let r = ftp.cmd("REIN").await.unwrap();
        assert_eq!(r.code, 220, "REIN: {r}");
        // Logged out: only login-phase verbs pass, from the gateway's 530.
        let r = ftp.cmd("DELE after").await.unwrap();
        assert_eq!(r.code, 530, "DELE after REIN: {r}");
        assert!(!back.saw("DELE after"), "{:?}", back.commands());
        // A new login works.
        assert_eq!(ftp.cmd("USER bob").await.unwrap().code, 331);
        assert_eq!(ftp.cmd("PASS right").await.unwrap().code, 230);
        assert_eq!(ftp.cmd("DELE again").await.unwrap().code, 250);
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// A3. Before a successful PASS only login-phase verbs reach the backend

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_login_only_login_phase_verbs_reach_the_backend() {
    let back = ScriptedBackend::start(Script::default()).await;
    let gw = Gw::scripted(&back, "", "").await;
    bounded(30, "pre-login verbs", async {
        let mut ftp = gw.parked("x").await;
        // CVE-2015-3306 was ProFTPD's pre-auth SITE CPFR/CPTO.
        for line in [
            "DELE secret",
            "SITE CPFR /etc/passwd",
            "SITE CPTO /tmp/x",
            "CWD /",
            "MKD d",
        ] {
            let r = ftp.cmd(line).await.unwrap();
            assert_eq!(r.code, 530, "{line}: {r}");
        }
        for line in ["NOOP", "HELP", "SYST"] {
            let r = ftp.cmd(line).await.unwrap();
            assert!(r.code < 400, "{line}: {r}");
        }
        let r = ftp.cmd("PASS wrong").await.unwrap();
        assert_eq!(r.code, 530, "wrong password: {r}");
        let r = ftp.cmd("DELE secret").await.unwrap();
        assert_eq!(r.code, 530, "after a failed PASS: {r}");
        ftp.quit().await;
        let seen = back.commands();
        assert!(!back.saw("DELE"), "DELE reached the backend: {seen:?}");
        assert!(!back.saw("SITE"), "SITE reached the backend: {seen:?}");
        assert!(!back.saw("CWD") && !back.saw("MKD"), "{seen:?}");
        assert!(back.saw("NOOP") && back.saw("HELP"), "{seen:?}");
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// A4. The backend receives the checked command, rebuilt

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_line_is_the_canonical_checked_command() {
    let back = ScriptedBackend::start(Script::default()).await;
    let gw = Gw::scripted(
        &back,
        "",
        "routes:\n  - { user: \"alice\", backends: [vs], commands: { deny: [DELE] } }",
    )
    .await;
    bounded(30, "canonical forwarding", async {
        let mut ftp = gw.parked("alice").await;
        assert_eq!(ftp.cmd("PASS right").await.unwrap().code, 230);
        // IAC WILL <CR>: the check strips the TELNET sequence; a raw forward would
        // hand a CR-ending backend a second, unchecked command ("DELE x").
        ftp.send_raw(b"SITE CHMOD 644 a\xff\xfb\rDELE x\r\n")
            .await
            .unwrap();
        let r = ftp.read_reply().await.unwrap();
        assert_eq!(r.code, 250, "SITE: {r}");
        // IAC DO <NUL>, and a lower-case verb.
        ftp.send_raw(b"site exec a\xff\xfd\0b\r\n").await.unwrap();
        assert_eq!(ftp.read_reply().await.unwrap().code, 250);
        ftp.send_raw(b"noop\r\n").await.unwrap();
        assert_eq!(ftp.read_reply().await.unwrap().code, 200);
        // A literal 0xFF (IAC IAC) stays escaped toward the backend.
        ftp.send_raw(b"MDTM \xff\xffname\r\n").await.unwrap();
        assert_eq!(ftp.read_reply().await.unwrap().code, 200);
        // The denied verb stays denied, however it is dressed.
        ftp.send_raw(b"d\xff\xfb\xffELE x\r\n").await.unwrap();
        assert_eq!(ftp.read_reply().await.unwrap().code, 550);
        ftp.quit().await;
        let got = back.received();
        let text = String::from_utf8_lossy(&got);
        let want: &[&[u8]] = &[
            b"SITE CHMOD 644 aDELE x\r\n",
            b"SITE exec ab\r\n",
            b"NOOP\r\n",
            b"MDTM \xff\xffname\r\n",
        ];
        for w in want {
            assert!(
                got.windows(w.len()).any(|win| win == *w),
                "backend did not get {:?}: {text:?}",
                String::from_utf8_lossy(w)
            );
        }
        // Every CR the backend got ends a line; no NUL; nothing of DELE on its own.
        for (i, b) in got.iter().enumerate() {
            if *b == b'\r' {
                assert_eq!(got.get(i + 1), Some(&b'\n'), "bare CR at {i}: {text:?}");
            }
            assert_ne!(*b, 0, "NUL reached the backend: {text:?}");
        }
        assert!(
            !back
                .commands()
                .iter()
                .any(|c| c.to_ascii_uppercase().starts_with("DELE")),
            "{:?}",
            back.commands()
        );
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// B5 and issue 23 item 4. The throttle counts attempts; PASS after login is ours

/// Three `PASS x` after a good login, behind vsftpd (which would answer `230 Already
/// logged in` and so reset a reply-counting throttle): the gateway answers them, the
/// session goes on, and a new login from the same address succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_after_login_is_answered_by_the_gateway_vsftpd() {
    let vs = strict_vsftpd();
    let sha = vs.make_file("file.bin", 16 * KIB);
    let gw = Gw::vsftpd(&vs, THROTTLE_3, "").await;
    bounded(55, "PASS after login (vsftpd)", async {
        let mut ftp = gw.session().await;
        for _ in 0..3 {
            let r = ftp.cmd("PASS x").await.unwrap();
            assert_eq!(r.code, 230, "PASS x: {r}");
            assert!(r.text.contains("Already logged in"), "{r}");
        }
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        let mut other = gw.session().await;
        assert_eq!(sha256_bytes(&other.retr("file.bin").await), sha);
        other.quit().await;
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

/// The same behind real pure-ftpd, which answers such a `PASS` with `530 We can't do
/// that in the current session`: a reply-counting throttle cut the session after three
/// and locked the address out (issue 23 item 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_after_login_is_answered_by_the_gateway_pureftpd() {
    let pure = common::pureftpd::PureFtpd::start();
    let sha = pure.make_file("file.bin", 16 * KIB);
    let gw = Gw::explicit(pure.addr(), &pure.certs().ca_pem, THROTTLE_3, "").await;
    bounded(55, "PASS after login (pure-ftpd)", async {
        let mut ftp = gw.session().await;
        for _ in 0..3 {
            let r = ftp.cmd("PASS x").await.unwrap();
            assert_eq!(r.code, 230, "PASS x: {r}");
        }
        assert_eq!(
            ftp.cmd("NOOP").await.unwrap().code,
            200,
            "the session goes on"
        );
        assert_eq!(sha256_bytes(&ftp.retr("file.bin").await), sha);
        let mut other = gw.session().await;
        assert_eq!(sha256_bytes(&other.retr("file.bin").await), sha);
        other.quit().await;
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

/// The same behind a backend answering as pure-ftpd does (`530 We can't do that in
/// the current session`): with a reply-counting throttle three of them cut the
/// session and lock the address out. The backend never sees those PASS lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_after_login_is_answered_by_the_gateway_pure_ftpd_style() {
    let back = ScriptedBackend::start(Script {
        pass_after_login: "530 We can't do that in the current session.",
        ..Script::default()
    })
    .await;
    let gw = Gw::scripted(&back, THROTTLE_3, "").await;
    bounded(30, "PASS after login (pure-ftpd style)", async {
        let mut ftp = gw.parked("alice").await;
        assert_eq!(ftp.cmd("PASS right").await.unwrap().code, 230);
        for _ in 0..3 {
            let r = ftp.cmd("PASS x").await.unwrap();
            assert_eq!(r.code, 230, "PASS x: {r}");
        }
        assert_eq!(
            back.passwords(),
            1,
            "only the login's PASS reached the backend"
        );
        assert_eq!(
            ftp.cmd("NOOP").await.unwrap().code,
            200,
            "the session goes on"
        );
        let mut again = gw.parked("alice").await;
        assert_eq!(
            again.cmd("PASS right").await.unwrap().code,
            230,
            "no lock-out"
        );
        again.quit().await;
        ftp.quit().await;
    })
    .await;
    gw.shutdown().await;
}

/// Sessions parked after `USER` that send `PASS` together: at most the budget
/// (`max`) reaches the backend; the rest are refused at once. During the cool-down
/// that follows, a parked session's `PASS` — even the right one — is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_sessions_share_the_attempt_budget() {
    let back = ScriptedBackend::start(Script {
        pass_delay: Duration::from_millis(800),
        ..Script::default()
    })
    .await;
    let gw = Gw::scripted(&back, THROTTLE_3, "").await;
    bounded(40, "parked sessions", async {
        let mut burst = Vec::new();
        for _ in 0..8 {
            burst.push(gw.parked("alice").await);
        }
        let mut late = gw.parked("alice").await;
        let guesses = burst.into_iter().enumerate().map(|(i, mut ftp)| {
            tokio::spawn(async move {
                let r = ftp.cmd(&format!("PASS guess-{i}")).await.unwrap();
                r.code
            })
        });
        let mut codes = Vec::new();
        for g in guesses {
            codes.push(g.await.unwrap());
        }
        codes.sort_unstable();
        assert_eq!(
            back.passwords(),
            3,
            "guesses that reached the backend: {codes:?}"
        );
        assert_eq!(codes, vec![421, 421, 421, 421, 421, 530, 530, 530]);
        // Cool-down: the right password from a parked session is refused unsent.
        let r = late.cmd("PASS right").await.unwrap();
        assert_eq!(r.code, 421, "PASS during the cool-down: {r}");
        late.expect_closed(Duration::from_secs(5)).await.unwrap();
        assert_eq!(back.passwords(), 3);
        let raw = RawFtp::connect(gw.addr()).await.unwrap();
        assert_eq!(raw.greeting.code, 421, "new connection: {}", raw.greeting);
    })
    .await;
    gw.shutdown().await;
}

/// A `PASS` whose answer never comes (the session ends first) has still made its
/// guess: it ends as a failure, not as nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_without_an_answer_still_counts() {
    let back = ScriptedBackend::start(Script {
        pass_delay: Duration::from_secs(3600),
        ..Script::default()
    })
    .await;
    let gw = Gw::scripted(
        &back,
        &format!("{THROTTLE_3}timeouts: {{ login: 2s }}\n"),
        "",
    )
    .await;
    bounded(30, "unanswered PASS", async {
        let mut parked = Vec::new();
        for i in 0..3 {
            let mut ftp = gw.parked("alice").await;
            ftp.send_raw(format!("PASS guess-{i}\r\n").as_bytes())
                .await
                .unwrap();
            parked.push(ftp);
        }
        // A fourth guess while three are in flight is refused unsent.
        let mut fourth = gw.parked("alice").await;
        assert_eq!(fourth.cmd("PASS guess-3").await.unwrap().code, 421);
        for mut ftp in parked {
            let r = ftp.read_reply().await.expect("421 at the login timeout");
            assert_eq!(r.code, 421, "{r}");
        }
        assert_eq!(back.passwords(), 3);
        let raw = RawFtp::connect(gw.addr()).await.unwrap();
        assert_eq!(
            raw.greeting.code, 421,
            "three unanswered guesses start the cool-down"
        );
    })
    .await;
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// B6. One IPv6 prefix for session limits and the throttle, PROXY addresses included

/// A PROXY v2 header for a TCP/IPv6 client `src` (to a made-up `[2001:db8::ffff]:21`).
/// Loopback cannot own a /64, so the balancer's header presents the clients.
fn proxy_v2_v6(src: std::net::Ipv6Addr, port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x21); // AF_INET6, STREAM
    h.extend_from_slice(&36u16.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(
        &"2001:db8::ffff"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&21u16.to_be_bytes());
    h
}

/// Connects through the "balancer" (127.0.0.1, allowed by `proxy_protocol`) as `src`.
async fn as_v6(gw: &Gw, src: &str) -> RawFtp {
    static PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(40000);
    let port = PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let header = proxy_v2_v6(src.parse().unwrap(), port);
    RawFtp::connect_with_preamble(None, gw.addr(), &header)
        .await
        .unwrap_or_else(|e| panic!("connect as {src}: {e}"))
}

const BEHIND_BALANCER: &str = "proxy_protocol: { from: [\"127.0.0.0/8\"] }";

/// `max_sessions_per_ip: 2` holds for a whole /64 by default (six addresses of one
/// /64 used to pass it), and for a whole /56 with `ipv6_prefix: 56`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_session_limit_counts_the_prefix() {
    let back = ScriptedBackend::start(Script::default()).await;
    for (prefix, same, other) in [
        (
            "",
            ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"],
            "2001:db8:1:3::1",
        ),
        (
            "  ipv6_prefix: 56\n",
            ["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:ff::1"],
            "2001:db8:1:100::1",
        ),
    ] {
        let top = format!("limits:\n  max_sessions_per_ip: 2\n{prefix}");
        let gw = Gw::scripted(&back, &top, BEHIND_BALANCER).await;
        bounded(30, "IPv6 session limit", async {
            let first = as_v6(&gw, same[0]).await;
            let second = as_v6(&gw, same[1]).await;
            assert_eq!((first.greeting.code, second.greeting.code), (220, 220));
            let third = as_v6(&gw, same[2]).await;
            assert_eq!(
                third.greeting.code, 421,
                "{prefix:?} third: {}",
                third.greeting
            );
            let elsewhere = as_v6(&gw, other).await;
            assert_eq!(
                elsewhere.greeting.code, 220,
                "{prefix:?} {other}: {}",
                elsewhere.greeting
            );
        })
        .await;
        gw.shutdown().await;
    }
}

/// The failed-login throttle keys on the same prefix, for PROXY clients too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_throttle_counts_the_prefix() {
    let back = ScriptedBackend::start(Script::default()).await;
    for (prefix, guessers, blocked, free) in [
        (
            "",
            ["2001:db8:1:2::1", "2001:db8:1:2::2"],
            "2001:db8:1:2::99",
            "2001:db8:1:3::1",
        ),
        (
            "  ipv6_prefix: 56\n",
            ["2001:db8:1:2::1", "2001:db8:1:3::1"],
            "2001:db8:1:4::1",
            "2001:db8:1:100::1",
        ),
    ] {
        let top =
            format!("limits:\n  failed_logins: {{ max: 2, window: 60s, cooldown: 60s }}\n{prefix}");
        let gw = Gw::scripted(&back, &top, BEHIND_BALANCER).await;
        bounded(30, "IPv6 throttle", async {
            for src in guessers {
                let mut ftp = as_v6(&gw, src).await;
                assert_eq!(ftp.greeting.code, 220, "{src}: {}", ftp.greeting);
                assert_eq!(ftp.cmd("USER alice").await.unwrap().code, 331);
                assert_eq!(ftp.cmd("PASS wrong").await.unwrap().code, 530);
                ftp.quit().await;
            }
            let raw = as_v6(&gw, blocked).await;
            assert_eq!(
                raw.greeting.code, 421,
                "{prefix:?} {blocked}: {}",
                raw.greeting
            );
            let mut ok = as_v6(&gw, free).await;
            assert_eq!(ok.greeting.code, 220, "{prefix:?} {free}: {}", ok.greeting);
            assert_eq!(ok.cmd("USER alice").await.unwrap().code, 331);
            assert_eq!(ok.cmd("PASS right").await.unwrap().code, 230);
            ok.quit().await;
        })
        .await;
        gw.shutdown().await;
    }
}
