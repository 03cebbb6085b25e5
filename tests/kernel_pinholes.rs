//! Kernel pinholes (`listeners[].passive.nftables`) in the real NAT lab (see
//! `tests/common/netns.rs`). Needs root, `ip netns` and `nft`.
//!
//! The gateway's namespace `gw` loads a ruleset that drops the passive range except for
//! the `client . port` elements ftpsgate adds to `inet ftpsgate pinholes`/`pinholes6`
//! before answering PASV/EPSV (and deletes when the data connection arrives or the
//! pinhole expires). A connection from any other host to a pinhole port is then dropped
//! by the kernel — it times out instead of reaching ftpsgate's user-space check.

mod common;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::*;
use common::*;
use tokio::io::AsyncReadExt;

const FILE_SIZE: usize = MIB + 12345;
const INSIDE_PASV: RangeInclusive<u16> = 50000..=50099;

/// The ruleset of the brief, plus `ct state established,related accept` (as in
/// `deploy/nftables/ftpsgate.nft`): ftpsgate deletes the element as soon as the data
/// connection arrives, so without it every later packet of that connection (the client's
/// data and ACKs, to a port in the range) would hit the drop.
const RULESET: &str = "table inet ftpsgate {
  set pinholes { type ipv4_addr . inet_service; flags timeout; }
  set pinholes6 { type ipv6_addr . inet_service; flags timeout; }
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 50000-50099 ct state established,related accept
    tcp dport 50000-50099 ip saddr . tcp dport @pinholes accept
    tcp dport 50000-50099 ip6 saddr . tcp dport @pinholes6 accept
    tcp dport 50000-50099 counter drop
  }
}
";

const NFTABLES: &str =
    r#"{ table: "inet ftpsgate", set: "pinholes", set6: "pinholes6", on_error: ON_ERROR }"#;

/// One listener for inside (198.19.0.10) and internet (203.0.113.1, DNAT 40000+i →
/// 50000+i) clients, one IPv6 listener on the same passive range (different address),
/// both with kernel pinholes; `on_error` is `fail` or `warn`; `timeouts` is YAML for the
/// `timeouts` map's body (may be empty).
fn config(on_error: &str, timeouts: &str) -> String {
    let nft = NFTABLES.replace("ON_ERROR", on_error);
    format!(
        r#"listeners:
  - name: edge
    bind: "0.0.0.0:21"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key, require: true }}
    passive:
      ports: "50000-50099"
      advertise:
        - networks: ["198.18.0.0/15", "2001:db8::/32"]
          address: "198.19.0.10"
        - address: "203.0.113.1"
          ports: "40000-40099"
      nftables: {nft}
    backend: srv
  - name: edge6
    bind: "[{GW_IP6}]:2121"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key, require: true }}
    passive:
      bind: "{GW_IP6}"
      ports: "50000-50099"
      nftables: {nft}
    backend: srv
backends:
  - name: srv
    address: "198.19.0.20:21"
    tls: {{ mode: explicit, ca: ca.pem, server_name: localhost }}
    data_mode: passive
timeouts: {{ {timeouts} }}
"#
    )
}

/// Lab + backend + gateway (see [`LabSite`]), with this file's failure context.
struct Site(LabSite);

impl std::ops::Deref for Site {
    type Target = LabSite;
    fn deref(&self) -> &LabSite {
        &self.0
    }
}

impl SiteChecks for Site {
    /// Gateway config + log, the ruleset state and the tail of the vsftpd log.
    fn ctx(&self) -> String {
        let tail = self.vsftpd_tail(40);
        let table = self
            .lab
            .exec("gw", "nft", &["list", "table", "inet", "ftpsgate"]);
        format!(
            "{}\n--- nft list table inet ftpsgate (gw):\n{}{}\n--- vsftpd log (last 40 lines):\n{tail}",
            self.gw.describe(),
            String::from_utf8_lossy(&table.stdout),
            String::from_utf8_lossy(&table.stderr),
        )
    }
}

impl Site {
    /// Lab with the ruleset loaded in `gw` (when `ruleset`), vsftpd, and the gateway.
    fn start(ruleset: bool, yaml: &str) -> Site {
        Site(LabSite::start(yaml, |lab| {
            if ruleset {
                lab.nft("gw", RULESET);
            }
        }))
    }

    /// `nft list set inet ftpsgate SET` in `gw`.
    fn set(&self, set: &str) -> String {
        self.lab
            .exec_ok("gw", "nft", &["list", "set", "inet", "ftpsgate", set])
    }

    /// Packets counted by the passive-range drop rule.
    fn drops(&self) -> u64 {
        let chain = self
            .lab
            .exec_ok("gw", "nft", &["list", "chain", "inet", "ftpsgate", "input"]);
        let line = chain
            .lines()
            .find(|l| l.contains("counter packets") && l.trim_end().ends_with("drop"))
            .unwrap_or_else(|| panic!("no drop counter in:\n{chain}"));
        let after = &line[line.find("counter packets ").unwrap() + "counter packets ".len()..];
        after
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad counter line {line:?}"))
    }

    /// Tears the lab down and checks no namespace of it is left.
    fn finish(self) {
        self.0.finish();
    }

    /// Downloads and uploads with curl (EPSV, then PASV) and lftp (PASV) from `lan`
    /// over `addr`; returns every passive port the gateway announced.
    async fn transfers(&self, addr: SocketAddr, tag: &str) -> Vec<u16> {
        let mut ports = Vec::new();
        let down = format!("{tag}-down.bin");
        let sha = self.vs.make_file(&down, FILE_SIZE);

        let what = format!("curl {tag}");
        let curl = NsCurl::new("lan", addr, Security::Explicit, self.gw.ca());
        let local = self.local(&format!("{tag}-curl.bin"));
        let got = curl.get(&self.lab, &down, &local).await;
        assert_ok(&got, self);
        self.check_download(&local, &sha, &what);
        let (up_local, up_sha) = self.upload_source(&format!("{tag}-curl-up.bin"), FILE_SIZE);
        let up_remote = format!("{tag}-curl-up.bin");
        let put = curl.put(&self.lab, &up_local, &up_remote).await;
        assert_ok(&put, self);
        self.check_upload(&up_remote, &up_sha, &what);
        ports.extend(announced(&got.stderr));
        ports.extend(announced(&put.stderr));
        if addr.is_ipv4() {
            let mut pasv = curl.clone();
            pasv.extra.push("--disable-epsv".into());
            let local = self.local(&format!("{tag}-curl-pasv.bin"));
            let got = pasv.get(&self.lab, &down, &local).await;
            assert_ok(&got, self);
            self.check_download(&local, &sha, &format!("{what} (PASV)"));
            ports.extend(announced(&got.stderr));
        }

        let what = format!("lftp {tag}");
        let lftp = NsLftp::new("lan", addr, Security::Explicit, self.gw.ca());
        let out = self
            .lftp_round_trip(&lftp, &down, &sha, &format!("{tag}-lftp"), FILE_SIZE, &what)
            .await;
        ports.extend(announced(&out.stderr));

        assert!(
            !ports.is_empty(),
            "{tag}: no 227/229 seen in the client output\n{}",
            self.ctx()
        );
        for p in &ports {
            assert!(
                INSIDE_PASV.contains(p),
                "{tag}: announced port {p} outside {INSIDE_PASV:?}\n{}",
                self.ctx()
            );
        }
        ports
    }

    /// Starts `ftpclient.py hold_get` from `lan`: PASV, then wait for the GO file.
    async fn hold_get(&self, remote: &str, local: &Path, go: &Path) -> HeldGet {
        let held = self.hold_get_ctx(remote, local, go, || self.ctx()).await;
        let port = held.port;
        assert!(
            INSIDE_PASV.contains(&port),
            "port {port} outside {INSIDE_PASV:?}\n{}",
            self.ctx()
        );
        held
    }

    /// A TCP connect from `ns` to `host:port` with a 2 s timeout: `TIMEOUT`, `REFUSED`,
    /// `CONNECTED` or `ERROR …`.
    async fn connect(&self, ns: &str, host: &str, port: u16) -> String {
        let script = "import socket, sys\n\
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n\
s.settimeout(2)\n\
try:\n    s.connect((sys.argv[1], int(sys.argv[2])))\n    print('CONNECTED')\n\
except socket.timeout:\n    print('TIMEOUT')\n\
except ConnectionRefusedError:\n    print('REFUSED')\n\
except OSError as e:\n    print('ERROR', e)\n";
        let out = self
            .lab
            .run_in(
                ns,
                python(),
                &[
                    "-c".into(),
                    script.into(),
                    host.to_string(),
                    port.to_string(),
                ],
                Duration::from_secs(10),
            )
            .await;
        assert!(out.success(), "connect probe failed: {out}");
        out.stdout.trim().to_string()
    }
}

impl HeldGet {
    /// Waits for the client to finish; its whole output and whether it succeeded.
    async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let mut out = self.seen;
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(5), self.stdout.next_line()).await
        {
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(mut e) = self.child.stderr.take() {
            let mut err = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err)).await;
            out.push_str("--- stderr:\n");
            out.push_str(&err);
        }
        let ok = matches!(status, Ok(Ok(s)) if s.success()) && out.contains("DONE");
        (ok, format!("status {status:?}\n{out}"))
    }
}

#[track_caller]
fn assert_ok(out: &common::Output, site: &Site) {
    site.assert_ok(out);
}

/// Ports of every 227/229 reply in a client's output.
fn announced(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = reply_lines(text, 229)
        .iter()
        .filter_map(|l| parse_229(l))
        .collect();
    ports.extend(
        reply_lines(text, 227)
            .iter()
            .filter_map(|l| common::raw::parse_227(l))
            .map(|a| a.port()),
    );
    ports
}

/// Whether a `nft list set` output holds the element `ip . port`.
fn has_element(set: &str, ip: &str, port: u16) -> bool {
    set.contains(&format!("{ip} . {port}"))
}

/// Whether the set holds any element at all.
fn has_elements(set: &str) -> bool {
    set.contains("elements")
}

/// Polls `cond` every 100 ms until it holds or `within` passed.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 1. Transfers through kernel pinholes, IPv4 and IPv6.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_pinholes_transfers_end_to_end() {
    let site = Site::start(true, &config("fail", ""));
    let log = site.gw.log();
    assert!(
        !log.contains("kernel pinholes unavailable"),
        "the ruleset is loaded, kernel pinholes should be on\n{}",
        site.ctx()
    );
    let drops_before = site.drops();
    site.transfers(site.inside(21), "v4").await;
    site.transfers(site.inside6(2121), "v6").await;
    let log = site.gw.log();
    assert!(
        !log.contains("cannot open kernel pinhole"),
        "an element could not be added\n{}",
        site.ctx()
    );
    // No packet of a legitimate transfer was dropped.
    assert_eq!(
        site.drops(),
        drops_before,
        "the passive-range drop rule hit legitimate traffic\n{}",
        site.ctx()
    );
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 2. Another host's connection to the pinhole is dropped by the kernel.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_dropped_by_the_kernel() {
    let site = Site::start(true, &config("fail", ""));
    let down = "steal.bin";
    let sha = site.vs.make_file(down, 4 * MIB);
    let local = site.local("steal-real.bin");
    let go = site.local("steal.go");
    let held = site.hold_get(down, &local, &go).await;
    let port = held.port;
    let set = site.set("pinholes");
    assert!(
        has_element(&set, LAN_IP, port),
        "no element {LAN_IP} . {port} while the pinhole is open:\n{set}\n{}",
        site.ctx()
    );
    let drops_before = site.drops();

    let thieves = [
        // Another inside host, straight at the pinhole.
        ("thf", GW_IP.to_string(), port),
        // The internet, through the public forwarded port (seen as 203.0.113.2).
        ("inet", EDGE_WAN.to_string(), port - 50000 + 40000),
    ];
    for (ns, host, p) in &thieves {
        let res = site.connect(ns, host, *p).await;
        assert_eq!(
            res,
            "TIMEOUT",
            "thief in {ns} → {host}:{p} was not silently dropped\n{}",
            site.ctx()
        );
    }
    let drops = site.drops();
    assert!(
        drops >= drops_before + 2,
        "drop counter {drops_before} → {drops}: the thieves' SYNs were not counted\n{}",
        site.ctx()
    );
    let log = site.gw.log();
    assert!(
        !log.contains("refused data connection from foreign address"),
        "a thief reached ftpsgate despite the kernel pinhole\n{}",
        site.ctx()
    );
    // The element is still there for the real client.
    let set = site.set("pinholes");
    assert!(
        has_element(&set, LAN_IP, port),
        "element {LAN_IP} . {port} gone before the client connected:\n{set}\n{}",
        site.ctx()
    );

    std::fs::write(&go, b"go").unwrap();
    let (ok, out) = held.finish().await;
    assert!(
        ok,
        "the real transfer failed after the theft attempts: {out}\n{}",
        site.ctx()
    );
    site.check_download(&local, &sha, "real transfer after theft attempts");
    let set = site.set("pinholes");
    assert!(
        !has_element(&set, LAN_IP, port),
        "element {LAN_IP} . {port} still there after the transfer:\n{set}\n{}",
        site.ctx()
    );
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 3. Elements disappear after use and after expiry.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elements_removed_after_use_and_expiry() {
    let site = Site::start(true, &config("fail", "pinhole: 2s"));

    // Used: every element is deleted once its data connection arrived.
    let down = "used.bin";
    let sha = site.vs.make_file(down, FILE_SIZE);
    let curl = NsCurl::new("lan", site.inside(21), Security::Explicit, site.gw.ca());
    let local = site.local("used.bin");
    let got = curl.get(&site.lab, down, &local).await;
    assert_ok(&got, &site);
    site.check_download(&local, &sha, "curl with 2 s pinholes");
    let ports = announced(&got.stderr);
    assert!(!ports.is_empty(), "no 229 seen: {got}");
    // Right after the transfer, long before the 2 s element timeout.
    let set = site.set("pinholes");
    for p in &ports {
        assert!(
            !has_element(&set, LAN_IP, *p),
            "element {LAN_IP} . {p} still there after the transfer:\n{set}\n{}",
            site.ctx()
        );
    }
    assert!(
        !has_elements(&set),
        "elements left after a completed transfer:\n{set}\n{}",
        site.ctx()
    );

    // Expired: PASV without any connection; the element lives as long as the pinhole.
    let go = site.local("expire.go");
    let held = site.hold_get(down, &site.local("expire.bin"), &go).await;
    let port = held.port;
    let set = site.set("pinholes");
    assert!(
        has_element(&set, LAN_IP, port),
        "no element {LAN_IP} . {port} right after PASV:\n{set}\n{}",
        site.ctx()
    );
    assert!(
        set.contains("timeout 2s"),
        "the element does not carry the pinhole timeout:\n{set}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let set = site.set("pinholes");
    assert!(
        !has_element(&set, LAN_IP, port),
        "element {LAN_IP} . {port} still there 3 s after a 2 s PASV:\n{set}\n{}",
        site.ctx()
    );
    assert!(
        eventually(Duration::from_secs(2), || site
            .gw
            .log()
            .contains("pinhole expired unused")),
        "the gateway did not expire the pinhole\n{}",
        site.ctx()
    );
    drop(held);
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 4. Startup without the set: `on_error: fail` refuses to start, `warn` runs without.
// ---------------------------------------------------------------------------------------

/// `ftpsgate run` with `on_error: fail` in a fresh lab whose `gw` has `ruleset` loaded
/// (if any): it must exit non-zero at once; returns everything it printed.
fn start_fails(ruleset: Option<&str>) -> String {
    let lab = NatLab::build();
    if let Some(r) = ruleset {
        lab.nft("gw", r);
    }
    let vs = lab.vsftpd();
    let dir = lab.dir().join("gateway-fail");
    std::fs::create_dir_all(&dir).unwrap();
    certs_with_sans(&dir, "gw", &[EDGE_WAN, GW_IP, GW_IP6]);
    std::fs::copy(vs.ca(), dir.join("ca.pem")).unwrap();
    let yaml = config("fail", "");
    let cfg = dir.join("ftpsgate.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    let started = Instant::now();
    let out = lab.exec(
        "gw",
        "timeout",
        &[
            "20",
            "env",
            "RUST_LOG=ftpsgate=debug",
            "NO_COLOR=1",
            env!("CARGO_BIN_EXE_ftpsgate"),
            "run",
            "--config",
            &cfg.display().to_string(),
        ],
    );
    let text = format!(
        "status {:?} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}\n--- config:\n{yaml}",
        out.status,
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && out.status.code() != Some(124),
        "ftpsgate should exit non-zero at once: {text}"
    );
    assert!(
        text.contains("listeners[0].passive.nftables"),
        "the error does not name listeners[0].passive.nftables: {text}"
    );
    drop(vs);
    drop(lab);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_without_the_set() {
    // fail: `ftpsgate run` exits non-zero naming the config key and the set.
    let text = start_fails(None);
    assert!(
        text.contains("pinholes"),
        "the error does not name the set: {text}"
    );
    // A set the gateway cannot use (no `flags timeout`: adding an element with a
    // timeout would fail on every PASV) is refused at startup too.
    let text = start_fails(Some(&RULESET.replacen(
        "set pinholes { type ipv4_addr . inet_service; flags timeout; }",
        "set pinholes { type ipv4_addr . inet_service; }",
        1,
    )));
    assert!(
        text.contains("flags timeout") && text.contains("pinholes"),
        "the error does not say the set lacks flags timeout: {text}"
    );

    // warn: starts, says so, and transfers work with user-space pinholes only.
    let site = Site::start(false, &config("warn", ""));
    assert!(
        eventually(Duration::from_secs(2), || site
            .gw
            .log()
            .contains("kernel pinholes unavailable")),
        "no warning about the missing set\n{}",
        site.ctx()
    );
    let down = "warn.bin";
    let sha = site.vs.make_file(down, FILE_SIZE);
    let curl = NsCurl::new("lan", site.inside(21), Security::Explicit, site.gw.ca());
    let local = site.local("warn.bin");
    let got = curl.get(&site.lab, down, &local).await;
    assert_ok(&got, &site);
    site.check_download(&local, &sha, "curl with on_error: warn");
    let (up_local, up_sha) = site.upload_source("warn-up.bin", FILE_SIZE);
    let put = curl.put(&site.lab, &up_local, "warn-up.bin").await;
    assert_ok(&put, &site);
    site.check_upload("warn-up.bin", &up_sha, "curl upload with on_error: warn");
    assert!(
        !site.gw.log().contains("cannot open kernel pinhole"),
        "with the set unusable, no kernel pinhole should be attempted\n{}",
        site.ctx()
    );
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 5. Pinholes dropped unused (replaced by another PASV, or the session ended).
// ---------------------------------------------------------------------------------------

/// A pinhole the session drops before it was used or expired (a second PASV/EPSV
/// replaces it; QUIT ends the session) should take its element with it. Today
/// `Pinhole::drop` aborts the task that would delete it, so the element stays until its
/// own timeout (the pinhole timeout, 30 s by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_pinhole_elements_removed() {
    let site = Site::start(true, &config("fail", "pinhole: 20s"));
    let out = ftplib(
        &site.lab,
        "lan",
        &[
            "--host".into(),
            GW_IP.into(),
            "--ca".into(),
            site.gw.ca().display().to_string(),
            "pasv".into(),
            "pasv".into(),
            "epsv".into(),
        ],
    )
    .await;
    assert_ok(&out, &site);
    let ports = announced(&out.stdout);
    assert_eq!(ports.len(), 3, "expected 3 passive replies: {out}");
    // Long before the 20 s element timeout.
    let gone = eventually(Duration::from_secs(3), || {
        let set = site.set("pinholes");
        !ports.iter().any(|p| has_element(&set, LAN_IP, *p))
    });
    assert!(
        gone,
        "elements of pinholes dropped unused (ports {ports:?}) are still in the set after \
         the session ended\n{}",
        site.ctx()
    );
    site.finish();
}
