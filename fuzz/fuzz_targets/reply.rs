//! `ReplyAssembler` fed the lines a `LineFramer` cuts from any backend byte
//! stream: no panic; every complete reply is well-formed (code 100..=599, first
//! line starts with it, a multi-line reply ends on `CODE `), its `to_bytes()`
//! re-parses to the same `Reply`, and `text()`/`class()` do not panic. Also the
//! gateway's own `Reply::new`/`Reply::multi` re-parse to themselves for any text.
//!
//! Input: byte 0 = mode; rest = backend stream, or code + text for own replies.
#![no_main]

use ftpsgate::control::{Framed, LineFramer, Reply, ReplyAssembler, ReplyError, MAX_LINE};
use ftpsgate_fuzz::{assert_reparses, take_byte};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mode = take_byte(&mut data);
    if mode & 0x80 == 0 {
        backend_stream(data);
    } else {
        own_reply(data);
    }
});

fn backend_stream(stream: &[u8]) {
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(stream);
    let mut assembler = ReplyAssembler::new();
    while let Some(item) = framer.next_line() {
        let Framed::Line(line) = item else { continue };
        let starts_reply = !assembler.in_progress();
        match assembler.push_line(line.clone()) {
            Ok(Some(reply)) => {
                assert!(!assembler.in_progress());
                check_reply(&reply);
                assert_eq!(reply.lines.last(), Some(&line));
            }
            Ok(None) => assert!(assembler.in_progress()),
            Err(ReplyError::Malformed(text)) => {
                assert!(starts_reply, "malformed is only for a first line");
                assert!(text.chars().count() <= 80);
                assert!(!assembler.in_progress());
            }
            Err(ReplyError::TooManyLines) => assert!(!assembler.in_progress()),
        }
    }
}

fn check_reply(reply: &Reply) {
    assert!((100..=599).contains(&reply.code), "code {}", reply.code);
    let digits = format!("{:03}", reply.code);
    let first = reply.lines.first().expect("a reply has a line");
    assert!(first.starts_with(digits.as_bytes()));
    let last = reply.lines.last().expect("a reply has a line");
    if reply.lines.len() > 1 {
        assert_eq!(first.get(3), Some(&b'-'));
        assert!(last.starts_with(digits.as_bytes()) && last.get(3) == Some(&b' '));
        assert!(reply.lines.len() <= 1000);
    } else {
        assert!(matches!(first.get(3), None | Some(b' ')));
    }
    let _ = reply.text();
    assert!((1..=5).contains(&reply.class()));
    assert_eq!(reply.is_final(), !reply.is_preliminary());
    assert_reparses(reply);
}

/// `Reply::new` / `Reply::multi` with a valid code: the text can never end
/// the reply early or smuggle a second one.
fn own_reply(data: &[u8]) {
    let mut data = data;
    let code = 100 + u16::from_le_bytes([take_byte(&mut data), take_byte(&mut data)]) % 500;
    let text = String::from_utf8_lossy(data);
    let single = Reply::new(code, &text);
    assert_eq!(single.lines.len(), 1);
    assert_reparses(&single);
    let parts: Vec<&str> = text.split('|').collect();
    let multi = Reply::multi(code, &parts);
    assert_eq!(multi.lines.len(), parts.len().clamp(1, 1000));
    assert_reparses(&multi);
    let _ = multi.text();
}
