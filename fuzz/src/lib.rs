//! Helpers shared by the fuzz targets: the same framing path the session
//! shell uses (bytes → `LineFramer` → `ReplyAssembler`), so targets feed the
//! pure control code only inputs it can really receive.

use ftpsgate::control::{Framed, LineFramer, Reply, ReplyAssembler, MAX_LINE};

/// Every complete reply in `bytes`, framed with the production bound. Lines
/// that are too long or do not start a reply are skipped, as the session would
/// fail or `500` them; the assembler carries on after an error.
pub fn replies(bytes: &[u8]) -> Vec<Reply> {
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(bytes);
    let mut assembler = ReplyAssembler::new();
    let mut out = Vec::new();
    while let Some(item) = framer.next_line() {
        if let Framed::Line(line) = item {
            if let Ok(Some(reply)) = assembler.push_line(line) {
                out.push(reply);
            }
        }
    }
    out
}

/// Parses the wire form of `reply` back; panics unless it is exactly one reply
/// equal to `reply`, with nothing left over.
pub fn assert_reparses(reply: &Reply) {
    let wire = reply.to_bytes();
    let mut framer = LineFramer::new(MAX_LINE.max(wire.len()));
    framer.push(&wire);
    let mut assembler = ReplyAssembler::new();
    let mut got = Vec::new();
    while let Some(item) = framer.next_line() {
        let Framed::Line(line) = item else {
            panic!("reply line too long on re-parse: {reply:?}");
        };
        match assembler.push_line(line) {
            Ok(Some(r)) => got.push(r),
            Ok(None) => {}
            Err(e) => panic!("reply does not re-parse ({e}): {reply:?}"),
        }
    }
    assert_eq!(framer.buffered(), 0, "wire form not CRLF-terminated");
    assert!(!assembler.in_progress(), "reply re-parses as unfinished: {reply:?}");
    assert_eq!(got.as_slice(), std::slice::from_ref(reply), "reply changed on re-parse");
}

/// Reads a `u8` from the front of `data`, or 0 when empty.
pub fn take_byte(data: &mut &[u8]) -> u8 {
    match data.split_first() {
        Some((&b, rest)) => {
            *data = rest;
            b
        }
        None => 0,
    }
}
