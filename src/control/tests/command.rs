//! Behaviour tests for command parsing (RFC 959, 2228, 2428, 3659, 4217) and
//! TELNET stripping. They must never print a secret in an assertion message.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::control::{
    escape_telnet, parse_command, strip_telnet, Command, CommandError, Direction, EpsvArg,
    ProtLevel, Secret, TransferKind,
};

fn parse(line: &str) -> Result<Command, CommandError> {
    parse_command(line.as_bytes())
}

// RFC 959 §5.3: verbs are case-insensitive.
#[test]
fn lowercase_verbs_parse() {
    assert_eq!(parse("user bob"), Ok(Command::User(b"bob".to_vec())));
    assert_eq!(parse("NoOp"), Ok(Command::Noop));
    assert_eq!(parse("quit"), Ok(Command::Quit));
    assert_eq!(parse("pasv"), Ok(Command::Pasv));
}

#[test]
fn argumentless_commands_parse() {
    for (text, command) in [
        ("CCC", Command::Ccc),
        ("PASV", Command::Pasv),
        ("FEAT", Command::Feat),
        ("SYST", Command::Syst),
        ("NOOP", Command::Noop),
        ("QUIT", Command::Quit),
        ("REIN", Command::Rein),
        ("ABOR", Command::Abor),
    ] {
        assert_eq!(parse(text), Ok(command.clone()), "{text}");
        assert_eq!(command.verb(), text);
    }
}

#[test]
fn argumentless_command_with_argument_is_refused() {
    assert!(matches!(
        parse("NOOP now"),
        Err(CommandError::BadArgument { verb: "NOOP", .. })
    ));
}

#[test]
fn trailing_and_repeated_spaces_are_tolerated() {
    assert_eq!(parse("PASV "), Ok(Command::Pasv));
    assert_eq!(parse("USER   bob  "), Ok(Command::User(b"bob".to_vec())));
    assert_eq!(parse("TYPE  I"), Ok(Command::Type(b"I".to_vec())));
}

#[test]
fn user_without_argument_is_missing_argument() {
    assert_eq!(parse("USER"), Err(CommandError::MissingArgument("USER")));
    assert_eq!(parse("USER   "), Err(CommandError::MissingArgument("USER")));
}

// RFC 959 §5.3.2: <password> ::= <string>; an empty one is legal.
#[test]
fn pass_without_argument_is_an_empty_password() {
    assert_eq!(parse("PASS"), Ok(Command::Pass(Secret(vec![]))));
    assert_eq!(parse("PASS "), Ok(Command::Pass(Secret(vec![]))));
}

// RFC 959 §5.3.2: a <string> may contain spaces, at either end too.
#[test]
fn pass_keeps_spaces_after_the_separator() {
    assert_eq!(
        parse("PASS  s3cret "),
        Ok(Command::Pass(Secret(b" s3cret ".to_vec())))
    );
}

#[test]
fn secrets_never_show_in_debug_or_log() {
    let command = parse("PASS hunter2").unwrap();
    assert!(!format!("{command:?}").contains("hunter2"));
    assert_eq!(command.log_line(), "PASS ****");
    let account = parse("acct billing-42").unwrap();
    assert_eq!(account, Command::Acct(Secret(b"billing-42".to_vec())));
    assert!(!format!("{account:?}").contains("billing"));
    assert_eq!(account.log_line(), "ACCT ****");
}

// RFC 2228 §3 / RFC 4217: AUTH mechanism, case-insensitive.
#[test]
fn auth_mechanism_is_uppercased() {
    assert_eq!(parse("AUTH tls"), Ok(Command::Auth("TLS".into())));
    assert_eq!(parse("auth SSL"), Ok(Command::Auth("SSL".into())));
    assert_eq!(parse("AUTH tls-c"), Ok(Command::Auth("TLS-C".into())));
    assert_eq!(parse("AUTH"), Err(CommandError::MissingArgument("AUTH")));
}

#[test]
fn pbsz_takes_a_decimal() {
    assert_eq!(parse("PBSZ 0"), Ok(Command::Pbsz("0".into())));
    assert!(matches!(
        parse("PBSZ -1"),
        Err(CommandError::BadArgument { verb: "PBSZ", .. })
    ));
    assert!(matches!(
        parse("PBSZ 99999999999"),
        Err(CommandError::BadArgument { verb: "PBSZ", .. })
    ));
}

// RFC 2228 §3: PROT C/S/E/P; RFC 4217 uses only C and P.
#[test]
fn prot_c_and_p_parse() {
    assert_eq!(parse("PROT P"), Ok(Command::Prot(ProtLevel::Private)));
    assert_eq!(parse("prot c"), Ok(Command::Prot(ProtLevel::Clear)));
}

#[test]
fn prot_s_e_and_junk_are_bad_arguments() {
    for text in ["PROT S", "PROT E", "PROT X", "PROT PP"] {
        assert!(
            matches!(
                parse(text),
                Err(CommandError::BadArgument { verb: "PROT", .. })
            ),
            "{text}"
        );
    }
    assert_eq!(parse("PROT"), Err(CommandError::MissingArgument("PROT")));
}

// RFC 2428 §3.
#[test]
fn epsv_forms_parse() {
    assert_eq!(parse("EPSV"), Ok(Command::Epsv(EpsvArg::None)));
    assert_eq!(parse("EPSV ALL"), Ok(Command::Epsv(EpsvArg::All)));
    assert_eq!(parse("epsv all"), Ok(Command::Epsv(EpsvArg::All)));
    assert_eq!(parse("EPSV 1"), Ok(Command::Epsv(EpsvArg::Protocol(1))));
    assert_eq!(parse("EPSV 2"), Ok(Command::Epsv(EpsvArg::Protocol(2))));
    assert!(matches!(
        parse("EPSV x"),
        Err(CommandError::BadArgument { verb: "EPSV", .. })
    ));
}

// RFC 959 §4.1.2: PORT h1,h2,h3,h4,p1,p2.
#[test]
fn port_parses_to_a_socket_address() {
    assert_eq!(
        parse("PORT 192,168,1,2,7,138"),
        Ok(Command::Port(SocketAddrV4::new(
            Ipv4Addr::new(192, 168, 1, 2),
            7 * 256 + 138
        )))
    );
}

#[test]
fn port_with_256_is_a_bad_argument() {
    assert!(matches!(
        parse("PORT 192,168,1,256,7,138"),
        Err(CommandError::BadArgument { verb: "PORT", .. })
    ));
    assert!(matches!(
        parse("PORT 192,168,1,2,256,1"),
        Err(CommandError::BadArgument { verb: "PORT", .. })
    ));
    assert_eq!(parse("PORT"), Err(CommandError::MissingArgument("PORT")));
}

// RFC 2428 §2.
#[test]
fn eprt_ipv4_parses() {
    assert_eq!(
        parse("EPRT |1|132.235.1.2|6275|"),
        Ok(Command::Eprt(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(132, 235, 1, 2),
            6275
        ))))
    );
}

#[test]
fn eprt_ipv6_parses() {
    let ip: Ipv6Addr = "1080::8:800:200C:417A".parse().unwrap();
    assert_eq!(
        parse("EPRT |2|1080::8:800:200C:417A|5282|"),
        Ok(Command::Eprt(SocketAddr::V6(SocketAddrV6::new(
            ip, 5282, 0, 0
        ))))
    );
}

#[test]
fn eprt_family_mismatch_is_a_bad_argument() {
    for text in [
        "EPRT |1|1080::8:800:200C:417A|5282|",
        "EPRT |2|132.235.1.2|6275|",
        "EPRT |3|132.235.1.2|6275|",
    ] {
        assert!(
            matches!(
                parse(text),
                Err(CommandError::BadArgument { verb: "EPRT", .. })
            ),
            "{text}"
        );
    }
}

// RFC 3659 §5.1.
#[test]
fn rest_takes_a_decimal_offset() {
    assert_eq!(parse("REST 0"), Ok(Command::Rest(0)));
    assert_eq!(
        parse("REST 18446744073709551615"),
        Ok(Command::Rest(u64::MAX))
    );
    for text in [
        "REST abc",
        "REST +5",
        "REST -1",
        "REST 18446744073709551616",
    ] {
        assert!(
            matches!(
                parse(text),
                Err(CommandError::BadArgument { verb: "REST", .. })
            ),
            "{text}"
        );
    }
}

#[test]
fn opts_and_type_keep_their_argument() {
    assert_eq!(
        parse("OPTS UTF8 ON"),
        Ok(Command::Opts(b"UTF8 ON".to_vec()))
    );
    assert_eq!(parse("TYPE A N"), Ok(Command::Type(b"A N".to_vec())));
}

#[test]
fn transfer_commands_keep_the_raw_line() {
    for (text, kind, direction) in [
        ("LIST -la /pub", TransferKind::List, Direction::Download),
        ("nlst", TransferKind::Nlst, Direction::Download),
        ("MLSD", TransferKind::Mlsd, Direction::Download),
        ("RETR a b.txt", TransferKind::Retr, Direction::Download),
        ("stor x", TransferKind::Stor, Direction::Upload),
        ("STOU", TransferKind::Stou, Direction::Upload),
        ("APPE log", TransferKind::Appe, Direction::Upload),
    ] {
        let command = parse(text).unwrap();
        assert_eq!(
            command,
            Command::Transfer {
                kind,
                raw: text.as_bytes().to_vec()
            }
        );
        assert_eq!(kind.direction(), direction);
        assert_eq!(command.verb(), kind.verb());
    }
}

#[test]
fn retr_without_a_path_is_missing_argument() {
    assert_eq!(parse("RETR"), Err(CommandError::MissingArgument("RETR")));
    assert_eq!(parse("STOR "), Err(CommandError::MissingArgument("STOR")));
}

#[test]
fn unknown_verbs_pass_through_byte_for_byte() {
    let raw = b"site CHMOD 755 f\xe9".to_vec();
    assert_eq!(
        parse_command(&raw),
        Ok(Command::Other {
            verb: "SITE".into(),
            raw: raw.clone()
        })
    );
    assert_eq!(
        parse("cwd  /a b "),
        Ok(Command::Other {
            verb: "CWD".into(),
            raw: b"cwd  /a b ".to_vec()
        })
    );
}

#[test]
fn malformed_verbs_are_bad_verb() {
    for text in ["NO", "NOOPS", "N0OP", " NOOP", "NOOP\tx", "ÄÖÜ"] {
        assert!(
            matches!(parse(text), Err(CommandError::BadVerb(_))),
            "{text}"
        );
    }
}

#[test]
fn empty_line_is_empty() {
    assert_eq!(parse(""), Err(CommandError::Empty));
    assert_eq!(parse("   "), Err(CommandError::Empty));
}

// RFC 959 §5.3.2: arguments never contain CR or LF; a bare CR forwarded
// could split one command into two at some backends.
#[test]
fn embedded_cr_is_refused() {
    assert!(matches!(
        parse("CWD a\rDELE b"),
        Err(CommandError::BadArgument { verb: "CWD", .. })
    ));
    assert!(matches!(
        parse("XYZZ a\rDELE b"),
        Err(CommandError::BadArgument {
            verb: "command",
            ..
        })
    ));
}

// RFC 959 §4.1.3: ABOR arrives as IAC IP, IAC DM ("Synch"), then "ABOR".
#[test]
fn telnet_prefixed_abor_parses_as_abor() {
    assert_eq!(parse_command(b"\xff\xf4\xff\xf2ABOR"), Ok(Command::Abor));
    assert_eq!(parse_command(b"\xff\xf2ABOR"), Ok(Command::Abor));
}

#[test]
fn strip_telnet_handles_all_sequences() {
    assert_eq!(&*strip_telnet(b"NOOP"), b"NOOP");
    assert!(matches!(
        strip_telnet(b"NOOP"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(&*strip_telnet(b"a\xff\xffb"), b"a\xffb");
    assert_eq!(&*strip_telnet(b"a\xff\xfb\x01b"), b"ab"); // WILL ECHO
    assert_eq!(&*strip_telnet(b"a\xff\xfe\x03b"), b"ab"); // DONT SGA
    assert_eq!(&*strip_telnet(b"a\xff\xf1b"), b"ab"); // NOP
    assert_eq!(&*strip_telnet(b"ab\xff"), b"ab"); // cut-off IAC
    assert_eq!(&*strip_telnet(b"ab\xff\xfd"), b"ab"); // cut-off DO
    assert_eq!(&*strip_telnet(b"a\xffAb"), b"aAb"); // stray IAC
}

#[test]
fn escaped_ff_survives_a_round_trip() {
    let raw = b"RETR \xff\xf4.txt";
    assert_eq!(&*escape_telnet(raw), b"RETR \xff\xff\xf4.txt");
    assert_eq!(&*strip_telnet(&escape_telnet(raw)), raw);
    let command = parse_command(&escape_telnet(raw)).unwrap();
    assert_eq!(
        command,
        Command::Transfer {
            kind: TransferKind::Retr,
            raw: raw.to_vec()
        }
    );
}

#[test]
fn log_line_shows_the_command_without_controls_and_bounded() {
    assert_eq!(parse("user bob").unwrap().log_line(), "USER bob");
    assert_eq!(parse("EPSV all").unwrap().log_line(), "EPSV ALL");
    assert_eq!(
        parse("PORT 10,0,0,1,4,1").unwrap().log_line(),
        "PORT 10,0,0,1,4,1"
    );
    assert_eq!(
        parse_command(b"SITE \x1b[31mred").unwrap().log_line(),
        "SITE ?[31mred"
    );
    let long = format!("CWD {}", "é".repeat(500));
    assert_eq!(parse(&long).unwrap().log_line().chars().count(), 200);
}

// A malformed verb is quoted in errors and logs; one that begins like PASS
// or ACCT may carry the password glued on (tab instead of space, no space).
#[test]
fn malformed_pass_verb_never_quotes_the_secret() {
    for line in [
        &b"PASS\tsecret123"[..],
        b"passsecret123",
        b"ACCT\tsecret123",
    ] {
        match parse_command(line) {
            Err(CommandError::BadVerb(v)) => {
                assert!(!v.contains("secret"), "{v}");
                assert!(v.ends_with("****"), "{v}");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Issue 17 A4: the backend gets the checked command rebuilt, never the
/// client's bytes: a CR hidden behind `IAC WILL` (stripped by the check) must
/// not reach a backend that ends lines at a bare CR.
#[test]
fn canonical_line_is_rebuilt_from_the_checked_command() {
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"site chmod 644 a\xff\xfb\rDELE x",
            b"SITE chmod 644 aDELE x",
        ),
        (b"DELE a\xff\xfd\0b", b"DELE ab"),
        (b"noop", b"NOOP"),
        (b"cwd  /a b ", b"CWD  /a b "),
        (b"RETR \xff\xff.txt", b"RETR \xff\xff.txt"),
        (b"PASS  secret", b"PASS  secret"),
        (b"type  i ", b"TYPE i"),
        (b"rest 0010", b"REST 10"),
        (b"\xff\xf4\xff\xf2ABOR", b"ABOR"),
        (b"port 127,0,0,1,4,1", b"PORT 127,0,0,1,4,1"),
    ];
    for (input, want) in cases {
        let c = parse_command(input).unwrap();
        let line = c.canonical();
        assert_eq!(line, *want, "{:?}", String::from_utf8_lossy(input));
        assert!(!line.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        let again = parse_command(&line).unwrap();
        assert_eq!(again.verb(), c.verb());
        assert_eq!(again.canonical(), line, "canonical is a fixed point");
    }
}
