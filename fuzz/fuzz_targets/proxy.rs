//! `proxy::parse` on any bytes (PROXY protocol v1 text and v2 binary headers):
//! never panics, and whenever it yields both addresses, the same header written
//! out again as v1 and as v2 parses back to the same `Proxied`.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use ftpsgate::proxy::parse;
use libfuzzer_sys::fuzz_target;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fuzz_target!(|header: &[u8]| {
    let Ok(proxied) = parse(header) else { return };
    let (Some(source), Some(destination)) = (proxied.source, proxied.destination) else {
        assert_eq!(
            proxied.source, proxied.destination,
            "one address without the other"
        );
        return;
    };
    assert_eq!(source.is_ipv4(), destination.is_ipv4(), "mixed families");
    let v1 = render_v1(source, destination);
    assert_eq!(parse(v1.as_bytes()).ok(), Some(proxied), "v1 {v1:?}");
    let v2 = render_v2(source, destination);
    assert_eq!(parse(&v2).ok(), Some(proxied), "v2 {v2:?}");
});

fn render_v1(src: SocketAddr, dst: SocketAddr) -> String {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
}

fn render_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    // Version 2, command PROXY.
    out.push(0x21);
    let mut addrs = Vec::new();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // TCP over IPv4
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21); // TCP over IPv6
            addrs.extend_from_slice(&v6(s));
            addrs.extend_from_slice(&v6(d));
        }
    }
    addrs.extend_from_slice(&src.port().to_be_bytes());
    addrs.extend_from_slice(&dst.port().to_be_bytes());
    let len = u16::try_from(addrs.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&addrs);
    out
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
