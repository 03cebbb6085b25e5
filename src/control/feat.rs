//! Rewrites the backend's `FEAT` reply (RFC 2389 §3.2) so that it lists
//! what the gateway offers, not what the backend offers: the security and
//! data-address features are the gateway's own (RFC 4217 §6), everything
//! else is the backend's and passes through verbatim.
//!
//! This module must not invent features the gateway cannot relay and must
//! not do I/O; which features to add is decided by the caller via
//! [`FeatOptions`].

use super::reply::Reply;

/// What the gateway itself offers on this listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatOptions {
    /// Explicit TLS on the client side (`AUTH TLS`, `PBSZ`, `PROT`).
    pub tls_offered: bool,
    /// Extended passive mode toward the client (RFC 2428 §3).
    pub epsv: bool,
    /// Active mode toward the client, advertised as `EPRT` (RFC 2428 §2).
    pub active: bool,
}

/// Features the gateway terminates or emulates itself, matched on the
/// first word. The RFC 2228 security verbs belong to the client leg's TLS;
/// EPSV/EPRT are answered by the gateway's own pinholes; HOST (RFC 7151)
/// would be routed by the gateway, never by the backend.
const GATEWAY_FEATURES: &[&[u8]] = &[
    b"AUTH", b"PBSZ", b"PROT", b"CCC", b"ADAT", b"CONF", b"ENC", b"MIC", b"EPSV", b"EPRT", b"HOST",
];

/// The `211` reply the gateway sends for `FEAT`. `backend` is the backend's
/// answer, if any; anything but a `211` (old servers answer `500`/`502`)
/// contributes no features.
pub fn gateway_feat(backend: Option<&Reply>, opts: &FeatOptions) -> Reply {
    let mut features: Vec<Vec<u8>> = Vec::new();
    let mut add = |feature: &[u8]| {
        if !features
            .iter()
            .any(|known| known.eq_ignore_ascii_case(feature))
        {
            features.push(feature.to_vec());
        }
    };

    if opts.tls_offered {
        for feature in [&b"AUTH TLS"[..], b"AUTH SSL", b"PBSZ", b"PROT"] {
            add(feature);
        }
    }
    if opts.epsv {
        add(b"EPSV");
    }
    if opts.active {
        add(b"EPRT");
    }
    for feature in backend_features(backend) {
        if !is_gateway_feature(feature) {
            add(feature);
        }
    }

    let mut lines = Vec::with_capacity(features.len() + 2);
    lines.push(b"211-Features:".to_vec());
    // RFC 2389 §3.2: each feature line starts with a single space.
    lines.extend(features.into_iter().map(|feature| {
        let mut line = Vec::with_capacity(feature.len() + 1);
        line.push(b' ');
        line.extend_from_slice(&feature);
        line
    }));
    lines.push(b"211 End".to_vec());
    Reply { code: 211, lines }
}

/// Lines strictly between the first and the last of a `211` reply, with
/// leading whitespace removed (RFC 2389 §3.2 allows servers some slack
/// there) and empty lines dropped.
fn backend_features(backend: Option<&Reply>) -> Vec<&[u8]> {
    let Some(reply) = backend.filter(|reply| reply.code == 211) else {
        return Vec::new();
    };
    let inner = reply
        .lines
        .get(1..reply.lines.len().saturating_sub(1))
        .unwrap_or_default();
    inner
        .iter()
        .map(|line| trim_start(line))
        .filter(|line| !line.is_empty())
        .collect()
}

fn is_gateway_feature(feature: &[u8]) -> bool {
    let first_word = feature
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    GATEWAY_FEATURES
        .iter()
        .any(|known| known.eq_ignore_ascii_case(first_word))
}

fn trim_start(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    line.get(start..).unwrap_or_default()
}
