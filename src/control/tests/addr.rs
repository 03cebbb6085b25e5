//! Behaviour tests for 227/229/PORT/EPRT parsing and rendering (RFC 959
//! §4.1.2, RFC 2428), using real server texts. Pure data, no I/O.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::control::{
    parse_227, parse_229, parse_eprt_arg, parse_port_arg, render_227, render_229, render_eprt_arg,
    render_port_arg, AddrError, Reply,
};

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)
}

fn reply(line: &str) -> Reply {
    Reply {
        code: line.get(..3).unwrap().parse().unwrap(),
        lines: vec![line.as_bytes().to_vec()],
    }
}

// RFC 959 §4.1.2 / §4.2: 227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).
#[test]
fn vsftpd_227_parses() {
    assert_eq!(
        parse_227(&reply("227 Entering Passive Mode (127,0,0,1,156,64).")),
        Ok(v4(127, 0, 0, 1, 156 * 256 + 64))
    );
}

#[test]
fn parenthesis_free_227_parses() {
    assert_eq!(
        parse_227(&reply("227 Entering Passive Mode 10,1,2,3,4,5")),
        Ok(v4(10, 1, 2, 3, 1029))
    );
    assert_eq!(
        parse_227(&reply("227 =10,1,2,3,4,5")),
        Ok(v4(10, 1, 2, 3, 1029))
    );
}

#[test]
fn trailing_text_after_227_tuple_is_ignored() {
    assert_eq!(
        parse_227(&reply(
            "227 Entering Passive Mode (10,1,2,3,4,5). Use port 1029, 5 slots."
        )),
        Ok(v4(10, 1, 2, 3, 1029))
    );
}

#[test]
fn first_full_tuple_wins_over_shorter_number_groups() {
    assert_eq!(
        parse_227(&reply("227 v1,2 mode (10,1,2,3,4,5)")),
        Ok(v4(10, 1, 2, 3, 1029))
    );
}

#[test]
fn bad_227_is_malformed() {
    for text in [
        "227 Entering Passive Mode (127,0,0,1,156)",
        "227 Entering Passive Mode (127,0,0,1,156,64,1)",
        "227 Entering Passive Mode (127,0,0,256,156,64)",
        "227 Entering Passive Mode (127,0,0,1,0,0)",
        "227 nothing",
        "200 Entering Passive Mode (127,0,0,1,156,64)",
    ] {
        assert!(
            matches!(parse_227(&reply(text)), Err(AddrError::Malformed(_))),
            "{text}"
        );
    }
}

#[test]
fn render_227_uses_the_parenthesised_form() {
    assert_eq!(
        render_227(v4(192, 0, 2, 7, 50000)).to_bytes(),
        b"227 Entering Passive Mode (192,0,2,7,195,80).\r\n"
    );
}

// RFC 2428 §3: 229 Entering Extended Passive Mode (|||port|).
#[test]
fn proftpd_229_parses() {
    assert_eq!(
        parse_229(&reply("229 Entering Extended Passive Mode (|||55432|)")),
        Ok(55432)
    );
}

#[test]
fn any_printable_delimiter_is_accepted_in_229() {
    assert_eq!(parse_229(&reply("229 ok (!!!6446!)")), Ok(6446));
    assert_eq!(parse_229(&reply("229 (x) ok (###6446#)")), Ok(6446));
}

#[test]
fn bad_229_is_malformed() {
    for text in [
        "229 Entering Extended Passive Mode (|||0|)",
        "229 Entering Extended Passive Mode (|||65536|)",
        "229 Entering Extended Passive Mode (||6446|)",
        "229 Entering Extended Passive Mode (|!|6446|)",
        "229 Entering Extended Passive Mode (|||6446!)",
        "229 Entering Extended Passive Mode (|||6446|",
        "229 Entering Extended Passive Mode (   6446 )",
        "229 Entering Extended Passive Mode (|||+6446|)",
        "227 Entering Extended Passive Mode (|||6446|)",
    ] {
        assert!(parse_229(&reply(text)).is_err(), "{text}");
    }
}

#[test]
fn render_229_uses_pipes() {
    assert_eq!(
        render_229(6446).to_bytes(),
        b"229 Entering Extended Passive Mode (|||6446|)\r\n"
    );
}

// RFC 959 §4.1.2: PORT h1,h2,h3,h4,p1,p2.
#[test]
fn port_arg_round_trips() {
    let addr = v4(132, 235, 1, 2, 6275);
    assert_eq!(render_port_arg(addr), "132,235,1,2,24,131");
    assert_eq!(parse_port_arg(b"132,235,1,2,24,131"), Ok(addr));
    assert_eq!(parse_port_arg(b" 132,235,1,2,24,131 "), Ok(addr));
}

#[test]
fn bad_port_args_are_malformed() {
    for arg in [
        &b"132,235,1,2,24"[..],
        b"132,235,1,2,24,131,1",
        b"132,235,1,2,24,256",
        b"132,235,1,0002,24,131",
        b"132,235,1,2,24,131,",
        b"132,235,1,2,0,0",
        b"132, 235,1,2,24,131",
        b"",
    ] {
        assert!(parse_port_arg(arg).is_err(), "{arg:?}");
    }
}

// RFC 2428 §2: EPRT<SP><d><net-prt><d><net-addr><d><tcp-port><d>.
#[test]
fn eprt_examples_from_rfc_2428_parse() {
    assert_eq!(
        parse_eprt_arg(b"|1|132.235.1.2|6275|"),
        Ok(SocketAddr::V4(v4(132, 235, 1, 2, 6275)))
    );
    let ip: Ipv6Addr = "1080::8:800:200C:417A".parse().unwrap();
    assert_eq!(
        parse_eprt_arg(b"|2|1080::8:800:200C:417A|5282|"),
        Ok(SocketAddr::V6(SocketAddrV6::new(ip, 5282, 0, 0)))
    );
    assert_eq!(
        parse_eprt_arg(b"!1!132.235.1.2!6275!"),
        Ok(SocketAddr::V4(v4(132, 235, 1, 2, 6275)))
    );
}

#[test]
fn bad_eprt_args_are_malformed() {
    for arg in [
        &b"|1|1080::8:800:200C:417A|5282|"[..],
        b"|2|132.235.1.2|6275|",
        b"|3|132.235.1.2|6275|",
        b"|1|132.235.1.2|6275",
        b"|1|132.235.1.2|6275|x",
        b"|1|132.235.1.2|0|",
        b"|1|132.235.1.2|70000|",
        b"|1|132.235.1.2|+62|",
        b"|1|132.235.1.2||",
        b"1|1|132.235.1.2|6275|",
        b"\x7f1\x7f132.235.1.2\x7f6275\x7f",
        b"|2|fe80::1%eth0|6275|",
        b"",
    ] {
        assert!(parse_eprt_arg(arg).is_err(), "{arg:?}");
    }
}

#[test]
fn render_eprt_arg_matches_rfc_examples() {
    assert_eq!(
        render_eprt_arg(SocketAddr::V4(v4(132, 235, 1, 2, 6275))),
        "|1|132.235.1.2|6275|"
    );
    let ip: Ipv6Addr = "1080::8:800:200C:417A".parse().unwrap();
    assert_eq!(
        render_eprt_arg(SocketAddr::V6(SocketAddrV6::new(ip, 5282, 0, 0))),
        "|2|1080::8:800:200c:417a|5282|"
    );
}
