//! Tests for the config module: the YAML → typed conversion, defaults, and the exact
//! text of every error and warning (operators read these, the runtime matches none).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration;
use super::*;

/// A temporary config directory holding empty files at the given relative paths.
fn dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create temp dir");
    for f in files {
        let path = dir.path().join(f);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create cert dir");
        }
        std::fs::write(&path, b"").expect("write test file");
    }
    dir
}

fn certs() -> tempfile::TempDir {
    dir_with(&[
        "certs/gateway.pem",
        "certs/gateway.key",
        "certs/backend-ca.pem",
    ])
}

fn parse_ok(yaml: &str, dir: &Path) -> Config {
    match Config::from_yaml_str(yaml, dir) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Every error as `PATH: MESSAGE` (line numbers left out; `lines_*` tests cover them).
fn errors(yaml: &str, dir: &Path) -> Vec<String> {
    match Config::from_yaml_str(yaml, dir) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigErrors(list)) => list
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect(),
    }
}

/// One listener in cleartext plus a plain backend: the smallest valid config.
/// `listener_extra` adds listener entries after the first, `backend_extra` keys
/// to the backend.
fn minimal(listener_extra: &str, backend_extra: &str) -> String {
    format!(
        "listeners:
  - name: edge
    bind: \"127.0.0.1:2021\"
    tls:
      mode: none
    passive:
      ports: \"50000-50099\"
    backend: legacy
{listener_extra}backends:
  - name: legacy
    address: \"127.0.0.1:2120\"
{backend_extra}"
    )
}

/// A backend block with TLS; `tls_extra` holds the verification keys.
fn tls_backend(tls_extra: &str) -> String {
    minimal("", &format!("    tls:\n      mode: explicit\n{tls_extra}"))
}

const EXAMPLE: &str = r#"
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls:
      mode: explicit
      cert: certs/gateway.pem
      key: certs/gateway.key
      require: true
      require_data_reuse: true
      min_version: "1.2"
    passive:
      ports: "50000-50099"
      bind: "127.0.0.1"
      advertise: "127.0.0.1"
    backend: legacy
backends:
  - name: legacy
    address: "127.0.0.1:2120"
    tls:
      mode: explicit
      ca: certs/backend-ca.pem
      server_name: "ftp.internal"
      min_version: "1.2"
      max_version: "1.3"
      data_protection: private
timeouts:
  connect: 10s
  login: 60s
  idle: 600s
  pinhole: 30s
  data_idle: 300s
"#;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn example_config_parses_into_typed_value() {
    let dir = certs();
    let d = dir.path();
    let expected = Config {
        listeners: vec![Listener {
            name: "edge".into(),
            bind: SocketAddr::new(LOCALHOST, 2021),
            tls: ListenerTls {
                mode: TlsMode::Explicit,
                cert: Some(d.join("certs/gateway.pem")),
                key: Some(d.join("certs/gateway.key")),
                require: true,
                require_data_reuse: true,
                min_version: TlsVersion::Tls12,
                max_version: TlsVersion::Tls13,
                allow_ccc: false,
                // Default since issue 17 (item 13): clear data only when enabled.
                allow_clear_data: false,
                sni: vec![],
            },
            passive: Passive {
                ports: PortRange {
                    first: 50000,
                    last: 50099,
                },
                bind: LOCALHOST,
                advertise: vec![AdvertiseRule {
                    networks: vec![],
                    address: LOCALHOST,
                    ports: None,
                }],
                nftables: None,
                max_per_client: PortShare::Default,
            },
            active: Active::default(),
            backend: "legacy".into(),
            access: vec![],
            limits: ListenerLimits::default(),
            routes: vec![],
            user_at_backend: false,
            proxy_protocol: None,
        }],
        backends: vec![Backend {
            name: "legacy".into(),
            host: "127.0.0.1".into(),
            port: 2120,
            tls: BackendTls {
                mode: TlsMode::Explicit,
                verify: BackendVerify::Ca(d.join("certs/backend-ca.pem")),
                server_name: "ftp.internal".into(),
                min_version: TlsVersion::Tls12,
                max_version: TlsVersion::Tls13,
                data_protection: DataProtection::Private,
            },
            health_check: None,
            data_mode: DataMode::Passive,
            keepalive_noop: None,
            send_proxy: None,
        }],
        timeouts: Timeouts::default(),
        metrics: None,
        transfer_log: None,
        access: vec![],
        limits: Limits::default(),
        shutdown_grace: Duration::from_secs(30),
        reload: Reload {
            watch: false,
            interval: Duration::from_secs(2),
        },
        sources: vec![],
    };
    let config = parse_ok(EXAMPLE, d);
    assert_eq!(config, expected);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert_eq!(config.listener("edge"), Some(&expected.listeners[0]));
    assert_eq!(config.backend("legacy"), Some(&expected.backends[0]));
    assert_eq!(config.listener("nope"), None);
    assert_eq!(config.backend("nope"), None);
}

#[test]
fn shipped_example_file_loads() {
    // example.yaml (future policies/example.yaml) names files under certs/; give it
    // those files next to a copy so the check covers every key it documents.
    let dir = certs();
    // Here it is `example.yaml`; in the gateway repository `policies/example.yaml`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = ["policies/example.yaml", "example.yaml"]
        .iter()
        .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
        .expect("example.yaml or policies/example.yaml exists");
    // It refers to `../certs/...`, as seen from `policies/`.
    std::fs::create_dir(dir.path().join("policies")).expect("create policies dir");
    let path = dir.path().join("policies/example.yaml");
    std::fs::write(&path, text).expect("copy example.yaml");
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("example.yaml:\n{e}"),
    };
    assert_eq!(config.timeouts, Timeouts::default());
    assert_eq!(config.listeners[0].passive.ports.to_string(), "50000-50099");
    assert_eq!(
        config.metrics,
        Some(MetricsConfig {
            bind: SocketAddr::new(LOCALHOST, 9464)
        })
    );
    assert_eq!(
        config.backends[0].health_check,
        Some(HealthCheck::default())
    );
}

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
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            allow_ccc: false,
            allow_clear_data: true,
            sni: vec![],
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
        }
    );
    assert_eq!(config.timeouts, Timeouts::default());
}

#[test]
fn timeout_defaults_are_the_documented_ones() {
    let t = Timeouts::default();
    assert_eq!(t.connect, Duration::from_secs(10));
    assert_eq!(t.login, Duration::from_secs(60));
    assert_eq!(t.idle, Duration::from_secs(600));
    assert_eq!(t.pinhole, Duration::from_secs(30));
    assert_eq!(t.data_idle, Duration::from_secs(300));
}

#[test]
fn defaults_for_tls_listener_and_tls_backend() {
    let dir = certs();
    let yaml = r#"
listeners:
  - name: edge
    bind: "127.0.0.1:990"
    tls: { mode: implicit, cert: certs/gateway.pem, key: certs/gateway.key }
    passive: { ports: "50000" }
    backend: legacy
backends:
  - name: legacy
    address: "ftp.internal:21"
    tls: { mode: implicit, ca: certs/backend-ca.pem }
"#;
    let config = parse_ok(yaml, dir.path());
    let tls = &config.listeners[0].tls;
    assert!(tls.require && tls.require_data_reuse);
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert_eq!(
        config.listeners[0].passive.ports,
        PortRange {
            first: 50000,
            last: 50000
        }
    );
    let b = &config.backends[0];
    assert_eq!((b.host.as_str(), b.port), ("ftp.internal", 21));
    assert_eq!(
        b.tls.server_name, "ftp.internal",
        "defaults to the address host"
    );
    assert_eq!(b.tls.data_protection, DataProtection::Private);
    assert_eq!(
        (b.tls.min_version, b.tls.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls13)
    );
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
fn relative_paths_resolve_against_base_dir_and_absolute_ones_stay() {
    let dir = certs();
    let abs_ca = dir.path().join("certs/backend-ca.pem");
    let yaml = EXAMPLE.replace(
        "ca: certs/backend-ca.pem",
        &format!("ca: \"{}\"", abs_ca.display()),
    );
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.listeners[0].tls.cert,
        Some(dir.path().join("certs/gateway.pem"))
    );
    assert_eq!(config.backends[0].tls.verify, BackendVerify::Ca(abs_ca));
}

#[test]
fn load_resolves_against_the_config_file_directory() {
    let dir = dir_with(&[
        "etc/certs/gateway.pem",
        "etc/certs/gateway.key",
        "etc/certs/backend-ca.pem",
    ]);
    let path = dir.path().join("etc/gateway.yaml");
    std::fs::write(&path, EXAMPLE).expect("write config");
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        config.listeners[0].tls.key,
        Some(dir.path().join("etc/certs/gateway.key"))
    );
}

#[test]
fn load_reports_unreadable_file() {
    let dir = dir_with(&[]);
    let path = dir.path().join("missing.yaml");
    let ConfigErrors(list) = Config::load(&path).expect_err("missing file");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].path, path.display().to_string());
    assert!(
        list[0].message.starts_with("cannot read config file: "),
        "{}",
        list[0].message
    );
}

#[test]
fn durations_in_every_accepted_form() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "")
        + "timeouts:\n  connect: \"30s\"\n  login: 5m\n  idle: 1h\n  pinhole: 500ms\n  data_idle: 45\n";
    let t = parse_ok(&yaml, dir.path()).timeouts;
    assert_eq!(
        t,
        Timeouts {
            connect: Duration::from_secs(30),
            login: Duration::from_secs(300),
            idle: Duration::from_secs(3600),
            pinhole: Duration::from_millis(500),
            data_idle: Duration::from_secs(45),
            control_write: Duration::from_secs(30),
        }
    );
}

#[test]
fn partial_timeouts_keep_other_defaults() {
    let dir = dir_with(&[]);
    let t = parse_ok(&(minimal("", "") + "timeouts:\n  idle: 2m\n"), dir.path()).timeouts;
    assert_eq!(
        t,
        Timeouts {
            idle: Duration::from_secs(120),
            ..Timeouts::default()
        }
    );
}

#[test]
fn bad_durations_are_reported_per_key() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "") + "timeouts:\n  connect: 10x\n  login: 0s\n  idle: 1.5m\n";
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "timeouts.connect: \"10x\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
            "timeouts.login: \"0s\" must be greater than zero",
            "timeouts.idle: \"1.5m\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
        ]
    );
}

#[test]
fn duration_parser_units_and_limits() {
    assert_eq!(duration::parse("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(duration::parse("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(duration::parse("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(duration::parse("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(duration::parse("45"), Ok(Duration::from_secs(45)));
    for bad in [
        "",
        "s",
        "ms",
        "1.5s",
        "-3s",
        "+5",
        "10 s",
        "10sec",
        "5d",
        "99999999999999999999",
    ] {
        let e = duration::parse(bad).expect_err(bad);
        assert!(e.contains("is not a duration"), "{bad}: {e}");
    }
    assert_eq!(
        duration::parse("18446744073709551615h"),
        Err("\"18446744073709551615h\" is too large".into())
    );
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
fn tls_versions_are_ordered() {
    assert!(TlsVersion::Tls12 < TlsVersion::Tls13);
    assert_eq!(TlsVersion::Tls13.to_string(), "1.3");
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
fn at_least_one_listener() {
    let dir = dir_with(&[]);
    for yaml in [
        "",
        "listeners: []\n",
        "backends:\n  - name: b\n    address: h:21\n",
    ] {
        assert_eq!(
            errors(yaml, dir.path()),
            ["listeners: at least one listener is required"],
            "{yaml:?}"
        );
    }
}

#[test]
fn required_keys_are_named() {
    let dir = dir_with(&[]);
    let yaml = "listeners:\n  - name: edge\nbackends:\n  - {}\n";
    assert_eq!(
        errors(yaml, dir.path()),
        [
            "listeners[0].bind: is required",
            "listeners[0].tls.mode: is required",
            "listeners[0].passive.ports: is required",
            "listeners[0].backend: is required",
            "backends[0].name: is required",
            "backends[0].address: is required",
        ]
    );
}

#[test]
fn duplicate_names() {
    let dir = dir_with(&[]);
    let yaml = r#"
listeners:
  - { name: edge, bind: "127.0.0.1:21", tls: { mode: none }, passive: { ports: "1000-1009" }, backend: a }
  - { name: other, bind: "127.0.0.1:22", tls: { mode: none }, passive: { ports: "1010-1019" }, backend: a }
  - { name: edge, bind: "127.0.0.1:23", tls: { mode: none }, passive: { ports: "1020-1029" }, backend: a }
backends:
  - { name: a, address: "h:21" }
  - { name: a, address: "h:22" }
"#;
    assert_eq!(
        errors(yaml, dir.path()),
        [
            "listeners[2].name: duplicate listener name \"edge\"",
            "backends[1].name: duplicate backend name \"a\"",
        ]
    );
}

#[test]
fn backend_address_forms() {
    let dir = dir_with(&[]);
    for (good, host, port) in [
        ("ftp.internal:21", "ftp.internal", 21),
        ("10.0.0.1:2121", "10.0.0.1", 2121),
        ("[::1]:21", "::1", 21),
        ("legacy_ftp:21", "legacy_ftp", 21),
    ] {
        let yaml = minimal("", "").replace("\"127.0.0.1:2120\"", &format!("\"{good}\""));
        let b = &parse_ok(&yaml, dir.path()).backends[0];
        assert_eq!((b.host.as_str(), b.port), (host, port), "{good}");
    }
    for bad in [
        "foo",
        "foo:",
        ":21",
        "foo:0",
        "foo:65536",
        "foo:2x",
        "::1:21",
        "[::1]",
        "[::1:21",
        "[nope]:21",
        "300.1.1.1:21",
        "-bad.host:21",
        "a b:21",
    ] {
        let yaml = minimal("", "").replace("\"127.0.0.1:2120\"", &format!("\"{bad}\""));
        assert_eq!(
            errors(&yaml, dir.path()),
            [format!("backends[0].address: \"{bad}\" is not host:port")],
            "{bad}"
        );
    }
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
fn missing_certificate_file_is_shown_as_written() {
    let dir = certs();
    let yaml = EXAMPLE.replace("certs/gateway.pem", "certs/x.pem");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].tls.cert: file certs/x.pem does not exist"]
    );
    let yaml = EXAMPLE.replace("cert: certs/gateway.pem", "cert: certs");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].tls.cert: certs is not a regular file"]
    );
}

#[test]
fn cert_and_key_required_with_tls() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace("mode: none", "mode: explicit");
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "listeners[0].tls.cert: is required when mode is explicit",
            "listeners[0].tls.key: is required when mode is explicit",
        ]
    );
}

#[test]
fn tls_only_keys_refused_with_mode_none() {
    let dir = certs();
    let yaml = minimal("", "").replace(
        "mode: none",
        "mode: none\n      cert: certs/gateway.pem\n      require: true\n      require_data_reuse: false",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "listeners[0].tls.cert: only allowed when mode is explicit or implicit",
            "listeners[0].tls.require: must be false or absent when mode is none",
        ]
    );
    let yaml = minimal("", "")
        + "    tls:\n      ca: certs/backend-ca.pem\n      data_protection: private\n";
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].tls.ca: only allowed when mode is explicit or implicit",
            "backends[0].tls.data_protection: must be clear or absent when mode is none",
        ]
    );
    let yaml = minimal("", "").replace("mode: none", "mode: none\n      require: false");
    assert!(!parse_ok(&yaml, dir.path()).listeners[0].tls.require);
}

#[test]
fn bad_enumerations_and_booleans() {
    let dir = certs();
    let yaml = EXAMPLE
        .replace("mode: explicit\n      cert", "mode: auto\n      cert")
        .replace("require: true", "require: yes")
        .replace(
            "min_version: \"1.2\"\n    passive",
            "min_version: 1.1\n    passive",
        )
        .replace("data_protection: private", "data_protection: safe");
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "listeners[0].tls.mode: \"auto\" is not a TLS mode (expected explicit, implicit or none)",
            "listeners[0].tls.require: \"yes\" is not a boolean (expected true or false)",
            "listeners[0].tls.min_version: \"1.1\" is not a TLS version (expected \"1.2\" or \"1.3\")",
            "backends[0].tls.data_protection: \"safe\" is not a data protection level (expected private or clear)",
        ]
    );
}

#[test]
fn unquoted_versions_are_read_as_written() {
    let dir = certs();
    let yaml = EXAMPLE.replace("\"1.3\"", "1.3").replace("\"1.2\"", "1.2");
    assert_eq!(
        parse_ok(&yaml, dir.path()).backends[0].tls.max_version,
        TlsVersion::Tls13
    );
}

#[test]
fn min_version_above_max_version() {
    let dir = certs();
    let yaml = EXAMPLE.replace(
        "min_version: \"1.2\"\n      max_version: \"1.3\"",
        "min_version: \"1.3\"\n      max_version: \"1.2\"",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].tls.max_version: \"1.2\" is lower than min_version \"1.3\""]
    );
}

#[test]
fn pin_with_colons_single_and_list() {
    let dir = dir_with(&[]);
    let hex64 = "ab".repeat(32);
    let colons = vec!["AB"; 32].join(":");
    let yaml = tls_backend(&format!("      pin_sha256: \"{colons}\"\n"));
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.backends[0].tls.verify,
        BackendVerify::Pin(vec![[0xab; 32]])
    );
    let yaml = tls_backend(&format!(
        "      pin_sha256:\n        - \"{hex64}\"\n        - \"{}\"\n",
        "01".repeat(32)
    ));
    assert_eq!(
        parse_ok(&yaml, dir.path()).backends[0].tls.verify,
        BackendVerify::Pin(vec![[0xab; 32], [0x01; 32]])
    );
}

#[test]
fn bad_pins() {
    let dir = dir_with(&[]);
    let yaml = tls_backend("      pin_sha256: \"ab12ab12ab12\"\n");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].tls.pin_sha256: expected 64 hex digits, got 12"]
    );
    let yaml = tls_backend(&format!(
        "      pin_sha256:\n        - \"{}\"\n        - \"{}zz\"\n",
        "00".repeat(32),
        "00".repeat(31)
    ));
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].tls.pin_sha256[1]: expected 64 hex digits, found 'z'"]
    );
    let yaml = tls_backend("      pin_sha256: []\n");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].tls.pin_sha256: must list at least one pin"]
    );
}

#[test]
fn verify_false_is_accepted_with_a_warning() {
    let dir = dir_with(&[]);
    let config = parse_ok(&tls_backend("      verify: false\n"), dir.path());
    assert_eq!(config.backends[0].tls.verify, BackendVerify::Dangerous);
    assert_eq!(
        config.warnings(),
        [
            "listeners[0].tls.mode: none leaves client control and data connections unencrypted",
            "backends[0].tls.verify: false disables backend certificate verification (lab only)",
        ]
    );
}

#[test]
fn verification_choice_errors() {
    let dir = certs();
    let d = dir.path();
    let pin = format!("      pin_sha256: \"{}\"\n", "00".repeat(32));
    let ca = "      ca: certs/backend-ca.pem\n";
    assert_eq!(
        errors(&tls_backend("      verify: true\n"), d),
        ["backends[0].tls.verify: verify: true needs ca or pin_sha256"]
    );
    assert_eq!(
        errors(&tls_backend(""), d),
        ["backends[0].tls: one of ca, pin_sha256 or verify: false is required when mode is explicit"]
    );
    assert_eq!(
        errors(&tls_backend(&format!("{ca}      verify: false\n")), d),
        ["backends[0].tls.verify: false cannot be combined with ca or pin_sha256"]
    );
    assert_eq!(
        errors(&tls_backend(&format!("{ca}{pin}")), d),
        ["backends[0].tls: ca and pin_sha256 cannot both be set; keep one"]
    );
    let config = parse_ok(&tls_backend(&format!("{pin}      verify: true\n")), d);
    assert_eq!(
        config.backends[0].tls.verify,
        BackendVerify::Pin(vec![[0; 32]])
    );
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
fn several_errors_are_reported_together() {
    let dir = dir_with(&[]);
    let yaml = r#"
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls: { mode: explicit, cert: certs/x.pem, key: certs/x.key }
    passive: { ports: "5000-400" }
    backend: legacy
  - name: edge
    bind: "127.0.0.1:2022"
    tls: { mode: none }
    passive: { ports: "6000-6099" }
    backend: nope
backends:
  - name: legacy
    address: "foo"
    tls: { mode: explicit, pin_sha256: "ab12ab12ab12", min_version: "1.3", max_version: "1.2" }
timeouts:
  pinhole: soon
"#;
    let e = Config::from_yaml_str(yaml, dir.path()).expect_err("invalid");
    assert_eq!(
        e.to_string(),
        [
            "listeners[0].tls.cert (line 5): file certs/x.pem does not exist",
            "listeners[0].tls.key (line 5): file certs/x.key does not exist",
            "listeners[0].passive.ports (line 6): \"5000-400\" is not a range",
            "listeners[1].name (line 8): duplicate listener name \"edge\"",
            "listeners[1].backend (line 12): backend \"nope\" is not defined",
            "backends[0].address (line 15): \"foo\" is not host:port",
            "backends[0].tls.pin_sha256 (line 16): expected 64 hex digits, got 12",
            "backends[0].tls.max_version (line 16): \"1.2\" is lower than min_version \"1.3\"",
            "timeouts.pinhole (line 18): \"soon\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
        ]
        .join("\n")
    );
    assert_eq!(
        e.0[0],
        ConfigError {
            path: "listeners[0].tls.cert".into(),
            line: Some(5),
            message: "file certs/x.pem does not exist".into(),
        }
    );
}

#[test]
fn unknown_key_is_one_error_with_its_location() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace(
        "    backend: legacy\n",
        "    backend: legacy\n    backnd: x\n",
    );
    let ConfigErrors(list) = Config::from_yaml_str(&yaml, dir.path()).expect_err("unknown key");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].path, "<yaml>:9:5");
    assert!(
        list[0].message.starts_with("unknown field `backnd`"),
        "{}",
        list[0].message
    );
}

#[test]
fn syntax_error_in_a_file_is_located_in_that_file() {
    let dir = dir_with(&[]);
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, "listeners: [\n").expect("write config");
    let ConfigErrors(list) = Config::load(&path).expect_err("syntax error");
    assert_eq!(list.len(), 1);
    assert!(
        list[0].path.starts_with(&format!("{}:", path.display())),
        "{:?}",
        list[0]
    );
    assert!(!list[0].message.is_empty());
}

#[test]
fn wrong_shape_is_a_syntax_level_error() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace("bind: \"127.0.0.1:2021\"", "bind: [1, 2]");
    let ConfigErrors(list) = Config::from_yaml_str(&yaml, dir.path()).expect_err("bad shape");
    assert_eq!(list.len(), 1);
    assert!(list[0].path.starts_with("<yaml>:"), "{:?}", list[0]);
}

#[test]
fn weakening_settings_produce_warnings() {
    let dir = certs();
    let yaml = EXAMPLE
        .replace("require: true", "require: false")
        .replace("require_data_reuse: true", "require_data_reuse: false")
        .replace("data_protection: private", "data_protection: clear")
        .replace(
            "timeouts:",
            "  - name: spare\n    address: \"spare.internal:21\"\ntimeouts:",
        );
    assert_eq!(
        parse_ok(&yaml, dir.path()).warnings(),
        [
            "listeners[0].tls.require: false lets clients send USER/PASS before AUTH TLS",
            "listeners[0].tls.require_data_reuse: false accepts data connections that do not resume the control TLS session (data connection theft)",
            "backends[0].tls.data_protection: clear sends file data to the backend unencrypted",
            "backends[1].name: backend \"spare\" is not used by any listener",
        ]
    );
}

#[test]
fn errors_display_one_per_line() {
    let e = ConfigErrors(vec![
        ConfigError {
            path: "a".into(),
            line: None,
            message: "x".into(),
        },
        ConfigError {
            path: "b[0].c".into(),
            line: Some(7),
            message: "y".into(),
        },
    ]);
    assert_eq!(e.to_string(), "a: x\nb[0].c (line 7): y");
    let _: &dyn std::error::Error = &e;
}

#[test]
fn base_dir_is_only_a_prefix() {
    // Paths in the typed config are base_dir joined with the text as written.
    let dir = certs();
    let config = parse_ok(EXAMPLE, dir.path());
    let expected: PathBuf = [dir.path(), Path::new("certs"), Path::new("gateway.pem")]
        .iter()
        .collect();
    assert_eq!(config.listeners[0].tls.cert, Some(expected));
}

#[test]
fn observability_sections_are_optional_and_off_by_default() {
    let dir = dir_with(&[]);
    let config = parse_ok(&minimal("", ""), dir.path());
    assert_eq!(config.metrics, None);
    assert_eq!(config.transfer_log, None);
    assert_eq!(config.backends[0].health_check, None);
}

#[test]
fn metrics_transfer_log_and_health_check_parse() {
    let dir = dir_with(&["logs/keep"]);
    let yaml = format!(
        "{}    health_check: {{ interval: 30s, timeout: 2s }}
metrics:
  bind: \"127.0.0.1:9464\"
transfer_log:
  path: logs/xferlog
  format: json
",
        minimal("", "")
    );
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.metrics,
        Some(MetricsConfig {
            bind: SocketAddr::new(LOCALHOST, 9464)
        })
    );
    assert_eq!(
        config.transfer_log,
        Some(TransferLogConfig {
            path: dir.path().join("logs/xferlog"),
            format: TransferLogFormat::Json,
        })
    );
    assert_eq!(
        config.backends[0].health_check,
        Some(HealthCheck {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        })
    );
}

#[test]
fn observability_defaults() {
    let dir = dir_with(&[]);
    let yaml = format!(
        "{}    health_check: {{}}
transfer_log: {{ path: xferlog }}
",
        minimal("", "")
    );
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.backends[0].health_check,
        Some(HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        })
    );
    assert_eq!(
        HealthCheck::default(),
        config.backends[0].health_check.unwrap()
    );
    let log = config.transfer_log.expect("transfer_log");
    assert_eq!(log.format, TransferLogFormat::Xferlog);
    assert_eq!(log.path, dir.path().join("xferlog"));
}

#[test]
fn observability_errors_have_key_paths() {
    let dir = dir_with(&["adir/x"]);
    let yaml = format!(
        "{}    health_check: {{ interval: 5s, timeout: 10s }}
metrics: {{ bind: \"127.0.0.1:2021\" }}
transfer_log: {{ path: nowhere/xferlog, format: csv }}
",
        minimal("", "")
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].health_check.timeout: \"10s\" is longer than interval \"5s\"",
            "metrics.bind: 127.0.0.1:2021 is already used by listeners[0]",
            "transfer_log.path: directory of nowhere/xferlog does not exist",
            "transfer_log.format: \"csv\" is not a transfer log format (expected xferlog or json)",
        ]
    );

    let yaml = format!(
        "{}    health_check: {{ timeout: 11s, interval: 0s }}
metrics: {{}}
transfer_log: {{ path: adir }}
",
        minimal("", "")
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].health_check.interval: \"0s\" must be greater than zero",
            "metrics.bind: is required",
            "transfer_log.path: adir is a directory",
        ]
    );

    let yaml = format!(
        "{}    health_check: {{ timeout: 11s }}
metrics: {{ bind: \"localhost:9464\" }}
transfer_log: {{ format: json }}
",
        minimal("", "")
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].health_check.timeout: \"11s\" is longer than interval 10s (default)",
            "metrics.bind: \"localhost:9464\" is not an IP address and port (e.g. \"127.0.0.1:2021\" or \"[::1]:2021\")",
            "transfer_log.path: is required",
        ]
    );
}

#[test]
fn unknown_keys_in_observability_sections_are_refused() {
    let dir = dir_with(&[]);
    for extra in [
        "metrics: { bind: \"127.0.0.1:9464\", path: /m }\n",
        "transfer_log: { path: x, rotate: true }\n",
    ] {
        let yaml = format!("{}{extra}", minimal("", ""));
        let errs = errors(&yaml, dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("<yaml>:"), "{errs:?}");
    }
    let yaml = format!("{}    health_check: {{ every: 5s }}\n", minimal("", ""));
    let errs = errors(&yaml, dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("<yaml>:"), "{errs:?}");
}

// ---------------------------------------------------------------------------------------
// Policy keys: access, limits, routes, sni, shutdown, reload, include

/// Copies a shipped policy next to dummy cert files (`../certs/...` from `policies/`).
fn load_shipped(name: &str) -> Config {
    let dir = certs();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("policies").join(name)).expect("shipped policy");
    std::fs::create_dir(dir.path().join("policies")).expect("create policies dir");
    let path = dir.path().join("policies").join(name);
    std::fs::write(&path, text).expect("copy policy");
    match Config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("{name}:\n{e}"),
    }
}

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
    let c = crate::policy::route(l, "alice@srv-b").expect("routable");
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
    use crate::policy::{check_access, AccessDecision};
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
fn shipped_example_policy_has_documented_defaults() {
    let config = load_shipped("example.yaml");
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.reload, Reload::default());
    assert_eq!(config.limits, Limits::default());
    assert!(config.access.is_empty());
    assert_eq!(config.sources.len(), 1);
    assert!(config.sources[0].is_absolute());
}

const POLICY: &str = r#"
access:
  - deny: ["127.0.0.2"]
  - allow: ["127.0.0.0/8", "::1/128", "10.1.2.3/8"]
limits:
  max_sessions: 10000
  max_sessions_per_ip: 50
  failed_logins: { max: 3, window: 1m, cooldown: 10m }
shutdown: { grace: 5s }
reload: { watch: true, interval: 500ms }
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls:
      mode: explicit
      cert: certs/gateway.pem
      key: certs/gateway.key
      sni:
        - { names: ["FTP.example.com", "ftp2.example.com."], cert: certs/gateway.pem, key: certs/gateway.key }
    passive: { ports: "50000-50099" }
    backend: legacy
    access: [ { allow: ["10.0.0.0/8"] } ]
    limits: { max_sessions: 100, max_sessions_per_ip: 10, bandwidth: "10MiB" }
    user_at_backend: true
    routes:
      - user: alice
        backends: [srv-a, srv-b]
      - user: "ro-*"
        backends: [srv-a]
        balance: least-connections
        commands: { deny: [stor, APPE] }
      - user: "rw-?"
        backends: [legacy]
        commands: { allow: [RETR, LIST] }
backends:
  - { name: legacy, address: "127.0.0.1:2120" }
  - { name: srv-a, address: "127.0.0.1:2121" }
  - { name: srv-b, address: "127.0.0.1:2122" }
"#;

#[test]
fn policy_keys_parse_into_typed_values() {
    let dir = certs();
    let config = parse_ok(POLICY, dir.path());
    let net = |s: &str| s.parse::<ipnet::IpNet>().expect("net");
    assert_eq!(
        config.access,
        vec![
            AccessRule {
                action: Action::Deny,
                networks: vec![net("127.0.0.2/32")]
            },
            AccessRule {
                action: Action::Allow,
                networks: vec![net("127.0.0.0/8"), net("::1/128"), net("10.0.0.0/8")]
            },
        ]
    );
    assert_eq!(
        config.limits,
        Limits {
            max_sessions: Some(10000),
            max_sessions_per_ip: Some(50),
            max_unauthenticated_per_ip: None,
            connection_rate_per_ip: None,
            failed_logins: Some(FailedLogins {
                max: 3,
                window: Duration::from_secs(60),
                cooldown: Duration::from_secs(600),
            }),
        }
    );
    assert_eq!(config.shutdown_grace, Duration::from_secs(5));
    assert_eq!(
        config.reload,
        Reload {
            watch: true,
            interval: Duration::from_millis(500)
        }
    );
    assert!(config.sources.is_empty());
    let l = &config.listeners[0];
    assert_eq!(
        l.limits,
        ListenerLimits {
            max_sessions: Some(100),
            max_sessions_per_ip: Some(10),
            bandwidth: Some(10 * 1024 * 1024),
        }
    );
    assert!(l.user_at_backend);
    assert_eq!(l.access.len(), 1);
    assert_eq!(
        l.routes[1],
        Route {
            user: "ro-*".into(),
            backends: vec!["srv-a".into()],
            balance: Balance::LeastConnections,
            commands: CommandPolicy::Deny(vec!["STOR".into(), "APPE".into()]),
        }
    );
    assert_eq!(l.routes[0].balance, Balance::RoundRobin);
    assert_eq!(l.routes[0].commands, CommandPolicy::Any);
    assert_eq!(
        l.routes[2].commands,
        CommandPolicy::Allow(vec!["RETR".into(), "LIST".into()])
    );
    assert_eq!(
        l.tls.sni,
        vec![SniCert {
            names: vec!["ftp.example.com".into(), "ftp2.example.com".into()],
            cert: dir.path().join("certs/gateway.pem"),
            key: dir.path().join("certs/gateway.key"),
        }]
    );
    // Backends used only by routes count as used.
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn policy_defaults() {
    let dir = dir_with(&[]);
    let config = parse_ok(&minimal("", ""), dir.path());
    assert!(config.access.is_empty());
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.reload, Reload::default());
    let l = &config.listeners[0];
    assert!(l.access.is_empty() && l.routes.is_empty() && !l.user_at_backend);
    assert_eq!(l.limits, ListenerLimits::default());
    assert!(l.tls.sni.is_empty());
    let yaml = format!("{}limits:\n  failed_logins: {{}}\n", minimal("", ""));
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(config.limits.failed_logins, Some(FailedLogins::default()));
}

#[test]
fn policy_errors_have_key_paths() {
    let dir = certs();
    let yaml = r#"
access:
  - deny: ["300.0.0.0/8"]
  - { allow: ["10.0.0.0/8"], deny: ["10.1.0.0/16"] }
  - {}
  - allow: []
limits:
  max_sessions: 0
  max_sessions_per_ip: many
  failed_logins: { max: 0, window: never }
shutdown: { grace: 0s }
reload: { watch: yes, interval: 2x }
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls:
      mode: explicit
      cert: certs/gateway.pem
      key: certs/gateway.key
      sni:
        - { names: ["*.example.com"], cert: certs/none.pem, key: certs/gateway.key }
        - { names: [], key: certs/gateway.key }
        - { names: ["a.example"], cert: certs/gateway.pem, key: certs/gateway.key }
        - { names: ["A.example"], cert: certs/gateway.pem, key: certs/gateway.key }
    passive: { ports: "50000-50099" }
    backend: legacy
    access: [ { allow: ["10.0.0.0/33"] } ]
    limits: { bandwidth: "10 MB", max_sessions: -1 }
    user_at_backend: maybe
    routes:
      - backends: [legacy]
      - user: alice
        backends: []
      - user: bob
        backends: [x, legacy, legacy]
        balance: random
        commands: { allow: [RETR], deny: [STOR] }
      - user: carol
        commands: { deny: [ST, "RE TR", STORE] }
      - user: dave
        backends: [legacy]
        commands: {}
backends:
  - { name: legacy, address: "127.0.0.1:2120" }
"#;
    assert_eq!(
        errors(yaml, dir.path()),
        [
            "listeners[0].tls.sni[0].names[0]: \"*.example.com\" is not a DNS name (SNI carries names only; wildcards are not supported)",
            "listeners[0].tls.sni[0].cert: file certs/none.pem does not exist",
            "listeners[0].tls.sni[1].names: must list at least one name",
            "listeners[0].tls.sni[1].cert: is required",
            "listeners[0].tls.sni[3].names[0]: \"a.example\" is already listed in listeners[0].tls.sni[2]",
            "listeners[0].access[0].allow[0]: \"10.0.0.0/33\" is not a CIDR network (e.g. \"10.0.0.0/8\" or \"::1/128\")",
            "listeners[0].limits.max_sessions: \"-1\" is not a whole number",
            "listeners[0].limits.bandwidth: \"10 MB\" is not a bandwidth (bytes per second, e.g. \"500K\", \"10MiB\" or 1048576)",
            "listeners[0].user_at_backend: \"maybe\" is not a boolean (expected true or false)",
            "listeners[0].routes[0].user: is required",
            "listeners[0].routes[1].backends: must list at least one backend",
            "listeners[0].routes[2].backends[0]: backend \"x\" is not defined",
            "listeners[0].routes[2].backends[2]: backend \"legacy\" is listed twice",
            "listeners[0].routes[2].balance: \"random\" is not a balance mode (expected round-robin or least-connections)",
            "listeners[0].routes[2].commands: allow and deny cannot both be set; keep one",
            "listeners[0].routes[3].backends: is required",
            "listeners[0].routes[3].commands.deny[0]: \"ST\" is not an FTP command (3 or 4 letters, e.g. STOR)",
            "listeners[0].routes[3].commands.deny[1]: \"RE TR\" is not an FTP command (3 or 4 letters, e.g. STOR)",
            "listeners[0].routes[3].commands.deny[2]: \"STORE\" is not an FTP command (3 or 4 letters, e.g. STOR)",
            "listeners[0].routes[4].commands: needs allow or deny",
            "access[0].deny[0]: \"300.0.0.0/8\" is not a CIDR network (e.g. \"10.0.0.0/8\" or \"::1/128\")",
            "access[1]: a rule has allow or deny, not both; split it in two",
            "access[2]: a rule needs allow or deny",
            "access[3].allow: must list at least one network",
            "limits.max_sessions: \"0\" must be at least 1",
            "limits.max_sessions_per_ip: \"many\" is not a whole number",
            "limits.failed_logins.max: \"0\" must be at least 1",
            "limits.failed_logins.window: \"never\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
            "shutdown.grace: \"0s\" must be greater than zero",
            "reload.watch: \"yes\" is not a boolean (expected true or false)",
            "reload.interval: \"2x\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
        ]
    );
}

#[test]
fn sni_needs_tls() {
    let dir = certs();
    let yaml = minimal("", "").replace(
        "      mode: none\n",
        "      mode: none\n      sni: [ { names: [a.example], cert: certs/gateway.pem, key: certs/gateway.key } ]\n",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].tls.sni: only allowed when mode is explicit or implicit"]
    );
}

#[test]
fn bandwidth_forms() {
    let dir = dir_with(&[]);
    for (written, bytes) in [
        ("1048576", 1_048_576u64),
        ("500K", 500_000),
        ("10M", 10_000_000),
        ("1G", 1_000_000_000),
        ("64KiB", 65_536),
        ("10MiB", 10_485_760),
        ("2GiB", 2_147_483_648),
    ] {
        let yaml = minimal("", "").replace(
            "    backend: legacy\n",
            &format!("    backend: legacy\n    limits: {{ bandwidth: \"{written}\" }}\n"),
        );
        let config = parse_ok(&yaml, dir.path());
        assert_eq!(
            config.listeners[0].limits.bandwidth,
            Some(bytes),
            "{written}"
        );
    }
    for bad in [
        "0",
        "0K",
        "10kb",
        "K",
        "99999999999999999999",
        "20000000000GiB",
    ] {
        let yaml = minimal("", "").replace(
            "    backend: legacy\n",
            &format!("    backend: legacy\n    limits: {{ bandwidth: \"{bad}\" }}\n"),
        );
        assert_eq!(errors(&yaml, dir.path()).len(), 1, "{bad}");
    }
}

#[test]
fn shadowed_routes_and_unfilterable_verbs_warn() {
    let dir = dir_with(&[]);
    let routes = "    routes:
      - { user: \"ro-*\", backends: [legacy] }
      - { user: \"*\", backends: [legacy], commands: { deny: [QUIT, STOR] } }
      - { user: alice, backends: [legacy] }
      - { user: \"ro-b?\", backends: [legacy] }
";
    let yaml = minimal("", "").replace(
        "    backend: legacy\n",
        &format!("    backend: legacy\n{routes}"),
    );
    let config = parse_ok(&yaml, dir.path());
    let w: Vec<String> = config
        .warnings()
        .into_iter()
        .filter(|w| w.contains("routes"))
        .collect();
    assert_eq!(
        w,
        [
            "listeners[0].routes[1].commands: QUIT is never filtered (session management)",
            "listeners[0].routes[2].user: \"alice\" is never used: every name it matches is matched by routes[1] (\"*\") first",
            "listeners[0].routes[3].user: \"ro-b?\" is never used: every name it matches is matched by routes[0] (\"ro-*\") first",
        ]
    );
}

#[test]
fn semantic_errors_carry_line_numbers() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace("\"50000-50099\"", "\"5000-400\"");
    let ConfigErrors(list) = Config::from_yaml_str(&yaml, dir.path()).expect_err("bad range");
    assert_eq!(
        list[0].to_string(),
        "listeners[0].passive.ports (line 7): \"5000-400\" is not a range"
    );
    // A missing key is located at the mapping it is missing from.
    let yaml = minimal("", "").replace("    bind: \"127.0.0.1:2021\"\n", "");
    let ConfigErrors(list) = Config::from_yaml_str(&yaml, dir.path()).expect_err("no bind");
    assert_eq!(list[0].path, "listeners[0].bind");
    assert_eq!(list[0].line, Some(2));
}

/// Writes `files` (relative path → text) under a fresh directory with dummy certs.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = certs();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn load_errors(path: &Path) -> Vec<String> {
    match Config::load(path) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigErrors(list)) => list.iter().map(ToString::to_string).collect(),
    }
}

const TEAM_A: &str = "listeners:
  - name: team-a
    bind: \"127.0.0.1:2031\"
    tls: { mode: explicit, cert: ../certs/gateway.pem, key: ../certs/gateway.key }
    passive: { ports: \"51000-51009\" }
    backend: srv-a
access:
  - deny: [\"10.9.0.0/16\"]
";

const BACKENDS: &str = "backends:
  - { name: srv-a, address: \"127.0.0.1:2130\" }
";

#[test]
fn includes_append_lists_and_resolve_paths_per_file() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!(
                "include: [teams/a.yaml, backends.yaml]\naccess: [ {{ allow: [\"10.0.0.0/8\"] }} ]\n{}",
                minimal("", "")
            ),
        ),
        ("teams/a.yaml", TEAM_A),
        ("backends.yaml", BACKENDS),
    ]);
    let config = match Config::load(&dir.path().join("main.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["edge", "team-a"]);
    let backends: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(backends, ["legacy", "srv-a"]);
    assert_eq!(config.access.len(), 2);
    assert_eq!(config.access[0].action, Action::Allow);
    assert_eq!(config.access[1].action, Action::Deny);
    // ../certs is relative to teams/, i.e. the certs/ next to main.yaml.
    assert_eq!(
        config.listeners[1].tls.cert,
        Some(dir.path().join("teams/../certs/gateway.pem"))
    );
    assert_eq!(
        config.sources,
        [
            dir.path().join("main.yaml"),
            dir.path().join("teams/a.yaml"),
            dir.path().join("backends.yaml"),
        ]
    );
}

#[test]
fn errors_in_included_files_name_the_file() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!("include: [teams/a.yaml]\n{}", minimal("", "")),
        ),
        (
            "teams/a.yaml",
            &TEAM_A.replace("team-a", "edge").replace(
                "    backend: srv-a\n",
                "    backend: srv-a\n    routes: [ { user: x, backends: [legacy, nope] } ]\n",
            ),
        ),
    ]);
    assert_eq!(
        load_errors(&dir.path().join("main.yaml")),
        [
            "teams/a.yaml: listeners[0].name (line 2): duplicate listener name \"edge\" (first defined in the top file)",
            "teams/a.yaml: listeners[0].backend (line 6): backend \"srv-a\" is not defined",
            "teams/a.yaml: listeners[0].routes[0].backends[1] (line 7): backend \"nope\" is not defined",
        ]
    );
}

#[test]
fn include_problems_stop_the_load() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!(
                "include: [missing.yaml, a.yaml, top-only.yaml, bad.yaml]\n{}",
                minimal("", "")
            ),
        ),
        ("a.yaml", "include: [sub/b.yaml]\n"),
        ("sub/b.yaml", "include: [../a.yaml, ../main.yaml]\n"),
        ("top-only.yaml", "timeouts: { idle: 5s }\nlimits: {}\n"),
        ("bad.yaml", "listeners: [\n"),
    ]);
    let errors = load_errors(&dir.path().join("main.yaml"));
    assert_eq!(
        errors[0],
        "include[0]: included file missing.yaml does not exist"
    );
    assert_eq!(
        errors[1],
        "sub/b.yaml: include[0]: include cycle: a.yaml -> sub/b.yaml -> a.yaml"
    );
    assert_eq!(
        errors[2],
        "sub/b.yaml: include[1]: include cycle: main.yaml -> a.yaml -> sub/b.yaml -> main.yaml"
    );
    assert_eq!(
        errors[3],
        "top-only.yaml: timeouts: only allowed in the top file (included files may hold listeners, backends, access and include)"
    );
    assert!(
        errors[4].starts_with("top-only.yaml: limits: "),
        "{errors:?}"
    );
    assert!(errors[5].starts_with("bad.yaml:"), "{errors:?}");
    assert_eq!(errors.len(), 6, "{errors:?}");
}

#[test]
fn duplicate_backends_across_files() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!("include: [b1.yaml, b2.yaml]\n{}", minimal("", "")),
        ),
        ("b1.yaml", BACKENDS),
        ("b2.yaml", BACKENDS),
    ]);
    assert_eq!(
        load_errors(&dir.path().join("main.yaml")),
        ["b2.yaml: backends[0].name (line 2): duplicate backend name \"srv-a\" (first defined in b1.yaml)"]
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

// Found while writing the `config` fuzz target (`fuzz/`) and reproduced with it:
// `include: [/dev/zero]` was read until memory ran out (libFuzzer: out-of-memory),
// and `/dev/stdin` or a FIFO hung `check`.
#[test]
fn include_of_a_device_or_directory_is_refused_without_reading_it() {
    let dir = dir_with(&["sub/x.yaml"]);
    let yaml = format!("include: [/dev/zero, sub]\n{}", minimal("", ""));
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "include[0]: included file /dev/zero is not a regular file",
            "include[1]: included file sub is not a regular file",
        ]
    );
}

#[test]
fn listener_max_version_below_min_version_is_an_error() {
    let dir = certs();
    let yaml = EXAMPLE.replacen(
        "      min_version: \"1.2\"\n    passive:",
        "      min_version: \"1.3\"\n      max_version: \"1.2\"\n    passive:",
        1,
    );
    let errs = errors(&yaml, dir.path());
    assert!(
        errs.iter().any(|e| e
            == "listeners[0].tls.max_version: \"1.2\" is lower than min_version \"1.3\""),
        "{errs:?}"
    );
    let ok = EXAMPLE.replace("require: true", "require: true\n      max_version: \"1.2\"");
    let config = parse_ok(&ok, dir.path());
    assert_eq!(config.listeners[0].tls.max_version, TlsVersion::Tls12);
}

#[test]
fn send_proxy_versions_and_errors() {
    let dir = certs();
    let c = parse_ok(&minimal("", "    send_proxy: v2\n"), dir.path());
    assert_eq!(
        c.backends[0].send_proxy,
        Some(crate::config::ProxyVersion::V2)
    );
    let c = parse_ok(&minimal("", "    send_proxy: v1\n"), dir.path());
    assert_eq!(
        c.backends[0].send_proxy,
        Some(crate::config::ProxyVersion::V1)
    );
    assert_eq!(
        parse_ok(&minimal("", ""), dir.path()).backends[0].send_proxy,
        None
    );
    assert_eq!(
        errors(&minimal("", "    send_proxy: v3\n"), dir.path()),
        vec!["backends[0].send_proxy: \"v3\" is not a PROXY protocol version (expected v1 or v2)"]
    );
}

#[test]
fn clear_data_is_off_by_default_and_warned_about_when_on() {
    let dir = certs();
    let yaml = EXAMPLE.replace(
        "      require: true\n",
        "      require: true\n      allow_clear_data: true\n",
    );
    let on = parse_ok(&yaml, dir.path());
    assert!(on.listeners[0].tls.allow_clear_data);
    assert!(
        on.warnings()
            .iter()
            .any(|w| w.starts_with("listeners[0].tls.allow_clear_data: true")),
        "{:?}",
        on.warnings()
    );
    let off = parse_ok(EXAMPLE, dir.path());
    assert!(!off.listeners[0].tls.allow_clear_data);
    assert!(!off
        .warnings()
        .iter()
        .any(|w| w.contains("allow_clear_data")));
}

#[test]
fn readable_private_keys_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = certs();
    let config = parse_ok(EXAMPLE, dir.path());
    let key = dir.path().join("certs/gateway.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let w = config.key_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("listeners[0].tls.key: private key"),
        "{w:?}"
    );
    assert!(w[0].contains("mode 640"), "{w:?}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(config.key_warnings().is_empty());
}

#[test]
fn bounds_keys_parse() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace(
        "      ports: \"50000-50099\"\n",
        "      ports: \"50000-50009\"\n      max_per_client: \"30%\"\n",
    ) + "limits:\n  max_unauthenticated_per_ip: 4\n  connection_rate_per_ip: 20\n\
         timeouts:\n  control_write: 3s\n";
    let c = parse_ok(&yaml, dir.path());
    assert_eq!(c.limits.max_unauthenticated_per_ip, Some(4));
    assert_eq!(c.limits.connection_rate_per_ip, Some(20));
    assert_eq!(c.timeouts.control_write, Duration::from_secs(3));
    assert_eq!(
        c.listeners[0].passive.max_per_client,
        PortShare::Percent(30)
    );
    assert_eq!(c.listeners[0].passive.max_per_client.cap(10), 3);
    let filled = c.with_fd_limit(1024);
    assert_eq!(filled.limits.max_sessions, Some(240));
    assert_eq!(filled.limits.max_sessions_per_ip, Some(180));
    assert_eq!(
        filled.limits.max_unauthenticated_per_ip,
        Some(4),
        "given value kept"
    );
    let bad = minimal("", "").replace(
        "      ports: \"50000-50099\"\n",
        "      ports: \"50000-50099\"\n      max_per_client: \"0%\"\n",
    );
    let errors = Config::from_yaml_str(&bad, dir.path()).unwrap_err();
    assert!(
        errors.0[0].path.ends_with("passive.max_per_client"),
        "{errors}"
    );
}
