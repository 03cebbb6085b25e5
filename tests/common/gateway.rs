//! Starting ftpsgate in-process on port 0, with YAML written into a temp dir.

use std::net::SocketAddr;
use std::path::Path;

use super::{pasv_range, temp_dir, Certs, Vsftpd};

/// Parses `yaml` (paths relative to `dir`, where it is also saved as `ftpsgate.yaml` for
/// post-mortems) and starts the gateway. Panics with the config errors on failure.
pub async fn start_gateway(yaml: &str, dir: &Path) -> ftpsgate::Gateway {
    std::fs::write(dir.join("ftpsgate.yaml"), yaml).unwrap();
    let config = ftpsgate::config::Config::from_yaml_str(yaml, dir)
        .unwrap_or_else(|e| panic!("config rejected:\n{e}\n--- yaml:\n{yaml}"));
    ftpsgate::Gateway::start(config)
        .await
        .unwrap_or_else(|e| panic!("gateway did not start: {e}\n--- yaml:\n{yaml}"))
}

/// The client-facing side of the single test listener `edge`.
#[derive(Clone, Debug)]
pub struct Frontend {
    /// `explicit`, `implicit` or `none`.
    pub mode: &'static str,
    pub require: bool,
    pub require_data_reuse: bool,
    /// `allow_clear_data: true` (PROT C); the default is false.
    pub allow_clear_data: bool,
}

impl Frontend {
    pub fn explicit() -> Frontend {
        Frontend {
            mode: "explicit",
            require: true,
            require_data_reuse: true,
            allow_clear_data: false,
        }
    }
    pub fn implicit() -> Frontend {
        Frontend {
            mode: "implicit",
            require: true,
            require_data_reuse: true,
            allow_clear_data: false,
        }
    }
    pub fn none() -> Frontend {
        Frontend {
            mode: "none",
            require: false,
            require_data_reuse: false,
            allow_clear_data: false,
        }
    }
    pub fn data_reuse(mut self, required: bool) -> Frontend {
        self.require_data_reuse = required;
        self
    }
    pub fn clear_data(mut self, allowed: bool) -> Frontend {
        self.allow_clear_data = allowed;
        self
    }
}

/// How the gateway checks the backend certificate.
#[derive(Clone, Debug)]
pub enum BackendAuth {
    /// `ca: vs-ca.pem` (the backend vsftpd's CA, copied into the gateway dir).
    Ca,
    /// `pin_sha256: HEX`.
    Pin(String),
    /// `verify: false`.
    NoVerify,
}

/// The single test backend `vs`.
#[derive(Clone, Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// `none`, `explicit` or `implicit`.
    pub mode: &'static str,
    pub auth: BackendAuth,
    pub min_version: Option<&'static str>,
    pub max_version: Option<&'static str>,
    /// `private` or `clear`.
    pub data_protection: Option<&'static str>,
}

impl Backend {
    /// A backend matching `vs`'s mode, verified with its CA.
    pub fn for_vsftpd(vs: &Vsftpd) -> Backend {
        let mode = match vs.mode() {
            super::VsftpdMode::Plain => "none",
            super::VsftpdMode::Explicit { .. } => "explicit",
            super::VsftpdMode::Implicit => "implicit",
        };
        Backend {
            addr: vs.addr(),
            mode,
            auth: BackendAuth::Ca,
            min_version: None,
            max_version: None,
            data_protection: None,
        }
    }
    pub fn max_version(mut self, v: &'static str) -> Backend {
        self.max_version = Some(v);
        self
    }
    pub fn auth(mut self, auth: BackendAuth) -> Backend {
        self.auth = auth;
        self
    }
}

/// Renders the gateway YAML for one listener `edge` → one backend `vs`.
/// Certificate paths are relative to the config dir: `gw.pem`, `gw.key`, `vs-ca.pem`.
pub fn gateway_yaml(front: &Frontend, back: &Backend, pasv: (u16, u16), pinhole: &str) -> String {
    let mut tls_front = format!("{{ mode: {} }}", front.mode);
    if front.mode != "none" {
        let clear = if front.allow_clear_data {
            ", allow_clear_data: true"
        } else {
            ""
        };
        tls_front = format!(
            "{{ mode: {}, cert: gw.pem, key: gw.key, require: {}, require_data_reuse: {}{clear} }}",
            front.mode, front.require, front.require_data_reuse
        );
    }
    let mut tls_back = format!("mode: {}", back.mode);
    if back.mode != "none" {
        match &back.auth {
            BackendAuth::Ca => tls_back.push_str(", ca: vs-ca.pem, server_name: localhost"),
            BackendAuth::Pin(hex) => {
                tls_back.push_str(&format!(", pin_sha256: \"{hex}\", server_name: localhost"))
            }
            BackendAuth::NoVerify => tls_back.push_str(", verify: false, server_name: localhost"),
        }
        if let Some(v) = back.min_version {
            tls_back.push_str(&format!(", min_version: \"{v}\""));
        }
        if let Some(v) = back.max_version {
            tls_back.push_str(&format!(", max_version: \"{v}\""));
        }
        if let Some(p) = back.data_protection {
            tls_back.push_str(&format!(", data_protection: {p}"));
        }
    }
    format!(
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:0"
    tls: {tls_front}
    passive: {{ ports: "{p0}-{p1}", advertise: "127.0.0.1" }}
    backend: vs
backends:
  - name: vs
    address: "{addr}"
    tls: {{ {tls_back} }}
timeouts: {{ pinhole: {pinhole} }}
"#,
        p0 = pasv.0,
        p1 = pasv.1,
        addr = back.addr,
    )
}

/// A running gateway with its temp dir and its client-facing certificates.
pub struct GwEnv {
    pub gateway: Option<ftpsgate::Gateway>,
    pub dir: tempfile::TempDir,
    /// What the gateway presents to clients (`certs.ca_pem` is what clients trust).
    pub certs: Certs,
    pub yaml: String,
}

impl GwEnv {
    /// Starts `edge` → `back` with pinhole timeout 5s.
    pub async fn start(front: Frontend, back: Backend, vs: Option<&Vsftpd>) -> GwEnv {
        GwEnv::start_with_pinhole(front, back, vs, "5s").await
    }

    pub async fn start_with_pinhole(
        front: Frontend,
        back: Backend,
        vs: Option<&Vsftpd>,
        pinhole: &str,
    ) -> GwEnv {
        let dir = temp_dir("gw");
        let certs = Certs::generate(dir.path(), "gw");
        if let Some(vs) = vs {
            std::fs::copy(&vs.certs().ca_pem, dir.path().join("vs-ca.pem")).unwrap();
        }
        let yaml = gateway_yaml(&front, &back, pasv_range(), pinhole);
        let gateway = start_gateway(&yaml, dir.path()).await;
        GwEnv {
            gateway: Some(gateway),
            dir,
            certs,
            yaml,
        }
    }

    /// The client-facing address of listener `edge`.
    pub fn addr(&self) -> SocketAddr {
        self.gateway
            .as_ref()
            .unwrap()
            .local_addr("edge")
            .expect("listener edge has an address")
    }

    pub async fn shutdown(mut self) {
        if let Some(gw) = self.gateway.take() {
            gw.shutdown().await;
        }
    }
}
