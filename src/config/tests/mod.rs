//! Tests for the config module: the YAML → typed conversion, defaults, and the exact
//! text of every error and warning (operators read these, the runtime matches none).
//!
//! One file per section, named like the `build/` file that converts it; the shared
//! helpers and the full `EXAMPLE` config are here. A test for a new key goes in
//! the file of its section.

mod auth;
mod backends;
mod include;
mod limits;
mod listeners;
mod loading;
mod pattern;
mod routes;
mod tls;
mod tunnels;
mod values;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::*;

/// A temporary config directory holding empty files at the given relative paths.
fn dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create temp dir");
    for f in files {
        let path = dir.path().join(f);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create cert dir");
        }
        std::fs::write(&path, b"").expect("write test file");
    }
    dir
}

fn certs() -> tempfile::TempDir {
    dir_with(&[
        "certs/gateway.pem",
        "certs/gateway.key",
        "certs/backend-ca.pem",
    ])
}

fn parse_ok(yaml: &str, dir: &Path) -> Config {
    match Config::from_yaml_str(yaml, dir) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Every error as `PATH: MESSAGE` (line numbers left out; `lines_*` tests cover them).
fn errors(yaml: &str, dir: &Path) -> Vec<String> {
    match Config::from_yaml_str(yaml, dir) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigErrors(list)) => list
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

/// One listener in cleartext plus a plain backend: the smallest valid config.
/// `listener_extra` adds listener entries after the first, `backend_extra` keys
/// to the backend.
fn minimal(listener_extra: &str, backend_extra: &str) -> String {
    format!(
        "listeners:
  - name: edge
    bind: \"127.0.0.1:2021\"
    tls:
      mode: none
    passive:
      ports: \"50000-50099\"
    backend: legacy
{listener_extra}backends:
  - name: legacy
    address: \"127.0.0.1:2120\"
{backend_extra}"
    )
}

/// A backend block with TLS; `tls_extra` holds the verification keys.
fn tls_backend(tls_extra: &str) -> String {
    minimal("", &format!("    tls:\n      mode: explicit\n{tls_extra}"))
}

const EXAMPLE: &str = r#"
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls:
      mode: explicit
      cert: certs/gateway.pem
      key: certs/gateway.key
      require: true
      require_data_reuse: true
      min_version: "1.2"
    passive:
      ports: "50000-50099"
      bind: "127.0.0.1"
      advertise: "127.0.0.1"
    backend: legacy
backends:
  - name: legacy
    address: "127.0.0.1:2120"
    tls:
      mode: explicit
      ca: certs/backend-ca.pem
      server_name: "ftp.internal"
      min_version: "1.2"
      max_version: "1.3"
      data_protection: private
timeouts:
  connect: 10s
  login: 60s
  idle: 600s
  pinhole: 30s
  data_idle: 300s
"#;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Copies a shipped policy next to dummy cert files (`../certs/...` from `policies/`).
pub(crate) fn load_shipped(name: &str) -> Config {
    let dir = certs();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("policies").join(name)).expect("shipped policy");
    std::fs::create_dir(dir.path().join("policies")).expect("create policies dir");
    let path = dir.path().join("policies").join(name);
    std::fs::write(&path, text).expect("copy policy");
    match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{name}:\n{e}"),
    }
}
