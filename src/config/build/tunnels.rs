//! DMZ mode: `tunnels[]` (the edge role), `connect[]` (the connector role) and
//! the check that every `backends[].via` names a tunnel.

use std::collections::HashMap;

use super::values::{
    existing_file, parse_bind, parse_host_port, parse_server_name, parse_transport,
};
use super::{Builder, Reported};
use crate::config::raw::{RawConnect, RawTunnel, RawTunnelTls};
use crate::config::typed::{Connect, ConnectBackend, Tunnel, TunnelClientTls, TunnelServerTls};

impl Builder<'_> {
    pub(super) fn tunnels(&mut self, raw: &[RawTunnel]) -> Vec<Result<Tunnel, Reported>> {
        let mut names = HashMap::new();
        raw.iter()
            .enumerate()
            .map(|(i, t)| {
                let p = format!("tunnels[{i}]");
                let name = self.unique_name(
                    &format!("{p}.name"),
                    t.name.as_deref(),
                    "tunnel",
                    &mut names,
                );
                let listen = self.required(&format!("{p}.listen"), t.listen.as_deref(), parse_bind);
                let transport = self.optional(
                    &format!("{p}.transport"),
                    t.transport.as_deref(),
                    parse_transport,
                );
                let tls = self.tunnel_tls(&format!("{p}.tls"), t.tls.as_ref(), "client_ca");
                let (cert, key, client_ca) = tls?;
                Ok(Tunnel {
                    name: name?,
                    listen: listen?,
                    transport: transport?.unwrap_or_default(),
                    tls: TunnelServerTls {
                        cert,
                        key,
                        client_ca,
                    },
                })
            })
            .collect()
    }

    pub(super) fn connects(&mut self, raw: &[RawConnect]) -> Vec<Result<Connect, Reported>> {
        raw.iter()
            .enumerate()
            .map(|(i, c)| {
                let p = format!("connect[{i}]");
                let edge = self.required(&format!("{p}.edge"), c.edge.as_deref(), parse_host_port);
                let server_name = self.optional(
                    &format!("{p}.server_name"),
                    c.server_name.as_deref(),
                    parse_server_name,
                );
                let transport = self.optional(
                    &format!("{p}.transport"),
                    c.transport.as_deref(),
                    parse_transport,
                );
                let tls = self.tunnel_tls(&format!("{p}.tls"), c.tls.as_ref(), "ca");
                let mut names = HashMap::new();
                let backends: Vec<_> = c
                    .backends
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(j, b)| {
                        let bp = format!("{p}.backends[{j}]");
                        let name = self.unique_name(
                            &format!("{bp}.name"),
                            b.name.as_deref(),
                            "backend",
                            &mut names,
                        );
                        let address = self.required(
                            &format!("{bp}.address"),
                            b.address.as_deref(),
                            parse_host_port,
                        );
                        let (host, port) = address?;
                        Ok(ConnectBackend {
                            name: name?,
                            host,
                            port,
                        })
                    })
                    .collect();
                if backends.is_empty() {
                    self.error(&format!("{p}.backends"), "at least one backend is required");
                }
                let (edge_host, edge_port) = edge?;
                let (cert, key, ca) = tls?;
                Ok(Connect {
                    server_name: server_name?.unwrap_or_else(|| edge_host.clone()),
                    transport: transport?.unwrap_or_default(),
                    edge_host,
                    edge_port,
                    tls: TunnelClientTls { cert, key, ca },
                    backends: backends.into_iter().collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }

    /// `cert`, `key` and the CA key named `ca_key` (`client_ca` on the edge,
    /// `ca` on the connector), all required existing files (the schema walk
    /// reports the other side's CA key as unknown here).
    fn tunnel_tls(
        &mut self,
        p: &str,
        raw: Option<&RawTunnelTls>,
        ca_key: &str,
    ) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf), Reported> {
        let Some(t) = raw else {
            self.error(p, "is required (mutual TLS: cert, key and a CA)");
            return Err(Reported);
        };
        let base = self.base_dir.to_path_buf();
        let file = |b: &mut Self, key: &str, v: Option<&str>| {
            b.required(&format!("{p}.{key}"), v, |s| existing_file(&base, s))
        };
        let cert = file(self, "cert", t.cert.as_deref());
        let key = file(self, "key", t.key.as_deref());
        let ca = match ca_key {
            "client_ca" => t.client_ca.as_deref(),
            _ => t.ca.as_deref(),
        };
        let ca = file(self, ca_key, ca);
        Ok((cert?, key?, ca?))
    }

    /// Every `via` (path of its backend, value, `data_mode` as written) names
    /// a tunnel; a backend reached through one is passive toward the backend
    /// (the connector does not listen for the backend).
    pub(super) fn check_via(&mut self, vias: &[(String, &str, Option<&str>)], tunnels: &[&str]) {
        for (p, via, mode) in vias {
            if !tunnels.contains(via) {
                self.error(
                    &format!("{p}.via"),
                    format!("\"{via}\" is not a tunnel name (see tunnels[].name)"),
                );
            } else if mode.is_some_and(|m| m != "passive") {
                self.error(
                    &format!("{p}.data_mode"),
                    "must be passive for a backend reached through a tunnel (via)",
                );
            }
        }
    }
}
