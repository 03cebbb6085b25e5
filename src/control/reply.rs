//! Server replies: building the gateway's own replies and reassembling the
//! backend's possibly multi-line replies from framed lines (RFC 959 §4.2).
//!
//! Input lines come from a [`LineFramer`](super::LineFramer) on the backend
//! leg. This module must not do I/O, rewrite reply text, or assume one read
//! carries one reply: replies are parsed as a stream of lines.

/// Hard bound on lines in one reply, so a hostile or broken backend cannot
/// make us buffer an endless multi-line reply.
const MAX_REPLY_LINES: usize = 1000;

/// Longest excerpt of a bad line quoted in an error, to keep logs bounded.
const ERROR_EXCERPT: usize = 80;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code, 100..=599 for parsed replies.
    pub code: u16,
    /// Raw lines including their code prefix, without CRLF. Kept raw so that
    /// a relayed reply reaches the client byte-for-byte.
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    /// A single-line reply `CODE text`. CR and LF in `text` become spaces:
    /// a reply built from config or error text must not be able to end
    /// early and smuggle a second reply onto the wire.
    pub fn new(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![format!("{code:03} {}", single_line(text)).into_bytes()],
        }
    }

    /// A multi-line reply: `CODE-first`, ` middle` lines, `CODE last`.
    /// Middle lines get one leading space so that none of them can look like
    /// the terminating `CODE ` line (RFC 959 §4.2 advises this padding).
    /// With one line (or none) this is [`Reply::new`]. Middle lines beyond
    /// the 1000-line reply bound are dropped, so that every reply the gateway
    /// builds is one its own [`ReplyAssembler`] (and a client with the same
    /// bound) accepts.
    pub fn multi(code: u16, lines: &[&str]) -> Reply {
        let (first, rest) = match lines.split_first() {
            Some(split) => split,
            None => return Reply::new(code, ""),
        };
        let (last, middle) = match rest.split_last() {
            Some(split) => split,
            None => return Reply::new(code, first),
        };
        let middle = &middle[..middle.len().min(MAX_REPLY_LINES - 2)];
        let mut out = Vec::with_capacity(middle.len() + 2);
        out.push(format!("{code:03}-{}", single_line(first)).into_bytes());
        out.extend(
            middle
                .iter()
                .map(|line| format!(" {}", single_line(line)).into_bytes()),
        );
        out.push(format!("{code:03} {}", single_line(last)).into_bytes());
        Reply { code, lines: out }
    }

    /// Wire form: every line followed by CRLF (RFC 959 §4.2: replies are
    /// sent with `<CRLF>` even to clients that send bare LF).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = self.lines.iter().map(|line| line.len() + 2).sum();
        let mut out = Vec::with_capacity(len);
        for line in &self.lines {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Human text: lines joined by `\n`, with the `CODE-`/`CODE ` prefix
    /// removed where a line has one and the padding space removed from
    /// middle lines. For logs and for searching (e.g. the 227 tuple).
    pub fn text(&self) -> String {
        let prefix = format!("{:03}", self.code);
        let texts: Vec<String> = self
            .lines
            .iter()
            .map(|line| {
                let body = strip_code(line, prefix.as_bytes())
                    .or_else(|| line.strip_prefix(b" "))
                    .unwrap_or(line);
                String::from_utf8_lossy(body).into_owned()
            })
            .collect();
        texts.join("\n")
    }

    /// First digit of the code (RFC 959 §4.2.1): 1 preliminary, 2 success,
    /// 3 intermediate, 4 transient failure, 5 permanent failure.
    /// The reply with every inner line of a multi-line reply that looks like
    /// a reply line of its own (`227 …`, `150-…`) padded with a space.
    /// RFC 959 §4.2: "the server must pad the front to avoid confusion" — a
    /// backend must not slip a line past the gateway that a line-oriented
    /// client takes for a reply (a `227` with an internal address).
    pub fn padded(mut self) -> Reply {
        let n = self.lines.len();
        if n > 2 {
            for line in &mut self.lines[1..n - 1] {
                if reply_code(line).is_some() && matches!(line.get(3), None | Some(b' ' | b'-')) {
                    line.insert(0, b' ');
                }
            }
        }
        self
    }

    /// The first digit of the code (1 preliminary … 5 permanent failure).
    pub fn class(&self) -> u8 {
        u8::try_from(self.code / 100).unwrap_or(u8::MAX)
    }

    /// 1xx: more replies follow for this command (e.g. `150` before `226`).
    pub fn is_preliminary(&self) -> bool {
        self.class() == 1
    }

    /// Not 1xx: the command is finished from the server's point of view.
    pub fn is_final(&self) -> bool {
        !self.is_preliminary()
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        self.class() == 2
    }
}

/// A reply line that cannot start a reply, or a reply that is too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The backend sent a line that does not start with a reply code.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// The backend sent more than 1000 lines in one reply.
    #[error("reply has too many lines")]
    TooManyLines,
}

/// Reassembles replies from lines, one line at a time, so that a reply split
/// over several reads (or several replies in one read) come out whole.
#[derive(Debug, Default)]
pub struct ReplyAssembler {
    /// The multi-line reply being received: its code, the code's three
    /// ASCII digits (to match the terminating line), and its lines so far.
    /// `None` between replies.
    pending: Option<(u16, [u8; 3], Vec<Vec<u8>>)>,
}

impl ReplyAssembler {
    /// An assembler waiting for the first line of a reply.
    pub fn new() -> Self {
        ReplyAssembler { pending: None }
    }

    /// Feeds one line (without CRLF). Returns the reply once its last line
    /// arrived. After an error the partial reply is dropped; the caller is
    /// expected to treat the backend as broken.
    pub fn push_line(&mut self, line: Vec<u8>) -> Result<Option<Reply>, ReplyError> {
        if let Some((code, digits, mut lines)) = self.pending.take() {
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            // RFC 959 §4.2: only "the same code followed by Space" ends a
            // multi-line reply; inner lines may start with anything,
            // including other codes or the same code followed by '-'.
            let ends = line.get(..3) == Some(&digits[..]) && line.get(3) == Some(&b' ');
            lines.push(line);
            if ends {
                return Ok(Some(Reply { code, lines }));
            }
            self.pending = Some((code, digits, lines));
            return Ok(None);
        }

        let (code, digits) = reply_code(&line).ok_or_else(|| malformed(&line))?;
        match line.get(3) {
            // A bare code is not RFC 959 text, but some servers send it and
            // it is unambiguous.
            None | Some(b' ') => Ok(Some(Reply {
                code,
                lines: vec![line],
            })),
            Some(b'-') => {
                self.pending = Some((code, digits, vec![line]));
                Ok(None)
            }
            Some(_) => Err(malformed(&line)),
        }
    }

    /// True inside a multi-line reply. A backend that closes now has cut a
    /// reply short.
    pub fn in_progress(&self) -> bool {
        self.pending.is_some()
    }
}

/// The code of a reply's first line: three digits, the first 1-5
/// (RFC 959 §4.2.1 defines no other classes).
fn reply_code(line: &[u8]) -> Option<(u16, [u8; 3])> {
    let digits: [u8; 3] = line.get(..3)?.try_into().ok()?;
    let [a, b, c] = digits;
    if !(b'1'..=b'5').contains(&a) || !b.is_ascii_digit() || !c.is_ascii_digit() {
        return None;
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    Some((code, digits))
}

fn strip_code<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(prefix)?;
    match rest.split_first() {
        None => Some(rest),
        Some((b' ' | b'-', text)) => Some(text),
        Some(_) => None,
    }
}

fn single_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn malformed(line: &[u8]) -> ReplyError {
    let text: String = String::from_utf8_lossy(line)
        .chars()
        .take(ERROR_EXCERPT)
        .collect();
    ReplyError::Malformed(text)
}
