//! A real NAT lab in network namespaces (see `/work/shared/notes/edge-nat-lab.md`).
//!
//! ```text
//!  inet 198.18.1.10 ── home (lan 198.18.1.1 | wan 203.0.113.2, masquerade)
//!                          │  "the internet" 203.0.113.0/24
//!                      edge (wan 203.0.113.1 | lan 198.19.0.1; DNAT :21 :990 and
//!                          │   40000-40199 → 198.19.0.10:50000-50199, no SNAT)
//!                       sw: bridge br0, inside segment 198.19.0.0/24 (+ 2001:db8:19::/64)
//!        ┌─────────────┬───┴──────────┬──────────────┐
//!   gw 198.19.0.10  lan 198.19.0.50  srv 198.19.0.20  thf 198.19.0.66
//!   ::10 ftpsgate   ::50 client      vsftpd           (a thief)
//! ```
//!
//! Every namespace name starts with a prefix unique to the process and lab
//! (`fg<pid>x<n>-`), so parallel tests never collide; interfaces are created directly in
//! their namespaces, so nothing is ever added to the host namespace. Dropping the lab
//! (also while unwinding from a panic) kills every process it started by PID, then every
//! process still inside its namespaces (by PID, from `ip netns pids`), then deletes the
//! namespaces.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::clients::{run, Output, Security};
use super::harness::kill_group;
use super::{chown_to_test_user, sha256_file, temp_dir, test_user, Certs, VsftpdMode};
use tokio::io::AsyncBufReadExt as _;

/// The client behind the home router (masqueraded to [`HOME_WAN`]).
pub const INET_IP: &str = "198.18.1.10";
pub const HOME_LAN: &str = "198.18.1.1";
/// The address the gateway sees for the internet client.
pub const HOME_WAN: &str = "203.0.113.2";
/// The public address of the site (DNAT to the gateway).
pub const EDGE_WAN: &str = "203.0.113.1";
pub const EDGE_LAN: &str = "198.19.0.1";
/// The gateway inside.
pub const GW_IP: &str = "198.19.0.10";
pub const GW_IP6: &str = "2001:db8:19::10";
/// The internal client.
pub const LAN_IP: &str = "198.19.0.50";
pub const LAN_IP6: &str = "2001:db8:19::50";
/// The backend vsftpd.
pub const SRV_IP: &str = "198.19.0.20";
/// A third inside host (pinhole thief).
pub const THIEF_IP: &str = "198.19.0.66";
/// What the backend vsftpd prints in its `227` (deliberately wrong for anyone inside).
pub const BOGUS_PASV: &str = "203.0.113.99";
/// vsftpd's passive range in the lab.
pub const SRV_PASV: (u16, u16) = (30000, 30099);

/// DMZ lab ([`NatLab::dmz`]): the internet client.
pub const DMZ_INET_IP: &str = "203.0.113.10";
/// DMZ lab: the edge's address toward the LAN (where connectors dial to).
pub const DMZ_LAN_SIDE: &str = "198.18.5.1";
/// DMZ lab: the LAN host (vsftpd and the connector).
pub const DMZ_LAN_IP: &str = "198.18.5.10";

/// Short names of the lab namespaces (the real names carry the lab prefix).
pub const NAMESPACES: &[&str] = &["inet", "home", "edge", "sw", "gw", "lan", "srv", "thf"];

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The python3 to run the scripts in `tests/py` with (the distribution's, if present).
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Path of a script in `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name)
}

fn on_path(tool: &str) -> bool {
    if tool.starts_with('/') {
        return Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Fails with a clear message unless we are root and `ip netns`, `nft`, `python3`, `bash`
/// and `timeout` are usable.
pub fn ensure_lab_tools() {
    super::ensure_tools();
    let mut missing: Vec<&str> = ["ip", "nft", "bash", "timeout"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if !on_path(python()) {
        missing.push("python3");
    }
    assert!(
        missing.is_empty(),
        "the NAT lab needs {missing:?}: run ./scripts/test as root (it installs nftables and \
         python3) or `apt-get install iproute2 nftables python3`"
    );
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the NAT lab needs root (network namespaces, nftables)"
    );
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    assert!(
        list.status.success(),
        "`ip netns list` failed: {}",
        String::from_utf8_lossy(&list.stderr)
    );
}

/// Test PKI like [`Certs::generate`], with the leaf carrying `sans` besides `localhost`,
/// `127.0.0.1` and `::1`.
pub fn certs_with_sans(dir: &Path, prefix: &str, sans: &[&str]) -> Certs {
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    names.extend_from_slice(sans);
    Certs::generate_for(dir, prefix, &names)
}

/// PIDs of the processes inside namespace `ns` (full name).
fn netns_pids(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills (by PID) whatever still runs in `ns`, then deletes it.
fn delete_netns(ns: &str) {
    for _round in 0..3 {
        let pids = netns_pids(ns);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// All namespace names currently present.
pub fn netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Deletes namespaces left by an earlier, killed run of a test binary (`fg<pid>x…` where
/// that process is gone). Never touches a name of another shape.
fn remove_stale_labs() {
    for name in netns_list() {
        let Some(rest) = name.strip_prefix("fg") else {
            continue;
        };
        let Some((pid, tail)) = rest.split_once('x') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || !tail.contains('-') {
            continue;
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(&name);
        }
    }
}

/// The lab. See the module docs.
pub struct NatLab {
    prefix: String,
    created: Vec<String>,
    children: Mutex<Vec<(u32, Child)>>,
    dir: tempfile::TempDir,
}

impl NatLab {
    /// Builds the whole topology; panics (after cleaning up) if any step fails.
    pub fn build() -> NatLab {
        ensure_lab_tools();
        test_user();
        remove_stale_labs();
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let mut lab = NatLab {
            prefix: format!("fg{}x{n}-", std::process::id()),
            created: Vec::new(),
            children: Mutex::new(Vec::new()),
            dir: temp_dir("natlab"),
        };
        for short in NAMESPACES {
            let full = lab.ns(short);
            lab.host_ok("ip", &["netns", "add", &full]);
            lab.created.push(full);
            lab.ip(short, &["link", "set", "lo", "up"]);
        }
        // Links, created directly inside their namespaces.
        let link = |lab: &NatLab, a: &str, a_if: &str, b: &str, b_if: &str| {
            let b_full = lab.ns(b);
            lab.ip(
                a,
                &[
                    "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b_full,
                ],
            );
            lab.ip(a, &["link", "set", a_if, "up"]);
            lab.ip(b, &["link", "set", b_if, "up"]);
        };
        link(&lab, "inet", "eth0", "home", "lan0");
        link(&lab, "home", "wan0", "edge", "wan0");
        link(&lab, "edge", "lan0", "sw", "p-edge");
        for host in ["gw", "lan", "srv", "thf"] {
            link(&lab, host, "eth0", "sw", &format!("p-{host}"));
        }
        // The inside segment's switch.
        lab.ip("sw", &["link", "add", "br0", "type", "bridge"]);
        for port in ["p-edge", "p-gw", "p-lan", "p-srv", "p-thf"] {
            lab.ip("sw", &["link", "set", port, "master", "br0"]);
        }
        lab.ip("sw", &["link", "set", "br0", "up"]);

        // Addresses and routes.
        lab.ip("inet", &["addr", "add", "198.18.1.10/24", "dev", "eth0"]);
        lab.ip("inet", &["route", "add", "default", "via", HOME_LAN]);
        lab.ip("home", &["addr", "add", "198.18.1.1/24", "dev", "lan0"]);
        lab.ip("home", &["addr", "add", "203.0.113.2/24", "dev", "wan0"]);
        lab.ip("edge", &["addr", "add", "203.0.113.1/24", "dev", "wan0"]);
        lab.ip("edge", &["addr", "add", "198.19.0.1/24", "dev", "lan0"]);
        for (host, v4, v6) in [
            ("gw", GW_IP, Some(GW_IP6)),
            ("lan", LAN_IP, Some(LAN_IP6)),
            ("srv", SRV_IP, None),
            ("thf", THIEF_IP, None),
        ] {
            lab.ip(host, &["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
            if let Some(v6) = v6 {
                lab.ip(
                    host,
                    &[
                        "-6",
                        "addr",
                        "add",
                        &format!("{v6}/64"),
                        "dev",
                        "eth0",
                        "nodad",
                    ],
                );
            }
            lab.ip(host, &["route", "add", "default", "via", EDGE_LAN]);
        }
        for router in ["home", "edge"] {
            lab.exec_ok(router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        }

        // home: masquerade everything leaving on the WAN side.
        let home_rules = "table ip fghome {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan0\" masquerade
  }
}
";
        lab.nft("home", home_rules);

        // edge: port forwards (with the passive offset map), no SNAT, a stateful filter.
        let mut elements = String::new();
        for i in 0..200u16 {
            if i > 0 {
                elements.push_str(", ");
            }
            let _ = write!(elements, "{} : {}", 40000 + i, 50000 + i);
        }
        let edge_rules = format!(
            "table ip fgedge {{
  map pasv {{
    type inet_service : inet_service
    elements = {{ {elements} }}
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"wan0\" ip daddr {EDGE_WAN} tcp dport {{ 21, 990 }} dnat to {GW_IP}
    iifname \"wan0\" ip daddr {EDGE_WAN} tcp dport 40000-40199 dnat to {GW_IP} : tcp dport map @pasv
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    ct status dnat accept
    iifname \"lan0\" accept
  }}
}}
"
        );
        lab.nft("edge", &edge_rules);
        lab
    }

    /// The DMZ layout (issue 22), three namespaces and no router between them:
    /// `inet` 203.0.113.10 ── `dmz` (wan0 203.0.113.1 | lan0 198.18.5.1) ── `lan`
    /// 198.18.5.10. The inner firewall (in `lan`) drops every new connection
    /// arriving from the DMZ side; `lan` may open connections to `dmz`.
    pub fn dmz() -> NatLab {
        let lab = NatLab::single("inet");
        let mut lab = lab;
        for short in ["dmz", "lan"] {
            let full = lab.ns(short);
            lab.host_ok("ip", &["netns", "add", &full]);
            lab.created.push(full);
            lab.ip(short, &["link", "set", "lo", "up"]);
        }
        for (a, a_if, b, b_if) in [
            ("inet", "eth0", "dmz", "wan0"),
            ("lan", "eth0", "dmz", "lan0"),
        ] {
            let b_full = lab.ns(b);
            lab.ip(
                a,
                &[
                    "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b_full,
                ],
            );
            lab.ip(a, &["link", "set", a_if, "up"]);
            lab.ip(b, &["link", "set", b_if, "up"]);
        }
        lab.ip(
            "inet",
            &["addr", "add", &format!("{DMZ_INET_IP}/24"), "dev", "eth0"],
        );
        lab.ip(
            "dmz",
            &["addr", "add", &format!("{EDGE_WAN}/24"), "dev", "wan0"],
        );
        lab.ip(
            "dmz",
            &["addr", "add", &format!("{DMZ_LAN_SIDE}/24"), "dev", "lan0"],
        );
        lab.ip(
            "lan",
            &["addr", "add", &format!("{DMZ_LAN_IP}/24"), "dev", "eth0"],
        );
        lab.ip("lan", &["route", "add", "default", "via", DMZ_LAN_SIDE]);
        let inner = "table inet fginner {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname \"eth0\" ct state established,related accept
    iifname \"eth0\" counter drop
  }
}
";
        lab.nft("lan", inner);
        lab
    }

    /// A "lab" of just one namespace `short` with `lo` up (and the same cleanup), for
    /// loopback tests that need their own network stack (e.g. their own sysctls).
    pub fn single(short: &str) -> NatLab {
        ensure_lab_tools();
        test_user();
        remove_stale_labs();
        let n = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let mut lab = NatLab {
            prefix: format!("fg{}x{n}-", std::process::id()),
            created: Vec::new(),
            children: Mutex::new(Vec::new()),
            dir: temp_dir("netns"),
        };
        let full = lab.ns(short);
        lab.host_ok("ip", &["netns", "add", &full]);
        lab.created.push(full);
        lab.ip(short, &["link", "set", "lo", "up"]);
        lab
    }

    /// Full name of the lab namespace `short` (`"gw"` → `fg123x0-gw`).
    pub fn ns(&self, short: &str) -> String {
        format!("{}{short}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch dir of the lab (removed with it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn host_ok(&self, cmd: &str, args: &[&str]) {
        let out = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
        assert!(
            out.status.success(),
            "lab setup `{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip -n NS args…`, panicking on failure.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let full = self.ns(ns);
        let mut all = vec!["-n", full.as_str()];
        all.extend_from_slice(args);
        self.host_ok("ip", &all);
    }

    /// Loads an nftables ruleset into `ns`.
    pub fn nft(&self, ns: &str, rules: &str) {
        let file = self.dir.path().join(format!("{ns}.nft"));
        std::fs::write(&file, rules).unwrap();
        self.exec_ok(ns, "nft", &["-f", &file.display().to_string()]);
    }

    /// `ip netns exec NS cmd args…` and its output (synchronous; for short commands).
    pub fn exec(&self, ns: &str, cmd: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), cmd])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {ns} {cmd}: {e}"))
    }

    /// [`NatLab::exec`], panicking unless it exits 0; returns stdout.
    pub fn exec_ok(&self, ns: &str, cmd: &str, args: &[&str]) -> String {
        let out = self.exec(ns, cmd, args);
        assert!(
            out.status.success(),
            "`{cmd} {}` in {ns} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `cmd args…` in `ns` (own process group, output to the given files) and
    /// tracks it: it is killed by PID when the lab is dropped. Returns the PID.
    pub fn spawn(&self, ns: &str, cmd: &str, args: &[&str], out: &Path, err: &Path) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::fs::File::create(err).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd} in {ns}: {e}"));
        let pid = child.id();
        self.children.lock().unwrap().push((pid, child));
        pid
    }

    /// `Some(status)` if the tracked process `pid` has exited.
    pub fn exited(&self, pid: u32) -> Option<ExitStatus> {
        let mut children = self.children.lock().unwrap();
        children
            .iter_mut()
            .find(|(p, _)| *p == pid)
            .and_then(|(_, c)| c.try_wait().ok().flatten())
    }

    /// Kills the tracked process `pid` (and its group) now.
    pub fn kill(&self, pid: u32) {
        let mut children = self.children.lock().unwrap();
        if let Some(pos) = children.iter().position(|(p, _)| *p == pid) {
            let (pid, mut child) = children.remove(pos);
            kill_group(pid, Some(&mut child));
        }
    }

    /// Runs a client program in `ns` with a hard timeout (killed on timeout).
    pub async fn run_in(
        &self,
        ns: &str,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Output {
        let mut all = vec![
            "netns".to_string(),
            "exec".to_string(),
            self.ns(ns),
            program.to_string(),
        ];
        all.extend(args.iter().cloned());
        let mut out = run("ip", &all, timeout).await;
        out.what = format!("[{ns}] {program} {}", args.join(" "));
        out
    }

    /// True if a TCP connection from `from` to `addr` succeeds within 2 s.
    pub fn tcp_open(&self, from: &str, addr: &SocketAddr) -> bool {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{}",
            addr.ip().to_string().trim_matches(['[', ']']),
            addr.port()
        );
        self.exec(from, "timeout", &["2", "bash", "-c", &script])
            .status
            .success()
    }

    /// Starts vsftpd in `srv` on 198.19.0.20:21, explicit TLS with `require_ssl_reuse=YES`,
    /// `pasv_address=203.0.113.99`, passive ports 30000-30099.
    pub fn vsftpd(&self) -> LabVsftpd {
        self.vsftpd_in(
            "srv",
            VsftpdSpec {
                mode: VsftpdMode::Explicit {
                    require_reuse: true,
                },
                listen: SocketAddr::new(SRV_IP.parse().unwrap(), 21),
                pasv_address: Some(BOGUS_PASV.to_string()),
                pasv: SRV_PASV,
            },
        )
    }

    /// Starts vsftpd per `spec` in namespace `ns` and waits for its `220` (probed from
    /// inside `ns`).
    pub fn vsftpd_in(&self, ns: &str, spec: VsftpdSpec) -> LabVsftpd {
        let dir = self.dir.path().join(format!("vsftpd-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = spec.listen;
        let mut vs = LabVsftpd::prepare(spec, dir);
        let conf = vs.conf.display().to_string();
        let pid = self.spawn(
            ns,
            "/usr/sbin/vsftpd",
            &[&conf],
            &vs.dir.join("stdout"),
            &vs.dir.join("stderr"),
        );
        vs.pid = pid;
        let deadline = Instant::now() + Duration::from_secs(10);
        let script = format!(
            "exec 3<>/dev/tcp/{}/{}; head -c 3 <&3",
            listen.ip(),
            listen.port()
        );
        loop {
            if let Some(status) = self.exited(pid) {
                panic!("vsftpd in {ns} exited early: {status}\n{}", vs.output());
            }
            let probe = self.exec(ns, "timeout", &["2", "bash", "-c", &script]);
            if String::from_utf8_lossy(&probe.stdout).starts_with("220") {
                return vs;
            }
            assert!(
                Instant::now() < deadline,
                "vsftpd in {ns} not ready: {}\n{}",
                String::from_utf8_lossy(&probe.stderr),
                vs.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `yaml` (as `ftpsgate.yaml`), the gateway certificate (`gw.pem`/`gw.key`, SANs
    /// incl. 203.0.113.1, 198.19.0.10, 2001:db8:19::10) and `backend_ca` (as `ca.pem`) to
    /// a fresh dir, runs `ftpsgate run --config` in `gw` with `RUST_LOG=ftpsgate=debug`
    /// and waits until 198.19.0.10:21 accepts (probed from `lan`).
    pub fn gateway(&self, yaml: &str, backend_ca: &Path) -> GatewayProc {
        self.gateway_probe(
            yaml,
            backend_ca,
            SocketAddr::new(GW_IP.parse().unwrap(), 21),
        )
    }

    /// Like [`NatLab::gateway`], waiting for `probe` instead of 198.19.0.10:21.
    pub fn gateway_probe(&self, yaml: &str, backend_ca: &Path, probe: SocketAddr) -> GatewayProc {
        self.gateway_in("gw", yaml, backend_ca, "lan", probe)
    }

    /// Runs ftpsgate in namespace `ns` (see [`NatLab::gateway`]) and waits until `probe`
    /// accepts connections from namespace `probe_from`.
    pub fn gateway_in(
        &self,
        ns: &str,
        yaml: &str,
        backend_ca: &Path,
        probe_from: &str,
        probe: SocketAddr,
    ) -> GatewayProc {
        let dir = self.dir.path().join(format!("gateway-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = certs_with_sans(&dir, "gw", &[EDGE_WAN, GW_IP, GW_IP6]);
        std::fs::copy(backend_ca, dir.join("ca.pem")).unwrap();
        let config = dir.join("ftpsgate.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join("gateway.log");
        let bin = env!("CARGO_BIN_EXE_ftpsgate");
        let config_s = config.display().to_string();
        let pid = self.spawn(
            ns,
            "env",
            &[
                "RUST_LOG=ftpsgate=debug",
                "NO_COLOR=1",
                "RUST_BACKTRACE=1",
                bin,
                "run",
                "--config",
                &config_s,
            ],
            &dir.join("gateway.stdout"),
            &log,
        );
        let gw = GatewayProc {
            pid,
            dir,
            log,
            certs,
            yaml: yaml.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.exited(pid) {
                panic!(
                    "ftpsgate exited at start ({status}) — config not (yet) supported?\n{}",
                    gw.describe()
                );
            }
            if self.tcp_open(probe_from, &probe) {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "ftpsgate not accepting on {probe} after 15 s\n{}",
                gw.describe()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for (pid, mut child) in children {
            kill_group(pid, Some(&mut child));
        }
        for ns in self.created.iter().rev() {
            delete_netns(ns);
        }
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        if !left.is_empty() {
            eprintln!("natlab: namespaces left behind: {left:?}");
        }
    }
}

/// The gateway process in `gw` (killed by the lab).
pub struct GatewayProc {
    pub pid: u32,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// Client-facing certificates; clients trust `certs.ca_pem`.
    pub certs: Certs,
    pub yaml: String,
}

impl GatewayProc {
    /// The gateway's stderr (its log) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Config and log, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- gateway config:\n{}\n--- gateway log ({}):\n{}",
            self.yaml,
            self.log.display(),
            self.log()
        )
    }

    pub fn ca(&self) -> &Path {
        &self.certs.ca_pem
    }
}

/// What a [`LabVsftpd`] listens on and advertises.
#[derive(Clone, Debug)]
pub struct VsftpdSpec {
    pub mode: VsftpdMode,
    /// An IPv4 address gives `listen=YES`; IPv6 gives `listen_ipv6=YES` (+ `listen=NO`).
    pub listen: SocketAddr,
    pub pasv_address: Option<String>,
    pub pasv: (u16, u16),
}

/// A vsftpd with a config written here (in a lab namespace, or on the host).
pub struct LabVsftpd {
    pub spec: VsftpdSpec,
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub root: PathBuf,
    pub log_path: PathBuf,
    pub certs: Certs,
    pub pid: u32,
    /// Owned child when started on the host (killed on drop); lab-run ones are the lab's.
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl LabVsftpd {
    fn prepare(spec: VsftpdSpec, dir: PathBuf) -> LabVsftpd {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let certs = certs_with_sans(&dir, "vs", &[]);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        chown_to_test_user(&root);
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let log_path = dir.join("vsftpd.log");
        let conf = dir.join("vsftpd.conf");
        std::fs::write(
            &conf,
            super::vsftpd::config_text(
                spec.mode,
                spec.listen,
                spec.pasv,
                spec.pasv_address.as_deref(),
                &root,
                &empty,
                &log_path,
                &certs,
            ),
        )
        .unwrap();
        LabVsftpd {
            spec,
            dir,
            conf,
            root,
            log_path,
            certs,
            pid: 0,
            child: None,
            _tmp: None,
        }
    }

    /// Starts vsftpd on the host (e.g. on `[::1]`), waits for its `220`.
    pub fn start_host(spec: VsftpdSpec) -> LabVsftpd {
        test_user();
        let tmp = temp_dir("vsftpd6");
        let mut vs = LabVsftpd::prepare(spec, tmp.path().to_path_buf());
        vs._tmp = Some(tmp);
        let child = Command::new("/usr/sbin/vsftpd")
            .arg(&vs.conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(vs.dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(vs.dir.join("stderr")).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn /usr/sbin/vsftpd");
        vs.pid = child.id();
        vs.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = vs.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("vsftpd exited early: {status}\n{}", vs.output());
            }
            if let Ok(tcp) = TcpStream::connect_timeout(&vs.spec.listen, Duration::from_millis(500))
            {
                tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut line = String::new();
                if BufReader::new(tcp).read_line(&mut line).is_ok() && line.starts_with("220") {
                    return vs;
                }
            }
            assert!(
                Instant::now() < deadline,
                "vsftpd on {} not ready\n{}",
                vs.spec.listen,
                vs.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.spec.listen
    }

    /// The backend CA (what the gateway verifies vsftpd with).
    pub fn ca(&self) -> &Path {
        &self.certs.ca_pem
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deterministic pseudo-random file in the root, owned by the test user; its SHA-256.
    pub fn make_file(&self, name: &str, size: usize) -> String {
        super::make_owned_file(&self.root, name, size)
    }

    /// Puts `data` into the root as `name` (owned by the test user).
    pub fn put_file(&self, name: &str, data: &[u8]) -> PathBuf {
        super::put_owned_file(&self.root, name, data)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!(
            "--- vsftpd stdout: {}\n--- vsftpd stderr: {}\n--- vsftpd log:\n{}",
            read("stdout"),
            read("stderr"),
            self.log()
        )
    }
}

impl Drop for LabVsftpd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid, Some(&mut child));
        }
    }
}

/// curl run inside a lab namespace.
#[derive(Clone, Debug)]
pub struct NsCurl {
    pub ns: String,
    /// `host:port` as it goes into the URL (`[v6]:port` for IPv6).
    pub authority: String,
    pub security: Security,
    pub ca: PathBuf,
    pub extra: Vec<String>,
    pub timeout: Duration,
}

impl NsCurl {
    pub fn new(ns: &str, addr: SocketAddr, security: Security, ca: &Path) -> NsCurl {
        NsCurl {
            ns: ns.to_string(),
            authority: addr.to_string(),
            security,
            ca: ca.to_path_buf(),
            extra: Vec::new(),
            timeout: Duration::from_secs(40),
        }
    }

    fn url(&self, path: &str) -> String {
        let (user, pass) = test_user();
        let scheme = if self.security == Security::Implicit {
            "ftps"
        } else {
            "ftp"
        };
        format!(
            "{scheme}://{user}:{pass}@{}/{}",
            self.authority,
            path.trim_start_matches('/')
        )
    }

    /// Runs curl `-v` (so the 227/229 replies are in stderr) with `extra` and the URL.
    pub async fn raw(&self, lab: &NatLab, extra: &[&str], path: &str) -> Output {
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "-v".into(),
            "--connect-timeout".into(),
            "10".into(),
            "--max-time".into(),
            self.timeout
                .saturating_sub(Duration::from_secs(3))
                .as_secs()
                .to_string(),
            "--cacert".into(),
            self.ca.display().to_string(),
        ];
        match self.security {
            Security::Plain | Security::Implicit => {}
            Security::Explicit => args.push("--ssl-reqd".into()),
            Security::ExplicitClearData => args.push("--ftp-ssl-control".into()),
        }
        args.extend(self.extra.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.url(path));
        lab.run_in(&self.ns, "curl", &args, self.timeout).await
    }

    pub async fn get(&self, lab: &NatLab, remote: &str, local: &Path) -> Output {
        self.raw(lab, &["-o", &local.display().to_string()], remote)
            .await
    }

    pub async fn put(&self, lab: &NatLab, local: &Path, remote: &str) -> Output {
        self.raw(lab, &["-T", &local.display().to_string()], remote)
            .await
    }
}

/// lftp run inside a lab namespace (IPv6-safe URL, optional active mode).
#[derive(Clone, Debug)]
pub struct NsLftp {
    pub ns: String,
    pub addr: SocketAddr,
    pub security: Security,
    pub ca: PathBuf,
    pub passive: bool,
    pub timeout: Duration,
}

impl NsLftp {
    pub fn new(ns: &str, addr: SocketAddr, security: Security, ca: &Path) -> NsLftp {
        NsLftp {
            ns: ns.to_string(),
            addr,
            security,
            ca: ca.to_path_buf(),
            passive: true,
            timeout: Duration::from_secs(40),
        }
    }

    pub fn preamble(&self) -> String {
        let (user, pass) = test_user();
        let mut s = format!(
            "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
             set net:reconnect-interval-base 1; set xfer:clobber on; \
             set ftp:passive-mode {}; set ssl:ca-file {}; set ssl:verify-certificate yes; \
             set ssl:check-hostname yes; ",
            if self.passive { "on" } else { "off" },
            self.ca.display()
        );
        match self.security {
            Security::Plain => s.push_str("set ftp:ssl-allow no; "),
            Security::Explicit => s.push_str(
                "set ftp:ssl-allow yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; \
                 set ftp:ssl-protect-list true; ",
            ),
            Security::ExplicitClearData => s.push_str(
                "set ftp:ssl-allow yes; set ftp:ssl-force true; set ftp:ssl-protect-data false; \
                 set ftp:ssl-protect-list false; ",
            ),
            Security::Implicit => {
                s.push_str("set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; ")
            }
        }
        let scheme = if self.security == Security::Implicit {
            "ftps"
        } else {
            "ftp"
        };
        let host = match self.addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let _ = write!(
            s,
            "open -u {user},{pass} {scheme}://{host}:{}; ",
            self.addr.port()
        );
        s
    }

    /// Runs `commands` after the preamble with `debug 5` on (the whole protocol dialogue in stderr).
    pub async fn script(&self, lab: &NatLab, commands: &str) -> Output {
        let script = format!("debug 5; {}{}", self.preamble(), commands);
        lab.run_in(&self.ns, "lftp", &["-c".to_string(), script], self.timeout)
            .await
    }

    /// One session: `get down` into `local`, then `put up_local` as `up_remote`.
    pub async fn get_put(
        &self,
        lab: &NatLab,
        down: &str,
        local: &Path,
        up_local: &Path,
        up_remote: &str,
    ) -> Output {
        let commands = format!(
            "get {down} -o {}; put {} -o {up_remote}",
            local.display(),
            up_local.display()
        );
        self.script(lab, &commands).await
    }
}

/// Runs `tests/py/ftpclient.py` in `ns` with `args`.
pub async fn ftplib(lab: &NatLab, ns: &str, args: &[String]) -> Output {
    let mut all = vec![py_script("ftpclient.py").display().to_string()];
    all.extend(args.iter().cloned());
    lab.run_in(ns, python(), &all, Duration::from_secs(45))
        .await
}

/// Lines of `text` that carry an FTP reply `code` (curl `< 227 …`, lftp `<--- 227 …`,
/// ftplib script `REPLY 227 …`), trimmed to start at the code.
pub fn reply_lines(text: &str, code: u16) -> Vec<String> {
    let needle = format!("{code} ");
    text.lines()
        .filter_map(|l| {
            let pos = l.find(&needle)?;
            let before = l[..pos].trim_end();
            let prefix_ok = before.is_empty()
                || before.ends_with('<')
                || before.ends_with("<---")
                || before.ends_with("REPLY");
            prefix_ok.then(|| l[pos..].to_string())
        })
        .collect()
}

/// Port of a `229 Entering Extended Passive Mode (|||port|)` reply.
pub fn parse_229(text: &str) -> Option<u16> {
    let start = text.find("(|||")? + 4;
    let end = start + text[start..].find('|')?;
    text[start..end].parse().ok()
}

/// Fails if any namespace whose name starts with `prefix` is still there (after a lab was
/// dropped).
#[track_caller]
pub fn assert_no_namespaces_left(prefix: &str) {
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// What a test file adds to a [`LabSite`] (which it wraps and derefs to): the context of
/// its failure messages. The checks here then carry that context.
pub trait SiteChecks: std::ops::Deref<Target = LabSite> {
    /// Gateway config and logs, and whatever else explains a failure in this file.
    fn ctx(&self) -> String;

    /// The client `out` exited successfully.
    #[track_caller]
    fn assert_ok(&self, out: &Output) {
        assert!(out.success(), "client failed: {out}\n{}", self.ctx());
    }

    /// `local` has the SHA-256 `sha`.
    #[track_caller]
    fn check_download(&self, local: &Path, sha: &str, what: &str) {
        self.check_download_ctx(local, sha, what, || self.ctx());
    }

    /// `remote` arrived in the vsftpd root with the SHA-256 `sha`.
    #[track_caller]
    fn check_upload(&self, remote: &str, sha: &str, what: &str) {
        self.check_upload_ctx(remote, sha, what, || self.ctx());
    }

    /// [`LabSite::lftp_round_trip`] with files of `size` bytes and this context.
    #[allow(async_fn_in_trait)]
    async fn lftp_round_trip(
        &self,
        lftp: &NsLftp,
        down: &str,
        sha: &str,
        name: &str,
        size: usize,
        what: &str,
    ) -> Output {
        (**self)
            .lftp_round_trip(lftp, down, sha, name, size, what, || self.ctx())
            .await
    }
}

/// Lab + backend + gateway, as the NAT-lab test files use them (each wraps it in its own
/// `Site` with its own failure context). Field order = drop order: the lab (which kills
/// every process by PID and deletes the namespaces) goes last.
pub struct LabSite {
    pub gw: GatewayProc,
    pub vs: LabVsftpd,
    pub work: PathBuf,
    pub lab: NatLab,
}

impl LabSite {
    /// Lab (`prepare` runs on it first), vsftpd, the gateway on `yaml`, and a client dir.
    pub fn start(yaml: &str, prepare: impl FnOnce(&NatLab)) -> LabSite {
        let lab = NatLab::build();
        prepare(&lab);
        let vs = lab.vsftpd();
        let gw = lab.gateway(yaml, vs.ca());
        let work = lab.dir().join("client");
        std::fs::create_dir_all(&work).unwrap();
        LabSite { gw, vs, work, lab }
    }

    /// The last `n` lines of the vsftpd log.
    pub fn vsftpd_tail(&self, n: usize) -> String {
        let vs_log = self.vs.log();
        let lines: Vec<&str> = vs_log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The site's public address (edge firewall WAN side).
    pub fn public(&self, port: u16) -> SocketAddr {
        SocketAddr::new(EDGE_WAN.parse().unwrap(), port)
    }

    /// The gateway's inside IPv4 address.
    pub fn inside(&self, port: u16) -> SocketAddr {
        SocketAddr::new(GW_IP.parse().unwrap(), port)
    }

    /// The gateway's inside IPv6 address.
    pub fn inside6(&self, port: u16) -> SocketAddr {
        SocketAddr::new(GW_IP6.parse().unwrap(), port)
    }

    /// A file `name` of `size` pseudo-random bytes in the client's work dir, to upload;
    /// returns its path and SHA-256.
    pub fn upload_source(&self, name: &str, size: usize) -> (PathBuf, String) {
        let path = self.local(name);
        let sha = super::make_file(&path, size);
        (path, sha)
    }

    /// A path in the client's work dir.
    pub fn local(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Tears the lab down and checks no namespace of it is left.
    pub fn finish(self) {
        let prefix = self.lab.prefix().to_string();
        drop(self);
        assert_no_namespaces_left(&prefix);
    }

    /// One `lftp` session that gets `down` (SHA-256 `sha`) into `{name}.bin` of the work
    /// dir and puts a fresh `{name}-up.bin` of `size` bytes; checks lftp's exit and both
    /// files (`ctx` adds context to a failure) and returns lftp's output.
    #[allow(clippy::too_many_arguments)]
    pub async fn lftp_round_trip(
        &self,
        lftp: &NsLftp,
        down: &str,
        sha: &str,
        name: &str,
        size: usize,
        what: &str,
        ctx: impl Fn() -> String,
    ) -> Output {
        let local = self.local(&format!("{name}.bin"));
        let up_remote = format!("{name}-up.bin");
        let (up_local, up_sha) = self.upload_source(&up_remote, size);
        let out = lftp
            .get_put(&self.lab, down, &local, &up_local, &up_remote)
            .await;
        assert!(out.success(), "client failed: {out}\n{}", ctx());
        self.check_download_ctx(&local, sha, what, &ctx);
        self.check_upload_ctx(&up_remote, &up_sha, what, &ctx);
        out
    }

    /// `local` has the SHA-256 `sha`; `ctx` adds context to the failure message.
    #[track_caller]
    pub fn check_download_ctx(
        &self,
        local: &Path,
        sha: &str,
        what: &str,
        ctx: impl FnOnce() -> String,
    ) {
        assert_eq!(
            sha256_file(local),
            sha,
            "{what}: downloaded file corrupted\n{}",
            ctx()
        );
    }

    /// `remote` exists in the vsftpd root with the SHA-256 `sha`.
    #[track_caller]
    pub fn check_upload_ctx(&self, remote: &str, sha: &str, what: &str, ctx: impl Fn() -> String) {
        let path = self.vs.root().join(remote);
        assert!(path.is_file(), "{what}: upload {remote} missing\n{}", ctx());
        assert_eq!(
            sha256_file(&path),
            sha,
            "{what}: uploaded file corrupted\n{}",
            ctx()
        );
    }

    /// Starts `ftpclient.py hold_get` from `lan` against the gateway's inside address:
    /// PASV, then wait for the `go` file. Returns once the client printed its PASV
    /// address, which must be the gateway's inside address.
    pub async fn hold_get_ctx(
        &self,
        remote: &str,
        local: &Path,
        go: &Path,
        ctx: impl Fn() -> String,
    ) -> HeldGet {
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.lab.ns("lan"), python()])
            .arg(py_script("ftpclient.py"))
            .args([
                "--host",
                GW_IP,
                "--ca",
                &self.gw.ca().display().to_string(),
                &format!("hold_get~~{remote}~~{}~~{}", local.display(), go.display()),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ftpclient.py");
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = String::new();
        let pasv = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = stdout.next_line().await {
                seen.push_str(&line);
                seen.push('\n');
                if let Some(rest) = line.strip_prefix("PASV_ADDR ") {
                    let mut it = rest.split_whitespace();
                    let host = it.next().unwrap().to_string();
                    let port: u16 = it.next().unwrap().parse().unwrap();
                    return Some((host, port));
                }
            }
            None
        })
        .await;
        let Ok(Some((host, port))) = pasv else {
            let _ = child.kill().await;
            let err = child.wait_with_output().await.unwrap();
            panic!(
                "no PASV_ADDR from the client: {seen}\n{}\n{}",
                String::from_utf8_lossy(&err.stderr),
                ctx()
            );
        };
        assert_eq!(host, GW_IP, "internal client got the wrong 227\n{}", ctx());
        HeldGet {
            child,
            stdout,
            seen,
            port,
        }
    }
}

/// A `hold_get` client between its PASV and its data connection.
pub struct HeldGet {
    pub child: tokio::process::Child,
    pub stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// Its stdout up to and including the `PASV_ADDR` line.
    pub seen: String,
    /// The passive port it was given.
    pub port: u16,
}
