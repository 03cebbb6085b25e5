//! `backends[]` (`build/backends.rs`): address forms and `send_proxy`. Backend TLS is
//! in `tls.rs`, `health_check` with the observability sections in `limits.rs`.

use super::*;

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
