//! Observability end to end: `/metrics` scraped during and after real transfers
//! (curl → ftpsgate → vsftpd), the transfer log, `/healthz` and `/readyz` with
//! active backend checks, `promtool` on the exposition and the shipped alert rules,
//! and no password in any log output.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::gateway::gateway_yaml;
use common::harness::{captured_logs, init_logs_capturing};
use common::raw::expect_refused;
use common::*;

/// A password that appears nowhere but in a failed `PASS` (must never be logged).
const WRONG_PASS: &str = "Wr0ng-S3cret-4f9c2b";

// ---------------------------------------------------------------- log capture

/// Captures `info` from everything and `ftpsgate` down to `trace` (all tests share it).
fn init_logs() {
    init_logs_capturing("info,ftpsgate=trace");
}

/// Everything captured so far, from every test of this binary.
fn logs_text() -> String {
    init_logs();
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------- gateway + HTTP

/// Extra YAML for the test gateway.
#[derive(Default)]
struct Observe {
    /// Added under the backend, e.g. `health_check: { interval: 1s, timeout: 1s }`.
    backend_extra: &'static str,
    /// `transfer_log.format`, when a transfer log is wanted (file `xferlog` in the dir).
    transfer_log: Option<&'static str>,
}

impl Observe {
    /// A transfer log in `format`.
    fn transfer_log(format: &'static str) -> Observe {
        Observe {
            transfer_log: Some(format),
            ..Observe::default()
        }
    }

    /// `extra` under the backend.
    fn backend_extra(extra: &'static str) -> Observe {
        Observe {
            backend_extra: extra,
            ..Observe::default()
        }
    }
}

/// [`start_observed`] in front of `vs`, verified with its CA.
async fn observe_vsftpd(vs: &Vsftpd, observe: Observe) -> (GwEnv, SocketAddr) {
    start_observed(Backend::for_vsftpd(vs), Some(vs), observe).await
}

/// Like `GwEnv::start`, plus `metrics: { bind: "127.0.0.1:0" }` and `observe`.
async fn start_observed(
    back: Backend,
    vs: Option<&Vsftpd>,
    observe: Observe,
) -> (GwEnv, SocketAddr) {
    init_logs();
    let dir = temp_dir("gw-obs");
    let certs = Certs::generate(dir.path(), "gw");
    if let Some(vs) = vs {
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
    }
    let mut yaml = gateway_yaml(&Frontend::explicit(), &back, pasv_range(), "5s");
    if !observe.backend_extra.is_empty() {
        yaml = yaml.replacen(
            "\ntimeouts:",
            &format!("\n    {}\ntimeouts:", observe.backend_extra),
            1,
        );
    }
    yaml.push_str("metrics: { bind: \"127.0.0.1:0\" }\n");
    if let Some(format) = observe.transfer_log {
        yaml.push_str(&format!(
            "transfer_log: {{ path: xferlog, format: {format} }}\n"
        ));
    }
    let gateway = start_gateway(&yaml, dir.path()).await;
    let metrics = gateway.metrics_addr().expect("metrics endpoint bound");
    (
        GwEnv {
            gateway: Some(gateway),
            dir,
            certs,
            yaml,
        },
        metrics,
    )
}

/// A gateway in front of `vs` with a 1 s health check, returned once the first check
/// has reported `vs` up (it runs at once; allowed one timeout plus slack).
async fn start_checked(vs: &Vsftpd) -> (GwEnv, SocketAddr) {
    let (gw, maddr) = observe_vsftpd(
        vs,
        Observe::backend_extra("health_check: { interval: 1s, timeout: 1s }"),
    )
    .await;
    scrape_until(maddr, Duration::from_secs(3), "backend up", |s| {
        s.get("ftpsgate_backend_up{backend=\"vs\"}") == 1.0
    })
    .await;
    (gw, maddr)
}

/// One HTTP/1.1 GET; returns (status, content-type, body).
async fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to metrics endpoint {addr}: {e}"));
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .expect("read HTTP response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head/body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// A parsed exposition: series (`name{labels}`) → value.
#[derive(Debug, Clone)]
struct Scrape {
    text: String,
    values: HashMap<String, f64>,
}

impl Scrape {
    /// The value of a series, 0 when absent (counters not yet created).
    fn get(&self, series: &str) -> f64 {
        self.values.get(series).copied().unwrap_or(0.0)
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, content_type, text) = http_get(addr, "/metrics", None).await;
    assert_eq!(status, 200, "/metrics: {text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let values = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    Scrape { text, values }
}

/// Polls `/metrics` until `cond` holds (counters of a finished session are
/// recorded a moment after the client sees its last reply).
async fn scrape_until(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    cond: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + within;
    loop {
        let s = scrape(addr).await;
        if cond(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not reached within {within:?}; last scrape:\n{}",
                s.text
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Change of every series between two scrapes.
fn delta(before: &Scrape, after: &Scrape, series: &str) -> f64 {
    after.get(series) - before.get(series)
}

fn promtool() -> &'static str {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "promtool missing: run ./scripts/test or `apt-get install prometheus`"
    );
    "promtool"
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_a_curl_download_and_upload() {
    let vs = Vsftpd::strict();
    let (gw, maddr) = observe_vsftpd(&vs, Observe::transfer_log("xferlog")).await;
    const DOWN: usize = 3 * MIB + 517;
    const UP: usize = 200 * KIB + 3;
    let sha = vs.make_file("obs-down.bin", DOWN);
    let curl = Curl::new(gw.addr(), Security::Explicit, Some(&gw.certs.ca_pem));
    let work = temp_dir("client");

    let before = scrape(maddr).await;
    assert_eq!(
        before.get("ftpsgate_sessions_active{listener=\"edge\"}"),
        0.0
    );

    // During: a rate-limited download keeps a session (and its pinhole) open.
    let local = work.path().join("obs-down.bin");
    let slow = {
        let curl = curl.clone();
        let local = local.clone();
        tokio::spawn(async move {
            curl.raw(
                &["--limit-rate", "2M", "-o", &local.display().to_string()],
                "obs-down.bin",
            )
            .await
        })
    };
    scrape_until(
        maddr,
        Duration::from_secs(10),
        "session active during transfer",
        |s| {
            s.get("ftpsgate_sessions_active{listener=\"edge\"}") == 1.0
                && s.get("ftpsgate_pinholes_used_total")
                    > before.get("ftpsgate_pinholes_used_total")
        },
    )
    .await;
    slow.await.unwrap().assert_ok();
    assert_eq!(sha256_file(&local), sha, "download through the gateway");

    // After: one session, one login, one transfer, the file's bytes on both legs.
    let after = scrape_until(maddr, Duration::from_secs(5), "session ended", |s| {
        s.get("ftpsgate_sessions_active{listener=\"edge\"}") == 0.0
            && s.get("ftpsgate_sessions_total{listener=\"edge\",outcome=\"ok\"}") >= 1.0
    })
    .await;
    let d = |series: &str| delta(&before, &after, series);
    let down = DOWN as f64;
    let checks = [
        (
            "ftpsgate_sessions_total{listener=\"edge\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "ftpsgate_logins_total{listener=\"edge\",result=\"ok\"}",
            1.0,
        ),
        (
            "ftpsgate_transfers_total{listener=\"edge\",direction=\"download\",result=\"ok\"}",
            1.0,
        ),
        (
            "ftpsgate_data_bytes_total{side=\"client\",direction=\"download\"}",
            down,
        ),
        (
            "ftpsgate_data_bytes_total{side=\"backend\",direction=\"download\"}",
            down,
        ),
        (
            "ftpsgate_transfer_duration_seconds_count{direction=\"download\"}",
            1.0,
        ),
        ("ftpsgate_commands_total{verb=\"RETR\"}", 1.0),
        ("ftpsgate_commands_total{verb=\"USER\"}", 1.0),
        ("ftpsgate_commands_total{verb=\"PASS\"}", 1.0),
        ("ftpsgate_pinholes_opened_total", 1.0),
        ("ftpsgate_pinholes_used_total", 1.0),
        ("ftpsgate_pinholes_expired_total", 0.0),
        (
            "ftpsgate_backend_connect_seconds_count{backend=\"vs\"}",
            1.0,
        ),
    ];
    let mut wrong = Vec::new();
    for (series, want) in checks {
        if d(series) != want {
            wrong.push(format!("{series}: moved by {}, want {want}", d(series)));
        }
    }
    assert_eq!(after.get("ftpsgate_pinholes_open"), 0.0);
    // Control + data on the client side, the data one resumed (require_data_reuse).
    let client_tls_ok: f64 = ["TLSv1.2", "TLSv1.3"]
        .iter()
        .flat_map(|v| ["true", "false"].map(|r| (v, r)))
        .map(|(v, r)| {
            d(&format!(
                "ftpsgate_tls_handshakes_total{{side=\"client\",version=\"{v}\",result=\"ok\",resumed=\"{r}\"}}"
            ))
        })
        .sum();
    if client_tls_ok != 2.0 {
        wrong.push(format!("client TLS handshakes ok: {client_tls_ok}, want 2"));
    }
    let resumed: f64 = ["TLSv1.2", "TLSv1.3"]
        .iter()
        .map(|v| {
            d(&format!(
                "ftpsgate_tls_handshakes_total{{side=\"client\",version=\"{v}\",result=\"ok\",resumed=\"true\"}}"
            ))
        })
        .sum();
    if resumed != 1.0 {
        wrong.push(format!("client TLS resumed handshakes: {resumed}, want 1"));
    }
    let backend_tls: f64 = after
        .values
        .iter()
        .filter(|(k, _)| {
            k.starts_with("ftpsgate_tls_handshakes_total{side=\"backend\"")
                && k.contains("result=\"ok\"")
        })
        .map(|(k, v)| v - before.get(k))
        .sum();
    if backend_tls != 2.0 {
        wrong.push(format!(
            "backend TLS handshakes ok: {backend_tls}, want 2 (control + data)"
        ));
    }
    assert!(
        wrong.is_empty(),
        "counters after one download:\n{}\n--- scrape:\n{}",
        wrong.join("\n"),
        after.text
    );

    // Upload.
    let up_local = work.path().join("obs-up.bin");
    let up_sha = make_file(&up_local, UP);
    curl.put(&up_local, "obs-up.bin").await.assert_ok();
    assert_eq!(sha256_file(&vs.root().join("obs-up.bin")), up_sha);
    let after_up = scrape_until(maddr, Duration::from_secs(5), "upload session ended", |s| {
        s.get("ftpsgate_sessions_total{listener=\"edge\",outcome=\"ok\"}")
            >= after.get("ftpsgate_sessions_total{listener=\"edge\",outcome=\"ok\"}") + 1.0
    })
    .await;
    let d = |series: &str| delta(&after, &after_up, series);
    let up = UP as f64;
    for (series, want) in [
        (
            "ftpsgate_transfers_total{listener=\"edge\",direction=\"upload\",result=\"ok\"}",
            1.0,
        ),
        (
            "ftpsgate_data_bytes_total{side=\"client\",direction=\"upload\"}",
            up,
        ),
        (
            "ftpsgate_data_bytes_total{side=\"backend\",direction=\"upload\"}",
            up,
        ),
        ("ftpsgate_commands_total{verb=\"STOR\"}", 1.0),
        (
            "ftpsgate_logins_total{listener=\"edge\",result=\"ok\"}",
            1.0,
        ),
        (
            "ftpsgate_transfers_total{listener=\"edge\",direction=\"download\",result=\"ok\"}",
            0.0,
        ),
    ] {
        assert_eq!(
            d(series),
            want,
            "{series} after one upload\n{}",
            after_up.text
        );
    }

    // Bounded labels: no user name, no client address in the exposition.
    let (user, _) = test_user();
    assert!(!after_up.text.contains(user), "user name in /metrics");
    assert!(!after_up.text.contains("127.0.0."), "an IP in /metrics");

    // The transfer log: one classic line per transfer.
    let xferlog = std::fs::read_to_string(gw.dir.path().join("xferlog")).expect("xferlog");
    let lines: Vec<&str> = xferlog.lines().collect();
    assert_eq!(lines.len(), 2, "{xferlog}");
    let fields: Vec<&str> = lines[0].split(' ').filter(|f| !f.is_empty()).collect();
    // DDD MMM dd hh:mm:ss YYYY secs host bytes path type _ dir access user ftp 0 * status
    assert_eq!(fields.len(), 18, "{}", lines[0]);
    assert_eq!(fields[6], "127.0.0.1", "{}", lines[0]);
    assert_eq!(fields[7], DOWN.to_string(), "{}", lines[0]);
    assert!(fields[8].ends_with("obs-down.bin"), "{}", lines[0]);
    assert_eq!(fields[9..].join(" "), format!("b _ o r {user} ftp 0 * c"));
    let fields: Vec<&str> = lines[1].split(' ').filter(|f| !f.is_empty()).collect();
    assert_eq!(fields[7], UP.to_string(), "{}", lines[1]);
    assert_eq!(fields[11], "i", "{}", lines[1]);
    assert_eq!(fields[17], "c", "{}", lines[1]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stealing_attempt_counts_a_refusal() {
    let vs = Vsftpd::strict();
    let (gw, maddr) = observe_vsftpd(&vs, Observe::default()).await;
    let sha = vs.make_file("steal.bin", 64 * KIB);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    let before = scrape(maddr).await;
    assert_eq!(
        before.get("ftpsgate_pinhole_refusals_total{reason=\"stealing\"}"),
        0.0,
        "refusal series exist from the start:\n{}",
        before.text
    );
    let pinhole = ftp.pasv().await;
    let thief = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    expect_refused(Some(thief), pinhole, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("pinhole served 127.0.0.2: {e}"));
    let plan = ftp.data_plan();
    let t = ftp.transfer_at(pinhole, "RETR steal.bin", plan).await;
    assert_eq!(sha256_bytes(t.assert_ok()), sha);
    let after = scrape_until(
        maddr,
        Duration::from_secs(5),
        "stealing refusal counted",
        |s| s.get("ftpsgate_pinhole_refusals_total{reason=\"stealing\"}") >= 1.0,
    )
    .await;
    assert_eq!(
        after.get("ftpsgate_pinhole_refusals_total{reason=\"stealing\"}"),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "ftpsgate_transfers_total{listener=\"edge\",direction=\"download\",result=\"ok\"}"
        ),
        1.0,
        "the real transfer still counts"
    );
    assert!(!after.text.contains("127.0.0.2"), "thief IP in /metrics");
    ftp.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_reports_a_backend_taken_down_and_readyz_follows() {
    let vs = Vsftpd::strict();
    let (gw, maddr) = start_checked(&vs).await;
    let (status, _, body) = http_get(maddr, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("backend vs: up"), "{body}");

    drop(vs);
    let down_since = Instant::now();
    // Within one interval plus one check timeout (plus scheduling slack).
    let s = scrape_until(
        maddr,
        Duration::from_secs(3),
        "backend reported down",
        |s| s.get("ftpsgate_backend_up{backend=\"vs\"}") == 0.0,
    )
    .await;
    assert!(
        s.get("ftpsgate_backend_health_checks_total{backend=\"vs\",result=\"failed\"}") >= 1.0,
        "{}",
        s.text
    );
    let (status, _, body) = http_get(maddr, "/readyz", None).await;
    assert_eq!(status, 503, "readyz with the only backend down: {body}");
    assert!(body.contains("backend vs: down"), "{body}");
    assert!(down_since.elapsed() < Duration::from_secs(3));
    let (status, _, body) = http_get(maddr, "/healthz", None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "healthz: process is up"
    );
    assert!(
        logs_text().contains("backend unhealthy"),
        "the transition is logged"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checks_a_backend_counts_as_healthy() {
    ensure_tools();
    let back = Backend {
        addr: dead_addr(),
        mode: "none",
        auth: BackendAuth::NoVerify,
        min_version: None,
        max_version: None,
        data_protection: None,
    };
    let (gw, maddr) = start_observed(back, None, Observe::default()).await;
    let (status, _, body) = http_get(maddr, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http_get(maddr, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let s = scrape(maddr).await;
    assert_eq!(
        s.get("ftpsgate_backend_up{backend=\"vs\"}"),
        1.0,
        "{}",
        s.text
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        s.get(&format!("ftpsgate_build_info{{version=\"{version}\"}}")),
        1.0
    );
    let (status, _, _) = http_get(maddr, "/nope", None).await;
    assert_eq!(status, 404);
    let (status, content_type, body) = http_get(
        maddr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    gw.shutdown().await;
    // The endpoint goes away with the gateway.
    assert!(tokio::net::TcpStream::connect(maddr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition_and_the_shipped_rules() {
    let promtool = promtool();
    let vs = Vsftpd::strict();
    let (gw, maddr) = observe_vsftpd(
        &vs,
        Observe::backend_extra("health_check: { interval: 2s, timeout: 1s }"),
    )
    .await;
    vs.make_file("p.bin", 10 * KIB);
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    ftp.retr("p.bin").await;
    ftp.quit().await;
    let s = scrape_until(
        maddr,
        Duration::from_secs(5),
        "some traffic recorded",
        |s| {
            s.get(
                "ftpsgate_transfers_total{listener=\"edge\",direction=\"download\",result=\"ok\"}",
            ) == 1.0
                && s.get("ftpsgate_backend_health_checks_total{backend=\"vs\",result=\"ok\"}")
                    >= 1.0
        },
    )
    .await;

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(s.text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n--- exposition:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.text
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [
        vec!["check", "rules", "deploy/prometheus/alerts.yml"],
        vec!["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let out = Command::new(promtool)
            .args(&args)
            .current_dir(root)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_logs_metrics_or_transfer_log() {
    let vs = Vsftpd::strict();
    let (gw, maddr) = observe_vsftpd(&vs, Observe::transfer_log("json")).await;
    let (user, pass) = test_user();
    vs.make_file("secret.bin", 4 * KIB);

    // A failed login with a distinctive password, then a good one and a transfer.
    let mut ftp = RawFtp::connect_explicit(gw.addr(), gw.certs.client_config()).await;
    let r = ftp.cmd(&format!("USER {user}")).await.unwrap();
    assert_eq!(r.code, 331, "{r}");
    let r = ftp.cmd(&format!("PASS {WRONG_PASS}")).await.unwrap();
    assert_eq!(r.code, 530, "wrong password: {r}");
    ftp.quit().await;
    let mut ftp = RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    ftp.retr("secret.bin").await;
    ftp.quit().await;
    let s = scrape_until(maddr, Duration::from_secs(5), "both sessions ended", |s| {
        s.get("ftpsgate_sessions_active{listener=\"edge\"}") == 0.0
            && s.get("ftpsgate_logins_total{listener=\"edge\",result=\"failed\"}") == 1.0
    })
    .await;

    let logs = logs_text();
    assert!(
        logs.contains("session{id="),
        "sessions log inside a span with an id:\n{logs}"
    );
    let xferlog = std::fs::read_to_string(gw.dir.path().join("xferlog")).unwrap();
    assert!(
        xferlog.contains("\"path\":\"secret.bin\"") && xferlog.contains("\"complete\":true"),
        "{xferlog}"
    );
    for secret in [pass, WRONG_PASS] {
        assert!(
            !logs.contains(secret),
            "password {secret} in the log output"
        );
        assert!(!xferlog.contains(secret), "password in the transfer log");
        assert!(!s.text.contains(secret), "password in /metrics");
    }
    gw.shutdown().await;
}

/// A backend added by reload is health-checked and shows in `/readyz` and the metrics
/// (before: the health set was fixed at start, so a new backend stayed invisible and
/// counted as healthy for routing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_backend_to_health_checks_and_readyz() {
    let vs = Vsftpd::strict();
    let (gw, maddr) = start_checked(&vs).await;
    let yaml = gw.yaml.replacen(
        "\ntimeouts:",
        &format!(
            "\n  - name: spare\n    address: \"{}\"\n    tls: {{ mode: none }}\n    health_check: {{ interval: 1s, timeout: 1s }}\ntimeouts:",
            dead_addr()
        ),
        1,
    );
    let config = ftpsgate::config::Config::from_yaml_str(&yaml, gw.dir.path())
        .unwrap_or_else(|e| panic!("reloaded config rejected: {e}\n{yaml}"));
    gw.gateway
        .as_ref()
        .expect("running")
        .reload(config)
        .unwrap_or_else(|e| panic!("reload failed: {e:?}"));
    let s = scrape_until(maddr, Duration::from_secs(5), "spare checked", |s| {
        s.get("ftpsgate_backend_health_checks_total{backend=\"spare\",result=\"failed\"}") >= 1.0
    })
    .await;
    assert_eq!(
        s.get("ftpsgate_backend_up{backend=\"spare\"}"),
        0.0,
        "{}",
        s.text
    );
    let (status, _, body) = http_get(maddr, "/readyz", None).await;
    assert_eq!(status, 200, "vs is still up: {body}");
    assert!(body.contains("backend spare: down"), "{body}");
    assert!(body.contains("backend vs: up"), "kept its state: {body}");
    gw.shutdown().await;
}

/// Issue 15 item 13: process metrics read from /proc, passive-port usage per listener
/// against its range, and health-check failures counted apart from the backend errors
/// sessions meet (the backend-errors alert no longer double-counts an outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_process_passive_ports_and_health_failures_apart() {
    let vs = Vsftpd::strict();
    let (gw, maddr) = start_checked(&vs).await;
    let s = scrape(maddr).await;
    let open = s.get("ftpsgate_process_open_fds");
    let max = s.get("ftpsgate_process_max_fds");
    assert!(open > 3.0 && max >= open, "fds {open} / {max}\n{}", s.text);
    assert!(
        s.get("ftpsgate_process_resident_memory_bytes") > 1.0e6,
        "{}",
        s.text
    );
    assert!(
        s.text.contains("ftpsgate_process_cpu_seconds_total "),
        "{}",
        s.text
    );
    let started = s.get("ftpsgate_process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started > now - 86_400.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
    assert_eq!(
        s.get("ftpsgate_passive_ports{listener=\"edge\"}"),
        PASV_RANGE_WIDTH as f64,
        "{}",
        s.text
    );
    assert_eq!(
        s.get("ftpsgate_passive_ports_in_use{listener=\"edge\"}"),
        0.0
    );
    // Expiry: the CA file trusted toward vs, and the leaf vs presented to the checks.
    for cert in ["ca", "leaf"] {
        let series = format!(
            "ftpsgate_certificate_expiry_timestamp_seconds{{scope=\"backend\",name=\"vs\",cert=\"{cert}\"}}"
        );
        assert!(s.get(&series) > now, "{series}\n{}", s.text);
    }
    let served = "ftpsgate_certificate_expiry_timestamp_seconds{scope=\"listener\",name=\"edge\",cert=\"default\"}";
    assert!(s.get(served) > now, "{}", s.text);

    // A PASV binds one port of the range until its pinhole is used or dropped.
    let mut ftp = common::raw::RawFtp::ready_explicit(gw.addr(), gw.certs.client_config()).await;
    ftp.pasv().await;
    scrape_until(
        maddr,
        Duration::from_secs(3),
        "one passive port in use",
        |s| s.get("ftpsgate_passive_ports_in_use{listener=\"edge\"}") == 1.0,
    )
    .await;
    ftp.cmd("QUIT").await.ok();
    drop(ftp);
    scrape_until(
        maddr,
        Duration::from_secs(5),
        "passive port released",
        |s| s.get("ftpsgate_passive_ports_in_use{listener=\"edge\"}") == 0.0,
    )
    .await;

    // Take the backend away: the health checks fail, and only they count it.
    drop(vs);
    let s = scrape_until(
        maddr,
        Duration::from_secs(4),
        "health-check failures",
        |s| {
            s.values.iter().any(|(k, v)| {
                k.starts_with("ftpsgate_backend_health_check_failures_total{backend=\"vs\"")
                    && *v >= 1.0
            })
        },
    )
    .await;
    assert!(
        !s.values.iter().any(|(k, v)| k
            .starts_with("ftpsgate_backend_errors_total{backend=\"vs\"")
            && *v > 0.0),
        "health checks leaked into backend_errors_total:\n{}",
        s.text
    );
    gw.shutdown().await;
}

/// The alert rules behave as documented (`promtool test rules`): the expiry alert fires
/// 14 days ahead, a refused reload alerts for as long as it is not followed by a good one,
/// fds and the passive range alert above 80 %.
#[test]
fn promtool_rule_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(promtool())
        .args(["test", "rules"])
        .arg(root.join("deploy/prometheus/alerts.test.yml"))
        .output()
        .expect("run promtool test rules");
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
