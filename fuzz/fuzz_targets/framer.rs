//! `LineFramer` under any chunking: never panics, never yields a line longer
//! than the bound or holding `\n`, yields exactly what a one-line reference
//! model says (split at LF, one CR stripped, overlong lines → `TooLong` once),
//! whatever the chunk boundaries and however reads and drains interleave, and
//! `buffered()` counts exactly the bytes not yet handed out.
//!
//! Input: byte 0 = bound (0..=63), byte 1 = seed for the cut points, rest = stream.
#![no_main]

use ftpsgate::control::{Framed, LineFramer};
use ftpsgate_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let max_line = usize::from(take_byte(&mut data) % 64);
    let seed = take_byte(&mut data);
    let stream = data;

    let expected = model(stream, max_line);

    // 1. All at once.
    let mut whole = LineFramer::new(max_line);
    whole.push(stream);
    let mut got = Vec::new();
    while let Some(item) = whole.next_line() {
        got.push(item);
    }
    assert_eq!(got, expected);
    assert_eq!(whole.buffered(), tail_kept(stream, max_line));

    // 2. One byte at a time, draining after every byte.
    let mut bytewise = LineFramer::new(max_line);
    let mut got = Vec::new();
    for b in stream {
        bytewise.push(std::slice::from_ref(b));
        while let Some(item) = bytewise.next_line() {
            got.push(item);
        }
    }
    assert_eq!(got, expected);
    assert_eq!(bytewise.buffered(), tail_kept(stream, max_line));

    // 3. Pseudo-random chunks (including empty ones), draining only sometimes,
    //    checking `buffered` against a byte count at every step.
    let mut chunked = LineFramer::new(max_line);
    let mut got = Vec::new();
    let mut state = u32::from(seed) | 1;
    let mut at = 0;
    while at < stream.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = (state as usize % 7).min(stream.len() - at);
        chunked.push(&stream[at..at + len]);
        at += len;
        if state & 0x100 != 0 {
            while let Some(item) = chunked.next_line() {
                got.push(item);
            }
        }
        // Never more than what was received.
        assert!(chunked.buffered() <= at);
    }
    while let Some(item) = chunked.next_line() {
        got.push(item);
    }
    assert_eq!(got, expected);
    assert_eq!(chunked.buffered(), tail_kept(stream, max_line));

    for item in &expected {
        if let Framed::Line(line) = item {
            assert!(line.len() <= max_line);
            assert!(!line.contains(&b'\n'));
        }
    }
});

/// The framer's contract as a one-shot function over the whole stream.
fn model(stream: &[u8], max_line: usize) -> Vec<Framed> {
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    // `split` always yields at least one item: the unterminated tail.
    let tail = segments.pop().unwrap_or_default();
    let mut out: Vec<Framed> = segments
        .into_iter()
        .map(|seg| {
            let content = seg.strip_suffix(b"\r").unwrap_or(seg);
            if content.len() > max_line {
                Framed::TooLong
            } else {
                Framed::Line(content.to_vec())
            }
        })
        .collect();
    if tail_overlong(tail, max_line) {
        out.push(Framed::TooLong);
    }
    out
}

/// An unterminated line is reported as soon as no `\n` can make it legal.
fn tail_overlong(tail: &[u8], max_line: usize) -> bool {
    tail.len() > max_line + 1 || (tail.len() == max_line + 1 && tail.last() != Some(&b'\r'))
}

/// Bytes still held after everything was drained: the unterminated tail,
/// unless it was already dropped as overlong.
fn tail_kept(stream: &[u8], max_line: usize) -> usize {
    let start = stream
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let tail = &stream[start..];
    if tail_overlong(tail, max_line) {
        0
    } else {
        tail.len()
    }
}
