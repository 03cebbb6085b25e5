//! Parsers for single scalar values shared by every section: names, addresses,
//! networks, counts, bandwidths, enumerations, pins, and file paths checked
//! against the config's directory.
//!
//! Each takes the text as written and returns the value or a message quoting the
//! text; the key path is added by `Builder::optional`/`required`. A new value
//! syntax gets a `parse_*` function here (durations are in `../duration.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::config::typed::{
    Balance, DataProtection, ListingsPolicy, LogTime, PortShare, ReuseScope, TlsMode, TlsVersion,
    TransferLogFormat, Transport,
};

/// A CIDR network (`10.0.0.0/8`, `::1/128`), or a bare address meaning that host.
/// Host bits are dropped (`10.1.2.3/8` is `10.0.0.0/8`), as the kernel would.
pub(super) fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("\"{s}\" is not a CIDR network (e.g. \"10.0.0.0/8\" or \"::1/128\")"))
}

/// A positive whole number (session counts, login attempts).
pub(super) fn parse_count(s: &str) -> Result<usize, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" is not a whole number"));
    }
    match s.parse::<usize>() {
        Err(_) => Err(format!("\"{s}\" is too large")),
        Ok(0) => Err(format!("\"{s}\" must be at least 1")),
        Ok(n) => Ok(n),
    }
}

/// `passive.max_per_client`: `"N"` ports or `"P%"` of the range (1–100).
pub(super) fn parse_port_share(s: &str) -> Result<PortShare, String> {
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u8>() {
            Ok(n) if (1..=100).contains(&n) => Ok(PortShare::Percent(n)),
            _ => Err(format!("\"{s}\" is not a percentage from 1% to 100%")),
        },
        None => parse_count(s).map(PortShare::Ports),
    }
}

/// Bytes per second: a plain integer, or one with K/M/G (powers of 1000) or
/// KiB/MiB/GiB (powers of 1024); zero is refused (it would stall every transfer).
/// `limits.ipv6_prefix`: a prefix length, `56` or `/56`, from 32 (a whole
/// provider block would lump strangers together below that) to 128.
pub(super) fn parse_ipv6_prefix(s: &str) -> Result<u8, String> {
    let digits = s.trim().strip_prefix('/').unwrap_or(s.trim());
    match digits.parse::<u8>() {
        Ok(n) if (32..=128).contains(&n) => Ok(n),
        _ => Err(format!(
            "\"{s}\" is not an IPv6 prefix length from 32 to 128 (e.g. 64 or 56)"
        )),
    }
}

pub(super) fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "\"{s}\" is not a bandwidth (bytes per second, e.g. \"500K\", \"10MiB\" or 1048576)"
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is too large"))?;
    let factor: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    match n.checked_mul(factor) {
        None => Err(format!("\"{s}\" is too large")),
        Some(0) => Err(format!("\"{s}\" must be greater than zero")),
        Some(v) => Ok(v),
    }
}

/// A route's `user`: an exact login name or a glob with `*` and `?`.
pub(super) fn parse_user(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(s.to_owned())
}

pub(super) fn parse_balance(s: &str) -> Result<Balance, String> {
    match s {
        "round-robin" => Ok(Balance::RoundRobin),
        "least-connections" => Ok(Balance::LeastConnections),
        _ => Err(format!(
            "\"{s}\" is not a balance mode (expected round-robin or least-connections)"
        )),
    }
}

/// `tunnels[].transport`, `connect[].transport`.
pub(super) fn parse_transport(s: &str) -> Result<Transport, String> {
    match s {
        "quic" => Ok(Transport::Quic),
        "h2" => Ok(Transport::H2),
        _ => Err(format!(
            "\"{s}\" is not a tunnel transport (expected quic or h2)"
        )),
    }
}

/// An FTP command verb: 3 or 4 ASCII letters (RFC 959 section 5.3.1), upper-cased.
pub(super) fn parse_verb(s: &str) -> Result<String, String> {
    if (3..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(format!(
            "\"{s}\" is not an FTP command (3 or 4 letters, e.g. STOR)"
        ))
    }
}

/// A server name clients may send in SNI: a DNS name (no IP, no wildcard),
/// lower-cased since names compare case-insensitively.
pub(super) fn parse_sni_name(s: &str) -> Result<String, String> {
    if s.parse::<IpAddr>().is_ok() || !is_dns_name(s) {
        return Err(format!(
            "\"{s}\" is not a DNS name (SNI carries names only; wildcards are not supported)"
        ));
    }
    Ok(s.trim_end_matches('.').to_ascii_lowercase())
}

pub(super) fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_owned())
}

pub(super) fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("\"{s}\" is not an IP address and port (e.g. \"127.0.0.1:2021\" or \"[::1]:2021\")")
    })
}

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("\"{s}\" is not an IP address"))
}

/// An address written into 227/229 replies. A wildcard would send clients
/// nowhere. IPv6 is accepted: such clients get `229` (EPSV); a `PASV` from them
/// gets `425` since 227 carries IPv4 only (RFC 959 h1,h2,h3,h4).
pub(super) fn parse_advertise(s: &str) -> Result<IpAddr, String> {
    let ip = parse_ip(s)?;
    if ip.is_unspecified() {
        return Err(format!(
            "\"{s}\" is the unspecified address; clients cannot connect to it"
        ));
    }
    Ok(ip)
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("\"{s}\" is not a boolean (expected true or false)")),
    }
}

pub(super) fn parse_mode(s: &str) -> Result<TlsMode, String> {
    match s {
        "none" => Ok(TlsMode::None),
        "explicit" => Ok(TlsMode::Explicit),
        "implicit" => Ok(TlsMode::Implicit),
        _ => Err(format!(
            "\"{s}\" is not a TLS mode (expected explicit, implicit or none)"
        )),
    }
}

pub(super) fn parse_reuse_scope(s: &str) -> Result<ReuseScope, String> {
    match s {
        "session" => Ok(ReuseScope::Session),
        "user" => Ok(ReuseScope::User),
        _ => Err(format!(
            "\"{s}\" is not a reuse scope (expected user or session)"
        )),
    }
}

pub(super) fn parse_version(s: &str) -> Result<TlsVersion, String> {
    match s {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(format!(
            "\"{s}\" is not a TLS version (expected \"1.2\" or \"1.3\")"
        )),
    }
}

pub(super) fn parse_data_protection(s: &str) -> Result<DataProtection, String> {
    match s {
        "private" => Ok(DataProtection::Private),
        "clear" => Ok(DataProtection::Clear),
        _ => Err(format!(
            "\"{s}\" is not a data protection level (expected private or clear)"
        )),
    }
}

/// `host:port` with host an IPv4 literal, a bracketed IPv6 literal or a DNS name;
/// the host is returned without brackets, ready for connect and for SNI.
pub(super) fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let refuse = || format!("\"{s}\" is not host:port");
    let (host, port) = s.rsplit_once(':').ok_or_else(refuse)?;
    let port = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        port.parse::<u16>().ok().filter(|p| *p != 0)
    } else {
        None
    }
    .ok_or_else(refuse)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']').ok_or_else(refuse)?;
            inner.parse::<Ipv6Addr>().map_err(|_| refuse())?;
            inner
        }
        None if host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host) => host,
        None => return Err(refuse()),
    };
    Ok((host.to_owned(), port))
}

pub(super) fn parse_server_name(s: &str) -> Result<String, String> {
    if s.parse::<IpAddr>().is_ok() || is_dns_name(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("\"{s}\" is not a DNS name or IP address"))
    }
}

/// RFC 1123 host name (underscores tolerated, as internal names use them). A name
/// whose last label is numeric must be an IPv4 literal instead, so `300.1.1.1` is
/// refused rather than looked up.
fn is_dns_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    name.split('.').all(label_ok) && !last_numeric
}

/// SHA-256 fingerprint: 64 hex digits, colons allowed anywhere and ignored (the
/// `openssl x509 -fingerprint` output pastes as is).
pub(super) fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    let count = digits.chars().count();
    if count != 64 {
        return Err(format!("expected 64 hex digits, got {count}"));
    }
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("expected 64 hex digits, found {c:?}"));
    }
    let mut pin = [0u8; 32];
    hex::decode_to_slice(&digits, &mut pin).map_err(|e| format!("not hex: {e}"))?;
    Ok(pin)
}

/// Text the gateway writes after a reply code (`banner`, `unavailable`): one line
/// of printable ASCII, so it cannot end the reply early or smuggle a second one.
pub(super) fn parse_reply_text(s: &str) -> Result<String, String> {
    const MAX: usize = 200;
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX {
        return Err(format!("is {} characters long (at most {MAX})", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "contains {c:?}; only printable ASCII on one line is allowed"
        ));
    }
    Ok(s.to_owned())
}

/// `transfer_log.listings`.
pub(super) fn parse_listings(s: &str) -> Result<ListingsPolicy, String> {
    match s {
        "omit" => Ok(ListingsPolicy::Omit),
        "flag" => Ok(ListingsPolicy::Flag),
        "include" => Ok(ListingsPolicy::Include),
        _ => Err(format!(
            "\"{s}\" is not a listings policy (expected omit, flag or include)"
        )),
    }
}

/// `transfer_log.time`.
pub(super) fn parse_log_time(s: &str) -> Result<LogTime, String> {
    match s {
        "local" => Ok(LogTime::Local),
        "utc" => Ok(LogTime::Utc),
        _ => Err(format!(
            "\"{s}\" is not a time zone choice (expected local or utc)"
        )),
    }
}

pub(super) fn parse_log_format(s: &str) -> Result<TransferLogFormat, String> {
    match s {
        "xferlog" => Ok(TransferLogFormat::Xferlog),
        "json" => Ok(TransferLogFormat::Json),
        _ => Err(format!(
            "\"{s}\" is not a transfer log format (expected xferlog or json)"
        )),
    }
}

/// Resolves `written` against `base` for a file the gateway appends to: it need not
/// exist, but must not be a directory, and its directory must exist.
pub(super) fn log_file(base: &Path, written: &str) -> Result<PathBuf, String> {
    if written.is_empty() {
        return Err("must not be empty".into());
    }
    let path = base.join(written);
    if path.is_dir() {
        return Err(format!("{written} is a directory"));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("directory of {written} does not exist"))
        }
        _ => Ok(path),
    }
}

/// Resolves `written` against `base` and checks that it names a regular file.
/// Messages quote the path as written, which is what the operator can find.
pub(super) fn existing_file(base: &Path, written: &str) -> Result<PathBuf, String> {
    if written.is_empty() {
        return Err("must not be empty".into());
    }
    let path = base.join(written);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("{written} is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("file {written} does not exist"))
        }
        Err(e) => Err(format!("cannot access file {written}: {e}")),
    }
}
