//! Data-connection addresses on the control channel: the `227` (PASV) and
//! `229` (EPSV) replies and the `PORT` / `EPRT` arguments (RFC 959 §4.1.2,
//! RFC 2428 §2-3), parsed into socket-address types and rendered back.
//!
//! Parsing happens once, here, at the edge; the rest of the gateway only
//! sees `SocketAddr` types. This module must not decide whether an address
//! is acceptable (bounce attacks, low ports: that is policy, RFC 2577) and
//! must not do I/O. It does reject port 0, which can never be connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::reply::Reply;

/// An address argument or reply that does not parse. The message carries
/// the offending value so the log shows what the peer actually sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0}")]
    /// The argument does not parse; the text says what and where.
    Malformed(String),
}

/// Longest excerpt of peer text quoted in an error.
const ERROR_EXCERPT: usize = 80;

/// The backend's passive address from a `227` reply.
///
/// RFC 959 §4.1.2 does not fix where the tuple sits in the text, and some
/// servers omit the parentheses, so the first run of exactly six
/// comma-separated numbers anywhere in the text is taken.
pub fn parse_227(reply: &Reply) -> Result<SocketAddrV4, AddrError> {
    if reply.code != 227 {
        return Err(malformed("expected a 227 reply", &first_line(reply)));
    }
    let text = reply.text();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(start) = find_from(bytes, at, |b| b.is_ascii_digit()) {
        let (numbers, end) = number_group(bytes, start);
        if let Some(addr) = tuple_to_addr(&numbers) {
            return Ok(addr);
        }
        at = end;
    }
    Err(malformed("no h1,h2,h3,h4,p1,p2 tuple in 227 reply", &text))
}

/// The backend's passive port from a `229` reply: `(<d><d><d>port<d>)`,
/// where `<d>` is one delimiter in ASCII 33..=126 used four times
/// (RFC 2428 §3). Digits are refused as delimiter since they would make
/// the port ambiguous.
pub fn parse_229(reply: &Reply) -> Result<u16, AddrError> {
    if reply.code != 229 {
        return Err(malformed("expected a 229 reply", &first_line(reply)));
    }
    let text = reply.text();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(open) = find_from(bytes, at, |b| b == b'(') {
        let inner = bytes.get(open + 1..).unwrap_or_default();
        if let Some(port) = epsv_port(inner) {
            return Ok(port);
        }
        at = open + 1;
    }
    Err(malformed("no (|||port|) in 229 reply", &text))
}

/// The gateway's own `227` reply, in the parenthesised form every client
/// understands.
pub fn render_227(addr: SocketAddrV4) -> Reply {
    Reply::new(
        227,
        &format!("Entering Passive Mode ({}).", render_port_arg(addr)),
    )
}

/// The gateway's own `229` reply with `|` as delimiter (RFC 2428 §3).
pub fn render_229(port: u16) -> Reply {
    Reply::new(229, &format!("Entering Extended Passive Mode (|||{port}|)"))
}

/// The argument of `PORT h1,h2,h3,h4,p1,p2` (RFC 959 §4.1.2).
pub fn parse_port_arg(arg: &[u8]) -> Result<SocketAddrV4, AddrError> {
    let trimmed = trim_spaces(arg);
    let (numbers, end) = number_group(trimmed, 0);
    if end != trimmed.len() {
        return Err(malformed_bytes(
            "PORT argument is not h1,h2,h3,h4,p1,p2",
            arg,
        ));
    }
    tuple_to_addr(&numbers).ok_or_else(|| {
        malformed_bytes(
            "PORT argument needs six numbers 0..=255 and a non-zero port",
            arg,
        )
    })
}

/// `h1,h2,h3,h4,p1,p2` for `PORT` toward the backend and for `227`.
pub fn render_port_arg(addr: SocketAddrV4) -> String {
    let [h1, h2, h3, h4] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{h1},{h2},{h3},{h4},{p1},{p2}")
}

/// The argument of `EPRT <d>proto<d>addr<d>port<d>` (RFC 2428 §2): proto 1
/// is IPv4, 2 is IPv6, and the address must be of that family.
pub fn parse_eprt_arg(arg: &[u8]) -> Result<SocketAddr, AddrError> {
    let trimmed = trim_spaces(arg);
    let bad = |why: &str| malformed_bytes(why, arg);
    let (&delim, rest) = trimmed
        .split_first()
        .ok_or_else(|| bad("EPRT argument is empty"))?;
    if !is_delimiter(delim) {
        return Err(bad("EPRT delimiter must be ASCII 33..=126, not a digit"));
    }
    let fields: Vec<&[u8]> = rest.split(|&b| b == delim).collect();
    let [proto, host, port, tail] = fields.as_slice() else {
        return Err(bad("EPRT argument is not <d>proto<d>addr<d>port<d>"));
    };
    if !tail.is_empty() {
        return Err(bad("EPRT argument has text after the last delimiter"));
    }
    let port = parse_port(port).ok_or_else(|| bad("EPRT port must be 1..=65535"))?;
    let host = std::str::from_utf8(host).map_err(|_| bad("EPRT address is not ASCII"))?;
    match *proto {
        b"1" => host
            .parse::<Ipv4Addr>()
            .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, port)))
            .map_err(|_| bad("EPRT protocol 1 needs an IPv4 address")),
        b"2" => host
            .parse::<Ipv6Addr>()
            .map(|ip| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)))
            .map_err(|_| bad("EPRT protocol 2 needs an IPv6 address")),
        _ => Err(bad("EPRT protocol must be 1 (IPv4) or 2 (IPv6)")),
    }
}

/// `|1|a.b.c.d|port|` or `|2|v6addr|port|` (RFC 2428 §2). IPv6 flow info
/// and scope id have no place in EPRT and are not rendered.
pub fn render_eprt_arg(addr: SocketAddr) -> String {
    let proto = match addr.ip() {
        IpAddr::V4(_) => 1,
        IpAddr::V6(_) => 2,
    };
    format!("|{proto}|{}|{}|", addr.ip(), addr.port())
}

/// Reads a maximal `n(,n)*` group of decimal numbers starting at `start`,
/// returning the numbers (`None` for one longer than three digits or above
/// 255) and the index just past the group.
fn number_group(bytes: &[u8], start: usize) -> (Vec<Option<u8>>, usize) {
    let mut numbers = Vec::new();
    let mut at = start;
    loop {
        let digits_end = find_from(bytes, at, |b| !b.is_ascii_digit()).unwrap_or(bytes.len());
        let digits = bytes.get(at..digits_end).unwrap_or_default();
        if digits.is_empty() {
            return (numbers, at);
        }
        numbers.push(parse_octet(digits));
        at = digits_end;
        // A comma not followed by a digit belongs to the surrounding text.
        let comma_then_digit =
            bytes.get(at) == Some(&b',') && bytes.get(at + 1).is_some_and(|b| b.is_ascii_digit());
        if !comma_then_digit {
            return (numbers, at);
        }
        at += 1;
    }
}

fn tuple_to_addr(numbers: &[Option<u8>]) -> Option<SocketAddrV4> {
    let [h1, h2, h3, h4, p1, p2] = numbers else {
        return None;
    };
    let [h1, h2, h3, h4, p1, p2] = [(*h1)?, (*h2)?, (*h3)?, (*h4)?, (*p1)?, (*p2)?];
    let port = u16::from_be_bytes([p1, p2]);
    if port == 0 {
        return None;
    }
    Some(SocketAddrV4::new(Ipv4Addr::new(h1, h2, h3, h4), port))
}

/// After the `(` of a 229 reply: `<d><d><d>port<d>)`.
fn epsv_port(inner: &[u8]) -> Option<u16> {
    let (&delim, rest) = inner.split_first()?;
    if !is_delimiter(delim) {
        return None;
    }
    let rest = rest.strip_prefix(&[delim, delim][..])?;
    let end = rest.iter().position(|&b| b == delim)?;
    let (port, after) = rest.split_at(end);
    if after.get(1) != Some(&b')') {
        return None;
    }
    parse_port(port)
}

fn parse_octet(digits: &[u8]) -> Option<u8> {
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Decimal port 1..=65535, digits only (`str::parse` would accept a `+`).
fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port: u16 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (port != 0).then_some(port)
}

/// RFC 2428 §2: any ASCII 33..=126; digits excluded, see `parse_229`.
fn is_delimiter(b: u8) -> bool {
    (33..=126).contains(&b) && !b.is_ascii_digit()
}

fn find_from(bytes: &[u8], from: usize, pred: impl Fn(u8) -> bool) -> Option<usize> {
    let tail = bytes.get(from..)?;
    tail.iter().position(|&b| pred(b)).map(|i| from + i)
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn malformed(why: &str, text: &str) -> AddrError {
    let excerpt: String = text.chars().take(ERROR_EXCERPT).collect();
    AddrError::Malformed(format!("{why}: {excerpt:?}"))
}

fn malformed_bytes(why: &str, bytes: &[u8]) -> AddrError {
    malformed(why, &String::from_utf8_lossy(bytes))
}

fn first_line(reply: &Reply) -> String {
    reply
        .lines
        .first()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .unwrap_or_default()
}
