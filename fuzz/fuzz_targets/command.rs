//! `parse_command` on any line: never panics; a password or account string is
//! never in `log_line`, `Debug` or an error; `log_line` is bounded and free of
//! control characters; and where the log line is the whole command (short,
//! printable UTF-8) it parses back to the same command.
#![no_main]

use ftpsgate::control::{parse_command, strip_telnet, Command, CommandError};
use libfuzzer_sys::fuzz_target;

/// `log_line` keeps at most this many characters (command.rs `LOG_CHARS`).
const LOG_CHARS: usize = 200;

fuzz_target!(|line: &[u8]| {
    let parsed = parse_command(line);
    // The verb as parse_command sees it: after TELNET stripping, up to the
    // first space.
    let stripped = strip_telnet(line);
    let verb_end = stripped
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(stripped.len());
    let verb = &stripped[..verb_end];
    let secret_verb = verb.eq_ignore_ascii_case(b"PASS") || verb.eq_ignore_ascii_case(b"ACCT");

    let cmd = match parsed {
        Ok(cmd) => cmd,
        Err(err) => {
            if secret_verb {
                // Only errors that quote nothing of the line may come back.
                let quotes_nothing = match &err {
                    CommandError::BadArgument { reason, .. } => {
                        reason == "line contains CR, LF or NUL"
                    }
                    CommandError::MissingArgument(_) => true,
                    CommandError::Empty | CommandError::BadVerb(_) => false,
                };
                assert!(
                    quotes_nothing,
                    "error for {verb:?} may quote the secret: {err:?}"
                );
            }
            if let CommandError::BadVerb(shown) = &err {
                // `PASSsecret` / `ACCT\tsecret`: a token starting like a secret
                // verb shows only those four letters.
                let head = verb.get(..4).unwrap_or(verb);
                if head.eq_ignore_ascii_case(b"PASS") || head.eq_ignore_ascii_case(b"ACCT") {
                    assert!(shown.ends_with("****") && shown.len() == 8, "{shown:?}");
                }
            }
            let _ = err.to_string();
            return;
        }
    };

    let log = cmd.log_line();
    let debug = format!("{cmd:?}");
    assert!(
        log.chars().count() <= LOG_CHARS,
        "log line too long: {}",
        log.len()
    );
    assert!(
        !log.chars().any(char::is_control),
        "control character in log line {log:?}"
    );

    match &cmd {
        Command::Pass(secret) | Command::Acct(secret) => {
            assert!(secret_verb);
            assert_eq!(log, format!("{} ****", cmd.verb()));
            // The only variable part of Debug is the secret's stars.
            let expected = if matches!(cmd, Command::Pass(_)) {
                "Pass(****)"
            } else {
                "Acct(****)"
            };
            assert_eq!(debug, expected);
            // The secret is what follows exactly one separator.
            assert_eq!(
                secret.0.as_slice(),
                stripped.get(verb_end + 1..).unwrap_or_default()
            );
            return;
        }
        _ => assert!(!secret_verb, "{verb:?} parsed as {debug}"),
    }

    // Commands forwarded as-is keep the (stripped) line byte for byte.
    if let Command::Transfer { raw, .. } | Command::Other { raw, .. } = &cmd {
        assert_eq!(raw.as_slice(), &*stripped);
    }
    assert!(cmd.verb().as_bytes().eq_ignore_ascii_case(verb));

    // Where the log line is the complete command, it is a canonical form of it.
    let printable = std::str::from_utf8(&stripped)
        .is_ok_and(|s| s.chars().count() <= LOG_CHARS && !s.chars().any(char::is_control));
    if printable {
        assert_eq!(
            parse_command(log.as_bytes()).as_ref(),
            Ok(&cmd),
            "log line {log:?} does not re-parse to the command"
        );
    }
});
