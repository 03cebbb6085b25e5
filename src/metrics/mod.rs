//! Prometheus metrics of the gateway (`prometheus-client`, typed label sets).
//!
//! One `Metrics` value per process, shared by `Arc`; every recording method is
//! cheap and infallible. Label values come only from closed enums or from
//! configured listener/backend names — never from user names, client IPs or
//! message text, so cardinality stays bounded.
//!
//! The families live in one `Registry` owned by `Metrics` (no globals), all under
//! the `ftpsgate_` prefix, in base units (`_seconds`, `_bytes_total`). `http.rs`
//! serves [`Metrics::encode`] (Prometheus text 0.0.4) or
//! [`Metrics::encode_openmetrics`] as the scraper asks.
//!
//! This file is only the registry. Each area owns its families in its own file:
//! the family handles, their `register(&mut Registry)`, the label enums and label
//! mappings it needs, the `Metrics` methods that record into them, and its tests.
//! - [`sessions`]: sessions, logins, commands;
//! - [`transfers`]: transfers, data bytes, pinholes;
//! - [`tls`]: TLS handshakes;
//! - [`backends`]: backend connects, errors, health;
//! - [`config`]: configuration reloads and load time, build info;
//! - [`process`]: open fds and their limit, RSS, CPU, start time (`/proc`);
//! - [`control`]: requests over the control socket;
//! - [`auth`]: passwords checked by the gateway (`auth: gateway` routes).
//! - [`tunnel`]: DMZ mode — connectors, streams, bytes, reconnects, refusals.
//!
//! A new metric goes into its area's file (a field, one `register` call, one
//! recording method) plus its call site; a new area is a new file and one field
//! and one `register` line here. The areas are registered in the order below,
//! which is the order families appear in a scrape.

mod auth;
mod backends;
mod config;
mod control;
mod process;
mod sessions;
mod tls;
mod transfers;
mod tunnel;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use auth::AuthResult;
pub use backends::BackendErrorKind;
pub use control::ControlCommand;
pub use sessions::{outcome_label, verb_label, LoginResult};
pub use tls::{CertExpiry, ClientCertRefusal, Handshake, Resumption};
pub use transfers::{result_label, PinholeRefusal, PortHeld};
pub use tunnel::TunnelDirection;

/// Which leg of the gateway: the `side` label of handshakes and data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client-facing leg.
    Client,
    /// The backend-facing leg.
    Backend,
}

impl Side {
    /// The `side` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

/// The `result` label value of families that only know success or failure.
fn ok_label(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "failed"
    }
}

/// All metric families. Construct with [`Metrics::new`].
#[derive(Debug)]
pub struct Metrics {
    /// Holds a handle on every family of the areas below; encoded on each scrape.
    registry: Registry,
    sessions: sessions::Families,
    transfers: transfers::Families,
    tls: tls::Families,
    backends: backends::Families,
    config: config::Families,
    control: control::Families,
    auth: auth::Families,
    tunnel: tunnel::Families,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ftpsgate");
        let r = &mut registry;
        let sessions = sessions::Families::register(r);
        let transfers = transfers::Families::register(r);
        let tls = tls::Families::register(r);
        let backends = backends::Families::register(r);
        let config = config::Families::register(r);
        let control = control::Families::register(r);
        let auth = auth::Families::register(r);
        let tunnel = tunnel::Families::register(r);
        process::register(r);
        Metrics {
            registry,
            sessions,
            transfers,
            tls,
            backends,
            config,
            control,
            auth,
            tunnel,
        }
    }
}

impl Metrics {
    /// Empty metric families, ready to register.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// The Prometheus text exposition (format 0.0.4, what `promtool check metrics`
    /// and plain `curl` expect).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be an encoder bug,
        // and an empty scrape is the best answer to it.
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The OpenMetrics text exposition (ends in `# EOF`), for scrapers that ask
    /// for `application/openmetrics-text`.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The value of the sample `series VALUE` in `text`, if present.
#[cfg(test)]
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Direction;
    use crate::session::outcome::{SessionOutcome, TransferResult};

    /// One series in every area (families without series are not encoded).
    fn one_of_each() -> Arc<Metrics> {
        let m = Metrics::new();
        m.session_ended("edge", SessionOutcome::Ok);
        m.command("NOOP");
        m.transfer_finished("edge", Direction::Download, TransferResult::Ok, 1, 1, 0.1);
        m.tls_handshake(Side::Client, "TLSv1.3", Handshake::Ok, Resumption::Full);
        m.backend_connected("vs", 0.01);
        m.health_check("vs", true);
        m
    }

    #[test]
    fn counters_end_in_total_and_both_formats_encode() {
        let m = one_of_each();
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                &format!(
                    "ftpsgate_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ftpsgate_sessions_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn families_appear_area_by_area_in_registration_order() {
        let text = one_of_each().encode();
        let order = [
            "ftpsgate_sessions_total",
            "ftpsgate_commands_total",
            "ftpsgate_transfers_total",
            "ftpsgate_pinhole_refusals_total",
            "ftpsgate_tls_handshakes_total",
            "ftpsgate_backend_connect_seconds",
            "ftpsgate_backend_health_checks_total",
            "ftpsgate_config_reloads_total",
            "ftpsgate_build_info",
            "ftpsgate_process_open_fds",
        ];
        let at: Vec<Option<usize>> = order
            .iter()
            .map(|name| text.find(&format!("# TYPE {name} ")))
            .collect();
        assert!(at.iter().all(Option::is_some), "{order:?} in\n{text}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
