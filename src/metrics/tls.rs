//! TLS families: handshakes on every leg (client control and data, backend
//! control and data), by version, result and resumption.
//!
//! Recorded where the handshakes run: the session driver (client control),
//! `data/` (client data) and `backend.rs` (backend control and data).
//!
//! Also the certificates' not-after times (served ones and backend CAs), set
//! by the gateway from `tls::material` at start and after each applied reload.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::{Metrics, Side};

/// Whether a TLS handshake completed (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handshake {
    /// The handshake completed.
    Ok,
    /// The handshake failed.
    Failed,
}

/// Whether a TLS handshake resumed an earlier session (the `resumed` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resumption {
    /// A full handshake (also every failed one).
    Full,
    /// The session of an earlier connection was resumed.
    Resumed,
}

impl Resumption {
    /// `Resumed` when `resumed`, else `Full` (for `tls::was_resumed`).
    pub fn from_resumed(resumed: bool) -> Resumption {
        if resumed {
            Resumption::Resumed
        } else {
            Resumption::Full
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsLabels {
    side: &'static str,
    version: &'static str,
    result: &'static str,
    resumed: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CertLabels {
    scope: &'static str,
    name: String,
    cert: String,
}

/// One certificate the gateway serves or trusts, and when it stops being valid.
#[derive(Debug, Clone, PartialEq)]
pub struct CertExpiry {
    /// `listener` (served to clients) or `backend` (CA trusted toward a backend).
    pub scope: &'static str,
    /// The configured listener or backend name.
    pub name: String,
    /// `default`, `sni:<first name>` or `ca` (and `leaf`, recorded at handshakes).
    pub cert: String,
    /// Unix seconds of the certificate's not-after.
    pub not_after: f64,
}

/// The TLS area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    handshakes: Family<TlsLabels, Counter>,
    expiry: Family<CertLabels, Gauge<f64, AtomicU64>>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            handshakes: Family::default(),
            expiry: Family::default(),
        };
        r.register(
            "tls_handshakes",
            "TLS handshakes, by side, version, result and whether the session was resumed",
            f.handshakes.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "Not-after of each served certificate (scope listener), backend CA and last backend leaf seen (scope backend), Unix seconds",
            f.expiry.clone(),
        );
        f
    }
}

impl Metrics {
    /// `ftpsgate_tls_handshakes_total{side,version,result,resumed}`; `version`
    /// is "TLSv1.2", "TLSv1.3" or "none" (failed before agreeing).
    pub fn tls_handshake(
        &self,
        side: Side,
        version: &'static str,
        handshake: Handshake,
        resumption: Resumption,
    ) {
        self.tls
            .handshakes
            .get_or_create(&TlsLabels {
                side: side.as_str(),
                version,
                result: match handshake {
                    Handshake::Ok => "ok",
                    Handshake::Failed => "failed",
                },
                resumed: match resumption {
                    Resumption::Resumed => "true",
                    Resumption::Full => "false",
                },
            })
            .inc();
    }

    /// `ftpsgate_certificate_expiry_timestamp_seconds{scope="backend",name,cert="leaf"}`:
    /// the certificate `backend` presented at its last verified handshake
    /// (pinned backends included). Gone at a reload until the next handshake.
    pub fn backend_certificate_seen(&self, backend: &str, not_after: f64) {
        self.tls
            .expiry
            .get_or_create(&CertLabels {
                scope: "backend",
                name: backend.to_owned(),
                cert: "leaf".into(),
            })
            .set(not_after);
    }

    /// Replace every `ftpsgate_certificate_expiry_timestamp_seconds` series
    /// (certificates of a removed listener disappear with it).
    pub fn certificates_loaded(&self, certs: &[CertExpiry]) {
        self.tls.expiry.clear();
        for c in certs {
            self.tls
                .expiry
                .get_or_create(&CertLabels {
                    scope: c.scope,
                    name: c.name.clone(),
                    cert: c.cert.clone(),
                })
                .set(c.not_after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn handshakes_by_side_version_result_and_resumption() {
        let m = Metrics::new();
        m.tls_handshake(Side::Client, "TLSv1.3", Handshake::Ok, Resumption::Resumed);
        m.tls_handshake(Side::Backend, "none", Handshake::Failed, Resumption::Full);
        let text = m.encode();
        for (series, value) in [
            (
                "ftpsgate_tls_handshakes_total{side=\"client\",version=\"TLSv1.3\",result=\"ok\",resumed=\"true\"}",
                1.0,
            ),
            (
                "ftpsgate_tls_handshakes_total{side=\"backend\",version=\"none\",result=\"failed\",resumed=\"false\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn certificate_expiry_is_replaced_as_a_whole() {
        let m = Metrics::new();
        let cert = |name: &str, t: f64| CertExpiry {
            scope: "listener",
            name: name.into(),
            cert: "default".into(),
            not_after: t,
        };
        m.certificates_loaded(&[cert("edge", 1.0e9), cert("old", 2.0e9)]);
        m.certificates_loaded(&[cert("edge", 1.5e9)]);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "ftpsgate_certificate_expiry_timestamp_seconds{scope=\"listener\",name=\"edge\",cert=\"default\"}"
            ),
            Some(1.5e9),
            "{text}"
        );
        assert!(!text.contains("name=\"old\""), "{text}");
    }
}
