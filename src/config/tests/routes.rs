//! `access`, `limits`, `routes`, `sni`, `shutdown`, `reload` as one policy file
//! (`build/routes.rs` and `build/limits.rs`), and the warnings about routes.

use std::time::Duration;

use super::*;

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
            ipv6_prefix: 64,
            unsolicited_replies: None,
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
            cert_identity: None,
            backends: vec!["srv-a".into()],
            balance: Balance::LeastConnections,
            commands: CommandPolicy::Deny(vec!["STOR".into(), "APPE".into()]),
            auth: crate::config::RouteAuth::Backend,
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
fn cert_identity_routes_parse_shadow_only_their_own_and_need_client_auth() {
    let dir = dir_with(&[]);
    let routes = "    routes:
      - { user: \"*\", cert_identity: \"*@ops.example.org\", backends: [legacy] }
      - { user: alice, backends: [legacy] }
      - { user: bob, cert_identity: \"eve@ops.example.org\", backends: [legacy] }
";
    let yaml = minimal("", "").replace(
        "    backend: legacy\n",
        &format!("    backend: legacy\n{routes}"),
    );
    let config = parse_ok(&yaml, dir.path());
    let l = &config.listeners[0];
    assert_eq!(
        l.routes[0].cert_identity.as_deref(),
        Some("*@ops.example.org")
    );
    assert_eq!(l.routes[1].cert_identity, None);
    let w: Vec<String> = config
        .warnings()
        .into_iter()
        .filter(|w| w.contains("routes"))
        .collect();
    assert_eq!(
        w,
        [
            "listeners[0].routes[0].cert_identity: never matches: listener \"edge\" has no tls.client_auth",
            "listeners[0].routes[2].cert_identity: never matches: listener \"edge\" has no tls.client_auth",
            "listeners[0].routes[2].user: \"bob\" is never used: every name it matches is matched by routes[0] (\"*\") first",
        ]
    );
}
