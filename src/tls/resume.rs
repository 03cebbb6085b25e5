//! The client session store of one backend session: what the gateway's data
//! connections offer to resume the backend control connection's TLS session,
//! and the bookkeeping that tells a refused resumption from a server that
//! simply does not resume.
//!
//! Measured against the three servers (Debian 12, one session, rustls client):
//! - TLS 1.2: vsftpd, ProFTPD and pure-ftpd resume every data connection by
//!   session id; the id stays valid for the whole session (no supply to run out).
//! - TLS 1.3: each ticket is used once (rustls takes it out of the store).
//!   vsftpd sends 2 tickets after the control handshake and 1 on every data
//!   connection (both directions): sustainable, as long as every data
//!   connection is read before it is dropped. ProFTPD sends 2 on the control
//!   connection, 1 on a download data connection and **none on an upload**:
//!   every upload uses one up, the third upload has none and is refused (`425`).
//!   pure-ftpd sends none at all and does not require reuse.
//!
//! Hence [`super::BackendTls`] prefers TLS 1.2 toward backends whose data is
//! protected, and this store keeps the newest TLS 1.3 tickets for the case
//! where 1.3 is forced. It serves one backend session only (one server name),
//! so nothing of another session, or another backend, can be offered.
//!
//! No I/O here; no FTP.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::NamedGroup;
use rustls_pki_types::ServerName;

/// TLS 1.3 tickets kept per session; the oldest is dropped beyond this. A few
/// more than the two a server sends per handshake, so tickets picked up on
/// several data connections in a row are kept rather than replaced.
const TLS13_TICKETS_KEPT: usize = 8;

/// The resumption state of one backend session (control + its data connections).
#[derive(Debug, Default)]
pub struct SessionStore {
    state: Mutex<State>,
    /// TLS 1.3 tickets received over the session's lifetime.
    tickets_received: AtomicU64,
    /// A TLS 1.2 session was ever stored (the server hands out session ids).
    tls12_seen: AtomicBool,
    /// The last handshake asked for a TLS 1.3 ticket and found none.
    last_take_empty: AtomicBool,
}

#[derive(Default)]
struct State {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    /// Oldest first; the newest (longest left to live) is offered first.
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Session secrets are not printed.
        f.debug_struct("State")
            .field("tls12", &self.tls12.is_some())
            .field("tls13_tickets", &self.tls13.len())
            .finish()
    }
}

/// Why a backend data handshake did not resume (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotResumed {
    /// TLS 1.3, and every ticket of this session was used up: the server did
    /// not send new ones on earlier data connections.
    NoTicketLeft,
    /// A ticket or session id was offered and the server did a full handshake.
    Refused,
    /// The server never handed out anything to resume (it does not resume at
    /// all, e.g. pure-ftpd over TLS 1.3): not a failure, such servers do not
    /// require reuse.
    NeverOffered,
}

impl NotResumed {
    pub fn as_str(self) -> &'static str {
        match self {
            NotResumed::NoTicketLeft => "no_ticket_left",
            NotResumed::Refused => "refused",
            NotResumed::NeverOffered => "never_offered",
        }
    }

    /// True when a server that requires reuse will refuse this data connection
    /// and the gateway could have avoided it (counted in metrics).
    pub fn is_failure(self) -> bool {
        !matches!(self, NotResumed::NeverOffered)
    }
}

impl SessionStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// TLS 1.3 tickets available now.
    pub fn tickets(&self) -> usize {
        self.lock().tls13.len()
    }

    /// Classifies a data handshake of `version` (`tls::version_name`) that did
    /// not resume, from what this store had to offer.
    pub fn why_not_resumed(&self, version: &str) -> NotResumed {
        if version == "TLSv1.3" {
            if self.tickets_received.load(Ordering::Relaxed) == 0 {
                NotResumed::NeverOffered
            } else if self.last_take_empty.load(Ordering::Relaxed) {
                NotResumed::NoTicketLeft
            } else {
                NotResumed::Refused
            }
        } else if self.tls12_seen.load(Ordering::Relaxed) {
            NotResumed::Refused
        } else {
            NotResumed::NeverOffered
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One session talks to one server name, so the name is not a key here.
impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.lock().kx_hint = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().kx_hint
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.tls12_seen.store(true, Ordering::Relaxed);
        self.lock().tls12 = Some(value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.lock().tls12.clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.lock().tls12 = None;
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.tickets_received.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        if state.tls13.len() >= TLS13_TICKETS_KEPT {
            state.tls13.pop_front();
        }
        state.tls13.push_back(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let ticket = self.lock().tls13.pop_back();
        self.last_take_empty
            .store(ticket.is_none(), Ordering::Relaxed);
        ticket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_store_reports_never_offered() {
        let s = SessionStore::new();
        assert_eq!(s.why_not_resumed("TLSv1.3"), NotResumed::NeverOffered);
        assert_eq!(s.why_not_resumed("TLSv1.2"), NotResumed::NeverOffered);
        assert!(!NotResumed::NeverOffered.is_failure());
    }

    #[test]
    fn empty_take_after_tickets_means_ran_dry() {
        let s = SessionStore::new();
        s.tickets_received.store(2, Ordering::Relaxed);
        let name = ServerName::try_from("localhost").unwrap();
        assert!(s.take_tls13_ticket(&name).is_none());
        assert_eq!(s.why_not_resumed("TLSv1.3"), NotResumed::NoTicketLeft);
        assert!(NotResumed::NoTicketLeft.is_failure());
    }
}
