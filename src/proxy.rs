//! PROXY protocol v1 and v2 (HAProxy's spec) on listeners behind a load
//! balancer: the header's source address becomes the client address for
//! everything (policy, pinhole binding, active-mode checks, logs, metrics).
//!
//! The header is read byte-exactly — never past its end — so whatever the
//! client sent next (an implicit-TLS ClientHello) stays in the socket for the
//! session. Parsing uses the `ppp` crate.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyVersion;

/// The addresses a PROXY header carried. `None` for `LOCAL` (v2, e.g. a load
/// balancer's health check) and `UNKNOWN` (v1): the connection is the
/// balancer's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// The client's address.
    pub source: Option<SocketAddr>,
    /// The address the client connected to.
    pub destination: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
/// Why a PROXY header could not be read; the connection is closed.
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    /// The header did not arrive in time.
    Timeout(Duration),
    #[error("reading PROXY header: {0}")]
    /// The connection failed while reading.
    Io(#[from] io::Error),
    #[error("malformed PROXY header: {0}")]
    /// Not a valid v1 or v2 header.
    Malformed(String),
}

/// v2 signature (12 bytes) and the first 6 bytes of a v1 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// v1 headers are at most 107 bytes (spec §2.1).
const V1_MAX: usize = 107;
/// Bound on v2 TLVs we accept (the spec allows 64 KiB; balancers send little).
const V2_MAX_PAYLOAD: usize = 4096;

/// Read one PROXY header from the start of `tcp`.
pub async fn read_header(tcp: &mut TcpStream, limit: Duration) -> Result<Proxied, ProxyError> {
    match tokio::time::timeout(limit, read_inner(tcp)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout(limit)),
    }
}

async fn read_inner(tcp: &mut TcpStream) -> Result<Proxied, ProxyError> {
    let mut buf = vec![0u8; 6];
    tcp.read_exact(&mut buf).await?;
    if buf == V1_PREFIX {
        // Byte by byte to the LF: never consume what follows the header.
        while buf.last() != Some(&b'\n') {
            if buf.len() >= V1_MAX {
                return Err(ProxyError::Malformed(
                    "v1 header longer than 107 bytes".into(),
                ));
            }
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await?;
            buf.push(b[0]);
        }
    } else if buf[..] == V2_SIGNATURE[..6] {
        buf.resize(16, 0);
        tcp.read_exact(&mut buf[6..]).await?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_PAYLOAD {
            return Err(ProxyError::Malformed(format!("v2 payload of {len} bytes")));
        }
        buf.resize(16 + len, 0);
        tcp.read_exact(&mut buf[16..]).await?;
    } else {
        return Err(ProxyError::Malformed(
            "connection does not start with a PROXY header".into(),
        ));
    }
    parse(&buf)
}

/// A header that named both ends.
fn addressed(
    src: std::net::IpAddr,
    src_port: u16,
    dst: std::net::IpAddr,
    dst_port: u16,
) -> Proxied {
    Proxied {
        source: Some(SocketAddr::new(src, src_port)),
        destination: Some(SocketAddr::new(dst, dst_port)),
    }
}

/// Parse a complete header (pure; used by `read_header` and tests).
pub fn parse(header: &[u8]) -> Result<Proxied, ProxyError> {
    use ppp::{v1, v2, HeaderResult};
    let bad = |e: String| ProxyError::Malformed(e);
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Unknown => Proxied {
                source: None,
                destination: None,
            },
            v1::Addresses::Tcp4(a) => addressed(
                a.source_address.into(),
                a.source_port,
                a.destination_address.into(),
                a.destination_port,
            ),
            v1::Addresses::Tcp6(a) => addressed(
                a.source_address.into(),
                a.source_port,
                a.destination_address.into(),
                a.destination_port,
            ),
        }),
        HeaderResult::V2(Ok(h)) => {
            let none = Proxied {
                source: None,
                destination: None,
            };
            if h.command == v2::Command::Local {
                return Ok(none);
            }
            Ok(match h.addresses {
                v2::Addresses::IPv4(a) => addressed(
                    a.source_address.into(),
                    a.source_port,
                    a.destination_address.into(),
                    a.destination_port,
                ),
                v2::Addresses::IPv6(a) => addressed(
                    a.source_address.into(),
                    a.source_port,
                    a.destination_address.into(),
                    a.destination_port,
                ),
                v2::Addresses::Unspecified | v2::Addresses::Unix(_) => none,
            })
        }
        HeaderResult::V1(Err(e)) => Err(bad(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(bad(format!("{e:?}"))),
    }
}

/// The PROXY header the gateway sends a backend that asked for one
/// (`backends[].send_proxy`): `conn` is (real client, gateway address the
/// client reached); `None` for the gateway's own connections (health checks):
/// `PROXY UNKNOWN` (v1) or a `LOCAL` command (v2).
pub fn header(version: ProxyVersion, conn: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    use ppp::v2;
    let pair = conn.map(same_family);
    match version {
        ProxyVersion::V1 => match pair {
            Some(p) => ppp::v1::Addresses::from(p).to_string().into_bytes(),
            None => ppp::v1::Addresses::Unknown.to_string().into_bytes(),
        },
        ProxyVersion::V2 => {
            let built = match pair {
                Some(p) => v2::Builder::with_addresses(
                    v2::Version::Two | v2::Command::Proxy,
                    v2::Protocol::Stream,
                    p,
                )
                .build(),
                None => v2::Builder::with_addresses(
                    v2::Version::Two | v2::Command::Local,
                    v2::Protocol::Unspecified,
                    v2::Addresses::Unspecified,
                )
                .build(),
            };
            // Building into a Vec cannot fail for fixed-size addresses; an
            // empty header would make the backend refuse the connection.
            built.unwrap_or_default()
        }
    }
}

/// Both addresses in one family (a PROXY header carries one): IPv4-mapped
/// IPv6 becomes IPv4, and a remaining mix maps the IPv4 side to IPv6.
fn same_family((src, dst): (SocketAddr, SocketAddr)) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (canon(src), canon(dst));
    let v6 = |a: SocketAddr| match a.ip() {
        std::net::IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), a.port()),
        std::net::IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let p = parse(b"PROXY TCP4 203.0.113.7 198.19.0.10 40001 21\r\n").expect("v1");
        assert_eq!(p.source, Some(sa("203.0.113.7:40001")));
        assert_eq!(p.destination, Some(sa("198.19.0.10:21")));
        let p = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 40001 21\r\n").expect("v1 v6");
        assert_eq!(p.source, Some(sa("[2001:db8::7]:40001")));
        let p = parse(b"PROXY UNKNOWN\r\n").expect("unknown");
        assert_eq!(p.source, None);
    }

    #[test]
    fn v2_proxy_and_local() {
        let mut h = V2_SIGNATURE.to_vec();
        // version 2, PROXY; TCP over IPv4; 12 bytes of addresses.
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 203, 0, 113, 7, 198, 19, 0, 10, 0x9c, 0x41, 0, 21,
        ]);
        let p = parse(&h).expect("v2");
        assert_eq!(p.source, Some(sa("203.0.113.7:40001")));
        let mut l = V2_SIGNATURE.to_vec();
        l.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&l).expect("local").source, None);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(parse(b"PROXY TCP4 nonsense\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.0\r\n").is_err());
    }

    #[test]
    fn headers_we_send_parse_back_to_the_client() {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            for (src, dst) in [
                ("203.0.113.7:40001", "192.0.2.1:21"),
                ("[2001:db8::7]:40001", "[2001:db8::1]:990"),
            ] {
                let h = header(version, Some((sa(src), sa(dst))));
                let p = parse(&h).unwrap_or_else(|e| panic!("{version:?} {src}: {e}"));
                assert_eq!(p.source, Some(sa(src)), "{version:?}");
                assert_eq!(p.destination, Some(sa(dst)), "{version:?}");
            }
        }
    }

    #[test]
    fn mixed_families_become_one() {
        // A v4 client seen through a dual-stack socket: mapped → plain IPv4.
        let h = header(
            ProxyVersion::V1,
            Some((sa("[::ffff:198.51.100.9]:5000"), sa("192.0.2.1:21"))),
        );
        assert_eq!(h, b"PROXY TCP4 198.51.100.9 192.0.2.1 5000 21\r\n".to_vec());
        // A real mix: the IPv4 side is mapped into IPv6.
        let h = header(
            ProxyVersion::V2,
            Some((sa("198.51.100.9:5000"), sa("[2001:db8::1]:21"))),
        );
        let p = parse(&h).expect("v2");
        assert_eq!(p.source, Some(sa("[::ffff:198.51.100.9]:5000")));
    }

    #[test]
    fn own_connections_send_local_or_unknown() {
        assert_eq!(
            header(ProxyVersion::V1, None),
            b"PROXY UNKNOWN\r\n".to_vec()
        );
        let p = parse(&header(ProxyVersion::V2, None)).expect("v2 LOCAL");
        assert_eq!(p.source, None);
    }
}
