//! Forward exactly what was checked (issue 17 A4): arbitrary client bytes,
//! framed as the session shell frames them, are fed to the session machine
//! (logged in or parked after `USER`, with or without a route filter). For
//! every line, each byte string sent to the backend is either the canonical
//! form of the command the gateway parsed and checked
//! (`Command::canonical`: `VERB SP arg`, 0xFF doubled) or one of the
//! gateway's own commands (`FEAT`, `REIN`, data setup toward the backend);
//! it never
//! holds CR, LF or NUL, parses back to a command with the same canonical
//! form, is not a verb the filter denies, and before login is a login-phase
//! verb. A line that does not parse sends nothing.
//!
//! Byte 0 chooses the state (bit 0: logged in, bit 1: a deny filter); the
//! rest is the client's byte stream.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ftpsgate::config::{CommandPolicy, DataMode, Timeouts, TlsMode};
use ftpsgate::control::{parse_command, Command, Framed, LineFramer, Reply, MAX_LINE};
use ftpsgate::policy::{allowed_before_login, command_allowed};
use ftpsgate::session::state::{Action, Env, Finished, Input, Machine, Routed, Settings};
use ftpsgate_fuzz::take_byte;
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

const DENIED: &[&str] = &["DELE", "STOR", "MKD", "RMD", "SITE", "RNFR"];

struct Quiet;

impl Env for Quiet {
    fn command(&mut self, _verb: &str) {}
    fn pass_attempt(&mut self) -> bool {
        true
    }
    fn login_ok(&mut self, _fresh: bool) {}
    fn login_failed(&mut self) -> bool {
        false
    }
    fn login_refused_no_tls(&mut self) {}
    fn active_refused(&mut self) {}
    fn transfer_finished(&mut self, _done: &Finished) {}
    fn unsolicited_reply(&mut self) {}
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let flags = take_byte(&mut data);
    let log_in = flags & 1 == 1;
    let filter = if flags & 2 == 2 {
        CommandPolicy::Deny(DENIED.iter().map(|v| v.to_string()).collect())
    } else {
        CommandPolicy::Any
    };
    let mut framer = LineFramer::new(MAX_LINE);
    framer.push(data);
    let mut h = Harness::start(log_in, filter);
    while let Some(item) = framer.next_line() {
        let Framed::Line(line) = item else { continue };
        if !h.line(line) {
            break;
        }
    }
});

struct Harness {
    m: Machine,
    env: Quiet,
    now: Instant,
}

impl Harness {
    fn start(log_in: bool, filter: CommandPolicy) -> Harness {
        let s = Settings {
            tls_mode: TlsMode::None,
            tls_available: false,
            require_tls: false,
            allow_clear_data: true,
            allow_ccc: false,
            active_enabled: true,
            local_v4: true,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            timeouts: Timeouts::default(),
            banner: ftpsgate::config::DEFAULT_BANNER.to_string(),
            unavailable: ftpsgate::config::DEFAULT_UNAVAILABLE.to_string(),
            max_unsolicited: 3,
        };
        let now = Instant::now();
        let (m, _) = Machine::new(s, false, now);
        let mut h = Harness { m, env: Quiet, now };
        h.feed(Input::ClientLine(b"USER alice".to_vec()));
        let a = h.feed(Input::Routed(Ok(Routed {
            login: "alice".into(),
            commands: filter,
            fresh: true,
            data_mode: DataMode::Passive,
            backend_v4: true,
            keepalive_noop: Some(Duration::from_secs(30)),
        })));
        assert_eq!(a, vec![Action::ToBackend(b"USER alice".to_vec())]);
        h.feed(Input::BackendReply(Reply::new(331, "Password")));
        if log_in {
            let a = h.feed(Input::ClientLine(b"PASS pw".to_vec()));
            assert_eq!(a, vec![Action::ToBackend(b"PASS pw".to_vec())]);
            h.feed(Input::BackendReply(Reply::new(230, "Welcome")));
            assert!(h.m.logged_in());
        }
        h
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        self.m.handle(self.now, input, &mut self.env)
    }

    /// Feeds one client line and checks what went to the backend; false when
    /// the machine asks for something this harness does not play (a pinhole,
    /// a route, TLS) or closed.
    fn line(&mut self, line: Vec<u8>) -> bool {
        if !self.m.reads_client() {
            return false;
        }
        let checked = parse_command(&line);
        let logged_in = self.m.logged_in();
        let filter = self.m.commands().clone();
        let actions = self.feed(Input::ClientLine(line));
        let mut sent = Vec::new();
        for a in &actions {
            match a {
                Action::ToBackend(bytes) => sent.push(bytes.clone()),
                Action::ToClient(_) | Action::DropPending => {}
                _ => return false,
            }
        }
        let Ok(cmd) = checked else {
            assert!(sent.is_empty(), "an unparsed line reached the backend");
            return true;
        };
        for bytes in &sent {
            assert!(
                !bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
                "CR/LF/NUL to the backend: {bytes:?}"
            );
            let own = match &cmd {
                Command::Feat => bytes.as_slice() == b"FEAT",
                Command::Rein => bytes.as_slice() == b"REIN",
                // Data setup: the gateway's own PASV/EPSV (or PORT/EPRT naming
                // its own listener) toward the backend.
                Command::Port(_) | Command::Eprt(_) | Command::Pasv | Command::Epsv(_) => {
                    matches!(bytes.as_slice(), b"PASV" | b"EPSV")
                        || bytes.starts_with(b"PORT ")
                        || bytes.starts_with(b"EPRT ")
                }
                _ => false,
            };
            if !own {
                assert_eq!(
                    bytes,
                    &cmd.canonical(),
                    "forwarded bytes are not the checked command"
                );
            }
            let again = parse_command(bytes).expect("forwarded line re-parses");
            assert_eq!(again.canonical(), *bytes, "canonical form is a fixed point");
            assert!(
                command_allowed(&filter, again.verb()),
                "denied verb forwarded"
            );
            if !logged_in {
                assert!(
                    allowed_before_login(again.verb()),
                    "{} before login",
                    again.verb()
                );
            }
        }
        // Answer everything so the next line is read at once.
        for _ in 0..sent.len() {
            if !self.m.reads_backend() {
                break;
            }
            let a = self.feed(Input::BackendReply(Reply::new(200, "ok")));
            if a.iter().any(|a| !matches!(a, Action::ToClient(_))) {
                return false;
            }
        }
        !self.m.is_closed()
    }
}
