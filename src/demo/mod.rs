//! `ftpsgate demo`: a gateway that needs no files. An in-process plain FTP
//! server (libunftp) stands in for the legacy backend, a self-signed
//! certificate is generated, and the gateway listens on 127.0.0.1 with
//! explicit FTPS on one port and implicit FTPS on the next.
//!
//! The FTP server ([`backend`]) and [`run`] exist only with the cargo feature
//! `demo` (default on); a production build (`--no-default-features`) keeps just
//! [`selfsigned`], which `ftpsgate self-signed` uses for a first certificate.

#[cfg(feature = "demo")]
pub mod backend;
pub mod selfsigned;

#[cfg(feature = "demo")]
use std::path::PathBuf;

#[cfg(feature = "demo")]
use anyhow::Context;

#[cfg(feature = "demo")]
use crate::config::Config;
#[cfg(feature = "demo")]
use crate::gateway::Gateway;

/// Run the demo until Ctrl-C / SIGTERM.
#[cfg(feature = "demo")]
pub async fn run(root: Option<PathBuf>, port: u16) -> anyhow::Result<()> {
    let certdir = tempfile::Builder::new()
        .prefix("ftpsgate-demo-")
        .tempdir()?;
    let cert = selfsigned::generate_self_signed(certdir.path(), "gateway")?;
    let backend = backend::DemoBackend::start(root).await?;
    let (explicit_port, implicit_port) = match port {
        0 => (0, 0),
        p => (p, p.saturating_add(1)),
    };
    let yaml = format!(
        r#"
listeners:
  - name: explicit
    bind: "127.0.0.1:{explicit_port}"
    tls: {{ mode: explicit, cert: gateway.pem, key: gateway.key, require: true }}
    passive: {{ ports: "50100-50199", advertise: "127.0.0.1" }}
    backend: demo
  - name: implicit
    bind: "127.0.0.1:{implicit_port}"
    tls: {{ mode: implicit, cert: gateway.pem, key: gateway.key }}
    passive: {{ ports: "50200-50299", advertise: "127.0.0.1" }}
    backend: demo
backends:
  - name: demo
    address: "{backend}"
    tls: {{ mode: none }}
"#,
        backend = backend.addr
    );
    let config =
        Config::from_yaml_str(&yaml, certdir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let gw = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    let ex = gw.local_addr("explicit").context("explicit listener")?;
    let im = gw.local_addr("implicit").context("implicit listener")?;
    let ca = cert.cert_path.display();
    println!();
    println!("ftpsgate demo is running (Ctrl-C to stop)");
    println!(
        "  backend (plain FTP, in-process): {} serving {}",
        backend.addr,
        backend.root.display()
    );
    println!("  explicit FTPS: {ex}    implicit FTPS: {im}");
    println!("  certificate:   {ca}");
    println!();
    println!("Try:");
    println!("  curl --ssl-reqd --cacert {ca} ftp://demo:demo@{ex}/hello.txt");
    println!("  curl --cacert {ca} ftps://demo:demo@{im}/");
    println!("  curl --ssl-reqd --cacert {ca} -T /etc/hostname ftp://demo:demo@{ex}/uploaded.txt");
    println!(
        "  lftp -e 'set ssl:ca-file {ca}; set ftp:ssl-force true; set ftp:ssl-protect-data true; ls; get hello.txt -o /tmp/hello.txt; bye' -u demo,demo ftp://{ex}"
    );
    println!();
    wait_for_signal().await;
    println!("stopping");
    gw.shutdown().await;
    backend.stop().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
