//! Behaviour tests for the line framer (RFC 959 §4 line endings, length bound,
//! chunking, STARTTLS-injection byte count). No I/O: byte strings only.

use super::{drain, frame_all, line};
use crate::control::{Framed, LineFramer, MAX_LINE};

// RFC 959 §4: command and reply lines end in <CRLF>.
#[test]
fn crlf_terminated_lines_exclude_the_terminator() {
    assert_eq!(
        frame_all(b"USER bob\r\nPASS x\r\n", MAX_LINE),
        vec![line("USER bob"), line("PASS x")]
    );
}

// Sloppy clients send bare LF; accepted (ftp-protocol notes, "Control channel").
#[test]
fn bare_lf_terminates_a_line() {
    assert_eq!(
        frame_all(b"NOOP\nQUIT\r\n", MAX_LINE),
        vec![line("NOOP"), line("QUIT")]
    );
}

#[test]
fn only_one_cr_before_lf_is_removed() {
    assert_eq!(frame_all(b"NOOP\r\r\n", MAX_LINE), vec![line("NOOP\r")]);
}

#[test]
fn cr_without_lf_is_not_a_terminator() {
    assert_eq!(frame_all(b"A\rB\r\n", MAX_LINE), vec![line("A\rB")]);
}

#[test]
fn empty_line_is_returned_as_empty() {
    assert_eq!(frame_all(b"\r\n\n", MAX_LINE), vec![line(""), line("")]);
}

#[test]
fn incomplete_line_needs_more_bytes() {
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(b"NOOP\r");
    assert_eq!(framer.next_line(), None);
    framer.push(b"\n");
    assert_eq!(framer.next_line(), Some(line("NOOP")));
    assert_eq!(framer.next_line(), None);
}

// Never assume one read = one line (RFC 959 §4 is a byte stream over TCP).
#[test]
fn one_byte_at_a_time_yields_the_same_lines() {
    let input = b"USER bob\r\nPASS secret\nLIST /tmp\r\n";
    let mut framer = LineFramer::new(MAX_LINE);
    let mut got = Vec::new();
    for byte in input {
        framer.push(std::slice::from_ref(byte));
        got.extend(drain(&mut framer));
    }
    assert_eq!(
        got,
        vec![line("USER bob"), line("PASS secret"), line("LIST /tmp")]
    );
}

// Bounded lines: an overlong line gets 500, then the session carries on.
#[test]
fn overlong_line_yields_too_long_once_then_next_line() {
    let mut input = vec![b'A'; 20];
    input.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(frame_all(&input, 8), vec![Framed::TooLong, line("NOOP")]);
}

#[test]
fn overlong_line_in_chunks_is_discarded_as_it_arrives() {
    let mut framer = LineFramer::new(8);
    for _ in 0..1000 {
        framer.push(b"AAAAAAAAAAAAAAAA");
        assert!(framer.buffered() <= 16 + 9, "holds {}", framer.buffered());
    }
    assert_eq!(framer.next_line(), Some(Framed::TooLong));
    for _ in 0..1000 {
        framer.push(b"AAAAAAAAAAAAAAAA");
    }
    assert_eq!(framer.next_line(), None);
    assert_eq!(framer.buffered(), 0);
    framer.push(b"AAA\r\nNOOP\r\n");
    assert_eq!(framer.next_line(), Some(line("NOOP")));
    assert_eq!(framer.next_line(), None);
}

#[test]
fn line_of_exactly_max_is_accepted_even_with_cr_split_off() {
    let mut framer = LineFramer::new(4);
    framer.push(b"ABCD\r");
    assert_eq!(framer.next_line(), None);
    framer.push(b"\n");
    assert_eq!(framer.next_line(), Some(line("ABCD")));
}

#[test]
fn line_of_max_plus_one_is_too_long() {
    assert_eq!(
        frame_all(b"ABCDE\r\nOK\r\n", 4),
        vec![Framed::TooLong, line("OK")]
    );
}

// STARTTLS injection: bytes after "AUTH TLS" must be visible to the session.
#[test]
fn buffered_counts_pipelined_bytes_after_a_returned_line() {
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(b"AUTH TLS\r\nUSER evil\r\nPA");
    assert_eq!(framer.buffered(), 23);
    assert_eq!(framer.next_line(), Some(line("AUTH TLS")));
    assert_eq!(framer.buffered(), 13);
    assert_eq!(framer.next_line(), Some(line("USER evil")));
    assert_eq!(framer.buffered(), 2);
}

#[test]
fn buffered_is_zero_after_a_clean_auth() {
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(b"AUTH TLS\r\n");
    assert_eq!(framer.next_line(), Some(line("AUTH TLS")));
    assert_eq!(framer.buffered(), 0);
}

#[test]
fn buffered_counts_a_pending_too_long() {
    let mut framer = LineFramer::new(4);
    framer.push(b"AUTH\r\nXXXXXXXXXX");
    assert_eq!(framer.next_line(), Some(line("AUTH")));
    assert!(framer.buffered() > 0);
}
