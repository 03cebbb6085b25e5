//! Resource bounds as pure decisions: the session caps derived from the file
//! descriptor limit, the per-address connection rate, and a client's share of
//! a passive port range. No I/O and no clock: the rate limiter takes `now`.
//! The counters they are applied to live in `shared`; admission asks in
//! `gateway::admit`, pinholes in `session`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Limits;

/// Descriptors kept back for listeners, the metrics endpoint, logs, pinholes
/// being set up and the runtime itself.
pub const RESERVED_FDS: u64 = 64;
/// Descriptors one session can hold at once: client control, backend
/// control, and a transfer's client and backend data connections.
pub const FDS_PER_SESSION: u64 = 4;

/// Session caps that apply when the configuration leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    /// `limits.max_sessions`.
    pub max_sessions: usize,
    /// `limits.max_sessions_per_ip`.
    pub max_sessions_per_ip: usize,
    /// `limits.max_unauthenticated_per_ip`.
    pub max_unauthenticated_per_ip: usize,
}

/// Caps derived from the descriptor limit `nofile`: every session can hold
/// its [`FDS_PER_SESSION`] descriptors with [`RESERVED_FDS`] to spare, so
/// accepting never runs out of descriptors; one address may take three
/// quarters of the sessions, and half of them before it logs in, so a flood
/// of idle connections from one source leaves room for everyone else.
/// (Generous per address on purpose: thousands of users can share one
/// carrier-NAT address. Floods from several addresses end at the total cap
/// and the login deadline; tighter caps are one `limits:` line away.)
pub fn default_limits(nofile: u64) -> DefaultLimits {
    let total = (nofile.saturating_sub(RESERVED_FDS) / FDS_PER_SESSION).max(1);
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    DefaultLimits {
        max_sessions: total,
        max_sessions_per_ip: (total * 3 / 4).max(1),
        max_unauthenticated_per_ip: (total / 2).max(1),
    }
}

/// Fill the session caps the operator left unset from `nofile`, the
/// process's file descriptor limit ([`default_limits`]): a gateway without
/// any `limits` still cannot be made to run out of descriptors by idle
/// connections. Caps that are set stay as they are.
pub fn fill_default_limits(limits: &mut Limits, nofile: u64) {
    let d = default_limits(nofile);
    limits.max_sessions.get_or_insert(d.max_sessions);
    limits
        .max_sessions_per_ip
        .get_or_insert(d.max_sessions_per_ip);
    limits
        .max_unauthenticated_per_ip
        .get_or_insert(d.max_unauthenticated_per_ip);
}

/// Addresses tracked by [`ConnectionRate`] at most; past this, idle buckets are
/// dropped first and, if none is idle, the newcomer is refused.
pub const RATE_CAPACITY: usize = 100_000;

/// Per-address token buckets for new connections: `rate` per second with a
/// burst of one second's worth.
#[derive(Debug)]
pub struct ConnectionRate {
    rate: u32,
    buckets: HashMap<IpAddr, Bucket>,
    /// Refilled buckets are dropped at most once a second, so a flood from
    /// many addresses costs one sweep per second, not one per connection.
    swept: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ConnectionRate {
    /// A limiter letting each address open `rate` connections per second (at least 1).
    pub fn new(rate: u32) -> ConnectionRate {
        ConnectionRate {
            rate: rate.max(1),
            buckets: HashMap::new(),
            swept: None,
        }
    }

    /// Connections per second per address.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// May `ip` open one more connection at `now`? Takes a token when it may.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.rate);
        let sweep = match self.swept {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= Duration::from_secs(1),
        };
        if sweep {
            self.forget_full(now);
            self.swept = Some(now);
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= RATE_CAPACITY {
            self.forget_full(now);
            if self.buckets.len() >= RATE_CAPACITY {
                return false;
            }
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drop buckets that have refilled completely (they behave like new ones).
    pub fn forget_full(&mut self, now: Instant) {
        let full = Duration::from_secs(1);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) < full);
    }

    /// Addresses currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// No address is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// May a client that holds `held` ports of a range take one more, given its
/// `cap` (`config::PortShare::cap`)?
pub fn port_share_allows(held: usize, cap: usize) -> bool {
    held < cap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortShare;

    #[test]
    fn defaults_follow_the_descriptor_limit() {
        let d = default_limits(1024);
        assert_eq!(d.max_sessions, 240);
        assert_eq!(d.max_sessions_per_ip, 180);
        assert_eq!(d.max_unauthenticated_per_ip, 120);
        // 1 024 descriptors: every admitted session fits with the reserve left.
        assert!(d.max_sessions as u64 * FDS_PER_SESSION + RESERVED_FDS <= 1024);
        let big = default_limits(20_000);
        assert_eq!(big.max_sessions, 4984);
        let mut set = Limits {
            max_unauthenticated_per_ip: Some(4),
            ..Limits::default()
        };
        fill_default_limits(&mut set, 1024);
        assert_eq!(set.max_sessions, Some(240));
        assert_eq!(set.max_sessions_per_ip, Some(180));
        assert_eq!(
            set.max_unauthenticated_per_ip,
            Some(4),
            "a given cap is kept"
        );
        let tiny = default_limits(10);
        assert_eq!(tiny.max_sessions, 1);
        assert_eq!(tiny.max_unauthenticated_per_ip, 1);
    }

    #[test]
    fn rate_allows_a_burst_then_refills() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut r = ConnectionRate::new(3);
        assert!(r.allow(ip, t0));
        assert!(r.allow(ip, t0));
        assert!(r.allow(ip, t0));
        assert!(!r.allow(ip, t0), "burst is one second's worth");
        assert!(r.allow(other, t0), "addresses have their own buckets");
        assert!(!r.allow(ip, t0 + Duration::from_millis(100)));
        assert!(
            r.allow(ip, t0 + Duration::from_millis(400)),
            "refilled 1.2 tokens"
        );
        r.forget_full(t0 + Duration::from_secs(5));
        assert!(r.is_empty());
        // Idle addresses are forgotten by the next call a second later.
        assert!(r.allow(ip, t0 + Duration::from_secs(6)));
        assert!(r.allow(other, t0 + Duration::from_secs(8)));
        assert_eq!(r.len(), 1, "the first address's full bucket was dropped");
    }

    #[test]
    fn port_share_default_is_ten_percent_or_sixteen() {
        assert_eq!(PortShare::Default.cap(1000), 100);
        assert_eq!(PortShare::Default.cap(100), 16);
        assert_eq!(PortShare::Default.cap(10), 10, "never more than the range");
        assert_eq!(PortShare::Percent(30).cap(10), 3);
        assert_eq!(PortShare::Percent(1).cap(10), 1, "at least one port");
        assert_eq!(PortShare::Ports(4).cap(100), 4);
        assert!(port_share_allows(2, 3));
        assert!(!port_share_allows(3, 3));
    }
}
