//! Prometheus metrics of the gateway (`prometheus-client`, typed label sets).
//!
//! One `Metrics` value per process, shared by `Arc`; every recording method is
//! cheap and infallible. Label values come only from closed enums below or from
//! configured listener/backend names — never from user names, client IPs or
//! message text, so cardinality stays bounded.
//!
//! The families live in one `Registry` owned by `Metrics` (no globals), all under
//! the `ftpsgate_` prefix, in base units (`_seconds`, `_bytes_total`). `http.rs`
//! serves [`Metrics::encode`] (Prometheus text 0.0.4) or
//! [`Metrics::encode_openmetrics`] as the scraper asks.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionOutcome {
    Ok,
    RefusedPolicy,
    TlsFailed,
    BackendUnavailable,
    Timeout,
    ClientError,
    /// The client closed between commands, no transfer running, without
    /// `QUIT` (wget, gftp, rclone): a normal end, counted apart.
    ClosedWithoutQuit,
    /// The connection closed before the client sent anything (a
    /// load-balancer or port probe): not a session.
    Probe,
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
    /// A reply no command asked for, dropped (issue 24).
    Unsolicited,
}

impl SessionOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionOutcome::Ok => "ok",
            SessionOutcome::RefusedPolicy => "refused_policy",
            SessionOutcome::TlsFailed => "tls_failed",
            SessionOutcome::BackendUnavailable => "backend_unavailable",
            SessionOutcome::Timeout => "timeout",
            SessionOutcome::ClientError => "client_error",
            SessionOutcome::ClosedWithoutQuit => "closed_without_quit",
            SessionOutcome::Probe => "probe",
        }
    }
}

impl LoginResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::Failed => "failed",
            LoginResult::RefusedNoTls => "refused_no_tls",
        }
    }
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

impl Dir {
    /// The `direction` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Download => "download",
            Dir::Upload => "upload",
        }
    }
}

impl TransferResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferResult::Ok => "ok",
            TransferResult::Failed => "failed",
            TransferResult::Aborted => "aborted",
            TransferResult::Refused => "refused",
        }
    }
}

impl PinholeRefusal {
    /// Every reason, for pre-creating the series at 0 (alerts on `rate()` need them).
    pub const ALL: [PinholeRefusal; 4] = [
        PinholeRefusal::Stealing,
        PinholeRefusal::Bounce,
        PinholeRefusal::Exhausted,
        PinholeRefusal::NoReuse,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PinholeRefusal::Stealing => "stealing",
            PinholeRefusal::Bounce => "bounce",
            PinholeRefusal::Exhausted => "exhausted",
            PinholeRefusal::NoReuse => "no_reuse",
        }
    }
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

/// Verbs counted under their own name in `ftpsgate_commands_total{verb}`; any
/// other word a client sends counts as `other`, so a client cannot create series.
const KNOWN_VERBS: &[&str] = &[
    "ABOR", "ACCT", "ALLO", "APPE", "AUTH", "CCC", "CDUP", "CWD", "DELE", "EPRT", "EPSV", "FEAT",
    "HELP", "HOST", "LANG", "LIST", "MDTM", "MFMT", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP",
    "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT", "PWD", "QUIT", "REIN", "REST", "RETR", "RMD",
    "RNFR", "RNTO", "SITE", "SIZE", "SMNT", "STAT", "STOR", "STOU", "STRU", "SYST", "TYPE", "USER",
    "XCUP", "XCWD", "XMKD", "XPWD", "XRMD",
];

/// The label value for `verb`: itself (upper case) when known, else `other`.
pub fn verb_label(verb: &str) -> &'static str {
    KNOWN_VERBS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(verb))
        .copied()
        .unwrap_or("other")
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SessionLabels {
    listener: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabels {
    listener: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransferLabels {
    listener: String,
    direction: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BytesLabels {
    side: &'static str,
    direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsLabels {
    side: &'static str,
    version: &'static str,
    result: &'static str,
    resumed: &'static str,
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

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Transfers take from milliseconds (a 1 KiB file on a LAN) to hours.
fn transfer_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    ])
}

/// Backend connect + greeting + TLS: about a millisecond on a LAN, up to the
/// `timeouts.connect` limit (10 s by default).
fn connect_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

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
    /// Holds a handle on every family below; encoded on each scrape.
    registry: Registry,
    sessions_active: Family<ListenerLabels, Gauge>,
    sessions: Family<SessionLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    commands: Family<VerbLabels, Counter>,
    transfers: Family<TransferLabels, Counter>,
    transfer_duration: HistogramFamily<DirLabels>,
    data_bytes: Family<BytesLabels, Counter>,
    pinholes_open: Gauge,
    pinholes_opened: Counter,
    pinholes_used: Counter,
    pinholes_expired: Counter,
    pinhole_refusals: Family<ReasonLabels, Counter>,
    tls_handshakes: Family<TlsLabels, Counter>,
    backend_connect: HistogramFamily<BackendLabels>,
    backend_errors: Family<BackendErrorLabels, Counter>,
    backend_up: Family<BackendLabels, Gauge>,
    backend_health_checks: Family<BackendResultLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_loaded: Gauge<f64, AtomicU64>,
    build_info: Family<VersionLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ftpsgate");
        let m = Metrics {
            sessions_active: Family::default(),
            sessions: Family::default(),
            logins: Family::default(),
            commands: Family::default(),
            transfers: Family::default(),
            transfer_duration: Family::new_with_constructor(transfer_histogram),
            data_bytes: Family::default(),
            pinholes_open: Gauge::default(),
            pinholes_opened: Counter::default(),
            pinholes_used: Counter::default(),
            pinholes_expired: Counter::default(),
            pinhole_refusals: Family::default(),
            tls_handshakes: Family::default(),
            backend_connect: Family::new_with_constructor(connect_histogram),
            backend_errors: Family::default(),
            backend_up: Family::default(),
            backend_health_checks: Family::default(),
            config_reloads: Family::default(),
            config_loaded: Gauge::default(),
            build_info: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        // Counter names are registered without `_total`; the encoder appends it.
        r.register(
            "sessions_active",
            "Client sessions currently open",
            m.sessions_active.clone(),
        );
        r.register(
            "sessions",
            "Client sessions ended, by listener and outcome",
            m.sessions.clone(),
        );
        r.register(
            "logins",
            "Login attempts, by listener and result",
            m.logins.clone(),
        );
        r.register(
            "commands",
            "FTP commands received from clients, by verb (unknown verbs count as other)",
            m.commands.clone(),
        );
        r.register(
            "transfers",
            "Data transfers finished, by listener, direction and result",
            m.transfers.clone(),
        );
        r.register(
            "transfer_duration_seconds",
            "Duration of finished data transfers",
            m.transfer_duration.clone(),
        );
        r.register(
            "data_bytes",
            "Data bytes relayed, by side (client/backend leg) and direction",
            m.data_bytes.clone(),
        );
        r.register(
            "pinholes_open",
            "Passive data pinholes currently open",
            m.pinholes_open.clone(),
        );
        r.register(
            "pinholes_opened",
            "Passive data pinholes opened",
            m.pinholes_opened.clone(),
        );
        r.register(
            "pinholes_used",
            "Pinholes closed after serving their one data connection",
            m.pinholes_used.clone(),
        );
        r.register(
            "pinholes_expired",
            "Pinholes closed unused (timeout or session end)",
            m.pinholes_expired.clone(),
        );
        r.register(
            "pinhole_refusals",
            "Data connections or pinholes refused, by reason",
            m.pinhole_refusals.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes, by side, version, result and whether the session was resumed",
            m.tls_handshakes.clone(),
        );
        r.register(
            "backend_connect_seconds",
            "Time to connect to a backend, read its greeting and set up TLS",
            m.backend_connect.clone(),
        );
        r.register(
            "backend_errors",
            "Errors on the backend leg, by backend and kind",
            m.backend_errors.clone(),
        );
        r.register(
            "backend_up",
            "Backend health: 1 healthy (or not checked), 0 failing its health check",
            m.backend_up.clone(),
        );
        r.register(
            "backend_health_checks",
            "Active backend health checks run, by backend and result",
            m.backend_health_checks.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads, by result",
            m.config_reloads.clone(),
        );
        r.register(
            "config_last_load_timestamp_seconds",
            "Unix time the running configuration was loaded",
            m.config_loaded.clone(),
        );
        r.register(
            "build_info",
            "Always 1; the version label says which ftpsgate runs",
            m.build_info.clone(),
        );

        // Series that alerts use with rate() exist from the start, at 0.
        for reason in PinholeRefusal::ALL {
            drop(m.pinhole_refusals.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            }));
        }
        for result in ["ok", "failed"] {
            drop(m.config_reloads.get_or_create(&ResultLabels { result }));
        }
        m.build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Metrics { registry, ..m }
    }
}

impl Metrics {
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

    /// Creates the per-listener series at 0, so dashboards show idle listeners.
    pub fn listener_configured(&self, listener: &str) {
        drop(self.sessions_active.get_or_create(&ListenerLabels {
            listener: listener.to_owned(),
        }));
    }

    /// `ftpsgate_config_last_load_timestamp_seconds` = now.
    pub fn config_loaded(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.config_loaded.set(now);
    }

    /// `ftpsgate_sessions_active{listener}` +1.
    pub fn session_started(&self, listener: &str) {
        self.sessions_active
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .inc();
    }
    /// `ftpsgate_sessions_active{listener}` -1, `ftpsgate_sessions_total{listener,outcome}` +1.
    pub fn session_ended(&self, listener: &str, outcome: SessionOutcome) {
        self.sessions_active
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .dec();
        self.sessions
            .get_or_create(&SessionLabels {
                listener: listener.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
    }
    /// `ftpsgate_logins_total{listener,result}`.
    pub fn login(&self, listener: &str, result: LoginResult) {
        self.logins
            .get_or_create(&LoginLabels {
                listener: listener.to_owned(),
                result: result.as_str(),
            })
            .inc();
    }
    /// `ftpsgate_commands_total{verb}`; verbs outside a fixed set count as `other`.
    pub fn command(&self, verb: &str) {
        self.commands
            .get_or_create(&VerbLabels {
                verb: verb_label(verb),
            })
            .inc();
    }
    /// `ftpsgate_transfers_total{listener,direction,result}`,
    /// `ftpsgate_transfer_duration_seconds{direction}` (histogram),
    /// `ftpsgate_data_bytes_total{side,direction}` for both sides.
    pub fn transfer_finished(
        &self,
        listener: &str,
        dir: Dir,
        result: TransferResult,
        client_bytes: u64,
        backend_bytes: u64,
        secs: f64,
    ) {
        let direction = dir.as_str();
        self.transfers
            .get_or_create(&TransferLabels {
                listener: listener.to_owned(),
                direction,
                result: result.as_str(),
            })
            .inc();
        self.transfer_duration
            .get_or_create(&DirLabels { direction })
            .observe(secs.max(0.0));
        for (side, bytes) in [(Side::Client, client_bytes), (Side::Backend, backend_bytes)] {
            self.data_bytes
                .get_or_create(&BytesLabels {
                    side: side.as_str(),
                    direction,
                })
                .inc_by(bytes);
        }
    }
    /// `ftpsgate_pinholes_open` +1, `ftpsgate_pinholes_opened_total` +1.
    pub fn pinhole_opened(&self) {
        self.pinholes_open.inc();
        self.pinholes_opened.inc();
    }
    /// `ftpsgate_pinholes_open` -1, and `ftpsgate_pinholes_used_total` or
    /// `ftpsgate_pinholes_expired_total` +1.
    pub fn pinhole_closed(&self, used: bool) {
        self.pinholes_open.dec();
        if used {
            self.pinholes_used.inc();
        } else {
            self.pinholes_expired.inc();
        }
    }
    /// `ftpsgate_pinhole_refusals_total{reason}`.
    pub fn pinhole_refused(&self, reason: PinholeRefusal) {
        self.pinhole_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }
    /// `ftpsgate_tls_handshakes_total{side,version,result,resumed}`; `version`
    /// is "TLSv1.2", "TLSv1.3" or "none" (failed before agreeing).
    pub fn tls_handshake(&self, side: Side, version: &'static str, ok: bool, resumed: bool) {
        self.tls_handshakes
            .get_or_create(&TlsLabels {
                side: side.as_str(),
                version,
                result: ok_label(ok),
                resumed: if resumed { "true" } else { "false" },
            })
            .inc();
    }
    /// `ftpsgate_backend_connect_seconds{backend}` (histogram).
    pub fn backend_connected(&self, backend: &str, secs: f64) {
        self.backend_connect
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .observe(secs.max(0.0));
    }
    /// `ftpsgate_backend_errors_total{backend,kind}`.
    pub fn backend_error(&self, backend: &str, kind: BackendErrorKind) {
        self.backend_errors
            .get_or_create(&BackendErrorLabels {
                backend: backend.to_owned(),
                kind: kind.as_str(),
            })
            .inc();
    }
    /// `ftpsgate_backend_up{backend}` 1/0.
    pub fn backend_health(&self, backend: &str, healthy: bool) {
        self.backend_up
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .set(i64::from(healthy));
    }
    /// `ftpsgate_backend_health_checks_total{backend,result}`: one active check ran.
    pub fn health_check(&self, backend: &str, ok: bool) {
        self.backend_health_checks
            .get_or_create(&BackendResultLabels {
                backend: backend.to_owned(),
                result: ok_label(ok),
            })
            .inc();
    }
    /// `ftpsgate_config_reloads_total{result}`.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: ok_label(ok),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `line_prefix VALUE` in `text`, if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_end_in_total_and_carry_bounded_labels() {
        let m = Metrics::new();
        m.session_started("edge");
        m.session_ended("edge", SessionOutcome::BackendUnavailable);
        m.login("edge", LoginResult::RefusedNoTls);
        m.command("retr");
        m.command("XYZZY-anything");
        m.transfer_finished("edge", Dir::Upload, TransferResult::Ok, 1024, 1000, 0.3);
        m.pinhole_refused(PinholeRefusal::NoReuse);
        m.tls_handshake(Side::Client, "TLSv1.3", true, true);
        m.backend_error("vs", BackendErrorKind::Tls);
        m.backend_health("vs", false);
        let text = m.encode();
        for (series, value) in [
            ("ftpsgate_sessions_active{listener=\"edge\"}", 0.0),
            (
                "ftpsgate_sessions_total{listener=\"edge\",outcome=\"backend_unavailable\"}",
                1.0,
            ),
            (
                "ftpsgate_logins_total{listener=\"edge\",result=\"refused_no_tls\"}",
                1.0,
            ),
            ("ftpsgate_commands_total{verb=\"RETR\"}", 1.0),
            ("ftpsgate_commands_total{verb=\"other\"}", 1.0),
            (
                "ftpsgate_transfers_total{listener=\"edge\",direction=\"upload\",result=\"ok\"}",
                1.0,
            ),
            (
                "ftpsgate_data_bytes_total{side=\"client\",direction=\"upload\"}",
                1024.0,
            ),
            (
                "ftpsgate_data_bytes_total{side=\"backend\",direction=\"upload\"}",
                1000.0,
            ),
            ("ftpsgate_transfer_duration_seconds_count{direction=\"upload\"}", 1.0),
            (
                "ftpsgate_transfer_duration_seconds_bucket{direction=\"upload\",le=\"0.5\"}",
                1.0,
            ),
            ("ftpsgate_pinhole_refusals_total{reason=\"no_reuse\"}", 1.0),
            ("ftpsgate_pinhole_refusals_total{reason=\"stealing\"}", 0.0),
            (
                "ftpsgate_tls_handshakes_total{side=\"client\",version=\"TLSv1.3\",result=\"ok\",resumed=\"true\"}",
                1.0,
            ),
            (
                "ftpsgate_backend_errors_total{backend=\"vs\",kind=\"tls\"}",
                1.0,
            ),
            ("ftpsgate_backend_up{backend=\"vs\"}", 0.0),
            (
                &format!(
                    "ftpsgate_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                ),
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(
            text.contains("# TYPE ftpsgate_sessions_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn pinholes_open_follows_opened_and_closed() {
        let m = Metrics::new();
        m.pinhole_opened();
        m.pinhole_opened();
        m.pinhole_closed(true);
        let text = m.encode();
        assert_eq!(sample(&text, "ftpsgate_pinholes_open"), Some(1.0));
        assert_eq!(sample(&text, "ftpsgate_pinholes_opened_total"), Some(2.0));
        assert_eq!(sample(&text, "ftpsgate_pinholes_used_total"), Some(1.0));
        assert_eq!(sample(&text, "ftpsgate_pinholes_expired_total"), Some(0.0));
    }

    #[test]
    fn verbs_are_a_closed_set() {
        assert_eq!(verb_label("stor"), "STOR");
        assert_eq!(verb_label("EPSV"), "EPSV");
        assert_eq!(verb_label("ftpsgatetest"), "other");
        assert_eq!(verb_label(""), "other");
    }
}
