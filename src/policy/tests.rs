//! Tests of the pure policy decisions.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::tests::load_shipped;
use crate::config::{
    Active, ListenerLimits, ListenerTls, Passive, PortRange, TlsMode, TlsVersion, DEFAULT_BANNER,
    DEFAULT_UNAVAILABLE,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn rule(action: Action, nets: &[&str]) -> AccessRule {
    AccessRule {
        action,
        networks: nets.iter().map(|n| n.parse().expect("test net")).collect(),
    }
}

#[test]
fn no_rules_allow_everyone() {
    assert_eq!(
        check_access(&[], &[], ip("192.0.2.1")),
        AccessDecision::Allow
    );
}

#[test]
fn first_matching_rule_wins_listener_before_global() {
    let listener = [rule(Action::Deny, &["127.0.0.2/32"])];
    let global = [
        rule(Action::Allow, &["127.0.0.0/8"]),
        rule(Action::Deny, &["10.0.0.0/8"]),
    ];
    assert_eq!(
        check_access(&listener, &global, ip("127.0.0.2")),
        AccessDecision::Deny { rule: Some(0) }
    );
    assert_eq!(
        check_access(&listener, &global, ip("127.0.0.1")),
        AccessDecision::Allow
    );
    // Global rule 1 is index 2 over listener + global.
    assert_eq!(
        check_access(&listener, &global, ip("10.1.1.1")),
        AccessDecision::Deny { rule: Some(2) }
    );
}

#[test]
fn no_match_denies_only_when_an_allow_rule_exists() {
    let deny_only = [rule(Action::Deny, &["10.0.0.0/8"])];
    assert_eq!(
        check_access(&deny_only, &[], ip("192.0.2.1")),
        AccessDecision::Allow
    );
    let allow = [rule(Action::Allow, &["10.0.0.0/8"])];
    assert_eq!(
        check_access(&[], &allow, ip("192.0.2.1")),
        AccessDecision::Deny { rule: None }
    );
    assert_eq!(
        check_access(&allow, &deny_only, ip("192.0.2.1")),
        AccessDecision::Deny { rule: None }
    );
}

#[test]
fn ipv4_mapped_clients_match_ipv4_networks_and_back() {
    let allow = [rule(Action::Allow, &["10.0.0.0/8"])];
    assert_eq!(
        check_access(&allow, &[], ip("::ffff:10.1.2.3")),
        AccessDecision::Allow
    );
    let mapped = [rule(Action::Deny, &["::ffff:10.0.0.0/104"])];
    assert_eq!(
        check_access(&mapped, &[], ip("10.1.2.3")),
        AccessDecision::Deny { rule: Some(0) }
    );
    let v6 = [rule(Action::Allow, &["::1/128"])];
    assert_eq!(check_access(&v6, &[], ip("::1")), AccessDecision::Allow);
    assert_eq!(
        check_access(&v6, &[], ip("127.0.0.1")),
        AccessDecision::Deny { rule: None }
    );
}

fn listener(routes: Vec<Route>, user_at_backend: bool) -> Listener {
    Listener {
        name: "edge".into(),
        bind: SocketAddr::new(ip("127.0.0.1"), 2021),
        tls: ListenerTls {
            mode: TlsMode::None,
            cert: None,
            key: None,
            require: false,
            require_data_reuse: false,
            data_reuse_scope: crate::config::ReuseScope::Session,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            allow_ccc: false,
            allow_clear_data: true,
            prefer_aes128: false,
            sni: Vec::new(),
            client_auth: None,
        },
        passive: Passive {
            ports: PortRange {
                first: 50000,
                last: 50009,
            },
            bind: ip("127.0.0.1"),
            advertise: Vec::new(),
            nftables: None,
            max_per_client: Default::default(),
        },
        active: Active::default(),
        backend: "legacy".into(),
        access: Vec::new(),
        limits: ListenerLimits::default(),
        routes,
        user_at_backend,
        proxy_protocol: None,
        banner: DEFAULT_BANNER.into(),
        unavailable: DEFAULT_UNAVAILABLE.into(),
    }
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            user: "alice".into(),
            cert_identity: None,
            backends: vec!["srv-a".into(), "srv-b".into()],
            balance: Balance::LeastConnections,
            commands: CommandPolicy::Any,
            auth: crate::config::RouteAuth::Backend,
        },
        Route {
            user: "ro-*".into(),
            cert_identity: None,
            backends: vec!["srv-a".into()],
            balance: Balance::RoundRobin,
            commands: CommandPolicy::Deny(vec!["STOR".into(), "MKD".into()]),
            auth: crate::config::RouteAuth::Backend,
        },
    ]
}

#[test]
fn route_by_login_name_first_match_else_default() {
    let l = listener(routes(), false);
    let alice = route(&l, "alice").expect("routed");
    assert_eq!(alice.login, "alice");
    assert_eq!(alice.route, Some(&l.routes[0]));
    assert_eq!(alice.backends, ["srv-a", "srv-b"]);
    assert_eq!(alice.balance, Balance::LeastConnections);

    let ro = route(&l, "ro-bob").expect("routed");
    assert_eq!(ro.route, Some(&l.routes[1]));
    assert!(!command_allowed(ro.commands(), "stor"));

    let other = route(&l, "carol").expect("routed");
    assert_eq!(other.route, None);
    assert_eq!(other.backends, ["legacy"]);
    assert_eq!(other.balance, Balance::RoundRobin);
    assert_eq!(other.commands(), &CommandPolicy::Any);
}

#[test]
fn user_at_backend_only_when_enabled() {
    let off = listener(routes(), false);
    let c = route(&off, "alice@srv-b").expect("routed");
    assert_eq!(c.login, "alice@srv-b");
    assert_eq!(c.backends, ["legacy"]);
}

#[test]
fn user_at_backend_picks_a_routable_backend() {
    let l = listener(routes(), true);
    let c = route(&l, "alice@srv-b").expect("routed");
    assert_eq!(c.login, "alice");
    assert_eq!(c.backends, ["srv-b"]);
    assert_eq!(c.route, Some(&l.routes[0]));
    // The default backend counts as routable; the route is still chosen by name,
    // so a read-only user stays read-only on any backend.
    let c = route(&l, "ro-x@legacy").expect("routed");
    assert_eq!(
        (c.login.as_str(), c.backends.as_slice()),
        ("ro-x", &["legacy".to_owned()][..])
    );
    assert!(!command_allowed(c.commands(), "MKD"));
    // Split at the last '@'.
    let c = route(&l, "a@b@srv-a").expect("routed");
    assert_eq!((c.login.as_str(), c.backends[0].as_str()), ("a@b", "srv-a"));
}

#[test]
fn email_like_logins_keep_working_and_unknown_backends_are_refused() {
    let l = listener(routes(), true);
    let c = route(&l, "bob@example.com").expect("routed");
    assert_eq!(c.login, "bob@example.com");
    assert_eq!(c.backends, ["legacy"]);
    assert_eq!(
        route(&l, "alice@srv-z"),
        Err(RouteError::UnknownBackend("srv-z".into()))
    );
    // Nothing before or after the '@': the whole string is the name.
    assert_eq!(route(&l, "@srv-a").expect("routed").login, "@srv-a");
    assert_eq!(route(&l, "bob@").expect("routed").login, "bob@");
}

#[test]
fn command_policies() {
    let deny = CommandPolicy::Deny(vec!["STOR".into(), "MKD".into(), "DELE".into()]);
    assert!(!command_allowed(&deny, "STOR"));
    assert!(!command_allowed(&deny, "stor"));
    assert!(!command_allowed(&deny, "XMKD"), "RFC 775 alias of MKD");
    assert!(command_allowed(&deny, "RETR"));
    let allow = CommandPolicy::Allow(vec!["RETR".into(), "LIST".into(), "CWD".into()]);
    assert!(command_allowed(&allow, "RETR"));
    assert!(command_allowed(&allow, "XCWD"));
    assert!(!command_allowed(&allow, "STOR"));
    assert!(!command_allowed(&allow, "SITE"));
    for verb in NEVER_FILTERED {
        assert!(
            command_allowed(&CommandPolicy::Allow(vec![]), verb),
            "{verb}"
        );
        let deny_it = CommandPolicy::Deny(vec![(*verb).to_owned()]);
        assert!(command_allowed(&deny_it, verb), "{verb}");
    }
    assert!(command_allowed(&CommandPolicy::Any, "ANYTHING"));
}

fn throttle_cfg() -> FailedLogins {
    FailedLogins {
        max: 3,
        window: Duration::from_secs(60),
        cooldown: Duration::from_secs(300),
    }
}

#[test]
fn failures_inside_the_window_block_for_the_cooldown() {
    let mut t = LoginThrottle::new(throttle_cfg());
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    t.record_failure(a, t0);
    t.record_failure(a, t0 + Duration::from_secs(10));
    assert!(!t.blocked(a, t0 + Duration::from_secs(11)));
    t.record_failure(a, t0 + Duration::from_secs(20));
    assert!(t.blocked(a, t0 + Duration::from_secs(21)));
    assert!(!t.blocked(ip("192.0.2.2"), t0 + Duration::from_secs(21)));
    // Failures while blocked do not extend the cool-down.
    t.record_failure(a, t0 + Duration::from_secs(200));
    assert!(t.blocked(a, t0 + Duration::from_secs(319)));
    assert!(!t.blocked(a, t0 + Duration::from_secs(320)));
    assert!(t.is_empty(), "an ended cool-down is forgotten");
}

#[test]
fn failures_older_than_the_window_do_not_count() {
    let mut t = LoginThrottle::new(throttle_cfg());
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    t.record_failure(a, t0);
    t.record_failure(a, t0 + Duration::from_secs(30));
    t.record_failure(a, t0 + Duration::from_secs(61));
    assert!(!t.blocked(a, t0 + Duration::from_secs(62)));
    t.record_failure(a, t0 + Duration::from_secs(62));
    assert!(t.blocked(a, t0 + Duration::from_secs(63)));
}

#[test]
fn success_forgets_failures() {
    let mut t = LoginThrottle::new(throttle_cfg());
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    t.record_failure(a, t0);
    t.record_failure(a, t0);
    t.record_success(a);
    assert!(t.is_empty());
    t.record_failure(a, t0);
    assert!(!t.blocked(a, t0));
}

#[test]
fn ipv6_counts_per_slash_64_and_mapped_as_ipv4() {
    let mut t = LoginThrottle::new(throttle_cfg());
    let t0 = Instant::now();
    t.record_failure(ip("2001:db8::1"), t0);
    t.record_failure(ip("2001:db8::2"), t0);
    t.record_failure(ip("2001:db8::ffff:3"), t0);
    assert!(t.blocked(ip("2001:db8::99"), t0));
    assert!(!t.blocked(ip("2001:db8:0:1::1"), t0));
    t.record_failure(ip("::ffff:192.0.2.9"), t0);
    t.record_failure(ip("192.0.2.9"), t0);
    t.record_failure(ip("192.0.2.9"), t0);
    assert!(t.blocked(ip("192.0.2.9"), t0));
}

#[test]
fn memory_stays_bounded() {
    let mut t = LoginThrottle::with_capacity(throttle_cfg(), 100);
    let t0 = Instant::now();
    for i in 0..1000u32 {
        t.record_failure(
            IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
            t0 + Duration::from_millis(u64::from(i)),
        );
        assert!(t.len() <= 100);
    }
    // The newest entries survive eviction.
    assert!(t.entries.contains_key(&ip("10.0.3.231")));
    // Entries whose window passed are dropped first.
    let later = t0 + Duration::from_secs(3600);
    t.record_failure(ip("192.0.2.1"), later);
    assert_eq!(t.len(), 1);
}

#[test]
fn blocked_entries_survive_expiry_eviction() {
    let mut t = LoginThrottle::with_capacity(throttle_cfg(), 2);
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..3 {
        t.record_failure(a, t0);
    }
    t.record_failure(ip("192.0.2.2"), t0);
    t.record_failure(ip("192.0.2.3"), t0 + Duration::from_secs(120));
    assert!(t.blocked(a, t0 + Duration::from_secs(121)));
}

/// Issue 17 B5: parked sessions sending PASS together get at most the budget
/// in flight; the rest are refused before anything reaches the backend.
#[test]
fn attempts_in_flight_are_bounded_by_the_budget() {
    let mut t = LoginThrottle::new(throttle_cfg());
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    assert!(t.begin_attempt(a, t0));
    assert!(t.begin_attempt(a, t0));
    assert!(t.begin_attempt(a, t0));
    assert!(
        !t.begin_attempt(a, t0),
        "a fourth guess while three are in flight"
    );
    // Another address has its own budget.
    assert!(t.begin_attempt(ip("192.0.2.2"), t0));
    // One ends well: its slot is free again, the others are still counted.
    t.end_attempt(a, t0, Attempt::Succeeded { fresh: false });
    assert!(t.begin_attempt(a, t0));
    for _ in 0..3 {
        t.end_attempt(a, t0, Attempt::Failed);
    }
    assert!(t.blocked(a, t0), "three failures block");
    assert!(!t.begin_attempt(a, t0 + Duration::from_secs(299)));
    assert!(t.begin_attempt(a, t0 + Duration::from_secs(300)));
}

/// A 230 that is not a fresh login (PASS on a logged-in session, vsftpd's
/// `230 Already logged in`) must not wipe the failures.
#[test]
fn only_a_fresh_login_forgets_failures() {
    let mut t = LoginThrottle::new(throttle_cfg());
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for _ in 0..2 {
        assert!(t.begin_attempt(a, t0));
        t.end_attempt(a, t0, Attempt::Failed);
    }
    assert!(t.begin_attempt(a, t0));
    t.end_attempt(a, t0, Attempt::Succeeded { fresh: false });
    assert!(t.begin_attempt(a, t0));
    t.end_attempt(a, t0, Attempt::Failed);
    assert!(
        t.blocked(a, t0),
        "the non-fresh 230 did not reset the count"
    );

    let b = ip("192.0.2.2");
    for _ in 0..2 {
        assert!(t.begin_attempt(b, t0));
        t.end_attempt(b, t0, Attempt::Failed);
    }
    assert!(t.begin_attempt(b, t0));
    t.end_attempt(b, t0, Attempt::Succeeded { fresh: true });
    assert!(t.is_empty() || !t.entries.contains_key(&b));
}

/// Issue 17 B6: one prefix for limits and throttle; /64 by default, /56 on request.
#[test]
fn address_key_cuts_ipv6_to_the_prefix() {
    assert_eq!(address_key(ip("192.0.2.7"), 64), ip("192.0.2.7"));
    assert_eq!(address_key(ip("::ffff:192.0.2.7"), 56), ip("192.0.2.7"));
    assert_eq!(
        address_key(ip("2001:db8:1:2:a:b:c:d"), 64),
        ip("2001:db8:1:2::")
    );
    assert_eq!(
        address_key(ip("2001:db8:1:2ff:a:b:c:d"), 56),
        ip("2001:db8:1:200::")
    );
    assert_eq!(address_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
    assert_eq!(address_key(ip("2001:db8::1"), 0), ip("::"));
}

#[test]
fn throttle_counts_a_whole_56_when_told() {
    let t0 = Instant::now();
    let mut t64 = LoginThrottle::new(throttle_cfg());
    let mut t56 = LoginThrottle::new(throttle_cfg()).with_v6_prefix(56);
    for i in 0..3u16 {
        let a = IpAddr::from([0x2001, 0xdb8, 1, 0x200 + i, 0, 0, 0, 1]);
        t64.record_failure(a, t0);
        t56.record_failure(a, t0);
    }
    let neighbour = ip("2001:db8:1:2ff::9");
    assert!(!t64.blocked(neighbour, t0), "three different /64s");
    assert!(t56.blocked(neighbour, t0), "one /56");
}

// Shipped policies loaded by `config`, then decided on here.

#[test]
fn shipped_routing_policy_loads() {
    let config = load_shipped("routing.yaml");
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    let l = &config.listeners[0];
    assert!(l.user_at_backend);
    assert_eq!(l.routes.len(), 4);
    assert_eq!(l.routes[3].balance, Balance::LeastConnections);
    assert!(
        matches!(&l.routes[3].commands, CommandPolicy::Deny(v) if v.contains(&"STOR".to_owned()))
    );
    let c = route(l, "alice@srv-b").expect("routable");
    assert_eq!(
        (c.login.as_str(), c.backends[0].as_str()),
        ("alice", "srv-b")
    );
}

#[test]
fn shipped_access_policy_loads() {
    let config = load_shipped("access.yaml");
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert_eq!(config.access.len(), 2);
    assert_eq!(config.limits.max_sessions, Some(2000));
    assert_eq!(config.limits.failed_logins, Some(FailedLogins::default()));
    let l = &config.listeners[0];
    assert_eq!(l.limits.bandwidth, Some(10 << 20));
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert_eq!(
        check_access(&l.access, &config.access, ip("198.51.100.7")),
        AccessDecision::Allow
    );
    assert_eq!(
        check_access(&l.access, &config.access, ip("198.51.100.200")),
        AccessDecision::Deny { rule: Some(0) }
    );
    assert_eq!(
        check_access(&l.access, &config.access, ip("203.0.113.1")),
        AccessDecision::Deny { rule: None }
    );
}

#[test]
fn user_must_equal_the_certificate_identity_only_when_asked() {
    assert!(cert_user_allowed(false, None, "alice"));
    assert!(cert_user_allowed(false, Some("bob"), "alice"));
    assert!(cert_user_allowed(true, Some("alice"), "alice"));
    assert!(!cert_user_allowed(true, Some("alice"), "Alice"));
    assert!(!cert_user_allowed(true, Some("alice"), "alice@vs"));
    assert!(!cert_user_allowed(true, None, "alice"));
}

#[test]
fn a_cert_identity_route_needs_a_matching_certificate() {
    let mut rs = routes();
    rs.insert(
        0,
        Route {
            user: "*".into(),
            cert_identity: Some("*@ops.example.org".into()),
            backends: vec!["srv-b".into()],
            balance: Balance::RoundRobin,
            commands: CommandPolicy::Any,
            auth: crate::config::RouteAuth::Backend,
        },
    );
    let l = listener(rs, false);
    let ops = route_for(&l, "alice", Some("eve@ops.example.org")).expect("routed");
    assert_eq!(ops.route, Some(&l.routes[0]));
    assert_eq!(ops.backends, ["srv-b"]);
    // Another identity, or none: the next routes by name as before.
    let other = route_for(&l, "alice", Some("eve@example.org")).expect("routed");
    assert_eq!(other.route, Some(&l.routes[1]));
    assert_eq!(
        route_for(&l, "alice", None).unwrap().route,
        Some(&l.routes[1])
    );
    assert_eq!(route(&l, "carol").unwrap().route, None);
}
