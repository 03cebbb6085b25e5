//! Session families: sessions open and ended, logins, commands by verb.
//!
//! Recorded by the session driver (`session/mod.rs`) and its `Env`; the
//! gateway creates each listener's series at start. The session's own words
//! ([`SessionOutcome`]) are mapped to labels here, never the other way round.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::session::outcome::SessionOutcome;

/// How a login attempt went (the `result` label of `ftpsgate_logins_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginResult {
    /// `230`.
    Ok,
    /// Refused by the backend (or the throttle).
    Failed,
    /// `USER`/`PASS` before `AUTH TLS` on a listener that requires TLS.
    RefusedNoTls,
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

/// The `outcome` label value of a session's end (logs use the same word).
pub fn outcome_label(outcome: SessionOutcome) -> &'static str {
    match outcome {
        SessionOutcome::Ok => "ok",
        SessionOutcome::RefusedPolicy => "refused_policy",
        SessionOutcome::TlsFailed => "tls_failed",
        SessionOutcome::BackendUnavailable => "backend_unavailable",
        SessionOutcome::Timeout => "timeout",
        SessionOutcome::ClientError => "client_error",
        SessionOutcome::Killed => "killed",
        SessionOutcome::ClosedWithoutQuit => "closed_without_quit",
        SessionOutcome::Probe => "probe",
        SessionOutcome::Cut => "cut",
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
    label_at(verb_index(verb))
}

/// The label of a [`verb_index`] result.
fn label_at(i: usize) -> &'static str {
    KNOWN_VERBS.get(i).copied().unwrap_or("other")
}

/// `verb`'s index in [`KNOWN_VERBS`], or `KNOWN_VERBS.len()` for `other`: the verb
/// upper-cased on the stack, then a binary search (the list is sorted and no known
/// verb is longer than 4 bytes; a test checks both).
fn verb_index(verb: &str) -> usize {
    let other = KNOWN_VERBS.len();
    let mut upper = [0u8; 4];
    let Some(upper) = upper.get_mut(..verb.len()) else {
        return other;
    };
    for (u, b) in upper.iter_mut().zip(verb.bytes()) {
        *u = b.to_ascii_uppercase();
    }
    let upper: &[u8] = upper;
    KNOWN_VERBS
        .binary_search_by(|k| k.as_bytes().cmp(upper))
        .unwrap_or(other)
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

/// The session area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    active: Family<ListenerLabels, Gauge>,
    ended: Family<SessionLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    commands: Family<VerbLabels, Counter>,
    /// The `commands` counter of each verb label (index as [`verb_index`]), taken
    /// from the family at the verb's first use: counting a command then costs no
    /// lock and no label hashing (the family's series appear as before, on first use).
    command_counters: Box<[OnceLock<Counter>]>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            active: Family::default(),
            ended: Family::default(),
            logins: Family::default(),
            commands: Family::default(),
            command_counters: (0..=KNOWN_VERBS.len()).map(|_| OnceLock::new()).collect(),
        };
        // Counter names are registered without `_total`; the encoder appends it.
        r.register(
            "sessions_active",
            "Client sessions currently open",
            f.active.clone(),
        );
        r.register(
            "sessions",
            "Client sessions ended, by listener and outcome",
            f.ended.clone(),
        );
        r.register(
            "logins",
            "Login attempts, by listener and result",
            f.logins.clone(),
        );
        r.register(
            "commands",
            "FTP commands received from clients, by verb (unknown verbs count as other)",
            f.commands.clone(),
        );
        f
    }
}

impl Metrics {
    /// Creates the per-listener series at 0, so dashboards show idle listeners.
    pub fn listener_configured(&self, listener: &str) {
        drop(self.sessions.active.get_or_create(&ListenerLabels {
            listener: listener.to_owned(),
        }));
    }

    /// `ftpsgate_sessions_active{listener}` +1.
    pub fn session_started(&self, listener: &str) {
        self.sessions
            .active
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .inc();
    }

    /// `ftpsgate_sessions_active{listener}` -1, `ftpsgate_sessions_total{listener,outcome}` +1.
    pub fn session_ended(&self, listener: &str, outcome: SessionOutcome) {
        self.sessions
            .active
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .dec();
        self.sessions
            .ended
            .get_or_create(&SessionLabels {
                listener: listener.to_owned(),
                outcome: outcome_label(outcome),
            })
            .inc();
    }

    /// `ftpsgate_logins_total{listener,result}`.
    pub fn login(&self, listener: &str, result: LoginResult) {
        self.sessions
            .logins
            .get_or_create(&LoginLabels {
                listener: listener.to_owned(),
                result: result.as_str(),
            })
            .inc();
    }

    /// `ftpsgate_commands_total{verb}`; verbs outside a fixed set count as `other`.
    pub fn command(&self, verb: &str) {
        let i = verb_index(verb);
        let counter = || {
            let labels = VerbLabels { verb: label_at(i) };
            self.sessions.commands.get_or_create(&labels).clone()
        };
        match self.sessions.command_counters.get(i) {
            Some(cell) => cell.get_or_init(counter).inc(),
            // Not reached: the table has a cell per index verb_index returns.
            None => counter().inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn known_verbs_are_sorted_and_short_for_verb_index() {
        assert!(KNOWN_VERBS.windows(2).all(|w| w[0] < w[1]));
        assert!(KNOWN_VERBS.iter().all(|v| v.len() <= 4));
        for (i, v) in KNOWN_VERBS.iter().enumerate() {
            assert_eq!(verb_index(v), i);
            assert_eq!(verb_index(&v.to_ascii_lowercase()), i);
        }
        for v in ["", "X", "NOOPS", "RETRX", "é", "ÉÉ", "other"] {
            assert_eq!(verb_label(v), "other", "{v:?}");
        }
    }

    #[test]
    fn session_login_and_command_series_carry_bounded_labels() {
        let m = Metrics::new();
        m.session_started("edge");
        m.session_ended("edge", SessionOutcome::BackendUnavailable);
        m.login("edge", LoginResult::RefusedNoTls);
        m.command("retr");
        m.command("XYZZY-anything");
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
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn a_session_cut_at_the_drain_deadline_counts_as_cut() {
        let m = Metrics::new();
        m.session_ended("edge", SessionOutcome::Cut);
        assert_eq!(outcome_label(SessionOutcome::Cut), "cut");
        assert_eq!(
            sample(
                &m.encode(),
                "ftpsgate_sessions_total{listener=\"edge\",outcome=\"cut\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn verbs_are_a_closed_set() {
        assert_eq!(verb_label("stor"), "STOR");
        assert_eq!(verb_label("EPSV"), "EPSV");
        assert_eq!(verb_label("ftpsgatetest"), "other");
        assert_eq!(verb_label(""), "other");
    }
}
