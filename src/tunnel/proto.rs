//! The request and answer headers at the start of each tunnel stream, and the
//! connector's decision whether a request may be served.
//!
//! Every stream is opened by the edge and carries exactly one TCP connection.
//! Before the relayed bytes, the edge writes one [`Request`] and the connector
//! answers with one [`Answer`]; after that the stream is the connection.
//! Multiplexing, flow control and framing are QUIC's, not ours.
//!
//! Wire format (all integers big-endian):
//! - request: `"FGT1"`, kind (`1` control, `2` data), name length (1..=255),
//!   name (UTF-8), then for data only: IP version (`4`/`6`), the address
//!   (4 or 16 bytes), port (2 bytes);
//! - answer: status (`0` ok, `1` refused, `2` unreachable), text length
//!   (2 bytes, at most [`MAX_TEXT`]), text (UTF-8). An ok answer's text is
//!   "PEER LOCAL" (the backend address the connector reached and its own end),
//!   an error's the reason.
//!
//! Pure: no I/O. [`decide`] takes the connector's backends with the addresses
//! they resolved to; the caller resolves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// First bytes of every request: protocol and version.
pub const MAGIC: &[u8; 4] = b"FGT1";
/// Longest answer text accepted.
pub const MAX_TEXT: usize = 1024;
/// Lowest port a data request may name (no well-known service ports).
pub const MIN_DATA_PORT: u16 = 1024;

/// What the edge asks the connector to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The control connection of the backend with this name.
    Control {
        /// The backend's name on the connector.
        backend: String,
    },
    /// A data connection to `addr`, for the backend with this name.
    Data {
        /// The backend's name on the connector.
        backend: String,
        /// The address the backend announced for the data connection.
        addr: SocketAddr,
    },
}

impl Request {
    /// The backend name the request is for.
    pub fn backend(&self) -> &str {
        match self {
            Request::Control { backend } | Request::Data { backend, .. } => backend,
        }
    }
}

/// The connector's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Connected: the backend address reached and the connector's own end.
    Ok {
        /// The backend address reached.
        peer: SocketAddr,
        /// The connector's own end of that connection.
        local: SocketAddr,
    },
    /// Not allowed (never tried).
    Refused(String),
    /// Allowed, but the connection failed.
    Unreachable(String),
}

/// Why bytes are not a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first bytes are not the magic.
    #[error("not a tunnel request (bad magic)")]
    Magic,
    /// A request kind this version does not know.
    #[error("unknown request kind {0}")]
    Kind(u8),
    /// A request without a backend name.
    #[error("empty backend name")]
    EmptyName,
    /// A name or text that is not UTF-8.
    #[error("text is not UTF-8")]
    Utf8,
    /// An address family other than 4 or 6.
    #[error("unknown IP version {0}")]
    IpVersion(u8),
    /// An answer status this version does not know.
    #[error("unknown answer status {0}")]
    Status(u8),
    /// Answer text over the limit.
    #[error("answer text longer than {MAX_TEXT} bytes")]
    TooLong,
    /// An ok answer whose text is not two socket addresses.
    #[error("malformed ok answer")]
    OkText,
}

/// A decoder result: `Ok(None)` means more bytes are needed; `Ok(Some((v, n)))`
/// means `v` was read from the first `n` bytes.
pub type Decoded<T> = Result<Option<(T, usize)>, DecodeError>;

/// Why an encode is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The backend name is empty or longer than 255 bytes.
    #[error("backend name must be 1 to 255 bytes")]
    Name,
}

/// The bytes of request `r` (magic, kind, name, and for data the address).
pub fn encode_request(r: &Request) -> Result<Vec<u8>, EncodeError> {
    let name = r.backend().as_bytes();
    let len = u8::try_from(name.len()).map_err(|_| EncodeError::Name)?;
    if len == 0 {
        return Err(EncodeError::Name);
    }
    let mut out = Vec::with_capacity(4 + 2 + name.len() + 19);
    out.extend_from_slice(MAGIC);
    out.push(match r {
        Request::Control { .. } => 1,
        Request::Data { .. } => 2,
    });
    out.push(len);
    out.extend_from_slice(name);
    if let Request::Data { addr, .. } = r {
        match addr.ip() {
            IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
    Ok(out)
}

/// Read a request from the start of `b`.
pub fn decode_request(b: &[u8]) -> Decoded<Request> {
    let mut cur = Cursor { b, at: 0 };
    let Some(magic) = cur.take(4) else {
        return if MAGIC.starts_with(b) {
            Ok(None)
        } else {
            Err(DecodeError::Magic)
        };
    };
    if magic != MAGIC {
        return Err(DecodeError::Magic);
    }
    let Some(kind) = cur.byte() else {
        return Ok(None);
    };
    if kind != 1 && kind != 2 {
        return Err(DecodeError::Kind(kind));
    }
    let Some(len) = cur.byte() else {
        return Ok(None);
    };
    if len == 0 {
        return Err(DecodeError::EmptyName);
    }
    let Some(name) = cur.take(usize::from(len)) else {
        return Ok(None);
    };
    let backend = std::str::from_utf8(name)
        .map_err(|_| DecodeError::Utf8)?
        .to_owned();
    if kind == 1 {
        return Ok(Some((Request::Control { backend }, cur.at)));
    }
    let Some(version) = cur.byte() else {
        return Ok(None);
    };
    let ip = match version {
        4 => match cur.take(4) {
            None => return Ok(None),
            Some(o) => IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])),
        },
        6 => match cur.take(16) {
            None => return Ok(None),
            Some(o) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(o);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        },
        v => return Err(DecodeError::IpVersion(v)),
    };
    let Some(port) = cur.take(2) else {
        return Ok(None);
    };
    let addr = SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]));
    Ok(Some((Request::Data { backend, addr }, cur.at)))
}

/// The bytes of answer `a` (status, length, text cut to [`MAX_TEXT`]).
pub fn encode_answer(a: &Answer) -> Vec<u8> {
    let (status, text) = match a {
        Answer::Ok { peer, local } => (0u8, format!("{peer} {local}")),
        Answer::Refused(t) => (1, t.clone()),
        Answer::Unreachable(t) => (2, t.clone()),
    };
    // Cut at a character boundary so the text stays UTF-8.
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text.as_bytes()[..end];
    let mut out = Vec::with_capacity(3 + text.len());
    out.push(status);
    // `end <= MAX_TEXT` fits in two bytes.
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text);
    out
}

/// Read an answer from the start of `b`.
pub fn decode_answer(b: &[u8]) -> Decoded<Answer> {
    let mut cur = Cursor { b, at: 0 };
    let Some(status) = cur.byte() else {
        return Ok(None);
    };
    if status > 2 {
        return Err(DecodeError::Status(status));
    }
    let Some(len) = cur.take(2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > MAX_TEXT {
        return Err(DecodeError::TooLong);
    }
    let Some(text) = cur.take(len) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(text).map_err(|_| DecodeError::Utf8)?;
    let answer = match status {
        0 => {
            let (peer, local) = text.split_once(' ').ok_or(DecodeError::OkText)?;
            Answer::Ok {
                peer: peer.parse().map_err(|_| DecodeError::OkText)?,
                local: local.parse().map_err(|_| DecodeError::OkText)?,
            }
        }
        1 => Answer::Refused(text.to_owned()),
        _ => Answer::Unreachable(text.to_owned()),
    };
    Ok(Some((answer, cur.at)))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
}

/// A backend the connector was given, with the addresses its configured
/// address resolved to (the caller resolves; this module does no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed<'a> {
    /// `connect[].backends[].name`.
    pub name: &'a str,
    /// Its address, resolved.
    pub resolved: &'a [SocketAddr],
}

/// Why a request is refused: the `reason` label of the refusal metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No backend of that name on this connector.
    UnknownBackend,
    /// A data address that is not one of the backend's IPs.
    ForeignAddress,
    /// A data port below [`MIN_DATA_PORT`].
    LowPort,
}

impl Refusal {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownBackend => "unknown_backend",
            Refusal::ForeignAddress => "foreign_address",
            Refusal::LowPort => "low_port",
        }
    }
}

/// May the connector connect for `req`? Returns where to connect: the control
/// connection to any of the backend's resolved addresses (in order), a data
/// connection only to the requested port on one of the backend's own IPs.
pub fn decide(req: &Request, backends: &[Allowed<'_>]) -> Result<Vec<SocketAddr>, Refusal> {
    let b = backends
        .iter()
        .find(|b| b.name == req.backend())
        .ok_or(Refusal::UnknownBackend)?;
    match req {
        Request::Control { .. } => Ok(b.resolved.to_vec()),
        Request::Data { addr, .. } => {
            if addr.port() < MIN_DATA_PORT {
                return Err(Refusal::LowPort);
            }
            let ip = addr.ip().to_canonical();
            if b.resolved.iter().any(|r| r.ip().to_canonical() == ip) {
                Ok(vec![SocketAddr::new(ip, addr.port())])
            } else {
                Err(Refusal::ForeignAddress)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str, addr: &str) -> Request {
        Request::Data {
            backend: name.into(),
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn requests_round_trip_and_need_every_byte() {
        for r in [
            Request::Control {
                backend: "legacy".into(),
            },
            data("legacy", "10.0.0.5:40001"),
            data("v6", "[2001:db8::5]:50000"),
        ] {
            let bytes = encode_request(&r).unwrap();
            for cut in 0..bytes.len() {
                assert_eq!(decode_request(&bytes[..cut]), Ok(None), "{r:?} cut {cut}");
            }
            let mut more = bytes.clone();
            more.extend_from_slice(b"relayed bytes");
            assert_eq!(decode_request(&more), Ok(Some((r.clone(), bytes.len()))));
        }
    }

    #[test]
    fn bad_requests_are_errors() {
        assert_eq!(decode_request(b"GET / HTTP/1.1"), Err(DecodeError::Magic));
        assert_eq!(decode_request(b"X"), Err(DecodeError::Magic));
        assert_eq!(decode_request(b"FGT1\x03"), Err(DecodeError::Kind(3)));
        assert_eq!(decode_request(b"FGT1\x01\x00"), Err(DecodeError::EmptyName));
        assert_eq!(decode_request(b"FGT1\x01\x01\xff"), Err(DecodeError::Utf8));
        assert_eq!(
            decode_request(b"FGT1\x02\x01a\x05"),
            Err(DecodeError::IpVersion(5))
        );
        let long = Request::Control {
            backend: "x".repeat(256),
        };
        assert_eq!(encode_request(&long), Err(EncodeError::Name));
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Ok {
                peer: "10.0.0.5:21".parse().unwrap(),
                local: "[2001:db8::1]:40000".parse().unwrap(),
            },
            Answer::Refused("not a backend".into()),
            Answer::Unreachable("connection refused".into()),
        ] {
            let bytes = encode_answer(&a);
            for cut in 0..bytes.len() {
                assert_eq!(decode_answer(&bytes[..cut]), Ok(None));
            }
            assert_eq!(decode_answer(&bytes), Ok(Some((a, bytes.len()))));
        }
        assert_eq!(decode_answer(b"\x07"), Err(DecodeError::Status(7)));
        assert_eq!(decode_answer(b"\x01\xff\xff"), Err(DecodeError::TooLong));
        assert_eq!(decode_answer(b"\x00\x00\x01x"), Err(DecodeError::OkText));
        // Long texts are cut, at a character boundary.
        let long = Answer::Refused("é".repeat(MAX_TEXT));
        let bytes = encode_answer(&long);
        assert!(
            matches!(decode_answer(&bytes), Ok(Some((Answer::Refused(t), _))) if t.len() == MAX_TEXT)
        );
    }

    #[test]
    fn connector_connects_only_to_its_backends() {
        let legacy: Vec<SocketAddr> = vec!["10.0.0.5:21".parse().unwrap()];
        let other: Vec<SocketAddr> = vec!["10.0.0.9:2121".parse().unwrap()];
        let allowed = [
            Allowed {
                name: "legacy",
                resolved: &legacy,
            },
            Allowed {
                name: "other",
                resolved: &other,
            },
        ];
        let control = |n: &str| Request::Control { backend: n.into() };
        assert_eq!(decide(&control("legacy"), &allowed), Ok(legacy.clone()));
        assert_eq!(
            decide(&control("intranet"), &allowed),
            Err(Refusal::UnknownBackend)
        );
        assert_eq!(
            decide(&data("legacy", "10.0.0.5:40000"), &allowed),
            Ok(vec!["10.0.0.5:40000".parse().unwrap()])
        );
        // IPv4-mapped IPv6 is the same IP.
        assert_eq!(
            decide(&data("legacy", "[::ffff:10.0.0.5]:40000"), &allowed),
            Ok(vec!["10.0.0.5:40000".parse().unwrap()])
        );
        // Another backend's IP, any other host, a low port: refused.
        assert_eq!(
            decide(&data("legacy", "10.0.0.9:40000"), &allowed),
            Err(Refusal::ForeignAddress)
        );
        assert_eq!(
            decide(&data("legacy", "192.0.2.1:40000"), &allowed),
            Err(Refusal::ForeignAddress)
        );
        assert_eq!(
            decide(&data("legacy", "10.0.0.5:22"), &allowed),
            Err(Refusal::LowPort)
        );
        assert_eq!(
            decide(&data("nope", "10.0.0.5:40000"), &allowed),
            Err(Refusal::UnknownBackend)
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fuzz target's properties (fuzz/fuzz_targets/tunnel_proto.rs),
        /// run on every `cargo test`.
        #[test]
        fn any_bytes_decode_without_panic_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            for input in [&bytes[..], &framed[..]] {
                if let Ok(Some((req, used))) = decode_request(input) {
                    prop_assert_eq!(encode_request(&req), Ok(input[..used].to_vec()));
                }
                if let Ok(Some((answer, _))) = decode_answer(input) {
                    let again = decode_answer(&encode_answer(&answer));
                    prop_assert_eq!(again.map(|o| o.map(|(a, _)| a)), Ok(Some(answer)));
                }
            }
        }

        #[test]
        fn data_is_only_ever_allowed_to_the_backends_ip_above_1023(ip in any::<[u8; 4]>(), port in any::<u16>()) {
            let resolved: Vec<SocketAddr> = vec!["10.0.0.5:21".parse().unwrap()];
            let allowed = [Allowed { name: "b", resolved: &resolved }];
            let addr = SocketAddr::from((ip, port));
            let req = Request::Data { backend: "b".into(), addr };
            match decide(&req, &allowed) {
                Ok(t) => {
                    prop_assert!(port >= MIN_DATA_PORT);
                    prop_assert_eq!(t, vec![SocketAddr::new(resolved[0].ip(), port)]);
                }
                Err(_) => prop_assert!(port < MIN_DATA_PORT || addr.ip() != resolved[0].ip()),
            }
        }
    }
}
