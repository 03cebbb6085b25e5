//! `listeners[]` (`build/listeners.rs`): bind, backend reference, passive range and
//! `advertise` rules, active mode, conflicts between listeners.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::*;

#[test]
fn defaults_for_cleartext_listener_and_plain_backend() {
    let dir = dir_with(&[]);
    let config = parse_ok(&minimal("", ""), dir.path());
    let l = &config.listeners[0];
    assert_eq!(
        l.tls,
        ListenerTls {
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
            sni: vec![],
            client_auth: None,
        }
    );
    assert_eq!(l.passive.bind, LOCALHOST, "defaults to the control bind IP");
    assert!(l.passive.advertise.is_empty());
    assert_eq!(
        config.backends[0].tls,
        BackendTls {
            mode: TlsMode::None,
            verify: BackendVerify::NotApplicable,
            server_name: "127.0.0.1".into(),
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            data_protection: DataProtection::Clear,
            client_cert: None,
        }
    );
    assert_eq!(config.timeouts, Timeouts::default());
}

#[test]
fn ipv6_addresses() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "")
        .replace("\"127.0.0.1:2021\"", "\"[::1]:2021\"")
        .replace("\"127.0.0.1:2120\"", "\"[2001:db8::7]:2120\"");
    let config = parse_ok(&yaml, dir.path());
    let l = &config.listeners[0];
    assert_eq!(
        l.bind,
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 2021)
    );
    assert_eq!(l.passive.bind, IpAddr::V6(Ipv6Addr::LOCALHOST));
    let b = &config.backends[0];
    assert_eq!((b.host.as_str(), b.port), ("2001:db8::7", 2120));
    assert_eq!(b.tls.server_name, "2001:db8::7");
}

#[test]
fn ports_that_are_not_a_range() {
    let dir = dir_with(&[]);
    for bad in [
        "5000-400", "0", "0-10", "70000", "1-65536", "abc", "", "-5", "5-", "+5", "1-2-3",
    ] {
        let yaml = minimal("", "").replace("\"50000-50099\"", &format!("\"{bad}\""));
        assert_eq!(
            errors(&yaml, dir.path()),
            [format!(
                "listeners[0].passive.ports: \"{bad}\" is not a range"
            )],
            "{bad}"
        );
    }
}

#[test]
fn port_range_api() {
    let r: PortRange = "50000-50099".parse().expect("valid range");
    assert_eq!(r.len(), 100);
    assert!(!r.is_empty());
    assert!(r.contains(50000) && r.contains(50099));
    assert!(!r.contains(49999) && !r.contains(50100));
    assert_eq!(r.to_string(), "50000-50099");
    assert_eq!(r.to_string().parse::<PortRange>(), Ok(r));
    let one: PortRange = "21".parse().expect("single port");
    assert_eq!((one.first, one.last, one.len()), (21, 21, 1));
    let all: PortRange = "1-65535".parse().expect("full range");
    assert_eq!(all.len(), 65535);
    assert_eq!(
        "5000-400".parse::<PortRange>().map_err(|e| e.to_string()),
        Err("\"5000-400\" is not a range".into())
    );
    assert!(PortRange { first: 2, last: 1 }.is_empty());
}

#[test]
fn undefined_backend() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace("backend: legacy", "backend: nope");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].backend: backend \"nope\" is not defined"]
    );
}

#[test]
fn listeners_without_any_backend_section() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "");
    let yaml = &yaml[..yaml.find("backends:").expect("has backends")];
    assert_eq!(
        errors(yaml, dir.path()),
        ["listeners[0].backend: backend \"legacy\" is not defined"]
    );
}

#[test]
fn listener_bind_and_ip_errors() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "")
        .replace("\"127.0.0.1:2021\"", "\"localhost:2021\"")
        .replace(
            "ports: \"50000-50099\"",
            "ports: \"50000-50099\"\n      bind: \"127.0.0\"\n      advertise: \"::1:\"",
        );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "listeners[0].bind: \"localhost:2021\" is not an IP address and port (e.g. \"127.0.0.1:2021\" or \"[::1]:2021\")",
            "listeners[0].passive.bind: \"127.0.0\" is not an IP address",
                        "listeners[0].passive.advertise: \"::1:\" is not an IP address",
        ]
    );
    let yaml = minimal("", "").replace(
        "ports: \"50000-50099\"",
        "ports: \"50000-50099\"\n      advertise: 0.0.0.0",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].passive.advertise: \"0.0.0.0\" is the unspecified address; clients cannot connect to it"]
    );
}

// RFC 959 227 replies carry one address; behind NAT it depends on the
// client's network, and a port forward may shift the ports.
#[test]
fn advertise_rules_choose_address_and_port_per_client_network() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace(
        "ports: \"50000-50099\"",
        "ports: \"50000-50099\"\n      advertise:\n        - networks: [\"198.18.0.0/15\", \"2001:db8::/32\"]\n          address: \"198.19.0.10\"\n        - address: \"203.0.113.1\"\n          ports: \"40000-40099\"",
    );
    let config = parse_ok(&yaml, dir.path());
    let p = &config.listeners[0].passive;
    let local: IpAddr = "198.19.0.10".parse().expect("ip");
    let inside: IpAddr = "198.19.0.50".parse().expect("ip");
    let outside: IpAddr = "203.0.113.2".parse().expect("ip");
    let v6: IpAddr = "2001:db8:19::50".parse().expect("ip");
    assert_eq!(p.advertised(inside, local, 50007), (local, 50007));
    assert_eq!(p.advertised(v6, local, 50007), (local, 50007));
    assert_eq!(
        p.advertised(outside, local, 50007),
        ("203.0.113.1".parse().expect("ip"), 40007)
    );
    // IPv4-mapped client addresses match IPv4 networks.
    let mapped: IpAddr = "::ffff:198.18.1.1".parse().expect("ip");
    assert_eq!(p.advertised(mapped, local, 50000), (local, 50000));
}

#[test]
fn advertise_rule_errors() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace(
        "ports: \"50000-50099\"",
        "ports: \"50000-50099\"\n      advertise:\n        - address: \"203.0.113.1\"\n        - networks: [\"10.0.0.0/33\"]\n          address: \"10.0.0.1\"\n          ports: \"40000-40009\"",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "listeners[0].passive.advertise[0].networks: only the last rule may leave out networks (it matches every client)",
            "listeners[0].passive.advertise[1].networks[0]: \"10.0.0.0/33\" is not a CIDR network",
            "listeners[0].passive.advertise[1].ports: 40000-40009 has 10 ports but passive.ports 50000-50099 has 100; a port forward maps them one to one",
        ]
    );
}

#[test]
fn active_mode_and_data_policy_keys() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace(
        "ports: \"50000-50099\"",
        "ports: \"50000-50099\"\n    active: { enabled: false, ports: \"20000-20009\" }",
    );
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.listeners[0].active,
        Active {
            enabled: false,
            ports: Some(PortRange {
                first: 20000,
                last: 20009
            })
        }
    );
    assert_eq!(config.backends[0].data_mode, DataMode::Passive);
}

#[test]
fn overlapping_passive_ranges_on_the_same_ip() {
    let dir = dir_with(&[]);
    let second = "  - name: second
    bind: \"127.0.0.1:2022\"
    tls: { mode: none }
    passive: { ports: \"50000-50099\" }
    backend: legacy
";
    assert_eq!(
        errors(&minimal(second, ""), dir.path()),
        ["listeners[1].passive.ports: 50000-50099 overlaps listeners[0].passive.ports"]
    );
    // Another address has its own port space...
    let other_ip = second.replace(
        "{ ports: \"50000-50099\" }",
        "{ ports: \"50000-50099\", bind: 127.0.0.2 }",
    );
    parse_ok(&minimal(&other_ip, ""), dir.path());
    // ...but a wildcard bind shares ports with every address of its family.
    let wildcard = second.replace(
        "{ ports: \"50000-50099\" }",
        "{ ports: \"50099\", bind: 0.0.0.0 }",
    );
    assert_eq!(
        errors(&minimal(&wildcard, ""), dir.path()),
        ["listeners[1].passive.ports: 50099-50099 overlaps listeners[0].passive.ports"]
    );
}

#[test]
fn listener_address_conflicts() {
    let dir = dir_with(&[]);
    let second = "  - name: second
    bind: \"127.0.0.1:2021\"
    tls: { mode: none }
    passive: { ports: \"2000-2100\" }
    backend: legacy
";
    assert_eq!(
        errors(&minimal(second, ""), dir.path()),
        [
            "listeners[1].bind: 127.0.0.1:2021 is already used by listeners[0]",
            "listeners[1].passive.ports: 2000-2100 contains the control port of listeners[0].bind (127.0.0.1:2021)",
            "listeners[1].passive.ports: 2000-2100 contains the control port of listeners[1].bind (127.0.0.1:2021)",
        ]
    );
}

#[test]
fn shipped_edge_nat_policy_loads() {
    let config = load_shipped("edge-nat.yaml");
    let l = &config.listeners[0];
    let inside: IpAddr = "198.19.0.50".parse().expect("ip");
    let outside: IpAddr = "203.0.113.2".parse().expect("ip");
    let local: IpAddr = "198.19.0.10".parse().expect("ip");
    assert_eq!(l.passive.advertised(inside, local, 50003), (local, 50003));
    assert_eq!(
        l.passive.advertised(outside, local, 50003),
        ("203.0.113.1".parse().expect("ip"), 40003)
    );
    assert_eq!(
        config.backends[0].keepalive_noop,
        Some(std::time::Duration::from_secs(60))
    );
}
