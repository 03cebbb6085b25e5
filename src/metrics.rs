//! Prometheus metrics of the gateway (`prometheus-client`, typed label sets).
//!
//! One `Metrics` value per process, shared by `Arc`; every recording method is
//! cheap and infallible. Label values come only from closed enums below or from
//! configured listener/backend names — never from user names, client IPs or
//! message text, so cardinality stays bounded.
//!
//! STUB: the recording API is fixed; the bodies are filled in by the
//! observability work.

use std::sync::Arc;

/// How a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionOutcome {
    Ok,
    RefusedPolicy,
    TlsFailed,
    BackendUnavailable,
    Timeout,
    ClientError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginResult {
    Ok,
    Failed,
    /// `USER`/`PASS` before `AUTH TLS` on a listener that requires TLS.
    RefusedNoTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Download,
    Upload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferResult {
    Ok,
    /// A data leg failed (client or backend side).
    Failed,
    /// Aborted by the client (`ABOR`) or by session end.
    Aborted,
    /// The backend refused the transfer command (e.g. `550`).
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinholeRefusal {
    /// Connection from an address other than the control client's (RFC 2577).
    Stealing,
    /// `PORT`/`EPRT` toward a foreign address or a port < 1024.
    Bounce,
    /// No free port in the passive range.
    Exhausted,
    /// Data TLS handshake did not resume the control session.
    NoReuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendErrorKind {
    Resolve,
    Connect,
    Timeout,
    Tls,
    Refused,
    Protocol,
    Closed,
}

/// All metric families. Construct with [`Metrics::new`].
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// The Prometheus text exposition (OpenMetrics-compatible text).
    pub fn encode(&self) -> String {
        String::new()
    }

    /// `ftpsgate_sessions_active{listener}` +1.
    pub fn session_started(&self, _listener: &str) {}
    /// `ftpsgate_sessions_active{listener}` -1, `ftpsgate_sessions_total{listener,outcome}` +1.
    pub fn session_ended(&self, _listener: &str, _outcome: SessionOutcome) {}
    /// `ftpsgate_logins_total{listener,result}`.
    pub fn login(&self, _listener: &str, _result: LoginResult) {}
    /// `ftpsgate_commands_total{verb}`; verbs outside a fixed set count as `other`.
    pub fn command(&self, _verb: &str) {}
    /// `ftpsgate_transfers_total{listener,direction,result}`,
    /// `ftpsgate_transfer_duration_seconds{direction}` (histogram),
    /// `ftpsgate_data_bytes_total{side,direction}` for both sides.
    pub fn transfer_finished(
        &self,
        _listener: &str,
        _dir: Dir,
        _result: TransferResult,
        _client_bytes: u64,
        _backend_bytes: u64,
        _secs: f64,
    ) {
    }
    /// `ftpsgate_pinholes_open` +1, `ftpsgate_pinholes_opened_total` +1.
    pub fn pinhole_opened(&self) {}
    /// `ftpsgate_pinholes_open` -1, and `ftpsgate_pinholes_used_total` or
    /// `ftpsgate_pinholes_expired_total` +1.
    pub fn pinhole_closed(&self, _used: bool) {}
    /// `ftpsgate_pinhole_refusals_total{reason}`.
    pub fn pinhole_refused(&self, _reason: PinholeRefusal) {}
    /// `ftpsgate_tls_handshakes_total{side,version,result,resumed}`; `version`
    /// is "TLSv1.2", "TLSv1.3" or "none" (failed before agreeing).
    pub fn tls_handshake(&self, _side: Side, _version: &'static str, _ok: bool, _resumed: bool) {}
    /// `ftpsgate_backend_connect_seconds{backend}` (histogram).
    pub fn backend_connected(&self, _backend: &str, _secs: f64) {}
    /// `ftpsgate_backend_errors_total{backend,kind}`.
    pub fn backend_error(&self, _backend: &str, _kind: BackendErrorKind) {}
    /// `ftpsgate_backend_up{backend}` 1/0.
    pub fn backend_health(&self, _backend: &str, _healthy: bool) {}
    /// `ftpsgate_config_reloads_total{result}`.
    pub fn config_reload(&self, _ok: bool) {}
}
