//! Backend families: connect time, errors on the backend leg, health (`up`)
//! and the active health checks run.
//!
//! Recorded by `backend.rs` (connects, errors, data handshakes that did not
//! resume) and `health.rs` (checks, up).
//! Label values are configured backend names and the closed
//! [`BackendErrorKind`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{ok_label, Metrics};

/// What went wrong on the backend leg (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendErrorKind {
    /// The backend's name did not resolve.
    Resolve,
    /// TCP connect failed.
    Connect,
    /// No answer within `timeouts.connect`.
    Timeout,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// The backend refused service (`421` greeting or similar).
    Refused,
    /// The backend spoke something that is not FTP.
    Protocol,
    /// The backend closed the connection.
    Closed,
    /// A reply no command asked for, dropped (issue 24).
    Unsolicited,
}

impl BackendErrorKind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendErrorKind::Resolve => "resolve",
            BackendErrorKind::Connect => "connect",
            BackendErrorKind::Timeout => "timeout",
            BackendErrorKind::Tls => "tls",
            BackendErrorKind::Refused => "refused",
            BackendErrorKind::Protocol => "protocol",
            BackendErrorKind::Closed => "closed",
            BackendErrorKind::Unsolicited => "unsolicited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendErrorLabels {
    backend: String,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendResultLabels {
    backend: String,
    result: &'static str,
}

/// Backend connect + greeting + TLS: about a millisecond on a LAN, up to the
/// `timeouts.connect` limit (10 s by default).
fn connect_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The backend area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    connect: Family<BackendLabels, Histogram, fn() -> Histogram>,
    errors: Family<BackendErrorLabels, Counter>,
    tls_resumption_failures: Family<BackendLabels, Counter>,
    up: Family<BackendLabels, Gauge>,
    health_checks: Family<BackendResultLabels, Counter>,
    /// Failed health checks by kind; kept out of `errors`, which counts
    /// only what sessions met, so one outage is not counted twice.
    health_failures: Family<BackendErrorLabels, Counter>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            connect: Family::new_with_constructor(connect_histogram),
            errors: Family::default(),
            tls_resumption_failures: Family::default(),
            up: Family::default(),
            health_checks: Family::default(),
            health_failures: Family::default(),
        };
        r.register(
            "backend_connect_seconds",
            "Time to connect to a backend, read its greeting and set up TLS",
            f.connect.clone(),
        );
        r.register(
            "backend_errors",
            "Errors on the backend leg, by backend and kind",
            f.errors.clone(),
        );
        r.register(
            "backend_tls_resumption_failures",
            "Backend data TLS handshakes that did not resume the backend control session",
            f.tls_resumption_failures.clone(),
        );
        r.register(
            "backend_up",
            "Backend health: 1 healthy (or not checked), 0 failing its health check",
            f.up.clone(),
        );
        r.register(
            "backend_health_checks",
            "Active backend health checks run, by backend and result",
            f.health_checks.clone(),
        );
        r.register(
            "backend_health_check_failures",
            "Failed active health checks, by backend and kind (not in backend_errors_total)",
            f.health_failures.clone(),
        );
        f
    }
}

impl Metrics {
    /// `ftpsgate_backend_connect_seconds{backend}` (histogram).
    pub fn backend_connected(&self, backend: &str, secs: f64) {
        self.backends
            .connect
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .observe(secs.max(0.0));
    }

    /// `ftpsgate_backend_errors_total{backend,kind}`.
    pub fn backend_error(&self, backend: &str, kind: BackendErrorKind) {
        self.backends
            .errors
            .get_or_create(&BackendErrorLabels {
                backend: backend.to_owned(),
                kind: kind.as_str(),
            })
            .inc();
    }

    /// `ftpsgate_backend_tls_resumption_failures_total{backend}`: a data
    /// handshake toward a backend that had offered resumption did not resume.
    pub fn backend_tls_resumption_failed(&self, backend: &str) {
        self.backends
            .tls_resumption_failures
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// `ftpsgate_backend_up{backend}` 1/0.
    pub fn backend_health(&self, backend: &str, healthy: bool) {
        self.backends
            .up
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .set(i64::from(healthy));
    }

    /// `ftpsgate_backend_health_checks_total{backend,result}`: one active check ran.
    /// `ftpsgate_backend_health_check_failures_total{backend,kind}`.
    pub fn health_check_failed(&self, backend: &str, kind: BackendErrorKind) {
        self.backends
            .health_failures
            .get_or_create(&BackendErrorLabels {
                backend: backend.to_owned(),
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Count one health check of `backend` and set its up gauge.
    pub fn health_check(&self, backend: &str, ok: bool) {
        self.backends
            .health_checks
            .get_or_create(&BackendResultLabels {
                backend: backend.to_owned(),
                result: ok_label(ok),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn backend_series_are_per_configured_backend() {
        let m = Metrics::new();
        m.backend_error("vs", BackendErrorKind::Tls);
        m.backend_health("vs", false);
        m.backend_tls_resumption_failed("vs");
        let text = m.encode();
        for (series, value) in [
            (
                "ftpsgate_backend_errors_total{backend=\"vs\",kind=\"tls\"}",
                1.0,
            ),
            ("ftpsgate_backend_up{backend=\"vs\"}", 0.0),
            (
                "ftpsgate_backend_tls_resumption_failures_total{backend=\"vs\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }
}
