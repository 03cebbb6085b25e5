//! `gateway_feat` on any backend `FEAT` answer (as framed and assembled from
//! backend bytes; also none at all): never panics, and its output is always one
//! well-formed `211` multi-line reply that re-parses to itself, lists each
//! feature once (case-insensitively), every feature line starts with one space,
//! the gateway's own features appear exactly as the options say, and every other
//! backend feature is kept.
//!
//! Input: byte 0 = options (bits 0-2) and whether to use the backend reply
//! (bit 3 off) or none; rest = backend bytes after a forced `211` code.
#![no_main]

use ftpsgate::control::{gateway_feat, FeatOptions, Reply};
use ftpsgate_fuzz::{assert_reparses, replies, take_byte};
use libfuzzer_sys::fuzz_target;

/// First words the gateway answers itself (feat.rs `GATEWAY_FEATURES`).
const GATEWAY: &[&str] = &[
    "AUTH", "PBSZ", "PROT", "CCC", "ADAT", "CONF", "ENC", "MIC", "EPSV", "EPRT", "HOST",
];

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let flags = take_byte(&mut data);
    let opts = FeatOptions {
        tls_offered: flags & 1 != 0,
        epsv: flags & 2 != 0,
        active: flags & 4 != 0,
    };
    let mut backend: Vec<Reply> = if flags & 0x10 == 0 {
        let mut wire = b"211".to_vec();
        wire.extend_from_slice(data);
        replies(&wire)
    } else {
        replies(data)
    };
    if flags & 8 != 0 {
        backend.clear();
    }
    if backend.is_empty() {
        check(None, &opts);
    }
    for reply in &backend {
        check(Some(reply), &opts);
    }
});

fn check(backend: Option<&Reply>, opts: &FeatOptions) {
    let out = gateway_feat(backend, opts);
    assert_eq!(out.code, 211);
    assert!(out.lines.len() >= 2, "FEAT must be multi-line: {out:?}");
    assert_eq!(
        out.lines.first().map(Vec::as_slice),
        Some(&b"211-Features:"[..])
    );
    assert_eq!(out.lines.last().map(Vec::as_slice), Some(&b"211 End"[..]));
    assert_reparses(&out);

    let features: Vec<&[u8]> = out.lines[1..out.lines.len() - 1]
        .iter()
        .map(|line| {
            assert_eq!(line.first(), Some(&b' '), "feature line without its space");
            let feature = &line[1..];
            assert!(!feature.is_empty());
            assert!(!feature[0].is_ascii_whitespace());
            feature
        })
        .collect();
    for (i, a) in features.iter().enumerate() {
        for b in &features[..i] {
            assert!(!a.eq_ignore_ascii_case(b), "duplicate feature {a:?}");
        }
    }

    let mut own: Vec<&[u8]> = Vec::new();
    if opts.tls_offered {
        own.extend([&b"AUTH TLS"[..], b"AUTH SSL", b"PBSZ", b"PROT"]);
    }
    if opts.epsv {
        own.push(b"EPSV");
    }
    if opts.active {
        own.push(b"EPRT");
    }
    // The gateway's features come first, in this order, then the backend's.
    assert_eq!(&features[..own.len()], own.as_slice());
    for feature in &features[own.len()..] {
        assert!(!is_gateway(feature), "backend's {feature:?} passed through");
    }

    // Every backend feature the gateway does not own survives.
    if let Some(reply) = backend.filter(|r| r.code == 211) {
        let inner = reply
            .lines
            .get(1..reply.lines.len().saturating_sub(1))
            .unwrap_or_default();
        for line in inner {
            let start = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(line.len());
            let feature = &line[start..];
            if feature.is_empty() || is_gateway(feature) {
                continue;
            }
            assert!(
                features.iter().any(|f| f.eq_ignore_ascii_case(feature)),
                "backend feature {feature:?} lost"
            );
        }
    } else {
        assert_eq!(features.len(), own.len());
    }
}

fn is_gateway(feature: &[u8]) -> bool {
    let word = feature
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    GATEWAY
        .iter()
        .any(|g| g.as_bytes().eq_ignore_ascii_case(word))
}
