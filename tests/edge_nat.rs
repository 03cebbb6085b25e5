//! ftpsgate behind a real NAT: network namespaces + nftables (see `tests/common/netns.rs`
//! and `/work/shared/notes/edge-nat-lab.md`). Needs root, `ip netns` and `nft`.
//!
//! An internet client (masqueraded by its home router, reaching the site's public address
//! 203.0.113.1 through the edge firewall's DNAT) and an internal client (198.19.0.50,
//! straight to the gateway at 198.19.0.10) use the SAME listener; the gateway must
//! advertise the right address and port to each. The backend vsftpd advertises a wrong
//! `pasv_address` (203.0.113.99) that the gateway must ignore.

mod common;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use common::netns::*;
use common::raw::parse_227;
use common::*;

const FILE_SIZE: usize = MIB + 12345;

/// The lab gateway config (the brief's, verbatim in meaning).
const EDGE_YAML: &str = r#"listeners:
  - name: edge
    bind: "0.0.0.0:21"
    tls: { mode: explicit, cert: gw.pem, key: gw.key, require: true }
    passive:
      ports: "50000-50099"
      advertise:
        - networks: ["198.18.0.0/15", "2001:db8::/32"]
          address: "198.19.0.10"
        - address: "203.0.113.1"
          ports: "40000-40099"
    active: { enabled: true }
    backend: srv
  - name: edge-implicit
    bind: "0.0.0.0:990"
    tls: { mode: implicit, cert: gw.pem, key: gw.key }
    passive: { ports: "50100-50199", advertise: [ { networks: ["198.18.0.0/15"], address: "198.19.0.10" }, { address: "203.0.113.1", ports: "40100-40199" } ] }
    backend: srv
  - name: edge6
    bind: "[::]:2121"
    tls: { mode: explicit, cert: gw.pem, key: gw.key }
    passive: { ports: "50200-50299" }
    backend: srv
backends:
  - name: srv
    address: "198.19.0.20:21"
    tls: { mode: explicit, ca: ca.pem, server_name: localhost }
    data_mode: passive
"#;

const PUBLIC_PASV: RangeInclusive<u16> = 40000..=40099;
const INSIDE_PASV: RangeInclusive<u16> = 50000..=50099;
const PUBLIC_PASV_IMPLICIT: RangeInclusive<u16> = 40100..=40199;
const INSIDE_PASV_IMPLICIT: RangeInclusive<u16> = 50100..=50199;
const INSIDE_PASV6: RangeInclusive<u16> = 50200..=50299;

/// Lab + backend + gateway (see [`LabSite`]), with this file's failure context.
struct Site(LabSite);

impl std::ops::Deref for Site {
    type Target = LabSite;
    fn deref(&self) -> &LabSite {
        &self.0
    }
}

impl SiteChecks for Site {
    /// Gateway config + log and the tail of the vsftpd log, for failure messages.
    fn ctx(&self) -> String {
        let tail = self.vsftpd_tail(60);
        format!(
            "{}\n--- vsftpd log (last 60 lines):\n{tail}",
            self.gw.describe()
        )
    }
}

impl Site {
    fn start() -> Site {
        Site(LabSite::start(EDGE_YAML, |_| {}))
    }

    /// Tears the lab down and checks no namespace of it is left.
    fn finish(self) {
        self.0.finish();
    }
}

#[track_caller]
fn assert_ok(out: &common::Output, site: &Site) {
    site.assert_ok(out);
}

/// Every 227 in `text` names `ip` and a port in `ports`; at least one 227 is present.
#[track_caller]
fn assert_227s(text: &str, ip: &str, ports: &RangeInclusive<u16>, what: &str, site: &Site) {
    let lines = reply_lines(text, 227);
    assert!(
        !lines.is_empty(),
        "{what}: no 227 reply seen in:\n{text}\n{}",
        site.ctx()
    );
    for line in lines {
        let addr = parse_227(&line).unwrap_or_else(|| panic!("{what}: bad 227 {line:?}"));
        assert_eq!(
            addr.ip().to_string(),
            ip,
            "{what}: 227 advertises the wrong address: {line}\n{}",
            site.ctx()
        );
        assert!(
            ports.contains(&addr.port()),
            "{what}: 227 advertises port {} outside {ports:?}: {line}\n{}",
            addr.port(),
            site.ctx()
        );
    }
}

/// Every 229 in `text` carries a port in `ports`; at least one 229 is present.
#[track_caller]
fn assert_229s(text: &str, ports: &RangeInclusive<u16>, what: &str, site: &Site) {
    let lines = reply_lines(text, 229);
    assert!(
        !lines.is_empty(),
        "{what}: no 229 reply seen in:\n{text}\n{}",
        site.ctx()
    );
    for line in lines {
        let port = parse_229(&line).unwrap_or_else(|| panic!("{what}: bad 229 {line:?}"));
        assert!(
            ports.contains(&port),
            "{what}: 229 advertises port {port} outside {ports:?}: {line}\n{}",
            site.ctx()
        );
    }
}

/// The two vantage points: (namespace, control address, expected 227 IP, expected ports).
fn vantage_points(
    site: &Site,
) -> Vec<(&'static str, SocketAddr, &'static str, RangeInclusive<u16>)> {
    vec![
        ("inet", site.public(21), EDGE_WAN, PUBLIC_PASV),
        ("lan", site.inside(21), GW_IP, INSIDE_PASV),
    ]
}

// ---------------------------------------------------------------------------------------
// 0. The lab itself (runs without any gateway feature).
// ---------------------------------------------------------------------------------------

/// DNAT (with the port-offset map), masquerade, no SNAT on forwarded traffic, the inside
/// segment over IPv4 and IPv6, and the backend vsftpd reachable from the gateway host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_self_test() {
    let lab = NatLab::build();
    let prefix = lab.prefix().to_string();
    let vs = lab.vsftpd();
    let dir = lab.dir().join("echo");
    std::fs::create_dir_all(&dir).unwrap();
    let script = py_script("peer_echo.py").display().to_string();
    let echo = lab.spawn(
        "gw",
        python(),
        &[
            &script, "21", "990", "2121", "50000", "50005", "50099", "50150",
        ],
        &dir.join("out"),
        &dir.join("err"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(dir.join("out"))
        .unwrap_or_default()
        .contains("READY")
    {
        assert!(
            lab.exited(echo).is_none(),
            "peer_echo died: {:?}",
            std::fs::read_to_string(dir.join("err"))
        );
        assert!(std::time::Instant::now() < deadline, "peer_echo not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ask = |from: &str, host: &str, port: u16| -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let out = lab.exec(
            from,
            "timeout",
            &[
                "3",
                "bash",
                "-c",
                &format!(
                    "exec 3<>/dev/tcp/{}/{port}; head -1 <&3",
                    host.trim_matches(['[', ']'])
                ),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Internet client → public address: DNAT, seen as the home router's WAN address.
    assert_eq!(ask("inet", EDGE_WAN, 21), format!("PEER {HOME_WAN} 21"));
    assert_eq!(ask("inet", EDGE_WAN, 990), format!("PEER {HOME_WAN} 990"));
    // The passive map keeps the offset: 40000+i → 50000+i.
    assert_eq!(
        ask("inet", EDGE_WAN, 40000),
        format!("PEER {HOME_WAN} 50000")
    );
    assert_eq!(
        ask("inet", EDGE_WAN, 40005),
        format!("PEER {HOME_WAN} 50005")
    );
    assert_eq!(
        ask("inet", EDGE_WAN, 40099),
        format!("PEER {HOME_WAN} 50099")
    );
    assert_eq!(
        ask("inet", EDGE_WAN, 40150),
        format!("PEER {HOME_WAN} 50150")
    );
    // Nothing else is forwarded, and the inside is not routable from the internet.
    assert_eq!(ask("inet", EDGE_WAN, 2121), "");
    assert_eq!(ask("inet", GW_IP, 21), "");
    // Inside clients reach the gateway directly, IPv4 and IPv6.
    assert_eq!(ask("lan", GW_IP, 21), format!("PEER {LAN_IP} 21"));
    assert_eq!(ask("thf", GW_IP, 50005), format!("PEER {THIEF_IP} 50005"));
    assert_eq!(ask("lan", GW_IP6, 2121), format!("PEER {LAN_IP6} 2121"));
    // The backend is reachable from the gateway host; its 227 names the bogus address.
    let listing = lab
        .run_in(
            "gw",
            "curl",
            &[
                "-sS".into(),
                "-v".into(),
                "--max-time".into(),
                "20".into(),
                "--ssl-reqd".into(),
                "--cacert".into(),
                vs.ca().display().to_string(),
                "--disable-epsv".into(),
                format!("ftp://{TEST_USER}:{TEST_PASS}@localhost/"),
                "--resolve".into(),
                format!("localhost:21:{SRV_IP}"),
            ],
            Duration::from_secs(25),
        )
        .await;
    assert!(
        listing.success(),
        "direct LIST from gw: {listing}\n{}",
        vs.output()
    );
    let pasv = reply_lines(&listing.stderr, 227);
    assert!(
        pasv.iter().any(|l| l.contains("203,0,113,99")),
        "vsftpd should advertise {BOGUS_PASV}: {pasv:?}"
    );
    drop(vs);
    drop(lab);
    assert_no_namespaces_left(&prefix);
}

// ---------------------------------------------------------------------------------------
// 1. Internet and internal clients through the same listener.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_lftp_internet_and_internal_same_listener() {
    let site = Site::start();
    for (ns, addr, ip, ports) in vantage_points(&site) {
        let what = format!("lftp from {ns}");
        let down = format!("lftp-{ns}-down.bin");
        let sha = site.vs.make_file(&down, FILE_SIZE);
        let lftp = NsLftp::new(ns, addr, Security::Explicit, site.gw.ca());
        let out = site
            .lftp_round_trip(&lftp, &down, &sha, &format!("lftp-{ns}"), FILE_SIZE, &what)
            .await;
        assert_227s(&out.stderr, ip, &ports, &what, &site);
    }
    site.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_ftplib_internet_and_internal_same_listener() {
    let site = Site::start();
    for (ns, addr, ip, ports) in vantage_points(&site) {
        let what = format!("ftplib from {ns}");
        let down = format!("py-{ns}-down.bin");
        let sha = site.vs.make_file(&down, FILE_SIZE);
        let (up_local, up_sha) = site.upload_source(&format!("py-{ns}-up.bin"), FILE_SIZE);
        let up_remote = format!("py-{ns}-up.bin");
        let local = site.local(&down);
        let out = ftplib(
            &site.lab,
            ns,
            &[
                "--host".into(),
                addr.ip().to_string(),
                "--port".into(),
                addr.port().to_string(),
                "--ca".into(),
                site.gw.ca().display().to_string(),
                "pasv".into(),
                "epsv".into(),
                format!("get~~{down}~~{}", local.display()),
                format!("put~~{}~~{up_remote}", up_local.display()),
            ],
        )
        .await;
        assert_ok(&out, &site);
        site.check_download(&local, &sha, &what);
        site.check_upload(&up_remote, &up_sha, &what);
        assert_227s(&out.stdout, ip, &ports, &what, &site);
        assert_229s(&out.stdout, &ports, &what, &site);
    }
    site.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_curl_internet_and_internal_same_listener() {
    let site = Site::start();
    for (ns, addr, _ip, ports) in vantage_points(&site) {
        let what = format!("curl from {ns}");
        let down = format!("curl-{ns}-down.bin");
        let sha = site.vs.make_file(&down, FILE_SIZE);
        let (up_local, up_sha) = site.upload_source(&format!("curl-{ns}-up.bin"), FILE_SIZE);
        let up_remote = format!("curl-{ns}-up.bin");
        let local = site.local(&down);
        let curl = NsCurl::new(ns, addr, Security::Explicit, site.gw.ca());
        let got = curl.get(&site.lab, &down, &local).await;
        assert_ok(&got, &site);
        site.check_download(&local, &sha, &what);
        // curl uses EPSV (the 229 port must be the reachable one) ...
        assert_229s(&got.stderr, &ports, &what, &site);
        let put = curl.put(&site.lab, &up_local, &up_remote).await;
        assert_ok(&put, &site);
        site.check_upload(&up_remote, &up_sha, &what);
        // ... and with EPSV off, PASV (curl ignores the 227 address, not its port).
        let mut pasv_curl = curl.clone();
        pasv_curl.extra.push("--disable-epsv".into());
        let local2 = site.local(&format!("curl-{ns}-down-pasv.bin"));
        let got = pasv_curl.get(&site.lab, &down, &local2).await;
        assert_ok(&got, &site);
        site.check_download(&local2, &sha, &what);
        let ip = if ns == "inet" { EDGE_WAN } else { GW_IP };
        assert_227s(&got.stderr, ip, &ports, &what, &site);
    }
    site.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_implicit_ftps_public_990() {
    let site = Site::start();
    let cases = [
        ("inet", site.public(990), EDGE_WAN, PUBLIC_PASV_IMPLICIT),
        ("lan", site.inside(990), GW_IP, INSIDE_PASV_IMPLICIT),
    ];
    for (ns, addr, ip, ports) in cases {
        let down = format!("imp-{ns}-down.bin");
        let sha = site.vs.make_file(&down, FILE_SIZE);

        // curl ftps://
        let what = format!("curl ftps:// from {ns}");
        let curl = NsCurl::new(ns, addr, Security::Implicit, site.gw.ca());
        let local = site.local(&format!("imp-{ns}-curl.bin"));
        let got = curl.get(&site.lab, &down, &local).await;
        assert_ok(&got, &site);
        site.check_download(&local, &sha, &what);
        assert_229s(&got.stderr, &ports, &what, &site);
        let (up_local, up_sha) = site.upload_source(&format!("imp-{ns}-curl-up.bin"), FILE_SIZE);
        let up_remote = format!("imp-{ns}-curl-up.bin");
        let put = curl.put(&site.lab, &up_local, &up_remote).await;
        assert_ok(&put, &site);
        site.check_upload(&up_remote, &up_sha, &what);

        // lftp ftps:// (connects to the 227 address)
        let what = format!("lftp ftps:// from {ns}");
        let lftp = NsLftp::new(ns, addr, Security::Implicit, site.gw.ca());
        let out = site
            .lftp_round_trip(
                &lftp,
                &down,
                &sha,
                &format!("imp-{ns}-lftp"),
                FILE_SIZE,
                &what,
            )
            .await;
        assert_227s(&out.stderr, ip, &ports, &what, &site);
    }
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 2. Active mode from the internal client (backend stays passive).
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_from_internal_client() {
    let site = Site::start();
    let down = "active-down.bin";
    let sha = site.vs.make_file(down, FILE_SIZE);

    // lftp, ftp:passive-mode off.
    let what = "lftp active from lan";
    let mut lftp = NsLftp::new("lan", site.inside(21), Security::Explicit, site.gw.ca());
    lftp.passive = false;
    let out = site
        .lftp_round_trip(&lftp, down, &sha, "active-lftp", FILE_SIZE, what)
        .await;
    assert!(
        out.stderr.contains("---> PORT") || out.stderr.contains("---> EPRT"),
        "{what}: lftp did not use PORT/EPRT:\n{out}"
    );
    assert!(
        !out.stderr.contains("---> PASV") && !out.stderr.contains("---> EPSV"),
        "{what}: lftp fell back to passive mode:\n{out}\n{}",
        site.ctx()
    );

    // ftplib, set_pasv(False).
    let what = "ftplib active from lan";
    let local = site.local("active-py.bin");
    let (up_local, up_sha) = site.upload_source("active-py-up.bin", FILE_SIZE);
    let out = ftplib(
        &site.lab,
        "lan",
        &[
            "--host".into(),
            GW_IP.into(),
            "--ca".into(),
            site.gw.ca().display().to_string(),
            "--active".into(),
            format!("get~~{down}~~{}", local.display()),
            format!("put~~{}~~active-py-up.bin", up_local.display()),
        ],
    )
    .await;
    assert_ok(&out, &site);
    site.check_download(&local, &sha, what);
    site.check_upload("active-py-up.bin", &up_sha, what);

    // The backend only ever saw passive mode (and its wrong pasv_address did not matter).
    let log = site.vs.log();
    assert!(
        log.contains("\"PASV\"") || log.contains("\"EPSV\""),
        "backend never saw PASV/EPSV\n{}",
        site.ctx()
    );
    assert!(
        !log.contains("\"PORT ") && !log.contains("\"EPRT "),
        "backend saw active mode\n{}",
        site.ctx()
    );
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 3. The internet client tries active mode with its private address.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internet_client_active_mode_refused_behind_nat() {
    let site = Site::start();
    let down = "nat-active.bin";
    let sha = site.vs.make_file(down, FILE_SIZE);
    let refused = site.local("nat-active-refused.bin");
    let local = site.local("nat-active-then-passive.bin");
    let out = ftplib(
        &site.lab,
        "inet",
        &[
            "--host".into(),
            EDGE_WAN.into(),
            "--ca".into(),
            site.gw.ca().display().to_string(),
            // ftplib's own PORT names 198.18.1.10 (its address behind the home router).
            format!("try_active_get~~{down}~~{}", refused.display()),
            "expect_err~~PORT 198,18,1,10,195,80".into(),
            "expect_err~~EPRT |1|198.18.1.10|50000|".into(),
            format!("get~~{down}~~{}", local.display()),
        ],
    )
    .await;
    assert_ok(&out, &site);
    site.check_download(&local, &sha, "passive after refused PORT");
    let refusals: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("ACTIVE_REFUSED") || l.starts_with("REPLY 5") || l.starts_with("REPLY 4")
        })
        .collect();
    assert_eq!(refusals.len(), 3, "expected 3 refusals:\n{out}");
    for line in refusals {
        let text = line
            .trim_start_matches("ACTIVE_REFUSED ")
            .trim_start_matches("REPLY ");
        assert!(text.starts_with('5'), "not a 5xx: {line}\n{}", site.ctx());
        assert!(
            text.contains("behind NAT"),
            "refusal does not mention NAT: {line}\n{}",
            site.ctx()
        );
        assert!(
            text.contains("PASV"),
            "refusal does not suggest passive mode: {line}\n{}",
            site.ctx()
        );
    }
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 4. Bounce attacks (RFC 2577) from the internal client.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_bounce_refused() {
    let site = Site::start();
    let down = "bounce.bin";
    let sha = site.vs.make_file(down, FILE_SIZE);
    let local = site.local("bounce-after.bin");
    let bad = [
        // Another host (the backend's passive range).
        "PORT 198,19,0,20,117,48",
        "EPRT |1|198.19.0.20|30000|",
        // The client's own address but a privileged port.
        "PORT 198,19,0,50,0,21",
        "PORT 198,19,0,50,3,255",
        "EPRT |1|198.19.0.50|80|",
        // An IPv6 target from an IPv4 session.
        "EPRT |2|2001:db8:19::20|30000|",
    ];
    let mut args: Vec<String> = vec![
        "--host".into(),
        GW_IP.into(),
        "--ca".into(),
        site.gw.ca().display().to_string(),
    ];
    args.extend(bad.iter().map(|c| format!("expect_err~~{c}")));
    args.push(format!("get~~{down}~~{}", local.display()));
    let out = ftplib(&site.lab, "lan", &args).await;
    assert_ok(&out, &site);
    site.check_download(&local, &sha, "passive after bounce attempts");
    let replies: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("REPLY 4") || l.starts_with("REPLY 5"))
        .collect();
    assert_eq!(replies.len(), bad.len(), "one refusal per bounce:\n{out}");
    for (cmd, line) in bad.iter().zip(replies) {
        assert!(
            line.starts_with("REPLY 5"),
            "{cmd}: not a 5xx: {line}\n{}",
            site.ctx()
        );
        assert!(
            !line.contains("behind NAT"),
            "{cmd}: an inside client is not behind NAT: {line}"
        );
    }
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 5. Pinhole stealing across hosts.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinhole_stealing_across_hosts_refused() {
    let site = Site::start();
    let down = "steal.bin";
    let sha = site.vs.make_file(down, 4 * MIB);
    let local = site.local("steal-real.bin");
    let go = site.local("steal.go");
    let HeldGet {
        mut child,
        mut stdout,
        seen,
        port,
    } = site.hold_get_ctx(down, &local, &go, || site.ctx()).await;
    assert!(
        INSIDE_PASV.contains(&port),
        "port {port} outside {INSIDE_PASV:?}"
    );

    let probe = py_script("probe.py").display().to_string();
    let thieves = [
        // Another inside host, straight at the pinhole.
        ("thf", GW_IP.to_string(), port),
        // The internet, through the public forwarded port.
        ("inet", EDGE_WAN.to_string(), port - 50000 + 40000),
    ];
    for (ns, host, p) in thieves {
        let out = site
            .lab
            .run_in(
                ns,
                python(),
                &[probe.clone(), host.clone(), p.to_string(), "3".into()],
                Duration::from_secs(15),
            )
            .await;
        assert!(
            out.success() && out.stdout.starts_with("REFUSED"),
            "thief in {ns} → {host}:{p} was served: {out}\n{}",
            site.ctx()
        );
    }

    std::fs::write(&go, b"go").unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let mut rest = String::new();
    while let Ok(Some(line)) = stdout.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    assert!(
        matches!(status, Ok(Ok(s)) if s.success()) && rest.contains("DONE"),
        "the real transfer failed after the theft attempts: {status:?}\n{seen}{rest}\n{err}\n{}",
        site.ctx()
    );
    site.check_download(&local, &sha, "real transfer after theft attempts");
    site.finish();
}

// ---------------------------------------------------------------------------------------
// 6. IPv6 client to the IPv4 backend.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_internal_client_to_ipv4_backend() {
    let site = Site::start();
    let addr = SocketAddr::new(GW_IP6.parse().unwrap(), 2121);
    let down = "v6-down.bin";
    let sha = site.vs.make_file(down, FILE_SIZE);

    let what = "curl over IPv6";
    let curl = NsCurl::new("lan", addr, Security::Explicit, site.gw.ca());
    let local = site.local("v6-curl.bin");
    let got = curl.get(&site.lab, down, &local).await;
    assert_ok(&got, &site);
    site.check_download(&local, &sha, what);
    assert_229s(&got.stderr, &INSIDE_PASV6, what, &site);
    let (up_local, up_sha) = site.upload_source("v6-curl-up.bin", FILE_SIZE);
    let put = curl.put(&site.lab, &up_local, "v6-curl-up.bin").await;
    assert_ok(&put, &site);
    site.check_upload("v6-curl-up.bin", &up_sha, what);

    let what = "lftp over IPv6";
    let lftp = NsLftp::new("lan", addr, Security::Explicit, site.gw.ca());
    let out = site
        .lftp_round_trip(&lftp, down, &sha, "v6-lftp", FILE_SIZE, what)
        .await;
    assert_229s(&out.stderr, &INSIDE_PASV6, what, &site);
    site.finish();
}
