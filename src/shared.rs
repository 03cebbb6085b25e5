//! State shared by every session of the process, across reloads: the drain
//! signals, the count of running sessions, connection counts for limits and
//! the failed-login throttle, the registry of running sessions and the
//! operator's per-backend switches (`ftpsgate ctl`). The decisions themselves
//! are pure functions in `policy`; this module only holds the state they are
//! applied to.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{FailedLogins, Limits, ListenerLimits};
use crate::health::Health;
use crate::policy::bounds::ConnectionRate;
use crate::policy::{self, Attempt, LoginThrottle};

pub struct Shared {
    pub health: Arc<Health>,
    /// Turns true when the gateway drains: idle sessions say 421 and close,
    /// sessions in a transfer close after it.
    drain: watch::Receiver<bool>,
    /// Turns true when the drain deadline passed: close now.
    force: watch::Receiver<bool>,
    active: AtomicUsize,
    idle: Notify,
    conns: Mutex<Conns>,
    /// The failed-login throttle with the config it was built from
    /// (`limits.failed_logins`, `limits.ipv6_prefix`); `None`: off.
    throttle: Mutex<Option<(ThrottleCfg, LoginThrottle)>>,
    /// `limits.connection_rate_per_ip`: token buckets per address.
    rate: Mutex<Option<ConnectionRate>>,
    /// Passive ports held, per listener and client address / user
    /// (`passive.max_per_client`).
    ports: Mutex<HashMap<(String, PortHolder), usize>>,
    /// Every running session by id, for `ctl sessions|kill|pinholes`; an
    /// entry lives as long as its session's [`Registration`].
    sessions: Mutex<BTreeMap<u64, Arc<Entry>>>,
    next_id: AtomicU64,
    /// Backends an operator took out of rotation, by name; kept across
    /// reloads (a backend removed and added again keeps its switch).
    backend_admin: Mutex<HashMap<String, BackendAdmin>>,
}

/// An operator's switch on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendAdmin {
    /// Chosen by no new session; running sessions go on.
    Disabled,
    /// Chosen by no new session; running sessions finish (the operator waits
    /// for them to reach zero before maintenance).
    Draining,
}

/// What a session is doing, as `ctl sessions` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Not (yet) logged in.
    Login,
    Idle,
    Transfer,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Login => "login",
            SessionState::Idle => "idle",
            SessionState::Transfer => "transfer",
        }
    }
}

/// One running session as the registry knows it (a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    /// The login name, once a login succeeded.
    pub user: Option<String>,
    pub client: SocketAddr,
    pub listener: String,
    /// The backend chosen at `USER`.
    pub backend: Option<String>,
    pub state: SessionState,
    /// Data bytes of the session's finished transfers.
    pub bytes: u64,
    pub started: std::time::SystemTime,
    /// The pinhole waiting for this session's data connection, if any.
    pub pinhole: Option<SocketAddr>,
    /// The client certificate's identity (`tls.client_auth.identity`), if any.
    pub identity: Option<String>,
    /// The logged-in user's password was checked by the gateway
    /// (`auth: gateway`); false before a login and for `auth: backend`.
    pub gateway_auth: bool,
}

/// What the session driver reports after each step (borrowed; copied only
/// when it changed).
pub struct SessionUpdate<'a> {
    pub user: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub state: SessionState,
    pub pinhole: Option<SocketAddr>,
    /// The client certificate's identity, if any.
    pub identity: Option<&'a str>,
    /// The gateway checked the logged-in user's password.
    pub gateway_auth: bool,
}

struct Entry {
    info: Mutex<SessionInfo>,
    /// Turns true when an operator kills the session.
    kill: watch::Sender<bool>,
}

/// Who holds pinhole ports of a listener's range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortHolder {
    Address(IpAddr),
    User(String),
}

#[derive(Default)]
struct Conns {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_listener: HashMap<String, usize>,
    per_listener_ip: HashMap<(String, IpAddr), usize>,
    /// Sessions per address that have not logged in yet.
    unauthenticated: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
    Listener,
    ListenerPerIp,
    Unauthenticated,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_sessions",
            Refusal::PerIp => "max_sessions_per_ip",
            Refusal::Listener => "listener max_sessions",
            Refusal::ListenerPerIp => "listener max_sessions_per_ip",
            Refusal::Unauthenticated => "max_unauthenticated_per_ip",
        }
    }
}

/// What a throttle was built from: compared on reload.
type ThrottleCfg = (FailedLogins, u8);

fn throttle(limits: &Limits) -> Option<(ThrottleCfg, LoginThrottle)> {
    limits.failed_logins.map(|f| {
        let t = LoginThrottle::new(f).with_v6_prefix(limits.ipv6_prefix);
        ((f, limits.ipv6_prefix), t)
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay usable even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(
        health: Arc<Health>,
        drain: watch::Receiver<bool>,
        force: watch::Receiver<bool>,
        limits: &Limits,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            health,
            drain,
            force,
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            conns: Mutex::new(Conns::default()),
            throttle: Mutex::new(throttle(limits)),
            sessions: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            backend_admin: Mutex::new(HashMap::new()),
            rate: Mutex::new(None),
            ports: Mutex::new(HashMap::new()),
        })
    }

    /// Enter a session into the registry until the registration drops.
    pub fn register(self: &Arc<Self>, listener: &str, client: SocketAddr) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (kill, killed) = watch::channel(false);
        let entry = Arc::new(Entry {
            info: Mutex::new(SessionInfo {
                id,
                user: None,
                client,
                listener: listener.to_owned(),
                backend: None,
                state: SessionState::Login,
                bytes: 0,
                started: std::time::SystemTime::now(),
                pinhole: None,
                identity: None,
                gateway_auth: false,
            }),
            kill,
        });
        lock(&self.sessions).insert(id, entry.clone());
        Registration {
            shared: self.clone(),
            entry,
            killed,
        }
    }

    /// Every running session, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        lock(&self.sessions)
            .values()
            .map(|e| lock(&e.info).clone())
            .collect()
    }

    /// Tell session `id` to end (`421`); false when there is no such session.
    pub fn kill(&self, id: u64) -> bool {
        match lock(&self.sessions).get(&id) {
            Some(e) => {
                e.kill.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Set or clear (`None`) the operator's switch on backend `name`.
    pub fn set_backend_admin(&self, name: &str, admin: Option<BackendAdmin>) {
        let mut m = lock(&self.backend_admin);
        match admin {
            Some(a) => {
                m.insert(name.to_owned(), a);
            }
            None => {
                m.remove(name);
            }
        }
    }

    pub fn backend_admin(&self, name: &str) -> Option<BackendAdmin> {
        lock(&self.backend_admin).get(name).copied()
    }

    /// May new sessions choose backend `name`?
    pub fn backend_accepting(&self, name: &str) -> bool {
        self.backend_admin(name).is_none()
    }

    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.clone()
    }

    pub fn force_signal(&self) -> watch::Receiver<bool> {
        self.force.clone()
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Resolves when no session is running.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Count one running session until the guard drops.
    pub fn session_started(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.clone())
    }

    /// A reload may change the throttle (`limits.failed_logins`,
    /// `limits.ipv6_prefix`); counts are kept when it did not change.
    pub fn set_failed_logins(&self, limits: &Limits) {
        let mut t = lock(&self.throttle);
        let new = limits.failed_logins.map(|f| (f, limits.ipv6_prefix));
        if t.as_ref().map(|(old, _)| *old) != new {
            *t = throttle(limits);
        }
    }

    /// A reload may change the connection rate; buckets are kept when it did not.
    pub fn set_connection_rate(&self, rate: Option<u32>) {
        let mut r = lock(&self.rate);
        if r.as_ref().map(|r| r.rate()) != rate {
            *r = rate.map(ConnectionRate::new);
        }
    }

    /// `limits.connection_rate_per_ip`: may `ip` open a connection now?
    pub fn connection_rate_allows(&self, ip: IpAddr) -> bool {
        match &mut *lock(&self.rate) {
            Some(r) => r.allow(ip.to_canonical(), Instant::now()),
            None => true,
        }
    }

    /// Take one passive port for `holders` on `listener` if none of them is at
    /// its `cap`; the guard gives it back.
    pub fn take_port(
        self: &Arc<Self>,
        listener: &str,
        holders: Vec<PortHolder>,
        cap: usize,
    ) -> Result<PortGuard, PortHolder> {
        let mut p = lock(&self.ports);
        let keys: Vec<(String, PortHolder)> = holders
            .into_iter()
            .map(|h| (listener.to_owned(), h))
            .collect();
        for k in &keys {
            let held = p.get(k).copied().unwrap_or(0);
            if !crate::policy::bounds::port_share_allows(held, cap) {
                return Err(k.1.clone());
            }
        }
        for k in &keys {
            *p.entry(k.clone()).or_default() += 1;
        }
        Ok(PortGuard {
            shared: self.clone(),
            keys,
        })
    }

    /// Is this address cooling down after too many failed logins?
    pub fn login_blocked(&self, ip: IpAddr) -> bool {
        match &mut *lock(&self.throttle) {
            Some((_, t)) => t.blocked(ip, Instant::now()),
            None => false,
        }
    }

    /// A `PASS` from `ip` is about to be forwarded: count it as an attempt.
    /// `None` when the address cools down or has its whole budget in flight
    /// (refuse the `PASS`); the attempt ends when the guard is told its
    /// outcome, or as a failure when it is dropped unanswered (a client that
    /// closes before the reply has still made its guess).
    pub fn begin_login_attempt(self: &Arc<Self>, ip: IpAddr) -> Option<LoginAttempt> {
        let counted = match &mut *lock(&self.throttle) {
            Some((_, t)) => {
                if !t.begin_attempt(ip, Instant::now()) {
                    return None;
                }
                true
            }
            None => false,
        };
        Some(LoginAttempt {
            shared: self.clone(),
            ip,
            counted,
        })
    }

    fn end_login_attempt(&self, ip: IpAddr, outcome: Attempt) -> bool {
        match &mut *lock(&self.throttle) {
            Some((_, t)) => {
                let now = Instant::now();
                t.end_attempt(ip, now, outcome);
                t.blocked(ip, now)
            }
            None => false,
        }
    }

    /// Admit one connection under the global and listener limits.
    pub fn admit(
        self: &Arc<Self>,
        listener: &str,
        ip: IpAddr,
        global: &Limits,
        local: &ListenerLimits,
    ) -> Result<ConnGuard, Refusal> {
        // One IPv6 subscriber (its prefix) is one address here, as in the throttle.
        let ip = policy::address_key(ip, global.ipv6_prefix);
        let mut c = lock(&self.conns);
        let over = |n: usize, max: Option<usize>| max.is_some_and(|m| n >= m);
        if over(c.total, global.max_sessions) {
            return Err(Refusal::Total);
        }
        if over(
            c.per_ip.get(&ip).copied().unwrap_or(0),
            global.max_sessions_per_ip,
        ) {
            return Err(Refusal::PerIp);
        }
        if over(
            c.per_listener.get(listener).copied().unwrap_or(0),
            local.max_sessions,
        ) {
            return Err(Refusal::Listener);
        }
        let key = (listener.to_owned(), ip);
        if over(
            c.per_listener_ip.get(&key).copied().unwrap_or(0),
            local.max_sessions_per_ip,
        ) {
            return Err(Refusal::ListenerPerIp);
        }
        if over(
            c.unauthenticated.get(&ip).copied().unwrap_or(0),
            global.max_unauthenticated_per_ip,
        ) {
            return Err(Refusal::Unauthenticated);
        }
        *c.unauthenticated.entry(ip).or_default() += 1;
        c.total += 1;
        *c.per_ip.entry(ip).or_default() += 1;
        *c.per_listener.entry(listener.to_owned()).or_default() += 1;
        *c.per_listener_ip.entry(key).or_default() += 1;
        Ok(ConnGuard {
            shared: self.clone(),
            listener: listener.to_owned(),
            ip,
            unauthenticated: true,
        })
    }
}

/// A session's entry in the registry; dropping it removes the entry.
pub struct Registration {
    shared: Arc<Shared>,
    entry: Arc<Entry>,
    killed: watch::Receiver<bool>,
}

impl Registration {
    pub fn id(&self) -> u64 {
        lock(&self.entry.info).id
    }

    /// Record what the session is doing now.
    pub fn update(&self, u: SessionUpdate<'_>) {
        let mut i = lock(&self.entry.info);
        if i.user.as_deref() != u.user {
            i.user = u.user.map(str::to_owned);
        }
        if i.backend.as_deref() != u.backend {
            i.backend = u.backend.map(str::to_owned);
        }
        if i.identity.as_deref() != u.identity {
            i.identity = u.identity.map(str::to_owned);
        }
        i.state = u.state;
        i.pinhole = u.pinhole;
        i.gateway_auth = u.gateway_auth;
    }

    /// Count the data bytes of a finished transfer.
    pub fn add_bytes(&self, n: u64) {
        let mut i = lock(&self.entry.info);
        i.bytes = i.bytes.saturating_add(n);
    }

    /// Resolves when an operator killed the session (pending forever otherwise).
    pub async fn killed(&mut self) {
        if self.killed.wait_for(|k| *k).await.is_err() {
            // The sender lives in the entry we hold: cannot happen; never resolve.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = lock(&self.entry.info).id;
        lock(&self.shared.sessions).remove(&id);
    }
}

/// One `PASS` forwarded and not yet answered (see [`Shared::begin_login_attempt`]).
pub struct LoginAttempt {
    shared: Arc<Shared>,
    ip: IpAddr,
    /// Counted by the throttle (false when none is configured).
    counted: bool,
}

impl LoginAttempt {
    /// The backend said `230`; `fresh` when the session was not logged in.
    pub fn succeeded(mut self, fresh: bool) {
        self.end(Attempt::Succeeded { fresh });
    }

    /// The backend refused the password; true when the address must now cool down.
    pub fn failed(mut self) -> bool {
        self.end(Attempt::Failed)
    }

    fn end(&mut self, outcome: Attempt) -> bool {
        let counted = std::mem::replace(&mut self.counted, false);
        counted && self.shared.end_login_attempt(self.ip, outcome)
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        self.end(Attempt::Failed);
    }
}

/// Passive ports held for one pinhole (`passive.max_per_client`).
pub struct PortGuard {
    shared: Arc<Shared>,
    keys: Vec<(String, PortHolder)>,
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        let mut p = lock(&self.shared.ports);
        for k in self.keys.drain(..) {
            if let Some(n) = p.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    p.remove(&k);
                }
            }
        }
    }
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K) {
    if let Some(n) = m.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            m.remove(&k);
        }
    }
}

/// One running session (for drain).
pub struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One admitted connection (for limits); counts as unauthenticated until
/// [`ConnGuard::logged_in`].
pub struct ConnGuard {
    shared: Arc<Shared>,
    listener: String,
    ip: IpAddr,
    unauthenticated: bool,
}

impl ConnGuard {
    /// The session logged in: it no longer counts against
    /// `max_unauthenticated_per_ip`. (A later `REIN` does not count it again:
    /// it proved a login once, and its login deadline bounds it again.)
    pub fn logged_in(&mut self) {
        if std::mem::take(&mut self.unauthenticated) {
            dec(&mut lock(&self.shared.conns).unauthenticated, self.ip);
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = lock(&self.shared.conns);
        c.total = c.total.saturating_sub(1);
        if self.unauthenticated {
            dec(&mut c.unauthenticated, self.ip);
        }
        dec(&mut c.per_ip, self.ip);
        dec(&mut c.per_listener, self.listener.clone());
        dec(&mut c.per_listener_ip, (self.listener.clone(), self.ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        let (_d, drain) = watch::channel(false);
        let (_f, force) = watch::channel(false);
        Shared::new(
            Health::new(std::iter::empty()),
            drain,
            force,
            &Limits::default(),
        )
    }

    #[tokio::test]
    async fn sessions_register_update_kill_and_leave() {
        let s = shared();
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut a = s.register("edge", client);
        let b = s.register("edge", client);
        assert_ne!(a.id(), b.id());
        a.update(SessionUpdate {
            user: Some("alice"),
            backend: Some("vs"),
            state: SessionState::Idle,
            pinhole: None,
            identity: Some("alice@example.org"),
            gateway_auth: true,
        });
        a.add_bytes(10);
        a.add_bytes(5);
        let list = s.sessions();
        assert_eq!(list.len(), 2);
        let first = &list[0];
        assert_eq!(
            (first.user.as_deref(), first.backend.as_deref(), first.bytes),
            (Some("alice"), Some("vs"), 15)
        );
        assert_eq!(
            (first.identity.as_deref(), first.gateway_auth),
            (Some("alice@example.org"), true)
        );
        assert_eq!(
            (
                list[1].state,
                list[1].identity.as_deref(),
                list[1].gateway_auth
            ),
            (SessionState::Login, None, false)
        );
        assert!(s.kill(a.id()));
        tokio::time::timeout(std::time::Duration::from_secs(1), a.killed())
            .await
            .expect("kill reaches the session");
        drop(a);
        assert_eq!(s.sessions().len(), 1);
        assert!(!s.kill(9999));
        drop(b);
        assert!(s.sessions().is_empty());
    }

    #[test]
    fn backend_switches_take_it_out_until_enabled() {
        let s = shared();
        assert!(s.backend_accepting("vs"));
        s.set_backend_admin("vs", Some(BackendAdmin::Draining));
        assert!(!s.backend_accepting("vs"));
        assert!(s.backend_accepting("other"));
        s.set_backend_admin("vs", None);
        assert!(s.backend_accepting("vs"));
    }
}
