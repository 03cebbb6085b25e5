//! Behaviour tests for replies and multi-line reassembly (RFC 959 §4.2).
//! Pure data, no I/O.

use crate::control::{Reply, ReplyAssembler, ReplyError};

fn feed(assembler: &mut ReplyAssembler, line: &str) -> Result<Option<Reply>, ReplyError> {
    assembler.push_line(line.as_bytes().to_vec())
}

fn lines(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|text| text.as_bytes().to_vec()).collect()
}

// RFC 959 §4.2: "CODE text" on one line.
#[test]
fn single_line_reply_is_complete() {
    let mut assembler = ReplyAssembler::new();
    let reply = feed(&mut assembler, "220 ready").unwrap().unwrap();
    assert_eq!(reply.code, 220);
    assert_eq!(reply.text(), "ready");
    assert!(!assembler.in_progress());
}

#[test]
fn bare_code_is_a_complete_reply() {
    let mut assembler = ReplyAssembler::default();
    let reply = feed(&mut assembler, "220").unwrap().unwrap();
    assert_eq!(reply.code, 220);
    assert_eq!(reply.text(), "");
}

// RFC 959 §4.2: "123-First line", anything, "123 The last line".
#[test]
fn multi_line_reply_with_embedded_code_lines_ends_at_code_space() {
    let mut assembler = ReplyAssembler::new();
    let input = [
        "123-First line",
        "Second line",
        "  234 A line beginning with numbers",
        "123-not the end",
        "123x not the end either",
        "456 another code",
        "123",
        "123 The last line",
    ];
    let mut done = None;
    for (i, text) in input.iter().enumerate() {
        let out = feed(&mut assembler, text).unwrap();
        if i + 1 < input.len() {
            assert_eq!(out, None, "ended early at {text:?}");
            assert!(assembler.in_progress());
        } else {
            done = out;
        }
    }
    let reply = done.unwrap();
    assert_eq!(reply.code, 123);
    assert_eq!(reply.lines, lines(&input));
    assert!(!assembler.in_progress());
    assert!(reply.is_preliminary());
}

#[test]
fn replies_follow_each_other() {
    let mut assembler = ReplyAssembler::new();
    assert!(feed(&mut assembler, "150 Opening").unwrap().is_some());
    assert!(feed(&mut assembler, "226-Done").unwrap().is_none());
    let reply = feed(&mut assembler, "226 Bye").unwrap().unwrap();
    assert_eq!(reply.text(), "Done\nBye");
}

#[test]
fn malformed_first_lines_are_rejected() {
    for text in [
        "hello",
        "22",
        "620 no such class",
        "020 zero",
        "220x",
        "2a0 x",
        "",
    ] {
        let mut assembler = ReplyAssembler::new();
        assert!(
            matches!(feed(&mut assembler, text), Err(ReplyError::Malformed(_))),
            "{text:?}"
        );
    }
}

#[test]
fn a_thousand_lines_are_fine_but_not_more() {
    let mut assembler = ReplyAssembler::new();
    feed(&mut assembler, "211-start").unwrap();
    for _ in 0..998 {
        assert_eq!(feed(&mut assembler, " x").unwrap(), None);
    }
    let reply = feed(&mut assembler, "211 end").unwrap().unwrap();
    assert_eq!(reply.lines.len(), 1000);

    feed(&mut assembler, "211-start").unwrap();
    for _ in 0..999 {
        feed(&mut assembler, " x").unwrap();
    }
    assert_eq!(
        feed(&mut assembler, "211 end"),
        Err(ReplyError::TooManyLines)
    );
    assert!(!assembler.in_progress());
}

#[test]
fn new_builds_one_line_and_neutralises_crlf() {
    let reply = Reply::new(530, "Login incorrect.");
    assert_eq!(reply.to_bytes(), b"530 Login incorrect.\r\n");
    let sneaky = Reply::new(200, "ok\r\n230 logged in");
    assert_eq!(sneaky.lines.len(), 1);
    assert_eq!(sneaky.to_bytes(), b"200 ok  230 logged in\r\n");
}

#[test]
fn multi_prefixes_middle_lines_with_a_space() {
    let reply = Reply::multi(211, &["Features:", "SIZE", "211 sneaky", "End"]);
    assert_eq!(
        reply.to_bytes(),
        b"211-Features:\r\n SIZE\r\n 211 sneaky\r\n211 End\r\n"
    );
    assert_eq!(reply.text(), "Features:\nSIZE\n211 sneaky\nEnd");
    assert_eq!(Reply::multi(200, &["only"]), Reply::new(200, "only"));
    assert_eq!(Reply::multi(200, &[]), Reply::new(200, ""));
}

#[test]
fn multi_output_reassembles_to_itself() {
    let reply = Reply::multi(230, &["Welcome", "230 not yet", "230-still not", "in"]);
    let mut assembler = ReplyAssembler::new();
    let mut out = None;
    for line in reply.lines.clone() {
        out = assembler.push_line(line).unwrap();
    }
    assert_eq!(out, Some(reply));
}

// RFC 959 §4.2.1: the first digit is the class.
#[test]
fn classes() {
    let r150 = Reply::new(150, "x");
    let r226 = Reply::new(226, "x");
    let r350 = Reply::new(350, "x");
    let r550 = Reply::new(550, "x");
    assert_eq!(r150.class(), 1);
    assert!(r150.is_preliminary() && !r150.is_final() && !r150.is_success());
    assert!(r226.is_final() && r226.is_success());
    assert!(r350.is_final() && !r350.is_success());
    assert_eq!(r550.class(), 5);
}

/// Found by the `reply` fuzz target: a gateway-built reply with more lines
/// than the assembler accepts did not re-parse. `multi` now keeps the first
/// and last line and as many middle lines as fit.
#[test]
fn multi_is_capped_at_the_reply_line_bound() {
    let parts: Vec<String> = (0..1500).map(|i| format!("line {i}")).collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let reply = Reply::multi(211, &refs);
    assert_eq!(reply.lines.len(), 1000);
    assert_eq!(
        reply.lines.last().map(Vec::as_slice),
        Some(&b"211 line 1499"[..])
    );
    let mut assembler = ReplyAssembler::new();
    let mut done = None;
    for line in &reply.lines {
        done = assembler.push_line(line.clone()).expect("re-parses");
    }
    assert_eq!(done, Some(reply));
}

// RFC 959 §4.2: inner lines that start with a code are padded, so a backend
// cannot slip a "227 …" line to a line-oriented client inside a 211 reply.
#[test]
fn padded_pads_inner_lines_that_look_like_replies() {
    let mut assembler = ReplyAssembler::new();
    for line in [
        "211-status",
        "227 Entering Passive Mode (10,1,2,3,4,5)",
        "150-x",
        "plain text",
        "2270",
    ] {
        assert_eq!(feed(&mut assembler, line).unwrap(), None);
    }
    let reply = feed(&mut assembler, "211 End").unwrap().unwrap().padded();
    assert_eq!(
        reply.lines,
        lines(&[
            "211-status",
            " 227 Entering Passive Mode (10,1,2,3,4,5)",
            " 150-x",
            "plain text",
            "2270",
            "211 End"
        ])
    );
    let single = Reply::new(227, "Entering Passive Mode (1,2,3,4,5,6)");
    assert_eq!(single.clone().padded(), single);
}
