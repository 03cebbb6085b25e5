//! Policy decisions with arbitrary inputs and clock steps: `check_access`,
//! `user_matches`, `command_allowed` and `LoginThrottle` never panic and keep
//! their documented rules:
//! - `check_access`: the first rule containing the client decides; no match
//!   denies only when an allow rule exists; IPv4 and IPv4-mapped clients agree;
//! - `user_matches` agrees with a plain dynamic-programming glob matcher, and
//!   `user_matches(p, p)` holds for patterns without `*`/`?`;
//! - `command_allowed`: never-filtered verbs always pass, allow and deny lists
//!   are exact opposites for every other verb, `X…` aliases count as their verb;
//! - `LoginThrottle`: never tracks more than its capacity, and `max` failures at
//!   one instant always block that address (its /64 for IPv6) for `cooldown`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

use arbitrary::Arbitrary;
use ftpsgate::config::{AccessRule, Action, CommandPolicy, FailedLogins};
use ftpsgate::policy::{
    check_access, command_allowed, user_matches, AccessDecision, LoginThrottle, NEVER_FILTERED,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    listener: Vec<Rule>,
    global: Vec<Rule>,
    client: Addr,
    pattern: String,
    user: String,
    verbs: Vec<Verb>,
    verb: Verb,
    throttle: Throttle,
}

#[derive(Debug, Arbitrary)]
struct Rule {
    allow: bool,
    networks: Vec<(Addr, u8)>,
}

/// An address; small variants make hits on the same networks likely.
#[derive(Debug, Arbitrary)]
enum Addr {
    V4([u8; 4]),
    Mapped([u8; 4]),
    V6([u8; 16]),
    Small(u8),
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match *self {
            Addr::V4(o) => IpAddr::V4(Ipv4Addr::from(o)),
            Addr::Mapped(o) => IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped()),
            Addr::V6(o) => IpAddr::V6(Ipv6Addr::from(o)),
            Addr::Small(n) => match n % 4 {
                0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, n >> 2)),
                1 => IpAddr::V6(Ipv4Addr::new(10, 0, 0, n >> 2).to_ipv6_mapped()),
                2 => IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u16::from(n >> 2),
                )),
                _ => IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    u16::from(n >> 2),
                    0,
                    0,
                    0,
                    1,
                )),
            },
        }
    }
}

/// A verb: one of a few interesting ones, or any short string.
#[derive(Debug, Arbitrary)]
enum Verb {
    Known(u8),
    Any(String),
}

const KNOWN_VERBS: &[&str] = &[
    "STOR", "stor", "MKD", "XMKD", "xmkd", "RMD", "XRMD", "CWD", "XCWD", "CDUP", "XCUP", "PWD",
    "XPWD", "DELE", "RETR", "USER", "pass", "QUIT", "EPSV", "SITE",
];

impl Verb {
    fn text(&self) -> &str {
        match self {
            Verb::Known(i) => KNOWN_VERBS[usize::from(*i) % KNOWN_VERBS.len()],
            Verb::Any(s) => s,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Throttle {
    max: u8,
    window_ms: u16,
    cooldown_ms: u16,
    capacity: u8,
    steps: Vec<Step>,
    probe: u8,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Failure(Addr),
    Success(Addr),
    Blocked(Addr),
    /// Moves the clock, backwards too: callers pass their own `now`.
    Clock(i16),
}

fuzz_target!(|input: Input| {
    access(&input);
    globs(&input.pattern, &input.user);
    commands(&input);
    throttle(&input.throttle);
});

fn access(input: &Input) {
    let build = |rules: &[Rule]| -> Vec<AccessRule> {
        rules
            .iter()
            .filter(|r| !r.networks.is_empty())
            .map(|r| AccessRule {
                action: if r.allow { Action::Allow } else { Action::Deny },
                networks: r
                    .networks
                    .iter()
                    .filter_map(|(a, len)| {
                        let ip = a.ip();
                        let max = if ip.is_ipv4() { 32 } else { 128 };
                        ipnet::IpNet::new(ip, len % (max + 1))
                            .ok()
                            .map(|n| n.trunc())
                    })
                    .collect(),
            })
            .filter(|r| !r.networks.is_empty())
            .collect()
    };
    let listener = build(&input.listener);
    let global = build(&input.global);
    let client = input.client.ip();
    let decision = check_access(&listener, &global, client);

    let canonical = client.to_canonical();
    let mapped = match canonical {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let all: Vec<&AccessRule> = listener.iter().chain(&global).collect();
    let contains = |r: &AccessRule| {
        r.networks
            .iter()
            .any(|n| n.contains(&canonical) || n.contains(&mapped))
    };
    let first = all.iter().position(|r| contains(r));
    let expected = match first {
        Some(i) if all[i].action == Action::Deny => AccessDecision::Deny { rule: Some(i) },
        Some(_) => AccessDecision::Allow,
        None if all.iter().any(|r| r.action == Action::Allow) => {
            AccessDecision::Deny { rule: None }
        }
        None => AccessDecision::Allow,
    };
    assert_eq!(decision, expected);
    // Both spellings of an IPv4 client get the same answer.
    assert_eq!(check_access(&listener, &global, canonical), decision);
    assert_eq!(check_access(&listener, &global, mapped), decision);
}

fn globs(pattern: &str, user: &str) {
    let got = user_matches(pattern, user);
    // The DP reference is quadratic; keep it to sizes the fuzzer uses anyway.
    if pattern.len() <= 256 && user.len() <= 256 {
        assert_eq!(
            got,
            reference_glob(pattern, user),
            "{pattern:?} vs {user:?}"
        );
    }
    if !pattern.contains(['*', '?']) {
        assert!(
            user_matches(pattern, pattern),
            "{pattern:?} does not match itself"
        );
        assert_eq!(got, pattern == user);
    }
    assert!(user_matches("*", user));
    // Any user matches itself with every character made a `?`, and with its
    // middle replaced by `*`.
    let qs: String = user.chars().map(|_| '?').collect();
    assert!(user_matches(&qs, user));
    let chars: Vec<char> = user.chars().collect();
    let cut = chars.len() / 3;
    let starred: String = chars[..cut]
        .iter()
        .chain(['*'].iter())
        .chain(&chars[chars.len() - cut..])
        .collect();
    assert!(user_matches(&starred, user), "{starred:?} vs {user:?}");
}

/// `*` any run (also none), `?` one character, anything else itself.
fn reference_glob(pattern: &str, user: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let u: Vec<char> = user.chars().collect();
    // m[j]: p[..i] matches u[..j]
    let mut m = vec![false; u.len() + 1];
    m[0] = true;
    for &pc in &p {
        let mut next = vec![false; u.len() + 1];
        for j in 0..=u.len() {
            next[j] = match pc {
                '*' => m[j] || (j > 0 && next[j - 1]),
                '?' => j > 0 && m[j - 1],
                c => j > 0 && m[j - 1] && u[j - 1] == c,
            };
        }
        m = next;
    }
    m[u.len()]
}

fn commands(input: &Input) {
    let list: Vec<String> = input
        .verbs
        .iter()
        .map(|v| v.text().to_ascii_uppercase())
        .collect();
    let verb = input.verb.text();
    let allow = CommandPolicy::Allow(list.clone());
    let deny = CommandPolicy::Deny(list.clone());
    assert!(command_allowed(&CommandPolicy::Any, verb));
    let a = command_allowed(&allow, verb);
    let d = command_allowed(&deny, verb);
    let upper = verb.to_ascii_uppercase();
    let canonical = match upper.as_str() {
        "XMKD" => "MKD",
        "XRMD" => "RMD",
        "XCWD" => "CWD",
        "XCUP" => "CDUP",
        "XPWD" => "PWD",
        other => other,
    };
    if NEVER_FILTERED.contains(&canonical) {
        assert!(a && d, "{verb} is never filtered");
    } else {
        assert_ne!(a, d, "allow and deny lists must be opposites for {verb}");
        let listed = list.iter().any(|v| {
            let v = match v.as_str() {
                "XMKD" => "MKD",
                "XRMD" => "RMD",
                "XCWD" => "CWD",
                "XCUP" => "CDUP",
                "XPWD" => "PWD",
                other => other,
            };
            v == canonical
        });
        assert_eq!(a, listed, "{verb} in {list:?}");
    }
}

fn throttle(t: &Throttle) {
    let cfg = FailedLogins {
        max: u32::from(t.max % 8) + 1,
        // The config refuses a zero window (every duration must be > 0); with
        // one, failures would never add up.
        window: Duration::from_millis(u64::from(t.window_ms) + 1),
        cooldown: Duration::from_millis(u64::from(t.cooldown_ms)),
    };
    let capacity = usize::from(t.capacity % 16);
    let mut throttle = LoginThrottle::with_capacity(cfg, capacity);
    let start = Instant::now() + Duration::from_secs(1_000_000);
    let mut offset_ms: i64 = 0;
    let at = |ms: i64| {
        if ms >= 0 {
            start + Duration::from_millis(ms.unsigned_abs())
        } else {
            start - Duration::from_millis(ms.unsigned_abs())
        }
    };
    for step in &t.steps {
        let now = at(offset_ms);
        match step {
            Step::Failure(a) => throttle.record_failure(a.ip(), now),
            Step::Success(a) => throttle.record_success(a.ip()),
            Step::Blocked(a) => {
                let _ = throttle.blocked(a.ip(), now);
            }
            Step::Clock(ms) => {
                offset_ms = (offset_ms + i64::from(*ms)).clamp(-900_000_000, 900_000_000)
            }
        }
        assert!(
            throttle.len() <= capacity.max(1),
            "{} entries, capacity {capacity}",
            throttle.len()
        );
        assert_eq!(throttle.is_empty(), throttle.len() == 0);
    }

    // A fresh address from a range the steps never use: `max` failures at one
    // instant block it (and its /64, and its mapped spelling) for `cooldown`.
    let now = at(offset_ms);
    let (ip, sibling) = if t.probe & 1 == 0 {
        let v4 = Ipv4Addr::new(192, 0, 2, t.probe);
        (IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped()))
    } else {
        let base = Ipv6Addr::new(0x3fff, 0, 0, u16::from(t.probe), 0, 0, 0, 1);
        let other = Ipv6Addr::new(0x3fff, 0, 0, u16::from(t.probe), 0xffff, 2, 3, 4);
        (IpAddr::V6(base), IpAddr::V6(other))
    };
    let touched = t.steps.iter().any(|s| match s {
        Step::Failure(a) | Step::Success(a) | Step::Blocked(a) => key(a.ip()) == key(ip),
        Step::Clock(_) => false,
    });
    if touched {
        return;
    }
    assert!(!throttle.blocked(ip, now));
    for _ in 0..cfg.max {
        throttle.record_failure(ip, now);
    }
    assert!(throttle.len() <= capacity.max(1));
    if cfg.cooldown > Duration::ZERO {
        assert!(
            throttle.blocked(ip, now),
            "{} failures did not block",
            cfg.max
        );
        assert!(throttle.blocked(sibling, now), "same key not blocked");
        assert!(throttle.blocked(ip, now + cfg.cooldown - Duration::from_nanos(1)));
    }
    // A success does not lift a running cool-down.
    throttle.record_success(ip);
    assert_eq!(throttle.blocked(ip, now), cfg.cooldown > Duration::ZERO);
    assert!(!throttle.blocked(ip, now + cfg.cooldown));
}

/// What the throttle counts by: IPv4 (mapped unwrapped), or the IPv6 /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}
