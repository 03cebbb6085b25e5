//! `backends[]`: name, address, `data_mode`, `keepalive_noop`, `send_proxy`, and
//! the active `health_check`.
//!
//! A new backend key is converted in `Builder::backend`; TLS toward the backend
//! (`backends[].tls`) is in `tls.rs`.

use std::collections::HashMap;

use super::values::{parse_host_port, parse_name};
use super::{Builder, Reported};
use crate::config::duration;
use crate::config::raw::{RawBackend, RawHealthCheck};
use crate::config::typed::{Backend, DataMode, HealthCheck, ProxyVersion};

impl<'a> Builder<'a> {
    pub(super) fn backend(
        &mut self,
        p: &str,
        raw: &RawBackend,
        names: &mut HashMap<String, Option<&'a str>>,
    ) -> Result<Backend, Reported> {
        let name = self.unique_name(&format!("{p}.name"), raw.name.as_deref(), "backend", names);
        let via = self.optional(&format!("{p}.via"), raw.via.as_deref(), parse_name);
        // Through a tunnel the address is the connector's business: optional
        // here (it names the TLS server name default when given).
        let address = match (&via, raw.address.as_deref()) {
            (Ok(Some(_)), None) => Ok((raw.name.clone().unwrap_or_default(), 21)),
            _ => self.required(
                &format!("{p}.address"),
                raw.address.as_deref(),
                parse_host_port,
            ),
        };
        let host = address.as_ref().ok().map(|(h, _)| h.as_str());
        let tls = self.backend_tls(&format!("{p}.tls"), raw.tls.as_ref(), host);
        if let Ok(t) = &tls {
            let at = self.position(&format!("{p}.tls"));
            self.tls.backends.push((format!("{p}.tls"), at, t.clone()));
        }
        let health_check = match raw.health_check.as_ref() {
            None => Ok(None),
            Some(h) => self.health_check(&format!("{p}.health_check"), h).map(Some),
        };
        let data_mode =
            self.optional(
                &format!("{p}.data_mode"),
                raw.data_mode.as_deref(),
                |s| match s {
                    "passive" => Ok(DataMode::Passive),
                    "active" => Ok(DataMode::Active),
                    "same-as-client" => Ok(DataMode::SameAsClient),
                    _ => Err(format!(
                        "\"{s}\" is not a data mode (expected passive, active or same-as-client)"
                    )),
                },
            );
        let keepalive_noop = self.optional(
            &format!("{p}.keepalive_noop"),
            raw.keepalive_noop.as_deref(),
            duration::parse,
        );
        let send_proxy = self.optional(
            &format!("{p}.send_proxy"),
            raw.send_proxy.as_deref(),
            |s| match s {
                "v1" => Ok(ProxyVersion::V1),
                "v2" => Ok(ProxyVersion::V2),
                _ => Err(format!(
                    "\"{s}\" is not a PROXY protocol version (expected v1 or v2)"
                )),
            },
        );
        let (host, port) = address?;
        Ok(Backend {
            name: name?,
            host,
            port,
            tls: tls?,
            health_check: health_check?,
            data_mode: data_mode?.unwrap_or(DataMode::Passive),
            keepalive_noop: keepalive_noop?,
            send_proxy: send_proxy?,
            via: via?,
        })
    }

    /// `health_check`: both keys optional; a check may not outlast its interval, or
    /// checks would pile up behind a backend that hangs.
    pub(super) fn health_check(
        &mut self,
        p: &str,
        raw: &RawHealthCheck,
    ) -> Result<HealthCheck, Reported> {
        let default = HealthCheck::default();
        let interval = self
            .optional(
                &format!("{p}.interval"),
                raw.interval.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(default.interval));
        let timeout = self
            .optional(
                &format!("{p}.timeout"),
                raw.timeout.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(default.timeout));
        let (interval, timeout) = (interval?, timeout?);
        if timeout > interval {
            self.error(
                &format!("{p}.timeout"),
                format!(
                    "{} is longer than interval {}",
                    written_duration(raw.timeout.as_deref(), timeout),
                    written_duration(raw.interval.as_deref(), interval)
                ),
            );
            return Err(Reported);
        }
        Ok(HealthCheck { interval, timeout })
    }
}

/// A duration as the operator wrote it, or the default in seconds.
fn written_duration(written: Option<&str>, value: std::time::Duration) -> String {
    match written {
        Some(w) => format!("\"{w}\""),
        None => format!("{}s (default)", value.as_secs()),
    }
}
