//! Loading as a whole: the full example, file loading and path resolution, syntax
//! errors, reporting every error at once, warnings, line numbers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

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
                data_reuse_scope: crate::config::ReuseScope::User,
                min_version: TlsVersion::Tls12,
                max_version: TlsVersion::Tls13,
                allow_ccc: false,
                // Default since issue 17 (item 13): clear data only when enabled.
                allow_clear_data: false,
                prefer_aes128: false,
                sni: vec![],
                client_auth: None,
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
            banner: DEFAULT_BANNER.into(),
            unavailable: DEFAULT_UNAVAILABLE.into(),
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
                client_cert: None,
            },
            health_check: None,
            data_mode: DataMode::Passive,
            keepalive_noop: None,
            send_proxy: None,
            via: None,
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
        control: None,
        auth: Vec::new(),
        tunnels: vec![],
        connect: vec![],
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
fn at_least_one_listener() {
    let dir = dir_with(&[]);
    for yaml in [
        "",
        "listeners: []\n",
        "backends:\n  - name: b\n    address: h:21\n",
    ] {
        assert_eq!(
            errors(yaml, dir.path()),
            ["listeners: at least one listener is required (or `connect` for a connector)"],
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
            column: e.0[0].column,
            key: None,
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
            column: None,
            key: None,
            message: "x".into(),
        },
        ConfigError {
            path: "b[0].c".into(),
            line: Some(7),
            column: Some(3),
            key: None,
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
fn shipped_example_policy_has_documented_defaults() {
    let config = load_shipped("example.yaml");
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.reload, Reload::default());
    assert_eq!(config.limits, Limits::default());
    assert!(config.access.is_empty());
    assert_eq!(config.sources.len(), 1);
    assert!(config.sources[0].is_absolute());
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
