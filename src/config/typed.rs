//! The typed configuration the runtime consumes, built by [`super::build`] only.
//!
//! Everything here is already checked: addresses are parsed, port ranges are
//! non-empty, files existed at load time, every `Listener::backend` names a
//! [`Backend`], and TLS settings are consistent with their mode. The runtime reads
//! these values; it does not re-validate them. No I/O happens in this file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The whole gateway configuration, loaded once at startup (and by `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// At least one; names are unique and control `bind` addresses are distinct.
    pub listeners: Vec<Listener>,
    /// Names are unique; may include backends no listener uses (a warning).
    pub backends: Vec<Backend>,
    /// Defaults apply to every key not given.
    pub timeouts: Timeouts,
}

/// One client-facing FTP(S) endpoint; bound before any session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique; used in logs and metric labels.
    pub name: String,
    /// Control connection address (IPv4 or IPv6; port 0 lets the OS pick).
    pub bind: SocketAddr,
    /// TLS toward the client.
    pub tls: ListenerTls,
    /// Where and on which ports the gateway opens client-facing data pinholes.
    pub passive: Passive,
    /// Name of the [`Backend`] sessions are relayed to; always defined in `Config`.
    pub backend: String,
}

/// Client-side TLS of a listener.
///
/// Invariant: `cert` and `key` are `Some` exactly when `mode` is not `None`; with
/// `mode: None`, `require` and `require_data_reuse` are `false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `explicit` = AUTH TLS on the control port (RFC 4217), `implicit` = TLS from the
    /// first byte, `none` = cleartext.
    pub mode: TlsMode,
    /// PEM certificate chain, resolved against the config file's directory.
    pub cert: Option<PathBuf>,
    /// PEM private key, resolved against the config file's directory.
    pub key: Option<PathBuf>,
    /// Refuse USER/PASS before AUTH TLS (explicit mode). Default true; false for none.
    pub require: bool,
    /// Data-connection TLS must resume the control session, so a third party cannot
    /// take over a pinhole. Default true; false for none.
    pub require_data_reuse: bool,
    /// Lowest TLS version offered to clients. Default 1.2.
    pub min_version: TlsVersion,
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Cleartext FTP.
    None,
    /// Cleartext greeting, then `AUTH TLS` upgrades the control connection.
    Explicit,
    /// TLS handshake before the first FTP byte.
    Implicit,
}

/// A TLS protocol version; ordered so that `Tls12 < Tls13`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (written `"1.2"`).
    Tls12,
    /// TLS 1.3 (written `"1.3"`).
    Tls13,
}

/// Client-facing passive data settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passive {
    /// Ports pinholes are bound in; never overlaps another listener's range on a
    /// conflicting bind address.
    pub ports: PortRange,
    /// Address pinholes are bound to. Default: the IP of the listener's `bind`.
    pub bind: IpAddr,
    /// Address written into 227 replies (NAT). `None`: the local address of the
    /// client's control connection. Never the unspecified address.
    pub advertise: Option<IpAddr>,
}

/// An inclusive, non-empty range of ports `first..=last`, written `"A-B"` or `"A"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port, at least 1.
    pub first: u16,
    /// Last port, at least `first`.
    pub last: u16,
}

impl PortRange {
    /// Number of ports in the range (0 only for a hand-built `first > last`).
    pub fn len(&self) -> usize {
        if self.last < self.first {
            0
        } else {
            usize::from(self.last - self.first) + 1
        }
    }

    /// True only for a hand-built `first > last`; parsed ranges are never empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `port` lies in `first..=last`.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// Whether the two ranges share a port.
    pub(crate) fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    /// Accepts `"A-B"` with `1 <= A <= B <= 65535`, or a single port `"A"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (first, last) = s.split_once('-').unwrap_or((s, s));
        match (parse_port(first), parse_port(last)) {
            (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
            _ => Err(PortRangeError {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A non-zero port written as plain decimal digits (`u16::from_str` alone would also
/// take `+5`).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|p| *p != 0)
}

/// Why a string is not a [`PortRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{input}\" is not a range")]
pub struct PortRangeError {
    /// The text that was refused.
    pub input: String,
}

/// One FTP server the gateway relays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Unique; what `Listener::backend` refers to.
    pub name: String,
    /// IPv4 or IPv6 literal (without brackets) or DNS name, resolved at connect time.
    pub host: String,
    /// Control port, never 0.
    pub port: u16,
    /// TLS toward the backend.
    pub tls: BackendTls,
}

/// Backend-side TLS.
///
/// Invariant: `verify` is `NotApplicable` exactly when `mode` is `None`, and then
/// `data_protection` is `Clear`; `min_version <= max_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// Default `None`.
    pub mode: TlsMode,
    /// How the backend certificate is checked.
    pub verify: BackendVerify,
    /// SNI and the name the certificate is checked against. Default: the address host.
    pub server_name: String,
    /// Default 1.2.
    pub min_version: TlsVersion,
    /// Default 1.3.
    pub max_version: TlsVersion,
    /// PROT level used toward the backend. Default `Private` with TLS.
    pub data_protection: DataProtection,
}

/// How the gateway authenticates the backend's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendVerify {
    /// Chain must verify against this PEM CA bundle (resolved path).
    Ca(PathBuf),
    /// The end-entity certificate's SHA-256 must equal one of these.
    Pin(Vec<[u8; 32]>),
    /// `verify: false`: any certificate is accepted. Lab use only; see `warnings()`.
    Dangerous,
    /// Backend `mode: none`: there is no certificate to check.
    NotApplicable,
}

/// The PROT level the gateway asks of the backend (RFC 4217 section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataProtection {
    /// `PROT P`: data connections use TLS.
    Private,
    /// `PROT C`: data connections are cleartext.
    Clear,
}

/// Timeouts, each a positive [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Backend TCP connect plus its greeting (and TLS for implicit). Default 10 s.
    pub connect: Duration,
    /// From accept until a successful login. Default 60 s.
    pub login: Duration,
    /// Control connection without traffic. Default 600 s.
    pub idle: Duration,
    /// A pinhole nobody connected to is closed after this. Default 30 s.
    pub pinhole: Duration,
    /// Data connection without a byte in either direction. Default 300 s.
    pub data_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            login: Duration::from_secs(60),
            idle: Duration::from_secs(600),
            pinhole: Duration::from_secs(30),
            data_idle: Duration::from_secs(300),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "none",
            TlsMode::Explicit => "explicit",
            TlsMode::Implicit => "implicit",
        })
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

impl fmt::Display for DataProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataProtection::Private => "private",
            DataProtection::Clear => "clear",
        })
    }
}
