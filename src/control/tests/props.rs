//! Property tests (code-style §6): parse(render(x)) == x for every address
//! form, and stream parsing independent of how bytes are chunked.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

use super::{drain, frame_all};
use crate::control::{
    parse_227, parse_229, parse_command, parse_eprt_arg, parse_port_arg, render_227, render_229,
    render_eprt_arg, render_port_arg, Framed, LineFramer, Reply, ReplyAssembler, ReplyError,
};

fn v4_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), 1..=u16::MAX).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

fn v6_addr() -> impl Strategy<Value = SocketAddrV6> {
    (any::<u128>(), 1..=u16::MAX)
        .prop_map(|(ip, port)| SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
}

/// Bytes biased toward line structure so short inputs hit CR/LF cases.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(b'a'),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

/// Split `input` at the given points (taken modulo the length, sorted).
fn chunks(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for point in points.into_iter().chain([input.len()]) {
        out.push(input[from..point].to_vec());
        from = point;
    }
    out
}

fn frame_chunked(input: &[u8], cuts: &[usize], max_line: usize) -> Vec<Framed> {
    let mut framer = LineFramer::new(max_line);
    let mut got = Vec::new();
    for chunk in chunks(input, cuts) {
        framer.push(&chunk);
        got.extend(drain(&mut framer));
        assert!(
            framer.buffered() <= max_line + 1,
            "holds {} bytes of a partial line",
            framer.buffered()
        );
    }
    got
}

/// Replies out of `input`, run through a framer chunk by chunk; stops at the
/// first error like a session would.
fn replies_chunked(input: &[u8], cuts: &[usize]) -> Vec<Result<Reply, ReplyError>> {
    let mut framer = LineFramer::new(64);
    let mut assembler = ReplyAssembler::new();
    let mut out = Vec::new();
    for chunk in chunks(input, cuts) {
        framer.push(&chunk);
        while let Some(framed) = framer.next_line() {
            let Framed::Line(line) = framed else {
                continue;
            };
            match assembler.push_line(line) {
                Ok(Some(reply)) => out.push(Ok(reply)),
                Ok(None) => {}
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fn reply_stream() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("220 ready".to_owned()),
        Just("123-start".to_owned()),
        Just("123 end".to_owned()),
        Just("123-inner".to_owned()),
        Just("123x".to_owned()),
        Just("211-Features:".to_owned()),
        Just(" SIZE".to_owned()),
        Just("211 End".to_owned()),
        "[0-9 a-]{0,8}",
    ];
    prop::collection::vec((line, prop::bool::ANY), 0..30).prop_map(|lines| {
        let mut out = Vec::new();
        for (line, crlf) in lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        out
    })
}

proptest! {
    #[test]
    fn render_227_round_trips(addr in v4_addr()) {
        prop_assert_eq!(parse_227(&render_227(addr)), Ok(addr));
    }

    #[test]
    fn render_229_round_trips(port in 1..=u16::MAX) {
        prop_assert_eq!(parse_229(&render_229(port)), Ok(port));
    }

    #[test]
    fn port_arg_round_trips(addr in v4_addr()) {
        prop_assert_eq!(parse_port_arg(render_port_arg(addr).as_bytes()), Ok(addr));
    }

    #[test]
    fn eprt_arg_round_trips_v4(addr in v4_addr()) {
        let addr = SocketAddr::V4(addr);
        prop_assert_eq!(parse_eprt_arg(render_eprt_arg(addr).as_bytes()), Ok(addr));
    }

    #[test]
    fn eprt_arg_round_trips_v6(addr in v6_addr()) {
        let addr = SocketAddr::V6(addr);
        prop_assert_eq!(parse_eprt_arg(render_eprt_arg(addr).as_bytes()), Ok(addr));
    }

    #[test]
    fn framer_is_independent_of_chunking(
        input in stream_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        max_line in 0usize..16,
    ) {
        let whole = frame_all(&input, max_line);
        let chunked = frame_chunked(&input, &cuts, max_line);
        prop_assert_eq!(&whole, &chunked);
        for framed in &whole {
            if let Framed::Line(line) = framed {
                prop_assert!(line.len() <= max_line);
                prop_assert!(!line.contains(&b'\n'));
            }
        }
    }

    #[test]
    fn framer_matches_a_split_on_lf(input in stream_bytes(), max_line in 0usize..16) {
        let mut expected = Vec::new();
        let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        pieces.pop(); // the unterminated tail is not a line
        for piece in pieces {
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            expected.push(if piece.len() > max_line {
                Framed::TooLong
            } else {
                Framed::Line(piece.to_vec())
            });
        }
        let mut got = frame_all(&input, max_line);
        // An unterminated overlong tail is reported before its LF arrives.
        let tail = input.rsplit(|&b| b == b'\n').next().unwrap_or_default();
        if tail.len() > max_line + 1 || (tail.len() == max_line + 1 && tail.last() != Some(&b'\r')) {
            prop_assert_eq!(got.pop(), Some(Framed::TooLong));
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn replies_are_independent_of_chunking(
        input in reply_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        prop_assert_eq!(replies_chunked(&input, &[]), replies_chunked(&input, &cuts));
    }

    #[test]
    fn parse_command_never_panics(line in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_command(&line);
    }

    #[test]
    fn parse_command_never_panics_on_near_commands(
        verb in "(?i)(USER|PASS|ACCT|AUTH|PBSZ|PROT|PORT|EPRT|EPSV|REST|TYPE|OPTS|RETR|LIST|SITE)",
        arg in prop::collection::vec(any::<u8>(), 0..60),
    ) {
        let mut line = verb.into_bytes();
        line.push(b' ');
        line.extend_from_slice(&arg);
        if let Ok(command) = parse_command(&line) {
            let logged = command.log_line();
            prop_assert!(logged.chars().count() <= 200);
            prop_assert!(!logged.chars().any(char::is_control));
        }
    }

    #[test]
    fn address_parsers_never_panic(text in "[0-9,|()!. a-f:]{0,40}") {
        let _ = parse_port_arg(text.as_bytes());
        let _ = parse_eprt_arg(text.as_bytes());
        let _ = parse_227(&Reply::new(227, &text));
        let _ = parse_229(&Reply::new(229, &text));
    }
}
