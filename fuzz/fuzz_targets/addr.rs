//! Data addresses: `parse_227`/`parse_229` on any backend reply (as framed and
//! assembled from bytes), `parse_port_arg`/`parse_eprt_arg` on any argument.
//! Whenever one succeeds, rendering the value and parsing it again gives the
//! same value, port 0 never comes out, and `check_active_target` holds its
//! rules (own address and port >= 1024 only) without panicking.
//!
//! Input: byte 0 = mode, bytes 1..17 = control peer (IPv6 octets), rest = text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ftpsgate::control::{
    check_active_target, is_inside, parse_227, parse_229, parse_eprt_arg, parse_port_arg,
    render_227, render_229, render_eprt_arg, render_port_arg, ActiveRefusal, Reply,
};
use ftpsgate_fuzz::{assert_reparses, replies, take_byte};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mode = take_byte(&mut data);
    let mut octets = [0u8; 16];
    for o in &mut octets {
        *o = take_byte(&mut data);
    }
    let peer = peer_ip(mode, octets);
    match mode % 4 {
        0 => {
            // A 227 reply: the fuzzer writes the text, the code is fixed so
            // the search for the tuple is what gets exercised.
            for reply in with_code(227, data) {
                if let Ok(addr) = parse_227(&reply) {
                    assert_ne!(addr.port(), 0);
                    let ours = render_227(addr);
                    assert_reparses(&ours);
                    assert_eq!(parse_227(&ours), Ok(addr));
                    active(peer, SocketAddr::V4(addr));
                }
            }
        }
        1 => {
            for reply in with_code(229, data) {
                if let Ok(port) = parse_229(&reply) {
                    assert_ne!(port, 0);
                    let ours = render_229(port);
                    assert_reparses(&ours);
                    assert_eq!(parse_229(&ours), Ok(port));
                }
            }
        }
        2 => {
            if let Ok(addr) = parse_port_arg(data) {
                assert_ne!(addr.port(), 0);
                assert_eq!(parse_port_arg(render_port_arg(addr).as_bytes()), Ok(addr));
                active(peer, SocketAddr::V4(addr));
            }
        }
        _ => {
            if let Ok(addr) = parse_eprt_arg(data) {
                assert_ne!(addr.port(), 0);
                assert_eq!(parse_eprt_arg(render_eprt_arg(addr).as_bytes()), Ok(addr));
                active(peer, addr);
            }
        }
    }
    // Any reply at all (wrong code included) must not panic either.
    for reply in replies(data) {
        let _ = parse_227(&reply);
        let _ = parse_229(&reply);
    }
});

/// Replies framed from `text` with every first line given `code`, so the
/// fuzzer does not spend its time finding the digits.
fn with_code(code: u16, text: &[u8]) -> Vec<Reply> {
    let mut wire = format!("{code}").into_bytes();
    wire.extend_from_slice(text);
    replies(&wire)
}

/// IPv4 (also as IPv4-mapped IPv6) or IPv6, from the peer bytes.
fn peer_ip(mode: u8, o: [u8; 16]) -> IpAddr {
    match (mode >> 2) % 3 {
        0 => IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])),
        1 => IpAddr::V6(Ipv4Addr::new(o[0], o[1], o[2], o[3]).to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::from(o)),
    }
}

/// RFC 2577 §3 as the checker must apply it, for a peer from the input and
/// for the target's own address (in both IPv4 spellings).
fn active(peer: IpAddr, target: SocketAddr) {
    check(peer, target);
    check(target.ip(), target);
    if let IpAddr::V4(v4) = target.ip() {
        check(IpAddr::V6(v4.to_ipv6_mapped()), target);
    }
}

fn check(peer: IpAddr, target: SocketAddr) {
    let result = check_active_target(peer, target);
    let same = peer.to_canonical() == target.ip().to_canonical();
    let expected = if !same {
        if is_inside(target.ip()) && !is_inside(peer) {
            Err(ActiveRefusal::BehindNat)
        } else {
            Err(ActiveRefusal::ForeignAddress)
        }
    } else if target.port() < 1024 {
        Err(ActiveRefusal::PrivilegedPort)
    } else {
        Ok(())
    };
    assert_eq!(result, expected, "peer {peer}, target {target}");
    if let Err(refusal) = result {
        let (code, text) = refusal.reply();
        assert_eq!(code, 500);
        assert!(!text.is_empty() && !refusal.as_str().is_empty());
    }
}
