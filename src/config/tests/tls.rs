//! Listener and backend `tls` (`build/tls.rs`): certs and keys, versions, pins, CA
//! and `verify: false`, SNI.

use super::*;

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
fn tls_versions_are_ordered() {
    assert!(TlsVersion::Tls12 < TlsVersion::Tls13);
    assert_eq!(TlsVersion::Tls13.to_string(), "1.3");
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
fn data_reuse_scope_defaults_to_user_and_is_checked() {
    let dir = certs();
    let listener = |extra: &str| {
        format!(
            r#"
listeners:
  - name: edge
    bind: "127.0.0.1:990"
    tls: {{ mode: implicit, cert: certs/gateway.pem, key: certs/gateway.key{extra} }}
    passive: {{ ports: "50000" }}
    backend: legacy
backends:
  - name: legacy
    address: "ftp.internal:21"
"#
        )
    };
    let config = parse_ok(&listener(""), dir.path());
    assert_eq!(config.listeners[0].tls.data_reuse_scope, ReuseScope::User);
    let config = parse_ok(&listener(", data_reuse_scope: session"), dir.path());
    assert_eq!(
        config.listeners[0].tls.data_reuse_scope,
        ReuseScope::Session
    );
    assert_eq!(
        errors(&listener(", data_reuse_scope: everyone"), dir.path()),
        ["listeners[0].tls.data_reuse_scope: \"everyone\" is not a reuse scope (expected user or session)"]
    );
    let none = minimal("", "").replace("mode: none", "mode: none\n      data_reuse_scope: user");
    assert_eq!(
        errors(&none, dir.path()),
        ["listeners[0].tls.data_reuse_scope: only allowed when mode is explicit or implicit"]
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
fn prefer_aes128_is_off_by_default_and_needs_tls() {
    let dir = certs();
    assert!(!parse_ok(EXAMPLE, dir.path()).listeners[0].tls.prefer_aes128);
    let yaml = EXAMPLE.replace(
        "      require: true\n",
        "      require: true\n      prefer_aes128: true\n",
    );
    assert!(parse_ok(&yaml, dir.path()).listeners[0].tls.prefer_aes128);
    let yaml = minimal("", "").replace("mode: none", "mode: none\n      prefer_aes128: true");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].tls.prefer_aes128: only allowed when mode is explicit or implicit"]
    );
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

/// `EXAMPLE` with `tls.client_auth` lines (indented under the listener's `tls`).
fn with_client_auth(lines: &str) -> String {
    EXAMPLE.replace(
        "      min_version: \"1.2\"\n    passive:",
        &format!("      min_version: \"1.2\"\n      client_auth:\n{lines}    passive:"),
    )
}

fn client_auth_dir() -> tempfile::TempDir {
    dir_with(&[
        "certs/gateway.pem",
        "certs/gateway.key",
        "certs/backend-ca.pem",
        "certs/client-ca.pem",
        "certs/client.crl",
    ])
}

#[test]
fn client_auth_defaults_and_full_form() {
    let dir = client_auth_dir();
    let config = parse_ok(
        &with_client_auth("        ca: certs/client-ca.pem\n"),
        dir.path(),
    );
    assert_eq!(
        config.listeners[0].tls.client_auth,
        Some(ClientAuth {
            ca: dir.path().join("certs/client-ca.pem"),
            mode: ClientAuthMode::Required,
            crl: vec![],
            identity: CertIdentity::Cn,
            require_user_match: false,
        })
    );
    let config = parse_ok(
        &with_client_auth(
            "        ca: certs/client-ca.pem\n        mode: optional\n        crl: [certs/client.crl]\n        identity: san_email\n        require_user_match: true\n",
        ),
        dir.path(),
    );
    let ca = config.listeners[0].tls.client_auth.as_ref().unwrap();
    assert_eq!(ca.mode, ClientAuthMode::Optional);
    assert_eq!(ca.crl, vec![dir.path().join("certs/client.crl")]);
    assert_eq!(ca.identity, CertIdentity::SanEmail);
    assert!(ca.require_user_match);
}

#[test]
fn client_auth_errors_name_their_key() {
    let dir = client_auth_dir();
    let yaml = with_client_auth(
        "        mode: requierd\n        identity: uid\n        crl: [certs/none.crl]\n        require_user_match: maybe\n",
    );
    let got = errors(&yaml, dir.path());
    for want in [
        "listeners[0].tls.client_auth.ca: is required",
        "listeners[0].tls.client_auth.mode: \"requierd\" is not a client_auth mode (expected required or optional)",
        "listeners[0].tls.client_auth.identity: \"uid\" is not a certificate identity (expected cn, san_email or san_dns)",
        "listeners[0].tls.client_auth.crl[0]: file certs/none.crl does not exist",
    ] {
        assert!(got.iter().any(|e| e == want), "{want} not in {got:#?}");
    }
    assert!(
        got.iter()
            .any(|e| e.starts_with("listeners[0].tls.client_auth.require_user_match: ")),
        "{got:#?}"
    );
}

#[test]
fn client_auth_and_backend_client_cert_need_tls() {
    let dir = client_auth_dir();
    let yaml = minimal("", "").replace(
        "      mode: none\n",
        "      mode: none\n      client_auth: { ca: certs/client-ca.pem }\n",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].tls.client_auth: only allowed when mode is explicit or implicit"]
    );
    let yaml = minimal(
        "",
        "    tls: { mode: none, cert: certs/gateway.pem, key: certs/gateway.key }\n",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].tls.cert: only allowed when mode is explicit or implicit",
            "backends[0].tls.key: only allowed when mode is explicit or implicit"
        ]
    );
}

#[test]
fn backend_client_cert_needs_both_files() {
    let dir = client_auth_dir();
    let config = parse_ok(
        &EXAMPLE.replace(
            "      data_protection: private\n",
            "      data_protection: private\n      cert: certs/gateway.pem\n      key: certs/gateway.key\n",
        ),
        dir.path(),
    );
    assert_eq!(
        config.backends[0].tls.client_cert,
        Some(ClientCert {
            cert: dir.path().join("certs/gateway.pem"),
            key: dir.path().join("certs/gateway.key"),
        })
    );
    let yaml = EXAMPLE.replace(
        "      data_protection: private\n",
        "      data_protection: private\n      cert: certs/gateway.pem\n",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        ["backends[0].tls.key: is required with cert"]
    );
}

/// `check`: an unusable CA or CRL is reported at its own key and line.
#[test]
fn check_reports_a_bad_ca_and_a_bad_crl_at_their_lines() {
    let dir = client_auth_dir();
    std::fs::write(
        dir.path().join("certs/client-ca.pem"),
        "not a certificate\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("certs/client.crl"), "garbage").unwrap();
    let yaml =
        with_client_auth("        ca: certs/client-ca.pem\n        crl: [certs/client.crl]\n");
    let path = dir.path().join("ftpsgate.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let (loaded, sections) = Config::load_for_check(&path);
    assert!(loaded.is_ok());
    let errs = crate::tls::check_sections(&sections);
    let line_of = |needle: &str| {
        yaml.lines()
            .position(|l| l.contains(needle))
            .map(|i| i as u64 + 1)
    };
    let ca = errs
        .iter()
        .find(|e| e.path == "listeners[0].tls.client_auth.ca")
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert_eq!(ca.line, line_of("ca: certs/client-ca.pem"), "{errs:#?}");
    assert!(ca.message.contains("client-ca.pem"), "{}", ca.message);
    // The CA is unusable: nothing to check the CRL against, only its format.
    let crl = errs
        .iter()
        .find(|e| e.path == "listeners[0].tls.client_auth.crl[0]")
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert_eq!(crl.line, line_of("crl: [certs/client.crl]"), "{errs:#?}");
    assert!(crl.message.contains("CRL"), "{}", crl.message);
    // Reported once, at the files' keys, not again at the section (the
    // section's own error is about the empty dummy certificate).
    let about_client_ca = errs
        .iter()
        .filter(|e| e.message.contains("client-ca.pem") || e.message.contains("client.crl"))
        .count();
    assert_eq!(about_client_ca, 2, "{errs:#?}");
}

#[test]
fn client_auth_required_needs_tls_before_login() {
    let dir = client_auth_dir();
    let yaml = with_client_auth("        ca: certs/client-ca.pem\n")
        .replace("      require: true\n", "      require: false\n");
    assert_eq!(
        errors(&yaml, dir.path()),
        ["listeners[0].tls.require: must be true with client_auth mode required (a login without AUTH TLS would skip the certificate)"]
    );
    // Optional certificates: a clear login is the operator's choice.
    let yaml = with_client_auth("        ca: certs/client-ca.pem\n        mode: optional\n")
        .replace("      require: true\n", "      require: false\n");
    assert!(!parse_ok(&yaml, dir.path()).listeners[0].tls.require);
}
