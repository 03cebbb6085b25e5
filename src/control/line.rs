//! Control-channel line framer: turns the byte stream of one control
//! connection (either side) into lines, bounded in length.
//!
//! It sits between the socket (or TLS) reads in the session shell and
//! [`parse_command`](super::parse_command) / [`ReplyAssembler`](super::ReplyAssembler).
//! It must not do I/O, read a clock, interpret the lines, or buffer an
//! overlong line without bound: a peer that never sends `\n` must cost at most
//! about `max_line` bytes.

use std::collections::VecDeque;

/// Default bound on one control line, terminator excluded. RFC 959 sets no
/// limit; 4 KiB is far above any real command (paths included) and small
/// enough that a hostile peer cannot grow our memory.
pub const MAX_LINE: usize = 4096;

/// One unit cut out of the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// A complete line without its `\n` and without one `\r` before it.
    Line(Vec<u8>),
    /// A line exceeded the bound; its bytes up to and including its `\n`
    /// are dropped. The session answers `500` and carries on.
    TooLong,
}

/// Incremental framer for CRLF-terminated lines (RFC 959 §4: `<CRLF>` ends
/// every command and reply line); bare `\n` is accepted because sloppy
/// clients send it.
///
/// Framing is done eagerly in [`push`](Self::push) so that an overlong line
/// is detected and dropped while it arrives, not after it has been buffered.
#[derive(Debug)]
pub struct LineFramer {
    /// Bound on a line's content, fixed at construction.
    max_line: usize,
    /// Items already cut from the stream, in arrival order, each with the
    /// number of received bytes it stands for; drained by `next_line`.
    ready: VecDeque<(Framed, usize)>,
    /// Sum of the byte counts in `ready`, so `buffered` is O(1).
    ready_bytes: usize,
    /// The line being received; never longer than `max_line + 1` (the `+ 1`
    /// leaves room for a `\r` whose `\n` is still in flight).
    partial: Vec<u8>,
    /// Set once `TooLong` is queued for a line whose `\n` has not arrived:
    /// bytes are dropped until it does.
    discarding: bool,
}

impl LineFramer {
    /// A framer that reports lines longer than `max_line` bytes as
    /// [`Framed::TooLong`].
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            max_line,
            ready: VecDeque::new(),
            ready_bytes: 0,
            partial: Vec::new(),
            discarding: false,
        }
    }

    /// Appends bytes received from the peer. Complete lines queue up until
    /// taken with `next_line`; the shell should drain them before reading
    /// again, since only the line in progress is bounded here.
    pub fn push(&mut self, data: &[u8]) {
        let mut data = data;
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            if self.discarding {
                match newline {
                    Some(at) => {
                        self.discarding = false;
                        data = data.get(at + 1..).unwrap_or_default();
                    }
                    None => return,
                }
                continue;
            }
            match newline {
                Some(at) => {
                    let (body, rest) = data.split_at(at);
                    self.finish_line(body);
                    data = rest.get(1..).unwrap_or_default();
                }
                None => {
                    self.extend_partial(data);
                    return;
                }
            }
        }
    }

    /// The next line or `TooLong`, in stream order; `None` means more bytes
    /// are needed.
    pub fn next_line(&mut self) -> Option<Framed> {
        let (item, raw_len) = self.ready.pop_front()?;
        self.ready_bytes = self.ready_bytes.saturating_sub(raw_len);
        Some(item)
    }

    /// Bytes received but not yet handed out by `next_line`, terminators
    /// included. After `234` to `AUTH TLS` this must be zero: anything else
    /// is plaintext pipelined behind AUTH, which a man in the middle could
    /// have injected to be run as if it came over TLS (the STARTTLS command
    /// injection class, CVE-2011-0411). Bytes already dropped from an overlong line are not
    /// counted, but its pending `TooLong` is.
    pub fn buffered(&self) -> usize {
        self.ready_bytes.saturating_add(self.partial.len())
    }

    /// Closes the current line with `body` (the bytes before its `\n`).
    fn finish_line(&mut self, body: &[u8]) {
        let total = self.partial.len().saturating_add(body.len());
        let last = body.last().or(self.partial.last()).copied();
        let content = if last == Some(b'\r') {
            total.saturating_sub(1)
        } else {
            total
        };
        let raw_len = total.saturating_add(1);
        if content > self.max_line {
            self.partial.clear();
            self.enqueue(Framed::TooLong, raw_len);
            return;
        }
        self.partial.extend_from_slice(body);
        if last == Some(b'\r') {
            self.partial.pop();
        }
        let line = std::mem::take(&mut self.partial);
        self.enqueue(Framed::Line(line), raw_len);
    }

    /// Adds bytes of a line whose `\n` has not arrived yet, switching to
    /// discard mode as soon as the line is certain to be too long.
    fn extend_partial(&mut self, data: &[u8]) {
        let total = self.partial.len().saturating_add(data.len());
        let last = data.last().or(self.partial.last()).copied();
        let room = self.max_line.saturating_add(1);
        // A line of exactly `max_line + 1` bytes ending in `\r` may still
        // turn out to be a legal line once its `\n` arrives.
        let overlong = total > room || (total == room && last != Some(b'\r'));
        if overlong {
            self.partial.clear();
            self.discarding = true;
            self.enqueue(Framed::TooLong, total);
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    fn enqueue(&mut self, item: Framed, raw_len: usize) {
        self.ready_bytes = self.ready_bytes.saturating_add(raw_len);
        self.ready.push_back((item, raw_len));
    }
}
