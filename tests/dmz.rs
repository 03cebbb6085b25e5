//! DMZ mode (issue 22): an edge gateway reaches a strict vsftpd only through a
//! connector that dialled out to it (QUIC, mutual TLS). In-process tests on
//! loopback prove the data path, session reuse through the tunnel, failover and
//! the refusals; `three_namespaces_*` runs the real layout (inet → dmz ← lan)
//! with the inner firewall dropping every new connection from the DMZ.
//! Every transfer is checked by SHA-256 both ways.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::clients::FileClient;
use common::*;

/// Tunnel PKI in `dir`: the edge's server certificate (`edge*.pem`) and the
/// connector's client certificate (`conn*.pem`), each from its own CA.
fn tunnel_certs(dir: &Path) -> (Certs, Certs) {
    let edge = Certs::generate_client(dir, "edge", &["localhost", "127.0.0.1", "198.18.5.1"]);
    let conn = Certs::generate_client(dir, "conn", &["connector.lan"]);
    (edge, conn)
}

/// The edge policy: listener `edge` (explicit TLS) → backend `vs` via tunnel
/// `lan` (explicit TLS to vsftpd, verified with `vs-ca.pem`).
fn edge_yaml(bind: &str, advertise: &str, tunnel: &str, pasv: (u16, u16)) -> String {
    format!(
        r#"listeners:
  - name: edge
    bind: "{bind}"
    tls: {{ mode: explicit, cert: gw.pem, key: gw.key, require: true }}
    passive: {{ ports: "{p0}-{p1}", advertise: "{advertise}" }}
    backend: vs
backends:
  - name: vs
    via: lan
    tls: {{ mode: explicit, ca: vs-ca.pem, server_name: localhost }}
tunnels:
  - name: lan
    listen: "{tunnel}"
    tls: {{ cert: edge.pem, key: edge.key, client_ca: conn-ca.pem }}
timeouts: {{ pinhole: 5s }}
"#,
        p0 = pasv.0,
        p1 = pasv.1,
    )
}

/// The connector policy: dial `edge`, serve backend `vs` at `backend`.
fn connector_yaml(edge: &str, backend: SocketAddr) -> String {
    format!(
        r#"connect:
  - edge: "{edge}"
    server_name: localhost
    tls: {{ cert: conn.pem, key: conn.key, ca: edge-ca.pem }}
    backends:
      - name: vs
        address: "{backend}"
"#
    )
}

/// Waits until `metric` reaches `want` in `gw`'s metrics (or panics).
async fn wait_metric(gw: &ftpsgate::Gateway, series: &str, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = gw.metrics().encode();
        let now = text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        });
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now:?}, want {want}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CONNECTORS_UP: &str = "ftpsgate_tunnel_connectors{tunnel=\"lan\"}";

/// An edge and a connector in this process, on loopback, in front of `vs`.
struct Loop {
    edge: ftpsgate::Gateway,
    dir: tempfile::TempDir,
    gw_certs: Certs,
}

impl Loop {
    async fn start(vs: &Vsftpd) -> Loop {
        let dir = temp_dir("dmz");
        let gw_certs = Certs::generate(dir.path(), "gw");
        tunnel_certs(dir.path());
        std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
        let yaml = edge_yaml("127.0.0.1:0", "127.0.0.1", "127.0.0.1:0", pasv_range());
        let edge = gateway::start_gateway(&yaml, dir.path()).await;
        Loop {
            edge,
            dir,
            gw_certs,
        }
    }

    fn tunnel(&self) -> SocketAddr {
        self.edge.tunnel_addr("lan").expect("tunnel lan bound")
    }

    /// A connector (own gateway process state) serving `backend`.
    async fn connector(&self, backend: SocketAddr) -> ftpsgate::Gateway {
        let dir = self.dir.path().join(format!("conn-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["conn.pem", "conn.key", "edge-ca.pem"] {
            std::fs::copy(self.dir.path().join(f), dir.join(f)).unwrap();
        }
        let yaml = connector_yaml(&self.tunnel().to_string(), backend);
        gateway::start_gateway(&yaml, &dir).await
    }

    fn addr(&self) -> SocketAddr {
        self.edge.local_addr("edge").unwrap()
    }
}

/// Download and upload of `size` and a listing through `client`, SHA-256
/// checked on both ends.
async fn round_trip(client: &impl FileClient, vs: &Vsftpd, size: usize, tag: &str) {
    let work = temp_dir("dmz-client");
    let name = format!("{tag}-down.bin");
    let sha = vs.make_file(&name, size);
    let local = work.path().join(&name);
    client.fetch(&name, &local).await.assert_ok();
    assert_eq!(sha256_file(&local), sha, "{tag}: download corrupted");
    let up = work.path().join("up.bin");
    let up_sha = make_file(&up, size);
    let remote = format!("{tag}-up.bin");
    client.store(&up, &remote).await.assert_ok();
    assert_eq!(
        sha256_file(&vs.root().join(&remote)),
        up_sha,
        "{tag}: upload corrupted\n{}",
        vs.log()
    );
    let list = client.listing().await;
    list.assert_ok();
    assert!(list.stdout.contains(&name), "{tag}: listing: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_clients_through_tunnel_to_strict_vsftpd() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let lp = Loop::start(&vs).await;
    let conn = lp.connector(vs.addr()).await;
    wait_metric(&lp.edge, CONNECTORS_UP, 1.0, Duration::from_secs(10)).await;
    let ca = lp.gw_certs.ca_pem.clone();
    let curl = Curl::new(lp.addr(), Security::Explicit, Some(&ca));
    round_trip(&curl, &vs, MIB, "curl").await;
    let lftp = Lftp::new(lp.addr(), Security::Explicit, Some(&ca));
    round_trip(&lftp, &vs, MIB, "lftp").await;
    // Bytes went through the tunnel; the data TLS resumed (vsftpd refuses otherwise).
    let text = lp.edge.metrics().encode();
    assert!(
        text.contains("ftpsgate_tunnel_bytes_total{tunnel=\"lan\",direction=\"in\"}"),
        "{text}"
    );
    conn.shutdown().await;
    lp.edge.shutdown().await;
}

/// Waits until `series` is at least `want` (counters).
async fn wait_at_least(gw: &ftpsgate::Gateway, series: &str, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = gw.metrics().encode();
        let now = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        if now >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, want >= {want}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_thirty_transfers_and_failover_between_two_connectors() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let lp = Loop::start(&vs).await;
    let a = lp.connector(vs.addr()).await;
    let b = lp.connector(vs.addr()).await;
    wait_metric(&lp.edge, CONNECTORS_UP, 2.0, Duration::from_secs(10)).await;
    let sha = vs.make_file("thirty.bin", 64 * KIB);
    let work = temp_dir("dmz-thirty");
    let curl = Curl::new(lp.addr(), Security::Explicit, Some(&lp.gw_certs.ca_pem));
    let steps: Vec<(Vec<String>, &str)> = (0..30)
        .map(|i| {
            let out = work.path().join(format!("t{i}.bin")).display().to_string();
            (vec!["-o".to_string(), out], "thirty.bin")
        })
        .collect();
    curl.session(&steps).await.assert_ok();
    for i in 0..30 {
        assert_eq!(
            sha256_file(&work.path().join(format!("t{i}.bin"))),
            sha,
            "transfer {i}"
        );
    }
    // One connector gone: new sessions go over the other.
    a.shutdown().await;
    wait_metric(&lp.edge, CONNECTORS_UP, 1.0, Duration::from_secs(10)).await;
    round_trip(&curl, &vs, 256 * KIB, "after-failover").await;
    b.shutdown().await;
    lp.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_untrusted_connector_is_refused_and_counted() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let lp = Loop::start(&vs).await;
    // A connector certificate from a CA the edge does not trust.
    let rogue = temp_dir("dmz-rogue");
    let certs = Certs::generate_client(rogue.path(), "rogue", &["connector.lan"]);
    std::fs::copy(&certs.cert_pem, rogue.path().join("conn.pem")).unwrap();
    std::fs::copy(&certs.key_pem, rogue.path().join("conn.key")).unwrap();
    std::fs::copy(
        lp.dir.path().join("edge-ca.pem"),
        rogue.path().join("edge-ca.pem"),
    )
    .unwrap();
    let yaml = connector_yaml(&lp.tunnel().to_string(), vs.addr());
    let conn = gateway::start_gateway(&yaml, rogue.path()).await;
    wait_at_least(
        &lp.edge,
        "ftpsgate_tunnel_connectors_refused_total{tunnel=\"lan\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    wait_metric(&lp.edge, CONNECTORS_UP, 0.0, Duration::from_secs(1)).await;
    // No connector: the client is told the service is not available.
    let curl = Curl::new(lp.addr(), Security::Explicit, Some(&lp.gw_certs.ca_pem));
    let out = curl.raw(&["-v"], "").await;
    out.assert_failed();
    assert!(out.stderr.contains("< 421"), "{out}");
    conn.shutdown().await;
    lp.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_request_for_a_backend_the_connector_lacks_is_refused() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let lp = Loop::start(&vs).await;
    let dir = lp.dir.path().join("conn-other");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["conn.pem", "conn.key", "edge-ca.pem"] {
        std::fs::copy(lp.dir.path().join(f), dir.join(f)).unwrap();
    }
    // This connector serves `other`, not the edge's `vs`.
    let edge = lp.tunnel().to_string();
    let yaml = connector_yaml(&edge, vs.addr()).replace("name: vs", "name: other");
    let conn = gateway::start_gateway(&yaml, &dir).await;
    wait_metric(&lp.edge, CONNECTORS_UP, 1.0, Duration::from_secs(10)).await;
    let curl = Curl::new(lp.addr(), Security::Explicit, Some(&lp.gw_certs.ca_pem));
    let out = curl.raw(&["-v"], "").await;
    out.assert_failed();
    assert!(out.stderr.contains("< 421"), "{out}");
    wait_at_least(
        &conn,
        &format!(
            "ftpsgate_tunnel_requests_refused_total{{edge=\"{edge}\",reason=\"unknown_backend\"}}"
        ),
        1.0,
        Duration::from_secs(5),
    )
    .await;
    conn.shutdown().await;
    lp.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_connector_gone_mid_transfer_then_back() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let lp = Loop::start(&vs).await;
    let conn = lp.connector(vs.addr()).await;
    wait_metric(&lp.edge, CONNECTORS_UP, 1.0, Duration::from_secs(10)).await;
    vs.make_file("slow.bin", 64 * MIB);
    let work = temp_dir("dmz-cut");
    let local = work.path().join("slow.bin").display().to_string();
    // lftp reads the control reply after a failed transfer (curl stops at
    // the short data connection): `debug` shows the server's replies.
    let lftp = Lftp::new(lp.addr(), Security::Explicit, Some(&lp.gw_certs.ca_pem));
    let started = Instant::now();
    let transfer = tokio::spawn({
        let lftp = lftp.clone();
        async move {
            lftp.script(&format!(
                "debug 3; set net:limit-rate 2097152; get slow.bin -o {local}"
            ))
            .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    conn.shutdown().await;
    let out = transfer.await.unwrap();
    out.assert_failed();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "client hung for {:?}: {out}",
        started.elapsed()
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("<--- 426") || all.contains("<--- 421"),
        "no 426/421: {out}"
    );
    // The connector back: the next session works.
    let again = lp.connector(vs.addr()).await;
    wait_metric(&lp.edge, CONNECTORS_UP, 1.0, Duration::from_secs(10)).await;
    let curl = Curl::new(lp.addr(), Security::Explicit, Some(&lp.gw_certs.ca_pem));
    round_trip(&curl, &vs, MIB, "after-cut").await;
    again.shutdown().await;
    lp.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_edge_restarted_connector_reconnects() {
    ensure_tools();
    let vs = Vsftpd::strict();
    let lp = Loop::start(&vs).await;
    let conn = lp.connector(vs.addr()).await;
    wait_metric(&lp.edge, CONNECTORS_UP, 1.0, Duration::from_secs(10)).await;
    let tunnel = lp.tunnel();
    let Loop {
        edge,
        dir,
        gw_certs,
    } = lp;
    edge.shutdown().await;
    let yaml = edge_yaml(
        "127.0.0.1:0",
        "127.0.0.1",
        &tunnel.to_string(),
        pasv_range(),
    );
    let edge = gateway::start_gateway(&yaml, dir.path()).await;
    let restarted = Instant::now();
    wait_metric(&edge, CONNECTORS_UP, 1.0, Duration::from_secs(5)).await;
    eprintln!("connector back after {:?}", restarted.elapsed());
    let lp = Loop {
        edge,
        dir,
        gw_certs,
    };
    let curl = Curl::new(lp.addr(), Security::Explicit, Some(&lp.gw_certs.ca_pem));
    round_trip(&curl, &vs, 256 * KIB, "after-restart").await;
    conn.shutdown().await;
    lp.edge.shutdown().await;
}
