//! Policy decisions: may this client connect, where does this login go, may this
//! command run, is this address cooling down after failed logins.
//!
//! Pure functions over the typed [`crate::config`] values: no tokio, no I/O, and no
//! clock — time is an argument (`now`), so the throttle is tested without sleeping.
//! The session and gateway code asks; it never re-implements a rule.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{AccessRule, Action, Balance, CommandPolicy, FailedLogins, Listener, Route};

pub mod balance;
pub mod bounds;

pub use bounds::{default_limits, DefaultLimits};

// The glob matcher and the never-filtered verbs are part of what a config value
// means, so they live in `config` (which also warns about shadowed routes and
// unfilterable verbs at load time); re-exported here, where decisions use them.
pub use crate::config::{user_matches, DEFAULT_IPV6_PREFIX, NEVER_FILTERED};

/// Outcome of [`check_access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessDecision {
    /// Let the client in.
    Allow,
    /// `rule` is the index of the deny rule that matched, counted over the
    /// listener's rules followed by the global ones (global rule `i` is
    /// `listener.len() + i`); `None` when no rule matched but some list has an
    /// allow rule (default deny).
    Deny {
        /// Index of the matching deny rule.
        rule: Option<usize>,
    },
}

/// Listener rules first, then global; the first rule with a network containing
/// `client` decides. Without a match the client is denied if any allow rule exists
/// in either list (an allow list means "only these"), else allowed.
///
/// IPv4-mapped IPv6 clients (`::ffff:10.0.0.1`, what a dual-stack socket reports)
/// match IPv4 networks, and IPv4 clients match mapped networks.
pub fn check_access(
    listener: &[AccessRule],
    global: &[AccessRule],
    client: IpAddr,
) -> AccessDecision {
    let canonical = client.to_canonical();
    let mapped = match canonical {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let matched = listener.iter().chain(global).position(|rule| {
        rule.networks
            .iter()
            .any(|n| n.contains(&canonical) || n.contains(&mapped))
    });
    let all = || listener.iter().chain(global);
    match matched {
        Some(i) => match all().nth(i).map(|r| r.action) {
            Some(Action::Deny) => AccessDecision::Deny { rule: Some(i) },
            _ => AccessDecision::Allow,
        },
        None if all().any(|r| r.action == Action::Allow) => AccessDecision::Deny { rule: None },
        None => AccessDecision::Allow,
    }
}

/// Where a login goes: see [`route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChoice<'a> {
    /// The user name to send to the backend (`alice` for `alice@srv-b`).
    pub login: String,
    /// The route that matched the login name; `None`: the listener's default
    /// backend, no command filter.
    pub route: Option<&'a Route>,
    /// Candidate backends in configured order; never empty.
    pub backends: Vec<String>,
    /// How to pick among `backends`.
    pub balance: Balance,
}

impl RouteChoice<'_> {
    /// The command filter for this session (`Any` without a route).
    pub fn commands(&self) -> &CommandPolicy {
        static ANY: CommandPolicy = CommandPolicy::Any;
        self.route.map_or(&ANY, |r| &r.commands)
    }
}

/// Why a login cannot be routed; the client's fault (reply `530`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RouteError {
    /// `user@x` (with `user_at_backend`) where `x` looks like a backend name but is
    /// not one this listener routes to.
    #[error("backend \"{0}\" is not available on this listener")]
    UnknownBackend(String),
}

/// Routes a login name (the `USER` argument) on `listener`.
///
/// With `user_at_backend`, `user@x` is split at the LAST `@`: if `x` names a backend
/// this listener can route to (`listener.backend` or any route's backends), the
/// session goes to `x` and `user` is the login sent on. Otherwise the whole string is
/// the user name, so e-mail-like logins (`bob@example.com`) keep working — except
/// that a suffix without a dot (`alice@srv-z`), which can only be meant as a backend,
/// is refused with [`RouteError::UnknownBackend`] rather than sent as a mangled name
/// to the default backend.
///
/// Then the first route whose `user` matches the (stripped) login name applies: its
/// backends (unless `@x` chose one) and its command filter. No match: the listener's
/// default `backend`, round-robin, no filter.
pub fn route<'a>(listener: &'a Listener, login: &str) -> Result<RouteChoice<'a>, RouteError> {
    let mut user = login;
    let mut chosen: Option<&str> = None;
    if listener.user_at_backend {
        if let Some((name, suffix)) = login.rsplit_once('@') {
            if !name.is_empty() && routable(listener, suffix) {
                user = name;
                chosen = Some(suffix);
            } else if !name.is_empty() && !suffix.is_empty() && !suffix.contains('.') {
                return Err(RouteError::UnknownBackend(suffix.to_owned()));
            }
        }
    }
    let route = listener.routes.iter().find(|r| user_matches(&r.user, user));
    let balance = route.map_or(Balance::RoundRobin, |r| r.balance);
    let backends = match (chosen, route) {
        (Some(b), _) => vec![b.to_owned()],
        (None, Some(r)) => r.backends.clone(),
        (None, None) => vec![listener.backend.clone()],
    };
    Ok(RouteChoice {
        login: user.to_owned(),
        route,
        backends,
        balance,
    })
}

/// Whether `name` is the listener's default backend or in any of its routes
/// ([`Listener::routes_to`], which `config` uses for its unused-backend warning).
pub fn routable(listener: &Listener, name: &str) -> bool {
    listener.routes_to(name)
}

/// Verbs that may reach the backend before a login succeeded (the backend's
/// `230`): the login itself, TLS setup and harmless queries. Every other verb
/// gets `530` from the gateway until then, so a pre-authentication hole in a
/// backend (ProFTPD mod_copy's `SITE CPFR/CPTO`, CVE-2015-3306) cannot be
/// reached through the gateway, whatever the route's filter says.
pub const LOGIN_PHASE: &[&str] = &[
    "USER", "PASS", "ACCT", "AUTH", "PBSZ", "PROT", "FEAT", "SYST", "OPTS", "HELP", "NOOP", "QUIT",
];

/// Whether `verb` (upper case) may reach the backend before login.
pub fn allowed_before_login(verb: &str) -> bool {
    LOGIN_PHASE.contains(&verb)
}

/// Whether `verb` (any case) may be sent under `policy`. [`NEVER_FILTERED`] verbs
/// always may. The RFC 775 aliases (`XMKD`, `XRMD`, `XCWD`, `XCUP`, `XPWD`) count
/// as the commands they alias, so denying `MKD` also denies `XMKD`.
pub fn command_allowed(policy: &CommandPolicy, verb: &str) -> bool {
    let verb = verb.to_ascii_uppercase();
    let verb = canonical_verb(&verb);
    if NEVER_FILTERED.contains(&verb) {
        return true;
    }
    let listed = |list: &[String]| list.iter().any(|v| canonical_verb(v) == verb);
    match policy {
        CommandPolicy::Any => true,
        CommandPolicy::Allow(list) => listed(list),
        CommandPolicy::Deny(list) => !listed(list),
    }
}

/// RFC 775 experimental verbs mapped to their RFC 959 names.
fn canonical_verb(verb: &str) -> &str {
    match verb {
        "XMKD" => "MKD",
        "XRMD" => "RMD",
        "XCWD" => "CWD",
        "XCUP" => "CDUP",
        "XPWD" => "PWD",
        other => other,
    }
}

/// The key a client address is counted under, for session limits and the
/// failed-login throttle alike: IPv4 (and IPv4-mapped IPv6) as is, IPv6 cut to
/// its first `v6_prefix` bits (at most 128). Applied to the address a PROXY
/// header names, too: it is the client.
pub fn address_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Default number of addresses a [`LoginThrottle`] tracks at most.
pub const THROTTLE_CAPACITY: usize = 100_000;

/// Failed logins per client address in a sliding window: `max` failures within
/// `window` block the address for `cooldown`.
///
/// Attempts are counted where they happen: [`begin_attempt`](Self::begin_attempt)
/// is asked before each `PASS` is forwarded and refuses while the address cools
/// down or while its failures plus the attempts still in flight reach `max`, so
/// many sessions parked after `USER` cannot send more guesses at once than the
/// budget allows. Each begun attempt ends as a failure (also when its session
/// ends before the reply) or a success; only a fresh login forgets failures.
///
/// IPv6 clients are counted per prefix, /64 unless [`with_v6_prefix`](Self::with_v6_prefix)
/// says otherwise (one subscriber's prefix; rotating addresses in it does not reset
/// the count), IPv4-mapped IPv6 as IPv4 ([`address_key`]). Memory is bounded: at
/// most `capacity` addresses are tracked; when full, expired entries go first, then
/// the least recently active tenth.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    cfg: FailedLogins,
    capacity: usize,
    /// IPv6 prefix length addresses are counted by.
    v6_prefix: u8,
    entries: HashMap<IpAddr, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Times of failures inside the window, oldest first; at most `max`.
    failures: VecDeque<Instant>,
    /// When the current cool-down started.
    blocked_since: Option<Instant>,
    /// Last failure or attempt recorded, for eviction.
    last: Instant,
    /// Attempts begun and not yet ended (PASS forwarded, reply due).
    in_flight: usize,
}

impl LoginThrottle {
    /// A throttle tracking up to [`THROTTLE_CAPACITY`] addresses.
    pub fn new(cfg: FailedLogins) -> Self {
        Self::with_capacity(cfg, THROTTLE_CAPACITY)
    }

    /// A throttle tracking up to `capacity` addresses (at least 1).
    pub fn with_capacity(cfg: FailedLogins, capacity: usize) -> Self {
        LoginThrottle {
            cfg,
            capacity: capacity.max(1),
            v6_prefix: DEFAULT_IPV6_PREFIX,
            entries: HashMap::new(),
        }
    }

    /// Counts IPv6 clients by their first `bits` bits (`limits.ipv6_prefix`).
    pub fn with_v6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits;
        self
    }

    /// Counts a failed login from `ip` at `now`; the `max`-th failure inside the
    /// window starts the cool-down. Failures during a cool-down do not extend it.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        let key = address_key(ip, self.v6_prefix);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.evict(now);
        }
        let cfg = self.cfg;
        let e = self.entries.entry(key).or_insert_with(|| Entry::new(now));
        e.last = now;
        if e.blocked_since
            .is_some_and(|t| elapsed(t, now) < cfg.cooldown)
        {
            return;
        }
        e.blocked_since = None;
        while e
            .failures
            .front()
            .is_some_and(|t| elapsed(*t, now) >= cfg.window)
        {
            e.failures.pop_front();
        }
        e.failures.push_back(now);
        if e.failures.len() >= cfg.max as usize {
            e.failures.clear();
            e.blocked_since = Some(now);
        }
    }

    /// Asked before a `PASS` is forwarded: `true` counts one attempt in flight
    /// for `ip`'s key, to be ended with [`end_attempt`](Self::end_attempt);
    /// `false` (nothing counted) while the key cools down or while its failures
    /// in the window plus its attempts in flight already reach `max`.
    pub fn begin_attempt(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.blocked(ip, now) {
            return false;
        }
        let key = address_key(ip, self.v6_prefix);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.evict(now);
        }
        let cfg = self.cfg;
        let e = self.entries.entry(key).or_insert_with(|| Entry::new(now));
        while e
            .failures
            .front()
            .is_some_and(|t| elapsed(*t, now) >= cfg.window)
        {
            e.failures.pop_front();
        }
        if e.failures.len().saturating_add(e.in_flight) >= cfg.max as usize {
            return false;
        }
        e.in_flight += 1;
        e.last = now;
        true
    }

    /// Ends an attempt begun with [`begin_attempt`](Self::begin_attempt). A
    /// failure counts as [`record_failure`](Self::record_failure); a success
    /// forgets the failures only when it was a `fresh` login (the session was
    /// not logged in before: a `230` to a `PASS` on a logged-in session proves
    /// nothing new and must not wipe the count).
    pub fn end_attempt(&mut self, ip: IpAddr, now: Instant, outcome: Attempt) {
        let key = address_key(ip, self.v6_prefix);
        if let Some(e) = self.entries.get_mut(&key) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
        match outcome {
            Attempt::Failed => self.record_failure(ip, now),
            Attempt::Succeeded { fresh: true } => self.record_success(ip),
            Attempt::Succeeded { fresh: false } => self.forget_idle(key),
        }
    }

    /// Whether `ip` is in cool-down at `now`. Forgets a cool-down that ended.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = address_key(ip, self.v6_prefix);
        let Some(e) = self.entries.get_mut(&key) else {
            return false;
        };
        match e.blocked_since {
            Some(t) if elapsed(t, now) < self.cfg.cooldown => true,
            Some(_) => {
                e.blocked_since = None;
                self.forget_idle(key);
                false
            }
            None => false,
        }
    }

    /// A successful login from `ip` forgets its failures (not a running cool-down:
    /// the session layer refuses logins from blocked addresses before they get here).
    pub fn record_success(&mut self, ip: IpAddr) {
        let key = address_key(ip, self.v6_prefix);
        if let Some(e) = self.entries.get_mut(&key) {
            e.failures.clear();
        }
        self.forget_idle(key);
    }

    /// Drops `key`'s entry when it remembers nothing: no failure, no
    /// cool-down, no attempt in flight.
    fn forget_idle(&mut self, key: IpAddr) {
        if self
            .entries
            .get(&key)
            .is_some_and(|e| e.failures.is_empty() && e.blocked_since.is_none() && e.in_flight == 0)
        {
            self.entries.remove(&key);
        }
    }

    /// Number of addresses tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Makes room for one more entry: drops entries with nothing left to remember,
    /// and if that frees nothing, the least recently active tenth.
    fn evict(&mut self, now: Instant) {
        let cfg = self.cfg;
        self.entries.retain(|_, e| {
            let blocking = e
                .blocked_since
                .is_some_and(|t| elapsed(t, now) < cfg.cooldown);
            let counting = e
                .failures
                .back()
                .is_some_and(|t| elapsed(*t, now) < cfg.window);
            blocking || counting || e.in_flight > 0
        });
        if self.entries.len() < self.capacity {
            return;
        }
        let mut by_age: Vec<(Instant, IpAddr)> =
            self.entries.iter().map(|(k, e)| (e.last, *k)).collect();
        let drop = (self.capacity / 10).max(1).min(by_age.len());
        by_age.select_nth_unstable(drop - 1);
        for (_, key) in &by_age[..drop] {
            self.entries.remove(key);
        }
    }
}

/// How an attempt begun with [`LoginThrottle::begin_attempt`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A `4xx`/`5xx` to the `PASS`, or the session ended before the reply.
    Failed,
    /// `230`; `fresh` when the session was not logged in before.
    Succeeded {
        /// The session was not logged in before.
        fresh: bool,
    },
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: VecDeque::new(),
            blocked_since: None,
            last: now,
            in_flight: 0,
        }
    }
}

/// Time from `then` to `now`, zero if `now` is earlier (callers pass their clock).
fn elapsed(then: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(then)
}

#[cfg(test)]
mod tests;
