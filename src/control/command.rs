//! Client commands: parses one framed control line into a [`Command`]
//! (RFC 959 §4.1 and §5.3, RFC 2228 §3, RFC 2428, RFC 3659, RFC 4217).
//!
//! Only verbs the gateway acts on are decoded; every other verb stays an
//! [`Command::Other`] holding the original line, to be forwarded
//! byte-for-byte. This module must not decide what is allowed (that is
//! policy), must not do I/O, and must never put a password into a `Debug`
//! or log string.

use std::borrow::Cow;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

use super::addr::{parse_eprt_arg, parse_port_arg, render_eprt_arg, render_port_arg};

/// A password or account string. `Debug` prints stars so that a `{:?}` of a
/// command, a session state or an error can never leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Data channel protection level (RFC 2228 §3, `PROT`). RFC 4217 only
/// gives meaning to C and P with TLS; S and E are refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    /// `PROT C`: data connections in plaintext.
    Clear,
    /// `PROT P`: data connections under TLS.
    Private,
}

/// Which way file data flows, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Backend to client.
    Download,
    /// Client to backend.
    Upload,
}

/// Commands that open a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// `LIST`: a directory listing.
    List,
    /// `NLST`: file names only.
    Nlst,
    /// `MLSD`: a machine-readable listing (RFC 3659).
    Mlsd,
    /// `RETR`: download a file.
    Retr,
    /// `STOR`: upload a file.
    Stor,
    /// `STOU`: upload under a unique name the server picks.
    Stou,
    /// `APPE`: append to a file.
    Appe,
}

impl TransferKind {
    /// Which way the data connection carries bytes.
    pub fn direction(self) -> Direction {
        match self {
            TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd | TransferKind::Retr => {
                Direction::Download
            }
            TransferKind::Stor | TransferKind::Stou | TransferKind::Appe => Direction::Upload,
        }
    }

    /// The verb as sent on the wire, uppercase.
    pub fn verb(self) -> &'static str {
        match self {
            TransferKind::List => "LIST",
            TransferKind::Nlst => "NLST",
            TransferKind::Mlsd => "MLSD",
            TransferKind::Retr => "RETR",
            TransferKind::Stor => "STOR",
            TransferKind::Stou => "STOU",
            TransferKind::Appe => "APPE",
        }
    }
}

/// The argument of `EPSV` (RFC 2428 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpsvArg {
    /// `EPSV`: same family as the control connection.
    None,
    /// `EPSV ALL`: from now on only EPSV is allowed for data.
    All,
    /// `EPSV <net-prt>`: 1 is IPv4, 2 is IPv6; other numbers are passed on
    /// so the session can answer `522`.
    Protocol(u8),
}

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER`: the login name, as sent.
    User(Vec<u8>),
    /// `PASS`: the password (starred in `Debug`).
    Pass(Secret),
    /// `ACCT`: account information (starred in `Debug`).
    Acct(Secret),
    /// Mechanism, uppercased (`TLS`, `SSL`, `TLS-C`, ...).
    Auth(String),
    /// Protection buffer size, decimal digits as sent.
    Pbsz(String),
    /// `PROT`: data channel protection.
    Prot(ProtLevel),
    /// `CCC`: clear the control channel (RFC 4217 §12.3).
    Ccc,
    /// `PASV`: passive mode, IPv4.
    Pasv,
    /// `EPSV`: extended passive mode (RFC 2428).
    Epsv(EpsvArg),
    /// `PORT`: active mode, the client's IPv4 data address.
    Port(SocketAddrV4),
    /// `EPRT`: active mode, any family (RFC 2428).
    Eprt(SocketAddr),
    /// `FEAT`: list extensions (RFC 2389); answered by the gateway.
    Feat,
    /// `SYST`: system type.
    Syst,
    /// `NOOP`: keepalive.
    Noop,
    /// `QUIT`: end the session.
    Quit,
    /// `REIN`: reinitialize (log out); refused by the gateway.
    Rein,
    /// `ABOR`: cut the running transfer.
    Abor,
    /// `OPTS`: options for a command, argument as sent.
    Opts(Vec<u8>),
    /// `REST`: restart offset for the next transfer.
    Rest(u64),
    /// `TYPE`: representation type, argument as sent.
    Type(Vec<u8>),
    /// A command that opens a data connection; `raw` is the whole line
    /// (after TELNET stripping, without CRLF) to forward as-is.
    Transfer {
        /// Which transfer command.
        kind: TransferKind,
        /// The whole line to forward.
        raw: Vec<u8>,
    },
    /// Any other verb, uppercased; `raw` is the whole line (after TELNET
    /// stripping, without CRLF), forwarded byte-for-byte.
    Other {
        /// The verb, uppercased.
        verb: String,
        /// The whole line to forward.
        raw: Vec<u8>,
    },
}

/// Why a client line is not a command. Always the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Nothing but spaces; answer nothing or `500`.
    #[error("empty command line")]
    Empty,
    /// Not 3-4 ASCII letters; answer `500`.
    #[error("malformed verb {0:?}")]
    BadVerb(String),
    /// Answer `501`.
    #[error("bad argument for {verb}: {reason}")]
    BadArgument {
        /// The command's verb.
        verb: &'static str,
        /// What is wrong with the argument.
        reason: String,
    },
    /// Answer `501`.
    #[error("missing argument for {0}")]
    MissingArgument(&'static str),
}

/// Longest excerpt of client input quoted in errors and in `log_line`.
const LOG_CHARS: usize = 200;
const ERROR_EXCERPT: usize = 40;

/// Parses one line as framed by [`LineFramer`](super::LineFramer). TELNET
/// sequences are stripped first, so `IAC IP IAC DM ABOR` is `Abor`.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let stripped = strip_telnet(line);
    let line: &[u8] = &stripped;
    if line.iter().all(|&b| b == b' ') {
        return Err(CommandError::Empty);
    }
    let (verb_bytes, after_verb) = match line.iter().position(|&b| b == b' ') {
        Some(at) => line.split_at(at),
        None => (line, &[][..]),
    };
    if !(3..=4).contains(&verb_bytes.len()) || !verb_bytes.iter().all(u8::is_ascii_alphabetic) {
        return Err(CommandError::BadVerb(verb_excerpt(verb_bytes)));
    }
    let verb = String::from_utf8_lossy(verb_bytes).to_ascii_uppercase();
    // RFC 959 §5.3.2: no argument may contain CR or LF. A stray CR (the
    // framer cuts at LF only) would be forwarded, and some backends end a
    // line at a bare CR: that would let one client line become two
    // commands behind the gateway's back. NUL is refused too, because C
    // servers truncate at it.
    if line.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(CommandError::BadArgument {
            verb: static_verb(&verb),
            reason: "line contains CR, LF or NUL".to_owned(),
        });
    }
    // RFC 959 §5.3.2: <password> and <account-information> are <string>s,
    // which may begin with a space, so they are taken after exactly one
    // separator. Other arguments tolerate extra separators.
    let exact = after_verb.get(1..).unwrap_or_default();
    let arg = trim_spaces(after_verb);
    let raw = || line.to_vec();

    let command = match verb.as_str() {
        "USER" => Command::User(required("USER", arg)?.to_vec()),
        "PASS" => Command::Pass(Secret(exact.to_vec())),
        "ACCT" => Command::Acct(Secret(required("ACCT", exact)?.to_vec())),
        "AUTH" => Command::Auth(parse_mechanism(required("AUTH", arg)?)?),
        "PBSZ" => Command::Pbsz(parse_pbsz(required("PBSZ", arg)?)?),
        "PROT" => Command::Prot(parse_prot(required("PROT", arg)?)?),
        "CCC" => no_argument("CCC", arg, Command::Ccc)?,
        "PASV" => no_argument("PASV", arg, Command::Pasv)?,
        "EPSV" => Command::Epsv(parse_epsv(arg)?),
        "PORT" => Command::Port(parse_port_arg(required("PORT", arg)?).map_err(|e| {
            CommandError::BadArgument {
                verb: "PORT",
                reason: e.to_string(),
            }
        })?),
        "EPRT" => Command::Eprt(parse_eprt_arg(required("EPRT", arg)?).map_err(|e| {
            CommandError::BadArgument {
                verb: "EPRT",
                reason: e.to_string(),
            }
        })?),
        "FEAT" => no_argument("FEAT", arg, Command::Feat)?,
        "SYST" => no_argument("SYST", arg, Command::Syst)?,
        "NOOP" => no_argument("NOOP", arg, Command::Noop)?,
        "QUIT" => no_argument("QUIT", arg, Command::Quit)?,
        "REIN" => no_argument("REIN", arg, Command::Rein)?,
        "ABOR" => no_argument("ABOR", arg, Command::Abor)?,
        "OPTS" => Command::Opts(required("OPTS", arg)?.to_vec()),
        "REST" => Command::Rest(parse_rest(required("REST", arg)?)?),
        "TYPE" => Command::Type(required("TYPE", arg)?.to_vec()),
        "LIST" => transfer(TransferKind::List, raw()),
        "NLST" => transfer(TransferKind::Nlst, raw()),
        "MLSD" => transfer(TransferKind::Mlsd, raw()),
        "STOU" => transfer(TransferKind::Stou, raw()),
        // These name a file (RFC 959 §4.1.3); without one there is nothing
        // to open a data connection for.
        "RETR" => {
            required("RETR", arg)?;
            transfer(TransferKind::Retr, raw())
        }
        "STOR" => {
            required("STOR", arg)?;
            transfer(TransferKind::Stor, raw())
        }
        "APPE" => {
            required("APPE", arg)?;
            transfer(TransferKind::Appe, raw())
        }
        _ => Command::Other { verb, raw: raw() },
    };
    Ok(command)
}

/// Removes TELNET command sequences (RFC 854) from a control line. RFC 959
/// §4.1.3 has clients send ABOR as `IAC IP`, `IAC DM` (Synch) then `ABOR`;
/// `IAC IAC` is a literal 0xFF; `IAC WILL/WONT/DO/DONT x` are option
/// negotiation, which FTP does not use. A stray IAC before a non-command
/// byte is dropped and the byte kept. Borrows when there is no IAC.
pub fn strip_telnet(line: &[u8]) -> Cow<'_, [u8]> {
    if !line.contains(&IAC) {
        return Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied();
    while let Some(b) = bytes.next() {
        if b != IAC {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(IAC) => out.push(IAC),
            Some(WILL..=DONT) => {
                bytes.next();
            }
            Some(SE..=SB) | None => {}
            Some(data) => out.push(data),
        }
    }
    Cow::Owned(out)
}

/// Doubles every 0xFF, the inverse of the `IAC IAC` rule in
/// [`strip_telnet`]. `raw` lines are stored stripped; a raw line holding
/// 0xFF (e.g. a Latin-1 filename) must be escaped before it is forwarded,
/// or the backend would read it as the start of a TELNET command.
pub fn escape_telnet(line: &[u8]) -> Cow<'_, [u8]> {
    if !line.contains(&IAC) {
        return Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len() + 1);
    for &b in line {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    Cow::Owned(out)
}

impl Command {
    /// The line forwarded to the backend for this command, without CRLF: the
    /// verb in upper case, one space and the argument as parsed, with every
    /// 0xFF doubled ([`escape_telnet`]). It is rebuilt from the checked value,
    /// never copied from the client's bytes, so what the backend executes is
    /// exactly what policy saw: TELNET sequences (`IAC WILL <CR>`), which the
    /// check strips, cannot smuggle a CR or NUL through to a backend that ends
    /// lines at a bare CR. The canonical line is a fixed point: parsing it
    /// gives the same command (up to the case of a stored verb), whose
    /// canonical line is the same bytes.
    pub fn canonical(&self) -> Vec<u8> {
        let verb = self.verb().as_bytes();
        let arg: Cow<'_, [u8]> = match self {
            // The verb's case is not the client's to choose; the rest of the
            // stored line (separators included) is the argument as checked.
            Command::Transfer { raw, .. } | Command::Other { raw, .. } => {
                let mut line = verb.to_vec();
                line.extend_from_slice(raw.get(verb.len()..).unwrap_or_default());
                return escape_telnet(&line).into_owned();
            }
            Command::User(name) => Cow::Borrowed(name),
            Command::Pass(Secret(s)) | Command::Acct(Secret(s)) => Cow::Borrowed(s),
            Command::Auth(mechanism) => Cow::Borrowed(mechanism.as_bytes()),
            Command::Pbsz(size) => Cow::Borrowed(size.as_bytes()),
            Command::Prot(ProtLevel::Clear) => Cow::Borrowed(b"C"),
            Command::Prot(ProtLevel::Private) => Cow::Borrowed(b"P"),
            Command::Epsv(EpsvArg::None) => Cow::Borrowed(b""),
            Command::Epsv(EpsvArg::All) => Cow::Borrowed(b"ALL"),
            Command::Epsv(EpsvArg::Protocol(p)) => Cow::Owned(p.to_string().into_bytes()),
            Command::Port(addr) => Cow::Owned(render_port_arg(*addr).into_bytes()),
            Command::Eprt(addr) => Cow::Owned(render_eprt_arg(*addr).into_bytes()),
            Command::Opts(arg) | Command::Type(arg) => Cow::Borrowed(arg),
            Command::Rest(offset) => Cow::Owned(offset.to_string().into_bytes()),
            Command::Ccc
            | Command::Pasv
            | Command::Feat
            | Command::Syst
            | Command::Noop
            | Command::Quit
            | Command::Rein
            | Command::Abor => Cow::Borrowed(b""),
        };
        let mut line = Vec::with_capacity(verb.len() + 1 + arg.len());
        line.extend_from_slice(verb);
        if !arg.is_empty() {
            line.push(b' ');
            line.extend_from_slice(&arg);
        }
        escape_telnet(&line).into_owned()
    }

    /// The verb, uppercase.
    pub fn verb(&self) -> &str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Acct(_) => "ACCT",
            Command::Auth(_) => "AUTH",
            Command::Pbsz(_) => "PBSZ",
            Command::Prot(_) => "PROT",
            Command::Ccc => "CCC",
            Command::Pasv => "PASV",
            Command::Epsv(_) => "EPSV",
            Command::Port(_) => "PORT",
            Command::Eprt(_) => "EPRT",
            Command::Feat => "FEAT",
            Command::Syst => "SYST",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Rein => "REIN",
            Command::Abor => "ABOR",
            Command::Opts(_) => "OPTS",
            Command::Rest(_) => "REST",
            Command::Type(_) => "TYPE",
            Command::Transfer { kind, .. } => kind.verb(),
            Command::Other { verb, .. } => verb,
        }
    }

    /// The command for logs: `PASS ****` / `ACCT ****`, otherwise the line
    /// as lossy UTF-8, at most 200 characters, with control characters
    /// shown as `?` so a client cannot forge log lines or drive a terminal.
    pub fn log_line(&self) -> String {
        let line = match self {
            Command::Pass(_) | Command::Acct(_) => return format!("{} ****", self.verb()),
            Command::User(name) => with_arg("USER", &String::from_utf8_lossy(name)),
            Command::Auth(mechanism) => with_arg("AUTH", mechanism),
            Command::Pbsz(size) => with_arg("PBSZ", size),
            Command::Prot(ProtLevel::Clear) => "PROT C".to_owned(),
            Command::Prot(ProtLevel::Private) => "PROT P".to_owned(),
            Command::Epsv(EpsvArg::None) => "EPSV".to_owned(),
            Command::Epsv(EpsvArg::All) => "EPSV ALL".to_owned(),
            Command::Epsv(EpsvArg::Protocol(proto)) => format!("EPSV {proto}"),
            Command::Port(addr) => with_arg("PORT", &render_port_arg(*addr)),
            Command::Eprt(addr) => with_arg("EPRT", &render_eprt_arg(*addr)),
            Command::Opts(arg) => with_arg("OPTS", &String::from_utf8_lossy(arg)),
            Command::Rest(offset) => format!("REST {offset}"),
            Command::Type(arg) => with_arg("TYPE", &String::from_utf8_lossy(arg)),
            Command::Transfer { raw, .. } | Command::Other { raw, .. } => {
                String::from_utf8_lossy(raw).into_owned()
            }
            Command::Ccc
            | Command::Pasv
            | Command::Feat
            | Command::Syst
            | Command::Noop
            | Command::Quit
            | Command::Rein
            | Command::Abor => self.verb().to_owned(),
        };
        line.chars()
            .take(LOG_CHARS)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }
}

const IAC: u8 = 255;
const DONT: u8 = 254;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;

fn transfer(kind: TransferKind, raw: Vec<u8>) -> Command {
    Command::Transfer { kind, raw }
}

fn required<'a>(verb: &'static str, arg: &'a [u8]) -> Result<&'a [u8], CommandError> {
    if arg.is_empty() {
        Err(CommandError::MissingArgument(verb))
    } else {
        Ok(arg)
    }
}

/// RFC 959 §5.3.1 gives these commands no argument; one is refused rather
/// than silently dropped so that nothing the client sent is lost unseen.
fn no_argument(verb: &'static str, arg: &[u8], command: Command) -> Result<Command, CommandError> {
    if arg.is_empty() {
        Ok(command)
    } else {
        Err(bad(verb, "takes no argument", arg))
    }
}

/// RFC 2228 §3: the mechanism name is ASCII; RFC 4217 names `TLS`
/// (and historic `SSL`, `TLS-C`, `TLS-P`). Case-insensitive.
fn parse_mechanism(arg: &[u8]) -> Result<String, CommandError> {
    if !arg.iter().all(u8::is_ascii_graphic) {
        return Err(bad("AUTH", "mechanism must be printable ASCII", arg));
    }
    Ok(String::from_utf8_lossy(arg).to_ascii_uppercase())
}

/// RFC 2228 §3: `PBSZ <decimal-integer>`, a 32-bit value.
fn parse_pbsz(arg: &[u8]) -> Result<String, CommandError> {
    let digits = ascii_digits(arg).ok_or_else(|| bad("PBSZ", "not a decimal number", arg))?;
    digits
        .parse::<u32>()
        .map_err(|_| bad("PBSZ", "larger than 32 bits", arg))?;
    Ok(digits.to_owned())
}

fn parse_prot(arg: &[u8]) -> Result<ProtLevel, CommandError> {
    match arg {
        b"C" | b"c" => Ok(ProtLevel::Clear),
        b"P" | b"p" => Ok(ProtLevel::Private),
        _ => Err(bad("PROT", "only C and P are supported", arg)),
    }
}

fn parse_epsv(arg: &[u8]) -> Result<EpsvArg, CommandError> {
    if arg.is_empty() {
        return Ok(EpsvArg::None);
    }
    if arg.eq_ignore_ascii_case(b"ALL") {
        return Ok(EpsvArg::All);
    }
    ascii_digits(arg)
        .and_then(|digits| digits.parse::<u8>().ok())
        .map(EpsvArg::Protocol)
        .ok_or_else(|| bad("EPSV", "expected ALL or a protocol number", arg))
}

/// RFC 3659 §5.1: in STREAM mode the marker is a decimal byte offset.
fn parse_rest(arg: &[u8]) -> Result<u64, CommandError> {
    ascii_digits(arg)
        .and_then(|digits| digits.parse::<u64>().ok())
        .ok_or_else(|| bad("REST", "expected a decimal byte offset", arg))
}

/// `arg` as `&str` if it is all ASCII digits (`str::parse` alone would
/// also take a leading `+`).
fn ascii_digits(arg: &[u8]) -> Option<&str> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()
}

fn bad(verb: &'static str, why: &str, arg: &[u8]) -> CommandError {
    CommandError::BadArgument {
        verb,
        reason: format!("{why}: {:?}", excerpt(arg, ERROR_EXCERPT)),
    }
}

/// The static name of a verb for error values; verbs outside this list
/// are reported as "command".
fn static_verb(verb: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "USER", "PASS", "ACCT", "AUTH", "PBSZ", "PROT", "CCC", "PASV", "EPSV", "PORT", "EPRT",
        "FEAT", "SYST", "NOOP", "QUIT", "REIN", "ABOR", "OPTS", "REST", "TYPE", "LIST", "NLST",
        "MLSD", "RETR", "STOR", "STOU", "APPE", "CWD", "CDUP", "PWD", "MKD", "RMD", "DELE", "RNFR",
        "RNTO", "SIZE", "MDTM", "MLST", "SITE", "STAT", "HELP", "MODE", "STRU", "ALLO", "SMNT",
        "HOST", "LANG", "CLNT", "ADAT", "MIC", "CONF", "ENC",
    ];
    KNOWN
        .iter()
        .copied()
        .find(|known| *known == verb)
        .unwrap_or("command")
}

fn with_arg(verb: &str, arg: &str) -> String {
    format!("{verb} {arg}")
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// The malformed verb as quoted in errors (and so in logs): a token that
/// starts like PASS or ACCT (e.g. `PASS<TAB>secret`, `PASSsecret`) may carry a
/// secret, so only its first four letters are shown.
fn verb_excerpt(verb: &[u8]) -> String {
    let head = verb.get(..4).unwrap_or(verb);
    if head.eq_ignore_ascii_case(b"PASS") || head.eq_ignore_ascii_case(b"ACCT") {
        return format!("{}****", String::from_utf8_lossy(head));
    }
    excerpt(verb, ERROR_EXCERPT)
}

fn excerpt(bytes: &[u8], max_chars: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(max_chars)
        .collect()
}
