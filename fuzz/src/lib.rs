//! Helpers shared by the fuzz targets: the same framing path the session
//! shell uses (bytes → `LineFramer` → `ReplyAssembler`), so targets feed the
//! pure control code only inputs it can really receive.

use ftpsgate::control::{Framed, LineFramer, Reply, ReplyAssembler, MAX_LINE};

/// Every complete reply in `bytes`, framed with the production bound. Lines
/// that are too long or do not start a reply are skipped, as the session would
/// fail or `500` them; the assembler carries on after an error.
pub fn replies(bytes: &[u8]) -> Vec<Reply> {
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(bytes);
    let mut assembler = ReplyAssembler::new();
    let mut out = Vec::new();
    while let Some(item) = framer.next_line() {
        if let Framed::Line(line) = item {
            if let Ok(Some(reply)) = assembler.push_line(line) {
                out.push(reply);
            }
        }
    }
    out
}

/// Parses the wire form of `reply` back; panics unless it is exactly one reply
/// equal to `reply`, with nothing left over.
pub fn assert_reparses(reply: &Reply) {
    let wire = reply.to_bytes();
    let mut framer = LineFramer::new(MAX_LINE.max(wire.len()));
    framer.push(&wire);
    let mut assembler = ReplyAssembler::new();
    let mut got = Vec::new();
    while let Some(item) = framer.next_line() {
        let Framed::Line(line) = item else {
            panic!("reply line too long on re-parse: {reply:?}");
        };
        match assembler.push_line(line) {
            Ok(Some(r)) => got.push(r),
            Ok(None) => {}
            Err(e) => panic!("reply does not re-parse ({e}): {reply:?}"),
        }
    }
    assert_eq!(framer.buffered(), 0, "wire form not CRLF-terminated");
    assert!(
        !assembler.in_progress(),
        "reply re-parses as unfinished: {reply:?}"
    );
    assert_eq!(
        got.as_slice(),
        std::slice::from_ref(reply),
        "reply changed on re-parse"
    );
}

/// Reads a `u8` from the front of `data`, or 0 when empty.
pub fn take_byte(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&b, rest)) => {
            *data = rest;
            b
        }
        None => 0,
    }
}

/// A directory for `Config::from_yaml_str`, made once per process, holding the
/// files a config may name: `cert.pem`, `key.pem`, `ca.pem` (contents are not
/// read by the config layer, only their existence), includes `inc.yaml`,
/// `nested.yaml` (includes `inc.yaml`), `self.yaml` (a cycle), and `logs/`.
pub fn config_dir() -> &'static std::path::Path {
    use std::sync::OnceLock;
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("fuzz temp dir");
        let files: &[(&str, &str)] = &[
            ("cert.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
            ("key.pem", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
            ("ca.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
            (
                "inc.yaml",
                "backends:\n  - name: inc\n    address: \"127.0.0.1:2121\"\naccess:\n  - deny: [\"10.0.0.0/8\"]\n",
            ),
            ("nested.yaml", "include: [inc.yaml]\n"),
            ("self.yaml", "include: [self.yaml]\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("fuzz fixture");
        }
        std::fs::create_dir(dir.path().join("logs")).expect("fuzz fixture dir");
        dir
    })
    .path()
}

/// Invariants of a parsed config (whatever the input was) and of its errors.
pub fn check_config(result: &Result<ftpsgate::config::Config, ftpsgate::config::ConfigErrors>) {
    match result {
        Ok(config) => {
            assert!(!config.listeners.is_empty(), "a config has a listener");
            for (i, l) in config.listeners.iter().enumerate() {
                assert!(
                    config.backend(&l.backend).is_some(),
                    "listener backend resolves"
                );
                for r in &l.routes {
                    assert!(!r.backends.is_empty());
                    for b in &r.backends {
                        assert!(config.backend(b).is_some(), "route backend {b} resolves");
                    }
                }
                assert!(l.passive.ports.first <= l.passive.ports.last);
                assert!(l.passive.ports.first >= 1);
                assert!(
                    config.listeners[..i].iter().all(|o| o.name != l.name),
                    "duplicate listener"
                );
                assert!(config.listener(&l.name).is_some());
                for rule in l.access.iter().chain(&config.access) {
                    assert!(!rule.networks.is_empty());
                }
            }
            for (i, b) in config.backends.iter().enumerate() {
                assert!(
                    config.backends[..i].iter().all(|o| o.name != b.name),
                    "duplicate backend"
                );
                assert_ne!(b.port, 0);
                assert!(b.tls.min_version <= b.tls.max_version);
            }
            for t in [
                config.timeouts.connect,
                config.timeouts.login,
                config.timeouts.idle,
                config.timeouts.pinhole,
                config.timeouts.data_idle,
            ] {
                assert!(!t.is_zero(), "zero timeout accepted");
            }
            for w in config.warnings() {
                assert!(!w.is_empty());
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error result with no error");
            for e in &errors.0 {
                assert!(!e.path.is_empty(), "error without a location: {e:?}");
                assert!(!e.message.is_empty(), "error without a message: {e:?}");
            }
            assert!(!errors.to_string().is_empty());
        }
    }
}
