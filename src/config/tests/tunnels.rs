//! `tunnels[]`, `connect[]` and `backends[].via` (`build/tunnels.rs`): DMZ mode.

use super::*;

fn tunnel_files() -> tempfile::TempDir {
    dir_with(&["t/edge.pem", "t/edge.key", "t/ca.pem"])
}

const EDGE: &str = "tunnels:
  - name: lan
    listen: \"127.0.0.1:4433\"
    tls:
      cert: t/edge.pem
      key: t/edge.key
      client_ca: t/ca.pem
";

const CONNECTOR: &str = "connect:
  - edge: \"dmz.example:4433\"
    tls:
      cert: t/edge.pem
      key: t/edge.key
      ca: t/ca.pem
    backends:
      - name: legacy
        address: \"10.0.0.5:21\"
";

#[test]
fn edge_with_via_backend() {
    let dir = tunnel_files();
    let yaml =
        minimal("", "    via: lan\n").replace("    address: \"127.0.0.1:2120\"\n", "") + EDGE;
    let c = parse_ok(&yaml, dir.path());
    assert_eq!(c.backends[0].via.as_deref(), Some("lan"));
    // Without an address the name stands in (TLS server name default).
    assert_eq!(c.backends[0].host, "legacy");
    assert_eq!(c.tunnels.len(), 1);
    let t = &c.tunnels[0];
    assert_eq!(t.name, "lan");
    assert_eq!(t.listen, "127.0.0.1:4433".parse().unwrap());
    assert_eq!(t.tls.client_ca, dir.path().join("t/ca.pem"));
    // `via` beside `address` is allowed too.
    let yaml = minimal("", "    via: lan\n") + EDGE;
    assert_eq!(parse_ok(&yaml, dir.path()).backends[0].port, 2120);
}

#[test]
fn connector_only_policy_needs_no_listener() {
    let dir = tunnel_files();
    let c = parse_ok(CONNECTOR, dir.path());
    assert!(c.listeners.is_empty());
    let k = &c.connect[0];
    assert_eq!((k.edge_host.as_str(), k.edge_port), ("dmz.example", 4433));
    assert_eq!(k.server_name, "dmz.example");
    assert_eq!(k.backends[0].name, "legacy");
    assert_eq!(
        (k.backends[0].host.as_str(), k.backends[0].port),
        ("10.0.0.5", 21)
    );
    let named = CONNECTOR.replace("    tls:\n", "    server_name: edge.internal\n    tls:\n");
    assert_eq!(
        parse_ok(&named, dir.path()).connect[0].server_name,
        "edge.internal"
    );
}

#[test]
fn tunnel_errors_name_their_key() {
    let dir = tunnel_files();
    // `via` names no tunnel; active toward a tunnelled backend.
    let yaml = minimal("", "    via: wan\n") + EDGE;
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].via: \"wan\" is not a tunnel name (see tunnels[].name)"]
    );
    let yaml = minimal("", "    via: lan\n    data_mode: active\n") + EDGE;
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].data_mode: must be passive for a backend reached through a tunnel (via)"]
    );
    // Missing and misplaced keys.
    let yaml = EDGE.replace("      client_ca: t/ca.pem\n", "      ca: t/ca.pem\n");
    let yaml = minimal("", "") + &yaml;
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "<yaml>:18:7: unknown field `ca`, expected one of cert, key, client_ca",
            "tunnels[0].tls.client_ca: is required",
        ]
    );
    let yaml = CONNECTOR
        .replace("\"dmz.example:4433\"", "\"dmz.example\"")
        .replace(
            "      - name: legacy\n        address: \"10.0.0.5:21\"\n",
            "      - name: legacy\n      - name: legacy\n        address: \"10.0.0.6:21\"\n",
        );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "connect[0].edge: \"dmz.example\" is not host:port",
            "connect[0].backends[0].address: is required",
            "connect[0].backends[1].name: duplicate backend name \"legacy\"",
        ]
    );
    let yaml = CONNECTOR.replace("t/ca.pem", "t/missing.pem");
    let e = errors(&yaml, dir.path());
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("connect[0].tls.ca: "), "{e:?}");
    // Neither listeners nor connect.
    assert_eq!(
        errors(EDGE, dir.path()),
        ["listeners: at least one listener is required (or `connect` for a connector)"]
    );
}

#[test]
fn tunnel_errors_have_lines() {
    let dir = tunnel_files();
    let yaml = CONNECTOR.replace("\"10.0.0.5:21\"", "\"10.0.0.5\"");
    match Config::from_yaml_str(&yaml, dir.path()) {
        Err(ConfigErrors(list)) => {
            assert_eq!(list[0].path, "connect[0].backends[0].address");
            assert_eq!(list[0].line, Some(9), "{list:?}");
        }
        Ok(c) => panic!("expected an error, got {c:?}"),
    }
}

#[test]
fn unknown_tunnel_keys_are_reported() {
    let dir = tunnel_files();
    let yaml = CONNECTOR.replace("    backends:\n", "    backend: x\n    backends:\n");
    let e = errors(&yaml, dir.path());
    assert_eq!(
        e,
        ["<yaml>:7:5: unknown field `backend`, did you mean `backends`?"]
    );
}

#[test]
fn print_keeps_both_roles_with_absolute_paths_and_reloads_the_same() {
    let dir = tunnel_files();
    let yaml = minimal("", "    via: lan\n") + EDGE + CONNECTOR;
    let path = dir.path().join("ftpsgate.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let printed = Config::resolved_yaml(&path).unwrap();
    let abs = dir.path().join("t/ca.pem").display().to_string();
    assert!(printed.contains(&format!("client_ca: {abs}")), "{printed}");
    assert!(printed.contains(&format!("ca: {abs}")), "{printed}");
    assert!(printed.contains("via: lan"), "{printed}");
    let elsewhere = tempfile::tempdir().unwrap();
    let reread = parse_ok(&printed, elsewhere.path());
    let original = parse_ok(&yaml, dir.path());
    assert_eq!(reread.tunnels, original.tunnels);
    assert_eq!(reread.connect, original.connect);
    assert_eq!(reread.backends, original.backends);
}

#[test]
fn transport_defaults_to_h2_and_takes_quic() {
    let dir = tunnel_files();
    let c = parse_ok(CONNECTOR, dir.path());
    assert_eq!(c.connect[0].transport, Transport::H2);
    let edge = minimal("", "    via: lan\n") + EDGE;
    assert_eq!(
        parse_ok(&edge, dir.path()).tunnels[0].transport,
        Transport::H2
    );
    let yaml = CONNECTOR.replace("    tls:", "    transport: quic\n    tls:");
    assert_eq!(
        parse_ok(&yaml, dir.path()).connect[0].transport,
        Transport::Quic
    );
    let yaml =
        minimal("", "    via: lan\n") + &EDGE.replace("    tls:", "    transport: quic\n    tls:");
    let c = parse_ok(&yaml, dir.path());
    assert_eq!(c.tunnels[0].transport, Transport::Quic);
    let yaml = CONNECTOR.replace("    tls:", "    transport: tcp\n    tls:");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["connect[0].transport: \"tcp\" is not a tunnel transport (expected quic or h2)"]
    );
}
