//! Active-mode target checks (RFC 2577 §3, bounce attacks): a `PORT`/`EPRT`
//! may only name the control client's own address and an unprivileged port.
//!
//! Pure: the session passes the control peer's address and the parsed target.

use std::net::{IpAddr, SocketAddr};

/// Why an active-mode target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveRefusal {
    /// The target is another host (FTP bounce).
    ForeignAddress,
    /// The target is a private/inside address while the control connection
    /// comes from a public one: the client sits behind NAT and names its
    /// inside address, which the gateway could never reach.
    BehindNat,
    /// Port below 1024 (bounce toward well-known services).
    PrivilegedPort,
}

impl ActiveRefusal {
    /// FTP reply code and text for the refusal.
    pub fn reply(self) -> (u16, &'static str) {
        match self {
            ActiveRefusal::ForeignAddress => (
                500,
                "Illegal PORT command: address differs from the control connection's (bounce refused)",
            ),
            ActiveRefusal::BehindNat => (
                500,
                "Illegal PORT command: you seem to be behind NAT (private address given); use PASV or EPSV (passive mode)",
            ),
            ActiveRefusal::PrivilegedPort => (500, "Illegal PORT command: port below 1024 refused"),
        }
    }

    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveRefusal::ForeignAddress => "bounce_address",
            ActiveRefusal::BehindNat => "behind_nat",
            ActiveRefusal::PrivilegedPort => "bounce_port",
        }
    }
}

/// Check a `PORT`/`EPRT` target against the control peer.
pub fn check_active_target(control_peer: IpAddr, target: SocketAddr) -> Result<(), ActiveRefusal> {
    let peer = control_peer.to_canonical();
    let ip = target.ip().to_canonical();
    if ip != peer {
        if is_inside(ip) && !is_inside(peer) {
            return Err(ActiveRefusal::BehindNat);
        }
        return Err(ActiveRefusal::ForeignAddress);
    }
    if target.port() < 1024 {
        return Err(ActiveRefusal::PrivilegedPort);
    }
    Ok(())
}

/// Addresses that only make sense inside a site: RFC 1918, shared CGN space
/// (RFC 6598), benchmarking (RFC 2544, used for inside networks in labs),
/// link-local and IPv6 unique-local.
pub fn is_inside(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test addr {s}"))
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test ip {s}"))
    }

    // RFC 2577 §3: the server should not open data connections to a third host.
    #[test]
    fn own_address_and_high_port_is_accepted() {
        assert_eq!(
            check_active_target(ip("198.19.0.50"), sa("198.19.0.50:40000")),
            Ok(())
        );
        assert_eq!(check_active_target(ip("::1"), sa("[::1]:40000")), Ok(()));
    }

    #[test]
    fn ipv4_mapped_peer_matches_plain_ipv4_target() {
        assert_eq!(
            check_active_target(ip("::ffff:127.0.0.1"), sa("127.0.0.1:5000")),
            Ok(())
        );
    }

    #[test]
    fn third_host_is_a_bounce() {
        assert_eq!(
            check_active_target(ip("198.19.0.50"), sa("198.19.0.20:40000")),
            Err(ActiveRefusal::ForeignAddress)
        );
    }

    // RFC 2577 §3: refuse ports below 1024.
    #[test]
    fn privileged_port_is_refused() {
        assert_eq!(
            check_active_target(ip("198.19.0.50"), sa("198.19.0.50:25")),
            Err(ActiveRefusal::PrivilegedPort)
        );
    }

    #[test]
    fn private_target_from_public_peer_is_nat() {
        assert_eq!(
            check_active_target(ip("203.0.113.2"), sa("192.168.1.10:40000")),
            Err(ActiveRefusal::BehindNat)
        );
        assert_eq!(
            check_active_target(ip("203.0.113.2"), sa("198.18.1.10:40000")),
            Err(ActiveRefusal::BehindNat)
        );
        let (code, text) = ActiveRefusal::BehindNat.reply();
        assert_eq!(code, 500);
        assert!(text.contains("behind NAT") && text.contains("PASV"));
    }

    #[test]
    fn inside_ranges() {
        for s in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "198.19.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_inside(ip(s)), "{s}");
        }
        for s in [
            "203.0.113.2",
            "8.8.8.8",
            "100.128.0.1",
            "198.20.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_inside(ip(s)), "{s}");
        }
    }
}
